"""The span-mask sampler (wav2vec 2.0 / data2vec) and the random-number helpers of every mask sampler.

``compute_span_mask`` is the one span sampler of the library: the audio backbone's SpecAugment
(time and channel masks) and data2vec pretraining's time masks both draw with it. The helpers
(``uniform``, ``probabilistic_round``, ``choose_without_replacement``, ``cover_spans``) are the
vectorised pieces it is made of; the token sampler of pretraining reuses them.

Every sampler returns bool masks, True = masked. Randomness comes from ``generator`` (a
``torch.Generator`` on any device: the draws happen on its device) or, when None, from torch's
global generator of the device the mask is made on; the same generator state gives the same mask.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


# ---------------------------------------------------------------------------- random numbers
def uniform(shape: Sequence[int], generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """U[0, 1) float32 numbers of ``shape`` on ``device``, drawn on ``generator``'s device."""
    source = generator.device if generator is not None else device
    return torch.rand(tuple(shape), generator=generator, device=source).to(device)


def probabilistic_round(value: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """floor(value + u), u ~ U[0, 1) drawn per entry: an integer whose mean is ``value``."""
    u = uniform(value.shape, generator, value.device).double()
    return torch.floor(value.double() + u).long()


def choose_without_replacement(
    allowed: torch.Tensor, counts: torch.Tensor, generator: torch.Generator | None
) -> torch.Tensor:
    """(batch, N) bool: for each row, ``counts[row]`` positions drawn uniformly without replacement
    among the row's ``allowed`` positions (``counts`` must not exceed the row's allowed count)."""
    scores = uniform(allowed.shape, generator, allowed.device)
    scores = scores.masked_fill(~allowed, 2.0)  # disallowed positions sort last
    ranks = scores.argsort(dim=1).argsort(dim=1)  # (batch, N): rank of each position in its row
    return (ranks < counts[:, None]) & allowed


def cover_spans(starts: torch.Tensor, span: int) -> torch.Tensor:
    """(batch, N) bool span starts -> (batch, N + span - 1) bool: every start masks itself and
    the next ``span - 1`` positions."""
    batch, positions = starts.shape
    padded = torch.zeros(batch, positions + 2 * (span - 1) + 1, dtype=torch.int32, device=starts.device)
    padded[:, span : span + positions] = starts.int()
    running = padded.cumsum(dim=1)  # running[i] = starts up to padded index i
    # position t (0-based, t < positions + span - 1) is covered by the starts in [t - span + 1, t]
    covered = running[:, span : span + positions + span - 1] - running[:, : positions + span - 1]
    return covered > 0


# ---------------------------------------------------------------------------- spans
def compute_span_mask(
    shape: tuple[int, int],
    mask_prob: float,
    mask_length: int,
    *,
    min_masks: int = 0,
    attention_mask: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Sample spans of ``mask_length`` consecutive positions to mask, as wav2vec 2.0 and data2vec do.

    shape: (batch, length). attention_mask: optional (batch, length), 1 where a position is real
    (right padding); spans then start and end inside each row's ``valid`` real positions.

    Row ``b`` draws ``n = max(floor(mask_prob * valid / mask_length + u), min_masks)`` span starts,
    ``u ~ U[0, 1)`` drawn per row (probabilistic rounding); ``n`` is capped at
    ``length // mask_length`` and at the row's ``valid - mask_length + 1`` possible starts (a row
    shorter than one span gets none). The starts are drawn uniformly without replacement; each masks
    ``mask_length`` positions. Spans may overlap, so the masked fraction is below ``mask_prob``
    (about ``1 - exp(-mask_prob)`` for long rows). Padding is never masked.

    The numbers are drawn on ``generator``'s device when a generator is given, else on ``device``
    (default CPU); the mask is returned on ``device`` (default CPU). Returns bool ``shape``.
    """
    batch, length = shape
    if mask_length < 1:
        raise ValueError(f"mask_length must be at least 1, got {mask_length}")
    if mask_length > length:
        raise ValueError(
            f"mask spans of {mask_length} positions do not fit in a sequence of {length}: "
            "use longer inputs or a smaller mask length (config.mask_time_length / mask_feature_length)"
        )
    if not 0.0 <= mask_prob <= 1.0:
        raise ValueError(f"mask_prob must be in [0, 1], got {mask_prob}")
    if min_masks < 0:
        raise ValueError(f"min_masks must be >= 0, got {min_masks}")
    target = torch.device(device) if device is not None else torch.device("cpu")
    work = generator.device if generator is not None else target  # where the numbers are drawn
    if attention_mask is None:
        valid = torch.full((batch,), length, dtype=torch.long, device=work)
    else:
        if tuple(attention_mask.shape) != (batch, length):
            raise ValueError(f"attention_mask has shape {tuple(attention_mask.shape)}, expected {(batch, length)}")
        valid = attention_mask.to(work).long().sum(-1)  # (batch,)

    counts = probabilistic_round(mask_prob * valid.double() / mask_length, generator).clamp(min=min_masks)
    counts = counts.clamp(max=length // mask_length)
    counts = torch.minimum(counts, (valid - mask_length + 1).clamp(min=0))  # (batch,)
    possible_starts = length - mask_length + 1
    start_allowed = torch.arange(possible_starts, device=work)[None, :] <= (valid - mask_length)[:, None]
    starts = choose_without_replacement(start_allowed, counts, generator)  # (batch, possible_starts)
    mask = cover_spans(starts, mask_length)  # (batch, length)
    return mask.to(target)
