"""Which positions the student does not see: one sampler per modality.

- ``span_mask``: audio. Spans of ``mask_length`` frames; about ``mask_prob * T / mask_length`` span
  starts per row, drawn without replacement, overlaps allowed (wav2vec 2.0 / data2vec 1.0:
  ``mask_prob 0.65, mask_length 10`` masks about half the frames). ``keep_masked`` then trims
  the rows of a batch to one count (``require_same_masks``).
- ``block_mask_2d``: images. BEiT block-wise masking of a patch grid (data2vec 1.0 image: 120 of
  14x14 patches, blocks of at least 16 patches, aspect ratio 0.3 to 1/0.3).
- ``token_mask``: text. BERT-style replacement of chosen tokens (``mode="bert"``), or spans of
  ``mask_multiple_length`` tokens (``mode="span"``, the released fairseq data2vec text recipe).

data2vec 2.0 (masks for the ``count`` clones of one item, the same number masked in every row):

- ``random_mask``: text. Each row keeps exactly ``int(length * (1 - mask_prob))`` uniformly chosen
  positions.
- ``block_mask_1d``: audio. Blocks of ``mask_length`` frames around uniformly drawn centers, then
  trimmed or filled to exactly ``int(length * mask_prob)`` masked frames.
- ``centered_block_mask_2d``: images. Square blocks around uniformly drawn patches of a rows x columns
  grid; with ``inverse`` (the 2.0 default) the blocks are what stays visible.

All samplers return bool masks, True = masked (the loss is taken there). Randomness comes from
``generator`` (a ``torch.Generator`` on any device) or, when None, from torch's global generator;
the same generator state gives the same masks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from ..core.masking import choose_without_replacement, compute_span_mask, cover_spans, probabilistic_round, uniform

# ---------------------------------------------------------------------------- audio


def span_mask(
    batch: int,
    length: int,
    mask_prob: float,
    mask_length: int,
    *,
    min_masks: int = 1,
    lengths: Sequence[int] | torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Span mask for a (batch, length) sequence batch -> bool (batch, length), True = masked.

    ``core.masking.compute_span_mask`` (the one span sampler: see there for the draws) with
    pretraining's conventions: rows given by their ``lengths`` (right padding; all ``length`` when
    None), ``min_masks=1``, and an error, rather than an unmasked row, for a row shorter than one span.
    """
    if batch < 1 or length < 1:
        raise ValueError(f"batch and length must be positive, got batch={batch}, length={length}")
    attention_mask, shortest = None, length
    if lengths is not None:
        valid = torch.as_tensor(lengths).detach().to("cpu").long().reshape(-1)
        if valid.numel() != batch:
            raise ValueError(f"lengths has {valid.numel()} entries, expected one per row ({batch})")
        if bool((valid > length).any()) or bool((valid < 0).any()):
            raise ValueError(f"lengths must lie in [0, {length}], got {valid.tolist()}")
        attention_mask = torch.arange(length)[None, :] < valid[:, None]  # (batch, length)
        shortest = int(valid.min())
    if shortest < mask_length:
        raise ValueError(
            f"rows of {shortest} positions are shorter than one mask span ({mask_length}): "
            "use longer inputs (a larger minimum crop) or a smaller mask_length"
        )
    return compute_span_mask(
        (batch, length), mask_prob, mask_length, min_masks=min_masks, attention_mask=attention_mask,
        generator=generator, device=device,
    )


def keep_masked(mask: torch.Tensor, count: int, generators: Sequence[torch.Generator | None]) -> torch.Tensor:
    """Rows of a bool (batch, length) mask with more than ``count`` masked positions keep ``count``
    of them, drawn uniformly without replacement with the row's generator; the other rows are
    unchanged. With ``count`` the fewest masked positions of a batch, every row masks the same
    number (wav2vec 2.0 / data2vec 1.0 ``require_same_masks``)."""
    if len(generators) != mask.shape[0]:
        raise ValueError(f"expected one generator per row ({mask.shape[0]}), got {len(generators)}")
    rows = []
    for row, generator in zip(mask, generators):
        if int(row.sum()) > count:
            row = choose_without_replacement(row[None], torch.tensor([count], device=row.device), generator)[0]
        rows.append(row)
    return torch.stack(rows)


# ---------------------------------------------------------------------------- images


