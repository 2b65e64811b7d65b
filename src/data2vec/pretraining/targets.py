"""data2vec targets: the average of the teacher's top-K layer outputs, each normalised.

    target = post_norm( mean over the last K layers of layer_norm(layer output) )

computed in float32 (fp16/bf16 layer outputs give broken targets; s3prl/s3prl#378). Per-modality
choices (data2vec 1.0): audio K=8, instance norm, no post norm; vision K=6, layer norm, layer post
norm; text K=10, layer norm, no post norm.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

NORMS = ("instance", "layer", "none")
_EPS = 1e-5


def _instance_norm(x: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    """Normalise (B, T, C) over time, per sample and channel (biased variance, eps 1e-5, no affine).
    With ``valid`` (B, T) the statistics use valid positions only and the rest come out as zero."""
    if valid is None:
        return F.instance_norm(x.transpose(1, 2), eps=_EPS).transpose(1, 2)
    weights = valid.to(x.dtype)[:, :, None]  # (B, T, 1)
    count = weights.sum(dim=1, keepdim=True).clamp(min=1.0)  # (B, 1, 1)
    mean = (x * weights).sum(dim=1, keepdim=True) / count  # (B, 1, C)
    variance = ((x - mean).square() * weights).sum(dim=1, keepdim=True) / count
    return (x - mean) * torch.rsqrt(variance + _EPS) * weights


def _normalise(x: torch.Tensor, norm: str, valid: torch.Tensor | None) -> torch.Tensor:
    if norm == "instance":
        return _instance_norm(x, valid)
    if norm == "layer":
        x = F.layer_norm(x, x.shape[-1:], eps=_EPS)
    return x if valid is None else x * valid[:, :, None].to(x.dtype)


def average_top_k(
    layer_outputs: Sequence[torch.Tensor],
    top_k: int,
    *,
    layer_norm: str = "instance",
    post_norm: str = "none",
    padding_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Targets from the teacher's per-layer outputs -> float32 (B, T, C), detached.

    layer_outputs: one (B, T, C) tensor per layer, first layer first; the last ``top_k`` are used.
    layer_norm: normalisation of each of those layers before averaging; post_norm: of the average.
      "instance": over time (T) per sample and channel, eps 1e-5, no affine (F.instance_norm);
      "layer": over channels (C) per position, eps 1e-5, no affine (F.layer_norm); "none".
    padding_mask: optional (B, T) bool, True at padded positions. When given, instance-norm
      statistics use real positions only and padded positions of the result are zero. When None
      every position counts (data2vec 1.0 audio includes padded frames in its instance norm).
    """
    if isinstance(layer_outputs, torch.Tensor):
        layer_outputs = list(layer_outputs.unbind(0)) if layer_outputs.dim() == 4 else [layer_outputs]
    layer_outputs = list(layer_outputs)
    if not 1 <= top_k <= len(layer_outputs):
        raise ValueError(f"top_k must be between 1 and the number of layers ({len(layer_outputs)}), got {top_k}")
    for name, value in (("layer_norm", layer_norm), ("post_norm", post_norm)):
        if value not in NORMS:
            raise ValueError(f"{name} must be one of {NORMS}, got {value!r}")
    selected = layer_outputs[-top_k:]
    shape = tuple(selected[0].shape)
    if len(shape) != 3 or any(tuple(layer.shape) != shape for layer in selected):
        raise ValueError(
            f"layer outputs must all be (batch, time, channels) of one shape, got {[tuple(t.shape) for t in selected]}"
        )
    valid = None
    if padding_mask is not None:
        if tuple(padding_mask.shape) != shape[:2]:
            raise ValueError(f"padding_mask has shape {tuple(padding_mask.shape)}, expected {shape[:2]}")
        valid = ~padding_mask.to(device=selected[0].device, dtype=torch.bool)

    device = selected[0].device
    with torch.no_grad(), torch.autocast(device_type=device.type, enabled=False):
        total = torch.zeros(shape, dtype=torch.float32, device=device)
        for layer in selected:
            total += _normalise(layer.detach().float(), layer_norm, valid)
        average = total / top_k  # (B, T, C)
        return _normalise(average, post_norm, valid)
