"""data2vec 2.0 mask samplers: exact counts, uniformity, block geometry, seeding, argument checks."""

import pytest
import torch
import torch.nn.functional as F

from data2vec.pretraining.masking import (
    _mark_blocks_1d,
    _mark_blocks_2d,
    block_mask_1d,
    centered_block_mask_2d,
    random_mask,
)


def _seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _cells(marks: torch.Tensor, columns: int) -> set[tuple[int, int]]:
    """Row-major marks of one grid -> the set of (row, column) marked."""
    return {(index // columns, index % columns) for index in torch.nonzero(marks).flatten().tolist()}


# ---------------------------------------------------------------------------- exact counts
@pytest.mark.parametrize(
    "length, mask_prob, masked",
    [
        (64, 0.48, 31),  # keeps int(64 * 0.52) = int(33.28) = 33
        (10, 0.5, 5),
        (196, 0.0, 0),
        (7, 0.9, 7),  # keeps int(0.7) = 0
    ],
)
def test_random_mask_masks_exact_count_in_every_row(length, mask_prob, masked):
    mask = random_mask(200, length, mask_prob, generator=_seeded(0))
    assert mask.shape == (200, length) and mask.dtype == torch.bool
    assert mask.sum(1).tolist() == [masked] * 200
    assert mask.float().mean().item() == pytest.approx(masked / length)


@pytest.mark.parametrize(
    "length, mask_prob, mask_length, adjust, masked",
    [
        (249, 0.5, 5, 0.0, 124),  # int(124.5); 24 centers of 5 frames, trimmed or filled
        (50, 0.65, 10, 0.0, 32),  # int(32.5); 3 centers of 10 frames: always short, filled
        (100, 0.3, 4, 0.2, 30),  # adjust: 12 centers (up to 48 frames), trimmed to 30
        (12, 1.0, 3, 0.0, 12),
        (40, 0.0, 3, 0.0, 0),
    ],
)
def test_block_mask_1d_masks_exact_count_in_every_row(length, mask_prob, mask_length, adjust, masked):
    mask = block_mask_1d(200, length, mask_prob, mask_length, mask_prob_adjust=adjust, generator=_seeded(1))
    assert mask.shape == (200, length) and mask.dtype == torch.bool
    assert mask.sum(1).tolist() == [masked] * 200
    assert mask.float().mean().item() == pytest.approx(masked / length)


@pytest.mark.parametrize(
    "rows, columns, mask_prob, mask_length, adjust, inverse, masked",
    [
        (14, 14, 0.8, 3, 0.07, True, 157),  # 196 * (1 - 0.8) = 39.2 -> 39 kept (data2vec 2.0 images)
        (14, 14, 0.8, 5, 0.0, True, 157),
        (8, 8, 0.8, 3, 0.0, True, 52),  # 64 * 0.2 = 12.8 -> 12 kept
        (6, 10, 0.5, 2, 0.0, False, 30),  # not inverse: the blocks are masked, int(60 * 0.5)
        (5, 9, 0.6, 1, 0.0, True, 27),  # single cells: 45 * (1 - 0.6) = 18 kept
    ],
)
def test_centered_block_mask_2d_masks_exact_count_in_every_row(rows, columns, mask_prob, mask_length, adjust,
                                                               inverse, masked):
    mask = centered_block_mask_2d(
        200, rows, columns, mask_prob, mask_length, mask_prob_adjust=adjust, inverse=inverse, generator=_seeded(2)
    )
    assert mask.shape == (200, rows * columns) and mask.dtype == torch.bool
    assert mask.sum(1).tolist() == [masked] * 200
    assert mask.float().mean().item() == pytest.approx(masked / (rows * columns))


# ---------------------------------------------------------------------------- uniformity
def test_random_mask_masks_every_position_equally_often():
    rows, length = 4000, 20
    mask = random_mask(rows, length, 0.5, generator=_seeded(3))  # 10 of 20 masked per row
    frequency = mask.float().mean(0)
    # each position is masked with probability 10/20; binomial standard error sqrt(0.25 / 4000) = 0.0079
    assert (frequency - 0.5).abs().max().item() < 5 * 0.0079
    # masked sets differ from row to row: 4000 draws of C(20, 10) = 184756 sets repeat rarely
    assert len({tuple(row.tolist()) for row in mask}) > 3900


# ---------------------------------------------------------------------------- block geometry
def test_mark_blocks_1d_marks_union_of_clamped_blocks():
    # mask_length 4: offsets -2, -1, 0, 1
    centers = torch.tensor([[5, 0], [11, 11], [6, 7]])
    marks = _mark_blocks_1d(centers, 12, 4)
    assert marks.shape == (3, 12) and marks.dtype == torch.bool
    expected = [
        {3, 4, 5, 6} | {0, 1},  # center 0: -2, -1 clamp onto 0
        {9, 10, 11},  # center 11 twice: 12 clamps onto 11
        {4, 5, 6, 7, 8},  # overlapping blocks
    ]
    assert [set(torch.nonzero(row).flatten().tolist()) for row in marks] == expected
    # odd length: offsets -1, 0, 1
    assert set(torch.nonzero(_mark_blocks_1d(torch.tensor([[4]]), 9, 3)[0]).flatten().tolist()) == {3, 4, 5}


def test_mark_blocks_2d_marks_union_of_clamped_squares_row_major():
    rows, columns = 5, 6
    # mask_length 3: offsets -1, 0, 1 on both axes; centers (2, 3) and (0, 5)
    marks = _mark_blocks_2d(torch.tensor([[2 * columns + 3, 0 * columns + 5]]), rows, columns, 3)
    assert marks.shape == (1, rows * columns)
    interior = {(r, c) for r in (1, 2, 3) for c in (2, 3, 4)}
    corner = {(0, 4), (0, 5), (1, 4), (1, 5)}  # row -1 and column 6 clamp onto the edge
    assert _cells(marks[0], columns) == interior | corner
    # mask_length 2: offsets -1, 0; center (4, 0) in the bottom-left corner
    marks = _mark_blocks_2d(torch.tensor([[4 * columns + 0]]), rows, columns, 2)
    assert _cells(marks[0], columns) == {(3, 0), (4, 0)}


def test_few_centers_in_big_grid_mark_whole_squares():
    generator = _seeded(4)
    rows, columns, mask_length = 30, 40, 4
    # one center per row, away from the edges: offsets -2..1 stay inside the grid
    center_rows = torch.randint(2, rows - 1, (100,), generator=generator)
    center_columns = torch.randint(2, columns - 1, (100,), generator=generator)
    marks = _mark_blocks_2d((center_rows * columns + center_columns)[:, None], rows, columns, mask_length)
    for grid, r, c in zip(marks, center_rows.tolist(), center_columns.tolist()):
        assert _cells(grid, columns) == {(r + i, c + j) for i in range(-2, 2) for j in range(-2, 2)}


def test_single_block_sampler_draws_a_square_unless_its_center_is_on_the_border():
    # 30x30, mask_length 3, not inverse: mask_prob 0.01 -> target int(9.0) = 9 cells; with adjust
    # 0.005, int(900 * 0.015 / 9) = int(1.5) = 1 center. A center off the border marks a whole 3x3
    # square (9 cells, nothing to trim or fill); a border center marks 4 or 6 cells and 5 or 3 more
    # are added at random, which practically never completes a square. P(off border) = 28^2 / 30^2.
    draws = 1000
    mask = centered_block_mask_2d(
        draws, 30, 30, 0.01, 3, mask_prob_adjust=0.005, inverse=False, generator=_seeded(5)
    )
    assert mask.sum(1).tolist() == [9] * draws
    grids = mask.view(draws, 30, 30)
    squares = 0
    for grid in grids:
        r, c = torch.nonzero(grid, as_tuple=True)
        squares += int(r.max() - r.min() == 2 and c.max() - c.min() == 2)
    expected = 28 * 28 / 900  # 0.871; standard error sqrt(0.871 * 0.129 / 1000) = 0.0106
    assert abs(squares / draws - expected) < 5 * 0.0106


def _mean_kept_neighbours(mask: torch.Tensor, rows: int, columns: int) -> float:
    """Mean over kept (unmasked) patches of how many of their 4 grid neighbours are kept too."""
    kept = (~mask).view(-1, 1, rows, columns).float()
    cross = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]).view(1, 1, 3, 3)
    neighbours = F.conv2d(kept, cross, padding=1)
    return ((neighbours * kept).sum() / kept.sum()).item()


