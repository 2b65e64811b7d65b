"""Run curves (``data2vec.training.plots``): the PNG plots of pretraining and fine-tuning logs with
matplotlib, the one warning without it, and the TensorBoard copy of the logged scalars."""

from __future__ import annotations

import json
import logging
import sys

import numpy as np
import pytest
from PIL import Image

from data2vec.training import plots
from data2vec.training.loop import Trainer, TrainSettings
from data2vec.training.plots import PLOT_EXTRA, ScalarLog, plot_finetuning, plot_pretraining, read_log
from tests.training.loop_worker import collate, evaluate_loss, make_examples, save_state, toy_model

LOSS_BLUE = (31, 119, 180)  # the first series' colour


def write_log(path, records: list[dict]) -> None:
    path.write_text("".join(json.dumps(record) + "\n" for record in records))


def pretraining_records() -> list[dict]:
    records = [
        {"step": step, "loss": 2.0 / step, "lr": 1e-3, "ema_decay": 0.999, "target_std": 0.5 + 0.01 * step,
         "prediction_std": 0.3 + 0.02 * step, "seconds": step * 1.5}
        for step in range(1, 21)
    ]
    records.insert(10, {"step": 10, "event": "schedule_changed", "changes": {"optim.total_steps": [10, 20]}})
    return records


def finetuning_records(with_eval: bool) -> list[dict]:
    records = []
    for step in range(1, 13):
        records.append({"step": step, "epoch": step / 4, "loss": 1.5 / step, "lr": 1e-3 * min(1.0, step / 3)})
        if with_eval and step % 4 == 0:
            records.append({"step": step, "epoch": step / 4, "eval_loss": 1.0 / step, "eval_accuracy": 0.2 * step / 4})
    return records


def pixels_of(path, color) -> int:
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("RGB")).astype(int)
    return int((np.abs(pixels - color).sum(-1) < 30).sum())


def hide_module(monkeypatch, name: str) -> None:
    """Make ``import name`` (and its submodules) fail as if the package were not installed."""
    for loaded in [module for module in sys.modules if module == name or module.startswith(name + ".")]:
        monkeypatch.setitem(sys.modules, loaded, None)
    monkeypatch.setitem(sys.modules, name, None)


# ---------------------------------------------------------------------------- plots
def test_pretraining_plot_is_a_png_of_two_panels(tmp_path):
    pytest.importorskip("matplotlib")
    write_log(tmp_path / "log.jsonl", pretraining_records())
    path = plot_pretraining(tmp_path / "log.jsonl", tmp_path / "loss.png", min_target_std=0.05, min_prediction_std=0.01)
    assert path == tmp_path / "loss.png"
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == (900, 720)
        image.verify()
    assert pixels_of(path, LOSS_BLUE) > 200  # the loss and the target std lines
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically


def test_finetuning_plot_has_an_evaluation_panel_only_with_evaluations(tmp_path):
    pytest.importorskip("matplotlib")
    for with_eval, height in ((True, 900), (False, 600)):  # 3 panels (loss, evaluation, lr) or 2
        folder = tmp_path / str(with_eval)
        folder.mkdir()
        write_log(folder / "log.jsonl", finetuning_records(with_eval))
        path = plot_finetuning(folder / "log.jsonl", folder / "curves.png")
        with Image.open(path) as image:
            assert image.format == "PNG" and image.size == (900, height)
        assert pixels_of(path, LOSS_BLUE) > 100


def test_empty_log_still_draws(tmp_path):
    pytest.importorskip("matplotlib")
    path = plot_finetuning(tmp_path / "missing.jsonl", tmp_path / "curves.png")  # panels saying "no data"
    with Image.open(path) as image:
        assert image.size == (900, 600)