class _UniformStream:
    """U[0, 1) numbers drawn from a torch generator in chunks, handed out one by one."""

    def __init__(self, generator: torch.Generator | None, chunk: int = 1024) -> None:
        self.generator = generator
        self.chunk = chunk
        self.buffer: list[float] = []

    def __call__(self) -> float:
        if not self.buffer:
            device = self.generator.device if self.generator is not None else "cpu"
            draws = torch.rand(self.chunk, generator=self.generator, device=device, dtype=torch.float64)
            self.buffer = draws.tolist()[::-1]
        return self.buffer.pop()

    def between(self, low: float, high: float) -> float:
        """Uniform between ``low`` and ``high`` (either order)."""
        return low + (high - low) * self()

    def integer(self, count: int) -> int:
        """Uniform integer in [0, count)."""
        return min(int(self() * count), count - 1)


def _place_block(
    grid: np.ndarray,
    budget: int,
    min_num_patches: int,
    log_aspect_range: tuple[float, float],
    max_attempts: int,
    uniform: _UniformStream,
) -> int:
    """Mask one random block adding between 1 and ``budget`` new patches to ``grid`` (H, W) in place;
    returns the number of newly masked patches (0 when ``max_attempts`` draws all failed)."""
    height, width = grid.shape
    for _ in range(max_attempts):
        area = uniform.between(min_num_patches, budget)
        aspect = math.exp(uniform.between(*log_aspect_range))  # height / width
        block_height = int(round(math.sqrt(area * aspect)))
        block_width = int(round(math.sqrt(area / aspect)))
        if not (1 <= block_height <= height and 1 <= block_width <= width):
            continue
        top = uniform.integer(height - block_height + 1)
        left = uniform.integer(width - block_width + 1)
        window = grid[top : top + block_height, left : left + block_width]
        new_patches = block_height * block_width - int(window.sum())
        if 0 < new_patches <= budget:
            window[...] = True
            return new_patches
    return 0


