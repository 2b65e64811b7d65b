"""Exact resume: a run stopped (by a hook or by Ctrl-C) and resumed ends with the same weights,
optimizer state and log as an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from data2vec.pretraining.recipe import Recipe
from data2vec.pretraining.trainer import Pretrainer
from tests.pretraining.tiny_setup import make_data, tiny2_recipe_dict, tiny_recipe, tiny_recipe_dict, write_recipe


def run_state(folder) -> dict:
    return torch.load(folder / "checkpoint.pt", weights_only=True)


def assert_same_training_state(first: dict, second: dict, exact: bool = True) -> None:
    assert first["step"] == second["step"]
    for part in ("student", "teacher", "head"):
        assert first[part].keys() == second[part].keys()
        for name in first[part]:
            if exact:
                assert torch.equal(first[part][name], second[part][name]), f"{part}.{name} differs"
            else:
                torch.testing.assert_close(first[part][name], second[part][name], rtol=1e-5, atol=1e-6, msg=f"{part}.{name}")
    for index, state in first["optimizer"]["state"].items():
        for key, value in state.items():
            other = second["optimizer"]["state"][index][key]
            if exact:
                assert torch.equal(value, other), f"optimizer state {index}.{key} differs"
            else:
                torch.testing.assert_close(value, other, rtol=1e-5, atol=1e-6)
    assert first["scheduler"]["last_epoch"] == second["scheduler"]["last_epoch"]


def test_stopped_and_resumed_run_equals_uninterrupted_run(tmp_path):
    """Text with dropout 0.1: the random state (dropout masks) must be restored too."""
    corpus = make_data("text", tmp_path)
    recipe = tiny_recipe("text", optim={"total_steps": 6, "warmup_steps": 2})
    assert recipe.model["hidden_dropout_prob"] > 0

    Pretrainer(recipe, corpus, tmp_path / "straight", progress=False).train()

    first = Pretrainer(recipe, corpus, tmp_path / "resumed", progress=False)
    assert first.train(stop_after=3).step == 3
    assert run_state(tmp_path / "resumed")["step"] == 3
    second = Pretrainer(recipe, corpus, tmp_path / "resumed", resume=True, progress=False)
    assert second.step == 3
    assert second.train().step == 6

    assert_same_training_state(run_state(tmp_path / "straight"), run_state(tmp_path / "resumed"))
    logs = [
        [json.loads(line) for line in (tmp_path / name / "log.jsonl").read_text().splitlines()]
        for name in ("straight", "resumed")
    ]
    assert [r["step"] for r in logs[1]] == [1, 2, 3, 4, 5, 6]
    assert [r["loss"] for r in logs[0]] == [r["loss"] for r in logs[1]]


@pytest.mark.parametrize("version", [1, 2])
def test_ctrl_c_saves_a_checkpoint_that_resumes_exactly(tmp_path, version):
    """data2vec 1.0 and 2.0 (whose masks come with clones, and whose decoder draws noise)."""
    images = make_data("vision", tmp_path)
    make_values = tiny_recipe_dict if version == 1 else tiny2_recipe_dict
    values = make_values("vision", optim={"total_steps": 400, "warmup_steps": 5}, save_every=1000)
    if version == 2:
        values["data"]["batch_size"] = 4
    recipe_file = write_recipe(values, tmp_path / "recipe.yaml")
    out = tmp_path / "run"
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "data2vec.cli", "pretrain", "--recipe", str(recipe_file), "--data", str(images),
               "--out", str(out), "--no-progress"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=environment)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and process.poll() is None:
            log = out / "log.jsonl"
            if log.is_file() and len(log.read_text().splitlines()) >= 2:
                break
            time.sleep(0.1)
        assert process.poll() is None, process.communicate()[0]
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, output
    assert "Interrupted" in output and "--resume" in output
    interrupted = run_state(out)
    stopped_at = interrupted["step"]
    assert 2 <= stopped_at < 400
    lines = (out / "log.jsonl").read_text().splitlines()
    assert json.loads(lines[-1])["step"] == stopped_at  # nothing after the checkpoint is lost or duplicated

    # the same run stopped there in this process (torch may use other thread counts: float tolerance)
    recipe = Recipe.from_dict(values)
    Pretrainer(recipe, images, tmp_path / "reference", progress=False).train(stop_after=stopped_at)
    assert_same_training_state(interrupted, run_state(tmp_path / "reference"), exact=False)

    # both continue for two more updates
    for folder in (out, tmp_path / "reference"):
        Pretrainer(recipe, images, folder, resume=True, progress=False).train(stop_after=2)
    assert_same_training_state(run_state(out), run_state(tmp_path / "reference"), exact=False)
    assert run_state(out)["step"] == stopped_at + 2


def test_resume_without_checkpoint_starts_fresh(tmp_path):
    images = make_data("vision", tmp_path)
    recipe = tiny_recipe("vision", optim={"total_steps": 2, "warmup_steps": 1})
    trainer = Pretrainer(recipe, images, tmp_path / "new", resume=True, progress=False)
    assert trainer.step == 0
    assert trainer.train().step == 2
    with pytest.raises(FileNotFoundError):
        from data2vec.pretraining.trainer import load_checkpoint

        load_checkpoint(tmp_path / "missing")


def test_a_version_1_checkpoint_resumes_like_today(tmp_path):
    """Checkpoints written before the core Encoder kept blocks under ``layers.N`` and named the
    vision modality ``image``: ``load_checkpoint`` upgrades them, and the run resumes exactly."""
    from data2vec.pretraining.trainer import load_checkpoint

    images = make_data("vision", tmp_path)
    recipe = tiny_recipe("vision", optim={"total_steps": 4, "warmup_steps": 1})
    Pretrainer(recipe, images, tmp_path / "straight", progress=False).train()
    Pretrainer(recipe, images, tmp_path / "old", progress=False).train(stop_after=2)

    path = tmp_path / "old" / "checkpoint.pt"
    today = run_state(tmp_path / "old")
    old = dict(today, version=1, recipe={**today["recipe"], "modality": "image"})
    for part in ("student", "teacher"):
        old[part] = {key.removeprefix("encoder."): value for key, value in today[part].items()}
    assert any(key.startswith("layers.0.") for key in old["student"])
    torch.save(old, path)
    upgraded = load_checkpoint(path)
    assert upgraded["version"] == 2 and upgraded["recipe"] == today["recipe"]
    assert upgraded["student"].keys() == today["student"].keys() and upgraded["teacher"].keys() == today["teacher"].keys()

    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "recipe differs" warning for the old modality name
        resumed = Pretrainer(recipe, images, tmp_path / "old", resume=True, progress=False)
    assert resumed.train().step == 4
    assert_same_training_state(run_state(tmp_path / "straight"), run_state(tmp_path / "old"))
