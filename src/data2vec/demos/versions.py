"""data2vec 2.0 against data2vec 1.0 on a demo's task: fine-tuned accuracy against pretraining time.

Both versions pretrain the same backbone (the demo's model) on the same unlabeled data, each with
its own recipe (1.0: the demo's; 2.0: ``VERSION2_RECIPES``), and fine-tune the same classifier.

1. Pretraining: each version with ``pretrain_seeds`` seeds, saving the student at three points of
   its run (a third, two thirds, the end). The time of a point is the training loop's own clock
   (updates and their data, not the checkpoint writes; ``Pretrainer.elapsed``).
2. Model choice on the validation split, per version (and for a scratch arm: no pretraining): the
   demo's grid (learning rates x epochs), fine-tuning seed 0, from the final point of pretraining
   seed 0; the best validation accuracy is kept (the first on ties).
3. Test, with each version's chosen point: the final pretraining point of every pretraining seed
   with ``finetune_seeds`` fine-tuning seeds; the earlier points with ``curve_finetune_seeds`` (the
   curve); scratch with pretrain_seeds x finetune_seeds seeds.

Reported per version and point: pretraining seconds (mean over seeds), test accuracies, their mean
and sample standard deviation; and whether 2.0 reaches 1.0's final mean accuracy within
``time_fraction`` of 1.0's final pretraining time. ``versions.png`` plots the curves.
"""

from __future__ import annotations

import json
import math
import shutil
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..pretraining.recipe import Recipe
from ..pretraining.trainer import Pretrainer
from ..training.finetune import accuracy
from .protocol import (
    DemoTask,
    Pending,
    Task,
    _finetune_run,
    default_workers,
    demo_recipe,
    make_executor,
    run_pending,
    sample_std,
)

VERSION2_RECIPES = {
    "vision": "pretrain2-vision-digits.yaml",
    "audio": "pretrain2-speech-tiny.yaml",
    "text": "pretrain2-text-tiny.yaml",
}
VERSION2_STEPS = {"vision": 1000, "audio": 450, "text": 550}  # updates of 2.0 within a third of 1.0's time here
VERSIONS = ("1.0", "2.0")


@dataclass
class Snapshot:
    step: int
    seconds: float  # pretraining time up to this point (the loop's clock)
    state: dict[str, torch.Tensor]  # the student backbone
    last_log: dict[str, Any] | None


@dataclass
class SnapshotPretraining:
    """``pretraining(seed)``: a fresh run of ``recipe`` with that seed in ``out_dir / <name>-seed<seed>``,
    paused (checkpoint saved) at each of ``steps`` to keep the student; the weights are those of a run
    straight through (the loop's batches and random state do not depend on the pauses)."""

    recipe: Recipe
    data: Any
    out_dir: Path
    steps: tuple[int, ...]
    drop_prefixes: tuple[str, ...] = ()

    def __call__(self, seed: int) -> list[Snapshot]:
        folder = Path(self.out_dir) / f"{self.recipe.name}-seed{seed}"
        shutil.rmtree(folder, ignore_errors=True)
        trainer = Pretrainer(self.recipe.replace(seed=seed), self.data, folder, progress=False, tensorboard=False)
        snapshots = []
        try:
            for step in self.steps:
                result = trainer.train(stop_after=step - trainer.step)  # saves a checkpoint and goes on as if not stopped
                if result.interrupted:
                    raise SystemExit(f"pretraining was interrupted at update {result.step}; its checkpoint is in {folder}")
                state = {
                    key: value.detach().clone()
                    for key, value in trainer.model.backbone.state_dict().items()
                    if not key.startswith(self.drop_prefixes)
                }
                snapshots.append(Snapshot(result.step, trainer.elapsed, state, result.last_log))
        finally:
            trainer.close()
        return snapshots


def thirds(total: int) -> tuple[int, ...]:
    """The points of a run of ``total`` updates where the student is kept: a third, two thirds, the end."""
    return tuple(sorted({max(1, round(total / 3)), max(1, round(2 * total / 3)), total}))


