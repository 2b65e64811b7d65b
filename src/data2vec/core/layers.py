"""The two transformer blocks of the library, and their small parts.

Post-norm (text, speech):  x = norm(x + attention(x));  [x = norm(x + cross_attention(x, encoder))];  x = norm(x + mlp(x))
Pre-norm (vision, BEiT):   x = x + drop_path(scale * attention(norm(x)));  x = x + drop_path(scale * mlp(norm(x)))

Both are built from the same ``Attention`` and ``MLP`` and return a ``BlockOutput``; a family
passes its block class to ``core.encoder.Encoder``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .attention import Attention, BlockDiagonal, KeyValue


def _gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    return F.gelu(x, approximate="tanh")


def _quick_gelu(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(1.702 * x)


def _gelu_python(x: torch.Tensor) -> torch.Tensor:
    return x * 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))


# names the reference gives to a function that has another name here too
ACTIVATION_ALIASES = {"gelu_new": "gelu_pytorch_tanh", "gelu_fast": "gelu_pytorch_tanh", "swish": "silu"}
ACTIVATIONS = {
    "gelu": F.gelu,
    "gelu_python": _gelu_python,
    "gelu_pytorch_tanh": _gelu_tanh,
    "quick_gelu": _quick_gelu,
    "relu": F.relu,
    "silu": F.silu,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "linear": lambda x: x,
}


def capturing_graph() -> bool:
    """Whether this forward is being captured into a graph (``torch.compile``, ``torch.jit.trace``).
    A captured graph has fixed shapes and replays its ops: the shortcuts whose sizes depend on tensor
    values (the kept samples of drop path, the scored rows of a loss) or that overwrite a tensor in
    place keep to their plain form there."""
    return torch.compiler.is_compiling() or torch.jit.is_tracing()


# the same functions, overwriting their input (for forwards without autograd)
IN_PLACE_ACTIVATIONS: dict[Callable, Callable] = {
    F.gelu: torch.ops.aten.gelu_,
    _gelu_tanh: lambda x: torch.ops.aten.gelu_(x, approximate="tanh"),
    F.relu: torch.relu_,
    F.silu: lambda x: F.silu(x, inplace=True),
}


def activation(name: str, functions: Mapping[str, Callable] = ACTIVATIONS) -> Callable:
    """The function the reference calls ``name``, from ``functions`` (this framework's, by
    un-aliased name: ``ACTIVATIONS``, or the Keras port's)."""
    try:
        return functions[ACTIVATION_ALIASES.get(name, name)]
    except KeyError:
        names = sorted(set(functions) | set(ACTIVATION_ALIASES))
        raise ValueError(f"unknown activation {name!r}; choose one of {names}") from None


class DropPath(nn.Module):
    """Stochastic depth: in training, zero a sample's residual branch with probability ``rate``
    and scale the kept ones by 1 / (1 - rate)."""

    def __init__(self, rate: float = 0.0) -> None:
        super().__init__()
        self.rate = rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.rate == 0.0:
            return x
        keep = 1.0 - self.rate
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep

    def kept_samples(self, batch: int, device: torch.device | str = "cpu") -> torch.Tensor | None:
        """In training with a rate > 0: the indices of the samples whose branch is kept this time,
        on ``device``; None when every branch is kept unscaled (evaluation, rate 0). Drawn from the
        CPU generator, so that the number kept (a shape) is known without waiting for the device."""
        if not self.training or self.rate == 0.0:
            return None
        kept = torch.empty(batch).bernoulli_(1.0 - self.rate).nonzero().squeeze(1)
        return kept.to(device, non_blocking=True)  # from pageable memory: staged by the driver, no stream sync


class MLP(nn.Module):
    """fc1 -> activation -> dropout -> fc2 (the block's feed-forward network)."""

    def __init__(self, hidden_size: int, intermediate_size: int, act: str, activation_dropout: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(hidden_size, intermediate_size)
        self.act = activation(act)
        self.activation_dropout = nn.Dropout(activation_dropout)
        self.fc2 = nn.Linear(intermediate_size, hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.fc1(x)  # (..., intermediate): the largest activation of a block
        in_place = IN_PLACE_ACTIVATIONS.get(self.act)
        if in_place is not None and not torch.is_grad_enabled() and not capturing_graph():
            # without autograd nothing needs fc1's output after the activation: overwrite it
            # instead of allocating a second tensor of that size (less memory, fewer page faults)
            return self.fc2(self.activation_dropout(in_place(hidden)))
        return self.fc2(self.activation_dropout(self.act(hidden)))


def block_arguments(config: Any, hidden_dropout: float, attention_dropout: float) -> dict[str, Any]:
    """A block's arguments from a family's config: the sizes, activation and LayerNorm epsilon
    that every family's config names alike, and the two dropouts that each names its own way."""
    return {
        "hidden_size": config.hidden_size,
        "num_heads": config.num_attention_heads,
        "intermediate_size": config.intermediate_size,
        "act": config.hidden_act,
        "layer_norm_eps": config.layer_norm_eps,
        "hidden_dropout": hidden_dropout,
        "attention_dropout": attention_dropout,
    }


class BlockOutput(NamedTuple):
    hidden_states: torch.Tensor  # (batch, length, hidden)
    attention: torch.Tensor | None = None  # self-attention probabilities when asked for
    cross_attention: torch.Tensor | None = None
    present_key_value: tuple[KeyValue, ...] | None = None  # (self,) or (self, cross) when caching
    # fc2 output before dropout, residual and norm (pre-norm block in training with drop path:
    # zeros for the samples whose feed-forward branch was dropped, as it was not computed)
    feed_forward_output: torch.Tensor | None = None


class PostNormBlock(nn.Module):
    """BERT / wav2vec 2.0 block: each sub-layer's output is added to its input, then normalised.
    The only block with cross attention (``add_cross_attention``) and a key/value cache."""

    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        intermediate_size: int,
        *,
        act: str = "gelu",
        layer_norm_eps: float = 1e-5,
        hidden_dropout: float = 0.0,
        attention_dropout: float = 0.0,
        activation_dropout: float = 0.0,
        add_cross_attention: bool = False,
    ) -> None:
        super().__init__()
        self.attention = Attention(hidden_size, num_heads, dropout=attention_dropout)
        self.attention_norm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        if add_cross_attention:
            self.cross_attention = Attention(hidden_size, num_heads, dropout=attention_dropout, is_cross_attention=True)
            self.cross_attention_norm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        else:
            self.cross_attention = self.cross_attention_norm = None
        self.mlp = MLP(hidden_size, intermediate_size, act, activation_dropout)
        self.mlp_norm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.dropout = nn.Dropout(hidden_dropout)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_bias: torch.Tensor | None = None,
        *,
        encoder_hidden_states: torch.Tensor | None = None,
        encoder_attention_bias: torch.Tensor | None = None,
        past_key_value: tuple[KeyValue, ...] | None = None,
        use_cache: bool = False,
        output_attentions: bool = False,
    ) -> BlockOutput:
        """hidden_states: (batch, length, hidden); biases are additive (see ``Attention``)."""
        past_self = past_key_value[0] if past_key_value else None
        past_cross = past_key_value[1] if past_key_value and len(past_key_value) > 1 else None
        attended, probabilities, present_self = self.attention(
            hidden_states, attention_bias, past_key_value=past_self, use_cache=use_cache, output_attentions=output_attentions
        )
        hidden_states = self.attention_norm(hidden_states + self.dropout(attended))
        del attended  # not kept alive through the feed-forward (the peak of memory)
        cross_probabilities = present_cross = None
        if encoder_hidden_states is not None or past_cross is not None:
            if self.cross_attention is None:
                raise ValueError(
                    "encoder_hidden_states were given but the model has no cross attention: "
                    "build it with add_cross_attention=True (and is_decoder=True)"
                )
            crossed, cross_probabilities, present_cross = self.cross_attention(
                hidden_states, encoder_attention_bias, key_value_states=encoder_hidden_states,
                past_key_value=past_cross, use_cache=use_cache, output_attentions=output_attentions,
            )
            hidden_states = self.cross_attention_norm(hidden_states + self.dropout(crossed))
            del crossed
        feed_forward = self.mlp(hidden_states)
        hidden_states = self.mlp_norm(hidden_states + self.dropout(feed_forward))
        present = None
        if use_cache:
            present = (present_self,) if present_cross is None else (present_self, present_cross)
        return BlockOutput(hidden_states, probabilities, cross_probabilities, present, feed_forward)


class PreNormBlock(nn.Module):
    """BEiT / ViT block: each sub-layer reads a normalised copy of the residual stream; its output
    is scaled per channel (layer scale, when ``layer_scale_init_value > 0``), dropped per sample
    (stochastic depth) and added to the stream. No cross attention and no cache."""

    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        intermediate_size: int,
        *,
        act: str = "gelu",
        layer_norm_eps: float = 1e-12,
        hidden_dropout: float = 0.0,
        attention_dropout: float = 0.0,
        activation_dropout: float = 0.0,
        layer_scale_init_value: float = 0.0,
        drop_path_rate: float = 0.0,
        qkv_bias: Literal["all", "query_value"] = "all",
    ) -> None:
        super().__init__()
        self.attention = Attention(hidden_size, num_heads, dropout=attention_dropout, qkv_bias=qkv_bias)
        self.attention_norm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.mlp = MLP(hidden_size, intermediate_size, act, activation_dropout)
        self.mlp_norm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.dropout = nn.Dropout(hidden_dropout)
        self.drop_path = DropPath(drop_path_rate)
        if layer_scale_init_value and layer_scale_init_value > 0:
            self.attention_scale = nn.Parameter(torch.full((hidden_size,), float(layer_scale_init_value)))
            self.mlp_scale = nn.Parameter(torch.full((hidden_size,), float(layer_scale_init_value)))
        else:
            self.attention_scale = self.mlp_scale = None

    def _kept_samples(self, batch: int, device: torch.device, every_sample: bool) -> torch.Tensor | None:
        """The samples a branch runs on (see ``DropPath.kept_samples``); None: all of them, unscaled.
        With ``every_sample`` (e.g. the probabilities of every sample are asked for), or in a
        captured graph (no data-dependent shapes), every sample runs and drop path multiplies
        by its mask."""
        if every_sample or capturing_graph():
            return None
        return self.drop_path.kept_samples(batch, device)

    def _add_branch(
        self, hidden_states: torch.Tensor, output: torch.Tensor, scale: torch.Tensor | None, kept: torch.Tensor | None
    ) -> torch.Tensor:
        """hidden_states + drop_path(scale * dropout(output)), where ``output`` was computed for the
        ``kept`` rows only (all rows when None): the dropped samples keep their stream as it is."""
        output = self.dropout(output)
        if kept is None:  # every row computed; in training, drop path multiplies by its mask (a no-op in eval)
            return hidden_states + self.drop_path(output if scale is None else scale * output)
        factor = 1.0 / (1.0 - self.drop_path.rate)
        weighted = output * (factor if scale is None else scale * factor)  # one pass over the branch
        if len(kept) == hidden_states.shape[0]:
            return hidden_states + weighted
        return hidden_states.index_add(0, kept, weighted)

    @staticmethod
    def _rows(tensor, kept: torch.Tensor | None, batch: int):
        """The kept samples of a (batch, ...) tensor; a tensor broadcast over the batch, all samples
        kept (``kept`` None: also any other bias, e.g. packed rows), or None, as it is."""
        if tensor is None or kept is None or len(kept) == batch or tensor.shape[0] != batch:
            return tensor
        return tensor.index_select(0, kept)  # its gradient: an index_add

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_bias: torch.Tensor | None = None,
        *,
        encoder_hidden_states: torch.Tensor | None = None,
        encoder_attention_bias: torch.Tensor | None = None,
        past_key_value: tuple[KeyValue, ...] | None = None,
        use_cache: bool = False,
        output_attentions: bool = False,
    ) -> BlockOutput:
        """hidden_states: (batch, length, hidden); attention_bias additive (e.g. relative positions)."""
        if encoder_hidden_states is not None or past_key_value is not None or use_cache:
            raise ValueError(
                "the pre-norm block has no cross attention and no key/value cache: "
                "encoder_hidden_states, past_key_values and use_cache are for post-norm decoders"
            )
        # Stochastic depth: a dropped sample's branch is not computed at all (not computed, then
        # multiplied by zero); each branch draws its own kept samples.
        batch = hidden_states.shape[0]
        # packed sequences (one row holding several samples) are dropped as one, by the mask
        every_sample = output_attentions or isinstance(attention_bias, BlockDiagonal)
        kept = self._kept_samples(batch, hidden_states.device, every_sample)
        attended, probabilities, _ = self.attention(
            self.attention_norm(self._rows(hidden_states, kept, batch)),
            self._rows(attention_bias, kept, batch),
            output_attentions=output_attentions,
        )
        hidden_states = self._add_branch(hidden_states, attended, self.attention_scale, kept)
        del attended  # not kept alive through the feed-forward (the peak of memory)
        kept = self._kept_samples(batch, hidden_states.device, every_sample)
        feed_forward = self.mlp(self.mlp_norm(self._rows(hidden_states, kept, batch)))
        hidden_states = self._add_branch(hidden_states, feed_forward, self.mlp_scale, kept)
        if kept is not None and len(kept) < batch:  # the dropped samples' rows: zeros
            feed_forward = feed_forward.new_zeros(hidden_states.shape).index_copy(0, kept, feed_forward)
        return BlockOutput(hidden_states, probabilities, feed_forward_output=feed_forward)
