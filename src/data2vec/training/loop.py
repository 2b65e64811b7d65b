"""The fine-tuning loop of ``data2vec finetune``: any model whose ``forward(**batch)`` returns an
output with ``loss``, trained on a list of examples that ``collate`` turns into batches.

One optimizer step is ``gradient_accumulation`` micro-batches on each process:

    examples of the step -> collate -> model (autocast) -> loss x weight -> backward   (per micro-batch)
    -> clip -> AdamW step -> learning-rate schedule step                               (once per step)

Data order: every epoch is a permutation of the examples seeded by (seed, epoch), cut into global
batches of ``batch_size * world_size`` examples (the last one may be shorter: it is kept); rank r
takes the slice ``[r * batch_size, (r + 1) * batch_size)`` of each global batch, and one step takes
``gradient_accumulation`` consecutive batches (an epoch's last step may take fewer). A resumed run
skips the steps already done. ``collate`` runs under a random state seeded by (seed, epoch, batch,
rank), so random collation (masking for masked LM) does not depend on workers or on resuming.

The loss of a micro-batch is weighted by its share of the step's examples (all micro-batches of all
ranks) times the world size; DDP averages the ranks, so the gradient is that of the mean loss over
the step's examples. With full batches the weight is 1 / gradient_accumulation. A rank whose slice
of a short last batch is empty runs one example with weight 0 (DDP needs every rank's gradients).

Learning rate: linear warmup over ``ceil(warmup_ratio * total steps)`` steps, then linear / cosine
decay to 0 or constant (``lr_factor``); with ``layer_decay`` every parameter of layer ``i`` (0 the
embeddings, 1..L the blocks, L + 1 the head, from the caller's ``layer_id``) gets ``lr * layer_decay
** (L + 1 - i)`` (BEiT / data2vec fine-tuning).

``output_dir`` holds the best model (``save(model, output_dir)``; the last one without
``evaluate``), ``log.jsonl``, ``curves.png`` (the log, redrawn at every checkpoint when matplotlib
is installed), ``tensorboard/`` (the logged scalars, when tensorboard is; see ``training.plots``)
and ``checkpoint/``: the model through ``save`` plus ``trainer_state.pt`` (the model's state dict,
optimizer, scheduler, random states of every rank, data position, best metric, early-stopping
counter), written into ``.checkpoint.tmp`` and swapped in with two renames (``checkpoint`` ->
``.checkpoint.old``, ``.checkpoint.tmp`` -> ``checkpoint``); ``find_checkpoint`` finishes a swap
that was killed between them. A checkpoint is written at every evaluation point (every
``eval_every`` steps, else every epoch), at the end and on SIGINT / SIGTERM (the current step
finishes first). ``train(resume=True)`` continues bitwise where it stopped (CPU).

Under ``torchrun`` (WORLD_SIZE > 1) the model is wrapped in DistributedDataParallel (gloo on CPU,
nccl on GPU); rank 0 evaluates, writes files and shows the bar while the others wait.
"""

from __future__ import annotations

import contextlib
import datetime
import inspect
import json
import logging
import math
import os
import random
import shutil
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from tqdm.auto import tqdm

from ..core.modeling import set_input_validation
from ..core.optim import parameter_groups
from ..pretraining.trainer import DistributedContext, StopFlag, rng_state, seed_everything, set_rng_state
from .plots import ScalarLog, plot_finetuning

logger = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoint"
TEMPORARY_DIR = ".checkpoint.tmp"  # the checkpoint being written
PREVIOUS_DIR = ".checkpoint.old"  # the previous checkpoint while the new one is swapped in
STATE_NAME = "trainer_state.pt"  # written last: a folder holding it is complete
LOG_NAME = "log.jsonl"
PLOT_NAME = "curves.png"
STATE_FORMAT = "data2vec-finetuning"
STATE_VERSION = 1
SCHEDULES = ("linear", "cosine", "constant")
PRECISIONS = ("fp32", "bf16")
# rank 0 evaluates while the other ranks wait in a collective: longer than the default timeouts
PROCESS_GROUP_TIMEOUT = datetime.timedelta(hours=2)