def test_inverse_block_masks_keep_blocky_regions():
    draws = 500
    blocks = centered_block_mask_2d(draws, 14, 14, 0.8, 3, mask_prob_adjust=0.07, generator=_seeded(6))
    scattered = random_mask(draws, 196, 0.8, generator=_seeded(7))
    assert blocks.sum(1).tolist() == scattered.sum(1).tolist() == [157] * draws  # same fraction
    # random: 39 kept of 196; a cell has 3.714 neighbours on average (728 neighbour slots / 196), each
    # kept with probability 38/195 given the cell is kept -> 0.724
    assert _mean_kept_neighbours(scattered, 14, 14) == pytest.approx(728 / 196 * 38 / 195, abs=0.05)
    # blocks: an isolated 3x3 square's cells have (4 + 4 * 3 + 4 * 2) / 9 = 2.67 kept neighbours;
    # clipped, overlapping and trimmed blocks lower that, but it stays far above random
    assert _mean_kept_neighbours(blocks, 14, 14) > 2.0


# ---------------------------------------------------------------------------- seeding
@pytest.mark.parametrize(
    "sample",
    [
        lambda generator: random_mask(8, 64, 0.48, generator=generator),
        lambda generator: block_mask_1d(8, 249, 0.5, 5, generator=generator),
        lambda generator: centered_block_mask_2d(8, 14, 14, 0.8, 3, mask_prob_adjust=0.07, generator=generator),
    ],
)
def test_same_seed_same_masks_and_clones_differ(sample):
    first, again, other = sample(_seeded(8)), sample(_seeded(8)), sample(_seeded(9))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    assert len({tuple(row.tolist()) for row in first}) == 8  # count clones get different masks


