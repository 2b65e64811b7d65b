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
import multiprocessing
import os
import shutil
import statistics
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
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
class DemoTask:
    """A demo's task, ready for :func:`compare` (or for another comparison of pretrainings, as
    ``demos.versions``): its pretraining recipe and data, the labeled splits, the fine-tuning grid and
    settings, and the classifier. ``recipe_data``: values of the recipe's ``data`` section that any
    recipe pretrained on this data needs (text: the task's tokenizer folder)."""

    recipe: Recipe
    data: Any
    splits: dict[str, Split]
    grid: Grid
    settings: FinetuneSettings
    classifier: Classifier
    input_name: str
    augment: Callable | None = None
    drop_prefixes: tuple[str, ...] = ()  # backbone weights the classifier does not use (a mask token)
    recipe_data: dict[str, Any] = dataclasses.field(default_factory=dict)

    def pretraining(self, out_dir: Path, recipe: Recipe | None = None) -> Pretraining:
        return Pretraining(self.adapt(recipe or self.recipe), self.data, out_dir, drop_prefixes=self.drop_prefixes)

    def adapt(self, recipe: Recipe) -> Recipe:
        """``recipe`` with the task's ``recipe_data`` values."""
        for key, value in self.recipe_data.items():
            setattr(recipe.data, key, value)
        return recipe

    def compare(self, out_dir: Path, **options: Any) -> dict[str, Any]:
        """:func:`compare` of this task's pretraining against scratch (``options``: its keywords)."""
        return compare(
            pretrain=self.pretraining(out_dir), build=self.classifier, train=self.splits["train"],
            validation=self.splits["validation"], test=self.splits["test"], grid=self.grid, settings=self.settings,
            input_name=self.input_name, augment=self.augment, out_dir=out_dir, **options,
        )  # fmt: skip


@dataclass
class Pretrained:
    state: dict[str, torch.Tensor]  # backbone state dict
    seconds: float
    last_log: dict[str, Any] | None = None


def sample_std(values: Sequence[float]) -> float:
    """The sample standard deviation (n - 1 in the denominator); 0 for fewer than two values."""
    return statistics.stdev(values) if len(values) > 1 else 0.0


@dataclass
class Task:
    """Everything a run of :func:`compare` needs besides its arguments; sent once to each worker."""

    pretrain: Callable[[int], Pretrained]
    build: Callable[[dict[str, torch.Tensor] | None, int], torch.nn.Module]
    train: Split
    validation: Split
    settings: FinetuneSettings
    input_name: str
    augment: Callable | None
    progress: bool


_TASK: Task | None = None  # the task of this worker process


def _start_worker(task: Task, threads: int) -> None:
    global _TASK
    _TASK = task
    torch.set_num_threads(threads)
    if isinstance(task.pretrain, Pretraining):
        task.pretrain.progress = False


def _pretrain_run(seed: int) -> Pretrained:
    assert _TASK is not None
    return _TASK.pretrain(seed)


def _finetune_run(
    state: dict[str, torch.Tensor] | None, lr: float, epochs: int, seed: int, description: str, validate: bool
) -> tuple[float | None, torch.nn.Module]:
    """Fine-tune ``build(state, seed)`` on the training split; (its validation accuracy if
    ``validate``, else None; the model). The test split is scored by the caller, never here."""
    assert _TASK is not None
    task = _TASK
    model = task.build(state, seed)
    settings = dataclasses.replace(task.settings, learning_rate=lr, epochs=epochs, seed=seed)
    finetune(model, task.train.inputs, task.train.labels, settings, input_name=task.input_name, augment=task.augment,
             description=description, progress=task.progress)
    score = accuracy(model, task.validation.inputs, task.validation.labels, task.input_name) if validate else None
    return score, model


class _InProcess:
    """The executor interface of ``concurrent.futures``, running each call at once in this process."""

    def __init__(self, task: Task) -> None:
        global _TASK
        _TASK = task

    def submit(self, function: Callable, *args: Any) -> Future:
        future: Future = Future()
        future.set_result(function(*args))
        return future

    def shutdown(self, cancel_futures: bool = False) -> None:
        pass


