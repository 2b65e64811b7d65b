"""Data parallel pretraining under torchrun (2 CPU processes, gloo) gives the weights one
process gets with the same global batch; the EMA teachers of the ranks stay identical."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import torch

from data2vec.pretraining.recipe import Recipe
from data2vec.pretraining.trainer import Pretrainer
from tests.pretraining.test_resume import assert_same_training_state, run_state
from tests.pretraining.tiny_setup import make_data, tiny_recipe_dict, write_recipe


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def torchrun(processes: int, arguments: list[str], timeout: int = 240) -> subprocess.CompletedProcess:
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes),
        "--master_addr", "127.0.0.1", "--master_port", str(free_port()), "-m", "data2vec.cli", *arguments,
    ]
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=environment)


def test_two_processes_match_one_with_the_same_global_batch(tmp_path):
    images = make_data("vision", tmp_path)
    values = tiny_recipe_dict("vision", optim={"total_steps": 3, "warmup_steps": 1})
    values["data"]["batch_size"] = 8  # 4 per process
    assert values["model"]["drop_path_rate"] == 0 and values["model"]["attention_probs_dropout_prob"] == 0
    recipe_file = write_recipe(values, tmp_path / "recipe.yaml")

    done = torchrun(2, ["pretrain", "--recipe", str(recipe_file), "--data", str(images),
                        "--out", str(tmp_path / "two"), "--no-progress"])
    assert done.returncode == 0, done.stdout + done.stderr
    two = run_state(tmp_path / "two")
    assert two["world_size"] == 2 and len(two["rng"]) == 2  # each rank's random state is kept

    Pretrainer(Recipe.from_dict(values), images, tmp_path / "one", progress=False).train()
    one = run_state(tmp_path / "one")
    assert one["world_size"] == 1
    assert_same_training_state(one, two, exact=False)
    # the logged loss is that of the global batch
    losses = [
        [json.loads(line)["loss"] for line in (tmp_path / name / "log.jsonl").read_text().splitlines()]
        for name in ("one", "two")
    ]
    assert len(losses[0]) == 3
    torch.testing.assert_close(torch.tensor(losses[0]), torch.tensor(losses[1]), rtol=1e-5, atol=1e-7)


def test_audio_with_layer_drop_runs_on_two_processes(tmp_path):
    """Layer drop skips different layers on each rank: DDP must accept unused parameters, and the
    teachers, updated from the all-reduced student, must still agree (checked at every save)."""
    audio = make_data("audio", tmp_path)
    values = tiny_recipe_dict("audio", optim={"total_steps": 4, "warmup_steps": 1}, save_every=2)
    values["model"]["layerdrop"] = 0.5
    recipe_file = write_recipe(values, tmp_path / "recipe.yaml")
    done = torchrun(2, ["pretrain", "--recipe", str(recipe_file), "--data", str(audio / "manifest.tsv"),
                        "--out", str(tmp_path / "run"), "--no-progress"])
    assert done.returncode == 0, done.stdout + done.stderr
    state = run_state(tmp_path / "run")
    assert state["step"] == 4 and state["world_size"] == 2
    assert all(torch.isfinite(value).all() for value in state["teacher"].values())
