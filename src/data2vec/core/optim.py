"""Optimizer parameter groups: which trained parameters get weight decay.

The usual rule for transformers: decay the weight matrices; leave biases, norm gains and other
1-D tensors alone, and the learned tokens (a CLS or mask embedding of shape (1, 1, hidden) is not
1-D but is no weight matrix either: ``TOKEN_PATTERNS``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from torch import nn

# learned tokens: parameter names ending in cls_token or mask_token
TOKEN_PATTERNS = (r"cls_token$", r"mask_token$")


def parameter_groups(
    model: nn.Module,
    weight_decay: float,
    *,
    no_decay_1d: bool = True,
    no_decay_patterns: Sequence[str] = TOKEN_PATTERNS,
) -> list[dict]:
    """AdamW parameter groups of ``model``'s trained parameters (``requires_grad``), in model order:
    ``{"params": [...], "weight_decay": weight_decay}`` and ``{"params": [...], "weight_decay": 0.0}``.

    No decay for parameters with at most one dimension (biases, norms; when ``no_decay_1d``) and for
    parameters whose name matches one of ``no_decay_patterns`` (``re.search``). Empty groups are left out.
    """
    try:
        patterns = [re.compile(pattern) for pattern in no_decay_patterns]
    except re.error as error:
        raise ValueError(f"invalid regular expression in no_decay_patterns {list(no_decay_patterns)}: {error}") from None
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        exempt = (no_decay_1d and parameter.ndim <= 1) or any(pattern.search(name) for pattern in patterns)
        (no_decay if exempt else decay).append(parameter)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [group for group in groups if group["params"]]