def compare_versions(
    task: DemoTask,
    recipes: dict[str, Recipe],
    out_dir: Path,
    *,
    pretrain_seeds: int = 3,
    finetune_seeds: int = 3,
    curve_finetune_seeds: int = 1,
    time_fraction: float = 1 / 3,
    workers: int | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the protocol of this module for ``recipes`` ({"1.0": recipe, "2.0": recipe}, each with its
    total updates) on ``task``; write ``summary.json`` and ``versions.png`` to ``out_dir``."""
    started = time.time()
    out_dir = Path(out_dir)
    workers = default_workers() if workers is None else max(1, workers)
    arms = (*recipes, "scratch")
    points = {version: thirds(recipe.optim.total_steps) for version, recipe in recipes.items()}
    pretrainings = {
        version: SnapshotPretraining(
            task.adapt(recipe), task.data, out_dir, points[version], drop_prefixes=task.drop_prefixes
        )
        for version, recipe in recipes.items()
    }
    shared = Task(None, task.classifier, task.splits["train"], task.splits["validation"], task.settings,
                  task.input_name, task.augment, progress=workers <= 1)  # fmt: skip
    executor = make_executor(shared, workers, log)
    test = task.splits["test"]
    grid_points = task.grid.points()

    snapshots: dict[tuple[str, int], list[Snapshot]] = {}
    validation: dict[str, dict[tuple[float, int], float]] = {arm: {} for arm in arms}
    grid_models: dict[tuple[str, float, int], torch.nn.Module] = {}
    chosen: dict[str, dict[str, float]] = {}
    scores: dict[str, dict[int, dict[str, float]]] = {arm: {} for arm in arms}  # arm -> point index -> run -> accuracy

    def state(arm: str, seed: int, point: int) -> dict[str, torch.Tensor] | None:
        return None if arm == "scratch" else snapshots[(arm, seed)][point].state

    def final(arm: str) -> int:
        return len(points[arm]) - 1 if arm != "scratch" else 0

    def test_runs(arm: str) -> list[tuple[int, int, int, str]]:
        """(point, pretraining seed, fine-tuning seed, key) of the arm's test runs; the first is the
        chosen model-choice run, scored on the test split, not retrained."""
        if arm == "scratch":
            return [(0, 0, seed, f"f{seed}") for seed in range(pretrain_seeds * finetune_seeds)]
        runs = [(final(arm), p, f, f"p{p}-f{f}") for p in range(pretrain_seeds) for f in range(finetune_seeds)]
        for point in range(final(arm)):
            runs += [(point, p, f, f"p{p}-f{f}") for p in range(pretrain_seeds) for f in range(curve_finetune_seeds)]
        return runs

    pending: Pending = []

    def after_pretraining(version: str, seed: int) -> Callable[[list[Snapshot]], None]:
        def record(result: list[Snapshot]) -> None:
            snapshots[(version, seed)] = result
            log(f"{version} pretraining seed {seed}: " + ", ".join(f"update {s.step} at {s.seconds:.0f} s" for s in result)
                + f"; last log {json.dumps(result[-1].last_log)}")  # fmt: skip
        return record

    def after_grid(arm: str, lr: float, epochs: int) -> Callable[[tuple[float, torch.nn.Module]], None]:
        def record(result: tuple[float, torch.nn.Module]) -> None:
            validation[arm][(lr, epochs)] = result[0]
            grid_models[(arm, lr, epochs)] = result[1]
            log(f"{arm:8s} lr {lr:g}, {epochs} epochs: validation {result[0]:.1%}")
            if len(validation[arm]) == len(grid_points):
                best = max(grid_points, key=lambda point: validation[arm][point])
                chosen[arm] = {"learning_rate": best[0], "epochs": best[1], "accuracy": validation[arm][best]}
                log(f"{arm}: chose lr {best[0]:g}, {best[1]} epochs")
                model = grid_models.pop((arm, *best))
                for point in grid_points:
                    grid_models.pop((arm, *point), None)
                point, _, _, key = test_runs(arm)[0]
                scores[arm].setdefault(point, {})[key] = accuracy(model, test.inputs, test.labels, task.input_name)
        return record

    def after_test(arm: str, point: int, key: str) -> Callable[[tuple[float, torch.nn.Module]], None]:
        def record(result: tuple[float, torch.nn.Module]) -> None:
            scores[arm].setdefault(point, {})[key] = accuracy(result[1], test.inputs, test.labels, task.input_name)
        return record

    for seed in range(pretrain_seeds):  # the versions' pretrainings side by side
        for version in recipes:
            pending.append((lambda: True, pretrainings[version], lambda s=seed: (s,), after_pretraining(version, seed)))
    for arm in arms:
        for lr, epochs in grid_points:
            pending.append((
                (lambda arm=arm: arm == "scratch" or (arm, 0) in snapshots),
                _finetune_run,
                lambda arm=arm, lr=lr, epochs=epochs: (state(arm, 0, final(arm)), lr, epochs, 0, f"{arm} lr {lr:g} x {epochs} ep", True),
                after_grid(arm, lr, epochs),
            ))  # fmt: skip
    for arm in arms:
        for point, p, f, key in test_runs(arm)[1:]:
            pending.append((
                lambda arm=arm, p=p: arm in chosen and (arm == "scratch" or (arm, p) in snapshots),
                _finetune_run,
                lambda arm=arm, point=point, p=p, f=f, key=key: (
                    state(arm, p, point), chosen[arm]["learning_rate"], int(chosen[arm]["epochs"]), f, f"{arm} {key}", False
                ),
                after_test(arm, point, key),
            ))  # fmt: skip
    total_runs = len(pending)
    log(f"{total_runs} runs: {pretrain_seeds} pretrainings per version, {len(grid_points)} grid points per arm, test runs")
    run_pending(pending, executor, workers, lambda done: log(f"    [{done}/{total_runs} runs, {time.time() - started:.0f} s]"))

    curves: dict[str, list[dict[str, Any]]] = {}
    for arm in arms:
        curves[arm] = []
        for point in sorted(scores[arm]):
            runs = scores[arm][point]
            seconds = [0.0] if arm == "scratch" else [snapshots[(arm, p)][point].seconds for p in range(pretrain_seeds)]
            curves[arm].append({
                "step": 0 if arm == "scratch" else points[arm][point],
                "pretrain_seconds": statistics.mean(seconds),
                "pretrain_seconds_each": [round(value, 1) for value in seconds],
                "test_accuracy": runs,
                "mean": statistics.mean(runs.values()),
                "std": sample_std(list(runs.values())),
            })  # fmt: skip
    one, two = curves["1.0"][-1], curves["2.0"][-1]
    difference = two["mean"] - one["mean"]
    difference_std = math.sqrt(two["std"] ** 2 / len(two["test_accuracy"]) + one["std"] ** 2 / len(one["test_accuracy"]))
    summary = {
        "recipes": {version: recipe.name for version, recipe in recipes.items()},
        "updates": {version: list(points[version]) for version in recipes},
        "grid": {"learning_rates": list(task.grid.learning_rates), "epochs": list(task.grid.epochs)},
        "validation": {
            arm: [{"learning_rate": lr, "epochs": epochs, "accuracy": validation[arm][(lr, epochs)]} for lr, epochs in grid_points]
            for arm in arms
        },
        "chosen": chosen,
        "curves": curves,
        "time_ratio": two["pretrain_seconds"] / one["pretrain_seconds"],
        "accuracy_difference": difference,
        "accuracy_difference_std": difference_std,
        "reached": two["pretrain_seconds"] <= time_fraction * one["pretrain_seconds"] and two["mean"] >= one["mean"],
        "time_fraction": time_fraction,
        "workers": workers,
        "total_seconds": round(time.time() - started, 1),
        "last_logs": {f"{version}-seed{p}": snapshots[(version, p)][-1].last_log for version in recipes for p in range(pretrain_seeds)},
    }
    log("")
    log(report(summary))
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    plot = plot_curves(summary, out_dir / "versions.png")
    log(f"summary: {out_dir / 'summary.json'}" + (f"; plot: {plot}" if plot else ""))
    return summary


def report(summary: dict[str, Any]) -> str:
    lines = [
        "| arm | update | pretraining s (mean of seeds) | test accuracy, every run | mean ± sample std |",
        "|---|---|---|---|---|",
    ]
    for arm, curve in summary["curves"].items():
        for point in curve:
            runs = ", ".join(f"{value:.1%}" for value in point["test_accuracy"].values())
            lines.append(
                f"| {arm} | {point['step']} | {point['pretrain_seconds']:.0f} | {runs} | {point['mean']:.1%} ± {point['std']:.1%} |"
            )
    one, two = summary["curves"]["1.0"][-1], summary["curves"]["2.0"][-1]
    lines.append("")
    lines.append(
        f"2.0 after {two['pretrain_seconds']:.0f} s ({summary['time_ratio']:.2f} of 1.0's {one['pretrain_seconds']:.0f} s): "
        f"{two['mean']:.1%} vs {one['mean']:.1%}, difference {summary['accuracy_difference'] * 100:+.1f} points "
        f"(standard deviation {summary['accuracy_difference_std'] * 100:.1f}); "
        f"reached 1.0's accuracy within {summary['time_fraction']:.2f} of its time: {'yes' if summary['reached'] else 'NO'}"
    )
    return "\n".join(lines)


def plot_curves(summary: dict[str, Any], path: Path) -> Path | None:
    """Test accuracy (mean ± sample std) against pretraining seconds, per version; scratch at 0 s."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # the plot extra is not installed
        return None
    figure, axes = plt.subplots(figsize=(6.4, 4.2))
    scratch = summary["curves"].get("scratch", [])
    for arm, style in (("1.0", "o-"), ("2.0", "s-")):
        curve = summary["curves"][arm]
        x = [0.0] + [point["pretrain_seconds"] for point in curve] if scratch else [point["pretrain_seconds"] for point in curve]
        points = scratch + curve if scratch else curve
        axes.errorbar(x, [100 * p["mean"] for p in points], yerr=[100 * p["std"] for p in points], fmt=style,
                      capsize=3, label=f"data2vec {arm} ({summary['recipes'][arm]})")  # fmt: skip
    one = summary["curves"]["1.0"][-1]
    axes.axhline(100 * one["mean"], color="grey", linestyle=":", linewidth=1)
    axes.axvline(summary["time_fraction"] * one["pretrain_seconds"], color="grey", linestyle="--", linewidth=1,
                 label=f"{summary['time_fraction']:.2f} of 1.0's pretraining time")  # fmt: skip
    axes.set_xlabel("pretraining time per run (s, training loop)")
    axes.set_ylabel("fine-tuned test accuracy (%)")
    axes.set_title("data2vec 2.0 vs 1.0: accuracy against pretraining time")
    axes.legend(fontsize=8)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def run(
    modality: str = "vision",
    out_dir: str | Path | None = None,
    *,
    steps: int | None = None,
    steps2: int | None = None,
    pretrain_seeds: int = 3,
    finetune_seeds: int = 3,
    workers: int | None = None,
) -> dict[str, Any]:
    """``data2vec demo <modality> --versions``: the comparison on the demo of ``modality``, 1.0 with
    ``steps`` updates (the demo's default) and 2.0 with ``steps2`` (``VERSION2_STEPS``)."""
    from importlib import import_module

    out_dir = Path(out_dir or f"runs/{modality}-versions")
    demo = import_module(f".{modality}", __package__)
    task = demo.task(out_dir, steps)
    version2 = demo_recipe(VERSION2_RECIPES[modality], steps2 or VERSION2_STEPS[modality])
    return compare_versions(
        task, {"1.0": task.recipe, "2.0": version2}, out_dir,
        pretrain_seeds=pretrain_seeds, finetune_seeds=finetune_seeds, workers=workers,
    )  # fmt: skip

