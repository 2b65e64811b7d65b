"""data2vec self-supervised pretraining: one algorithm for audio, vision and text.

Primitives: ``ema`` (the teacher), ``masking``, ``targets`` (top-K layer averages),
``objective`` (regression head, loss, collapse statistics). Running it: ``recipe`` (YAML
settings), ``resume`` (what a resumed run may change), ``modalities`` (the per-modality
adapters), ``data``, ``trainer`` (the loop), ``export`` (checkpoint -> Hugging Face backbone
folder); ``training.plots`` draws ``loss.png`` and mirrors the log to TensorBoard.

The heavy modules load on first use, so ``import data2vec.pretraining`` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Recipe": "recipe",
    "RecipeError": "recipe",
    "RecipeChangedError": "resume",
    "Pretrainer": "trainer",
    "TrainResult": "trainer",
    "CollapseError": "trainer",
    "load_checkpoint": "trainer",
    "export_backbone": "export",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'data2vec.pretraining' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)
