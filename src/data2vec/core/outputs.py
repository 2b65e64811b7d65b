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


# Every field an output may have, with its type. An output class lists its fields in the
# reference's order (positions count: ``out[0]``); each is optional (None by default).
FIELD_TYPES: dict[str, Any] = {
    "loss": Tensor,
    "logits": Tensor,
    "start_logits": Tensor,
    "end_logits": Tensor,
    "embeddings": Tensor,
    "last_hidden_state": Tensor,
    "pooler_output": Tensor,
    "extract_features": Tensor,
    "hidden_states": Tensors,
    "past_key_values": tuple,
    "attentions": Tensors,
    "cross_attentions": Tensors,
}


def output_class(name: str, fields: str, doc: str) -> type[ModelOutput]:
    """A ``ModelOutput`` dataclass called ``name`` with the space-separated ``fields``, in order."""
    return dataclasses.make_dataclass(
        name,
        [(field, FIELD_TYPES[field] | None, None) for field in fields.split()],
        bases=(ModelOutput,),
        namespace={"__doc__": doc, "__module__": __name__},
    )


EncoderOutput = output_class(
    "EncoderOutput",
    "last_hidden_state pooler_output hidden_states past_key_values attentions cross_attentions",
    "Backbone output (text, vision): final states, optional pooled vector, per-layer tensors.",
)
AudioEncoderOutput = output_class(
    "AudioEncoderOutput", "last_hidden_state extract_features hidden_states attentions", "Speech backbone output."
)
CausalLMOutput = output_class(
    "CausalLMOutput", "loss logits past_key_values hidden_states attentions cross_attentions", "Causal language model output."
)
PredictionOutput = output_class(
    "PredictionOutput",
    "loss logits hidden_states attentions",
    "Masked LM, sequence/token/frame classification, multiple choice, CTC and segmentation.",
)
QuestionAnsweringOutput = output_class(
    "QuestionAnsweringOutput", "loss start_logits end_logits hidden_states attentions", "Extractive question answering output."
)
XVectorOutput = output_class(
    "XVectorOutput", "loss logits embeddings hidden_states attentions", "Speaker embeddings and their classification."
)


def encoder_output(result: EncoderResult, pooler: Callable[[Tensor], Tensor] | None) -> EncoderOutput:
    """The ``EncoderOutput`` of a backbone whose encoder gave ``result``; ``pooler``: its pooler, if any."""
    last = result.last_hidden_state
    return EncoderOutput(
        last_hidden_state=last,
        pooler_output=pooler(last) if pooler is not None else None,
        hidden_states=result.hidden_states,
        past_key_values=result.past_key_values,
        attentions=result.attentions,
        cross_attentions=result.cross_attentions or None,
    )
