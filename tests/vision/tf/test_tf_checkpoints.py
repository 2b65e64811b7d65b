"""Checkpoint files shared with the PyTorch classes: the TF classes load what the PyTorch ones
load (safetensors, pytorch_model.bin, Hub cache) and write folders that the PyTorch classes load
back bit for bit; plus the errors a user meets with wrong inputs."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
pytestmark = pytest.mark.tf
tf = pytest.importorskip("tensorflow")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

import data2vec  # noqa: E402
from data2vec.core.modeling import CheckpointWarning  # noqa: E402
from data2vec.vision.tf import weights  # noqa: E402
from tests.vision.tf.common import TINY, assert_close, hub_cache, images, pytorch_folder  # noqa: E402

FULL = dict(  # every optional parameter present
    use_mask_token=True,
    use_absolute_position_embeddings=True,
    use_relative_position_bias=True,
    use_shared_relative_position_bias=True,
    use_mean_pooling=False,
    auxiliary_num_convs=2,
    auxiliary_concat_input=True,
    num_hidden_layers=3,
    out_indices=[1, 2, 3, 4],
    num_labels=4,
)
CLASSES = ["Data2VecVisionModel", "Data2VecVisionForImageClassification", "Data2VecVisionForSemanticSegmentation"]


def noisy_keras_model(name: str, **config):
    """A fresh Keras model with noise on every variable (BatchNorm variances kept positive)."""
    model = getattr(data2vec, "TF" + name)(data2vec.Data2VecVisionConfig(**{**TINY, **config}))
    rng = np.random.default_rng(0)
    for variable in model.weights:
        value = variable.numpy()
        noise = rng.normal(0.0, 0.05, value.shape).astype(value.dtype)
        variable.assign(value * (1.0 + noise) if "moving_variance" in variable.path else value + noise)
    return model


@pytest.mark.parametrize("name", CLASSES)
def test_our_tf_folder_loads_into_the_pytorch_class_bit_for_bit(tmp_path, name):
    ours_tf = noisy_keras_model(name, **FULL)
    ours_tf.save_pretrained(tmp_path)
    assert (tmp_path / "config.json").exists() and (tmp_path / "model.safetensors").exists()
    ours_pt = getattr(data2vec, name).from_pretrained(tmp_path)
    variables = weights.torch_named_variables(ours_tf)
    state = ours_pt.state_dict()
    assert set(state) - set(variables) == {key for key in state if key.endswith("num_batches_tracked")}
    for key, (variable, layout) in variables.items():
        assert np.array_equal(state[key].numpy(), weights.to_torch_layout(variable.numpy(), layout)), key
    pixels = images()
    with torch.no_grad():
        expected = ours_pt(pixels)
    assert_close(ours_tf(pixels.numpy())[0], expected[0], f"{name} output")


@pytest.mark.parametrize("name", CLASSES)
def test_pytorch_folder_round_trips_through_tf_unchanged(tmp_path, name):
    pytorch_folder(name, tmp_path / "pytorch", **FULL)
    ours_tf = getattr(data2vec, "TF" + name).from_pretrained(tmp_path / "pytorch")
    ours_tf.save_pretrained(tmp_path / "tf")
    written, rewritten = load_file(tmp_path / "pytorch" / "model.safetensors"), load_file(tmp_path / "tf" / "model.safetensors")
    assert written.keys() == rewritten.keys()
    for key, tensor in written.items():
        if not key.endswith("num_batches_tracked"):  # a step counter Keras does not keep
            assert torch.equal(rewritten[key], tensor), key


def test_pytorch_bin_and_hub_cache_load(tmp_path):
    ours_pt = pytorch_folder("Data2VecVisionForImageClassification", tmp_path / "st", num_labels=3,
                             use_relative_position_bias=True)
    pixels = images()
    with torch.no_grad():
        expected = ours_pt(pixels).logits
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "config.json").write_bytes((tmp_path / "st" / "config.json").read_bytes())
    torch.save(load_file(tmp_path / "st" / "model.safetensors"), tmp_path / "bin" / "pytorch_model.bin")
    from_bin = data2vec.TFData2VecVisionForImageClassification.from_pretrained(tmp_path / "bin")
    assert_close(from_bin(pixels.numpy()).logits, expected, "logits from pytorch_model.bin")
    hub_cache(tmp_path / "cache", "someone/tiny-data2vec-vision", tmp_path / "st")
    from_hub = data2vec.TFData2VecVisionForImageClassification.from_pretrained(
        "someone/tiny-data2vec-vision", cache_dir=tmp_path / "cache"
    )
    assert_close(from_hub(pixels.numpy()).logits, expected, "logits from the Hub cache")


def test_backbone_checkpoint_into_head_warns_and_overrides_apply(tmp_path):
    pytorch_folder("Data2VecVisionModel", tmp_path, use_relative_position_bias=True)
    with pytest.warns(CheckpointWarning, match="freshly initialised.*classifier.weight"):
        model, info = data2vec.TFData2VecVisionForImageClassification.from_pretrained(
            tmp_path, num_labels=7, output_loading_info=True
        )
    assert "classifier.bias" in info["missing_keys"] and not info["unexpected_keys"]
    assert model.config.num_labels == 7 and tuple(model(images().numpy()).logits.shape) == (2, 7)


def test_from_torch_needs_the_matching_class():
    torch_model = data2vec.Data2VecVisionModel(data2vec.Data2VecVisionConfig(**TINY))
    with pytest.raises(TypeError, match="takes a Data2VecVisionForImageClassification, got Data2VecVisionModel"):
        data2vec.TFData2VecVisionForImageClassification.from_torch(torch_model)
    with pytest.raises(TypeError, match="takes a Data2VecVisionConfig"):
        data2vec.TFData2VecVisionModel(data2vec.Data2VecTextConfig())


# ---------------------------------------------------------------------------- input errors
@pytest.fixture(scope="module")
def segmentation_model():
    config = data2vec.Data2VecVisionConfig(**{**TINY, "num_hidden_layers": 3, "out_indices": [1, 2, 3, 4],
                                              "use_relative_position_bias": True, "num_labels": 3})
    return data2vec.TFData2VecVisionForSemanticSegmentation(config)


def test_channels_last_images_are_refused_with_the_layout_named(segmentation_model):
    with pytest.raises(ValueError, match=r"32 channels but the model expects num_channels=3.*\(batch, channels, height, width\)"):
        segmentation_model(np.zeros((2, 32, 32, 3), np.float32))
    with pytest.raises(ValueError, match=r"\(batch, channels, height, width\) tensor, got \(3, 32, 32\)"):
        segmentation_model(np.zeros((3, 32, 32), np.float32))
    with pytest.raises(ValueError, match=r"6x32 pixels, smaller than one 8x8 patch"):
        segmentation_model(np.zeros((1, 3, 6, 32), np.float32))


def test_segmentation_labels_must_match_the_images(segmentation_model):
    pixels = images().numpy()
    with pytest.raises(ValueError, match=r"labels have shape \(2, 16, 16\).*expected a \(batch, height, width\)"):
        segmentation_model(pixels, labels=np.zeros((2, 16, 16), np.int64))
    with pytest.raises(ValueError, match="integer class ids, got float32"):
        segmentation_model(pixels, labels=np.zeros((2, 32, 32), np.float32))


def test_mask_errors():
    plain = data2vec.TFData2VecVisionModel(data2vec.Data2VecVisionConfig(**{**TINY, "num_hidden_layers": 1}))
    with pytest.raises(ValueError, match="no mask token: build it with use_mask_token=True"):
        plain(images().numpy(), bool_masked_pos=np.zeros((2, 16), bool))
    masked = data2vec.TFData2VecVisionModel(data2vec.Data2VecVisionConfig(**{**TINY, "num_hidden_layers": 1, "use_mask_token": True}))
    with pytest.raises(ValueError, match=r"shape \(2, 15\), expected \(batch, patches\) = \(2, 16\)"):
        masked(images().numpy(), bool_masked_pos=np.zeros((2, 15), bool))
    with pytest.raises(ValueError, match="must be bool"):
        masked(images().numpy(), bool_masked_pos=np.zeros((2, 16), np.float32))


def test_keras_own_save_format_points_to_save_pretrained_and_export(tmp_path):
    model = data2vec.TFData2VecVisionModel(data2vec.Data2VecVisionConfig(**{**TINY, "num_hidden_layers": 1}))
    with pytest.raises(NotImplementedError, match=r"use save_pretrained\(directory\).*or export\(path\)"):
        model.save(tmp_path / "model.keras")
