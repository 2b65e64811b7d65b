"""The comparison protocol of the pretraining demos, the same for every modality.

Two arms, the same model: initialised from a data2vec-pretrained backbone, or at random.

1. Pretrain ``pretrain_seeds`` backbones (seeds 0, 1, ...) on the unlabeled data.
2. Model choice, on the validation split only (carved from the labeled data; the test split is
   never looked at): each arm fine-tunes every point of the same grid (learning rates x
   epochs) once, with fine-tuning seed 0 (the data2vec arm from pretraining seed 0), and keeps
   the point with the best validation accuracy (the first on ties).
3. Test: the data2vec arm fine-tunes each pretrained backbone with ``finetune_seeds`` seeds; the
   scratch arm runs as many fine-tunings, with seeds 0 .. pretrain_seeds x finetune_seeds - 1. A
   fine-tuning seed fixes the head's (and, from scratch, the whole model's) initialisation and
   the data order.

Reported: every test accuracy, the mean and the *sample* standard deviation of each arm, the gain
(difference of the means) and its standard deviation sqrt(s1^2 / n1 + s2^2 / n2) (the standard
error of a difference of two independent means), and the sample standard deviation of the
per-run gains data2vec(p, f) - scratch(f) (the spread one pair of runs shows).
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..pretraining.recipe import Recipe, resolve_recipe_path
from ..pretraining.trainer import Pretrainer
from ..training.finetune import FinetuneSettings, Inputs, accuracy, finetune

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
    started: float | None = None,
) -> dict[str, Any]:
    """Run the protocol of this module. ``build(state, seed)``: the classifier, from the backbone
    ``state`` (None: random initialisation), its fresh parts seeded with ``seed``. ``started``:
    the ``time.time()`` the wall time counts from (default: now; a demo passes the time before
    it made its data)."""
    started = time.time() if started is None else started
    pretrained: list[Pretrained] = []
    for seed in range(pretrain_seeds):
        log(f"pretraining seed {seed + 1}/{pretrain_seeds}")
        pretrained.append(pretrain(seed))
        log(f"    {pretrained[-1].seconds:.0f} s; last log {json.dumps(pretrained[-1].last_log)}")

    trained: dict[tuple, torch.nn.Module] = {}  # the models of the model choice (pretraining seed 0, seed 0)

    def run(arm: str, p: int, lr: float, epochs: int, seed: int, evaluate: Split, description: str) -> float:
        key = (arm, p, lr, epochs, seed)
        model = trained.get(key)
        if model is None:  # the test run (0, 0) of the chosen point is the model-choice run: not trained twice
            model = build(states[arm][p], seed)
            run_settings = dataclasses.replace(settings, learning_rate=lr, epochs=epochs, seed=seed)
            finetune(model, train.inputs, train.labels, run_settings, input_name=input_name, augment=augment, description=description)
            if evaluate is validation:
                trained[key] = model
        return accuracy(model, evaluate.inputs, evaluate.labels, input_name)

    states = {"data2vec": [p.state for p in pretrained], "scratch": [None] * pretrain_seeds}
    log(f"model choice on the validation split ({len(validation)} items): {len(grid.points())} grid points per arm")
    validation_scores: dict[str, list[dict[str, float]]] = {arm: [] for arm in ARMS}
    chosen: dict[str, dict[str, float]] = {}
    for arm in ARMS:
        for lr, epochs in grid.points():
            score = run(arm, 0, lr, epochs, 0, validation, f"    {arm} lr {lr:g} x {epochs} ep")
            validation_scores[arm].append({"learning_rate": lr, "epochs": epochs, "accuracy": score})
            log(f"    {arm:8s} lr {lr:g}, {epochs} epochs: validation {score:.1%}")
        best = max(validation_scores[arm], key=lambda point: point["accuracy"])  # max keeps the first on ties
        chosen[arm] = best
        log(f"    {arm}: chose lr {best['learning_rate']:g}, {best['epochs']} epochs")

    log(f"test ({len(test)} items): {pretrain_seeds} pretraining x {finetune_seeds} fine-tuning seeds")
    scores: dict[str, dict[str, float]] = {arm: {} for arm in ARMS}
    for arm in ARMS:
        lr, epochs = chosen[arm]["learning_rate"], int(chosen[arm]["epochs"])
        for p in range(pretrain_seeds):
            for f in range(finetune_seeds):
                seed = f if arm == "data2vec" else p * finetune_seeds + f
                key = f"p{p}-f{f}" if arm == "data2vec" else f"f{seed}"
                scores[arm][key] = run(arm, p if arm == "data2vec" else 0, lr, epochs, seed, test, f"    {arm} {key}")
        log(f"    {arm}: " + ", ".join(f"{key} {value:.1%}" for key, value in scores[arm].items()))

    runs = {arm: list(scores[arm].values()) for arm in ARMS}
    paired = [value - scores["scratch"][key.split("-")[1]] for key, value in scores["data2vec"].items()]
    summary = {
        "splits": {"train": len(train), "validation": len(validation), "test": len(test)},
        "parameters": sum(parameter.numel() for parameter in build(None, 0).parameters()),
        "grid": {"learning_rates": list(grid.learning_rates), "epochs": list(grid.epochs)},
        "finetune_settings": dataclasses.asdict(settings),
        "validation": validation_scores,
        "chosen": chosen,
        "test_accuracy": scores,
        "mean": {arm: statistics.mean(scores[arm].values()) for arm in ARMS},
        "std": {arm: sample_std(list(scores[arm].values())) for arm in ARMS},
        "gain_mean": statistics.mean(runs["data2vec"]) - statistics.mean(runs["scratch"]),
        "gain_std": math.sqrt(sum(sample_std(runs[arm]) ** 2 / len(runs[arm]) for arm in ARMS)),
        "paired_gain_std": sample_std(paired),
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
        f"gain {gain:+.1f} points, standard deviation of the gain {spread:.1f} ({verdict} than twice it; "
        f"per-run paired gains spread {summary['paired_gain_std'] * 100:.1f}); "
        f"pretraining {sum(summary['pretrain_seconds']):.0f} s, total {summary['total_seconds']:.0f} s"
    )
    return "\n".join(lines)


def demo_recipe(name: str, total_steps: int) -> Recipe:
    """A recipe of ``recipes/`` for a short demo run: ``total_steps`` updates, 10% warmup, the EMA
    anneal over the whole run, and the collapse watch from twice the warmup on."""
    recipe = Recipe.load(resolve_recipe_path(name)).with_total_steps(total_steps)
    recipe.optim.warmup_steps = max(1, total_steps // 10)
    recipe.ema.anneal_steps = total_steps
    recipe.collapse.check_after = 2 * recipe.optim.warmup_steps
    return recipe


def pretraining(recipe: Recipe, data: Any, out_dir: Path, *, drop_prefixes: tuple[str, ...] = ()) -> Callable[[int], Pretrained]:
    """``pretrain(seed)`` for :func:`compare`: a fresh run of ``recipe`` with that seed in
    ``out_dir / pretrain-seed<seed>``, giving the student backbone's state (without the keys
    starting with ``drop_prefixes``, e.g. a mask token the classifier has no use for)."""

    def pretrain(seed: int) -> Pretrained:
        folder = Path(out_dir) / f"pretrain-seed{seed}"
        shutil.rmtree(folder, ignore_errors=True)
        began = time.time()
        trainer = Pretrainer(recipe.replace(seed=seed), data, folder)
        try:
            result = trainer.train()
            state = {
                key: value.detach().clone()
                for key, value in trainer.model.backbone.state_dict().items()
                if not key.startswith(drop_prefixes)
            }
        finally:
            trainer.close()
        if result.interrupted:
            raise SystemExit(f"pretraining was interrupted at update {result.step}; its checkpoint is in {folder}")
        return Pretrained(state, time.time() - began, result.last_log)

    return pretrain


def classifier(model_class: type, config) -> Callable[[dict[str, torch.Tensor] | None, int], torch.nn.Module]:
    """``build(state, seed)`` for :func:`compare`: ``model_class(config)`` seeded with
    ``1000 + seed`` (so the head, and from scratch the whole model, starts the same in both
    arms), its backbone loaded from ``state`` unless that is None."""

    def build(state, seed: int) -> torch.nn.Module:
        torch.manual_seed(1000 + seed)
        model = model_class(config)
        if state is not None:
            _, unexpected = model.backbone.load_state_dict(state, strict=False)
            if unexpected:
                raise RuntimeError(f"the pretrained backbone has weights the classifier does not know: {unexpected}")
        return model

    return build