def padding_free(model: nn.Module) -> dict[str, bool]:
    """``{"drop_padding": True}`` for a model whose forward takes it (this library's text and audio
    models: the blocks then skip the padding of a batch), else nothing."""
    return _accepted(model, drop_padding=True)


def _accepted(model: nn.Module, **options: Any) -> dict[str, Any]:
    """The keyword ``options`` that the model's forward takes."""
    parameters = inspect.signature(getattr(model, "module", model).forward).parameters  # through DDP
    return {name: value for name, value in options.items() if name in parameters}


@dataclass
class TrainSettings:
    epochs: float = 3.0
    max_steps: int | None = None  # optimizer steps; wins over epochs
    batch_size: int = 8  # per process, per micro-batch
    gradient_accumulation: int = 1  # micro-batches per optimizer step
    learning_rate: float = 5e-5
    weight_decay: float = 0.01
    schedule: str = "linear"  # "linear" | "cosine" | "constant", all after a linear warmup
    warmup_ratio: float = 0.1
    layer_decay: float | None = None  # lr * layer_decay ** (L + 1 - layer_id)
    clip_norm: float | None = 1.0
    precision: str = "fp32"  # "fp32" | "bf16" (autocast)
    eval_every: int | None = None  # steps; None: at the end of every epoch
    early_stopping_patience: int | None = None  # evaluations without improvement
    log_every: int = 10
    seed: int = 0
    num_workers: int = 0
    freeze_feature_encoder: bool = False  # audio models: model.freeze_feature_encoder()

    def __post_init__(self) -> None:
        positive = {
            "batch_size": self.batch_size, "gradient_accumulation": self.gradient_accumulation,
            "log_every": self.log_every, "max_steps": self.max_steps, "eval_every": self.eval_every,
            "early_stopping_patience": self.early_stopping_patience,
        }
        for name, value in positive.items():
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ValueError(f"{name} must be a whole number of at least 1, got {value!r}")
        if self.max_steps is None and not self.epochs > 0:
            raise ValueError(f"epochs must be above 0, got {self.epochs!r}: or set max_steps")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}: choose one of {', '.join(SCHEDULES)}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}: choose one of {', '.join(PRECISIONS)}")
        if not 0.0 <= self.warmup_ratio <= 1.0:
            raise ValueError(f"warmup_ratio must be between 0 and 1, got {self.warmup_ratio!r}")
        if self.layer_decay is not None and not 0.0 < self.layer_decay <= 1.0:
            raise ValueError(f"layer_decay must be in (0, 1], got {self.layer_decay!r}")
        if self.clip_norm is not None and not self.clip_norm > 0:
            raise ValueError(f"clip_norm must be above 0 (or None for no clipping), got {self.clip_norm!r}")
        if self.learning_rate < 0 or self.weight_decay < 0:
            raise ValueError("learning_rate and weight_decay must not be negative")
        if self.num_workers < 0:
            raise ValueError(f"num_workers must be 0 or more, got {self.num_workers!r}")


# ---------------------------------------------------------------------------- schedule and groups
def warmup_steps_for(total_steps: int, warmup_ratio: float) -> int:
    """``ceil(warmup_ratio * total_steps)`` (a product like 0.07 * 100 = 7.000000000000001 counts as 7)."""
    return math.ceil(round(warmup_ratio * total_steps, 9))


