"""The student's side of the objective: a regression head, the regression loss on masked
positions, and the spread of predictions and targets that the collapse watch follows.

data2vec 1.0 settings: audio L2 (beta 0), summed over channels, scale 1/sqrt(C), Linear head;
vision smooth L1 beta 2, mean over all elements (scale 1/C, reduction "mean"), Linear head;
text smooth L1 beta 4, summed over channels, scale 1, 2-layer head (C -> 2C -> GELU -> C).
fairseq divides the summed loss by the number of masked positions (reduction "sum", then / N).
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


class RegressionHead(nn.Module):
    """Maps student states (..., hidden) to target space (..., target_dim).

    num_layers=1: one Linear. num_layers=n>1: Linear(hidden, 2*hidden) -> GELU, then n-2 more
    Linear(2*hidden, 2*hidden) -> GELU, then Linear(2*hidden, target_dim).
    init_std: when given, weights ~ N(0, init_std) and zero biases (BERT init); else PyTorch's default.
    """

    def __init__(self, hidden: int, target_dim: int, num_layers: int = 1, *, init_std: float | None = None) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be at least 1, got {num_layers}")
        layers: list[nn.Module] = []
        width = hidden
        for _ in range(num_layers - 1):
            layers += [nn.Linear(width, 2 * hidden), nn.GELU()]
            width = 2 * hidden
        layers.append(nn.Linear(width, target_dim))
        self.layers = nn.Sequential(*layers)
        if init_std is not None:
            for module in self.layers:
                if isinstance(module, nn.Linear):
                    nn.init.normal_(module.weight, std=init_std)
                    nn.init.zeros_(module.bias)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.layers(hidden_states)


def regression_loss(
    prediction: torch.Tensor,
    target: torch.Tensor,
    *,
    beta: float = 0.0,
    scale: float | None = None,
    reduction: str = "sum",
) -> torch.Tensor:
    """Loss between predictions and targets at the masked positions, both (N, C).

    Per element: beta == 0 -> squared error d^2; beta > 0 -> smooth L1
    (0.5 d^2 / beta where |d| < beta, else |d| - 0.5 beta). Summed over C, multiplied by ``scale``
    (None -> 1/sqrt(C)), then reduced over N: "sum" (caller divides by N, as fairseq does),
    "mean", or "none" (per-position values, (N,)). Computed in float32; the target is treated as
    a constant (no gradient flows into it).
    """
    if prediction.shape != target.shape or prediction.dim() != 2:
        raise ValueError(
            f"prediction and target must both be (positions, channels), got {tuple(prediction.shape)} "
            f"and {tuple(target.shape)}: select the masked positions first (states[mask])"
        )
    if beta < 0:
        raise ValueError(f"beta must be >= 0, got {beta}")
    if reduction not in ("sum", "mean", "none"):
        raise ValueError(f"reduction must be 'sum', 'mean' or 'none', got {reduction!r}")
    prediction = prediction.float()
    target = target.detach().float()
    if beta == 0:
        elementwise = F.mse_loss(prediction, target, reduction="none")
    else:
        elementwise = F.smooth_l1_loss(prediction, target, reduction="none", beta=beta)
    channels = prediction.shape[-1]
    per_position = elementwise.sum(dim=-1) * (1.0 / math.sqrt(channels) if scale is None else scale)  # (N,)
    if reduction == "sum":
        return per_position.sum()
    if reduction == "mean":
        return per_position.mean()
    return per_position


def spread_sums(values: torch.Tensor) -> torch.Tensor:
    """(N, C) values -> float64 (1 + 2C,): N, the per-channel sums and the per-channel sums of
    squares. Sums of several batches (or ranks) add up; ``spread_from_sums`` turns them into the
    spread of all their positions together."""
    with torch.no_grad():
        values = values.detach().double().reshape(-1, values.shape[-1])  # (N, C)
        count = torch.full((1,), values.shape[0], dtype=torch.float64, device=values.device)
        return torch.cat([count, values.sum(dim=0), values.square().sum(dim=0)])


def spread_from_sums(sums: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """The spread (as ``target_std``: mean over channels of sqrt(unbiased variance + eps)) of the
    positions whose ``spread_sums`` (added up) are ``sums``."""
    channels = (sums.shape[0] - 1) // 2
    count, total, total_squares = sums[0], sums[1 : 1 + channels], sums[1 + channels :]
    if count < 2:
        raise ValueError(f"the spread of predictions/targets needs at least 2 masked positions, got {int(count)}")
    variance = (total_squares - total.square() / count) / (count - 1)
    return torch.sqrt(variance.clamp(min=0) + eps).mean().float()


def _spread(values: torch.Tensor, all_reduce: bool) -> torch.Tensor:
    """``spread_from_sums`` of ``values`` (any leading dims are flattened into positions); with
    ``all_reduce`` and an initialised process group, of the positions of every rank."""
    sums = spread_sums(values)
    if all_reduce and dist.is_available() and dist.is_initialized():
        dist.all_reduce(sums)
    return spread_from_sums(sums)


def target_std(target: torch.Tensor, *, all_reduce: bool = False) -> torch.Tensor:
    """Spread of the targets at the masked positions (N, C): per-channel standard deviation over
    positions (unbiased, + 1e-6 inside the root), averaged over channels. fairseq aborts when this
    falls below 0.1 after 5k updates (collapse)."""
    return _spread(target, all_reduce)


def prediction_std(prediction: torch.Tensor, *, all_reduce: bool = False) -> torch.Tensor:
    """Spread of the student's predictions at the masked positions (N, C), as ``target_std``.
    fairseq aborts when this falls below 0.01 after 5k updates."""
    return _spread(prediction, all_reduce)


def position_spread(states: torch.Tensor) -> torch.Tensor:
    """How much (batch, positions, channels) states vary along the positions of each sample: each
    position is layer-normalised over its channels (no affine, eps 1e-5), then the population
    standard deviation along the positions is averaged over samples and channels (float64 scalar).

    About 1 when the positions of a sample point in unrelated directions; near 0 when each sample's
    positions carry (nearly) one vector, whatever its scale: the collapse along time of fairseq#5239
    (data2vec 2.0 speech), which ``target_std`` does not show once the targets are
    instance-normalised over time."""
    with torch.no_grad():
        values = F.layer_norm(states.detach().double(), states.shape[-1:], eps=1e-5)
        return values.std(dim=1, unbiased=False).mean()
