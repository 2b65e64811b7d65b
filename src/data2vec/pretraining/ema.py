"""The data2vec teacher: an exponential moving average (EMA) of the student.

After every optimizer step the teacher's weights move towards the student's:

    teacher <- decay * teacher + (1 - decay) * student

with ``decay`` (the paper's tau) rising linearly from ``start`` to ``end`` over the first
``anneal_steps`` updates and then held at ``end`` (``ema_decay``). Every parameter is averaged,
LayerNorm gains and biases included, except parameters matched by ``copy_patterns`` and parameters
the student does not train (``requires_grad=False``): those are copied from the student each step,
as are all buffers. The running average is kept in float32 whatever the student's dtype.

The teacher always runs in eval mode (no dropout, no layer drop) and without autograd; it sees the
unmasked input.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence

import torch
from torch import nn


def ema_decay(step: int, start: float, end: float, anneal_steps: int) -> float:
    """EMA decay after ``step`` updates: ``start`` at step 0, linear to ``end`` at ``anneal_steps``,
    ``end`` from then on (and always ``end`` when ``anneal_steps <= 0``)."""
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    for name, value in (("start", start), ("end", end)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"EMA decay {name} must be in [0, 1], got {value}")
    if anneal_steps <= 0 or step >= anneal_steps:
        return float(end)
    return float(start + (end - start) * step / anneal_steps)


def _unwrap(module: nn.Module) -> nn.Module:
    """The plain module inside DistributedDataParallel / torch.compile wrappers."""
    while True:
        if isinstance(module, nn.parallel.DistributedDataParallel):
            module = module.module
        elif hasattr(module, "_orig_mod") and isinstance(module._orig_mod, nn.Module):
            module = module._orig_mod
        else:
            return module


class EMATeacher(nn.Module):
    """EMA copy of ``student``: float32, eval mode, no gradients.

    ``copy_patterns``: regular expressions, matched with ``re.match`` against parameter names
    (e.g. ``r"embeddings\\."``), of parameters that are copied from the student at every update
    instead of averaged. Parameters with ``requires_grad=False`` in the student (at construction)
    are copied too. ``averaged_names`` / ``copied_names`` list which is which (sorted).
    """

    def __init__(self, student: nn.Module, *, copy_patterns: Sequence[str] = ()) -> None:
        super().__init__()
        student = _unwrap(student)
        if isinstance(copy_patterns, str):
            copy_patterns = (copy_patterns,)
        try:
            compiled = [re.compile(pattern) for pattern in copy_patterns]
        except re.error as error:
            raise ValueError(f"invalid regular expression in copy_patterns {list(copy_patterns)}: {error}") from None

        self.model = copy.deepcopy(student).float()
        self.model.eval()
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)
            parameter.grad = None

        averaged, copied = [], []
        for name, parameter in student.named_parameters():
            if not parameter.requires_grad or any(pattern.match(name) for pattern in compiled):
                copied.append(name)
            else:
                averaged.append(name)
        unused = [p.pattern for p in compiled if not any(p.match(name) for name in copied)]
        if unused:
            raise ValueError(
                f"copy_patterns {unused} match no parameter of the student: check the names "
                f"(e.g. {[name for name, _ in student.named_parameters()][:3]})"
            )
        self.averaged_names: list[str] = sorted(averaged)
        self.copied_names: list[str] = sorted(copied)

    def train(self, mode: bool = True) -> EMATeacher:
        """The wrapper's flag follows ``mode``; the teacher model itself stays in eval mode."""
        super().train(mode)
        self.model.eval()
        return self

    @torch.no_grad()
    def update(self, student: nn.Module, decay: float) -> None:
        """One EMA step towards ``student`` (call after the optimizer step)."""
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"EMA decay must be in [0, 1], got {decay}")
        student = _unwrap(student)
        student_parameters = dict(student.named_parameters())
        teacher_parameters = dict(self.model.named_parameters())
        if student_parameters.keys() != teacher_parameters.keys():
            missing = sorted(teacher_parameters.keys() - student_parameters.keys())[:5]
            extra = sorted(student_parameters.keys() - teacher_parameters.keys())[:5]
            raise ValueError(
                "the student's parameters differ from the teacher's: pass the same module the "
                f"teacher was built from (missing in student: {missing}, unknown to teacher: {extra})"
            )

        teacher_averaged = [teacher_parameters[name] for name in self.averaged_names]
        student_averaged = [
            student_parameters[name].detach().to(device=t.device, dtype=torch.float32)
            for name, t in zip(self.averaged_names, teacher_averaged)
        ]
        if teacher_averaged:
            # t = decay * t + (1 - decay) * s, in float32
            torch._foreach_mul_(teacher_averaged, decay)
            torch._foreach_add_(teacher_averaged, student_averaged, alpha=1.0 - decay)
        for name in self.copied_names:
            teacher_parameters[name].copy_(student_parameters[name].detach())

        teacher_buffers = dict(self.model.named_buffers())
        for name, buffer in student.named_buffers():
            if name in teacher_buffers:
                teacher_buffers[name].copy_(buffer)

    def forward(self, *args, **kwargs):
        """Run the teacher model (eval mode, no autograd)."""
        return self._run(self.model, *args, **kwargs)

    def forward_intermediates(self, *args, **kwargs):
        """The teacher model's ``forward_intermediates`` (its chosen layers' outputs; eval mode, no autograd)."""
        return self._run(self.model.forward_intermediates, *args, **kwargs)

    def _run(self, function, *args, **kwargs):
        self.model.eval()
        with torch.no_grad():
            return function(*args, **kwargs)
