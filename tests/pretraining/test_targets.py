"""Top-K layer averaging with each normalisation against a hand-written computation."""

import itertools

import pytest
import torch
import torch.nn.functional as F

from data2vec.pretraining.targets import average_top_k


def _layers(count=6, batch=3, time=9, channels=5, seed=0, dtype=torch.float32):
    """Layer outputs with per-layer, per-channel offsets and scales (so every norm matters)."""
    generator = torch.Generator().manual_seed(seed)
    layers = []
    for _ in range(count):
        offset = torch.randn(1, 1, channels, generator=generator) * 3
        scale = torch.rand(1, 1, channels, generator=generator) * 4 + 0.5
        layers.append((torch.randn(batch, time, channels, generator=generator) * scale + offset).to(dtype))
    return layers


def _reference(layers, top_k, layer_norm, post_norm):
    """The fairseq recipe written out: last K layers -> per-layer norm -> mean -> post norm, fp32."""

    def norm(x, kind):
        if kind == "instance":  # over time, per sample and channel: (B, T, C) -> (B, C, T) and back
            return F.instance_norm(x.transpose(1, 2), eps=1e-5).transpose(1, 2)
        if kind == "layer":  # over channels, per position, no affine
            return F.layer_norm(x, (x.shape[-1],), eps=1e-5)
        return x

    total = 0
    for layer in layers[len(layers) - top_k :]:
        total = total + norm(layer.float(), layer_norm)
    return norm(total / top_k, post_norm)


@pytest.mark.parametrize("layer_norm,post_norm", list(itertools.product(["instance", "layer", "none"], repeat=2)))
def test_matches_hand_written_recipe(layer_norm, post_norm):
    layers = _layers()
    result = average_top_k(layers, 4, layer_norm=layer_norm, post_norm=post_norm)
    assert result.dtype == torch.float32 and result.shape == (3, 9, 5)
    torch.testing.assert_close(result, _reference(layers, 4, layer_norm, post_norm), atol=1e-5, rtol=1e-5)


def test_normalisations_have_their_defining_statistics():
    layers = _layers()
    instance = average_top_k(layers, 1, layer_norm="instance")
    # instance norm: per (sample, channel), mean 0 and biased variance 1 over time
    torch.testing.assert_close(instance.mean(1), torch.zeros(3, 5), atol=1e-5, rtol=0)
    torch.testing.assert_close(instance.var(1, unbiased=False), torch.ones(3, 5), atol=1e-3, rtol=0)
    layer = average_top_k(layers, 1, layer_norm="layer")
    # layer norm: per position, mean 0 and biased variance 1 over channels
    torch.testing.assert_close(layer.mean(-1), torch.zeros(3, 9), atol=1e-5, rtol=0)
    torch.testing.assert_close(layer.var(-1, unbiased=False), torch.ones(3, 9), atol=1e-3, rtol=0)
    # no norm, K = 3: plain mean of the last three layers
    plain = average_top_k(layers, 3, layer_norm="none")
    torch.testing.assert_close(plain, (layers[3] + layers[4] + layers[5]) / 3, atol=1e-6, rtol=0)
    assert not torch.allclose(instance, layer, atol=1e-2)


def test_only_last_k_layers_count():
    layers = _layers()
    before = average_top_k(layers, 4)
    changed_early = list(layers)
    changed_early[1] = changed_early[1] + 100.0
    assert torch.equal(average_top_k(changed_early, 4), before)  # layer 1 is not among the last 4
    changed_used = list(layers)
    changed_used[2] = changed_used[2] * 3.0 + torch.linspace(0, 1, 9)[None, :, None]
    assert not torch.allclose(average_top_k(changed_used, 4), before, atol=1e-3)


def test_low_precision_inputs_are_normalised_in_float32():
    layers = _layers(dtype=torch.bfloat16)
    result = average_top_k(layers, 3, layer_norm="layer", post_norm="layer")
    assert result.dtype == torch.float32
    torch.testing.assert_close(result, _reference(layers, 3, "layer", "layer"), atol=1e-5, rtol=1e-5)


def test_padding_mask_excludes_padded_positions():
    layers = _layers(time=10)
    valid_lengths = [10, 6, 3]
    padding_mask = torch.arange(10)[None, :] >= torch.tensor(valid_lengths)[:, None]  # True = padding
    result = average_top_k(layers, 3, layer_norm="instance", post_norm="instance", padding_mask=padding_mask)
    for row, valid in enumerate(valid_lengths):
        # the same as normalising the row cut to its real length
        expected = _reference([layer[row : row + 1, :valid] for layer in layers], 3, "instance", "instance")
        torch.testing.assert_close(result[row : row + 1, :valid], expected, atol=1e-5, rtol=1e-5)
        assert torch.equal(result[row, valid:], torch.zeros(10 - valid, 5))
    # without a padding mask the statistics include padded positions (data2vec 1.0 speech)
    unmasked = average_top_k(layers, 3, layer_norm="instance")
    torch.testing.assert_close(unmasked, _reference(layers, 3, "instance", "none"), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(unmasked[1, :6], result[1, :6], atol=1e-3)


def test_layer_norm_with_padding_mask_zeroes_padding_only():
    layers = _layers()
    padding_mask = torch.zeros(3, 9, dtype=torch.bool)
    padding_mask[0, 7:] = True
    result = average_top_k(layers, 2, layer_norm="layer", padding_mask=padding_mask)
    reference = _reference(layers, 2, "layer", "none")
    torch.testing.assert_close(result[~padding_mask], reference[~padding_mask], atol=1e-5, rtol=1e-5)
    assert torch.equal(result[padding_mask], torch.zeros(2, 5))


def test_targets_carry_no_gradient():
    layers = [layer.requires_grad_(True) for layer in _layers()]
    result = average_top_k(layers, 4, layer_norm="layer", post_norm="layer")
    assert not result.requires_grad and result.grad_fn is None


def test_bad_arguments_raise():
    layers = _layers(count=3)
    with pytest.raises(ValueError, match="top_k"):
        average_top_k(layers, 4)
    with pytest.raises(ValueError, match="top_k"):
        average_top_k(layers, 0)
    with pytest.raises(ValueError, match="layer_norm"):
        average_top_k(layers, 2, layer_norm="batch")
    with pytest.raises(ValueError, match="one shape"):
        average_top_k([layers[0], layers[1][:, :4]], 2)
    with pytest.raises(ValueError, match="padding_mask"):
        average_top_k(layers, 2, padding_mask=torch.zeros(3, 4, dtype=torch.bool))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_bf16_under_autocast_matches_cpu():
    layers = _layers(dtype=torch.bfloat16)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        result = average_top_k([layer.cuda() for layer in layers], 3, layer_norm="instance", post_norm="layer")
    assert result.dtype == torch.float32
    torch.testing.assert_close(result.cpu(), _reference(layers, 3, "instance", "layer"), atol=1e-4, rtol=1e-4)
