"""The comparison protocol of the pretraining demos, the same for every modality.

Two arms, the same model: initialised from a data2vec-pretrained backbone, or at random.

1. Pretrain ``pretrain_seeds`` backbones (seeds 0, 1, ...) on the unlabeled data.
2. Model choice, on the validation split only (carved from the labeled data; the test split is
   never looked at): each arm fine-tunes every point of the same grid (learning rates x
   epochs) once, with fine-tuning seed 0 (the data2vec arm from pretraining seed 0), and keeps
   the point with the best validation accuracy (the first on ties).
3. Test: the data2vec arm fine-tunes each pretrained backbone with ``finetune_seeds`` seeds; the
   scratch arm the same seeds. A fine-tuning seed fixes the head's (and, from scratch, the whole
   model's) initialisation and the data order, so run (p, f) of the data2vec arm pairs with run f
   of the scratch arm.

Reported: every test accuracy, the mean and the *sample* standard deviation of each arm, and the
gain with the sample standard deviation of the paired per-run gains.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..training.finetune import FinetuneSettings, Inputs, accuracy, as_input_dict, finetune

ARMS = ("data2vec", "scratch")


@dataclass
class Split:
    """Inputs (one tensor or a dict of tensors, first dimension = rows) and their labels."""

    inputs: Inputs
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class Grid:
    learning_rates: Sequence[float]
    epochs: Sequence[int]

    def points(self) -> list[tuple[float, int]]:
        return [(lr, epochs) for lr in self.learning_rates for epochs in self.epochs]


@dataclass
class Pretrained:
    state: dict[str, torch.Tensor]  # backbone state dict
    seconds: float
    last_log: dict[str, Any] | None = None


def sample_std(values: Sequence[float]) -> float:
    """The sample standard deviation (n - 1 in the denominator); 0 for fewer than two values."""
    return statistics.stdev(values) if len(values) > 1 else 0.0


def compare(
    *,
    pretrain: Callable[[int], Pretrained],
    build: Callable[[dict[str, torch.Tensor] | None, int], torch.nn.Module],
    train: Split,
    validation: Split,
    test: Split,
    grid: Grid,
    settings: FinetuneSettings,
    input_name: str,
    pretrain_seeds: int = 3,
    finetune_seeds: int = 3,
    augment: Callable | None = None,
    out_dir: Path | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the protocol of this module. ``build(state, seed)``: the classifier, from the backbone
    ``state`` (None: random initialisation), its fresh parts seeded with ``seed``."""
    started = time.time()
    pretrained: list[Pretrained] = []
    for seed in range(pretrain_seeds):
        log(f"pretraining seed {seed + 1}/{pretrain_seeds}")
        pretrained.append(pretrain(seed))
        log(f"    {pretrained[-1].seconds:.0f} s; last log {json.dumps(pretrained[-1].last_log)}")

    def run(state, lr: float, epochs: int, seed: int, evaluate: Split, description: str) -> float:
        model = build(state, seed)
        run_settings = dataclasses.replace(settings, learning_rate=lr, epochs=epochs, seed=seed)
        finetune(model, train.inputs, train.labels, run_settings, input_name=input_name, augment=augment, description=description)
        return accuracy(model, evaluate.inputs, evaluate.labels, input_name)

    log(f"model choice on the validation split ({len(validation)} items): {len(grid.points())} grid points per arm")
    states = {"data2vec": [p.state for p in pretrained], "scratch": [None] * pretrain_seeds}
    validation_scores: dict[str, list[dict[str, float]]] = {arm: [] for arm in ARMS}
    chosen: dict[str, dict[str, float]] = {}
    for arm in ARMS:
        for lr, epochs in grid.points():
            score = run(states[arm][0], lr, epochs, 0, validation, f"    {arm} lr {lr:g} x {epochs} ep")
            validation_scores[arm].append({"learning_rate": lr, "epochs": epochs, "accuracy": score})
            log(f"    {arm:8s} lr {lr:g}, {epochs} epochs: validation {score:.1%}")
        best = max(validation_scores[arm], key=lambda point: point["accuracy"])  # max keeps the first on ties
        chosen[arm] = best
        log(f"    {arm}: chose lr {best['learning_rate']:g}, {best['epochs']} epochs")

    log(f"test ({len(test)} items): {pretrain_seeds} pretraining x {finetune_seeds} fine-tuning seeds")
    scores: dict[str, dict[str, float]] = {arm: {} for arm in ARMS}
    for arm in ARMS:
        lr, epochs = chosen[arm]["learning_rate"], int(chosen[arm]["epochs"])
        for p, state in enumerate(states[arm] if arm == "data2vec" else [None]):
            for f in range(finetune_seeds):
                key = f"p{p}-f{f}" if arm == "data2vec" else f"f{f}"
                scores[arm][key] = run(state, lr, epochs, f, test, f"    {arm} {key}")
        log(f"    {arm}: " + ", ".join(f"{key} {value:.1%}" for key, value in scores[arm].items()))

    gains = [value - scores["scratch"][key.split("-")[1]] for key, value in scores["data2vec"].items()]
    summary = {
        "splits": {"train": len(train), "validation": len(validation), "test": len(test)},
        "grid": {"learning_rates": list(grid.learning_rates), "epochs": list(grid.epochs)},
        "finetune_settings": dataclasses.asdict(settings),
        "validation": validation_scores,
        "chosen": chosen,
        "test_accuracy": scores,
        "mean": {arm: statistics.mean(scores[arm].values()) for arm in ARMS},
        "std": {arm: sample_std(list(scores[arm].values())) for arm in ARMS},
        "gain_mean": statistics.mean(gains),
        "gain_std": sample_std(gains),
        "pretrain_seconds": [round(p.seconds, 1) for p in pretrained],
        "pretrain_last_log": [p.last_log for p in pretrained],
        "total_seconds": round(time.time() - started, 1),
    }
    log("")
    log(report(summary))
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        log(f"summary: {out_dir / 'summary.json'}")
    return summary


def report(summary: dict[str, Any]) -> str:
    """The summary as a markdown table and a line on the gain."""
    lines = ["| initialisation | chosen lr, epochs | test accuracy, every run | mean ± sample std |", "|---|---|---|---|"]
    for arm in ARMS:
        runs = ", ".join(f"{value:.1%}" for value in summary["test_accuracy"][arm].values())
        chosen = summary["chosen"][arm]
        lines.append(
            f"| {arm} | {chosen['learning_rate']:g}, {int(chosen['epochs'])} | {runs} | "
            f"{summary['mean'][arm]:.1%} ± {summary['std'][arm]:.1%} |"
        )
    gain, spread = summary["gain_mean"] * 100, summary["gain_std"] * 100
    verdict = "more" if gain > 2 * spread else "NOT more"
    lines.append("")
    lines.append(
        f"gain {gain:+.1f} points, sample std of the paired per-run gains {spread:.1f} ({verdict} than twice it); "
        f"pretraining {sum(summary['pretrain_seconds']):.0f} s, total {summary['total_seconds']:.0f} s"
    )
    return "\n".join(lines)


def take(inputs: Inputs, index: torch.Tensor, input_name: str) -> Inputs:
    """Rows ``index`` of one tensor or of every tensor of a dict."""
    if isinstance(inputs, dict):
        return {name: value[index] for name, value in as_input_dict(inputs, input_name).items()}
    return inputs[index]
