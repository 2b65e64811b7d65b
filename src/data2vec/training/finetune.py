"""Fine-tuning on tensors in memory (the demos): any model of this library whose forward takes
a batch dict with ``labels`` and returns an output with ``loss`` and ``logits``.

The training itself is the library's one loop (``training.loop.Trainer``, AdamW with linear
warmup and cosine decay, gradient clipping, seeded data order, a tqdm bar with the running
loss); this module adapts in-memory inputs to it and scores accuracy on an evaluation set.
Inputs are one tensor (passed as ``input_name``) or a dict of tensors with the same first
dimension (e.g. ``input_ids`` and ``attention_mask``)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass
class FinetuneSettings:
    epochs: int = 30
    batch_size: int = 32
    learning_rate: float = 1e-3
    weight_decay: float = 0.05
    warmup_fraction: float = 0.1
    clip_norm: float = 1.0
    seed: int = 0


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
) -> dict:
    """Train ``model`` on (inputs, labels) in memory with the library's one fine-tuning loop
    (:class:`training.loop.Trainer`: AdamW, warmup + cosine decay, clipping, seeded data order);
    a temporary folder takes its checkpoint, written once at the end. ``augment`` changes the
    ``input_name`` tensor of each batch, drawing from torch's random generator (which the loop
    seeds per batch). Returns the loop's result; Ctrl-C raises KeyboardInterrupt."""
    import tempfile

    from .loop import Trainer, TrainSettings

    inputs = as_input_dict(inputs, input_name)

    def collate(rows: list[int]) -> dict[str, torch.Tensor]:
        index = torch.tensor(rows)
        batch = {name: value[index] for name, value in inputs.items()}
        if augment is not None:
            batch[input_name] = augment(batch[input_name], torch.default_generator)
        batch["labels"] = labels[index]
        return batch

    total_steps = settings.epochs * math.ceil(len(labels) / settings.batch_size)
    loop_settings = TrainSettings(
        epochs=settings.epochs, batch_size=settings.batch_size, learning_rate=settings.learning_rate,
        weight_decay=settings.weight_decay, schedule="cosine", warmup_ratio=settings.warmup_fraction,
        clip_norm=settings.clip_norm or None, seed=settings.seed, eval_every=max(1, total_steps), log_every=max(1, total_steps),
    )
    with tempfile.TemporaryDirectory(prefix="data2vec-finetune-") as folder:
        trainer = Trainer(
            model, list(range(len(labels))), collate, loop_settings, folder,
            progress=progress, reports=False, description=description,
        )
        result = trainer.train()
    if result["interrupted"]:
        raise KeyboardInterrupt
    return result
