"""Toys for the fine-tuning loop's tests (a tiny MLP with dropout and plain dict examples), and
the worker that ``tests/training/test_loop.py`` runs under ``torchrun``:

    torchrun --nproc_per_node 2 -m tests.training.loop_worker OUTPUT_DIR BATCH_SIZE EXAMPLES
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from data2vec.training.loop import Trainer, TrainSettings

FEATURES, HIDDEN, CLASSES, BLOCKS = 6, 16, 3, 2


@dataclass
class ToyOutput:
    loss: torch.Tensor | None
    logits: torch.Tensor


class ToyModel(nn.Module):
    """Embedding (layer 0), two residual blocks with dropout (layers 1, 2), norm + head (layer 3)."""

    def __init__(self, dropout: float = 0.0) -> None:
        super().__init__()
        self.embed = nn.Linear(FEATURES, HIDDEN)
        self.blocks = nn.ModuleList(nn.Linear(HIDDEN, HIDDEN) for _ in range(BLOCKS))
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(HIDDEN)
        self.head = nn.Linear(HIDDEN, CLASSES)

    def forward(self, features: torch.Tensor, labels: torch.Tensor | None = None) -> ToyOutput:
        hidden = self.embed(features)  # (batch, hidden)
        for block in self.blocks:
            hidden = hidden + self.dropout(torch.tanh(block(hidden)))
        logits = self.head(self.norm(hidden))  # (batch, classes)
        loss = None if labels is None else F.cross_entropy(logits.float(), labels)  # mean over the batch
        return ToyOutput(loss, logits)


def toy_model(seed: int = 0, dropout: float = 0.0) -> ToyModel:
    torch.manual_seed(seed)
    return ToyModel(dropout)


def toy_layer_id(name: str) -> int:
    if name.startswith("embed."):
        return 0
    if name.startswith("blocks."):
        return int(name.split(".")[1]) + 1
    return BLOCKS + 1  # norm and head


def make_examples(count: int, seed: int = 0) -> list[dict]:
    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(count, FEATURES, generator=generator)
    labels = (features[:, 0] > 0).long() + (features[:, 1] > 0.5).long()  # a learnable rule, classes 0..2
    return [{"features": row.tolist(), "label": int(label)} for row, label in zip(features, labels)]


def collate(examples: list[dict]) -> dict[str, torch.Tensor]:
    return {
        "features": torch.tensor([example["features"] for example in examples], dtype=torch.float32),
        "labels": torch.tensor([example["label"] for example in examples]),
    }


def save_state(model: nn.Module, folder: Path) -> None:
    torch.save(model.state_dict(), folder / "model.pt")


def evaluate_loss(examples: list[dict]):
    def evaluate(model: nn.Module) -> dict[str, float]:
        batch = collate(examples)
        output = model(**batch)
        accuracy = (output.logits.argmax(-1) == batch["labels"]).float().mean()
        return {"loss": float(output.loss), "accuracy": float(accuracy)}

    return evaluate


def main(output_dir: str, batch_size: str, examples: str) -> None:
    settings = TrainSettings(epochs=2, batch_size=int(batch_size), learning_rate=1e-2, warmup_ratio=0.25, log_every=1)
    trainer = Trainer(
        toy_model(), make_examples(int(examples)), collate, settings, output_dir,
        evaluate=evaluate_loss(make_examples(8, seed=1)), save=save_state, progress=False,
    )
    try:
        trainer.train()
    finally:
        trainer.close()


if __name__ == "__main__":
    main(*sys.argv[1:])
