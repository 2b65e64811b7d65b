"""The Keras 3 vision classes in TensorFlow's graph world: ``tf.function`` (and XLA with
``jit_compile=True``) gives the eager outputs, ``model.export`` writes a SavedModel that
``tf.saved_model.load`` runs with the same logits, and a Keras optimizer step lowers the loss."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
pytestmark = pytest.mark.tf
tf = pytest.importorskip("tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import data2vec  # noqa: E402
from tests.vision.tf.common import assert_close, images, pytorch_folder  # noqa: E402

ALL_OUTPUTS = dict(output_hidden_states=True, output_attentions=True)
FIELDS = {
    "Data2VecVisionModel": ["last_hidden_state", "hidden_states", "attentions"],
    "Data2VecVisionForImageClassification": ["loss", "logits", "hidden_states", "attentions"],
    "Data2VecVisionForSemanticSegmentation": ["loss", "logits", "hidden_states", "attentions"],
}
# small (2-3 layers): TensorFlow spends a few milliseconds per op when it traces a graph
CONFIGS = {
    "Data2VecVisionModel": dict(
        num_hidden_layers=2, use_mask_token=True, use_absolute_position_embeddings=True, use_relative_position_bias=True
    ),
    "Data2VecVisionForImageClassification": dict(num_hidden_layers=2, num_labels=3, use_shared_relative_position_bias=True),
    "Data2VecVisionForSemanticSegmentation": dict(
        num_hidden_layers=3, num_labels=3, use_relative_position_bias=True, out_indices=[1, 2, 3, 4],
        auxiliary_num_convs=2, pool_scales=[1, 2],
    ),
}


def inputs(name: str, batch: int = 2) -> dict[str, np.ndarray]:
    """Keyword inputs of class ``name``: pixel values plus a mask or labels."""
    rng = np.random.default_rng(5)
    found = {"pixel_values": images(batch).numpy()}
    if name == "Data2VecVisionModel":
        found["bool_masked_pos"] = rng.random((batch, 16)) < 0.4
    elif name == "Data2VecVisionForImageClassification":
        found["labels"] = rng.integers(0, 3, (batch,))
    else:
        found["labels"] = rng.integers(0, 3, (batch, 32, 32))
    return found


def tf_model(name: str, path):
    pytorch_folder(name, path, **CONFIGS[name])
    return getattr(data2vec, "TF" + name).from_pretrained(path)


# XLA: the encoder classes (compiling the segmentation head as well takes several more seconds)
@pytest.mark.parametrize(
    "name,jit_compile", [(name, False) for name in FIELDS] + [(name, True) for name in list(FIELDS)[:2]]
)
def test_tf_function_gives_the_eager_outputs(tmp_path, name, jit_compile):
    model = tf_model(name, tmp_path)
    given = inputs(name)
    eager = model(**given, **ALL_OUTPUTS)
    compiled = tf.function(lambda kwargs: model(**kwargs, **ALL_OUTPUTS), jit_compile=jit_compile)
    traced = compiled({key: tf.constant(value) for key, value in given.items()})
    assert type(traced) is type(eager)  # the output dataclass comes out of tf.function whole
    for field in FIELDS[name]:
        assert_close(getattr(traced, field), getattr(eager, field), field, atol=1e-5)


def test_tf_function_with_a_dynamic_batch(tmp_path):
    model = tf_model("Data2VecVisionForImageClassification", tmp_path)
    signature = [tf.TensorSpec((None, 3, 32, 32), tf.float32)]
    compiled = tf.function(lambda pixels: model(pixels).logits, input_signature=signature)
    for batch in (1, 3):
        pixels = images(batch).numpy()
        assert_close(compiled(pixels), model(pixels).logits, f"batch {batch}", atol=1e-5)


def test_unknown_image_size_while_tracing_is_a_clear_error(tmp_path):
    model = tf_model("Data2VecVisionModel", tmp_path)
    compiled = tf.function(lambda pixels: model(pixels).last_hidden_state,
                           input_signature=[tf.TensorSpec((None, 3, None, None), tf.float32)])
    with pytest.raises(ValueError, match=r"height and width must be known.*input_signature"):
        compiled(images().numpy())


@pytest.mark.parametrize("name", list(FIELDS))
def test_exported_saved_model_gives_the_same_outputs(tmp_path, name):
    model = tf_model(name, tmp_path / "folder")
    batches = [images(batch, seed=batch).numpy() for batch in (2, 3)]  # the batch dimension is dynamic
    field = "last_hidden_state" if name == "Data2VecVisionModel" else "logits"
    expected = [getattr(model(pixels), field) for pixels in batches]
    model.export(tmp_path / "exported", verbose=False)
    reloaded = tf.saved_model.load(str(tmp_path / "exported"))
    for pixels, wanted in zip(batches, expected):
        served = reloaded.serve(tf.constant(pixels))
        assert set(served) == {field}
        assert_close(served[field], wanted, f"served {field}", atol=1e-5)
        signature = reloaded.signatures["serving_default"](pixel_values=tf.constant(pixels))
        assert_close(signature[field], wanted, f"serving_default {field}", atol=1e-5)


def test_export_of_a_model_with_pooler_serves_both_outputs(tmp_path):
    config = data2vec.Data2VecVisionConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                                           intermediate_size=37, image_size=[32, 48], patch_size=8)
    model = data2vec.TFData2VecVisionModel(config, add_pooling_layer=True)
    model.export(tmp_path, verbose=False)
    reloaded = tf.saved_model.load(str(tmp_path))
    pixels = images(height=32, width=48).numpy()  # the default signature has the config's image_size
    served = reloaded.serve(pixels)
    expected = model(pixels)
    assert_close(served["pooler_output"], expected.pooler_output, "pooler_output", atol=1e-5)
    assert_close(served["last_hidden_state"], expected.last_hidden_state, "last_hidden_state", atol=1e-5)


@pytest.mark.parametrize("name", ["Data2VecVisionForImageClassification", "Data2VecVisionForSemanticSegmentation"])
def test_one_optimizer_step_lowers_the_loss(tmp_path, name):
    """An eager step (a traced one gives the same numbers, see the tf.function tests, but traces
    forward and backward graphs for half a minute on two cores)."""
    pytorch_folder(name, tmp_path, hidden_dropout_prob=0.1, drop_path_rate=0.2, **CONFIGS[name])
    model = getattr(data2vec, "TF" + name).from_pretrained(tmp_path)
    given = {key: tf.constant(value) for key, value in inputs(name, batch=4).items()}
    first, second = (float(model(**given, training=True).loss) for _ in range(2))
    assert first != second  # dropout and stochastic depth are on in training
    optimizer = keras.optimizers.Adam(learning_rate=1e-3)
    before = float(model(**given).loss)  # eval mode: deterministic
    moving_mean = [variable for variable in model.non_trainable_variables if "moving_mean" in variable.path]
    statistics = [variable.numpy() for variable in moving_mean]
    with tf.GradientTape() as tape:
        loss = model(**given, training=True).loss
    gradients = tape.gradient(loss, model.trainable_variables)
    optimizer.apply_gradients(zip(gradients, model.trainable_variables))
    assert len(gradients) == len(model.trainable_variables) > 0
    assert all(gradient is not None for gradient in gradients)
    after = float(model(**given).loss)
    assert after < before - 1e-3, (before, after)
    # BatchNorm (segmentation) updated its running statistics in training mode
    assert all(not np.array_equal(v.numpy(), old) for v, old in zip(moving_mean, statistics))
    assert bool(moving_mean) == name.endswith("Segmentation")
