"""What a user of the vision models meets with wrong inputs or configs: clear errors raised at
the boundary, and the cases that are allowed (any image size without position information,
other sizes with ``interpolate_pos_encoding``)."""

from __future__ import annotations

import pytest
import torch

import data2vec

TINY = dict(
    hidden_size=32,
    num_hidden_layers=3,
    num_attention_heads=4,
    intermediate_size=37,
    image_size=32,
    patch_size=8,
    auxiliary_channels=16,
    out_indices=[1, 2, 3, 4],
    num_labels=3,
)


def build(name: str = "Data2VecVisionModel", **changes):
    torch.manual_seed(0)
    return getattr(data2vec, name)(data2vec.Data2VecVisionConfig(**{**TINY, **changes})).eval()


def images(batch: int = 2, channels: int = 3, height: int = 32, width: int = 32) -> torch.Tensor:
    return torch.randn(batch, channels, height, width, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("name", ["Data2VecVisionModel", "Data2VecVisionForImageClassification",
                                  "Data2VecVisionForSemanticSegmentation"])
def test_wrong_channel_count(name):
    with pytest.raises(ValueError, match=r"1 channels but the model expects num_channels=3"):
        build(name)(images(channels=1))


def test_pixel_values_must_be_four_dimensional():
    with pytest.raises(ValueError, match=r"\(batch, channels, height, width\) tensor, got \(3, 32, 32\)"):
        build()(images()[0])


def test_image_smaller_than_one_patch():
    with pytest.raises(ValueError, match=r"6x32 pixels, smaller than one 8x8 patch"):
        build()(images(height=6))


@pytest.mark.parametrize("position", ["use_absolute_position_embeddings", "use_relative_position_bias",
                                      "use_shared_relative_position_bias"])
def test_other_image_size_needs_interpolate_pos_encoding(position):
    model = build(**{position: True})
    with pytest.raises(ValueError, match=r"48x48 pixels \(6x6 patches\).*image_size=32.*interpolate_pos_encoding=True"):
        model(images(height=48, width=48))
    with torch.no_grad():
        out = model(images(height=48, width=48), interpolate_pos_encoding=True)
    assert out.last_hidden_state.shape == (2, 37, 32)
    # a size that gives the trained patch grid needs nothing (the convolution drops the remainder)
    with torch.no_grad():
        assert model(images(height=35, width=39)).last_hidden_state.shape == (2, 17, 32)


def test_any_image_size_without_position_information():
    with torch.no_grad():
        out = build()(images(height=24, width=40))
    assert out.last_hidden_state.shape == (2, 1 + 3 * 5, 32)


def test_segmentation_at_another_size_keeps_the_4x_grid():
    model = build("Data2VecVisionForSemanticSegmentation", use_relative_position_bias=True)
    with torch.no_grad():
        logits = model(images(height=48, width=64), interpolate_pos_encoding=True).logits
    assert logits.shape == (2, 3, 4 * 6, 4 * 8)


def test_segmentation_labels_must_match_the_batch():
    """Label maps may have their own resolution (issue 10), but one map per image, 3-D, integer."""
    model = build("Data2VecVisionForSemanticSegmentation")
    with pytest.raises(ValueError, match=r"labels have shape \(3, 16, 16\).*\(batch, height, width\).*batch = 2"):
        model(images(), labels=torch.zeros(3, 16, 16, dtype=torch.long))
    with pytest.raises(ValueError, match=r"labels have shape \(2, 1, 32, 32\)"):
        model(images(), labels=torch.zeros(2, 1, 32, 32, dtype=torch.long))
    with pytest.raises(ValueError, match=r"integer class ids, got torch.float32"):
        model(images(), labels=torch.zeros(2, 32, 32))


def test_segmentation_labels_need_two_classes():
    model = build("Data2VecVisionForSemanticSegmentation", num_labels=1)
    with pytest.raises(ValueError, match=r"num_labels >= 2, the model has 1"):
        model(images(), labels=torch.zeros(2, 32, 32, dtype=torch.long))


@pytest.mark.parametrize("out_indices", [[1, 2, 3], [1, 2, 3, 3], [1, 2, 3, 5], [0, 1, 2, 3]])
def test_segmentation_needs_four_valid_out_indices(out_indices):
    with pytest.raises(ValueError, match=r"out_indices to be 4 different integers in 1\.\.4"):
        build("Data2VecVisionForSemanticSegmentation", out_indices=out_indices)


def test_auxiliary_head_without_convs_needs_matching_channels():
    with pytest.raises(ValueError, match=r"auxiliary_channels \(16\) must equal hidden_size \(32\)"):
        build("Data2VecVisionForSemanticSegmentation", auxiliary_num_convs=0)
    with torch.no_grad():
        logits = build("Data2VecVisionForSemanticSegmentation", auxiliary_num_convs=0, auxiliary_channels=32)(images()).logits
    assert logits.shape == (2, 3, 16, 16)


def test_bool_masked_pos_needs_the_mask_token():
    with pytest.raises(ValueError, match=r"no mask token: build it with use_mask_token=True"):
        build()(images(), bool_masked_pos=torch.zeros(2, 16, dtype=torch.bool))


def test_bool_masked_pos_shape_and_dtype():
    model = build(use_mask_token=True)
    with pytest.raises(ValueError, match=r"shape \(2, 17\), expected \(batch, patches\) = \(2, 16\)"):
        model(images(), bool_masked_pos=torch.zeros(2, 17, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"must be bool \(or 0/1 integers\), got torch.float32"):
        model(images(), bool_masked_pos=torch.zeros(2, 16))
    # 0/1 integers mean the same as booleans
    mask = torch.zeros(2, 16, dtype=torch.long)
    mask[:, ::3] = 1
    with torch.no_grad():
        as_int = model(images(), bool_masked_pos=mask).last_hidden_state
        as_bool = model(images(), bool_masked_pos=mask.bool()).last_hidden_state
    assert torch.equal(as_int, as_bool)


def test_config_checks():
    with pytest.raises(ValueError, match=r"hidden_size \(30\) must be a multiple of num_attention_heads \(4\)"):
        data2vec.Data2VecVisionConfig(hidden_size=30, num_attention_heads=4)
    with pytest.raises(ValueError, match=r"patch_size 64 must be at least 1 and at most image_size 32"):
        data2vec.Data2VecVisionConfig(image_size=32, patch_size=64)
    with pytest.raises(ValueError, match=r"image_size must be an int or a pair of ints"):
        data2vec.Data2VecVisionConfig(image_size=[32, 32, 3])
    with pytest.raises(ValueError, match=r"drop_path_rate must be in \[0, 1\)"):
        data2vec.Data2VecVisionConfig(drop_path_rate=1.5)


def test_layer_scale_zero_disables_it_and_drop_path_acts_in_training():
    model = build(layer_scale_init_value=0.0)
    assert all(layer.attention_scale is None and layer.mlp_scale is None for layer in model.encoder.layers)
    assert not any("scale" in name for name, _ in model.named_parameters())
    model = build(drop_path_rate=0.5).train()
    pixels = images(batch=8)
    with torch.no_grad():
        first, second = model(pixels).last_hidden_state, model(pixels).last_hidden_state
    assert not torch.allclose(first, second)  # samples' residual branches dropped at random
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(pixels).last_hidden_state, model(pixels).last_hidden_state)
