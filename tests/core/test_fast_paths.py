"""The fast paths of the blocks, each against the formula it replaces:

- stochastic depth computes a branch only for the samples it keeps (``DropPath.kept_samples``),
  instead of computing every sample and multiplying the dropped ones by zero;
- attention with a trained additive bias on the CPU is written out instead of going through
  SDPA's math fallback;
- the relative position bias is gathered contiguous in (heads, tokens, tokens);
- without autograd, the feed-forward activation overwrites fc1's output.

Float64 throughout, so that the comparisons are exact up to summation order.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

import data2vec
from data2vec.core.attention import Attention
from data2vec.core.layers import ACTIVATIONS, IN_PLACE_ACTIVATIONS, MLP, DropPath, PreNormBlock
from data2vec.vision.embeddings import RelativePositionBias, relative_position_index
from tests.helpers import add_noise

HIDDEN, HEADS, FFN, LENGTH = 16, 4, 24, 7


def noisy_block(rate: float = 0.5) -> PreNormBlock:
    torch.manual_seed(0)
    block = PreNormBlock(HIDDEN, HEADS, FFN, layer_scale_init_value=0.1, drop_path_rate=rate, qkv_bias="query_value")
    return add_noise(block).double().train()


def formula(block: PreNormBlock, x: torch.Tensor, bias: torch.Tensor, keep_attention: list, keep_mlp: list):
    """x + m_a * scale_a * attention(norm(x)) / (1 - rate), then the same for the feed-forward
    branch with its own mask: every sample computed, the dropped ones multiplied by zero."""
    keep = 1.0 - block.drop_path.rate
    batch = x.shape[0]
    mask_a = torch.zeros(batch, 1, 1, dtype=x.dtype)
    mask_a[keep_attention] = 1.0
    mask_m = torch.zeros(batch, 1, 1, dtype=x.dtype)
    mask_m[keep_mlp] = 1.0
    attended = block.attention(block.attention_norm(x), bias)[0]
    x = x + mask_a * (block.attention_scale * attended) / keep
    feed_forward = block.mlp(block.mlp_norm(x))
    return x + mask_m * (block.mlp_scale * feed_forward) / keep, feed_forward * mask_m


def with_kept(monkeypatch, draws: list[list[int]]) -> None:
    """Make DropPath.kept_samples return the given index lists, one per call, in order."""
    queue = list(draws)
    monkeypatch.setattr(DropPath, "kept_samples", lambda self, batch, device="cpu": torch.tensor(queue.pop(0), dtype=torch.long))


@pytest.mark.parametrize(
    "keep_attention, keep_mlp",
    [([0, 2, 3], [1, 2, 5]), ([0, 1, 2, 3, 4, 5], [4]), ([], [0, 5]), ([1], [])],
)
def test_drop_path_skipping_equals_the_mask_formula(monkeypatch, keep_attention, keep_mlp):
    """Outputs, the feed-forward output (zeros where dropped) and every gradient equal the
    mask formula; the bias has a batch axis here, so its kept rows are taken too."""
    block = noisy_block()
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(6, LENGTH, HIDDEN, dtype=torch.float64, generator=generator, requires_grad=True)
    bias = torch.randn(6, HEADS, LENGTH, LENGTH, dtype=torch.float64, generator=generator, requires_grad=True)
    upstream = torch.randn(6, LENGTH, HIDDEN, dtype=torch.float64, generator=generator)

    expected, expected_ff = formula(block, x, bias, keep_attention, keep_mlp)
    expected_grads = torch.autograd.grad((expected * upstream).sum(), [x, bias, *block.parameters()])

    with_kept(monkeypatch, [keep_attention, keep_mlp])
    result = block(x, bias)
    grads = torch.autograd.grad((result.hidden_states * upstream).sum(), [x, bias, *block.parameters()])

    torch.testing.assert_close(result.hidden_states, expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(result.feed_forward_output, expected_ff, rtol=0, atol=1e-12)
    names = ["input", "bias"] + [name for name, _ in block.named_parameters()]
    for name, got, want in zip(names, grads, expected_grads):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-12, msg=f"gradient of {name}")


def test_a_fully_dropped_branch_leaves_the_stream_and_gives_zero_gradients(monkeypatch):
    """Dropped everywhere: the output is the input bit for bit, and the branch's parameters get
    zero gradients (not None), so AdamW still decays them as it does under the mask formula."""
    block = noisy_block()
    x = torch.randn(3, LENGTH, HIDDEN, dtype=torch.float64, requires_grad=True)
    with_kept(monkeypatch, [[], []])
    out = block(x).hidden_states
    assert torch.equal(out, x)
    out.sum().backward()
    for name, parameter in block.named_parameters():
        assert parameter.grad is not None, name
        assert torch.count_nonzero(parameter.grad) == 0, name


def test_dropped_samples_cost_no_matmul_work(monkeypatch):
    """The point of it: with 2 of 8 samples kept in both branches, the block's matmul FLOPs
    (forward and backward) are a quarter of the full batch's."""
    block = noisy_block().float()
    x = torch.randn(8, LENGTH, HIDDEN, requires_grad=True)

    def flops(kept: list[int]) -> int:
        with_kept(monkeypatch, [kept, kept])
        with FlopCounterMode(display=False) as counter:
            block(x).hidden_states.sum().backward()
        return counter.get_total_flops()

    assert flops([3, 6]) * 4 == flops(list(range(8)))


