"""Image to token sequence, and where the tokens are.

Patches: a strided convolution cuts the image into ``patch_size`` squares and projects each
to ``hidden_size``; a learned CLS token goes first. Masked image modelling swaps chosen patch
embeddings for a learned mask token.

Position, two kinds (a checkpoint may use either, both or none):
- absolute: one learned vector per token, added to the embeddings; for a patch grid other
  than the trained one the patch vectors are resized bicubically as an image.
- relative (BEiT): per attention head, a learned bias for every 2-D offset between two
  patches, plus three entries for CLS->patch, patch->CLS and CLS->CLS. It is added to the
  attention scores; for another grid the table of offsets is resized bilinearly.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .config import Data2VecVisionConfig, as_pair


class VisionEmbeddings(nn.Module):
    def __init__(self, config: Data2VecVisionConfig) -> None:
        super().__init__()
        self.patch_size = as_pair(config.patch_size, "patch_size")
        self.grid = config.patch_grid  # the grid the position embeddings were trained for
        self.patch_embedding = nn.Conv2d(
            config.num_channels, config.hidden_size, kernel_size=self.patch_size, stride=self.patch_size
        )
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.hidden_size))
        self.mask_token = nn.Parameter(torch.zeros(1, 1, config.hidden_size)) if config.use_mask_token else None
        num_tokens = 1 + self.grid[0] * self.grid[1]
        self.position_embeddings = (
            nn.Parameter(torch.zeros(1, num_tokens, config.hidden_size))
            if config.use_absolute_position_embeddings
            else None
        )
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def position_embeddings_for(self, grid: tuple[int, int]) -> torch.Tensor:
        """Absolute position embeddings for a (rows, columns) patch grid: (1, 1 + rows * columns, hidden)."""
        if grid == self.grid:
            return self.position_embeddings
        cls_position = self.position_embeddings[:, :1]
        hidden = self.position_embeddings.shape[-1]
        as_image = self.position_embeddings[:, 1:].reshape(1, *self.grid, hidden).permute(0, 3, 1, 2)
        resized = F.interpolate(as_image, size=grid, mode="bicubic", align_corners=False)
        patch_positions = resized.permute(0, 2, 3, 1).reshape(1, grid[0] * grid[1], hidden)
        return torch.cat([cls_position, patch_positions], dim=1)

    def forward(self, pixel_values: torch.Tensor, bool_masked_pos: torch.Tensor | None = None) -> torch.Tensor:
        """pixel_values: (batch, channels, height, width); bool_masked_pos: (batch, patches), True = masked.
        Returns (batch, 1 + patches, hidden)."""
        patches = self.patch_embedding(pixel_values.to(self.patch_embedding.weight.dtype))  # (batch, hidden, rows, cols)
        grid = (patches.shape[2], patches.shape[3])
        embeddings = patches.flatten(2).transpose(1, 2)  # (batch, patches, hidden)
        if bool_masked_pos is not None:
            embeddings = torch.where(bool_masked_pos[..., None], self.mask_token.to(embeddings.dtype), embeddings)
        cls = self.cls_token.expand(embeddings.shape[0], -1, -1)
        embeddings = torch.cat([cls, embeddings], dim=1)  # (batch, 1 + patches, hidden)
        if self.position_embeddings is not None:
            embeddings = embeddings + self.position_embeddings_for(grid)
        return self.dropout(embeddings)


@functools.lru_cache(maxsize=16)
def _relative_position_index_array(grid: tuple[int, int]) -> np.ndarray:
    # Cached as a read-only numpy array, never as a tensor: a tensor cached across calls would
    # carry the autograd mode of its first caller (an inference tensor under inference_mode).
    rows, cols = grid
    offsets_count = (2 * rows - 1) * (2 * cols - 1)
    y, x = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    y, x = y.reshape(-1), x.reshape(-1)  # (patches,) each, row-major like the token order
    dy = y[:, None] - y[None, :] + rows - 1
    dx = x[:, None] - x[None, :] + cols - 1
    index = np.empty((1 + rows * cols, 1 + rows * cols), dtype=np.int64)
    index[1:, 1:] = dy * (2 * cols - 1) + dx
    index[0, :] = offsets_count  # CLS query -> patch keys
    index[:, 0] = offsets_count + 1  # patch queries -> CLS key
    index[0, 0] = offsets_count + 2  # CLS -> CLS
    index.flags.writeable = False
    return index


def relative_position_index(grid: tuple[int, int], device: torch.device | str | None = None) -> torch.Tensor:
    """(1 + rows * cols, 1 + rows * cols) indices into a relative position bias table, a new
    tensor on ``device`` at each call.

    Patch p attending to patch q reads entry (dy + rows - 1) * (2 * cols - 1) + (dx + cols - 1)
    with (dy, dx) = position(p) - position(q); the last three entries are CLS->patch,
    patch->CLS and CLS->CLS (query->key)."""
    return torch.tensor(_relative_position_index_array(tuple(grid)), device=device)


class RelativePositionBias(nn.Module):
    """A learned (offsets + 3, heads) table; ``forward(grid)`` gives the additive attention
    bias (1, heads, 1 + patches, 1 + patches) for a patch grid.

    The index of the trained grid is a non-persistent buffer: built once, moved by ``.to()``
    with the table, absent from the state dict (older checkpoints that hold it load as well:
    the checkpoint key table ignores it). Another grid computes its index on the fly."""

    def __init__(self, grid: tuple[int, int], num_heads: int) -> None:
        super().__init__()
        self.grid = grid  # the grid the table was trained for
        self.table = nn.Parameter(torch.zeros((2 * grid[0] - 1) * (2 * grid[1] - 1) + 3, num_heads))
        self.register_buffer("index", relative_position_index(grid), persistent=False)

    def table_for(self, grid: tuple[int, int]) -> torch.Tensor:
        """The table resized for another grid: the offset part bilinearly as a (2r-1, 2c-1) image
        per head, the three CLS entries as they are."""
        if grid == self.grid:
            return self.table
        offsets, cls_entries = self.table[:-3], self.table[-3:]
        heads = offsets.shape[-1]
        as_image = offsets.reshape(1, 2 * self.grid[0] - 1, 2 * self.grid[1] - 1, heads).permute(0, 3, 1, 2)
        size = (2 * grid[0] - 1, 2 * grid[1] - 1)
        resized = F.interpolate(as_image, size=size, mode="bilinear", align_corners=False)
        return torch.cat([resized.permute(0, 2, 3, 1).reshape(size[0] * size[1], heads), cls_entries])

    def forward(self, grid: tuple[int, int]) -> torch.Tensor:
        table = self.table_for(grid)
        index = self.index if grid == self.grid else relative_position_index(grid, device=table.device)
        tokens = index.shape[0]
        # Gathered from the (heads, entries) view along its rows: the bias comes out contiguous
        # in (heads, tokens, tokens), the layout fused attention kernels take, and the gradient
        # is an index_add over 732 entries (10x faster on the CPU than that of table[index]).
        bias = table.t().index_select(1, index.reshape(-1))
        return bias.view(1, table.shape[1], tokens, tokens)  # (1, heads, tokens, tokens)
