"""A resume cannot silently change the run: a recipe that changes the learning-rate / EMA schedule
or any other key that shapes the updates stops with one line naming the keys (old -> new), unless
the change is allowed explicitly (--extend-schedule, --allow-recipe-change), which log.jsonl records.
Logging, device and collapse-watch settings change freely."""

from __future__ import annotations

import copy
import importlib.util
import json
import logging
import math
import shutil
import warnings

import pytest
import torch

from data2vec import cli
from data2vec.pretraining.recipe import Recipe
from data2vec.pretraining.resume import SCHEDULE_KEYS, RecipeChangedError
from data2vec.pretraining.trainer import Pretrainer
from tests.pretraining.test_resume import assert_same_training_state, run_state
from tests.pretraining.tiny_setup import make_data, tiny_recipe_dict, write_recipe

# the run every test resumes: 4 updates planned, stopped after 2 (tiny vision recipe: lr 1e-3,
# cosine with 1 warmup update, EMA 0.99 -> 0.999 over 300 updates, weight decay 0.05, seed 0)
PLAN = {"optim": {"total_steps": 4, "warmup_steps": 1}}


def recipe_with(**changes) -> Recipe:
    """The run's recipe with dotted keys changed: ``recipe_with(**{"optim.lr": 2e-3})``."""
    values = tiny_recipe_dict("vision", **copy.deepcopy(PLAN))
    for dotted, value in changes.items():
        *sections, key = dotted.split(".")
        target = values
        for section in sections:
            target = target[section]
        target[key] = value
    recipe = Recipe.from_dict(values, source="test recipe")
    recipe.name = "tiny-vision"
    return recipe


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Images, a run stopped after 2 of 4 updates, and the same run uninterrupted."""
    folder = tmp_path_factory.mktemp("resume-guard")
    images = make_data("vision", folder)
    assert Pretrainer(recipe_with(), images, folder / "stopped", progress=False).train(stop_after=2).step == 2
    assert Pretrainer(recipe_with(), images, folder / "straight", progress=False).train().step == 4
    return {"images": images, "stopped": folder / "stopped", "straight": folder / "straight"}


def copy_of_stopped(runs, tmp_path):
    return shutil.copytree(runs["stopped"], tmp_path / "run")


def log_records(folder) -> list[dict]:
    return [json.loads(line) for line in (folder / "log.jsonl").read_text().splitlines() if line.strip()]


# ---------------------------------------------------------------------------- stops
SCHEDULE_CHANGES = [  # (key, new value, how the message shows "old -> new")
    ("optim.total_steps", 6, "optim.total_steps: 4 -> 6"),
    ("optim.warmup_steps", 2, "optim.warmup_steps: 1 -> 2"),
    ("optim.schedule", "tri_stage", 'optim.schedule: "cosine" -> "tri_stage"'),
    ("optim.phase_ratio", [0.1, 0.8, 0.1], "optim.phase_ratio: [0.03, 0.9, 0.07] -> [0.1, 0.8, 0.1]"),
    ("optim.lr", 2e-3, "optim.lr: 0.001 -> 0.002"),
    ("optim.min_lr", 1e-5, "optim.min_lr: 0.0 -> 1e-05"),
    ("optim.init_lr_scale", 0.02, "optim.init_lr_scale: 0.01 -> 0.02"),
    ("optim.final_lr_scale", 0.02, "optim.final_lr_scale: 0.01 -> 0.02"),
    ("ema.start", 0.98, "ema.start: 0.99 -> 0.98"),
    ("ema.end", 0.9999, "ema.end: 0.999 -> 0.9999"),
    ("ema.anneal_steps", 600, "ema.anneal_steps: 300 -> 600"),
]


def test_every_key_of_the_lr_and_ema_schedules_counts_as_a_schedule_key():
    assert SCHEDULE_KEYS == {key for key, _, _ in SCHEDULE_CHANGES}


@pytest.mark.parametrize("key, value, shown", SCHEDULE_CHANGES, ids=[key for key, _, _ in SCHEDULE_CHANGES])
def test_a_changed_schedule_key_stops_the_resume(runs, key, value, shown):
    with pytest.raises(RecipeChangedError) as raised:
        Pretrainer(recipe_with(**{key: value}), runs["images"], runs["stopped"], resume=True, progress=False)
    message = str(raised.value)
    assert "\n" not in message
    assert shown in message
    assert "--extend-schedule" in message and "extend_schedule=True" in message
    assert "--allow-recipe-change" not in message
    assert str(runs["stopped"] / "recipe.yaml") in message  # the way back: the run's own recipe
    assert Recipe.load(runs["stopped"] / "recipe.yaml").optim.total_steps == 4  # left as it was


@pytest.mark.parametrize(
    "key, value, shown",
    [
        ("seed", 5, "seed: 0 -> 5"),
        ("model.hidden_dropout_prob", 0.1, "model.hidden_dropout_prob: 0.0 -> 0.1"),
        ("data.batch_size", 4, "data.batch_size: 8 -> 4"),
        ("masking.num_masking_patches", 6, "masking.num_masking_patches: 8 -> 6"),
        ("targets.post_norm", "none", 'targets.post_norm: "layer" -> "none"'),
        ("loss.beta", 1.0, "loss.beta: 2.0 -> 1.0"),
        ("optim.weight_decay", 0.1, "optim.weight_decay: 0.05 -> 0.1"),
        ("optim.clip_norm", 1.0, "optim.clip_norm: 3.0 -> 1.0"),
        ("precision", "bf16", 'precision: "fp32" -> "bf16"'),
    ],
)
def test_other_changed_keys_stop_the_resume_too(runs, key, value, shown):
    with pytest.raises(RecipeChangedError) as raised:
        Pretrainer(recipe_with(**{key: value}), runs["images"], runs["stopped"], resume=True, progress=False)
    message = str(raised.value)
    assert "\n" not in message and shown in message
    assert "--allow-recipe-change" in message and "--extend-schedule" not in message
    # extend_schedule does not cover them
    with pytest.raises(RecipeChangedError, match="--allow-recipe-change"):
        Pretrainer(recipe_with(**{key: value}), runs["images"], runs["stopped"], resume=True, progress=False,
                   extend_schedule=True)


def test_a_schedule_and_another_change_need_both_flags(runs):
    recipe = recipe_with(**{"optim.total_steps": 6, "seed": 5})
    with pytest.raises(RecipeChangedError) as raised:
        Pretrainer(recipe, runs["images"], runs["stopped"], resume=True, progress=False)
    message = str(raised.value)
    assert "optim.total_steps: 4 -> 6" in message and "seed: 0 -> 5" in message
    assert "--extend-schedule" in message and "--allow-recipe-change" in message
    with pytest.raises(RecipeChangedError) as raised:
        Pretrainer(recipe, runs["images"], runs["stopped"], resume=True, progress=False, extend_schedule=True)
    assert "seed: 0 -> 5" in str(raised.value) and "optim.total_steps" not in str(raised.value)


# ---------------------------------------------------------------------------- goes on
def test_free_changes_resume_silently_and_exactly(runs, tmp_path, caplog):
    folder = copy_of_stopped(runs, tmp_path)
    recipe = recipe_with(**{
        "log_every": 2, "save_every": 50, "device": "cpu", "name": "renamed",
        "collapse.check_after": 10, "collapse.min_target_std": 0.0, "model_init": "default",
    })
    caplog.set_level(logging.WARNING, logger="data2vec")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        trainer = Pretrainer(recipe, runs["images"], folder, resume=True, progress=False)
    assert trainer.train().step == 4
    warned = [record for record in caplog.records if record.levelno >= logging.WARNING]
    assert not [record for record in warned if record.name != "data2vec.training.plots"]  # (without matplotlib)
    assert not [record for record in log_records(folder) if "event" in record]
    assert_same_training_state(run_state(runs["straight"]), run_state(folder))


def test_extend_schedule_goes_on_with_the_new_schedule_and_logs_the_change(runs, tmp_path, caplog):
    folder = copy_of_stopped(runs, tmp_path)
    recipe = recipe_with(**{"optim.total_steps": 6, "ema.anneal_steps": 600})
    caplog.set_level(logging.WARNING, logger="data2vec")
    trainer = Pretrainer(recipe, runs["images"], folder, resume=True, progress=False, extend_schedule=True)
    assert trainer.train().step == 6

    records = log_records(folder)
    change = {"step": 2, "event": "schedule_changed", "changes": {"ema.anneal_steps": [300, 600], "optim.total_steps": [4, 6]}}
    assert [record for record in records if "event" in record] == [change]
    assert [record["step"] for record in records if "event" not in record] == [1, 2, 3, 4, 5, 6]
    assert any(
        "update 2: schedule changed on resume: ema.anneal_steps: 300 -> 600, optim.total_steps: 4 -> 6" in record.getMessage()
        for record in caplog.records
    )
    # update 3 on the new schedule: cosine from update 1 (end of warmup) to update 6, EMA 0.99 -> 0.999 over 600
    third = next(record for record in records if record.get("step") == 3 and "event" not in record)
    assert third["lr"] == pytest.approx(1e-3 * 0.5 * (1 + math.cos(math.pi * (3 - 1) / (6 - 1))), rel=1e-9)
    assert third["ema_decay"] == pytest.approx(0.99 + (0.999 - 0.99) * 3 / 600, rel=1e-12)
    has_matplotlib = importlib.util.find_spec("matplotlib") is not None  # the plot extra
    assert (folder / "loss.png").is_file() == has_matplotlib  # the plot reads past the event record
    assert Recipe.load(folder / "recipe.yaml").optim.total_steps == 6
    assert run_state(folder)["recipe"]["optim"]["total_steps"] == 6


def test_a_second_resume_from_the_same_checkpoint_logs_the_change_once(runs, tmp_path):
    folder = copy_of_stopped(runs, tmp_path)
    recipe = recipe_with(**{"optim.total_steps": 6})
    for _ in range(2):  # e.g. the first resumed run died before its next checkpoint
        Pretrainer(recipe, runs["images"], folder, resume=True, progress=False, extend_schedule=True)
    assert [record for record in log_records(folder) if "event" in record] == [
        {"step": 2, "event": "schedule_changed", "changes": {"optim.total_steps": [4, 6]}}
    ]


def test_allow_recipe_change_goes_on_with_the_new_values_and_logs_them(runs, tmp_path):
    folder = copy_of_stopped(runs, tmp_path)
    recipe = recipe_with(**{"seed": 5, "optim.weight_decay": 0.1})
    trainer = Pretrainer(recipe, runs["images"], folder, resume=True, progress=False, allow_recipe_change=True)
    # the loaded optimizer state would bring back weight decay 0.05: the recipe's 0.1 applies
    assert {group["weight_decay"] for group in trainer.optimizer.param_groups} == {0.0, 0.1}
    assert trainer.train(stop_after=1).step == 3
    assert [record for record in log_records(folder) if "event" in record] == [
        {"step": 2, "event": "recipe_changed", "changes": {"optim.weight_decay": [0.05, 0.1], "seed": [0, 5]}}
    ]


# ---------------------------------------------------------------------------- the command line
@pytest.fixture
def restore_package_logger():
    """The command adds a stderr handler to the package logger when it has none: start without one
    (so that this test's stderr gets the messages) and put the earlier ones back afterwards."""
    package_logger = logging.getLogger("data2vec")
    handlers, level = list(package_logger.handlers), package_logger.level
    package_logger.handlers[:] = []
    yield
    package_logger.handlers[:] = handlers
    package_logger.setLevel(level)


def test_the_cli_stops_with_one_error_line_and_goes_on_with_extend_schedule(runs, tmp_path, capsys, restore_package_logger):
    recipe_file = write_recipe(tiny_recipe_dict("vision", **copy.deepcopy(PLAN)), tmp_path / "recipe.yaml")
    folder = tmp_path / "run"
    common = ["pretrain", "--recipe", str(recipe_file), "--data", str(runs["images"]), "--out", str(folder), "--no-progress"]
    assert cli.main(common + ["--stop-after", "2"]) == 0
    assert run_state(folder)["step"] == 2
    capsys.readouterr()

    assert cli.main(common + ["--resume", "--steps", "6"]) == 2
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("error: ") and "optim.total_steps: 4 -> 6" in lines[0] and "--extend-schedule" in lines[0]
    assert "Traceback" not in captured.err + captured.out
    assert run_state(folder)["step"] == 2

    assert cli.main(common + ["--resume", "--steps", "6", "--extend-schedule"]) == 0
    assert run_state(folder)["step"] == 6
    assert "schedule changed on resume: optim.total_steps: 4 -> 6" in capsys.readouterr().err
    assert {"step": 2, "event": "schedule_changed", "changes": {"optim.total_steps": [4, 6]}} in log_records(folder)


def test_the_cli_flags_need_resume(runs, tmp_path, capsys, restore_package_logger):
    recipe_file = write_recipe(tiny_recipe_dict("vision", **copy.deepcopy(PLAN)), tmp_path / "recipe.yaml")
    code = cli.main(["pretrain", "--recipe", str(recipe_file), "--data", str(runs["images"]), "--out",
                     str(tmp_path / "run"), "--no-progress", "--extend-schedule"])
    assert code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert lines == ["error: --extend-schedule and --allow-recipe-change apply to a resumed run: add --resume"]
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_an_old_checkpoint_without_todays_keys_resumes_silently(runs, tmp_path):
    """Keys added to recipes since a checkpoint was written compare as their defaults."""
    folder = copy_of_stopped(runs, tmp_path)
    state = run_state(folder)
    old_recipe = copy.deepcopy(state["recipe"])
    del old_recipe["model_init"], old_recipe["collapse"]
    torch.save({**state, "recipe": old_recipe}, folder / "checkpoint.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Pretrainer(recipe_with(**{"model_init": "default"}), runs["images"], folder, resume=True, progress=False)
    with pytest.raises(RecipeChangedError, match="seed: 0 -> 5"):
        Pretrainer(recipe_with(**{"seed": 5}), runs["images"], folder, resume=True, progress=False)