def lr_factor(step: int, total_steps: int, warmup_steps: int, schedule: str) -> float:
    """The learning-rate factor of the optimizer step that follows ``step`` steps: ``(step + 1) /
    warmup_steps`` while ``step < warmup_steps``; then, with ``progress = (step - warmup_steps) /
    (total_steps - warmup_steps)``, ``1 - progress`` (linear), ``(1 + cos(pi * progress)) / 2``
    (cosine) or 1 (constant)."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0 - progress


def layer_parameter_groups(
    model: nn.Module, weight_decay: float, learning_rate: float, *,
    layer_decay: float | None = None, layer_id: Callable[[str], int] | None = None, num_layers: int | None = None,
) -> list[dict]:
    """AdamW groups of the trained parameters: ``parameter_groups``'s weight-decay split, and with
    ``layer_decay`` one group per (layer id, decay or not) with ``lr = learning_rate * layer_decay **
    (num_layers + 1 - layer_id(name))``, in layer order."""
    groups = parameter_groups(model, weight_decay)
    if layer_decay is None:
        return [{**group, "lr": learning_rate} for group in groups]
    if layer_id is None or num_layers is None:
        raise ValueError("layer_decay needs layer_id (parameter name -> layer) and num_layers (the model's blocks)")
    decays = {id(parameter): group["weight_decay"] for group in groups for parameter in group["params"]}
    by_layer: dict[tuple[int, float], list[nn.Parameter]] = {}
    for name, parameter in model.named_parameters():
        if id(parameter) not in decays:
            continue
        layer = int(layer_id(name))
        if not 0 <= layer <= num_layers + 1:
            raise ValueError(
                f"layer_id({name!r}) is {layer}: layer ids run from 0 (embeddings) to {num_layers + 1} (the head)"
            )
        by_layer.setdefault((layer, -decays[id(parameter)]), []).append(parameter)
    return [
        {
            "params": params, "weight_decay": -negative_decay, "layer_id": layer,
            "lr": learning_rate * layer_decay ** (num_layers + 1 - layer),
        }
        for (layer, negative_decay), params in sorted(by_layer.items(), key=lambda item: item[0])
    ]


def epoch_order(examples: int, seed: int, epoch: int) -> np.ndarray:
    """The order of the examples in ``epoch``: a permutation seeded by (seed, epoch)."""
    return np.random.default_rng([seed, epoch]).permutation(examples)


# ---------------------------------------------------------------------------- checkpoint folders
def find_checkpoint(output_dir: str | os.PathLike) -> Path | None:
    """``output_dir/checkpoint`` when it holds a complete checkpoint (``trainer_state.pt``), after
    finishing a swap that was killed between its two renames; None when there is none. Removes the
    leftovers of a killed write. Call it on one process only."""
    output_dir = Path(output_dir)
    folder, temporary, previous = (output_dir / name for name in (CHECKPOINT_DIR, TEMPORARY_DIR, PREVIOUS_DIR))
    if not (folder / STATE_NAME).is_file():
        # killed after checkpoint -> .checkpoint.old: the new one is complete (it is written first)
        for candidate in (temporary, previous):
            if (candidate / STATE_NAME).is_file():
                if folder.exists():
                    shutil.rmtree(folder)
                os.replace(candidate, folder)
                break
    for leftover in (temporary, previous):
        if leftover.exists():
            shutil.rmtree(leftover)
    return folder if (folder / STATE_NAME).is_file() else None


def write_checkpoint(output_dir: Path, save_model: Callable[[Path], None], state: dict[str, Any]) -> Path:
    """Write ``output_dir/checkpoint`` so that a kill at any point leaves a readable checkpoint."""
    folder, temporary, previous = (output_dir / name for name in (CHECKPOINT_DIR, TEMPORARY_DIR, PREVIOUS_DIR))
    if temporary.exists():
        shutil.rmtree(temporary)
    temporary.mkdir(parents=True)
    save_model(temporary)
    torch.save(state, temporary / f"{STATE_NAME}.partial")
    os.replace(temporary / f"{STATE_NAME}.partial", temporary / STATE_NAME)
    if previous.exists():
        shutil.rmtree(previous)
    if folder.exists():
        os.replace(folder, previous)
    os.replace(temporary, folder)
    if previous.exists():
        shutil.rmtree(previous)
    return folder


def default_save(model: nn.Module, folder: Path) -> None:
    """``model.save_pretrained(folder)``, or the state dict as ``model.pt`` for other modules."""
    if hasattr(model, "save_pretrained"):
        model.save_pretrained(folder)
    else:
        torch.save(model.state_dict(), folder / "model.pt")


# ---------------------------------------------------------------------------- helpers
def _rank_seed(seed: int, rank: int) -> int:
    """``seed`` on rank 0 (a single process seeds with ``seed`` itself), a derived seed elsewhere."""
    return seed if rank == 0 else int(np.random.SeedSequence([seed, rank]).generate_state(1)[0])


@contextlib.contextmanager
def _seeded(words: list[int]):
    """Run the body with python / numpy / torch (CPU) seeded by ``words``; restore the states after."""
    python_state, numpy_state, torch_state = random.getstate(), np.random.get_state(), torch.get_rng_state()
    seed_everything(int(np.random.SeedSequence(words).generate_state(1)[0]))
    try:
        yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
        torch.set_rng_state(torch_state)


@contextlib.contextmanager
def _kept_rng():
    """The body (an evaluation) leaves the training's random states as they were."""
    state = rng_state()
    try:
        yield
    finally:
        set_rng_state(state)


