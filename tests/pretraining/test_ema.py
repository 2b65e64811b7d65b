"""EMA teacher: anneal schedule, update rule (closed form), averaged vs copied parameters,
fp32 / eval / no-grad invariants."""

import pytest
import torch
from torch import nn

from data2vec.pretraining.ema import EMATeacher, ema_decay


class TinyEncoder(nn.Module):
    """embedding -> dropout -> linear -> layer norm -> batch norm (a buffer-carrying module)."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(11, 6)
        self.dropout = nn.Dropout(0.5)
        self.proj = nn.Linear(6, 6)
        self.norm = nn.LayerNorm(6)
        self.batch_norm = nn.BatchNorm1d(6)
        self.frozen_scale = nn.Parameter(torch.ones(6), requires_grad=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.norm(self.proj(self.dropout(self.embed(ids))))  # (B, T, 6)
        return self.batch_norm(x.transpose(1, 2)).transpose(1, 2) * self.frozen_scale


def _noisy(module: nn.Module, seed: int) -> nn.Module:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator))
    return module


# ---------------------------------------------------------------------------- schedule
def test_ema_decay_linear_anneal_then_constant():
    start, end, steps = 0.999, 0.9999, 1000
    assert ema_decay(0, start, end, steps) == pytest.approx(0.999, abs=1e-12)
    assert ema_decay(250, start, end, steps) == pytest.approx(0.999 + 0.25 * 0.0009, abs=1e-12)
    assert ema_decay(500, start, end, steps) == pytest.approx((0.999 + 0.9999) / 2, abs=1e-12)
    assert ema_decay(1000, start, end, steps) == pytest.approx(0.9999, abs=1e-12)
    assert ema_decay(10**6, start, end, steps) == pytest.approx(0.9999, abs=1e-12)
    # data2vec 1.0 image: constant decay (no anneal)
    assert ema_decay(0, 0.999, 0.9998, 0) == pytest.approx(0.9998, abs=1e-12)
    values = [ema_decay(step, start, end, steps) for step in range(0, 1001, 50)]
    assert all(b > a for a, b in zip(values, values[1:]))


def test_ema_decay_rejects_bad_values():
    with pytest.raises(ValueError, match="step"):
        ema_decay(-1, 0.999, 0.9999, 10)
    with pytest.raises(ValueError, match="start"):
        ema_decay(0, 1.5, 0.9999, 10)


# ---------------------------------------------------------------------------- construction
def test_teacher_is_fp32_copy_in_eval_mode_without_grad():
    student = _noisy(TinyEncoder(), 0).to(torch.bfloat16)
    teacher = EMATeacher(student)
    for (name, s), (t_name, t) in zip(student.named_parameters(), teacher.model.named_parameters()):
        assert name == t_name
        assert t.dtype == torch.float32
        assert not t.requires_grad
        assert torch.equal(t, s.float()), name  # exact copy (bf16 -> fp32 is exact)
    assert teacher.model is not student and all(
        t.data_ptr() != s.data_ptr() for t, s in zip(teacher.model.parameters(), student.parameters())
    )
    teacher.train()
    assert teacher.training  # the wrapper follows the flag ...
    assert not any(module.training for module in teacher.model.modules())  # ... the model stays in eval
    student.float().train()
    ids = torch.randint(0, 11, (4, 7), generator=torch.Generator().manual_seed(1))
    first, second = teacher(ids), teacher(ids)
    assert torch.equal(first, second)  # no dropout, batch norm uses running stats
    assert not first.requires_grad


def test_averaged_and_copied_names():
    student = TinyEncoder()
    teacher = EMATeacher(student, copy_patterns=[r"embed\.", r"norm\.bias$"])
    expected_copied = sorted(["embed.weight", "norm.bias", "frozen_scale"])  # frozen -> copied
    expected_averaged = sorted(
        ["proj.weight", "proj.bias", "norm.weight", "batch_norm.weight", "batch_norm.bias"]
    )
    assert teacher.copied_names == expected_copied
    assert teacher.averaged_names == expected_averaged
    with pytest.raises(ValueError, match="match no parameter"):
        EMATeacher(student, copy_patterns=[r"encoder\.layers"])


# ---------------------------------------------------------------------------- update rule
def test_update_matches_closed_form_for_constant_decay():
    student = _noisy(TinyEncoder(), 0)
    teacher = EMATeacher(student, copy_patterns=[r"embed\."])
    initial = {name: p.detach().clone() for name, p in teacher.model.named_parameters()}
    _noisy(student, 1)  # the student moves away once, then stays fixed
    with torch.no_grad():
        student.batch_norm.running_mean.add_(3.0)
    decay, updates = 0.9, 7
    for _ in range(updates):
        teacher.update(student, decay)
    student_now = dict(student.named_parameters())
    for name, parameter in teacher.model.named_parameters():
        if name in teacher.averaged_names:
            # t_n = d^n t_0 + (1 - d^n) s
            expected = decay**updates * initial[name] + (1 - decay**updates) * student_now[name]
            torch.testing.assert_close(parameter, expected, atol=1e-6, rtol=1e-6)
            assert not torch.allclose(parameter, student_now[name], atol=1e-3), name
        else:
            assert torch.equal(parameter, student_now[name]), name  # copied exactly
    assert torch.equal(teacher.model.batch_norm.running_mean, student.batch_norm.running_mean)


def test_update_with_annealed_decay_matches_scalar_recursion():
    student = _noisy(nn.Linear(3, 2), 0)
    teacher = EMATeacher(student)
    reference = teacher.model.weight.detach().double().clone()
    generator = torch.Generator().manual_seed(5)
    for step in range(20):
        with torch.no_grad():
            student.weight.add_(torch.randn(student.weight.shape, generator=generator))
        tau = ema_decay(step, 0.5, 0.9, 10)
        teacher.update(student, tau)
        reference = tau * reference + (1 - tau) * student.weight.detach().double()
    torch.testing.assert_close(teacher.model.weight.double(), reference, atol=1e-5, rtol=1e-5)


def test_decay_one_freezes_and_decay_zero_copies():
    student = _noisy(nn.Linear(4, 4), 0)
    teacher = EMATeacher(student)
    before = teacher.model.weight.detach().clone()
    _noisy(student, 1)
    teacher.update(student, 1.0)
    assert torch.equal(teacher.model.weight, before)
    teacher.update(student, 0.0)
    assert torch.equal(teacher.model.weight, student.weight)
    with pytest.raises(ValueError, match="decay"):
        teacher.update(student, 1.5)


def test_update_keeps_fp32_master_for_bf16_student():
    student = nn.Linear(4, 4).to(torch.bfloat16)
    with torch.no_grad():
        student.weight.fill_(1.0)
    teacher = EMATeacher(student)
    with torch.no_grad():
        student.weight.fill_(2.0)
    teacher.update(student, 0.9999)
    # 1 * 0.9999 + 2 * 0.0001 = 1.0001: representable in fp32, not in bf16 (spacing 2**-7)
    assert teacher.model.weight.dtype == torch.float32
    torch.testing.assert_close(teacher.model.weight, torch.full((4, 4), 1.0001), atol=1e-6, rtol=0)


def test_update_rejects_other_module():
    teacher = EMATeacher(nn.Linear(4, 4))
    with pytest.raises(ValueError, match="differ"):
        teacher.update(nn.Sequential(nn.Linear(4, 4)), 0.9)


def test_no_gradient_reaches_teacher():
    student = _noisy(TinyEncoder(), 0)
    teacher = EMATeacher(student)
    ids = torch.randint(0, 11, (4, 7), generator=torch.Generator().manual_seed(2))
    student.train()
    target = teacher(ids)
    loss = (student(ids) - target).square().mean()
    loss.backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert student.proj.weight.grad is not None and student.proj.weight.grad.abs().sum() > 0


def test_state_dict_round_trip():
    student = _noisy(TinyEncoder(), 0)
    teacher = EMATeacher(student)
    _noisy(student, 1)
    teacher.update(student, 0.5)
    restored = EMATeacher(TinyEncoder())
    restored.load_state_dict(teacher.state_dict())
    for (name, a), (_, b) in zip(teacher.state_dict().items(), restored.state_dict().items()):
        assert torch.equal(a, b), name


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_update_on_cuda_matches_cpu():
    student = _noisy(TinyEncoder(), 0)
    cpu_teacher, cuda_teacher = EMATeacher(student), EMATeacher(student).cuda()
    _noisy(student, 1)
    cpu_teacher.update(student, 0.9)
    cuda_teacher.update(student.cuda(), 0.9)
    for (name, a), (_, b) in zip(cpu_teacher.state_dict().items(), cuda_teacher.state_dict().items()):
        torch.testing.assert_close(b.cpu(), a, atol=1e-6, rtol=1e-6)
