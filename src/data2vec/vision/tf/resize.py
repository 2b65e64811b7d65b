"""Resizing and adaptive pooling as fixed linear maps, so that they give what the PyTorch
classes give (``F.interpolate`` bicubic/bilinear with ``align_corners=False``,
``F.adaptive_avg_pool2d``) on any Keras backend and inside XLA.

Each of these is separable: the result is ``rows_map @ image @ columns_map.T`` with a
(out, in) matrix per axis. The matrices are made once per size by applying the PyTorch
function to an identity matrix, which makes them exactly the PyTorch weights, edge clamping
and bicubic coefficient (-0.75, not TensorFlow's -0.5) included.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F
from keras import ops


@functools.lru_cache(maxsize=64)
def interpolation_matrix(in_size: int, out_size: int, mode: str) -> np.ndarray:
    """(out_size, in_size) weights of a 1-D ``mode`` ("bilinear" or "bicubic") resize."""
    basis = torch.eye(in_size, dtype=torch.float64).reshape(1, in_size, in_size, 1)  # channel c = unit vector c
    resized = F.interpolate(basis, size=(out_size, 1), mode=mode, align_corners=False)  # (1, in, out, 1)
    return resized[0, :, :, 0].T.numpy().astype(np.float32)


@functools.lru_cache(maxsize=64)
def adaptive_average_matrix(in_size: int, out_size: int) -> np.ndarray:
    """(out_size, in_size) weights of a 1-D adaptive average pool."""
    basis = torch.eye(in_size, dtype=torch.float64)[None]  # (1, in, in): channel c = unit vector c
    pooled = F.adaptive_avg_pool1d(basis, out_size)  # (1, in, out)
    return pooled[0].T.numpy().astype(np.float32)


def _apply(images, rows_map: np.ndarray, columns_map: np.ndarray):
    """images: (batch, rows, cols, channels) -> (batch, out_rows, out_cols, channels)."""
    dtype = images.dtype
    images = ops.einsum("or,brcd->bocd", ops.convert_to_tensor(rows_map, dtype=dtype), images)
    return ops.einsum("pc,bocd->bopd", ops.convert_to_tensor(columns_map, dtype=dtype), images)


def resize(images, size: tuple[int, int], mode: str = "bilinear"):
    """images: (batch, rows, cols, channels) with static rows and cols -> (batch, *size, channels)."""
    rows, cols = images.shape[1], images.shape[2]
    if (rows, cols) == tuple(size):
        return images
    return _apply(images, interpolation_matrix(rows, size[0], mode), interpolation_matrix(cols, size[1], mode))


def adaptive_average_pool(images, size: int):
    """images: (batch, rows, cols, channels) -> (batch, size, size, channels)."""
    rows, cols = images.shape[1], images.shape[2]
    return _apply(images, adaptive_average_matrix(rows, size), adaptive_average_matrix(cols, size))