def _identity(value):
    return value


class _MicroBatches(torch.utils.data.Dataset):
    """Collated micro-batches of one epoch: item i is (batch dict, examples of this rank)."""

    def __init__(self, examples: Sequence, collate: Callable, items: list[tuple[list[int], int, int]], words: list[int]):
        self.examples, self.collate, self.items, self.words = examples, collate, items, words

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        indices, count, batch = self.items[index]
        with _seeded([*self.words, batch]):
            return self.collate([self.examples[i] for i in indices]), count


def _output_loss(output: Any) -> torch.Tensor:
    loss = output.get("loss") if isinstance(output, dict) else getattr(output, "loss", None)
    if loss is None:
        raise ValueError("the model returned no loss: collate must return the inputs with labels")
    return loss


def _check_precision(precision: str, device: torch.device) -> None:
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError(f"this GPU ({torch.cuda.get_device_name(device)}) does not support bf16: use precision fp32")
    if precision == "bf16" and device.type not in ("cpu", "cuda"):
        raise ValueError(f"bf16 autocast is not supported on {device.type}: use precision fp32")


def _distributed_context() -> DistributedContext:
    """``DistributedContext`` with a process group whose timeout outlasts rank 0's evaluations."""
    created = False
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        use_cuda = torch.cuda.is_available()
        if use_cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend="nccl" if use_cuda else "gloo", timeout=PROCESS_GROUP_TIMEOUT)
        created = True
    context = DistributedContext("auto")
    context.owns_group = created
    return context


