"""The masked LM's training step skips work on the positions that its loss does not score: the
cross entropy runs on the scored rows only, and the vocabulary projection's backward multiplies
only the non-zero rows of its output gradient. Both must give the gradients of the dense formula."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

import data2vec
from data2vec.text.model import LMHead, _LinearSkippingZeroRows
from tests.helpers import add_noise

TINY = dict(
    vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
    max_position_embeddings=64, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
)  # fmt: skip


def output_gradient(rows: list[int], shape=(2, 8, 11), seed=0) -> torch.Tensor:
    """A random (batch, length, out) gradient, zero except at the given flat rows."""
    generator = torch.Generator().manual_seed(seed)
    grad = torch.zeros(shape, dtype=torch.float64)
    flat = grad.view(-1, shape[-1])
    flat[rows] = torch.randn(len(rows), shape[-1], generator=generator, dtype=torch.float64)
    return grad


@pytest.mark.parametrize("rows", [[3, 9, 10], list(range(16)), []], ids=["some rows", "every row", "no row"])
def test_the_projection_backward_equals_the_dense_formula(rows):
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(2, 8, 5, generator=generator, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(11, 5, generator=generator, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(11, generator=generator, dtype=torch.float64, requires_grad=True)
    grad = output_gradient(rows)
    out = _LinearSkippingZeroRows.apply(x, weight, bias)
    torch.testing.assert_close(out, x @ weight.t() + bias, atol=1e-12, rtol=0)
    grad_x, grad_weight, grad_bias = torch.autograd.grad(out, (x, weight, bias), grad)
    flat_grad, flat_x = grad.view(-1, 11), x.detach().view(-1, 5)
    torch.testing.assert_close(grad_x, (grad @ weight.detach()), atol=1e-12, rtol=0)
    torch.testing.assert_close(grad_weight, flat_grad.t() @ flat_x, atol=1e-12, rtol=0)
    torch.testing.assert_close(grad_bias, flat_grad.sum(0), atol=1e-12, rtol=0)
    if not rows:  # zeros, not None: an optimizer still decays the weights as after a dense step
        assert not grad_weight.any() and not grad_x.any()


def test_the_projection_without_bias_or_input_gradient():
    generator = torch.Generator().manual_seed(2)
    x = torch.randn(16, 5, generator=generator, dtype=torch.float64)  # no gradient wanted
    weight = torch.randn(11, 5, generator=generator, dtype=torch.float64, requires_grad=True)
    grad = output_gradient([0, 15]).view(16, 11)
    out = _LinearSkippingZeroRows.apply(x, weight, None)
    (grad_weight,) = torch.autograd.grad(out, (weight,), grad)
    torch.testing.assert_close(grad_weight, grad.t() @ x, atol=1e-12, rtol=0)


def test_the_projection_backward_costs_the_scored_fraction():
    """2 of 16 rows with a gradient: the two backward products cost 2/16 of the dense ones."""
    x = torch.randn(2, 8, 32, requires_grad=True)
    weight = torch.randn(64, 32, requires_grad=True)
    grad = output_gradient([1, 12], shape=(2, 8, 64)).float()

    def backward_flops(linear) -> int:
        out = linear(x, weight, None)
        with FlopCounterMode(display=False) as counter:
            out.backward(grad)
        return counter.get_total_flops()

    dense = backward_flops(F.linear)
    assert dense == 2 * (2 * 16 * 32 * 64)  # the input's and the weight's gradient
    assert backward_flops(_LinearSkippingZeroRows.apply) == dense * 2 // 16


def dense_formula(monkeypatch):
    """Our masked LM computing its loss by the dense formula: every row's logits through a plain
    linear layer, and the cross entropy over all rows with -100 ignored."""

    def forward(self, hidden_states):
        return F.linear(self.norm(F.gelu(self.dense(hidden_states))), self.decoder.weight, self.bias)

    def compute_loss(self, logits, labels):
        return F.cross_entropy(logits.view(-1, self.config.vocab_size), labels.view(-1), ignore_index=-100)

    monkeypatch.setattr(LMHead, "forward", forward)
    monkeypatch.setattr(data2vec.Data2VecTextForMaskedLM, "compute_loss", compute_loss)


def training_step(model, dtype=None, device="cpu"):
    generator = torch.Generator().manual_seed(3)
    input_ids = torch.randint(3, TINY["vocab_size"], (3, 12), generator=generator).to(device)
    mask = torch.ones_like(input_ids)
    mask[1, 9:] = 0
    labels = torch.full_like(input_ids, -100)
    for row, columns in {0: [1, 4], 1: [2], 2: [0, 5, 11]}.items():  # 6 of 36 positions scored
        labels[row, columns] = input_ids[row, columns]
    model.zero_grad()
    with torch.autocast(device, torch.bfloat16, enabled=dtype is not None):
        output = model(input_ids, mask, labels=labels)
    output.loss.backward()
    return output, {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


def masked_lm() -> data2vec.Data2VecTextForMaskedLM:
    torch.manual_seed(0)
    model = data2vec.Data2VecTextForMaskedLM(data2vec.Data2VecTextConfig(**TINY))
    return add_noise(model).train()


def test_masked_lm_step_gives_the_dense_formula_loss_logits_and_gradients(monkeypatch):
    model = masked_lm().double()
    output, grads = training_step(model)
    with monkeypatch.context() as patched:
        dense_formula(patched)
        expected, expected_grads = training_step(model)
    torch.testing.assert_close(output.loss, expected.loss, atol=1e-12, rtol=0)
    torch.testing.assert_close(output.logits, expected.logits, atol=1e-12, rtol=0)
    assert grads.keys() == expected_grads.keys()
    assert "lm_head.bias" in grads and "backbone.embeddings.word_embeddings.weight" in grads  # the tied projection
    for name, grad in grads.items():
        torch.testing.assert_close(grad, expected_grads[name], atol=1e-12, rtol=1e-10, msg=name)


DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"))]


@pytest.mark.parametrize("device", DEVICES)
def test_masked_lm_step_under_bfloat16_autocast(monkeypatch, device):
    """Gradients come back in the parameters' float32 and agree with the dense path under the same
    autocast to bfloat16's precision."""
    model = masked_lm().to(device)
    output, grads = training_step(model, torch.bfloat16, device)
    with monkeypatch.context() as patched:
        dense_formula(patched)
        expected, expected_grads = training_step(model, torch.bfloat16, device)
    assert output.logits.dtype == torch.bfloat16
    torch.testing.assert_close(output.loss, expected.loss, atol=1e-6, rtol=0)
    for name, grad in grads.items():
        assert grad.dtype == torch.float32, name
        scale = float(expected_grads[name].abs().max()) + 1e-12
        assert float((grad - expected_grads[name]).abs().max()) <= 2e-2 * scale, name


def test_masked_lm_training_step_compiles_as_one_graph():
    """Under torch.compile the step takes the dense path (no data-dependent row counts): one graph,
    the eager step's loss and gradients."""
    model = masked_lm()
    expected, expected_grads = training_step(model)
    torch._dynamo.reset()
    compiled = torch.compile(model, fullgraph=True, backend="eager")  # fullgraph: any break raises
    output, grads = training_step(compiled)
    torch._dynamo.reset()
    torch.testing.assert_close(output.loss, expected.loss, atol=1e-6, rtol=0)
    for name, grad in expected_grads.items():
        torch.testing.assert_close(grads["_orig_mod." + name], grad, atol=1e-6, rtol=1e-5, msg=name)
