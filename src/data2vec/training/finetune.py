"""The fine-tuning loop: any model of this library whose forward takes a batch dict with
``labels`` and returns an output with ``loss`` and ``logits``.

AdamW with linear warmup and cosine decay, gradient clipping, seeded data order, a tqdm bar
with the running loss, and accuracy on an evaluation set. Inputs are one tensor (passed as
``input_name``) or a dict of tensors with the same first dimension (e.g. ``input_ids`` and
``attention_mask``)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from ..core.modeling import set_input_validation
from ..core.optim import parameter_groups


@dataclass
class FinetuneSettings:
    epochs: int = 30
    batch_size: int = 32
    learning_rate: float = 1e-3
    weight_decay: float = 0.05
    warmup_fraction: float = 0.1
    clip_norm: float = 1.0
    seed: int = 0


def warmup_cosine(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    """Learning-rate factor: linear from 0 to 1 over ``warmup_steps``, then cosine to 0."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


Inputs = torch.Tensor | dict[str, torch.Tensor]


def as_input_dict(inputs: Inputs, input_name: str) -> dict[str, torch.Tensor]:
    return dict(inputs) if isinstance(inputs, dict) else {input_name: inputs}


@torch.no_grad()
def predictions(model: torch.nn.Module, inputs: Inputs, input_name: str = "pixel_values", batch_size: int = 256) -> torch.Tensor:
    """The argmax class of every row, in eval mode."""
    inputs = as_input_dict(inputs, input_name)
    rows = len(next(iter(inputs.values())))
    was_training = model.training
    model.eval()
    classes = [
        model(**{name: value[start : start + batch_size] for name, value in inputs.items()}).logits.argmax(-1)
        for start in range(0, rows, batch_size)
    ]
    model.train(was_training)
    return torch.cat(classes) if classes else torch.zeros(0, dtype=torch.long)


def accuracy(model: torch.nn.Module, inputs: Inputs, labels: torch.Tensor, input_name: str = "pixel_values", batch_size: int = 256) -> float:
    return float((predictions(model, inputs, input_name, batch_size) == labels).float().mean()) if len(labels) else 0.0


def finetune(
    model: torch.nn.Module,
    inputs: Inputs,
    labels: torch.Tensor,
    settings: FinetuneSettings,
    *,
    input_name: str = "pixel_values",
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
    description: str = "fine-tune",
    progress: bool = True,
) -> list[float]:
    """Train ``model`` on (inputs, labels) in memory. Returns the loss of every step.
    ``augment`` changes the ``input_name`` tensor of each batch."""
    inputs = as_input_dict(inputs, input_name)
    generator = torch.Generator().manual_seed(settings.seed)
    steps_per_epoch = math.ceil(len(labels) / settings.batch_size)
    total = settings.epochs * steps_per_epoch
    fused = all(parameter.device.type in ("cpu", "cuda") and parameter.is_floating_point() for parameter in model.parameters())
    optimizer = torch.optim.AdamW(parameter_groups(model, settings.weight_decay), lr=settings.learning_rate, fused=fused or None)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(total, max(1, int(settings.warmup_fraction * total))))
    model.train()
    losses: list[float] = []
    bar = tqdm(total=total, desc=description, unit="step", disable=not progress, leave=False)
    for _ in range(settings.epochs):
        order = torch.randperm(len(labels), generator=generator)
        for start in range(0, len(labels), settings.batch_size):
            index = order[start : start + settings.batch_size]
            batch = {name: value[index] for name, value in inputs.items()}
            if augment is not None:
                batch[input_name] = augment(batch[input_name], generator)
            loss = model(**batch, labels=labels[index]).loss
            if not losses:  # the first batch's inputs were checked: no more device waits
                set_input_validation(model, False)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if settings.clip_norm:
                torch.nn.utils.clip_grad_norm_(model.parameters(), settings.clip_norm)
            optimizer.step()
            schedule.step()
            losses.append(loss.item())
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
    bar.close()
    return losses
