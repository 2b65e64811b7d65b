"""The data2vec pretraining loop, the same for every modality.

One update is ``optim.update_freq`` micro-batches on each rank (``pretraining.data``: a global
batch of ``data.batch_size`` items cut into processes x update_freq slices, or, for audio with
``data.max_tokens``, processes x update_freq length-bucketed batches). For each micro-batch:

    batch + masks (sampled in the data loader) -> student (masked input, autocast) -> head at masked positions
                                               -> teacher (unmasked input, eval, no grad, float32) -> top-K layers
                                                  -> targets
    loss = regression_loss(predictions, targets) / masked positions (of the whole update), backward

then clip, AdamW step, lr schedule step, teacher <- EMA(student): once per update. The logged
statistics (loss, spreads, masked count, audio seconds) cover the whole update.

A data2vec 2.0 recipe (``version: 2``) changes only the student's side of a micro-batch: each
sample comes with ``masking.clones`` masks; the teacher runs once per sample and its targets are
repeated for the masked versions; the student (``StudentWithDecoder``) encodes the visible
positions of each version and a convolutional decoder predicts the targets at the masked ones
(plus, for images, the CLS state regresses the mean target: ``loss.cls_weight``).

Runs on one process or under ``torchrun`` (DistributedDataParallel: gloo on CPU, nccl on GPU).
Every rank holds the whole teacher and updates it from the all-reduced student, so the
teachers stay identical (checked at every checkpoint). The loss of each micro-batch is divided by
the masked positions of the *whole update* (every micro-batch of every rank, counted from the
masks before the forward) and multiplied by the world size, so the accumulated, averaged gradient
equals the gradient one process computes on all of the update's items at once. DDP all-reduces
the gradients once per update (``no_sync`` on all micro-batches but the last).

With ``precision: bf16`` the student runs under autocast; the teacher runs in float32 outside it
(as the authors' image code does), and its targets are averaged and normalised in float32.

A run folder holds ``checkpoint.pt`` (written atomically), ``log.jsonl``, ``recipe.yaml``,
``loss.png`` (with matplotlib, the ``plot`` extra) and ``tensorboard/`` (with the ``tensorboard``
package; see ``training.plots``). Ctrl-C (SIGINT) or SIGTERM finishes the current update, saves
and exits.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import random
import re
import signal
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from tqdm.auto import tqdm

from ..core.modeling import set_input_validation
from ..core.optim import parameter_groups
from ..registry import MODALITIES
from ..training.plots import ScalarLog, plot_pretraining
from .data import StepBatches, step_loader
from .ema import EMATeacher, ema_decay
from .modalities import ModalityAdapter, adapter_for
from .objective import RegressionHead, position_spread, regression_loss, spread_from_sums, spread_sums
from .recipe import DecoderSettings, Recipe
from .resume import RecipeChanges, check_resume, describe
from .targets import average_top_k

logger = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.pt"
LOG_NAME = "log.jsonl"
PLOT_NAME = "loss.png"
RECIPE_NAME = "recipe.yaml"
CHECKPOINT_FORMAT = "data2vec-pretraining"
# 1: the first format; 2: blocks under ``encoder.layers`` (the core Encoder) and the modality's
# registry name (audio, not speech). ``load_checkpoint`` upgrades older versions.
CHECKPOINT_VERSION = 2


class CollapseError(RuntimeError):
    """The targets or predictions lost their spread: the run learns nothing any more."""


class TrainingDivergedError(RuntimeError):
    """The loss became NaN or infinite."""


@dataclass
class TrainResult:
    step: int  # optimizer updates done in total
    interrupted: bool  # stopped by SIGINT / SIGTERM (a checkpoint was saved)
    out_dir: Path
    checkpoint: Path
    last_log: dict[str, Any] | None


# ---------------------------------------------------------------------------- processes
class DistributedContext:
    """Rank, world size and device of this process; sets up the process group under torchrun."""

    def __init__(self, device_setting: str = "auto") -> None:
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        use_cuda = device_setting == "cuda" or (device_setting == "auto" and torch.cuda.is_available())
        if use_cuda and not torch.cuda.is_available():
            raise RuntimeError("device 'cuda' was asked for but no CUDA device is available: use --device cpu")
        if use_cuda:
            torch.cuda.set_device(self.local_rank)
            self.device = torch.device("cuda", self.local_rank)
        else:
            self.device = torch.device("cpu")
        self.owns_group = False
        if self.world_size > 1 and not dist.is_initialized():
            dist.init_process_group(backend="nccl" if use_cuda else "gloo")
            self.owns_group = True

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.distributed:
            dist.all_reduce(tensor)
        return tensor

    def all_gather_object(self, value: Any) -> list[Any]:
        if not self.distributed:
            return [value]
        gathered: list[Any] = [None] * self.world_size
        dist.all_gather_object(gathered, value)
        return gathered

    def close(self) -> None:
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()
            self.owns_group = False


# ---------------------------------------------------------------------------- random states
def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    numpy_state = np.random.get_state(legacy=False)
    state = {
        "python": random.getstate(),
        "numpy": {**numpy_state, "state": {**numpy_state["state"], "key": numpy_state["state"]["key"].tolist()}},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(_as_tuples(state["python"]))
    numpy_state = dict(state["numpy"])
    numpy_state["state"] = {**numpy_state["state"], "key": np.asarray(numpy_state["state"]["key"], dtype=np.uint32)}
    np.random.set_state(numpy_state)
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def _as_tuples(value):
    return tuple(_as_tuples(item) for item in value) if isinstance(value, (list, tuple)) else value


# ---------------------------------------------------------------------------- model
class StudentWithHead(nn.Module):
    """The trained part: the student backbone and the regression head (one module for DDP)."""

    def __init__(self, adapter: ModalityAdapter, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.adapter = adapter
        self.backbone = backbone
        self.head = head

    def forward(self, inputs: dict[str, torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
        states = self.adapter.student_states(self.backbone, inputs)  # (batch, positions, hidden)
        return self.head(states[mask])  # (masked positions, target dim)


def build_decoder(settings: DecoderSettings, hidden: int, spatial_dims: int) -> nn.Module:
    """The 2.0 decoder of a recipe's ``decoder`` section for a backbone of width ``hidden``."""
    from .decoder import ConvDecoder

    return ConvDecoder(
        hidden, dim=settings.dim, layers=settings.layers, kernel=settings.kernel, groups=settings.groups,
        residual=settings.residual, projection_layers=settings.projection_layers,
        projection_ratio=settings.projection_ratio, spatial_dims=spatial_dims, output_dim=hidden,
    )  # fmt: skip


