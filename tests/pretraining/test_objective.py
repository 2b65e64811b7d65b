"""Regression head, loss formulas, loss only on masked positions, no gradient into the teacher,
and the prediction / target spread used by the collapse watch."""

import math

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from data2vec.pretraining.ema import EMATeacher
from data2vec.pretraining.objective import RegressionHead, position_spread, prediction_std, regression_loss, target_std
from data2vec.pretraining.targets import average_top_k


def _pair(positions=7, channels=8, seed=0):
    generator = torch.Generator().manual_seed(seed)
    prediction = torch.randn(positions, channels, generator=generator) * 3
    target = torch.randn(positions, channels, generator=generator) * 3
    return prediction, target


# ---------------------------------------------------------------------------- loss formulas
def test_l2_loss_summed_over_channels_and_scaled_by_inverse_sqrt_dim():
    prediction, target = _pair()
    per_position = [
        sum((prediction[n, c] - target[n, c]).item() ** 2 for c in range(8)) / math.sqrt(8) for n in range(7)
    ]
    assert regression_loss(prediction, target).item() == pytest.approx(sum(per_position), rel=1e-5)
    mean = regression_loss(prediction, target, reduction="mean")
    assert mean.item() == pytest.approx(sum(per_position) / 7, rel=1e-5)
    torch.testing.assert_close(regression_loss(prediction, target, reduction="none"), torch.tensor(per_position))
    scaled = sum(per_position) * math.sqrt(8)  # scale 1: plain sum of squares
    assert regression_loss(prediction, target, scale=1.0).item() == pytest.approx(scaled, rel=1e-5)


@pytest.mark.parametrize("beta", [0.5, 2.0, 4.0])
def test_smooth_l1_formula(beta):
    prediction, target = _pair()
    difference = (prediction - target).abs()
    assert (difference < beta).any() and (difference >= beta).any()  # both branches used
    elementwise = torch.where(difference < beta, 0.5 * difference**2 / beta, difference - 0.5 * beta)
    expected = elementwise.sum()  # text 1.0: summed over channels, scale 1
    assert regression_loss(prediction, target, beta=beta, scale=1.0).item() == pytest.approx(expected.item(), rel=1e-5)
    # image 1.0: mean over all elements == scale 1/C with a mean over positions
    image = regression_loss(prediction, target, beta=beta, scale=1 / 8, reduction="mean")
    assert image.item() == pytest.approx(elementwise.mean().item(), rel=1e-5)


def test_loss_in_float32_and_validated():
    prediction, target = _pair()
    loss = regression_loss(prediction.to(torch.bfloat16), target)
    assert loss.dtype == torch.float32
    expected = ((prediction.to(torch.bfloat16).float() - target) ** 2).sum() / math.sqrt(8)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    with pytest.raises(ValueError, match="states\\[mask\\]"):
        regression_loss(prediction[None], target[None])
    with pytest.raises(ValueError, match="reduction"):
        regression_loss(prediction, target, reduction="max")
    with pytest.raises(ValueError, match="beta"):
        regression_loss(prediction, target, beta=-1.0)


# ---------------------------------------------------------------------------- head
def test_regression_head_layouts():
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(2, 5, 6, generator=generator)
    linear = RegressionHead(6, 4)
    assert [type(m) for m in linear.layers] == [nn.Linear]
    torch.testing.assert_close(linear(x), x @ linear.layers[0].weight.T + linear.layers[0].bias)
    mlp = RegressionHead(6, 6, num_layers=2)
    first, _, second = mlp.layers
    assert (first.in_features, first.out_features, second.in_features, second.out_features) == (6, 12, 12, 6)
    hidden = F.gelu(x @ first.weight.T + first.bias)  # exact (erf) GELU
    torch.testing.assert_close(mlp(x), hidden @ second.weight.T + second.bias)
    bert = RegressionHead(64, 64, num_layers=2, init_std=0.02)
    assert all(torch.equal(m.bias, torch.zeros_like(m.bias)) for m in bert.layers if isinstance(m, nn.Linear))
    assert abs(bert.layers[0].weight.std().item() - 0.02) < 0.002
    with pytest.raises(ValueError, match="num_layers"):
        RegressionHead(4, 4, num_layers=0)


# ---------------------------------------------------------------------------- masked positions, gradients
class LayeredEncoder(nn.Module):
    """Returns its per-layer outputs (tuple of (B, T, C)) like a backbone's feed-forward states."""

    def __init__(self, channels=6, depth=4):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(channels, channels) for _ in range(depth))

    def forward(self, x):
        outputs = []
        for layer in self.layers:
            x = torch.tanh(layer(x))
            outputs.append(x)
        return tuple(outputs)