def test_global_generator_when_none():
    torch.manual_seed(10)
    first = block_mask_1d(4, 100, 0.5, 5)
    torch.manual_seed(10)
    assert torch.equal(first, block_mask_1d(4, 100, 0.5, 5))


# ---------------------------------------------------------------------------- arguments
@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: random_mask(0, 10, 0.5), "count"),
        (lambda: random_mask(2, 0, 0.5), "length"),
        (lambda: random_mask(2, 10, 1.0), "mask_prob"),
        (lambda: random_mask(2, 10, -0.1), "mask_prob"),
        (lambda: block_mask_1d(0, 10, 0.5, 2), "count"),
        (lambda: block_mask_1d(2, 0, 0.5, 2), "length"),
        (lambda: block_mask_1d(2, 10, 1.5, 2), "mask_prob"),
        (lambda: block_mask_1d(2, 10, 0.5, 0), "mask_length"),
        (lambda: block_mask_1d(2, 10, 0.1, 2, mask_prob_adjust=-0.2), "mask_prob_adjust"),
        (lambda: centered_block_mask_2d(0, 4, 4, 0.5, 2), "count"),
        (lambda: centered_block_mask_2d(2, 0, 4, 0.5, 2), "rows and columns"),
        (lambda: centered_block_mask_2d(2, 4, 4, -0.5, 2), "mask_prob"),
        (lambda: centered_block_mask_2d(2, 4, 4, 0.5, 0), "mask_length"),
        (lambda: centered_block_mask_2d(2, 4, 4, 0.9, 2, mask_prob_adjust=-0.2), "mask_prob_adjust"),
    ],
)
def test_bad_arguments_raise(call, message):
    with pytest.raises(ValueError, match=message):
        call()
