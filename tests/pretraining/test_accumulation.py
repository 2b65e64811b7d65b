"""Gradient accumulation (``optim.update_freq``): k micro-batches make one optimizer update that
equals one batch of k times the size; the teacher and the learning rate move once per update;
processes x micro-batches of length buckets give the same run however they are split."""

from __future__ import annotations

import json
import logging

import pytest
import torch

from data2vec.pretraining.ema import ema_decay
from data2vec.pretraining.recipe import Recipe
from data2vec.pretraining.trainer import Pretrainer
from tests.pretraining.test_batching import write_clips
from tests.pretraining.test_distributed import torchrun
from tests.pretraining.test_resume import assert_same_training_state, run_state
from tests.pretraining.test_trainer import NO_DROPOUT
from tests.pretraining.tiny_setup import make_data, tiny_recipe_dict, write_recipe

SHORT = [2000 + 20 * i for i in range(12)]  # 4 buckets of 3 (8000 // 2220 = 3)
LONG = [4000 + 200 * i for i in range(8)]  # cropped to 4000 samples: 4 buckets of 2
BUCKETS = {"batch_size": None, "max_tokens": 8000, "max_sample_size": 4000, "min_sample_size": 2000}


def no_dropout_values(modality: str, **sections) -> dict:
    values = tiny_recipe_dict(modality, **sections)
    values["model"].update(NO_DROPOUT[modality])
    return values


def read_log(folder) -> list[dict]:
    return [json.loads(line) for line in (folder / "log.jsonl").read_text().splitlines()]


def test_accumulated_micro_batches_equal_one_batch_of_their_size(tmp_path):
    images = make_data("vision", tmp_path)
    runs, steps = {}, 3
    for update_freq in (1, 2):
        values = no_dropout_values("vision", optim={"total_steps": steps, "warmup_steps": 1, "update_freq": update_freq})
        assert values["data"]["batch_size"] == 8  # 2 micro-batches of 4: the same 8 images as one batch
        out = tmp_path / f"update_freq{update_freq}"
        Pretrainer(Recipe.from_dict(values), images, out, progress=False).train()
        runs[update_freq] = (run_state(out), read_log(out))
    (one, one_log), (two, two_log) = runs[1], runs[2]
    for part in ("student", "teacher", "head"):
        for name in one[part]:
            torch.testing.assert_close(two[part][name], one[part][name], rtol=0, atol=1e-5, msg=f"{part}.{name}")
    assert one["scheduler"]["last_epoch"] == two["scheduler"]["last_epoch"] == steps  # one lr step per update
    assert [entry["step"] for entry in two["optimizer"]["state"].values()][0] == steps  # one AdamW step per update
    # the logged statistics cover the whole update
    assert [r["step"] for r in two_log] == list(range(1, steps + 1))
    for key in ("loss", "target_std", "prediction_std"):
        assert [r[key] for r in two_log] == pytest.approx([r[key] for r in one_log], rel=1e-5), key


def test_the_teacher_moves_once_per_update(tmp_path):
    images = make_data("vision", tmp_path)
    values = no_dropout_values("vision", optim={"total_steps": 4, "warmup_steps": 2, "update_freq": 2})
    trainer = Pretrainer(Recipe.from_dict(values), images, tmp_path / "run", progress=False)
    batches = trainer.step_batches()
    micro = [batches[0], batches[1]]  # update 0's two micro-batches of 4
    assert [len(batch["pixel_values"]) for batch in micro] == [4, 4]
    teacher_before = {name: p.clone() for name, p in trainer.teacher.model.named_parameters()}
    stats = trainer.train_step(micro)
    assert trainer.step == 1 and trainer.scheduler.last_epoch == 1
    assert stats["masked"] == sum(int(batch["mask"].sum()) for batch in micro)
    assert stats["lr"] == pytest.approx(values["optim"]["lr"] * 1 / 2)  # the lr of update 1 of a 2-update warmup
    decay = 0.99 + (0.999 - 0.99) * 1 / 300  # once, at update 1 (ema 0.99 -> 0.999 over 300 updates)
    assert stats["ema_decay"] == pytest.approx(decay) == ema_decay(1, 0.99, 0.999, 300)
    student = dict(trainer.model.backbone.named_parameters())
    for name, value in trainer.teacher.model.named_parameters():
        expected = decay * teacher_before[name] + (1 - decay) * student[name].detach()
        torch.testing.assert_close(value, expected, rtol=1e-6, atol=1e-7, msg=name)


