"""The library's output dataclasses, made able to leave a ``tf.function``.

They are ``EncoderOutput`` and ``PredictionOutput`` of ``data2vec.core.outputs`` (same fields,
attribute / name / index access) plus TensorFlow's nest protocol (``__tf_flatten__`` and
``__tf_unflatten__``), which lets ``tf.function`` and ``tf.nest`` take them apart into tensors
and put them back together. Nothing here imports TensorFlow.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ...core.outputs import EncoderOutput, PredictionOutput


def _flatten(output) -> tuple[tuple[str, ...], tuple[Any, ...]]:
    names = tuple(field.name for field in dataclasses.fields(output))
    return names, tuple(getattr(output, name) for name in names)


def _unflatten(cls, names: tuple[str, ...], components: tuple[Any, ...]):
    return cls(**dict(zip(names, components)))


@dataclasses.dataclass
class TFEncoderOutput(EncoderOutput):
    """``last_hidden_state``, ``pooler_output``, ``hidden_states``, ``attentions`` (and the
    always-None ``past_key_values``, ``cross_attentions`` of the shared class)."""

    __tf_flatten__ = _flatten
    __tf_unflatten__ = classmethod(_unflatten)


@dataclasses.dataclass
class TFPredictionOutput(PredictionOutput):
    """``loss``, ``logits``, ``hidden_states``, ``attentions``."""

    __tf_flatten__ = _flatten
    __tf_unflatten__ = classmethod(_unflatten)
