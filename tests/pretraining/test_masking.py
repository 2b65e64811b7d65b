"""Mask samplers: statistics over many draws against expectations derived here."""

import math
from collections import Counter

import numpy as np
import pytest
import torch

from data2vec.pretraining.masking import _place_block, _UniformStream, block_mask_2d, span_mask, token_mask


def _runs(row: torch.Tensor) -> list[tuple[int, int]]:
    """(start, length) of each maximal run of True in a 1-D bool tensor."""
    runs, start = [], None
    for index, value in enumerate(row.tolist() + [False]):
        if value and start is None:
            start = index
        elif not value and start is not None:
            runs.append((start, index - start))
            start = None
    return runs


def _coverage_probability(region: int, span: int, starts: int, position: int) -> float:
    """P(position is masked) when ``starts`` distinct span starts are drawn uniformly among
    ``region`` candidate starts 0..region-1, each masking [start, start + span)."""
    covering = min(position, region - 1) - max(0, position - span + 1) + 1  # starts that cover it
    covering = max(covering, 0)
    return 1.0 - math.comb(region - covering, starts) / math.comb(region, starts)


def _rounded_counts(value: float) -> list[tuple[int, float]]:
    """floor(value + u), u ~ U[0, 1): (count, probability) pairs."""
    low = math.floor(value)
    return [(low, 1 - (value - low)), (low + 1, value - low)]


# ---------------------------------------------------------------------------- audio spans
def test_span_mask_per_position_rate_matches_hypergeometric_formula():
    length, span, prob, rows = 60, 10, 0.65, 4000
    mask = span_mask(rows, length, prob, span, generator=torch.Generator().manual_seed(0))
    assert mask.shape == (rows, length) and mask.dtype == torch.bool
    region = length - span + 1  # possible starts
    expected = [
        sum(p * _coverage_probability(region, span, n, t) for n, p in _rounded_counts(prob * length / span))
        for t in range(length)
    ]
    observed = mask.float().mean(0)
    # per position: binomial standard error <= sqrt(0.25 / 4000) = 0.008
    torch.testing.assert_close(observed, torch.tensor(expected), atol=0.04, rtol=0)
    assert abs(observed.mean().item() - sum(expected) / length) < 0.01
    # ~half of the frames for the data2vec speech setting, well below mask_prob
    assert 0.4 < observed.mean().item() < 0.6


def test_span_mask_with_unit_spans_masks_rounded_count():
    length, prob = 50, 0.37  # 18.5 -> 18 or 19 positions, 19 half of the time
    mask = span_mask(3000, length, prob, 1, generator=torch.Generator().manual_seed(1))
    counts = mask.sum(1)
    assert set(counts.tolist()) <= {18, 19}
    assert abs(counts.float().mean().item() - 18.5) < 0.05  # SE 0.5 / sqrt(3000) = 0.009


def test_span_mask_runs_are_whole_spans_and_padding_is_never_masked():
    lengths = [40, 25, 33, 12]
    generator = torch.Generator().manual_seed(2)
    for _ in range(50):
        mask = span_mask(4, 40, 0.5, 6, lengths=lengths, generator=generator)
        for row, valid in zip(mask, lengths):
            assert not row[valid:].any()
            runs = _runs(row)
            assert runs, "min_masks=1 guarantees one span"
            assert all(length >= 6 for _, length in runs)  # unions of 6-long spans
    single = span_mask(8, 30, 0.0, 5, min_masks=1, generator=generator)
    for row in single:
        assert [length for _, length in _runs(row)] == [5]


def test_span_mask_seeded_and_validated():
    first = span_mask(3, 50, 0.65, 10, generator=torch.Generator().manual_seed(3))
    again = span_mask(3, 50, 0.65, 10, generator=torch.Generator().manual_seed(3))
    other = span_mask(3, 50, 0.65, 10, generator=torch.Generator().manual_seed(4))
    assert torch.equal(first, again) and not torch.equal(first, other)
    with pytest.raises(ValueError, match="shorter than one mask span"):
        span_mask(2, 50, 0.65, 10, lengths=[50, 8])
    with pytest.raises(ValueError, match="one per row"):
        span_mask(2, 50, 0.65, 10, lengths=[50])


# ---------------------------------------------------------------------------- image blocks
def test_block_mask_count_close_to_target_and_never_above():
    mask = block_mask_2d(1000, 14, 14, 120, generator=torch.Generator().manual_seed(0))
    assert mask.shape == (1000, 196) and mask.dtype == torch.bool
    counts = mask.sum(1).float()
    assert counts.max().item() <= 120
    assert counts.mean().item() >= 0.99 * 120  # "close": within 1% of the target on average
    assert (counts == 120).float().mean().item() > 0.5  # most samples hit it exactly
    assert counts.min().item() >= 100