def test_batch_size_must_split_into_processes_times_micro_batches(tmp_path):
    images = make_data("vision", tmp_path)
    values = tiny_recipe_dict("vision", optim={"total_steps": 2, "warmup_steps": 1, "update_freq": 3})
    trainer = Pretrainer(Recipe.from_dict(values), images, tmp_path / "run", progress=False)
    with pytest.raises(ValueError, match=r"data.batch_size=8 is not divisible by the 1 processes x optim.update_freq 3"):
        trainer.train()


def test_two_processes_with_two_micro_batches_equal_one_process_with_four(tmp_path, caplog):
    """Length buckets under DDP: 2 ranks x update_freq 2 take the 4 buckets that 1 process takes
    with update_freq 4, with the gradients all-reduced once per update (no_sync before). The log
    gives the seconds of audio of each update."""
    manifest = write_clips(tmp_path / "clips", SHORT + LONG)
    runs = {}
    for processes, update_freq in ((2, 2), (1, 4)):
        optim = {"total_steps": 2, "warmup_steps": 1, "update_freq": update_freq}
        values = no_dropout_values("audio", optim=optim, data=BUCKETS)
        out = tmp_path / f"{processes}x{update_freq}"
        if processes == 1:
            trainer = Pretrainer(Recipe.from_dict(values), manifest, out, progress=False)
            with caplog.at_level(logging.INFO, logger="data2vec.pretraining.trainer"):
                trainer.train()
            assert "global batch up to 32000 samples = 2.0 s of audio per update" in caplog.text  # 8000 x 1 x 4
        else:
            recipe_file = write_recipe(values, tmp_path / "recipe.yaml")
            done = torchrun(2, ["pretrain", "--recipe", str(recipe_file), "--data", str(manifest), "--out", str(out),
                                "--no-progress"])
            assert done.returncode == 0, done.stdout + done.stderr
        runs[processes] = out
    two, one = run_state(runs[2]), run_state(runs[1])
    assert two["world_size"] == 2 and two["step"] == one["step"] == 2
    assert_same_training_state(one, two, exact=False)
    batches, lengths = trainer.step_batches(), SHORT + LONG
    for a, b in zip(read_log(runs[1]), read_log(runs[2]), strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)
        update = batches.update_batches(a["step"] - 1)
        assert len(update) == 4
        samples = sum(len(items) * min(min(lengths[i], 4000) for i in items) for items in update)
        assert 0 < samples <= 32000
        assert a["audio_seconds"] == b["audio_seconds"] == pytest.approx(samples / 16000, abs=1e-3)


# ---------------------------------------------------------------------------- precision
def test_bf16_runs_the_student_under_autocast_and_the_teacher_in_float32(tmp_path):
    images = make_data("vision", tmp_path)
    values = tiny_recipe_dict("vision", optim={"total_steps": 2, "warmup_steps": 1}, precision="bf16", device="cpu")
    trainer = Pretrainer(Recipe.from_dict(values), images, tmp_path / "run", progress=False)
    dtypes = {"student": [], "teacher": []}
    for role, model in (("student", trainer.model.backbone), ("teacher", trainer.teacher.model)):
        linears = [module for module in model.modules() if isinstance(module, torch.nn.Linear)]
        assert len(linears) > 4
        for linear in linears:
            linear.register_forward_hook(lambda module, inputs, output, role=role: dtypes[role].append(output.dtype))
    stats = trainer.train_step(trainer.step_batches()[0])
    assert set(dtypes["student"]) == {torch.bfloat16}  # the student's matmuls under autocast
    assert set(dtypes["teacher"]) == {torch.float32}  # the teacher outside it
    assert all(p.dtype == torch.float32 for p in trainer.teacher.model.parameters())
    assert stats["target_std"] > 0
