"""The pretraining experiments of docs/pretraining-results.md run end to end (a few updates and
one fine-tuning epoch here; the real numbers take minutes and live in the docs)."""

import json
import shutil

import pytest
import torch

from data2vec.demos import protocol
from data2vec.demos.protocol import Grid

TINY = {"pretrain_steps": 4, "pretrain_seeds": 1, "finetune_seeds": 2}


def check_summary(summary: dict, out_dir, classes: int) -> None:
    saved = json.loads((out_dir / "summary.json").read_text())
    assert saved["splits"] == summary["splits"]
    assert len(summary["test_accuracy"]["data2vec"]) == 2 and len(summary["test_accuracy"]["scratch"]) == 2
    for arm in protocol.ARMS:
        assert all(0.0 <= value <= 1.0 for value in summary["test_accuracy"][arm].values())
    assert summary["parameters"] > 0
    assert (out_dir / "pretrain-seed0" / "checkpoint.pt").is_file()
    # the test split is disjoint from the fine-tuning and validation splits
    assert summary["splits"]["test"] > 0 and summary["splits"]["validation"] > 0


def test_vision_demo_runs(tmp_path, monkeypatch):
    pytest.importorskip("sklearn")
    from data2vec.demos import vision

    monkeypatch.setattr(vision, "GRID", Grid([1e-3], [1]))
    summary = vision.run(out_dir=tmp_path, **TINY, workers=2)  # the runs in 2 worker processes
    check_summary(summary, tmp_path, 10)
    assert summary["workers"] == 2
    assert summary["splits"] == {"train": 144, "validation": 144, "test": 359}


def test_text_demo_splits_and_runs(tmp_path, monkeypatch):
    from data2vec.demos import text

    corpus = text.topic_corpus()
    split = corpus["split"]
    test_texts = {corpus["texts"][i] for i in split["test"]}
    assert not test_texts & set(corpus["unlabeled"])  # the test docstrings are never pretrained on
    assert not set(split["test"]) & (set(split["train"]) | set(split["validation"]))
    counts = torch.bincount(corpus["labels"][split["test"]], minlength=len(text.TOPICS))
    assert counts.tolist() == [text.TEST_PER_TOPIC] * len(text.TOPICS)

    monkeypatch.setattr(text, "GRID", Grid([1e-3], [1]))
    monkeypatch.setattr(text, "topic_corpus", lambda: corpus)
    summary = text.run(out_dir=tmp_path, **TINY, workers=1)
    check_summary(summary, tmp_path, len(text.TOPICS))


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng")
def test_audio_demo_runs(tmp_path, monkeypatch):
    from data2vec.demos import audio

    monkeypatch.setattr(audio, "GRID", Grid([1e-3], [1]))
    monkeypatch.setattr(audio, "SENTENCES", 12)
    monkeypatch.setattr(audio, "TRAIN_ACCENTS", ["en-us"])
    monkeypatch.setattr(audio, "TRAIN_VARIANTS", ["m1", "f1", "m3"])
    monkeypatch.setattr(audio, "TEST_ACCENTS", ["en-029"])
    monkeypatch.setattr(audio, "TEST_VARIANTS", ["m2"])
    summary = audio.run(out_dir=tmp_path, **TINY, workers=1)
    check_summary(summary, tmp_path, 10)
    # test voices share neither accent nor variant with the training voices
    assert summary["splits"] == {"train": 20, "validation": 10, "test": 20}