def _block_shape_distribution(area: float, min_aspect: float, max_aspect: float, budget: int, grid: int):
    """Exact distribution of an accepted block's (height, width) on an empty grid: the aspect ratio
    r is log-uniform, height = round(sqrt(area r)), width = round(sqrt(area / r)), accepted when it
    fits the grid and height * width <= budget. Integrated on a fine grid of log r."""
    log_r = np.linspace(math.log(min_aspect), math.log(max_aspect), 200001)
    r = np.exp(log_r)
    heights = np.array([int(round(v)) for v in np.sqrt(area * r)])
    widths = np.array([int(round(v)) for v in np.sqrt(area / r)])
    ok = (heights >= 1) & (widths >= 1) & (heights <= grid) & (widths <= grid) & (heights * widths <= budget)
    shapes = Counter(zip(heights[ok].tolist(), widths[ok].tolist()))
    return {shape: count / ok.sum() for shape, count in shapes.items()}


def test_single_block_shapes_follow_log_uniform_aspect_ratio():
    area, grid_size, draws = 24, 20, 4000
    expected = _block_shape_distribution(area, 0.3, 1 / 0.3, budget=area, grid=grid_size)
    uniform = _UniformStream(torch.Generator().manual_seed(0))
    observed: Counter = Counter()
    for _ in range(draws):
        grid = np.zeros((grid_size, grid_size), dtype=bool)
        added = _place_block(grid, area, area, (math.log(0.3), math.log(1 / 0.3)), 10, uniform)
        if added == 0:  # 10 rejections in a row: P = 0.31^10, rare
            assert not grid.any()
            continue
        rows, cols = np.nonzero(grid)
        height, width = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
        assert added == height * width == grid.sum()  # one solid rectangle
        observed[(int(height), int(width))] += 1
    draws = sum(observed.values())
    assert draws > 3990
    assert set(observed) <= set(expected)
    for shape, probability in expected.items():
        standard_error = math.sqrt(probability * (1 - probability) / draws)
        assert abs(observed[shape] / draws - probability) < 5 * standard_error + 1e-3, shape
    # symmetric aspect range: tall and wide blocks equally likely
    tall = sum(c for (h, w), c in observed.items() if h > w) / draws
    wide = sum(c for (h, w), c in observed.items() if w > h) / draws
    assert abs(tall - wide) < 0.06


def test_block_aspect_one_gives_squares_at_uniform_positions():
    draws = 2000
    generator = torch.Generator().manual_seed(1)
    mask = block_mask_2d(draws, 12, 12, 16, min_num_patches=16, min_aspect=1.0, generator=generator)
    grids = mask.view(draws, 12, 12)
    for grid in grids[:100]:
        rows, cols = torch.nonzero(grid, as_tuple=True)
        assert grid.sum() == 16
        assert rows.max() - rows.min() == 3 and cols.max() - cols.min() == 3  # a single 4x4 square
    # a 4x4 square has 9 x 9 equally likely positions; patch (i, j) is covered by
    # rows(i) * cols(j) of them, rows(i) = number of tops in [i - 3, i] within [0, 8]
    covering = torch.tensor([min(i, 8) - max(0, i - 3) + 1 for i in range(12)], dtype=torch.float32)
    expected = covering[:, None] * covering[None, :] / 81
    frequency = grids.float().mean(0)
    standard_error = (expected * (1 - expected) / draws).sqrt()
    assert ((frequency - expected).abs() < 5 * standard_error).all()


def test_block_mask_seeded_and_validated():
    first = block_mask_2d(4, 14, 14, 75, generator=torch.Generator().manual_seed(3))
    again = block_mask_2d(4, 14, 14, 75, generator=torch.Generator().manual_seed(3))
    assert torch.equal(first, again)
    with pytest.raises(ValueError, match="num_masking_patches"):
        block_mask_2d(1, 4, 4, 17)
    with pytest.raises(ValueError, match="min_aspect"):
        block_mask_2d(1, 4, 4, 4, min_aspect=0.0)