def test_without_matplotlib_no_plot_and_one_warning(tmp_path, monkeypatch, caplog):
    hide_module(monkeypatch, "matplotlib")
    write_log(tmp_path / "log.jsonl", finetuning_records(True))
    caplog.set_level(logging.WARNING, logger="data2vec.training.plots")
    for _ in range(3):  # three checkpoints of one run
        assert plot_finetuning(tmp_path / "log.jsonl", tmp_path / "curves.png") is None
    assert not (tmp_path / "curves.png").exists()
    warnings = [record.getMessage() for record in caplog.records if record.name == plots.__name__]
    assert len(warnings) == 1 and PLOT_EXTRA in warnings[0] and "curves.png" in warnings[0]


# ---------------------------------------------------------------------------- log and TensorBoard
def tensorboard_scalars(folder) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder))
    events.Reload()
    return {tag: [(event.step, event.value) for event in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_scalar_log_writes_the_log_and_tensorboard_scalars(tmp_path):
    pytest.importorskip("tensorboard")
    log = ScalarLog(tmp_path / "log.jsonl")
    records = finetuning_records(True)[:6] + [{"step": 5, "event": "note", "changes": {"a": [1, 2]}, "flag": True}]
    for record in records:
        log.append(record)
    log.close()
    assert read_log(tmp_path / "log.jsonl") == records
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    scalars = tensorboard_scalars(tmp_path / "tensorboard")
    assert set(scalars) == {"epoch", "loss", "lr", "eval_loss", "eval_accuracy"}  # numbers only, not flags
    assert [step for step, _ in scalars["loss"]] == [1, 2, 3, 4, 5]
    assert scalars["eval_accuracy"] == [(4, pytest.approx(0.2))]
    assert scalars["loss"][1][1] == pytest.approx(0.75)


def test_a_resumed_scalar_log_hides_the_steps_after_the_checkpoint(tmp_path):
    pytest.importorskip("tensorboard")
    first = ScalarLog(tmp_path / "log.jsonl")
    for step in range(1, 6):  # the first attempt logged steps 1-5; its checkpoint is at step 3
        first.append({"step": step, "loss": float(step)})
    first.close()
    resumed = ScalarLog(tmp_path / "log.jsonl", resumed_at=3)
    for step in (4, 5, 6):
        resumed.append({"step": step, "loss": 10.0 * step})
    resumed.close()
    assert tensorboard_scalars(tmp_path / "tensorboard")["loss"] == [
        (1, 1.0), (2, 2.0), (3, 3.0), (4, 40.0), (5, 50.0), (6, 60.0)
    ]


def test_without_tensorboard_only_the_log(tmp_path, monkeypatch, caplog):
    hide_module(monkeypatch, "torch.utils.tensorboard")
    caplog.set_level(logging.WARNING)
    log = ScalarLog(tmp_path / "log.jsonl")
    log.append({"step": 1, "loss": 0.5})
    log.close()
    assert read_log(tmp_path / "log.jsonl") == [{"step": 1, "loss": 0.5}]
    assert not (tmp_path / "tensorboard").exists()
    assert not caplog.records  # no warning for the optional TensorBoard


# ---------------------------------------------------------------------------- the fine-tuning loop
def test_finetuning_run_writes_curves_and_tensorboard(tmp_path):
    pytest.importorskip("matplotlib")
    pytest.importorskip("tensorboard")
    settings = TrainSettings(epochs=2, batch_size=4, learning_rate=1e-2, log_every=1)
    trainer = Trainer(toy_model(), make_examples(16), collate, settings, tmp_path, save=save_state, progress=False,
                      evaluate=evaluate_loss(make_examples(8, seed=1)), metric="accuracy", greater_is_better=True)
    trainer.train()
    trainer.close()
    with Image.open(tmp_path / "curves.png") as image:
        assert image.size == (900, 900)  # loss (train + eval), evaluation (accuracy), learning rate
    scalars = tensorboard_scalars(tmp_path / "tensorboard")
    assert [step for step, _ in scalars["loss"]] == list(range(1, 9))
    assert [step for step, _ in scalars["eval_accuracy"]] == [4, 8]
