"""Model outputs: dataclasses read by attribute (``out.logits``), by name (``out["logits"]``)
or by position (``out[0]``), where positions skip the fields that are ``None`` as the
reference library's outputs do. Field names and order are the reference's."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Iterator

import torch

if TYPE_CHECKING:
    from .encoder import EncoderResult

Tensor = torch.Tensor
Tensors = tuple[torch.Tensor, ...]


@dataclasses.dataclass
class ModelOutput:
    def to_tuple(self) -> tuple[Any, ...]:
        return tuple(value for _, value in self.items())

    def items(self) -> list[tuple[str, Any]]:
        return [(f.name, getattr(self, f.name)) for f in dataclasses.fields(self) if getattr(self, f.name) is not None]

    def keys(self) -> list[str]:
        return [name for name, _ in self.items()]

    def __getitem__(self, key: int | slice | str) -> Any:
        if isinstance(key, str):
            if key not in self.keys():
                raise KeyError(key)
            return getattr(self, key)
        return self.to_tuple()[key]

    def __iter__(self) -> Iterator[Any]:
        return iter(self.to_tuple())

    def __len__(self) -> int:
        return len(self.items())

    def __contains__(self, key: object) -> bool:
        return key in self.keys()


@dataclasses.dataclass
class EncoderOutput(ModelOutput):
    """Backbone output (text, vision): final states, optional pooled vector, per-layer tensors."""

    last_hidden_state: Tensor | None = None
    pooler_output: Tensor | None = None
    hidden_states: Tensors | None = None
    past_key_values: tuple | None = None
    attentions: Tensors | None = None
    cross_attentions: Tensors | None = None

    @classmethod
    def from_result(cls, result: EncoderResult, pooler: Callable[[Tensor], Tensor] | None) -> EncoderOutput:
        """The output of a backbone whose encoder gave ``result``; ``pooler``: its pooler, if any."""
        last = result.last_hidden_state
        return cls(
            last_hidden_state=last,
            pooler_output=pooler(last) if pooler is not None else None,
            hidden_states=result.hidden_states,
            past_key_values=result.past_key_values,
            attentions=result.attentions,
            cross_attentions=result.cross_attentions or None,
        )


@dataclasses.dataclass
class AudioEncoderOutput(ModelOutput):
    last_hidden_state: Tensor | None = None
    extract_features: Tensor | None = None
    hidden_states: Tensors | None = None
    attentions: Tensors | None = None


@dataclasses.dataclass
class CausalLMOutput(ModelOutput):
    loss: Tensor | None = None
    logits: Tensor | None = None
    past_key_values: tuple | None = None
    hidden_states: Tensors | None = None
    attentions: Tensors | None = None
    cross_attentions: Tensors | None = None


@dataclasses.dataclass
class PredictionOutput(ModelOutput):
    """Masked LM, sequence/token/frame classification, multiple choice, CTC and segmentation."""

    loss: Tensor | None = None
    logits: Tensor | None = None
    hidden_states: Tensors | None = None
    attentions: Tensors | None = None


@dataclasses.dataclass
class QuestionAnsweringOutput(ModelOutput):
    loss: Tensor | None = None
    start_logits: Tensor | None = None
    end_logits: Tensor | None = None
    hidden_states: Tensors | None = None
    attentions: Tensors | None = None


@dataclasses.dataclass
class XVectorOutput(ModelOutput):
    loss: Tensor | None = None
    logits: Tensor | None = None
    embeddings: Tensor | None = None
    hidden_states: Tensors | None = None
    attentions: Tensors | None = None