def test_kept_samples_follow_the_rate():
    """Each sample is kept with probability 1 - rate: 20000 draws of 8 give a kept fraction
    within 5 standard errors of 0.7; evaluation and rate 0 keep all without drawing."""
    drop = DropPath(0.3).train()
    torch.manual_seed(0)
    kept = sum(len(drop.kept_samples(8)) for _ in range(20000)) / (8 * 20000)
    assert abs(kept - 0.7) < 5 * (0.7 * 0.3 / (8 * 20000)) ** 0.5
    assert drop.eval().kept_samples(8) is None
    assert DropPath(0.0).train().kept_samples(8) is None


def test_attentions_asked_for_use_the_mask_path(monkeypatch):
    """With output_attentions every sample is computed (their probabilities are returned)."""
    block = noisy_block()
    monkeypatch.setattr(DropPath, "kept_samples", lambda *args, **kwargs: pytest.fail("no skipping here"))
    x = torch.randn(5, LENGTH, HIDDEN, dtype=torch.float64)
    result = block(x, output_attentions=True)
    assert result.attention.shape == (5, HEADS, LENGTH, LENGTH)


def test_training_a_vision_model_with_drop_path_runs_and_learns():
    """End to end: a tiny vision classifier with drop path 0.5 in training (the skipping path,
    dropped and kept samples in the same batch) gets a finite loss that falls."""
    config = data2vec.Data2VecVisionConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48, image_size=32,
        patch_size=8, num_labels=3, drop_path_rate=0.5, use_relative_position_bias=True,
    )  # fmt: skip
    torch.manual_seed(0)
    model = data2vec.Data2VecVisionForImageClassification(config).train()
    pixels, labels = torch.randn(8, 3, 32, 32), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        loss = model(pixel_values=pixels, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5


# --------------------------------------------------------------------------- attention


def test_attention_with_a_trained_bias_equals_sdpa():
    """The written-out path (taken on the CPU when the bias requires grad) gives SDPA's output
    and the same gradients for the input, the projections and the bias."""
    torch.manual_seed(0)
    attention = add_noise(Attention(HIDDEN, HEADS, qkv_bias="query_value")).double()
    x = torch.randn(3, LENGTH, HIDDEN, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(1, HEADS, LENGTH, LENGTH, dtype=torch.float64, requires_grad=True)
    inputs = [x, bias, *attention.parameters()]

    out = attention(x, bias)[0]
    grads = torch.autograd.grad(out.square().sum(), inputs)

    def through_sdpa():
        q, k, v = attention._project_self(x)
        context = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        return attention.out_proj(context.transpose(1, 2).reshape(3, LENGTH, HIDDEN))

    expected = through_sdpa()
    expected_grads = torch.autograd.grad(expected.square().sum(), inputs)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)
    for got, want in zip(grads, expected_grads):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


# ------------------------------------------------------------------ relative position bias


@pytest.mark.parametrize("grid", [(4, 4), (3, 5)])
def test_relative_position_bias_is_contiguous_and_equals_the_table_lookup(grid):
    """bias[0, h, i, j] = table[index[i, j], h], contiguous in (1, heads, tokens, tokens) (the
    layout fused attention kernels take); the table's gradient equals that of the lookup.
    (3, 5) is another grid than the trained one: the resized table is looked up."""
    torch.manual_seed(0)
    module = add_noise(RelativePositionBias((4, 4), HEADS)).double()
    bias = module(grid)
    table = module.table_for(grid)
    index = module.index if grid == (4, 4) else relative_position_index(grid)
    expected = table[index].permute(2, 0, 1).unsqueeze(0)
    tokens = grid[0] * grid[1] + 1
    assert bias.shape == (1, HEADS, tokens, tokens) and bias.is_contiguous()
    torch.testing.assert_close(bias, expected, rtol=0, atol=0)
    upstream = torch.randn_like(bias)
    (got,) = torch.autograd.grad((bias * upstream).sum(), module.table)
    (want,) = torch.autograd.grad((expected * upstream).sum(), module.table)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_vision_attention_runs_on_a_fused_kernel(dtype):
    """With SDPA's math path switched off, a vision model with per-layer relative position
    biases still runs its forward and its training backward (the bias layout is one the fused
    kernels take), and agrees with the float32 eager model on the CPU."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    config = data2vec.Data2VecVisionConfig(
        hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=96, image_size=32,
        patch_size=8, use_relative_position_bias=True, drop_path_rate=0.0,
    )  # fmt: skip
    torch.manual_seed(0)
    model = add_noise(data2vec.Data2VecVisionModel(config)).eval()
    pixels = torch.randn(2, 3, 32, 32)
    expected = model(pixel_values=pixels).last_hidden_state
    gpu = model.cuda()
    fused = [SDPBackend.EFFICIENT_ATTENTION, SDPBackend.FLASH_ATTENTION, SDPBackend.CUDNN_ATTENTION]
    with sdpa_kernel(fused), torch.autocast("cuda", dtype=dtype, enabled=dtype != torch.float32):
        with torch.no_grad():
            out = gpu(pixel_values=pixels.cuda()).last_hidden_state
        gpu.train()
        gpu(pixel_values=pixels.cuda()).last_hidden_state.float().square().mean().backward()
    tolerance = 1e-3 if dtype == torch.float32 else 5e-2  # float32: cuDNN may run the patch conv in TF32
    torch.testing.assert_close(out.float().cpu(), expected, rtol=0, atol=tolerance * float(expected.abs().max()))
    for name, parameter in gpu.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name


# ------------------------------------------------------------------- in-place activation


@pytest.mark.parametrize("name", ["gelu", "gelu_pytorch_tanh", "relu", "silu"])
def test_in_place_activation_equals_the_function(name):
    x = torch.randn(3, 5, 7, dtype=torch.float64)
    expected = ACTIVATIONS[name](x)
    assert torch.equal(IN_PLACE_ACTIVATIONS[ACTIVATIONS[name]](x.clone()), expected)


def test_mlp_overwrites_fc1_output_only_without_autograd(monkeypatch):
    """No grad: the in-place activation runs and the output is bit-equal to the out-of-place
    one; with grad: the out-of-place function runs (autograd needs fc1's output)."""
    torch.manual_seed(0)
    mlp = add_noise(MLP(HIDDEN, FFN, "gelu")).double()
    x = torch.randn(2, LENGTH, HIDDEN, dtype=torch.float64)
    with torch.no_grad():
        expected = mlp.fc2(F.gelu(mlp.fc1(x)))
    calls = []
    in_place = IN_PLACE_ACTIVATIONS[F.gelu]
    monkeypatch.setitem(IN_PLACE_ACTIVATIONS, F.gelu, lambda t: calls.append(t.data_ptr()) or in_place(t))
    with torch.no_grad():
        assert torch.equal(mlp(x), expected)
    assert len(calls) == 1
    out = mlp(x)
    assert len(calls) == 1 and out.requires_grad
    torch.testing.assert_close(out.detach(), expected, rtol=0, atol=0)