# ---------------------------------------------------------------------------- text
def _text_batch(rows: int, seq: int, vocab: int, seed: int):
    """Token ids in [4, vocab - 1) with <s>=0 first, </s>=2 after a random length, padding=1 after."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, vocab - 1, (rows, seq), generator=generator)
    lengths = torch.randint(seq // 2, seq + 1, (rows,), generator=generator)  # incl. <s> and </s>
    special = torch.zeros(rows, seq, dtype=torch.bool)
    for row, length in enumerate(lengths.tolist()):
        ids[row, 0] = 0
        ids[row, length - 1] = 2
        ids[row, length:] = 1
        special[row, 0] = special[row, length - 1:] = True
    return ids, special, lengths


def test_bert_mode_counts_and_80_10_10_proportions():
    vocab, mask_id = 1000, 999
    ids, special, lengths = _text_batch(400, 64, vocab, seed=0)
    masked, mask = token_mask(
        ids, special_tokens_mask=special, mask_token_id=mask_id, vocab_size=vocab,
        special_token_ids=[0, 1, 2, 3], generator=torch.Generator().manual_seed(1),
    )
    assert masked.dtype == ids.dtype and mask.dtype == torch.bool
    assert not (mask & special).any()
    assert torch.equal(masked[~mask], ids[~mask])  # only chosen tokens change
    maskable = (~special).sum(1)
    for count, n in zip(mask.sum(1).tolist(), maskable.tolist()):
        assert count in (math.floor(0.15 * n), math.floor(0.15 * n) + 1)
    assert abs(mask.sum().item() / maskable.sum().item() - 0.15) < 0.01

    chosen = mask.sum().item()
    candidates = vocab - 5  # all ids except 0, 1, 2, 3 and <mask>
    as_mask = (masked[mask] == mask_id).float().mean().item()
    unchanged = (masked[mask] == ids[mask]).float().mean().item()
    random_other = ((masked[mask] != mask_id) & (masked[mask] != ids[mask])).float().mean().item()
    expected = {"mask": 0.8, "unchanged": 0.1 + 0.1 / candidates, "random": 0.1 * (1 - 1 / candidates)}
    for name, value in (("mask", as_mask), ("unchanged", unchanged), ("random", random_other)):
        standard_error = math.sqrt(expected[name] * (1 - expected[name]) / chosen)
        assert abs(value - expected[name]) < 4 * standard_error, (name, value, expected[name])


def test_random_replacements_avoid_special_ids_and_are_uniform():
    vocab, mask_id = 12, 11
    ids, special, _ = _text_batch(600, 40, vocab, seed=2)
    masked, mask = token_mask(
        ids, special_tokens_mask=special, mask_token_id=mask_id, vocab_size=vocab, mask_prob=0.5,
        random_token_prob=1.0, leave_unmasked_prob=0.0, special_token_ids=[0, 1, 2, 3],
        generator=torch.Generator().manual_seed(3),
    )
    replaced = masked[mask]
    assert replaced.min() >= 4 and replaced.max() <= 10  # never a special id, never <mask>
    frequencies = torch.bincount(replaced, minlength=vocab)[4:11].float() / replaced.numel()
    standard_error = math.sqrt((1 / 7) * (6 / 7) / replaced.numel())
    assert (frequencies - 1 / 7).abs().max() < 5 * standard_error


def test_span_mode_rate_matches_formula_and_spans_are_contiguous():
    vocab, mask_id, span, prob = 500, 499, 4, 0.35
    ids, special, lengths = _text_batch(1500, 48, vocab, seed=4)
    masked, mask = token_mask(
        ids, special_tokens_mask=special, mask_token_id=mask_id, vocab_size=vocab, mask_prob=prob,
        mode="span", mask_multiple_length=span, random_token_prob=0.0, leave_unmasked_prob=0.0,
        generator=torch.Generator().manual_seed(5),
    )
    assert not (mask & special).any()
    assert torch.equal(masked == mask_id, mask)  # released recipe: every chosen token -> <mask>
    assert torch.equal(masked[~mask], ids[~mask])
    expected_masked = 0.0
    for row, length in enumerate(lengths.tolist()):
        region = length - 2  # maskable tokens: 1 .. length - 2, starts anywhere among them
        expected_masked += sum(
            p * _coverage_probability(region, span, n, t)
            for n, p in _rounded_counts(prob * region / span)
            for t in range(region)
        )
        for start, run in _runs(mask[row]):
            assert run >= span or start + run == length - 1  # short runs only where the text ends
    maskable = (~special).sum().item()
    observed = mask.sum().item() / maskable
    assert abs(observed - expected_masked / maskable) < 0.01
    assert 0.27 < observed < 0.33  # ~ 1 - (1 - 0.35/4)^4 = 0.306 with overlaps, not 0.35


def test_token_mask_seeded_and_validated():
    ids, special, _ = _text_batch(4, 16, 50, seed=6)
    kwargs = dict(special_tokens_mask=special, mask_token_id=49, vocab_size=50)
    first = token_mask(ids, **kwargs, generator=torch.Generator().manual_seed(7))
    again = token_mask(ids, **kwargs, generator=torch.Generator().manual_seed(7))
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    with pytest.raises(ValueError, match="mode='span'"):
        token_mask(ids, **kwargs, mask_multiple_length=4)
    with pytest.raises(ValueError, match="special_tokens_mask"):
        token_mask(ids, special_tokens_mask=special[:, :3], mask_token_id=49, vocab_size=50)
    with pytest.raises(ValueError, match="sum <= 1"):
        token_mask(ids, **kwargs, random_token_prob=0.6, leave_unmasked_prob=0.6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_samplers_on_cuda():
    generator = torch.Generator(device="cuda").manual_seed(0)
    assert span_mask(2, 50, 0.65, 10, generator=generator, device="cuda").is_cuda
    assert block_mask_2d(2, 14, 14, 120, generator=generator, device="cuda").is_cuda
    ids, special, _ = _text_batch(4, 16, 50, seed=6)
    masked, mask = token_mask(ids.cuda(), special_tokens_mask=special.cuda(), mask_token_id=49, vocab_size=50,
                              generator=generator)
    assert masked.is_cuda and mask.is_cuda and not (mask & special.cuda()).any()
