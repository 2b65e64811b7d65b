"""The Keras 3 (TensorFlow) vision classes agree with this library's PyTorch classes on the same
folder: a noisy PyTorch model is saved, both frameworks load it, every output (hidden states,
attentions, pooled vectors, logits, losses) agrees within 1e-4."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
pytestmark = pytest.mark.tf
tf = pytest.importorskip("tensorflow")

import numpy as np  # noqa: E402
import torch  # noqa: E402

import data2vec  # noqa: E402
from tests.helpers import add_noise  # noqa: E402
from tests.vision.tf.common import TINY, as_numpy, assert_close, compare, images, pytorch_folder  # noqa: E402

ALL_OUTPUTS = dict(output_hidden_states=True, output_attentions=True)

BACKBONES = {
    "absolute+layer_bias+mean_pool+layer_scale": dict(use_absolute_position_embeddings=True, use_relative_position_bias=True),
    "shared_bias+cls_pool+no_layer_scale": dict(
        use_shared_relative_position_bias=True, use_mean_pooling=False, layer_scale_init_value=0.0
    ),
    "absolute+shared+layer_bias+patch4+cls_pool": dict(
        patch_size=4, num_hidden_layers=2, use_absolute_position_embeddings=True, use_relative_position_bias=True,
        use_shared_relative_position_bias=True, use_mean_pooling=False,
    ),
    "no_positions+mean_pool+gelu_new": dict(num_hidden_layers=2, hidden_act="gelu_new"),
}


@pytest.mark.parametrize("variant", list(BACKBONES))
def test_model_matches_pytorch(tmp_path, variant):
    ours_pt = pytorch_folder("Data2VecVisionModel", tmp_path, **BACKBONES[variant])
    ours_tf = data2vec.TFData2VecVisionModel.from_pretrained(tmp_path)
    pixels = images()
    with torch.no_grad():
        expected = ours_pt(pixels, **ALL_OUTPUTS)
    out = ours_tf(pixels.numpy(), **ALL_OUTPUTS)
    assert len(out.hidden_states) == ours_pt.config.num_hidden_layers + 1
    compare(out, expected, ["last_hidden_state", "pooler_output", "hidden_states", "attentions"])
    # index access skips the None fields (pooler_output here), as the PyTorch outputs do
    assert len(out) == len(expected) == 3
    assert_close(out[1], expected[1], "out[1]")


@pytest.mark.parametrize("variant", list(BACKBONES))
def test_pooler_matches_pytorch(variant):
    torch.manual_seed(0)
    config = data2vec.Data2VecVisionConfig(**{**TINY, **BACKBONES[variant]})
    ours_pt = add_noise(data2vec.Data2VecVisionModel(config, add_pooling_layer=True)).eval()
    ours_tf = data2vec.TFData2VecVisionModel.from_torch(ours_pt)
    assert ours_tf.pooler is not None
    pixels = images()
    with torch.no_grad():
        expected = ours_pt(pixels)
    out = ours_tf(tf.constant(pixels.numpy()))
    compare(out, expected, ["last_hidden_state", "pooler_output", "hidden_states", "attentions"])


@pytest.mark.parametrize("variant", list(BACKBONES))
def test_image_classification_matches_pytorch(tmp_path, variant):
    ours_pt = pytorch_folder("Data2VecVisionForImageClassification", tmp_path, num_labels=5, **BACKBONES[variant])
    ours_tf = data2vec.TFData2VecVisionForImageClassification.from_pretrained(tmp_path)
    pixels, labels = images(3), torch.tensor([4, 0, 2])
    with torch.no_grad():
        expected = ours_pt(pixels, labels=labels, **ALL_OUTPUTS)
    out = ours_tf(pixels.numpy(), labels=labels.numpy(), **ALL_OUTPUTS)
    compare(out, expected, ["loss", "logits", "hidden_states", "attentions"])


@pytest.mark.parametrize(
    "num_labels,problem_type,labels",
    [
        (3, "multi_label_classification", [[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]]),
        (3, None, [[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]]),  # float labels: multi label
        (3, "regression", [[0.5, -1.0, 2.0], [0.1, 0.2, 0.3]]),
        (1, None, [0.7, -1.5]),  # one output: regression
    ],
)
def test_image_classification_losses(tmp_path, num_labels, problem_type, labels):
    ours_pt = pytorch_folder("Data2VecVisionForImageClassification", tmp_path, num_labels=num_labels,
                             problem_type=problem_type, use_relative_position_bias=True)
    ours_tf = data2vec.TFData2VecVisionForImageClassification.from_pretrained(tmp_path)
    pixels = images()
    with torch.no_grad():
        expected = ours_pt(pixels, labels=torch.tensor(labels))
    compare(ours_tf(pixels.numpy(), labels=np.array(labels, dtype=np.float32)), expected, ["loss", "logits"])


def test_bool_masked_pos_matches_pytorch(tmp_path):
    ours_pt = pytorch_folder("Data2VecVisionModel", tmp_path, use_mask_token=True, use_absolute_position_embeddings=True,
                             use_relative_position_bias=True)
    ours_tf = data2vec.TFData2VecVisionModel.from_pretrained(tmp_path)
    pixels = images()
    mask = torch.rand(2, 16, generator=torch.Generator().manual_seed(3)) < 0.5
    mask[0, 0], mask[1, 0] = True, False
    with torch.no_grad():
        expected = ours_pt(pixels, bool_masked_pos=mask, **ALL_OUTPUTS)
    out = ours_tf(pixels.numpy(), bool_masked_pos=mask.numpy(), **ALL_OUTPUTS)
    compare(out, expected, ["last_hidden_state", "hidden_states", "attentions"])
    as_integers = ours_tf(pixels.numpy(), bool_masked_pos=mask.numpy().astype(np.int32))
    assert_close(as_integers.last_hidden_state, expected.last_hidden_state, "0/1 integer mask")
    unmasked = ours_tf(pixels.numpy()).last_hidden_state
    assert np.abs(as_numpy(unmasked) - as_numpy(out.last_hidden_state)).max() > 1e-3  # the mask token does something


@pytest.mark.parametrize("height,width", [(48, 48), (32, 48)])
def test_interpolate_pos_encoding_at_another_size(tmp_path, height, width):
    config = dict(use_absolute_position_embeddings=True, use_relative_position_bias=True,
                  use_shared_relative_position_bias=True, num_labels=3)
    ours_pt = pytorch_folder("Data2VecVisionForImageClassification", tmp_path, **config)
    ours_tf = data2vec.TFData2VecVisionForImageClassification.from_pretrained(tmp_path)
    pixels = images(height=height, width=width)
    with torch.no_grad():
        expected = ours_pt(pixels, interpolate_pos_encoding=True, **ALL_OUTPUTS)
    out = ours_tf(pixels.numpy(), interpolate_pos_encoding=True, **ALL_OUTPUTS)
    tokens = 1 + (height // 8) * (width // 8)
    assert tuple(out.attentions[0].shape) == (2, 4, tokens, tokens)
    compare(out, expected, ["logits", "hidden_states", "attentions"])
    with pytest.raises(ValueError, match=r"pass interpolate_pos_encoding=True"):
        ours_tf(pixels.numpy())


SEGMENTATION = {
    "auxiliary+layer_bias": dict(use_relative_position_bias=True, out_indices=[1, 2, 3, 4]),
    "auxiliary_two_convs_concat+absolute+shared": dict(
        use_absolute_position_embeddings=True, use_shared_relative_position_bias=True, auxiliary_num_convs=2,
        auxiliary_concat_input=True, out_indices=[5, 2, 4, 3], pool_scales=[1, 3],
    ),
    "no_auxiliary+cls_norm+no_layer_scale": dict(
        use_auxiliary_head=False, use_relative_position_bias=True, use_mean_pooling=False, layer_scale_init_value=0.0,
        out_indices=[2, 3, 4, 5], semantic_loss_ignore_index=0,
    ),
    "patch4+auxiliary_weight": dict(
        patch_size=4, num_hidden_layers=3, out_indices=[1, 2, 3, 4], auxiliary_loss_weight=0.7, pool_scales=[2]
    ),
}


def segmentation_labels(batch: int, height: int, width: int, ignore: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(4)
    labels = torch.randint(0, 5, (batch, height, width), generator=generator)
    labels[torch.rand(labels.shape, generator=generator) < 0.3] = ignore
    return labels


@pytest.mark.parametrize("variant", list(SEGMENTATION))
def test_semantic_segmentation_matches_pytorch(tmp_path, variant):
    config = SEGMENTATION[variant]
    ours_pt = pytorch_folder("Data2VecVisionForSemanticSegmentation", tmp_path, num_labels=5, **config)
    ours_tf = data2vec.TFData2VecVisionForSemanticSegmentation.from_pretrained(tmp_path)
    pixels = images()
    labels = segmentation_labels(2, 32, 32, config.get("semantic_loss_ignore_index", 255))
    with torch.no_grad():
        expected = ours_pt(pixels, labels=labels, **ALL_OUTPUTS)
    out = ours_tf(pixels.numpy(), labels=labels.numpy(), **ALL_OUTPUTS)
    grid = 32 // config.get("patch_size", 8)
    assert tuple(out.logits.shape) == (2, 5, 4 * grid, 4 * grid)  # NCHW, 4x the patch grid
    compare(out, expected, ["loss", "logits", "hidden_states", "attentions"])
    plain = ours_tf(pixels.numpy())
    assert plain.loss is None and plain.hidden_states is None and plain.attentions is None
    assert_close(plain.logits, expected.logits, "logits without labels")


def test_semantic_segmentation_at_another_size(tmp_path):
    ours_pt = pytorch_folder("Data2VecVisionForSemanticSegmentation", tmp_path, num_labels=5,
                             use_relative_position_bias=True, use_absolute_position_embeddings=True,
                             out_indices=[1, 2, 3, 4])
    ours_tf = data2vec.TFData2VecVisionForSemanticSegmentation.from_pretrained(tmp_path)
    pixels, labels = images(height=48, width=40), segmentation_labels(2, 48, 40, 255)
    with torch.no_grad():
        expected = ours_pt(pixels, labels=labels, interpolate_pos_encoding=True)
    out = ours_tf(pixels.numpy(), labels=labels.numpy(), interpolate_pos_encoding=True)
    assert tuple(out.logits.shape) == (2, 5, 24, 20)
    compare(out, expected, ["loss", "logits"])


def test_fresh_models_initialise_like_the_pytorch_classes():
    config = data2vec.Data2VecVisionConfig(**{**TINY, "use_mask_token": True, "use_absolute_position_embeddings": True,
                                              "use_relative_position_bias": True, "use_shared_relative_position_bias": True,
                                              "layer_scale_init_value": 0.2, "initializer_range": 0.05, "num_labels": 4,
                                              "out_indices": [1, 2, 3, 4], "hidden_size": 64, "intermediate_size": 96})
    ours_tf = data2vec.TFData2VecVisionForSemanticSegmentation(config).to_torch().state_dict()
    torch.manual_seed(0)
    ours_pt = data2vec.Data2VecVisionForSemanticSegmentation(config).state_dict()
    assert set(ours_tf) == set(ours_pt)
    for key, tensor in ours_pt.items():
        mine = ours_tf[key]
        assert mine.shape == tensor.shape and mine.dtype == tensor.dtype, key
        if tensor.numel() >= 4096:  # random: the same spread
            assert abs(mine.float().std() - tensor.float().std()) < 0.005, key
        elif tensor.unique().numel() == 1:  # constants (zeros, ones, layer scale): equal
            assert torch.equal(mine, tensor), key
    assert torch.equal(ours_tf["backbone.encoder.layers.1.attention_scale"], torch.full((64,), 0.2))