def test_loss_only_on_masked_positions_and_teacher_gets_no_gradient():
    generator = torch.Generator().manual_seed(2)
    student, head = LayeredEncoder(), RegressionHead(6, 6)
    teacher = EMATeacher(student)
    inputs = torch.randn(2, 10, 6, generator=generator)
    mask = torch.zeros(2, 10, dtype=torch.bool)
    mask[0, 2:5] = mask[1, 6:9] = True

    targets = average_top_k(teacher(inputs), 2, layer_norm="layer")  # (B, T, C)
    student_states = student(inputs.masked_fill(mask[..., None], 0.0))[-1].detach().requires_grad_(True)
    loss = regression_loss(head(student_states)[mask], targets[mask], scale=1.0) / mask.sum()
    loss.backward()

    # gradient reaches masked positions only
    assert student_states.grad[mask].abs().sum() > 0
    assert torch.equal(student_states.grad[~mask], torch.zeros(int((~mask).sum()), 6))
    # changing predictions or targets at unmasked positions leaves the loss unchanged
    perturbed_states = student_states.detach().masked_fill(~mask[..., None], 50.0)
    perturbed_targets = targets.masked_fill(~mask[..., None], -50.0)
    again = regression_loss(head(perturbed_states)[mask], perturbed_targets[mask], scale=1.0) / mask.sum()
    assert again.item() == pytest.approx(loss.item(), rel=1e-6)
    # by hand: mean over masked positions of the summed squared error
    manual = sum(
        ((head(student_states[b, t]) - targets[b, t]) ** 2).sum() for b, t in mask.nonzero().tolist()
    ) / mask.sum()
    assert loss.item() == pytest.approx(manual.item(), rel=1e-5)
    assert all(p.grad is None for p in teacher.parameters())
    assert not targets.requires_grad


def test_targets_from_a_trainable_model_are_constants():
    model = LayeredEncoder()
    inputs = torch.randn(2, 5, 6, generator=torch.Generator().manual_seed(3))
    targets = average_top_k(model(inputs), 3)  # not through EMATeacher: still detached
    prediction = torch.randn(2, 5, 6, generator=torch.Generator().manual_seed(4), requires_grad=True)
    regression_loss(prediction.reshape(-1, 6), targets.reshape(-1, 6)).backward()
    assert all(p.grad is None for p in model.parameters())
    trainable_target = torch.randn(4, 6, requires_grad=True)
    regression_loss(prediction.reshape(-1, 6)[:4], trainable_target).backward()
    assert trainable_target.grad is None  # the loss treats its target as a constant


# ---------------------------------------------------------------------------- collapse watch quantities
def test_std_helpers_match_fairseq_formula():
    values, _ = _pair(positions=9, channels=5, seed=5)
    per_channel = []
    for c in range(5):
        column = [values[n, c].item() for n in range(9)]
        mean = sum(column) / 9
        per_channel.append(math.sqrt(sum((v - mean) ** 2 for v in column) / 8 + 1e-6))
    expected = sum(per_channel) / 5
    assert target_std(values).item() == pytest.approx(expected, rel=1e-5)
    assert prediction_std(values).item() == pytest.approx(expected, rel=1e-5)
    assert prediction_std(values[None]).item() == pytest.approx(expected, rel=1e-5)  # leading dims flattened
    collapsed = torch.ones(9, 5) * 3.0
    assert target_std(collapsed).item() == pytest.approx(math.sqrt(1e-6), rel=1e-4)
    with pytest.raises(ValueError, match="at least 2"):
        target_std(values[:1])


def test_std_helpers_all_reduce_in_single_process_group(tmp_path):
    values, _ = _pair(positions=9, channels=5, seed=6)
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        pooled = target_std(values, all_reduce=True)
    finally:
        dist.destroy_process_group()
    assert pooled.item() == pytest.approx(target_std(values).item(), rel=1e-5)


def test_position_spread_sees_a_collapse_along_positions():
    generator = torch.Generator().manual_seed(0)
    samples = torch.randn(64, 1, 16, generator=generator) * 3.0
    # every position of a sample carries one vector: nothing varies along the positions
    assert float(position_spread(samples.expand(-1, 50, -1))) == 0.0
    # one direction per sample at different scales is still one vector per sample (layer-normalised first)
    scales = torch.linspace(0.5, 20.0, 50)[None, :, None]
    assert float(position_spread(samples * scales)) == pytest.approx(0.0, abs=1e-3)
    # independent positions: each layer-normalised value has variance about 1, the population std
    # along 50 positions about sqrt(49/50)
    independent = torch.randn(64, 50, 16, generator=generator) * 3.0 + 5.0
    assert float(position_spread(independent)) == pytest.approx(math.sqrt(49 / 50), abs=0.05)
    assert float(position_spread(10 * independent)) == pytest.approx(float(position_spread(independent)), rel=1e-6)
    # by hand: two positions of two channels, [1, -1] and [-1, 1], layer-normalise to themselves (up to eps)
    # and each channel's population std along the positions is 1
    flipped = torch.tensor([[[1.0, -1.0], [-1.0, 1.0]]])
    assert float(position_spread(flipped)) == pytest.approx(1 / math.sqrt(1 + 1e-5))
    assert float(position_spread(torch.tensor([[[1.0, -1.0], [1.0, -1.0]]]))) == 0.0
