"""The fine-tuning loop (``data2vec.training.loop``): learning-rate schedule and layer decay against
their formulas, data order, gradient accumulation and two torchrun processes against one process
with the whole batch, bitwise resume after SIGINT / SIGTERM, atomic checkpoints, early stopping and
the best model, the JSONL log."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from data2vec.training import loop
from data2vec.training.loop import Trainer, TrainSettings, epoch_order, find_checkpoint, warmup_steps_for
from tests.training.loop_worker import (
    BLOCKS,
    ToyModel,
    collate,
    evaluate_loss,
    make_examples,
    main as run_worker,
    save_state,
    toy_layer_id,
    toy_model,
)

REPOSITORY = Path(__file__).resolve().parents[2]


def settings(**changes) -> TrainSettings:
    base = TrainSettings(epochs=2, batch_size=4, learning_rate=1e-2, weight_decay=0.01, warmup_ratio=0.2, log_every=1)
    return dataclasses.replace(base, **changes)


def trainer(output_dir, train_settings, examples, model=None, **options) -> Trainer:
    options.setdefault("save", save_state)
    options.setdefault("progress", False)
    return Trainer(model if model is not None else toy_model(), examples, options.pop("collate", collate),
                   train_settings, output_dir, **options)


def read_log(output_dir) -> list[dict]:
    return [json.loads(line) for line in (Path(output_dir) / "log.jsonl").read_text().splitlines()]


def saved(path) -> dict:
    return torch.load(path, weights_only=True)


def assert_same_weights(first: dict, second: dict) -> None:
    assert first.keys() == second.keys()
    for name in first:
        assert torch.equal(first[name], second[name]), f"{name} differs"


# ---------------------------------------------------------------------------- schedule and groups
@pytest.mark.parametrize("schedule", ["linear", "cosine", "constant"])
def test_learning_rate_follows_warmup_then_decay(tmp_path, schedule):
    # 20 examples / batch 4 = 5 steps per epoch, 2 epochs = 10 steps; warmup ceil(0.3 * 10) = 3 steps
    run = trainer(tmp_path, settings(schedule=schedule, warmup_ratio=0.3), make_examples(20))
    assert (run.total_steps, run.warmup_steps) == (10, 3)
    run.train()
    lrs = [record["lr"] for record in read_log(tmp_path) if "loss" in record]

    def expected(done: int) -> float:  # the lr of the step after `done` steps
        if done < 3:
            return 1e-2 * (done + 1) / 3
        progress = (done - 3) / (10 - 3)
        return 1e-2 * {"linear": 1 - progress, "cosine": 0.5 * (1 + math.cos(math.pi * progress)), "constant": 1.0}[schedule]

    assert lrs == pytest.approx([expected(done) for done in range(10)], rel=1e-12, abs=0)
    assert lrs[2] == lrs[3] == pytest.approx(1e-2)  # the peak at the end of warmup


def test_warmup_steps_round_up_without_float_noise():
    assert 0.07 * 100 > 7  # 7.000000000000001
    assert warmup_steps_for(100, 0.07) == 7
    assert warmup_steps_for(10, 0.25) == 3
    assert warmup_steps_for(10, 0.0) == 0


def test_layer_decay_gives_each_layer_its_learning_rate(tmp_path):
    model = toy_model()
    model.embed.bias.requires_grad = False  # frozen: in no group
    run = trainer(tmp_path, settings(layer_decay=0.5, weight_decay=0.05, max_steps=3), make_examples(16), model=model,
                  layer_id=toy_layer_id, num_layers=BLOCKS)
    groups = run.optimizer.param_groups
    found = {id(parameter): group for group in groups for parameter in group["params"]}
    assert sum(len(group["params"]) for group in groups) == len(found)  # each parameter once
    names = 0
    for name, parameter in model.named_parameters():
        if name == "embed.bias":
            assert id(parameter) not in found
            continue
        names += 1
        group = found[id(parameter)]
        prefix = name.split(".")[0]  # embed -> 0, blocks.i -> i + 1, norm and head -> 3
        layer = 0 if prefix == "embed" else int(name.split(".")[1]) + 1 if prefix == "blocks" else 3
        assert group["layer_id"] == layer, name
        assert group["initial_lr"] == pytest.approx(1e-2 * 0.5 ** (2 + 1 - layer), rel=1e-12), name
        assert group["weight_decay"] == (0.0 if parameter.ndim == 1 else 0.05), name
    assert names == len(found)
    assert {group["layer_id"] for group in groups} == {0, 1, 2, 3}
    run.train()
    factor = loop.lr_factor(3, 3, 1, "linear")  # after the last step
    for group in groups:
        assert group["lr"] == pytest.approx(group["initial_lr"] * factor, rel=1e-12)


# ---------------------------------------------------------------------------- data order
def test_data_order_is_a_seeded_permutation_per_epoch_with_the_short_batch_kept(tmp_path):
    seen: list[list[float]] = []

    def recording(examples):
        seen.append([example["index"] for example in examples])
        return collate(examples)

    examples = [{**example, "index": index} for index, example in enumerate(make_examples(10))]
    trainer(tmp_path, settings(seed=3), examples, collate=recording).train()
    assert [len(batch) for batch in seen] == [4, 4, 2, 4, 4, 2]
    for epoch in range(2):
        order = sum(seen[3 * epoch : 3 * epoch + 3], [])
        assert order == epoch_order(10, 3, epoch).tolist()
        assert sorted(order) == list(range(10))
    assert seen[:3] != seen[3:]


def test_random_collate_is_seeded_per_batch_so_workers_change_nothing(tmp_path):
    def noisy(examples):  # like masked-LM masking: randomness inside collate
        batch = collate(examples)
        batch["features"] = batch["features"] + 0.1 * torch.randn(batch["features"].shape)
        return batch

    examples = make_examples(12)
    trainer(tmp_path / "main", settings(), examples, collate=noisy).train()
    trainer(tmp_path / "workers", settings(num_workers=1), examples, collate=noisy).train()
    assert_same_weights(saved(tmp_path / "main" / "model.pt"), saved(tmp_path / "workers" / "model.pt"))


# ---------------------------------------------------------------------------- equal gradients
def test_gradient_accumulation_equals_one_batch_twice_as_large(tmp_path):
    examples = make_examples(22)  # batches of 4: 4 4 | 4 4 | 4 2 ; of 8: 8 | 8 | 6
    accumulated = trainer(tmp_path / "accumulated", settings(gradient_accumulation=2), examples).train()
    whole = trainer(tmp_path / "whole", settings(batch_size=8), examples).train()
    assert accumulated == whole == {"step": 6, "best_metric": None, "best_step": 6, "stopped_early": False,
                                    "interrupted": False}
    first, second = saved(tmp_path / "accumulated" / "model.pt"), saved(tmp_path / "whole" / "model.pt")
    initial = toy_model().state_dict()
    for name in first:
        torch.testing.assert_close(first[name], second[name], rtol=0, atol=1e-6)
        assert not torch.equal(first[name], initial[name]), name  # it trained
    # without evaluate the output folder holds the last model: the checkpoint's
    assert_same_weights(first, saved(tmp_path / "accumulated" / "checkpoint" / "model.pt"))
    losses = [[record["loss"] for record in read_log(tmp_path / name)] for name in ("accumulated", "whole")]
    assert losses[0] == pytest.approx(losses[1], rel=1e-6)


def test_two_torchrun_processes_equal_one_process_with_the_global_batch(tmp_path):
    torchrun = Path(sys.executable).parent / "torchrun"
    if not torchrun.is_file():
        pytest.skip("torchrun is not installed beside this Python")
    # 19 examples, global batch 8: 8 | 8 | 3, so rank 1's slice of the last batch is empty
    command = [str(torchrun), "--standalone", "--nproc_per_node", "2",
               "-m", "tests.training.loop_worker", str(tmp_path / "two"), "4", "19"]
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPOSITORY)}
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=environment, cwd=REPOSITORY)
    assert done.returncode == 0, done.stdout + done.stderr

    run_worker(str(tmp_path / "one"), "8", "19")
    one, two = (saved(tmp_path / name / "checkpoint" / "trainer_state.pt") for name in ("one", "two"))
    assert one["step"] == two["step"] == 6
    assert (one["world_size"], len(one["rng"]), two["world_size"], len(two["rng"])) == (1, 1, 2, 2)
    for name in one["model"]:
        torch.testing.assert_close(one["model"][name], two["model"][name], rtol=0, atol=1e-5)
    assert one["best_step"] == two["best_step"]
    logs = [read_log(tmp_path / name) for name in ("one", "two")]
    assert [sorted(record) for record in logs[0]] == [sorted(record) for record in logs[1]]
    for first, second in zip(*logs):
        for key in first:
            assert first[key] == pytest.approx(second[key], rel=1e-5), key


# ---------------------------------------------------------------------------- resume
@pytest.mark.parametrize("signal_number", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_run_stopped_by_a_signal_and_resumed_equals_an_uninterrupted_run(tmp_path, signal_number):
    """Dropout 0.2, so the random state must be restored too; 3 steps per epoch, stop inside epoch 2."""
    examples, evaluation = make_examples(22), make_examples(8, seed=1)
    train_settings = settings(epochs=3, gradient_accumulation=2, eval_every=2, schedule="cosine")

    def evaluate(model):
        torch.rand(3)  # an evaluation that draws random numbers changes nothing in the training
        return evaluate_loss(evaluation)(model)

    straight = trainer(tmp_path / "straight", train_settings, examples, model=toy_model(dropout=0.2),
                       evaluate=evaluate).train()
    assert straight["step"] == 9 and not straight["interrupted"]

    calls = []
    handler = signal.getsignal(signal_number)

    def signalling(batch_examples):
        calls.append(len(batch_examples))
        if len(calls) == 7:  # the first micro-batch of step 4
            os.kill(os.getpid(), signal_number)
        return collate(batch_examples)

    resumed_dir = tmp_path / "resumed"
    stopped = trainer(resumed_dir, train_settings, examples, model=toy_model(dropout=0.2), evaluate=evaluate,
                      collate=signalling).train()
    assert stopped["step"] == 4 and stopped["interrupted"] and not stopped["stopped_early"]
    state = saved(resumed_dir / "checkpoint" / "trainer_state.pt")
    assert (state["step"], state["epoch"], state["batches_done"]) == (4, 1, 2)
    assert signal.getsignal(signal_number) == handler  # the trainer's handler is gone again
    with pytest.raises(FileExistsError, match="--resume"):
        trainer(resumed_dir, train_settings, examples, evaluate=evaluate).train()

    fresh_weights = toy_model(seed=5, dropout=0.2)  # other initial weights: the checkpoint's must win
    resumed = trainer(resumed_dir, train_settings, examples, model=fresh_weights, evaluate=evaluate).train(resume=True)
    assert resumed == straight

    final = [saved(folder / "checkpoint" / "trainer_state.pt") for folder in (tmp_path / "straight", resumed_dir)]
    assert_same_weights(final[0]["model"], final[1]["model"])
    for index, values in final[0]["optimizer"]["state"].items():
        for key, value in values.items():
            assert torch.equal(value, final[1]["optimizer"]["state"][index][key]), f"optimizer {index}.{key}"
    assert final[0]["scheduler"]["last_epoch"] == final[1]["scheduler"]["last_epoch"] == 9
    assert_same_weights(saved(tmp_path / "straight" / "model.pt"), saved(resumed_dir / "model.pt"))  # best models
    assert read_log(tmp_path / "straight") == read_log(resumed_dir)


def test_evaluations_leave_the_training_random_state_alone(tmp_path):
    """Dropout 0.2: an evaluation that draws random numbers after every step changes no weight."""
    def evaluate(model):
        torch.rand(5)
        return {"loss": 0.0}

    examples, train_settings = make_examples(12), settings(eval_every=1)
    trainer(tmp_path / "plain", train_settings, examples, model=toy_model(dropout=0.2)).train()
    trainer(tmp_path / "evaluated", train_settings, examples, model=toy_model(dropout=0.2), evaluate=evaluate).train()
    plain, evaluated = (saved(tmp_path / name / "checkpoint" / "trainer_state.pt") for name in ("plain", "evaluated"))
    assert_same_weights(plain["model"], evaluated["model"])


class Crash(Exception):
    """A simulated kill."""


@pytest.mark.parametrize("moment", ["while_writing", "before_swap", "between_renames"])
def test_a_killed_checkpoint_write_leaves_a_readable_checkpoint(tmp_path, monkeypatch, moment):
    examples, train_settings = make_examples(16), settings(max_steps=4, eval_every=2)
    trainer(tmp_path / "straight", train_settings, examples).train()

    out = tmp_path / "killed"
    real_replace, real_save = os.replace, save_state

    def replace(source, target):
        source = Path(source)
        if moment == "before_swap" and source.name == "checkpoint":  # first rename: checkpoint -> .checkpoint.old
            raise Crash
        if moment == "between_renames" and source.name == ".checkpoint.tmp" and (out / ".checkpoint.old").exists():
            raise Crash
        return real_replace(source, target)

    def save(model, folder):
        if moment == "while_writing" and folder.name == ".checkpoint.tmp" and (out / "checkpoint").exists():
            raise Crash
        real_save(model, folder)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(Crash):  # at the checkpoint of step 4 (step 2's was written)
        trainer(out, train_settings, examples, save=save).train()
    monkeypatch.undo()
    left = sorted(path.name for path in out.iterdir() if "checkpoint" in path.name)
    if moment == "between_renames":
        assert left == [".checkpoint.old", ".checkpoint.tmp"]
    else:  # the previous checkpoint and the new one (complete or not) beside it
        assert left == [".checkpoint.tmp", "checkpoint"]
        assert (out / ".checkpoint.tmp" / "trainer_state.pt").is_file() == (moment == "before_swap")

    folder = find_checkpoint(out)
    assert folder == out / "checkpoint"
    assert sorted(path.name for path in out.iterdir() if "checkpoint" in path.name) == ["checkpoint"]
    state = saved(folder / "trainer_state.pt")
    assert state["step"] == (4 if moment == "between_renames" else 2)  # the new one once complete, else the old
    assert_same_weights(state["model"], saved(folder / "model.pt"))

    result = trainer(out, train_settings, examples).train(resume=True)
    assert result["step"] == 4
    straight = saved(tmp_path / "straight" / "checkpoint" / "trainer_state.pt")
    assert_same_weights(straight["model"], saved(out / "checkpoint" / "trainer_state.pt")["model"])


# ---------------------------------------------------------------------------- evaluation
def test_early_stopping_keeps_the_best_model_in_the_output_folder(tmp_path):
    scores = iter([0.5, 0.7, 0.6, 0.7, 0.65, 0.9])
    snapshots = {}

    def evaluate(model):
        snapshots[len(snapshots) + 1] = {name: value.clone() for name, value in model.state_dict().items()}
        assert not model.training
        return {"accuracy": next(scores)}

    train_settings = settings(max_steps=20, eval_every=1, early_stopping_patience=3)
    run = trainer(tmp_path, train_settings, make_examples(16), evaluate=evaluate, metric="accuracy",
                  greater_is_better=True)
    result = run.train()
    # best at evaluation 2; 0.6, 0.7 (not better) and 0.65 are three without improvement
    assert result == {"step": 5, "best_metric": 0.7, "best_step": 2, "stopped_early": True, "interrupted": False}
    assert_same_weights(saved(tmp_path / "model.pt"), snapshots[2])
    assert not torch.equal(saved(tmp_path / "model.pt")["head.weight"], snapshots[5]["head.weight"])
    assert [record["eval_accuracy"] for record in read_log(tmp_path) if "eval_accuracy" in record] == [
        0.5, 0.7, 0.6, 0.7, 0.65
    ]
    state = saved(tmp_path / "checkpoint" / "trainer_state.pt")
    assert (state["step"], state["bad_evaluations"], state["stopped_early"]) == (5, 3, True)
    again = trainer(tmp_path, train_settings, make_examples(16), evaluate=evaluate, metric="accuracy",
                    greater_is_better=True).train(resume=True)
    assert again == result  # an early-stopped run stays stopped


def test_log_holds_training_and_evaluation_records(tmp_path):
    examples, evaluation = make_examples(12), evaluate_loss(make_examples(8, seed=1))
    # 3 steps per epoch, 2 epochs; log every 2 steps; evaluation at the end of each epoch
    trainer(tmp_path / "every2", settings(log_every=2), examples, evaluate=evaluation).train()
    trainer(tmp_path / "every1", settings(log_every=1), examples, evaluate=evaluation).train()
    log = read_log(tmp_path / "every2")
    assert [(record["step"], "eval_loss" in record) for record in log] == [
        (2, False), (3, True), (4, False), (6, False), (6, True)
    ]
    assert [record["epoch"] for record in log] == [0.6667, 1.0, 1.3333, 2.0, 2.0]
    training = [record for record in log if "loss" in record]
    assert all(sorted(record) == ["epoch", "loss", "lr", "step"] for record in training)
    assert all(sorted(record) == ["epoch", "eval_accuracy", "eval_loss", "step"] for record in log if "eval_loss" in record)
    per_step = [record["loss"] for record in read_log(tmp_path / "every1") if "loss" in record]
    assert [record["loss"] for record in training] == pytest.approx(
        [sum(per_step[0:2]) / 2, sum(per_step[2:4]) / 2, sum(per_step[4:6]) / 2], rel=1e-12
    )
    # the model's own loss on the evaluation examples, with the saved best weights
    best_model = toy_model()
    best_model.load_state_dict(saved(tmp_path / "every2" / "model.pt"))
    best_model.eval()
    with torch.no_grad():
        expected = evaluation(best_model)["loss"]
    best = min((record for record in log if "eval_loss" in record), key=lambda record: record["eval_loss"])
    assert best["eval_loss"] == pytest.approx(expected, rel=1e-6)


def test_progress_bar_shows_loss_and_learning_rate(tmp_path, capsys):
    trainer(tmp_path, settings(max_steps=2), make_examples(8), progress=True).train()
    error = capsys.readouterr().err
    assert "fine-tune" in error and "loss=" in error and "lr=" in error


# ---------------------------------------------------------------------------- precision and freezing
def test_bf16_autocast_runs_the_model_in_bfloat16(tmp_path):
    dtypes = []
    model = toy_model()
    model.head.register_forward_hook(lambda module, inputs, output: dtypes.append(output.dtype))
    result = trainer(tmp_path, settings(max_steps=2, precision="bf16"), make_examples(8), model=model).train()
    assert result["step"] == 2 and set(dtypes) == {torch.bfloat16}
    assert all(math.isfinite(record["loss"]) for record in read_log(tmp_path))
    assert model.head.weight.dtype == torch.float32  # the weights stay float32


def test_bf16_on_a_gpu_without_it_is_an_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *args, **kwargs: "Old GPU")
    with pytest.raises(ValueError, match=r"Old GPU\) does not support bf16: use precision fp32"):
        loop._check_precision("bf16", torch.device("cuda", 0))
    loop._check_precision("fp32", torch.device("cuda", 0))


class ToyAudioModel(ToyModel):
    def freeze_feature_encoder(self) -> None:
        for parameter in self.embed.parameters():
            parameter.requires_grad = False


def test_freeze_feature_encoder_keeps_the_feature_encoder_fixed(tmp_path):
    torch.manual_seed(0)
    model = ToyAudioModel()
    before = {name: value.clone() for name, value in model.state_dict().items()}
    run = trainer(tmp_path, settings(max_steps=3, freeze_feature_encoder=True), make_examples(12), model=model)
    trained = {id(parameter) for group in run.optimizer.param_groups for parameter in group["params"]}
    assert not any(id(parameter) in trained for parameter in model.embed.parameters())
    run.train()
    assert torch.equal(model.embed.weight, before["embed.weight"])
    assert not torch.equal(model.head.weight, before["head.weight"])
    with pytest.raises(ValueError, match="no feature encoder to freeze"):
        trainer(tmp_path / "plain", settings(freeze_feature_encoder=True), make_examples(12))


# ---------------------------------------------------------------------------- mistakes
@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"schedule": "exponential"}, "unknown schedule 'exponential'"),
        ({"precision": "fp16"}, "unknown precision 'fp16'"),
        ({"batch_size": 0}, "batch_size must be a whole number of at least 1"),
        ({"warmup_ratio": 1.5}, "warmup_ratio must be between 0 and 1"),
        ({"layer_decay": 0.0}, r"layer_decay must be in \(0, 1\]"),
    ],
)
def test_bad_settings_are_named(changes, message):
    with pytest.raises(ValueError, match=message):
        settings(**changes)


def test_mistakes_in_the_call_are_explained(tmp_path):
    examples = make_examples(8)
    with pytest.raises(ValueError, match="layer_decay needs layer_id"):
        trainer(tmp_path / "a", settings(layer_decay=0.9), examples)
    with pytest.raises(ValueError, match="layer_id\\('embed.weight'\\) is 7"):
        trainer(tmp_path / "a", settings(layer_decay=0.9), examples, layer_id=lambda name: 7, num_layers=BLOCKS)
    with pytest.raises(ValueError, match="early_stopping_patience needs evaluation data"):
        trainer(tmp_path / "a", settings(early_stopping_patience=2), examples)
    with pytest.raises(ValueError, match="no training examples"):
        trainer(tmp_path / "a", settings(), [])
    with pytest.raises(ValueError, match="returned no 'f1' \\(it returned loss, accuracy\\)"):
        trainer(tmp_path / "b", settings(max_steps=1), examples, evaluate=evaluate_loss(examples), metric="f1").train()

    trainer(tmp_path / "c", settings(max_steps=2), examples).train()
    with pytest.raises(ValueError, match=r"another data layout \(examples 8 -> 12"):
        trainer(tmp_path / "c", settings(max_steps=4), make_examples(12)).train(resume=True)
    more = trainer(tmp_path / "c", settings(max_steps=4), examples).train(resume=True)  # a longer run goes on
    assert more["step"] == 4
