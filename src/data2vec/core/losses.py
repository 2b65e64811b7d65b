"""Task losses shared by the families (same formulas as the reference's heads)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def infer_problem_type(num_labels: int, labels: torch.Tensor) -> str:
    if num_labels == 1:
        return "regression"
    if labels.dtype in (torch.long, torch.int):
        return "single_label_classification"
    return "multi_label_classification"


def sequence_classification_loss(logits: torch.Tensor, labels: torch.Tensor, problem_type: str | None) -> torch.Tensor:
    """logits: (batch, num_labels). Regression: mean squared error; single label: cross entropy
    over class ids; multi label: binary cross entropy with logits over 0/1 targets."""
    num_labels = logits.shape[-1]
    labels = labels.to(logits.device)
    problem_type = problem_type or infer_problem_type(num_labels, labels)
    if problem_type == "regression":
        if num_labels == 1:
            return F.mse_loss(logits.squeeze(), labels.squeeze().to(logits.dtype))
        return F.mse_loss(logits, labels.to(logits.dtype))
    if problem_type == "single_label_classification":
        return F.cross_entropy(logits.view(-1, num_labels), labels.view(-1))
    if problem_type == "multi_label_classification":
        return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
    raise ValueError(f"unknown problem_type {problem_type!r}")


def question_answering_loss(
    start_logits: torch.Tensor, end_logits: torch.Tensor, start_positions: torch.Tensor, end_positions: torch.Tensor
) -> torch.Tensor:
    """Mean of the start and end cross entropies; positions outside the sequence are ignored."""
    length = start_logits.shape[1]
    start = start_positions.reshape(-1).to(start_logits.device).clamp(0, length)
    end = end_positions.reshape(-1).to(end_logits.device).clamp(0, length)
    start_loss = F.cross_entropy(start_logits, start, ignore_index=length)
    end_loss = F.cross_entropy(end_logits, end, ignore_index=length)
    return (start_loss + end_loss) / 2
