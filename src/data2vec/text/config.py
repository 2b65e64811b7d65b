"""Configuration of the text family (``model_type`` ``data2vec-text``, a RoBERTa-style encoder)."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from ..core.config import TransformerConfig


@dataclasses.dataclass(kw_only=True)
class Data2VecTextConfig(TransformerConfig):
    """Keys and defaults of the reference's ``Data2VecTextConfig``. The official checkpoints'
    files differ from these defaults (e.g. ``vocab_size`` 50265, ``max_position_embeddings``
    514, ``layer_norm_eps`` 1e-5); loading a checkpoint always takes the file's values."""

    model_type = "data2vec-text"
    # read from `extra` by validate(): official checkpoints write "absolute", the only kind supported
    file_keys: ClassVar[frozenset[str]] = frozenset({"position_embedding_type"})

    vocab_size: int = 30522
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    pad_token_id: int | None = 1
    bos_token_id: int | None = 0
    eos_token_id: int | list[int] | None = 2
    use_cache: bool = True
    classifier_dropout: float | None = None
    is_decoder: bool = False
    add_cross_attention: bool = False
    tie_word_embeddings: bool = True  # the masked/causal LM decoder shares the word embedding matrix

    def validate(self) -> None:
        if self.hidden_size % self.num_attention_heads != 0:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be a multiple of num_attention_heads ({self.num_attention_heads})"
            )
        position_type = self.extra.get("position_embedding_type", "absolute")
        if position_type != "absolute":
            raise ValueError(f"position_embedding_type {position_type!r} is not supported; data2vec text uses 'absolute'")
        if self.add_cross_attention and not self.is_decoder:
            raise ValueError("add_cross_attention=True needs is_decoder=True (cross attention belongs to a decoder)")
