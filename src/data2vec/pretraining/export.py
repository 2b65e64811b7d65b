"""Pretraining checkpoint -> a backbone folder in the Hugging Face layout.

The folder holds ``config.json`` + ``model.safetensors`` (the backbone's ``save_pretrained``)
and the preprocessing files fine-tuning needs: the tokenizer for text,
``preprocessor_config.json`` for audio and vision. ``Data2Vec{Audio,Vision,Text}Model``
load it here and in the reference library with every weight found. The text backbone is
written with its pooler freshly initialised: pretraining does not train it (nor do the
sequence-classification heads use it), but the default text model class has one. The
regression head and the teacher are pretraining-only and are not written
(``which="teacher"`` exports the teacher instead of the student).
"""

from __future__ import annotations

import os
from pathlib import Path

from .modalities import adapter_for
from .recipe import Recipe
from .trainer import load_checkpoint


def export_backbone(checkpoint: str | os.PathLike, directory: str | os.PathLike, *, which: str = "student") -> Path:
    """Write the student (or teacher) backbone of ``checkpoint`` (a file or a run folder) to ``directory``."""
    if which not in ("student", "teacher"):
        raise ValueError(f"which must be 'student' or 'teacher', got {which!r}")
    state = load_checkpoint(checkpoint)
    recipe = Recipe.from_dict(state["recipe"], source=f"the recipe stored in {checkpoint}")
    adapter = adapter_for(recipe)
    config = adapter.config_class.from_dict(state["model_config"])
    config.architectures = None
    backbone, untrained = adapter.export_backbone(config)
    result = backbone.load_state_dict(state[which], strict=False)
    missing = [key for key in result.missing_keys if not key.startswith(untrained)]
    if missing or result.unexpected_keys:
        raise ValueError(
            f"the {which} weights in {checkpoint} do not fit the backbone of its recipe (missing {missing}, "
            f"unexpected {result.unexpected_keys}): was the checkpoint written by another version?"
        )
    directory = Path(directory)
    backbone.save_pretrained(directory)
    adapter.export_extras(directory, dict(state.get("extras") or {}))
    return directory
