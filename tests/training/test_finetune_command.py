"""`data2vec finetune` as a user runs it: flags and a YAML config, a trained output folder that
loads here and in the reference library, and the options' rules."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

import data2vec
from data2vec.training.run import OptionsError, layer_id, load_options
from tests.training.test_tasks_text import backbone  # noqa: F401 (a fixture: a tiny text checkpoint folder)

ROWS = [("the red cat sat on the mat", "cat"), ("the quick brown fox jumps", "fox"), ("paris is a city", "city")]


def write_csv(path, rows):
    path.write_text("text,label\n" + "".join(f"{text},{label}\n" for text, label in rows), encoding="utf-8")
    return path


def test_finetune_command_trains_and_writes_a_folder_both_libraries_load(backbone, tmp_path):  # noqa: F811
    train = write_csv(tmp_path / "train.csv", ROWS * 4)
    evaluation = write_csv(tmp_path / "eval.csv", ROWS)
    config = tmp_path / "run.yaml"
    config.write_text(f"task: text-classification\nmodel: {backbone}\nlearning-rate: 1.0e-3\nbatch_size: 4\nmax-steps: 2\n")
    out = tmp_path / "out"
    command = [
        sys.executable, "-m", "data2vec.cli", "finetune", "--config", str(config), "--train", str(train),
        "--eval", str(evaluation), "--output", str(out), "--max-steps", "6", "--eval-every", "3", "--no-progress",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "step 6" in done.stdout and str(out) in done.stdout  # the flag (6 steps) won over the file (2)

    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    evaluations = [record for record in records if "eval_accuracy" in record]
    assert [record["step"] for record in evaluations] == [3, 6]
    assert any(record.get("lr") is not None for record in records)

    ours = data2vec.AutoModelForSequenceClassification.from_pretrained(out).eval()
    assert ours.config.id2label == {0: "cat", 1: "city", 2: "fox"}  # the training labels, sorted
    tokenizer = data2vec.AutoProcessor.from_pretrained(out)
    batch = tokenizer([text for text, _ in ROWS], padding=True, return_tensors="pt")
    transformers = pytest.importorskip("transformers")
    reference = transformers.Data2VecTextForSequenceClassification.from_pretrained(out, attn_implementation="eager").eval()
    with torch.no_grad():
        torch.testing.assert_close(ours(**batch).logits, reference(**batch).logits, atol=1e-4, rtol=0)

    # the same command again: the folder already holds a run
    again = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert again.returncode == 2 and "Traceback" not in again.stderr
    assert again.stderr.splitlines() == [f"error: {out} already holds a fine-tuning run: add --resume to continue it, or choose another --output"]
    # warnings are one line each
    assert all(line.startswith("warning: ") for line in done.stderr.splitlines() if "Warning" in line or "warning" in line)


def test_options_flags_win_over_the_file_and_required_ones_are_named(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("task: image-classification\nmodel: m\ntrain: t\noutput: o\nlearning_rate: 0.5\nepochs: 2\n")
    options = load_options(config, {"learning_rate": 0.25, "epochs": None})
    assert options["learning_rate"] == 0.25 and options["epochs"] == 2 and options["batch_size"] == 8
    assert options["clip_norm"] == 1.0 and load_options(config, {"clip_norm": 0})["clip_norm"] is None  # 0: off
    with pytest.raises(OptionsError, match="missing --model, --output"):
        load_options(None, {"task": "image-classification", "train": "t"})
    config.write_text("- a list\n")
    with pytest.raises(OptionsError, match="mapping"):
        load_options(config, {})


def test_layer_ids_of_layer_wise_learning_rate_decay():
    # 0: before the blocks; i + 1: block i; num_layers + 1: after the blocks (pooler, heads)
    assert layer_id("backbone.embeddings.word_embeddings.weight", 4) == 0
    assert layer_id("backbone.feature_encoder.layers.0.conv.weight", 4) == 0
    assert layer_id("backbone.positional_conv.layers.0.conv.weight", 4) == 0
    assert layer_id("backbone.encoder.layers.0.attention.qkv.weight", 4) == 1
    assert layer_id("backbone.encoder.layers.3.mlp.fc2.bias", 4) == 4
    assert layer_id("backbone.pooler.norm.weight", 4) == 5
    assert layer_id("classifier.weight", 4) == 5
    assert layer_id("lm_head.dense.weight", 12) == 13


def test_a_task_the_checkpoint_cannot_do_is_one_error_line(backbone, tmp_path, capsys):  # noqa: F811
    from data2vec.cli import main

    images = tmp_path / "images" / "red"
    images.mkdir(parents=True)
    from PIL import Image

    Image.new("RGB", (8, 8), (255, 0, 0)).save(images / "0.png")
    status = main(["finetune", "--task", "image-classification", "--model", str(backbone),
                   "--train", str(tmp_path / "images"), "--output", str(tmp_path / "out")])
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error")]
    assert status == 2
    assert len(lines) == 1 and "data2vec-text" in lines[0] and "data2vec-vision" in lines[0], lines