def block_mask_2d(
    batch: int,
    height: int,
    width: int,
    num_masking_patches: int,
    *,
    min_num_patches: int = 16,
    min_aspect: float = 0.3,
    max_aspect: float | None = None,
    max_num_patches: int | None = None,
    max_attempts: int = 10,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """BEiT block-wise mask of a (height, width) patch grid -> bool (batch, height * width), row-major.

    Per sample, blocks are added until ``num_masking_patches`` patches are masked. A block has
    area ``A ~ U[min_num_patches, budget]`` with ``budget = min(remaining, max_num_patches)`` (when
    the budget is below ``min_num_patches`` the area lies between the two), aspect ratio
    ``r = height/width`` log-uniform in ``[min_aspect, max_aspect]`` (``max_aspect`` defaults to
    ``1 / min_aspect``), size ``round(sqrt(A r)) x round(sqrt(A / r))`` and a uniform position
    inside the grid. A block counts only its newly masked patches and is rejected when it adds
    none or more than the budget; after ``max_attempts`` rejections in a row sampling stops.

    So no sample exceeds ``num_masking_patches``; most reach it exactly and the rest fall short
    by a few patches (on 14x14 with 120 patches, the mean is within 1% of 120).
    """
    if batch < 1 or height < 1 or width < 1:
        raise ValueError(f"batch, height and width must be positive, got {batch}, {height}, {width}")
    if not 0 <= num_masking_patches <= height * width:
        raise ValueError(
            f"num_masking_patches must be in [0, {height * width}] for a {height}x{width} grid, "
            f"got {num_masking_patches}"
        )
    if min_num_patches < 1:
        raise ValueError(f"min_num_patches must be at least 1, got {min_num_patches}")
    max_aspect = 1.0 / min_aspect if max_aspect is None and min_aspect > 0 else max_aspect
    if not (min_aspect > 0 and max_aspect is not None and max_aspect >= min_aspect):
        raise ValueError(f"need 0 < min_aspect <= max_aspect, got min_aspect={min_aspect}, max_aspect={max_aspect}")
    if max_num_patches is None:
        max_num_patches = num_masking_patches
    if max_num_patches < 1 and num_masking_patches > 0:
        raise ValueError(f"max_num_patches must be at least 1, got {max_num_patches}")
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")

    log_aspect_range = (math.log(min_aspect), math.log(max_aspect))
    uniform = _UniformStream(generator)
    masks = np.zeros((batch, height, width), dtype=bool)
    for grid in masks:
        masked = 0
        while masked < num_masking_patches:
            budget = min(num_masking_patches - masked, max_num_patches)
            added = _place_block(grid, budget, min_num_patches, log_aspect_range, max_attempts, uniform)
            if added == 0:
                break
            masked += added
    result = torch.from_numpy(masks.reshape(batch, height * width))
    return result.to(device) if device is not None else result


# ---------------------------------------------------------------------------- text


def token_mask(
    input_ids: torch.Tensor,
    *,
    special_tokens_mask: torch.Tensor,
    mask_token_id: int,
    vocab_size: int,
    mask_prob: float = 0.15,
    mode: str = "bert",
    mask_multiple_length: int = 1,
    random_token_prob: float = 0.1,
    leave_unmasked_prob: float = 0.1,
    special_token_ids: Sequence[int] = (),
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mask tokens for masked prediction -> (masked_input_ids, mask), both (batch, seq).

    ``special_tokens_mask`` (batch, seq): True (or 1) at special tokens AND padding; these are
    never chosen. ``mask`` is True at every chosen position: the positions where the loss is taken.

    Choosing (per row, ``n`` = number of maskable tokens, ``u ~ U[0, 1)`` per row):
    - ``mode="bert"``: ``floor(mask_prob * n + u)`` tokens, uniformly without replacement.
    - ``mode="span"``: ``floor(mask_prob * n / mask_multiple_length + u)`` span starts among the
      maskable tokens, uniformly without replacement; each span covers the start and the next
      ``mask_multiple_length - 1`` positions, skipping special/padding positions (so spans stop at
      the end of the text). Spans may overlap, hence about ``1 - (1 - mask_prob/L)^L`` of the tokens
      are chosen (~0.31 for the released recipe's 0.35 and L=4), as in fairseq's MaskTokensDataset.

    Replacing each chosen token independently: with probability ``random_token_prob`` by a random
    id, uniform over ``range(vocab_size)`` except ``mask_token_id`` and ``special_token_ids``; with
    probability ``leave_unmasked_prob`` kept; otherwise by ``mask_token_id``. fairseq's data2vec
    text model takes its loss where the input holds ``<mask>``; with ``random_token_prob =
    leave_unmasked_prob = 0`` (the released recipe) that is exactly ``mask``.
    """
    if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2:
        raise ValueError("input_ids must be a (batch, seq) tensor of token ids")
    if input_ids.dtype.is_floating_point or input_ids.dtype == torch.bool:
        raise ValueError(f"input_ids must hold integer token ids, got dtype {input_ids.dtype}")
    special = torch.as_tensor(special_tokens_mask, device=input_ids.device)
    if tuple(special.shape) != tuple(input_ids.shape):
        raise ValueError(
            f"special_tokens_mask has shape {tuple(special.shape)}, expected {tuple(input_ids.shape)} "
            "(True at special tokens and padding)"
        )
    if mode not in ("bert", "span"):
        raise ValueError(f"mode must be 'bert' or 'span', got {mode!r}")
    if mode == "bert" and mask_multiple_length != 1:
        raise ValueError("mask_multiple_length > 1 needs mode='span' (mode='bert' masks single tokens)")
    if mask_multiple_length < 1:
        raise ValueError(f"mask_multiple_length must be at least 1, got {mask_multiple_length}")
    if not 0.0 <= mask_prob <= 1.0:
        raise ValueError(f"mask_prob must be in [0, 1], got {mask_prob}")
    if random_token_prob < 0 or leave_unmasked_prob < 0 or random_token_prob + leave_unmasked_prob > 1.0:
        raise ValueError(
            "random_token_prob and leave_unmasked_prob must be >= 0 with a sum <= 1, "
            f"got {random_token_prob} and {leave_unmasked_prob}"
        )
    if not 0 <= mask_token_id < vocab_size:
        raise ValueError(f"mask_token_id {mask_token_id} is outside the vocabulary [0, {vocab_size})")

    device = input_ids.device
    maskable = ~special.bool()  # (B, T)
    maskable_counts = maskable.sum(dim=1)  # (B,)
    span = mask_multiple_length
    counts = probabilistic_round(mask_prob * maskable_counts.double() / span, generator)
    counts = torch.minimum(counts, maskable_counts)
    starts = choose_without_replacement(maskable, counts, generator)  # (B, T)
    if span == 1:
        chosen = starts
    else:
        chosen = cover_spans(starts, span)[:, : input_ids.shape[1]] & maskable

    decision = uniform(input_ids.shape, generator, device)  # (B, T)
    to_random = chosen & (decision < random_token_prob)
    to_mask = chosen & (decision >= random_token_prob + leave_unmasked_prob)
    masked_ids = input_ids.masked_fill(to_mask, mask_token_id)
    if random_token_prob > 0:
        excluded = torch.tensor(sorted({int(i) for i in special_token_ids} | {mask_token_id}), dtype=torch.long)
        if bool(((excluded < 0) | (excluded >= vocab_size)).any()):
            raise ValueError(f"special_token_ids {list(special_token_ids)} must lie in [0, {vocab_size})")
        keep = torch.ones(vocab_size, dtype=torch.bool)
        keep[excluded] = False
        candidates = torch.arange(vocab_size)[keep].to(device)  # ids a random replacement may take
        if candidates.numel() == 0:
            raise ValueError("no token id is left for random replacement: set random_token_prob=0")
        pick = uniform(input_ids.shape, generator, device)
        random_ids = candidates[(pick * candidates.numel()).long().clamp(max=candidates.numel() - 1)]
        masked_ids = torch.where(to_random, random_ids.to(input_ids.dtype), masked_ids)
    return masked_ids, chosen


# ---------------------------------------------------------------------------- data2vec 2.0
# The samplers of data2vec 2.0. Each call masks the ``count`` clones of ONE item (2.0 encodes
# several differently masked copies of every sample), and every row masks exactly the same
# number of positions, so the visible tokens of the clones stack into one tensor. The numbers
# are drawn on ``generator``'s device (CPU when None) and the mask is returned there.


def _sampling_device(generator: torch.Generator | None) -> torch.device:
    return generator.device if generator is not None else torch.device("cpu")


def _check_block_arguments(count: int, mask_prob: float, mask_length: int, marked_prob: float, adjust: float) -> None:
    """Arguments of the block samplers; ``marked_prob`` is the fraction the blocks mark."""
    if count < 1:
        raise ValueError(f"count (the number of masks to draw for one item) must be at least 1, got {count}")
    if not 0.0 <= mask_prob <= 1.0:
        raise ValueError(f"mask_prob must be in [0, 1], got {mask_prob}")
    if mask_length < 1:
        raise ValueError(f"mask_length must be at least 1, got {mask_length}")
    if marked_prob + adjust < 0:
        raise ValueError(
            f"mask_prob_adjust {adjust} leaves a negative block fraction ({marked_prob} + {adjust}): "
            "raise mask_prob_adjust"
        )


def _exact_count(marks: torch.Tensor, target: int, generator: torch.Generator | None) -> torch.Tensor:
    """(count, L) bool marks -> (count, L) bool with exactly ``target`` marks per row: a row with
    more keeps ``target`` of its marks, one with fewer gains ``target - n`` of its unmarked
    positions, both chosen uniformly without replacement (fairseq's ``require_same_masks``)."""
    marked = marks.sum(dim=1)  # (count,)
    wanted = torch.full_like(marked, target)
    kept = choose_without_replacement(marks, torch.minimum(marked, wanted), generator)  # all marks when short
    added = choose_without_replacement(~marks, (wanted - marked).clamp(min=0), generator)  # none when over
    return kept | added


def _block_offsets(mask_length: int, device: torch.device) -> torch.Tensor:
    """Offsets of a block's cells from its center along one axis: -(m // 2) .. m - 1 - m // 2."""
    return torch.arange(mask_length, device=device) - mask_length // 2


def _mark_blocks_1d(centers: torch.Tensor, length: int, mask_length: int) -> torch.Tensor:
    """(count, n) long centers -> (count, length) bool: every center c marks c + k for k in
    [-(mask_length // 2), mask_length - 1 - mask_length // 2], each index clamped to [0, length - 1]
    (blocks at an edge are cut short there)."""
    count = centers.shape[0]
    positions = (centers[:, :, None] + _block_offsets(mask_length, centers.device)).clamp(0, length - 1)
    marks = torch.zeros(count, length, dtype=torch.bool, device=centers.device)
    return marks.scatter_(1, positions.reshape(count, -1), True)


def _mark_blocks_2d(centers: torch.Tensor, rows: int, columns: int, mask_length: int) -> torch.Tensor:
    """(count, n) long centers, row-major cell indices of a rows x columns grid -> (count, rows * columns)
    bool: every center (r, c) marks the mask_length x mask_length cells (r + i, c + j), i and j as in
    ``_mark_blocks_1d``, each coordinate clamped into the grid."""
    count = centers.shape[0]
    offsets = _block_offsets(mask_length, centers.device)
    row = (centers // columns)[:, :, None, None] + offsets[:, None]  # (count, n, mask_length, 1)
    column = (centers % columns)[:, :, None, None] + offsets[None, :]  # (count, n, 1, mask_length)
    cells = row.clamp(0, rows - 1) * columns + column.clamp(0, columns - 1)  # (count, n, m, m)
    marks = torch.zeros(count, rows * columns, dtype=torch.bool, device=centers.device)
    return marks.scatter_(1, cells.reshape(count, -1), True)


def random_mask(count: int, length: int, mask_prob: float, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """data2vec 2.0 text (fairseq ``random_masking``) -> bool (count, length), True = masked.

    Every row keeps exactly ``int(length * (1 - mask_prob))`` positions, chosen uniformly without
    replacement, and masks the others.
    """
    if count < 1 or length < 1:
        raise ValueError(f"count and length must be positive, got count={count}, length={length}")
    if not 0.0 <= mask_prob < 1.0:
        raise ValueError(f"mask_prob must be in [0, 1) (some position must stay visible), got {mask_prob}")
    keep = int(length * (1 - mask_prob))
    allowed = torch.ones(count, length, dtype=torch.bool, device=_sampling_device(generator))
    kept = choose_without_replacement(allowed, torch.full((count,), keep, device=allowed.device), generator)
    return ~kept


def block_mask_1d(
    count: int,
    length: int,
    mask_prob: float,
    mask_length: int,
    *,
    mask_prob_adjust: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """data2vec 2.0 speech (fairseq ``compute_block_mask_1d``, overlapping blocks, same count per
    row) -> bool (count, length), True = masked.

    Per row, ``int(length * ((mask_prob + mask_prob_adjust) / mask_length))`` block centers are drawn
    uniformly in [0, length) with replacement; each marks ``mask_length`` positions around it,
    clamped at the ends (``_mark_blocks_1d``). The row is then trimmed or filled, uniformly, to
    exactly ``int(length * mask_prob)`` masked positions.
    """
    if length < 1:
        raise ValueError(f"length must be positive, got {length}")
    _check_block_arguments(count, mask_prob, mask_length, mask_prob, mask_prob_adjust)
    device = _sampling_device(generator)
    centers_per_row = int(length * ((mask_prob + mask_prob_adjust) / mask_length))
    centers = torch.randint(0, length, (count, centers_per_row), generator=generator, device=device)
    marks = _mark_blocks_1d(centers, length, mask_length)
    return _exact_count(marks, int(length * mask_prob), generator)


def centered_block_mask_2d(
    count: int,
    rows: int,
    columns: int,
    mask_prob: float,
    mask_length: int,
    *,
    mask_prob_adjust: float = 0.0,
    inverse: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """data2vec 2.0 images (fairseq ``compute_block_mask_2d``, for a rows x columns grid rather than
    a square one) -> bool (count, rows * columns) row-major, True = masked. (``block_mask_2d`` above
    is data2vec 1.0's BEiT sampler.)

    With ``inverse`` (data2vec 2.0's inverse block masking) the blocks choose what to KEEP:
    ``p = 1 - mask_prob``; otherwise ``p = mask_prob`` and the blocks are masked. Per row,
    ``int(L * ((p + mask_prob_adjust) / mask_length**2))`` centers (``L = rows * columns``) are drawn
    uniformly over the cells with replacement; each marks the mask_length x mask_length block around
    it, clamped into the grid (``_mark_blocks_2d``). The row is then trimmed or filled, uniformly,
    to exactly ``int(L * p)`` marks. So with ``inverse`` exactly ``L - int(L * (1 - mask_prob))``
    patches are masked (14x14 at 0.8: 39 kept, 157 masked).

    ``mask_length`` 1 (single-cell blocks) is allowed here, fairseq asserts ``mask_length > 1``.
    """
    if rows < 1 or columns < 1:
        raise ValueError(f"rows and columns must be positive, got {rows} x {columns}")
    p = 1 - mask_prob if inverse else mask_prob  # the fraction the blocks mark
    _check_block_arguments(count, mask_prob, mask_length, p, mask_prob_adjust)
    cells = rows * columns
    device = _sampling_device(generator)
    centers_per_row = int(cells * ((p + mask_prob_adjust) / mask_length**2))
    centers = torch.randint(0, cells, (count, centers_per_row), generator=generator, device=device)
    marks = _exact_count(_mark_blocks_2d(centers, rows, columns, mask_length), int(cells * p), generator)
    return ~marks if inverse else marks