class StudentWithDecoder(nn.Module):
    """data2vec 2.0's trained part: the student backbone, which encodes only the visible positions
    of each masked version, and the convolutional decoder (``head``, in the place of 1.0's
    regression head) that predicts the targets at every position from them."""

    def __init__(self, adapter: ModalityAdapter, backbone: nn.Module, decoder: nn.Module, settings: DecoderSettings) -> None:
        super().__init__()
        self.adapter = adapter
        self.backbone = backbone
        self.head = decoder
        self.input_dropout = nn.Dropout(settings.input_dropout)
        self.mask_noise_std = settings.mask_noise_std

    def forward(
        self, inputs: dict[str, torch.Tensor], mask: torch.Tensor, visible: int
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``mask``: (rows, positions), True = masked, ``visible`` unmasked positions in every row
        (rows = samples x clones, sample-major). Returns the predictions at the masked positions
        (masked, target dim), row by row, and the encoder's first extra token (CLS) per row, or None."""
        embedded = self.adapter.embed_clones(self.backbone, inputs, mask)  # (samples or rows, extra + positions, hidden)
        extra = self.adapter.extra_tokens
        rows, length = mask.shape
        # the visible positions of each row in order (a stable sort puts the unmasked ones first)
        kept = mask.to(torch.uint8).argsort(dim=1, stable=True)[:, :visible]  # (rows, visible)
        leading = torch.arange(extra, device=mask.device).expand(rows, extra)
        positions = torch.cat([leading, kept + extra], dim=1)  # (rows, extra + visible) in the embedded sequence
        # row r masks embedded row r // (rows / embedded rows): a sample embedded once serves all its clones
        source = torch.arange(rows, device=mask.device) // (rows // embedded.hidden_states.shape[0])
        hidden = embedded.hidden_states[source[:, None], positions]  # (rows, extra + visible, hidden)
        result = self.backbone.run_encoder(dataclasses.replace(embedded, hidden_states=hidden), positions=positions)
        states = result.last_hidden_state  # (rows, extra + visible, hidden)
        seen = self.input_dropout(states[:, extra:])
        # the decoder's input: the encoded visible positions in place, small noise at the masked ones
        full = torch.randn(rows, length, seen.shape[-1], device=seen.device, dtype=seen.dtype) * self.mask_noise_std
        full = full.scatter(1, kept[..., None].expand(-1, -1, seen.shape[-1]), seen)
        predictions = self.head(full, embedded.extras.get("grid"))  # (rows, positions, target dim)
        return predictions[mask], (states[:, extra - 1] if extra else None)


def autocast_context(precision: str, device: torch.device):
    """bf16 autocast when asked for and the device supports it; otherwise nothing."""
    if precision != "bf16":
        return contextlib.nullcontext()
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        warnings.warn("this GPU has no bf16 support: training in float32", stacklevel=2)
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


# ---------------------------------------------------------------------------- the trainer
class Pretrainer:
    """data2vec pretraining of one recipe on one data source into ``out_dir``.

    ``data``: a path (audio folder or manifest, image folder or .npy/.pt array, text file or
    folder), or in memory (an image array/tensor, a list of text strings).
    ``resume``: continue from ``out_dir/checkpoint.pt`` (a fresh start when there is none).
    A resume whose recipe differs from the checkpoint's stops with a ``RecipeChangedError``
    unless the change is free (logging, workers, device) or allowed: ``extend_schedule`` accepts
    changes of the learning-rate / EMA schedule, ``allow_recipe_change`` of any other key
    (see ``pretraining.resume``); an accepted change is recorded in ``log.jsonl``."""

    def __init__(
        self,
        recipe: Recipe,
        data: Any,
        out_dir: str | os.PathLike,
        *,
        resume: bool = False,
        progress: bool = True,
        tensorboard: bool = True,
        extend_schedule: bool = False,
        allow_recipe_change: bool = False,
    ) -> None:
        self.recipe = recipe
        self.out_dir = Path(out_dir)
        self.progress = progress
        self.tensorboard = tensorboard  # False: log.jsonl only (when tensorboard is installed, its import costs seconds)
        self.dist = DistributedContext(recipe.device)
        self.device = self.dist.device
        self.checkpoint_path = self.out_dir / CHECKPOINT_NAME
        self.log_path = self.out_dir / LOG_NAME
        self.plot_path = self.out_dir / PLOT_NAME

        self.resume_changes = RecipeChanges({}, {})  # recipe changes accepted on resume
        checkpoint = self._find_checkpoint(resume, extend_schedule, allow_recipe_change)
        if self.dist.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            (self.out_dir / RECIPE_NAME).write_text(recipe.to_yaml())
        self.dist.barrier()

        seed_everything(recipe.seed)  # the same on every rank: identical initial weights
        self.adapter = adapter_for(recipe)
        if checkpoint is not None:
            self.adapter.extras = dict(checkpoint.get("extras") or {})
        self.dataset = self.adapter.build_dataset(data, self.out_dir, is_main=self.dist.is_main, barrier=self.dist.barrier)
        self.model_config = self.adapter.model_config()
        self.adapter.bind(self.model_config)

        backbone = self.adapter.build_backbone(self.model_config)
        hidden = self.model_config.hidden_size
        if recipe.version == 2:
            self.model: nn.Module = StudentWithDecoder(
                self.adapter, backbone, build_decoder(recipe.decoder, hidden, self.adapter.mask_dims),
                recipe.decoder,
            ).to(self.device)
        else:
            head = RegressionHead(hidden, hidden, recipe.head.num_layers, init_std=recipe.head.init_std)
            self.model = StudentWithHead(self.adapter, backbone, head).to(self.device)
        self.model.train()
        if self.dist.distributed:
            self.trained: nn.Module = nn.parallel.DistributedDataParallel(
                self.model,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=self.adapter.may_skip_parameters(self.model_config),
            )  # broadcasts rank 0's weights
        else:
            self.trained = self.model
        self.teacher = EMATeacher(self.model.backbone, copy_patterns=recipe.ema.copy_patterns).to(self.device)

        optim = recipe.optim
        self.optimizer = torch.optim.AdamW(
            parameter_groups(
                self.model, optim.weight_decay, no_decay_1d=optim.no_decay_1d, no_decay_patterns=optim.no_decay_patterns
            ),
            lr=optim.lr,
            betas=tuple(optim.betas),
            eps=optim.eps,
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda done: optim.lr_scale(done + 1))
        self.step = 0
        self.elapsed = 0.0
        self.saved_step: int | None = None

        restored_rng = False
        if checkpoint is not None:
            restored_rng = self._load_checkpoint(checkpoint)
        if not restored_rng:  # dropout / layer drop differ between ranks, reproducibly
            seed_everything(int(np.random.SeedSequence([recipe.seed, self.dist.rank, self.step]).generate_state(1)[0]))
        self.scalar_log = ScalarLog(self.log_path, resumed_at=self.step, tensorboard=self.tensorboard)  # written by rank 0 only
        if self.dist.is_main:
            self._trim_log()
            self._log_resume_changes()

    # ------------------------------------------------------------ checkpoints
    def _find_checkpoint(self, resume: bool, extend_schedule: bool, allow_recipe_change: bool) -> dict | None:
        if not self.checkpoint_path.is_file():
            if resume and self.dist.is_main:
                logger.warning("--resume: no checkpoint in %s yet, starting from scratch", self.out_dir)
            return None
        if not resume:
            raise FileExistsError(
                f"{self.out_dir} already holds a pretraining checkpoint: pass --resume (resume=True) to continue "
                "it, or choose another output folder"
            )
        checkpoint = load_checkpoint(self.checkpoint_path)
        self.resume_changes = check_resume(
            checkpoint["recipe"], self.recipe, extend_schedule=extend_schedule, allow_recipe_change=allow_recipe_change,
            checkpoint=str(self.checkpoint_path), recipe_file=str(self.out_dir / RECIPE_NAME),
        )
        return checkpoint

    def _load_checkpoint(self, checkpoint: dict) -> bool:
        self.model.backbone.load_state_dict(checkpoint["student"])
        self.model.head.load_state_dict(checkpoint["head"])
        self.teacher.model.load_state_dict(checkpoint["teacher"])
        # this recipe's optimizer settings (betas, eps, weight decay): the loaded state would restore the old ones
        settings = [
            {key: value for key, value in group.items() if key not in ("params", "lr", "initial_lr")}
            for group in self.optimizer.param_groups
        ]
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.scheduler.load_state_dict(checkpoint["scheduler"])
        if any(key.startswith("optim.") for key in self.resume_changes.other):
            for group, own in zip(self.optimizer.param_groups, settings):
                group.update(own)
        if self.resume_changes.schedule:  # the new lr schedule from the next update on (the EMA decay is per update)
            self.scheduler.base_lrs = [self.recipe.optim.lr for _ in self.optimizer.param_groups]
            for group, scale in zip(self.optimizer.param_groups, self.scheduler.lr_lambdas):
                group["initial_lr"] = self.recipe.optim.lr
                group["lr"] = self.recipe.optim.lr * scale(self.scheduler.last_epoch)
            self.scheduler._last_lr = [group["lr"] for group in self.optimizer.param_groups]
        self.step = self.saved_step = int(checkpoint["step"])
        self.elapsed = float(checkpoint.get("elapsed", 0.0))
        states = checkpoint.get("rng") or []
        if len(states) == self.dist.world_size:
            set_rng_state(states[self.dist.rank])
            return True
        if self.dist.is_main:
            logger.warning(
                "the checkpoint was written by %d processes, this run has %d: random states (dropout) are reseeded",
                len(states), self.dist.world_size,
            )
        return False

    def save_checkpoint(self) -> Path:
        """Write ``checkpoint.pt`` atomically (all ranks must call this)."""
        rng_states = self.dist.all_gather_object(rng_state())
        self.check_teacher_sync()
        if self.dist.is_main:
            state = {
                "format": CHECKPOINT_FORMAT,
                "version": CHECKPOINT_VERSION,
                "step": self.step,
                "elapsed": self.elapsed,
                "world_size": self.dist.world_size,
                "recipe": self.recipe.to_dict(),
                "model_config": self.model_config.to_dict(),
                "extras": self.adapter.extras,
                "student": _to_cpu(self.model.backbone.state_dict()),
                "head": _to_cpu(self.model.head.state_dict()),
                "teacher": _to_cpu(self.teacher.model.state_dict()),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "rng": rng_states,
            }
            temporary = self.checkpoint_path.with_name(f".{CHECKPOINT_NAME}.tmp")
            torch.save(state, temporary)
            os.replace(temporary, self.checkpoint_path)
        self.saved_step = self.step
        self.dist.barrier()
        return self.checkpoint_path

    def check_teacher_sync(self) -> None:
        """Raise when the teachers of the ranks differ (they are updated from the same all-reduced student)."""
        if not self.dist.distributed:
            return
        with torch.no_grad():
            sums = torch.stack([p.detach().double().sum() for p in self.teacher.model.parameters()])
        low, high = sums.clone(), sums.clone()
        dist.all_reduce(low, op=dist.ReduceOp.MIN)
        dist.all_reduce(high, op=dist.ReduceOp.MAX)
        if not torch.equal(low, high):
            raise RuntimeError(
                f"the EMA teachers of the {self.dist.world_size} processes differ at step {self.step}: every rank must "
                "build the same student (same recipe and seed) and update the teacher after each optimizer step"
            )

    # ------------------------------------------------------------ logging
    def _trim_log(self) -> None:
        """Keep the log lines of the updates the checkpoint includes (all of them on a fresh start: none)."""
        if not self.log_path.is_file():
            return
        kept = [line for line in self.log_path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= self.step]
        self.log_path.write_text("".join(line + "\n" for line in kept))

    def _write_log(self, record: dict[str, Any]) -> None:
        self.scalar_log.append(record)

    def _log_resume_changes(self) -> None:
        """Record the recipe changes this resume accepted (once per update, if resumed twice from it)."""
        logged = []
        if self.log_path.is_file():
            logged = [json.loads(line) for line in self.log_path.read_text().splitlines() if line.strip()]
        for event in self.resume_changes.events():
            record = {"step": self.step, **event}
            logger.warning(
                "update %d: %s on resume: %s", self.step, event["event"].replace("_", " "), describe(event["changes"])
            )
            if record not in logged:
                self._write_log(record)

    def plot(self) -> Path | None:
        """Draw ``loss.png`` from the log (rank 0); None on other ranks or without matplotlib."""
        if not self.dist.is_main or not self.log_path.is_file():
            return None
        return plot_pretraining(
            self.log_path,
            self.plot_path,
            title=f"data2vec {self.recipe.modality} ({self.recipe.name or 'recipe'})",
            min_target_std=self.recipe.collapse.min_target_std,
            min_prediction_std=self.recipe.collapse.min_prediction_std,
        )

    # ------------------------------------------------------------ one update
    def step_batches(self) -> StepBatches:
        """This rank's micro-batches, masks included, of every step (``update_freq`` per step)."""
        return StepBatches(
            self.dataset, self.recipe.data.batch_size, self.recipe.seed, self.dist.rank, self.dist.world_size,
            mask_sampler=self.adapter.sample_clone_masks if self.recipe.version == 2 else self.adapter.sample_masks,
            update_freq=self.recipe.optim.update_freq,
            max_tokens=getattr(self.recipe.data, "max_tokens", None),
        )

    def _batch_description(self, batches: StepBatches) -> str:
        processes, update_freq = self.dist.world_size, self.recipe.optim.update_freq
        if batches.max_tokens is None:
            accumulation = f" in {update_freq} micro-batches" if update_freq > 1 else ""
            return f"global batch {batches.global_batch_size} on {processes} process(es){accumulation}"
        samples = batches.max_tokens * processes * update_freq
        seconds = samples / self.recipe.data.sampling_rate if hasattr(self.recipe.data, "sampling_rate") else None
        audio = f" = {seconds:.1f} s of audio" if seconds is not None else ""
        return (
            f"{batches.batches_per_epoch} length buckets per epoch; global batch up to {samples} samples{audio} "
            f"per update (max_tokens {batches.max_tokens} x {processes} process(es) x update_freq {update_freq})"
        )

    def train_step(
        self, batches: list[dict[str, torch.Tensor]] | dict[str, torch.Tensor], stop_requested: bool = False
    ) -> dict[str, float]:
        """One optimizer update on this rank's micro-batches of a global update (one batch dict is
        one micro-batch). Returns the global statistics of the update (identical on every rank)
        and whether any rank asked to stop."""
        recipe = self.recipe
        if isinstance(batches, dict):
            batches = [batches]
        # the masked positions of the whole update: counted on the CPU masks, all-reduced on the
        # device without waiting for it
        local_masked = sum(int(batch["mask"].sum()) for batch in batches)
        masked_total = torch.full((1,), float(local_masked), dtype=torch.float64, device=self.device)
        self.dist.all_reduce_sum(masked_total)
        loss_factor = (self.dist.world_size / masked_total.clamp(min=1.0))[0].float()  # DDP averages the ranks

        self.optimizer.zero_grad(set_to_none=True)
        loss_total = torch.zeros((), dtype=torch.float64, device=self.device)
        target_sums = prediction_sums = 0.0
        position_sums = torch.zeros((), dtype=torch.float64, device=self.device)
        seconds = None
        for index, batch in enumerate(batches):
            batch_seconds = self.adapter.batch_seconds(batch)
            if batch_seconds is not None:
                seconds = (seconds or 0.0) + batch_seconds
            visible = self._visible_positions(batch) if recipe.version == 2 else None
            batch = {key: value.to(self.device, non_blocking=True) for key, value in batch.items()}
            last = index == len(batches) - 1
            gradient_sync = self.trained.no_sync() if self.dist.distributed and not last else contextlib.nullcontext()
            with gradient_sync:
                loss_sum, prediction, target, along_positions = self._micro_batch_loss(batch, visible, masked_total)
                (loss_sum * loss_factor).backward()
            loss_total += loss_sum.detach().double()
            target_sums = target_sums + spread_sums(target)
            prediction_sums = prediction_sums + spread_sums(prediction)
            position_sums = position_sums + along_positions

        channels = target.shape[-1]
        flags = loss_total.new_tensor([float(stop_requested), seconds or 0.0, float(len(batches))])
        totals = torch.cat([loss_total[None], flags, position_sums[None], target_sums, prediction_sums])
        self.dist.all_reduce_sum(totals)  # one all-reduce of every statistic
        masked = float(masked_total[0])
        loss_value = float(totals[0]) / max(masked, 1.0)
        spread_positions = float(totals[4] / totals[3])  # the mean over the micro-batches of every rank
        spread_target = float(spread_from_sums(totals[5 : 6 + 2 * channels]))
        spread_prediction = float(spread_from_sums(totals[6 + 2 * channels :]))
        update = self.step + 1
        if not math.isfinite(loss_value):
            raise TrainingDivergedError(
                f"the loss is {loss_value} at update {update}: lower optim.lr, enable or tighten optim.clip_norm, "
                f"or use precision fp32; the last good checkpoint is {self.checkpoint_path}"
            )
        self._watch_collapse(update, spread_target, spread_prediction, spread_positions)

        grad_norm = None
        if recipe.optim.clip_norm is not None:
            grad_norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), recipe.optim.clip_norm))
        lr = self.optimizer.param_groups[0]["lr"]
        self.optimizer.step()
        self.scheduler.step()
        decay = ema_decay(update, recipe.ema.start, recipe.ema.end, recipe.ema.anneal_steps)
        self.teacher.update(self.model.backbone, decay)
        self.step = update
        return {
            "loss": loss_value,
            "lr": lr,
            "ema_decay": decay,
            "target_std": spread_target,
            "prediction_std": spread_prediction,
            "position_spread": spread_positions,
            "masked": masked,
            "audio_seconds": float(totals[2]) if seconds is not None else None,
            "grad_norm": grad_norm,
            "stop": float(totals[1]) > 0,
        }

    def _micro_batch_loss(
        self, batch: dict[str, torch.Tensor], visible: int | None, masked_total: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(summed loss, predictions, targets, ``position_spread`` of the teacher's top layer) of one
        micro-batch on the device: the teacher once per sample (float32, no grad), the student on the
        masked input (or, in 2.0, on each masked version)."""
        recipe = self.recipe
        if recipe.version == 2:
            student_inputs, teacher_inputs, mask = self.adapter.clone_inputs(batch)  # mask (samples x clones, positions)
        else:
            student_inputs, teacher_inputs, mask = self.adapter.model_inputs(batch)
        with torch.autocast(device_type=self.device.type, enabled=False):  # the teacher in float32
            layers, padding_mask = self.adapter.teacher_layers(self.teacher, teacher_inputs)
        targets = average_top_k(
            layers,
            recipe.targets.top_k,
            layer_norm=recipe.targets.layer_norm,
            post_norm=recipe.targets.post_norm,
            padding_mask=padding_mask,
        )  # (samples, positions, C) float32
        loss = recipe.loss
        if recipe.version == 2:
            clones = recipe.masking.clones
            # (masked, C): each sample's targets at the masked positions of each of its clones, without
            # a copy of the targets per clone
            target = targets[:, None].expand(-1, clones, -1, -1)[mask.view(-1, clones, mask.shape[-1])]
            with autocast_context(recipe.precision, self.device):
                prediction, cls_state = self.trained(student_inputs, mask, visible)
        else:
            target = targets[mask]  # (local masked, C)
            with autocast_context(recipe.precision, self.device):
                prediction = self.trained(student_inputs, mask)  # (local masked, C)
        prediction = prediction.float()
        loss_sum = regression_loss(prediction, target, beta=loss.beta, scale=loss.scale, reduction="sum")
        if loss.reduction == "mean":
            loss_sum = loss_sum / target.shape[-1]  # mean over every element of every masked position
        if recipe.version == 2 and loss.cls_weight > 0:
            # the CLS state regresses the mean of its sample's targets; the update's loss is
            # sum / masked + cls_weight * (sum over masked versions), hence the factor masked_total
            cls_target = targets.mean(dim=1).repeat_interleave(recipe.masking.clones, 0)  # (rows, C)
            cls_loss = regression_loss(cls_state.float(), cls_target, beta=loss.beta, scale=loss.scale, reduction="sum")
            loss_sum = loss_sum + loss.cls_weight * masked_total[0].float() * cls_loss
        return loss_sum, prediction, target, position_spread(layers[-1])

    def _visible_positions(self, batch: dict[str, torch.Tensor]) -> int:
        """The unmasked positions per masked version of a 2.0 batch (counted on the CPU masks, which
        must all hide the same number)."""
        mask = batch["mask"]  # (samples, clones, positions)
        visible = (~mask).sum(dim=-1)
        if not bool((visible == visible.flatten()[0]).all()):
            raise ValueError(
                f"data2vec 2.0 masks must hide the same number of positions in every row, got visible counts "
                f"{sorted(set(visible.flatten().tolist()))}"
            )
        return int(visible.flatten()[0])

    def _watch_collapse(self, update: int, spread_target: float, spread_prediction: float, spread_positions: float) -> None:
        watch = self.recipe.collapse
        if update <= watch.check_after:
            return
        problems = []
        if spread_target < watch.min_target_std:
            problems.append(f"target std {spread_target:.4g} < collapse.min_target_std {watch.min_target_std:g}")
        if spread_prediction < watch.min_prediction_std:
            problems.append(
                f"prediction std {spread_prediction:.4g} < collapse.min_prediction_std {watch.min_prediction_std:g}"
            )
        if spread_positions < watch.min_position_spread:
            problems.append(
                f"position spread {spread_positions:.4g} < collapse.min_position_spread {watch.min_position_spread:g} "
                "(each sample's positions carry nearly one vector)"
            )
        if not problems:
            return
        saved = f"{self.checkpoint_path} (update {self.saved_step})" if self.saved_step is not None else "none yet"
        raise CollapseError(
            f"representation collapse at update {update}: {'; '.join(problems)} (the watch starts after update "
            f"{watch.check_after}). The per-dimension spread of the teacher's targets or of the student's predictions "
            "has nearly vanished: they are almost the same vector at every position, so the loss can shrink without "
            "anything being learned. Things to try: a lower learning rate or a longer warmup (optim.lr, "
            "optim.warmup_steps); a slower teacher (higher ema.start, ema.end); a larger batch (data.batch_size, "
            "data.max_tokens or optim.update_freq); "
            "check the data for silence, blank images or repeated text. The run stopped without saving this state; "
            f"last checkpoint: {saved}."
        )

    # ------------------------------------------------------------ the loop
    def train(self, stop_after: int | None = None) -> TrainResult:
        """Train up to ``recipe.optim.total_steps`` updates (or ``stop_after`` more, then save)."""
        recipe = self.recipe
        total = recipe.optim.total_steps
        end = total if stop_after is None else min(total, self.step + int(stop_after))
        if self.step >= end:
            logger.info("nothing to do: the run is at update %d of %d", self.step, total)
            return TrainResult(self.step, False, self.out_dir, self.checkpoint_path, None)
        batches = self.step_batches()
        loader = step_loader(batches, self.step, end, recipe.data.num_workers, pin_memory=self.device.type == "cuda")
        if self.dist.is_main:
            logger.info(
                "data2vec %s pretraining: %.2fM trained parameters, %d items, %s (%s); updates %d -> %d of %d; "
                "run folder %s",
                recipe.modality, sum(p.numel() for p in self.model.parameters()) / 1e6, len(self.dataset),
                self._batch_description(batches), self.device, self.step, end, total, self.out_dir,
            )
        bar = tqdm(
            total=total, initial=self.step, desc=f"pretrain {recipe.modality}", unit="step",
            dynamic_ncols=True, disable=not (self.progress and self.dist.is_main),
        )
        stop = StopFlag()
        window: dict[str, list[float]] = {
            "loss": [], "target_std": [], "prediction_std": [], "position_spread": [], "audio_seconds": []
        }
        last_log, interrupted, saved_at = None, False, -1
        started = time.perf_counter()
        with stop.installed():
            try:
                for index, micro_batches in enumerate(_in_groups(loader, recipe.optim.update_freq)):
                    stats = self.train_step(micro_batches, stop.requested)
                    if index == 0:  # the first batch's inputs were checked: no more device waits
                        set_input_validation(self.model, False)
                        set_input_validation(self.teacher, False)
                    self.elapsed += time.perf_counter() - started
                    started = time.perf_counter()
                    for key in window:
                        if stats[key] is not None:
                            window[key].append(stats[key])
                    bar.set_postfix(
                        loss=f"{stats['loss']:.4f}", target_std=f"{stats['target_std']:.3f}",
                        ema=f"{stats['ema_decay']:.5f}", refresh=False,
                    )
                    bar.update(1)
                    if self.step % recipe.log_every == 0 or self.step == end or stats["stop"]:
                        last_log = {
                            "step": self.step,
                            "loss": float(np.mean(window["loss"])),
                            "lr": stats["lr"],
                            "ema_decay": stats["ema_decay"],
                            "target_std": float(np.mean(window["target_std"])),
                            "prediction_std": float(np.mean(window["prediction_std"])),
                            "position_spread": float(np.mean(window["position_spread"])),
                            "seconds": round(self.elapsed, 3),
                        }
                        if window["audio_seconds"]:  # per update
                            last_log["audio_seconds"] = round(float(np.mean(window["audio_seconds"])), 3)
                        if stats["grad_norm"] is not None:
                            last_log["grad_norm"] = stats["grad_norm"]
                        window = {key: [] for key in window}
                        if self.dist.is_main:
                            self._write_log(last_log)
                    if stats["stop"]:
                        interrupted = True
                        break
                    if self.step % recipe.save_every == 0 and self.step < end:
                        self.save_checkpoint()
                        saved_at = self.step
                        self.plot()
                        started = time.perf_counter()
            except (CollapseError, TrainingDivergedError):
                self.plot()  # the curves up to the failure, for the diagnosis
                raise
            finally:
                bar.close()
                self.scalar_log.close()
        if saved_at != self.step:
            self.save_checkpoint()
        self.plot()
        if interrupted and self.dist.is_main:
            print(
                f"Interrupted: stopped after update {self.step} of {total}; checkpoint saved to {self.checkpoint_path}. "
                "Continue with the same command plus --resume."
            )
        return TrainResult(self.step, interrupted, self.out_dir, self.checkpoint_path, last_log)

    def close(self) -> None:
        self.scalar_log.close()
        self.dist.close()


def _in_groups(items, size: int):
    """Lists of ``size`` consecutive items (a last shorter list is dropped)."""
    group = []
    for item in items:
        group.append(item)
        if len(group) == size:
            yield group
            group = []


class StopFlag:
    """SIGINT / SIGTERM ask the loop to stop after the current update; a second SIGINT quits at once."""

    def __init__(self) -> None:
        self.requested = False
        self.interrupts = 0
        self._previous: dict[int, Any] = {}

    def _handle(self, signum, frame) -> None:
        if signum == signal.SIGINT:
            self.interrupts += 1
            if self.interrupts > 1:
                raise KeyboardInterrupt
        if self.requested:
            return
        self.requested = True
        print("\nStopping after this update and saving a checkpoint (Ctrl-C again quits without saving)...", flush=True)

    @contextlib.contextmanager
    def installed(self):
        try:
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        except ValueError:  # not the main thread: no handlers
            pass
        try:
            yield self
        finally:
            for signum, handler in self._previous.items():
                signal.signal(signum, handler)
            self._previous.clear()


# ---------------------------------------------------------------------------- checkpoint files
def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.is_file():
        raise FileNotFoundError(f"no pretraining checkpoint at {str(path)!r}")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a data2vec pretraining checkpoint (written by `data2vec pretrain`)")
    return _upgrade(checkpoint)


def _upgrade(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint of an older ``CHECKPOINT_VERSION`` in today's layout (same tensors, today's names)."""
    if checkpoint.get("version", 1) < 2:
        for part in ("student", "teacher"):  # backbone state dicts: blocks moved from layers.N to encoder.layers.N
            checkpoint[part] = {re.sub(r"^layers\.", "encoder.layers.", key): value for key, value in checkpoint[part].items()}
        recipe = checkpoint["recipe"]
        recipe["modality"] = MODALITIES.get(recipe["modality"]).name  # speech -> audio, image -> vision
        checkpoint["version"] = 2
    return checkpoint


def _to_cpu(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {key: value.detach().cpu() for key, value in state.items()}
