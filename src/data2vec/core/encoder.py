"""The one block loop of the library: a stack of transformer blocks that every backbone runs
after its modality-specific ``embed()``.

It owns what the families used to restate: layer drop, gradient checkpointing, and the
collection of what a caller asks for. Callers ask for intermediate outputs by index, like
timm's ``forward_intermediates``, in hidden-state numbering:

    0   the encoder's input (the embedding output)
    n   block n's output (1-based), so -1 is the last block and ``range(-K, 0)`` the top K

With ``kind="feed_forward"`` index n is block n's feed-forward output before its dropout,
residual and norm (data2vec's regression targets); 0 has no feed-forward output.

The encoder also takes already-embedded tokens with their ``positions`` in the full sequence,
so that a caller can drop tokens (masked or padded) before the blocks: the attention bias,
given for the full sequence, is then gathered at those positions.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from typing import Literal

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from .attention import BlockDiagonal
from .layers import BlockOutput

Kind = Literal["block", "feed_forward"]
# An additive attention bias for every block, or a function giving block i's (0-based) bias.
AttentionBias = torch.Tensor | BlockDiagonal | Callable[[int], torch.Tensor | None] | None


def common_size_padding(count: int) -> int:
    """How many to add to ``count`` to reach the next of a few common sizes: a multiple of 32, or
    of 1/16 of the largest power of two not above ``count`` when that is more (at most about 6%
    more, 16 sizes per doubling).

    oneDNN, which runs PyTorch's CPU convolutions and half-precision matrix products, compiles a
    kernel for each new shape: 6-9 ms for a base-size linear in bf16, 20 ms for the audio conv
    feature encoder (in float32 as in bf16). Sizes that change with every batch (the packed real
    tokens of ``drop_padding``, each utterance's samples) are padded to these, so that the kernels of
    a few dozen sizes are compiled once and then reused."""
    if count <= 0:
        return 0
    step = max(32, 1 << max(count.bit_length() - 5, 0))
    return -count % step


def packed_rows_to_add(states: torch.Tensor) -> int:
    """Rows of zeros to append to a packed (tokens, hidden) batch of real tokens (``drop_padding``):
    ``common_size_padding`` of its row count, for half-precision products on the CPU only. There a
    base-size text forward on 8 x 64-128 tokens took 194 ms at a new packed count and 158 ms at one
    seen before; float32 products run in MKL, which compiles nothing per shape, and get no rows."""
    if states.device.type != "cpu":
        return 0
    half = (torch.bfloat16, torch.float16)
    autocast_half = torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") in half
    if states.dtype not in half and not autocast_half:
        return 0
    return common_size_padding(states.shape[0])


@dataclasses.dataclass
class EncoderResult:
    last_hidden_state: torch.Tensor  # (batch, length, hidden): the last block run
    intermediates: tuple[torch.Tensor | None, ...] = ()  # in the order of the requested indices
    hidden_states: tuple[torch.Tensor, ...] | None = None  # input + every block's output
    attentions: tuple[torch.Tensor | None, ...] | None = None
    cross_attentions: tuple[torch.Tensor | None, ...] | None = None
    past_key_values: tuple | None = None
    ran_all_blocks: bool = True  # False when ``stop_early`` skipped the blocks after the last one asked for


def resolve_indices(indices: int | Sequence[int] | None, num_layers: int, kind: Kind = "block") -> list[int]:
    """Indices in hidden-state numbering (0 = input, n = block n, negative from the end) as
    non-negative ints; an int ``k`` means the last k blocks."""
    if kind not in ("block", "feed_forward"):
        raise ValueError(f"kind must be 'block' or 'feed_forward', got {kind!r}")
    if indices is None:
        return []
    if isinstance(indices, int):
        if not 1 <= indices <= num_layers:
            raise ValueError(f"asked for the last {indices} blocks of an encoder with {num_layers}")
        return list(range(num_layers - indices + 1, num_layers + 1))
    lowest = 1 if kind == "feed_forward" else 0
    resolved = []
    for index in indices:
        position = index + num_layers + 1 if index < 0 else index
        if not lowest <= position <= num_layers:
            raise ValueError(
                f"intermediate index {index} is out of range for {num_layers} blocks: use {lowest}..{num_layers} "
                f"or -{num_layers}..-1" + (" (index 0, the input, has no feed-forward output)" if position == 0 else "")
            )
        resolved.append(position)
    return resolved


def gather_positions(bias: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """An additive bias (batch or 1, heads or 1, queries or 1, keys) over the full sequence, taken
    at ``positions`` (batch, kept) for the queries (when it has a query axis) and the keys."""
    batch, _ = positions.shape
    heads = bias.shape[1]
    if bias.shape[2] > 1:
        bias = bias.expand(batch, heads, -1, -1)
        bias = bias.gather(2, positions[:, None, :, None].expand(-1, heads, -1, bias.shape[3]))
    bias = bias.expand(batch, heads, bias.shape[2], -1)
    return bias.gather(3, positions[:, None, None, :].expand(-1, heads, bias.shape[2], -1))


class Encoder(nn.Module):
    """``layers``: the blocks (``PostNormBlock`` or ``PreNormBlock``). ``layerdrop``: in training,
    each block is skipped with this probability (a skipped block repeats its input in
    ``hidden_states`` and gives None in ``attentions`` and in feed-forward intermediates)."""

    def __init__(self, blocks: Iterable[nn.Module], layerdrop: float = 0.0) -> None:
        super().__init__()
        self.layers = nn.ModuleList(blocks)
        self.layerdrop = layerdrop
        self.gradient_checkpointing = False

    def __len__(self) -> int:
        return len(self.layers)

    def _skipped(self) -> bool:
        return self.training and self.layerdrop > 0 and float(torch.rand(())) < self.layerdrop

    def _run_block(self, block: nn.Module, hidden_states: torch.Tensor, bias, **options) -> BlockOutput:
        if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
            # recompute the block in the backward pass; the RNG state is restored, so dropout matches
            return checkpoint(block, hidden_states, bias, use_reentrant=False, **options)
        return block(hidden_states, bias, **options)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_bias: AttentionBias = None,
        *,
        positions: torch.Tensor | None = None,
        indices: int | Sequence[int] | None = None,
        kind: Kind = "block",
        stop_early: bool = False,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
        encoder_hidden_states: torch.Tensor | None = None,
        encoder_attention_bias: torch.Tensor | None = None,
        past_key_values: tuple | None = None,
        use_cache: bool = False,
        drop_padding: torch.Tensor | None = None,
        causal: bool = False,
    ) -> EncoderResult:
        """hidden_states: (batch, length, hidden), already embedded; ``positions`` (batch, length):
        where these tokens sit in the sequence that ``attention_bias`` describes (None: all of it).
        ``indices`` / ``kind``: the intermediate outputs to return (see the module docstring);
        ``stop_early``: run no block after the last one asked for.

        ``drop_padding``: a (batch, length) mask of the real tokens. The blocks then run on the
        real tokens only, packed into one row, each sequence attending to its own tokens
        (``causal``: to those up to itself), instead of ``attention_bias``; the outputs come back
        in the (batch, length) layout with zeros at the padded positions. The real positions get
        what the padded batch gives them, without the work on padding."""
        if drop_padding is not None:
            if positions is not None or output_attentions or encoder_hidden_states is not None or past_key_values or use_cache:
                raise ValueError(
                    "drop_padding runs self attention on the real tokens only: it does not combine with positions, "
                    "output_attentions, cross attention or a key/value cache"
                )
            return self._without_padding(
                hidden_states, drop_padding.bool(), causal, indices=indices, kind=kind, stop_early=stop_early,
                output_hidden_states=output_hidden_states,
            )  # fmt: skip
        num_layers = len(self.layers)
        wanted = resolve_indices(indices, num_layers, kind)
        last_needed = max(wanted, default=0) if stop_early else num_layers
        collected: dict[int, torch.Tensor | None] = {}
        if kind == "block" and 0 in wanted:
            collected[0] = hidden_states
        all_hidden = [hidden_states] if output_hidden_states else None
        all_attentions = [] if output_attentions else None
        all_cross = [] if output_attentions and encoder_hidden_states is not None else None
        presents = [] if use_cache else None
        options = {"output_attentions": output_attentions}
        if encoder_hidden_states is not None or past_key_values is not None or use_cache:
            options.update(encoder_hidden_states=encoder_hidden_states, encoder_attention_bias=encoder_attention_bias)
        result = None
        if positions is not None and isinstance(attention_bias, torch.Tensor):  # one bias for every block: gathered once
            attention_bias = gather_positions(attention_bias, positions)
        for index, block in enumerate(self.layers[:last_needed]):
            result = None  # the previous block's outputs (its feed-forward output) are not kept alive
            bias = attention_bias(index) if callable(attention_bias) else attention_bias
            if bias is not None and positions is not None and callable(attention_bias):
                bias = gather_positions(bias, positions)
            if past_key_values is not None or use_cache:
                options.update(past_key_value=past_key_values[index] if past_key_values else None, use_cache=use_cache)
            result = None if self._skipped() else self._run_block(block, hidden_states, bias, **options)
            if result is not None:
                hidden_states = result.hidden_states
            number = index + 1
            if number in wanted:
                if kind == "block":
                    collected[number] = hidden_states
                else:
                    collected[number] = result.feed_forward_output if result is not None else None
            if all_hidden is not None:
                all_hidden.append(hidden_states)
            if all_attentions is not None:
                all_attentions.append(result.attention if result is not None else None)
            if all_cross is not None:
                all_cross.append(result.cross_attention if result is not None else None)
            if presents is not None:
                presents.append(result.present_key_value if result is not None else None)
        return EncoderResult(
            last_hidden_state=hidden_states,
            intermediates=tuple(collected[number] for number in wanted),
            hidden_states=tuple(all_hidden) if all_hidden is not None else None,
            attentions=tuple(all_attentions) if all_attentions is not None else None,
            cross_attentions=tuple(all_cross) if all_cross is not None else None,
            past_key_values=tuple(presents) if presents is not None else None,
            ran_all_blocks=last_needed == num_layers,
        )

    def _without_padding(self, hidden_states: torch.Tensor, real: torch.Tensor, causal: bool, **options) -> EncoderResult:
        if tuple(real.shape) != tuple(hidden_states.shape[:2]):
            raise ValueError(f"drop_padding must be (batch, length) {tuple(hidden_states.shape[:2])}, got {tuple(real.shape)}")
        tokens = hidden_states[real]  # (real tokens, hidden)
        sequences = BlockDiagonal.from_padding_mask(real, causal)
        count, extra = tokens.shape[0], packed_rows_to_add(tokens)
        if extra:  # rows of zeros, a sequence of their own: no real token attends to them
            tokens = torch.cat([tokens, tokens.new_zeros(extra, *tokens.shape[1:])])
            sequences = dataclasses.replace(sequences, lengths=(*sequences.lengths, extra))
        packed = self.forward(tokens[None], sequences, **options)

        def unpack(states: torch.Tensor | None) -> torch.Tensor | None:
            if states is None:
                return None
            full = states.new_zeros(*real.shape, *states.shape[2:])  # (batch, length, ...)
            full[real] = states[0, :count]
            return full

        return dataclasses.replace(
            packed,
            last_hidden_state=unpack(packed.last_hidden_state),
            intermediates=tuple(unpack(states) for states in packed.intermediates),
            hidden_states=tuple(unpack(states) for states in packed.hidden_states) if packed.hidden_states else None,
        )
