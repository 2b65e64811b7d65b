"""data2vec 2.0's convolutional decoder: the student's encoder outputs, with the masked positions
filled in, -> predictions of the teacher's targets at every position.

    blocks (x layers):  x = gelu(layer_norm(conv(x))) [+ x]     conv: 1-D (speech, text) or 2-D (images)
    projection:         [linear -> gelu] x (projection_layers - 1) -> linear

The layer norm has no affine parameters. The decoder belongs to the student only and is dropped
after pretraining. fairseq: ``Decoder1d`` / ``Decoder2d`` in ``examples/data2vec/models/modalities/modules.py``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class DecoderBlock(nn.Module):
    """conv (same padding) -> layer norm over channels, no affine parameters -> GELU, channels first."""

    def __init__(self, input_dim: int, dim: int, kernel: int, groups: int, spatial_dims: int) -> None:
        super().__init__()
        convolution = nn.Conv1d if spatial_dims == 1 else nn.Conv2d
        self.conv = convolution(input_dim, dim, kernel, padding=kernel // 2, groups=groups)
        self.norm = nn.LayerNorm(dim, eps=1e-5, elementwise_affine=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)  # (batch, dim, *positions)
        x = self.norm(x.movedim(1, -1)).movedim(-1, 1)
        return F.gelu(x)


class ConvDecoder(nn.Module):
    """data2vec 2.0's decoder (student only, dropped after pretraining): ``layers`` convolution
    blocks over the positions, then a per-position projection to ``output_dim`` (default ``input_dim``).

    Each block is conv(kernel, padding kernel // 2, groups) -> layer norm without parameters -> GELU;
    block 0 maps ``input_dim`` to ``dim`` channels, the others ``dim`` to ``dim``. With ``residual``
    a block's input is added to its output whenever the two have the same shape (so block 0 adds
    none when ``input_dim != dim``). The projection is ``projection_layers - 1`` times linear ->
    GELU (the first widening to ``int(dim * projection_ratio)``, the rest keeping that width), then
    a linear to ``output_dim``.

    ``spatial_dims`` 1 convolves along the sequence; 2 along the rows and columns of a grid of
    patches, given to ``forward`` as ``grid=(rows, columns)`` with the positions in row-major
    order. An output position sees the inputs within ``layers * (kernel // 2)`` positions of it
    (per axis in 2-D).
    """

    def __init__(
        self,
        input_dim: int,
        *,
        dim: int,
        layers: int,
        kernel: int,
        groups: int = 1,
        residual: bool = True,
        projection_layers: int = 1,
        projection_ratio: float = 2.0,
        spatial_dims: int = 1,
        output_dim: int | None = None,
    ) -> None:
        super().__init__()
        if spatial_dims not in (1, 2):
            raise ValueError(f"spatial_dims must be 1 (sequences) or 2 (patch grids), got {spatial_dims}")
        if kernel < 1 or kernel % 2 == 0:
            raise ValueError(f"kernel must be a positive odd number (same padding keeps the length), got {kernel}")
        if layers < 1 or projection_layers < 1:
            raise ValueError(f"layers and projection_layers must be at least 1, got {layers} and {projection_layers}")
        if input_dim < 1 or dim < 1 or groups < 1:
            raise ValueError(f"input_dim, dim and groups must be positive, got {input_dim}, {dim}, {groups}")
        if input_dim % groups or dim % groups:
            raise ValueError(
                f"input_dim ({input_dim}) and dim ({dim}) must both be divisible by groups ({groups})"
            )
        widened = int(dim * projection_ratio)
        if projection_layers > 1 and widened < 1:
            raise ValueError(f"projection_ratio {projection_ratio} leaves no hidden units (dim {dim})")
        self.spatial_dims = spatial_dims
        self.residual = residual
        self.blocks = nn.ModuleList(
            DecoderBlock(input_dim if index == 0 else dim, dim, kernel, groups, spatial_dims) for index in range(layers)
        )
        projection: list[nn.Module] = []
        width = dim
        for _ in range(projection_layers - 1):
            projection += [nn.Linear(width, widened), nn.GELU()]
            width = widened
        projection.append(nn.Linear(width, output_dim if output_dim is not None else input_dim))
        self.projection = nn.Sequential(*projection)

    def forward(self, hidden_states: torch.Tensor, grid: tuple[int, int] | None = None) -> torch.Tensor:
        """(batch, positions, input_dim) -> (batch, positions, output_dim); ``grid=(rows, columns)``
        with ``rows * columns == positions`` for a 2-D decoder, None for a 1-D one."""
        input_dim = self.blocks[0].conv.in_channels
        if hidden_states.dim() != 3 or hidden_states.shape[-1] != input_dim:
            raise ValueError(
                f"expected hidden_states of shape (batch, positions, {input_dim}), got {tuple(hidden_states.shape)}"
            )
        batch, positions, channels = hidden_states.shape
        x = hidden_states.transpose(1, 2)  # (batch, channels, positions)
        if self.spatial_dims == 2:
            if grid is None or len(grid) != 2 or grid[0] * grid[1] != positions:
                raise ValueError(
                    f"a 2-D decoder needs grid=(rows, columns) with rows * columns = {positions} positions, got {grid}"
                )
            x = x.reshape(batch, channels, grid[0], grid[1])  # (batch, channels, rows, columns)
        elif grid is not None:
            raise ValueError(f"a 1-D decoder takes no grid, got {grid}: build it with spatial_dims=2 for patch grids")

        for block in self.blocks:
            output = block(x)  # (batch, dim, *positions)
            if self.residual and output.shape == x.shape:
                output = output + x
            x = output
        x = x.flatten(2).transpose(1, 2)  # (batch, positions, dim)
        return self.projection(x)