# ---------------------------------------------------------------------------- the trainer
class Trainer:
    """Fine-tune ``model`` on ``train_examples`` into ``output_dir`` (see the module's docstring).

    ``evaluate(model) -> {name: value}`` runs on rank 0 (model in eval mode, under no_grad) at
    every evaluation point; ``metric`` (one of its names) picks the best model. ``layer_id`` and
    ``num_layers`` are needed for ``settings.layer_decay``. ``reports=False``: no ``curves.png``
    and no TensorBoard events, only ``log.jsonl`` (the demos' many short in-memory runs). After ``train`` the trained model is
    ``trainer.model`` (never the DDP wrapper); ``close()`` ends a process group the trainer began."""

    def __init__(
        self,
        model: nn.Module,
        train_examples: Sequence,
        collate: Callable[[list], dict[str, torch.Tensor]],
        settings: TrainSettings,
        output_dir: str | os.PathLike,
        *,
        evaluate: Callable[[nn.Module], dict[str, float]] | None = None,
        metric: str = "loss",
        greater_is_better: bool = False,
        save: Callable[[nn.Module, Path], None] | None = None,
        progress: bool = True,
        reports: bool = True,
        description: str = "fine-tune",
        layer_id: Callable[[str], int] | None = None,
        num_layers: int | None = None,
    ) -> None:
        if len(train_examples) == 0:
            raise ValueError("there are no training examples: check the training data")
        if settings.early_stopping_patience is not None and evaluate is None:
            raise ValueError("early_stopping_patience needs evaluation data (an evaluate function)")
        self.settings = settings
        self.examples = train_examples
        self.collate = collate
        self.output_dir = Path(output_dir)
        self.evaluate = evaluate
        self.metric = metric
        self.greater_is_better = greater_is_better
        self.save = save or default_save
        self.progress = progress
        self.reports = reports
        self.description = description  # the progress bar's label

        self.dist = _distributed_context()
        self.device = self.dist.device
        _check_precision(settings.precision, self.device)
        if settings.freeze_feature_encoder:
            if not hasattr(model, "freeze_feature_encoder"):
                raise ValueError(
                    f"{type(model).__name__} has no feature encoder to freeze: freeze_feature_encoder is for audio models"
                )
            model.freeze_feature_encoder()
        self.model = model.to(self.device)
        if self.dist.distributed:
            self.trained: nn.Module = nn.parallel.DistributedDataParallel(
                self.model,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=True,  # heads may leave parts of the backbone unused (pooler, ...)
            )  # broadcasts rank 0's weights
        else:
            self.trained = self.model
        # text and audio batches skip their padding; a masked LM projects only the scored positions
        self._model_options = {**padding_free(self.model), **_accepted(self.model, logits_at_labels_only=True)}

        groups = layer_parameter_groups(
            self.model, settings.weight_decay, settings.learning_rate,
            layer_decay=settings.layer_decay, layer_id=layer_id, num_layers=num_layers,
        )
        if not groups:
            raise ValueError("the model has no trainable parameters (requires_grad): nothing to fine-tune")
        fused = all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for g in groups for p in g["params"])
        self.optimizer = torch.optim.AdamW(groups, lr=settings.learning_rate, fused=fused or None)

        # the data layout: global batches, steps per epoch, total steps
        self.global_batch = settings.batch_size * self.dist.world_size
        self.batches_per_epoch = math.ceil(len(train_examples) / self.global_batch)
        self.steps_per_epoch = math.ceil(self.batches_per_epoch / settings.gradient_accumulation)
        if settings.max_steps is not None:
            self.total_steps = settings.max_steps
        else:
            self.total_steps = max(1, math.ceil(round(settings.epochs * self.steps_per_epoch, 9)))
        self.warmup_steps = warmup_steps_for(self.total_steps, settings.warmup_ratio)
        total, warmup, schedule = self.total_steps, self.warmup_steps, settings.schedule
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda done: lr_factor(done, total, warmup, schedule)
        )

        self.step = 0
        self.best_metric: float | None = None
        self.best_step: int | None = None
        self.bad_evaluations = 0  # evaluations since the last improvement
        self.stopped_early = False
        self.log_path = self.output_dir / LOG_NAME
        self.plot_path = self.output_dir / PLOT_NAME
        self.scalar_log = ScalarLog(self.log_path, tensorboard=reports)  # written by rank 0 only

    # ------------------------------------------------------------ the loop
    def train(self, resume: bool = False) -> dict:
        """Train to the end (or an early stop / SIGINT / SIGTERM) and return ``{"step",
        "best_metric", "best_step", "stopped_early", "interrupted"}``. ``resume``: continue from
        ``output_dir/checkpoint`` (a fresh start when there is none)."""
        settings = self.settings
        self._start(resume)
        if self.step >= self.total_steps or self.stopped_early:
            if self.dist.is_main:
                logger.info("nothing to do: %s is at step %d of %d", self.output_dir, self.step, self.total_steps)
            return self._result(False)
        if self.dist.is_main:
            logger.info(
                "fine-tuning %.2fM trained parameters on %d examples: global batch %d (%d process(es) x %d) x %d "
                "accumulated, %d steps per epoch, steps %d -> %d, %s, output %s",
                sum(p.numel() for p in self.model.parameters() if p.requires_grad) / 1e6, len(self.examples),
                self.global_batch, self.dist.world_size, settings.batch_size, settings.gradient_accumulation,
                self.steps_per_epoch, self.step, self.total_steps, self.device, self.output_dir,
            )
        bar = tqdm(
            total=self.total_steps, initial=self.step, desc=self.description, unit="step", dynamic_ncols=True,
            disable=not (self.progress and self.dist.is_main),
        )
        self.model.train()
        stop = StopFlag()
        losses: list[float] = []
        interrupted = checked = False
        steps = self._steps()
        with stop.installed():
            try:
                for micro_batches in steps:
                    loss, lr, stop_requested = self._train_step(micro_batches, stop.requested)
                    if not checked:  # the first inputs were checked: later steps need not wait for the device
                        set_input_validation(self.model, False)
                        checked = True
                    losses.append(loss)
                    bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.3g}", refresh=False)
                    bar.update(1)
                    finished = self.step >= self.total_steps
                    if self.step % settings.log_every == 0 or finished or stop_requested:
                        loss_mean = float(np.mean(losses))
                        self._write_log({"step": self.step, "epoch": self._epoch(), "loss": loss_mean, "lr": lr})
                        losses = []
                    if settings.eval_every is not None:
                        due = self.step % settings.eval_every == 0
                    else:
                        due = self.step % self.steps_per_epoch == 0
                    if due or finished:
                        self._evaluate()
                    if due or finished or stop_requested or self.stopped_early:
                        self._save_checkpoint()
                    if finished or stop_requested or self.stopped_early:
                        interrupted = stop_requested and not finished
                        break
            finally:
                steps.close()  # ends the data loader's workers
                bar.close()
                self.scalar_log.close()
                set_input_validation(self.model, None)
        if self.evaluate is None and self.dist.is_main:
            self._save_model()  # the best model is the last one
        self.dist.barrier()
        if interrupted and self.dist.is_main:
            print(
                f"Interrupted: stopped after step {self.step} of {self.total_steps}; checkpoint saved in "
                f"{self.output_dir / CHECKPOINT_DIR}. Continue with the same command plus --resume."
            )
        return self._result(interrupted)

    def close(self) -> None:
        """Close the TensorBoard writer; end the process group this trainer began under torchrun."""
        self.scalar_log.close()
        self.dist.close()

    def _result(self, interrupted: bool) -> dict:
        best_step = self.best_step if self.evaluate is not None else self.step
        return {
            "step": self.step, "best_metric": self.best_metric, "best_step": best_step,
            "stopped_early": self.stopped_early, "interrupted": interrupted,
        }

    def _epoch(self) -> float:
        return round(self.step / self.steps_per_epoch, 4)

    def _steps(self):
        """This rank's micro-batches of every remaining step: for each step a list of (batch dict,
        examples of this rank in it, examples of the whole step on all ranks)."""
        settings, rank = self.settings, self.dist.rank
        accumulation, size = settings.gradient_accumulation, settings.batch_size
        epoch, first_step = divmod(self.step, self.steps_per_epoch)
        while True:
            order = epoch_order(len(self.examples), settings.seed, epoch).tolist()
            batches = [order[start : start + self.global_batch] for start in range(0, len(order), self.global_batch)]
            items, step_sizes = [], []
            for start in range(first_step * accumulation, len(batches), accumulation):
                group = range(start, min(start + accumulation, len(batches)))
                step_sizes.append((len(group), sum(len(batches[index]) for index in group)))
                for index in group:
                    local = batches[index][rank * size : (rank + 1) * size]
                    # an empty slice of a short last batch: one example with weight 0
                    items.append((local or batches[index][:1], len(local), index))
            dataset = _MicroBatches(self.examples, self.collate, items, [settings.seed, epoch, rank])
            if settings.num_workers > 0:
                loader = torch.utils.data.DataLoader(
                    dataset, batch_size=None, num_workers=settings.num_workers, collate_fn=_identity,
                    pin_memory=self.device.type == "cuda",
                )
            else:
                loader = dataset
            micro = iter(loader)
            for count, examples in step_sizes:
                yield [(*next(micro), examples) for _ in range(count)]
            epoch, first_step = epoch + 1, 0

    def _train_step(self, micro_batches: list[tuple[dict, int, int]], stop_requested: bool) -> tuple[float, float, bool]:
        """One optimizer step on this rank's micro-batches; returns the loss over the step's
        examples (all ranks), the learning rate used (the largest group's) and whether a rank asked to stop."""
        precision = self.settings.precision
        world_size = self.dist.world_size
        self.optimizer.zero_grad(set_to_none=True)
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        for index, (batch, count, step_examples) in enumerate(micro_batches):
            batch = {
                key: value.to(self.device, non_blocking=True) if isinstance(value, torch.Tensor) else value
                for key, value in batch.items()
            }
            last = index == len(micro_batches) - 1
            gradient_sync = self.trained.no_sync() if self.dist.distributed and not last else contextlib.nullcontext()
            with gradient_sync:
                autocast = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
                with autocast:
                    loss = _output_loss(self.trained(**batch, **self._model_options)).float()
                (loss * (count * world_size / step_examples)).backward()
            loss_sum += loss.detach().double() * count
        totals = torch.stack([loss_sum, loss_sum.new_tensor(float(stop_requested))])
        self.dist.all_reduce_sum(totals)  # one all-reduce of the loss and the stop flag
        if self.settings.clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.settings.clip_norm)
        lr = max(group["lr"] for group in self.optimizer.param_groups)
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        step_examples = micro_batches[0][2]
        return float(totals[0]) / step_examples, float(lr), bool(totals[1] > 0)

    # ------------------------------------------------------------ evaluation and the best model
    def _evaluate(self) -> None:
        """Rank 0 evaluates and keeps the best model; every rank learns the early-stopping decision."""
        if self.evaluate is None:
            return
        outcome = self._on_main(self._evaluate_main)  # the other ranks wait here
        self.best_metric, self.best_step = outcome["best_metric"], outcome["best_step"]
        self.bad_evaluations, self.stopped_early = outcome["bad_evaluations"], outcome["stopped_early"]

    def _evaluate_main(self) -> dict[str, Any]:
        self.model.eval()
        try:
            with _kept_rng(), torch.no_grad():
                metrics = {name: float(value) for name, value in self.evaluate(self.model).items()}
        finally:
            self.model.train()
        if self.metric not in metrics:
            raise ValueError(
                f"the evaluation returned no {self.metric!r} (it returned {', '.join(metrics) or 'nothing'}): "
                "choose the metric among those"
            )
        self._write_log({"step": self.step, "epoch": self._epoch(), **{f"eval_{name}": v for name, v in metrics.items()}})
        value = metrics[self.metric]
        better = self.best_metric is None or (
            value > self.best_metric if self.greater_is_better else value < self.best_metric
        )  # NaN is never better
        if better and not math.isnan(value):
            self.best_metric, self.best_step, self.bad_evaluations = value, self.step, 0
            self._save_model()
        else:
            self.bad_evaluations += 1
        patience = self.settings.early_stopping_patience
        stopped_early = patience is not None and self.bad_evaluations >= patience and self.step < self.total_steps
        if stopped_early:
            logger.info(
                "early stop at step %d: %d evaluations without a better %s than %s (step %s)",
                self.step, self.bad_evaluations, self.metric, self.best_metric, self.best_step,
            )
        return {
            "best_metric": self.best_metric, "best_step": self.best_step,
            "bad_evaluations": self.bad_evaluations, "stopped_early": stopped_early,
        }

    def _save_model(self) -> None:
        """``save`` the model into a temporary folder, then move its files into ``output_dir``."""
        temporary = self.output_dir / ".best.tmp"
        if temporary.exists():
            shutil.rmtree(temporary)
        temporary.mkdir(parents=True)
        self.save(self.model, temporary)
        for path in sorted(temporary.iterdir()):
            target = self.output_dir / path.name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            os.replace(path, target)
        temporary.rmdir()

    # ------------------------------------------------------------ checkpoints
    def _state(self, rng_states: list[dict]) -> dict[str, Any]:
        return {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "step": self.step,
            "epoch": self.step // self.steps_per_epoch,
            "batches_done": self.step % self.steps_per_epoch * self.settings.gradient_accumulation,  # in this epoch
            "examples": len(self.examples),
            "global_batch": self.global_batch,
            "gradient_accumulation": self.settings.gradient_accumulation,
            "world_size": self.dist.world_size,
            "settings": asdict(self.settings),
            "model": {key: value.detach().cpu() for key, value in self.model.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": rng_states,
            "best_metric": self.best_metric,
            "best_step": self.best_step,
            "bad_evaluations": self.bad_evaluations,
            "stopped_early": self.stopped_early,
        }

    def _save_checkpoint(self) -> None:
        """Write ``output_dir/checkpoint`` (every rank calls this; rank 0 writes)."""
        rng_states = self.dist.all_gather_object(rng_state())
        if self.dist.is_main:
            write_checkpoint(self.output_dir, lambda folder: self.save(self.model, folder), self._state(rng_states))
            if self.reports:
                plot_finetuning(self.log_path, self.plot_path)
        self.dist.barrier()

    def _on_main(self, compute: Callable[[], Any]) -> Any:
        """``compute()`` on rank 0 and its result on every rank; rank 0's error stops every rank."""
        outcome = None
        if self.dist.is_main:
            try:
                outcome = ("done", compute())
            except BaseException as error:
                self.dist.all_gather_object(("failed", f"{type(error).__name__}: {error}"))
                raise
        status, value = self.dist.all_gather_object(outcome)[0]
        if status == "failed":
            raise RuntimeError(f"rank 0 failed ({value})")
        return value

    def _find_start(self, resume: bool) -> str | None:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        folder = find_checkpoint(self.output_dir)
        if folder is not None and not resume:
            raise FileExistsError(
                f"{self.output_dir} already holds a fine-tuning checkpoint: pass --resume (resume=True) to "
                "continue it, or choose another output folder"
            )
        if folder is None and resume:
            logger.warning("--resume: no checkpoint in %s yet, starting from scratch", self.output_dir)
        return None if folder is None else str(folder)

    def _start(self, resume: bool) -> None:
        """Load the checkpoint (``resume``) or seed a fresh start; trim the log to the checkpoint's step."""
        folder = self._on_main(lambda: self._find_start(resume))
        if folder is None:
            seed_everything(_rank_seed(self.settings.seed, self.dist.rank))
        else:
            self._load(Path(folder))
        if self.dist.is_main:
            self._trim_log()
        self.scalar_log.resumed_at = self.step
        self.dist.barrier()

    def _load(self, folder: Path) -> None:
        state = torch.load(folder / STATE_NAME, map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise ValueError(f"{folder / STATE_NAME} is not a data2vec fine-tuning checkpoint")
        expected = {
            "examples": len(self.examples), "global_batch": self.global_batch,
            "gradient_accumulation": self.settings.gradient_accumulation,
        }
        changed = [f"{key} {state[key]} -> {value}" for key, value in expected.items() if state[key] != value]
        if changed:
            raise ValueError(
                f"the checkpoint in {folder} was written for another data layout ({', '.join(changed)}; the global "
                "batch is batch_size x processes): resume with the same data and batch settings, or start a new "
                "output folder"
            )
        self.model.load_state_dict(state["model"])
        try:
            self.optimizer.load_state_dict(state["optimizer"])
        except ValueError as error:
            raise ValueError(
                f"the optimizer state in {folder} does not fit this model's trained parameters ({error}): resume with "
                "the same model, layer_decay and freezing, or start a new output folder"
            ) from None
        self.scheduler.load_state_dict(state["scheduler"])
        self.step = int(state["step"])
        self.best_metric, self.best_step = state["best_metric"], state["best_step"]
        self.bad_evaluations, self.stopped_early = int(state["bad_evaluations"]), bool(state["stopped_early"])
        if len(state["rng"]) == self.dist.world_size:
            set_rng_state(state["rng"][self.dist.rank])
        else:
            if self.dist.is_main:
                logger.warning(
                    "the checkpoint was written by %d processes, this run has %d: random states (dropout) are reseeded",
                    len(state["rng"]), self.dist.world_size,
                )
            words = [self.settings.seed, self.dist.rank, self.step]
            seed_everything(int(np.random.SeedSequence(words).generate_state(1)[0]))
        if self.dist.is_main:
            logger.info("resuming from %s at step %d of %d", folder, self.step, self.total_steps)

    # ------------------------------------------------------------ log
    def _trim_log(self) -> None:
        """Keep the log records of the steps the checkpoint includes (none on a fresh start)."""
        if not self.log_path.is_file():
            return
        lines = self.log_path.read_text().splitlines()
        kept = [line for line in lines if line.strip() and json.loads(line)["step"] <= self.step]
        self.log_path.write_text("".join(line + "\n" for line in kept))

    def _write_log(self, record: dict[str, Any]) -> None:
        if self.dist.is_main:
            self.scalar_log.append(record)


__all__ = [
    "TrainSettings", "Trainer", "find_checkpoint", "layer_parameter_groups", "lr_factor", "warmup_steps_for",
    "epoch_order", "default_save", "padding_free",
]