def make_executor(task: Task, workers: int, log: Callable[[str], None] = print) -> Any:
    """Where the runs of ``task`` go: this process (``workers`` 1), or ``workers`` spawned processes
    with ``cores // workers`` threads each, every one holding ``task``."""
    if workers <= 1:
        return _InProcess(task)
    threads = max(1, torch.get_num_threads() // workers)
    log(f"{workers} worker processes with {threads} thread{'s' if threads > 1 else ''} each")
    return ProcessPoolExecutor(
        workers, mp_context=multiprocessing.get_context("spawn"), initializer=_start_worker, initargs=(task, threads)
    )


def default_workers() -> int:
    """One worker process per usable CPU core, at most 8: the demos' tiny models use two
    single-thread processes better than one process with two threads."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(8, cores))


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
    workers: int | None = 1,
) -> dict[str, Any]:
    """Run the protocol of this module. ``build(state, seed)``: the classifier, from the backbone
    ``state`` (None: random initialisation), its fresh parts seeded with ``seed``. ``started``:
    the ``time.time()`` the wall time counts from (default: now; a demo passes the time before
    it made its data).

    ``workers``: the runs (pretrainings and fine-tunings) go to this many processes (None:
    :func:`default_workers`; 1: all in this process, one after the other), each with
    ``cores // workers`` threads, in the order of their dependencies (a fine-tuning from
    pretraining seed p waits for it; the test runs of an arm wait for its model choice). With
    more than one, ``pretrain``, ``build`` and ``augment`` must be picklable (e.g.
    :class:`Pretraining`, :class:`Classifier` and module-level functions). Every run seeds
    itself, so the result does not depend on the order; it does change, within float rounding,
    with the number of threads a run gets."""
    started = time.time() if started is None else started
    workers = default_workers() if workers is None else max(1, workers)
    task = Task(pretrain, build, train, validation, settings, input_name, augment, progress=workers <= 1)
    executor = make_executor(task, workers, log)

    pretrained: dict[int, Pretrained] = {}
    grid_points = grid.points()
    validation_scores: dict[str, dict[tuple[float, int], float]] = {arm: {} for arm in ARMS}
    trained: dict[tuple[str, float, int], torch.nn.Module] = {}  # model-choice runs: reused as test run (0, 0)
    chosen: dict[str, dict[str, float]] = {}
    scores: dict[str, dict[str, float]] = {arm: {} for arm in ARMS}
    test_keys = {
        "data2vec": [(p, f, f, f"p{p}-f{f}") for p in range(pretrain_seeds) for f in range(finetune_seeds)],
        "scratch": [(None, s, s, f"f{s}") for s in range(pretrain_seeds * finetune_seeds)],
    }  # (pretraining seed, fine-tuning seed, -, key)
    # each arm's first test run is its chosen model-choice run, scored again on the test split, not retrained
    total_runs = pretrain_seeds + 2 * len(grid_points) + 2 * (pretrain_seeds * finetune_seeds - 1)

    def state_of(arm: str, p: int | None) -> dict[str, torch.Tensor] | None:
        return pretrained[p].state if arm == "data2vec" and p is not None else None

    # the runs, in priority order; each entry: (ready?, function, arguments, what to do with the result)
    pending: Pending = []

    def after_pretraining(seed: int) -> Callable[[Pretrained], None]:
        def record(result: Pretrained) -> None:
            pretrained[seed] = result
            log(f"pretraining seed {seed}: {result.seconds:.0f} s; last log {json.dumps(result.last_log)}")
        return record

    def after_grid(arm: str, lr: float, epochs: int) -> Callable[[tuple[float, torch.nn.Module]], None]:
        def record(result: tuple[float, torch.nn.Module]) -> None:
            score, model = result
            validation_scores[arm][(lr, epochs)] = score
            trained[(arm, lr, epochs)] = model
            log(f"{arm:8s} lr {lr:g}, {epochs} epochs: validation {score:.1%}")
            if len(validation_scores[arm]) == len(grid_points):
                best = max(grid_points, key=lambda point: validation_scores[arm][point])  # the first on ties
                chosen[arm] = {"learning_rate": best[0], "epochs": best[1], "accuracy": validation_scores[arm][best]}
                log(f"{arm}: chose lr {best[0]:g}, {best[1]} epochs")
                kept = trained.pop((arm, *best))
                for point in grid_points:
                    trained.pop((arm, *point), None)
                scores[arm][test_keys[arm][0][3]] = accuracy(kept, test.inputs, test.labels, input_name)
        return record

    def after_test(arm: str, key: str) -> Callable[[tuple[float, torch.nn.Module]], None]:
        def record(result: tuple[float, torch.nn.Module]) -> None:
            scores[arm][key] = accuracy(result[1], test.inputs, test.labels, input_name)
        return record

    for seed in range(pretrain_seeds):
        pending.append((lambda: True, _pretrain_run, lambda seed=seed: (seed,), after_pretraining(seed)))
    for arm in ARMS:
        for lr, epochs in grid_points:
            pending.append((
                (lambda: 0 in pretrained) if arm == "data2vec" else (lambda: True),
                _finetune_run,
                lambda arm=arm, lr=lr, epochs=epochs: (state_of(arm, 0), lr, epochs, 0, f"{arm} lr {lr:g} x {epochs} ep", True),
                after_grid(arm, lr, epochs),
            ))
    for arm in ARMS:
        for p, f, seed, key in test_keys[arm][1:]:  # run (0, 0) is the model-choice run of the chosen point
            pending.append((
                lambda arm=arm, p=p: arm in chosen and (p is None or p in pretrained),
                _finetune_run,
                lambda arm=arm, p=p, seed=seed, key=key: (
                    state_of(arm, p), chosen[arm]["learning_rate"], int(chosen[arm]["epochs"]), seed, f"{arm} {key}", False
                ),
                after_test(arm, key),
            ))

    log(
        f"{total_runs} runs: {pretrain_seeds} pretrainings; model choice on the validation split ({len(validation)} items): "
        f"{len(grid_points)} grid points per arm; test ({len(test)} items): {pretrain_seeds} x {finetune_seeds} "
        "fine-tunings per arm, the first of them the chosen model-choice run"
    )
    def progress(done: int) -> None:
        if workers > 1:
            log(f"    [{done}/{total_runs} runs, {time.time() - started:.0f} s]")

    run_pending(pending, executor, workers, progress)

    scores = {arm: {key: scores[arm][key] for *_, key in test_keys[arm]} for arm in ARMS}
    for arm in ARMS:
        log(f"{arm} test: " + ", ".join(f"{key} {value:.1%}" for key, value in scores[arm].items()))
    runs = {arm: list(scores[arm].values()) for arm in ARMS}
    paired = [value - scores["scratch"][key.split("-")[1]] for key, value in scores["data2vec"].items()]
    summary = {
        "splits": {"train": len(train), "validation": len(validation), "test": len(test)},
        "parameters": sum(parameter.numel() for parameter in build(None, 0).parameters()),
        "grid": {"learning_rates": list(grid.learning_rates), "epochs": list(grid.epochs)},
        "finetune_settings": dataclasses.asdict(settings),
        "validation": {
            arm: [{"learning_rate": lr, "epochs": epochs, "accuracy": validation_scores[arm][(lr, epochs)]} for lr, epochs in grid_points]
            for arm in ARMS
        },
        "chosen": chosen,
        "test_accuracy": scores,
        "mean": {arm: statistics.mean(scores[arm].values()) for arm in ARMS},
        "std": {arm: sample_std(list(scores[arm].values())) for arm in ARMS},
        "gain_mean": statistics.mean(runs["data2vec"]) - statistics.mean(runs["scratch"]),
        "gain_std": math.sqrt(sum(sample_std(runs[arm]) ** 2 / len(runs[arm]) for arm in ARMS)),
        "paired_gain_std": sample_std(paired),
        "pretrain_seconds": [round(pretrained[p].seconds, 1) for p in range(pretrain_seeds)],
        "pretrain_last_log": [pretrained[p].last_log for p in range(pretrain_seeds)],
        "workers": workers,
        "total_seconds": round(time.time() - started, 1),
    }
    log("")
    log(report(summary))
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        log(f"summary: {out_dir / 'summary.json'}")
    return summary


Pending = list[tuple[Callable[[], bool], Callable, Callable[[], tuple], Callable[[Any], None]]]


def run_pending(pending: Pending, executor: Any, workers: int, progress: Callable[[int], Any] = lambda done: None) -> None:
    """Run ``pending`` entries (ready?, function, arguments, record) on ``executor``, at most ``workers``
    at a time, each as soon as it is ready (in list order among the ready ones); ``record(result)``
    runs in this process when a run ends, then ``progress(runs done)``. Shuts the executor down."""
    running: dict[Future, Callable[[Any], None]] = {}
    done = 0
    try:
        while pending or running:
            for entry in list(pending):
                if len(running) >= workers:
                    break
                ready, function, arguments, record = entry
                if ready():
                    pending.remove(entry)
                    running[executor.submit(function, *arguments())] = record
            if not running:
                raise RuntimeError("the runs wait on each other")  # not reachable: every run's inputs come earlier
            finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for future in finished:
                running.pop(future)(future.result())
                done += 1
                progress(done)
    finally:
        executor.shutdown(cancel_futures=True)


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
    workers = summary.get("workers", 1)
    pretraining_note = f" (summed over the seeds; the runs shared {workers} worker processes)" if workers > 1 else ""
    verdict = "more" if gain > 2 * spread else "NOT more"
    lines.append("")
    lines.append(
        f"gain {gain:+.1f} points, standard deviation of the gain {spread:.1f} ({verdict} than twice it; "
        f"per-run paired gains spread {summary['paired_gain_std'] * 100:.1f}); "
        f"pretraining {sum(summary['pretrain_seconds']):.0f} s{pretraining_note}, wall time {summary['total_seconds']:.0f} s"
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


@dataclass
class Pretraining:
    """``pretrain(seed)`` for :func:`compare`: a fresh run of ``recipe`` with that seed in
    ``out_dir / pretrain-seed<seed>``, giving the student backbone's state (without the keys
    starting with ``drop_prefixes``, e.g. a mask token the classifier has no use for)."""

    recipe: Recipe
    data: Any
    out_dir: Path
    drop_prefixes: tuple[str, ...] = ()
    progress: bool = True

    def __call__(self, seed: int) -> Pretrained:
        folder = Path(self.out_dir) / f"pretrain-seed{seed}"
        shutil.rmtree(folder, ignore_errors=True)
        began = time.time()
        # the demos' runs skip TensorBoard: with TensorFlow installed its import takes seconds per process
        trainer = Pretrainer(self.recipe.replace(seed=seed), self.data, folder, progress=self.progress, tensorboard=False)
        try:
            result = trainer.train()
            state = {
                key: value.detach().clone()
                for key, value in trainer.model.backbone.state_dict().items()
                if not key.startswith(self.drop_prefixes)
            }
        finally:
            trainer.close()
        if result.interrupted:
            raise SystemExit(f"pretraining was interrupted at update {result.step}; its checkpoint is in {folder}")
        return Pretrained(state, time.time() - began, result.last_log)


@dataclass
class Classifier:
    """``build(state, seed)`` for :func:`compare`: ``model_class(config)`` seeded with
    ``1000 + seed`` (so the head, and from scratch the whole model, starts the same in both
    arms), its backbone loaded from ``state`` unless that is None."""

    model_class: type
    config: Any

    def __call__(self, state: dict[str, torch.Tensor] | None, seed: int) -> torch.nn.Module:
        torch.manual_seed(1000 + seed)
        model = self.model_class(self.config)
        if state is not None:
            _, unexpected = model.backbone.load_state_dict(state, strict=False)
            if unexpected:
                raise RuntimeError(f"the pretrained backbone has weights the classifier does not know: {unexpected}")
        return model
