"""The one attention module of the library: multi-head self or cross attention on
``torch.nn.functional.scaled_dot_product_attention``, with a fused q/k/v projection,
an optional additive bias (padding/causal masks, relative position bias) and a key/value cache.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

KeyValue = tuple[torch.Tensor, torch.Tensor]  # (batch, heads, keys, head_dim) each


def mask_value(dtype: torch.dtype) -> float:
    """The additive value that removes a key: the most negative finite number, so that a row
    whose keys are all masked gives a uniform distribution instead of NaN."""
    return torch.finfo(dtype).min


def attention_bias_from_masks(
    key_padding_mask: torch.Tensor | None,
    *,
    query_length: int,
    key_length: int,
    causal: bool = False,
    dtype: torch.dtype = torch.float32,
    device: torch.device | None = None,
) -> torch.Tensor | None:
    """Combine a padding mask over keys and a causal mask into one additive bias.

    key_padding_mask: (batch, key_length), 1 or True where the key is a real token.
    Returns (batch or 1, 1, query_length, key_length) with 0 where attention is allowed
    and ``mask_value(dtype)`` where it is not, or None when nothing is masked.
    With a cache, queries are the last ``query_length`` of the ``key_length`` positions.
    """
    allowed = None
    if key_padding_mask is not None:
        allowed = key_padding_mask.bool()[:, None, None, :]  # (batch, 1, 1, keys)
        device = key_padding_mask.device
    if causal:
        past = key_length - query_length
        query_positions = torch.arange(past, key_length, device=device)[:, None]
        key_positions = torch.arange(key_length, device=device)[None, :]
        causal_allowed = (key_positions <= query_positions)[None, None]  # (1, 1, queries, keys)
        allowed = causal_allowed if allowed is None else allowed & causal_allowed
    if allowed is None:
        return None
    bias = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
    return bias.masked_fill(~allowed, mask_value(dtype))


@dataclasses.dataclass(frozen=True)
class BlockDiagonal:
    """The attention bias of several sequences packed into one row without padding: each query
    sees only the keys of its own sequence (and, when ``causal``, only those up to itself).

    Passed where an additive bias goes (``Attention.forward``'s ``attention_bias``, through the
    encoder and its blocks); the attention then runs once per sequence on its own tokens, so no
    work is spent on padding. ``lengths``: the tokens of each sequence, in the packed order.
    """

    lengths: tuple[int, ...]
    causal: bool = False

    @classmethod
    def from_padding_mask(cls, padding_mask: torch.Tensor, causal: bool = False) -> BlockDiagonal:
        """The sequences of a (batch, length) mask of real positions, packed row by row."""
        return cls(tuple(int(length) for length in padding_mask.sum(dim=1).tolist()), causal)

    def attend(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, dropout: float) -> torch.Tensor:
        """q, k, v: (1, heads, total, head_dim) -> (1, heads, total, head_dim)."""
        if query.shape[0] != 1 or query.shape[2] != sum(self.lengths):
            raise ValueError(
                f"packed sequences of lengths {list(self.lengths)} need queries (1, heads, {sum(self.lengths)}, "
                f"head_dim), got {tuple(query.shape)}"
            )
        parts = [
            F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=self.causal)
            for q, k, v in zip(*(tensor.split(self.lengths, dim=2) for tensor in (query, key, value)))
        ]
        return torch.cat(parts, dim=2)


class Attention(nn.Module):
    """Multi-head attention.

    Self attention projects q, k and v with one fused linear layer ``qkv``; cross attention
    projects the queries with ``query`` and keys/values from the other sequence with ``key_value``.
    ``qkv_bias`` chooses which projections carry a bias: all three (BERT, wav2vec 2.0) or only
    query and value (BEiT).
    """

    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        *,
        dropout: float = 0.0,
        is_cross_attention: bool = False,
        key_value_size: int | None = None,
        qkv_bias: Literal["all", "query_value"] = "all",
    ) -> None:
        super().__init__()
        if hidden_size % num_heads != 0:
            raise ValueError(
                f"hidden_size ({hidden_size}) must be a multiple of num_attention_heads ({num_heads})"
            )
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        self.dropout = dropout
        self.is_cross_attention = is_cross_attention
        if is_cross_attention:
            if qkv_bias != "all":
                raise ValueError("cross attention supports qkv_bias='all' only")
            self.query = nn.Linear(hidden_size, hidden_size)
            self.key_value = nn.Linear(key_value_size or hidden_size, 2 * hidden_size)
        else:
            self.qkv = nn.Linear(hidden_size, 3 * hidden_size, bias=qkv_bias == "all")
            if qkv_bias == "query_value":
                self.query_bias = nn.Parameter(torch.zeros(hidden_size))
                self.value_bias = nn.Parameter(torch.zeros(hidden_size))
        self.out_proj = nn.Linear(hidden_size, hidden_size)

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x.shape
        return x.view(batch, length, self.num_heads, self.head_dim).transpose(1, 2)  # (batch, heads, length, head_dim)

    def _project_self(self, hidden_states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        query_value_bias = None
        if hasattr(self, "query_bias"):
            query_value_bias = torch.cat([self.query_bias, torch.zeros_like(self.query_bias), self.value_bias])
        if isinstance(self.qkv, nn.Linear):
            bias = self.qkv.bias if query_value_bias is None else query_value_bias
            qkv = F.linear(hidden_states, self.qkv.weight, bias)  # (batch, length, 3 * hidden)
        else:  # a replaced projection, e.g. a dynamically quantised one: called as a module
            qkv = self.qkv(hidden_states)
            if query_value_bias is not None:
                qkv = qkv + query_value_bias.to(qkv.dtype)
        return tuple(self._split_heads(part) for part in qkv.chunk(3, dim=-1))  # type: ignore[return-value]

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_bias: torch.Tensor | BlockDiagonal | None = None,
        *,
        key_value_states: torch.Tensor | None = None,
        past_key_value: KeyValue | None = None,
        use_cache: bool = False,
        output_attentions: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None, KeyValue | None]:
        """hidden_states: (batch, queries, hidden). attention_bias: additive, broadcastable to
        (batch, heads, queries, keys). For cross attention, ``key_value_states`` is the other
        sequence; a cached cross-attention key/value pair is reused as is.

        Returns (output (batch, queries, hidden), attention probabilities or None, key/value to cache or None).
        """
        if self.is_cross_attention:
            query = self._split_heads(self.query(hidden_states))
            if past_key_value is not None:
                key, value = past_key_value
            else:
                if key_value_states is None:
                    raise ValueError("cross attention needs key_value_states (the encoder's hidden states)")
                key, value = (self._split_heads(part) for part in self.key_value(key_value_states).chunk(2, dim=-1))
        else:
            query, key, value = self._project_self(hidden_states)
            if past_key_value is not None:
                key = torch.cat([past_key_value[0], key], dim=2)
                value = torch.cat([past_key_value[1], value], dim=2)
        present = (key, value) if use_cache else None

        dropout = self.dropout if self.training else 0.0
        if isinstance(attention_bias, BlockDiagonal):
            if output_attentions or past_key_value is not None or self.is_cross_attention:
                raise ValueError(
                    "packed sequences (padding dropped) run self attention without a cache and without "
                    "output_attentions; run the padded batch for those"
                )
            context = attention_bias.attend(query, key, value, dropout)
            context = context.transpose(1, 2).reshape(*hidden_states.shape[:2], self.num_heads * self.head_dim)
            return self.out_proj(context), None, present
        if attention_bias is not None:
            attention_bias = attention_bias.to(query.dtype)
        trained_bias_on_cpu = (
            attention_bias is not None and attention_bias.requires_grad and query.device.type == "cpu"
        )
        if output_attentions or trained_bias_on_cpu:
            # Written out: for the probabilities, and for a bias that is being trained (the
            # relative position tables) on the CPU, where SDPA has no fused kernel that gives
            # the bias a gradient and falls back to a math path with extra passes (a scaled copy
            # of the keys, and a masked-row check of every score). The queries are scaled
            # (head_dim wide) instead of the scores (keys wide).
            scores = (query * self.head_dim**-0.5) @ key.transpose(-1, -2)  # (batch, heads, queries, keys)
            if attention_bias is not None:
                scores = scores.add_(attention_bias)  # in place: the product's backward does not read it
            probabilities = scores.softmax(dim=-1)
            context = F.dropout(probabilities, p=dropout, training=self.training) @ value
            if not output_attentions:
                probabilities = None
        else:
            probabilities = None
            context = F.scaled_dot_product_attention(query, key, value, attn_mask=attention_bias, dropout_p=dropout)
        # the q/k/v buffer (3 x hidden per token) is not kept alive through the output projection
        # (a cache keeps its own references in ``present``)
        query = key = value = None
        batch, _, length, _ = context.shape
        context = context.transpose(1, 2).reshape(batch, length, self.num_heads * self.head_dim)
        return self.out_proj(context), probabilities, present
