"""Workflows that users rely on with the reference library (transformers), checked against it on
tiny random configs with noise added to every weight (issue 10):

1. another number of labels on a fine-tuned checkpoint (every head class that has labels);
2. config constructors take every key that config files hold (derived keys checked, typos raise);
3. segmentation labels at another resolution than the image;
4. a decoder backbone returns its cache;
5. ``data2vec.audio.load_audio``;
6. inference, then training, in one process (the relative-position index).

Plus (issue 11) no modality key in the base config: ``tie_word_embeddings`` is a text key only.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
import transformers
from safetensors.torch import load_file

import data2vec
from tests.audio.test_parity import BASE as AUDIO_BASE
from tests.audio.test_parity import LAYOUTS as AUDIO_LAYOUTS
from tests.helpers import add_noise, assert_close, noisy_batch_norms, reference_model
from tests.text.test_parity import TINY as TEXT_TINY
from tests.vision.test_parity import TINY as VISION_TINY

NAMED = {0: "cat", 1: "dog", 2: "bird"}
NEW_LABELS = 5


# ---------------------------------------------------------------------------- families
def family_of(name: str) -> str:
    return "Text" if "Text" in name else "Audio" if "Audio" in name else "Vision"


def tiny_config(family: str) -> dict:
    if family == "Text":
        return dict(TEXT_TINY)
    if family == "Audio":
        return {**AUDIO_BASE, **AUDIO_LAYOUTS["even_pos_kernel"]}
    return {**VISION_TINY, "use_relative_position_bias": True, "out_indices": [1, 2, 3, 4]}


def reference_config(family: str, **extra):
    values = {**tiny_config(family), **extra}
    if "id2label" in values:
        values.pop("num_labels", None)
    return getattr(transformers, f"Data2Vec{family}Config")(**values)


def inputs_for(name: str, num_labels: int, frames: int | None = None) -> dict:
    """Inputs and labels of the shape each head expects (batch of 2)."""
    generator = torch.Generator().manual_seed(3)
    family = family_of(name)
    if family == "Text":
        ids = torch.randint(3, TEXT_TINY["vocab_size"], (2, 7), generator=generator)
        ids[:, 0] = 0
        mask = torch.ones_like(ids)
        ids[1, 5:], mask[1, 5:] = 1, 0
        inputs = dict(input_ids=ids, attention_mask=mask)
        if name.endswith("TokenClassification"):
            inputs["labels"] = torch.randint(0, num_labels, ids.shape, generator=generator)
        elif name.endswith("SequenceClassification"):
            inputs["labels"] = torch.randint(0, num_labels, (2,), generator=generator)
        return inputs
    if family == "Audio":
        values = torch.randn(2, 900, generator=generator)
        mask = torch.ones(2, 900, dtype=torch.long)
        values[1, 700:], mask[1, 700:] = 0.0, 0
        inputs = dict(input_values=values, attention_mask=mask)
        if name.endswith("FrameClassification"):
            if frames is not None:
                classes = torch.randint(0, num_labels, (2, frames), generator=generator)
                inputs["labels"] = torch.nn.functional.one_hot(classes, num_labels).float()
        elif name.endswith(("SequenceClassification", "XVector")):
            inputs["labels"] = torch.randint(0, num_labels, (2,), generator=generator)
        return inputs
    pixels = torch.randn(2, 3, 32, 32, generator=generator)
    inputs = dict(pixel_values=pixels)
    if name.endswith("ImageClassification"):
        inputs["labels"] = torch.randint(0, num_labels, (2,), generator=generator)
    elif name.endswith("SemanticSegmentation"):
        inputs["labels"] = torch.randint(0, num_labels, (2, 32, 32), generator=generator)
    return inputs


def noisy_reference_folder(name: str, path, **config) -> None:
    """Save a reference model of class ``name`` with noise on every weight (and moved BatchNorm statistics)."""
    torch.manual_seed(0)
    model = add_noise(getattr(transformers, name)(reference_config(family_of(name), **config)))
    noisy_batch_norms(model)
    model.save_pretrained(path)


def output_fields(name: str) -> list[str]:
    if name.endswith("XVector"):
        return ["loss", "logits", "embeddings", "hidden_states"]
    return ["loss", "logits", "hidden_states"]


def run(model, inputs: dict):
    with torch.no_grad():
        return model(**inputs, output_hidden_states=True)


def config_file(folder) -> dict:
    return json.loads((folder / "config.json").read_text())


# ---------------------------------------------------------------------------- 1. another number of labels
LABELLED_HEADS = [
    "Data2VecTextForSequenceClassification",
    "Data2VecTextForTokenClassification",
    "Data2VecAudioForSequenceClassification",
    "Data2VecAudioForAudioFrameClassification",
    "Data2VecAudioForXVector",
    "Data2VecVisionForImageClassification",
    "Data2VecVisionForSemanticSegmentation",
]


@pytest.mark.parametrize("name", LABELLED_HEADS)
def test_new_number_of_labels_on_a_fine_tuned_checkpoint(tmp_path, name):
    noisy_reference_folder(name, tmp_path / "three", id2label=NAMED, label2id={v: k for k, v in NAMED.items()})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = getattr(transformers, name).from_pretrained(
            tmp_path / "three", num_labels=NEW_LABELS, ignore_mismatched_sizes=True, attn_implementation="eager"
        ).eval()
        ours, info = getattr(data2vec, name).from_pretrained(
            tmp_path / "three", num_labels=NEW_LABELS, ignore_mismatched_sizes=True, output_loading_info=True
        )
    fresh = {index: f"LABEL_{index}" for index in range(NEW_LABELS)}
    assert ours.config.id2label == ref.config.id2label == fresh
    assert ours.config.label2id == ref.config.label2id == {label: index for index, label in fresh.items()}
    assert ours.config.num_labels == ref.config.num_labels == NEW_LABELS
    assert info["mismatched_keys"], "the 3-label classifier must be reported as re-initialised"

    # the folders both write: the same config.json, the same tensor names and shapes
    ours.save_pretrained(tmp_path / "ours")
    ref.save_pretrained(tmp_path / "ref")
    ours_config, ref_config = config_file(tmp_path / "ours"), config_file(tmp_path / "ref")
    assert ours_config.keys() == ref_config.keys()
    for key in ref_config.keys() - {"transformers_version"}:
        assert ours_config[key] == ref_config[key], key
    original = load_file(tmp_path / "three" / "model.safetensors")
    ours_tensors, ref_tensors = load_file(tmp_path / "ours" / "model.safetensors"), load_file(tmp_path / "ref" / "model.safetensors")
    assert ours_tensors.keys() == ref_tensors.keys()
    resized = {key for key in ref_tensors if ref_tensors[key].shape != original[key].shape}
    assert resized, "some tensor of the head must have one row (or column) per label"
    for key, tensor in ours_tensors.items():
        assert tensor.shape == ref_tensors[key].shape, key
        if key not in resized:  # everything else is the checkpoint's
            assert torch.equal(tensor, original[key]), key
    assert all(NEW_LABELS in ref_tensors[key].shape for key in resized)

    # same backbone outputs as the reference's re-labelled model; with the same fresh head
    # (ours, read back by the reference), the same logits and loss
    frames = None
    if name.endswith("FrameClassification"):
        frames = run(ours, inputs_for(name, NEW_LABELS)).logits.shape[1]
    inputs = inputs_for(name, NEW_LABELS, frames)
    ours_out, ref_out = run(ours, inputs), run(ref, inputs)
    assert_close(ours_out.hidden_states, ref_out.hidden_states, "hidden_states")
    label_axis = 1 if name.endswith("SemanticSegmentation") else -1
    if not name.endswith("XVector"):
        assert ours_out.logits.shape[label_axis] == NEW_LABELS
    back = getattr(transformers, name).from_pretrained(tmp_path / "ours", attn_implementation="eager").eval()
    back_out = run(back, inputs)
    for field in output_fields(name):
        assert_close(getattr(ours_out, field), getattr(back_out, field), field)
    assert ours_out.loss is not None


@pytest.mark.parametrize("name", ["Data2VecTextForSequenceClassification", "Data2VecVisionForImageClassification"])
def test_same_number_of_labels_keeps_the_names(tmp_path, name):
    noisy_reference_folder(name, tmp_path, id2label=NAMED, label2id={v: k for k, v in NAMED.items()})
    ours = getattr(data2vec, name).from_pretrained(tmp_path, num_labels=3)
    ref = getattr(transformers, name).from_pretrained(tmp_path, num_labels=3)
    assert ours.config.id2label == ref.config.id2label == NAMED


@pytest.mark.parametrize("name", ["Data2VecTextForSequenceClassification", "Data2VecAudioForXVector",
                                  "Data2VecVisionForSemanticSegmentation"])
def test_num_labels_with_id2label_of_another_length_in_one_call_is_an_error(tmp_path, name):
    noisy_reference_folder(name, tmp_path, id2label=NAMED, label2id={v: k for k, v in NAMED.items()})
    with pytest.raises(ValueError, match="num_labels=5 disagrees with id2label"):
        getattr(data2vec, name).from_pretrained(tmp_path, num_labels=5, id2label={0: "a", 1: "b"}, ignore_mismatched_sizes=True)
    config_class = getattr(data2vec, f"Data2Vec{family_of(name)}Config")
    with pytest.raises(ValueError, match="num_labels=5 disagrees with id2label"):
        config_class(num_labels=5, id2label=NAMED)
    # an id2label of the new length (with or without num_labels) names the new classes
    named = {0: "a", 1: "b", 2: "c", 3: "d", 4: "e"}
    config = config_class.from_pretrained(tmp_path, num_labels=5, id2label=named)
    assert config.id2label == named and config.label2id == {"a": 0, "b": 1, "c": 2, "d": 3, "e": 4}


# ---------------------------------------------------------------------------- 2. every key of a config file
FAMILY_HEADS = {
    "Text": "Data2VecTextForSequenceClassification",
    "Audio": "Data2VecAudioForXVector",
    "Vision": "Data2VecVisionForSemanticSegmentation",
}


@pytest.mark.parametrize("family", list(FAMILY_HEADS))
def test_config_constructor_takes_every_key_of_a_config_file(tmp_path, family):
    config_class = getattr(data2vec, f"Data2Vec{family}Config")
    name = FAMILY_HEADS[family]
    noisy_reference_folder(name, tmp_path / "ref", id2label=NAMED, label2id={v: k for k, v in NAMED.items()})
    written = config_file(tmp_path / "ref")
    from_reference = config_class(**written)
    assert from_reference.to_dict() == config_class.from_pretrained(tmp_path / "ref").to_dict()
    assert from_reference.to_dict() == written  # every key, the reference's bookkeeping ones included

    ours = getattr(data2vec, name).from_pretrained(tmp_path / "ref")
    ours.save_pretrained(tmp_path / "ours")
    ours_written = config_file(tmp_path / "ours")
    assert config_class(**ours_written).to_dict() == ours_written

    # a fresh config saved by each library: the same keys, read by both constructors
    fresh = {**tiny_config(family), "num_labels": 4}
    config_class(**fresh).save_pretrained(tmp_path / "ours_fresh")
    getattr(transformers, f"Data2Vec{family}Config")(**fresh).save_pretrained(tmp_path / "ref_fresh")
    ours_fresh, ref_fresh = config_file(tmp_path / "ours_fresh"), config_file(tmp_path / "ref_fresh")
    assert ours_fresh.keys() | {"transformers_version"} == ref_fresh.keys()
    for key in ours_fresh:
        assert ours_fresh[key] == ref_fresh[key], key
    assert config_class(**ref_fresh).to_dict() == ref_fresh
    reference_reads_ours = getattr(transformers, f"Data2Vec{family}Config")(**ours_fresh).to_dict()
    for key, value in ours_fresh.items():
        assert json.loads(json.dumps(reference_reads_ours[key])) == value, key


@pytest.mark.parametrize("family", list(FAMILY_HEADS))
def test_config_constructor_still_rejects_typos_and_a_foreign_model_type(family):
    config_class = getattr(data2vec, f"Data2Vec{family}Config")
    with pytest.raises(TypeError, match="hidden_sise"):
        config_class(hidden_sise=64)
    with pytest.raises(TypeError, match="num_hidden_layer"):
        config_class(**{**config_class().to_dict(), "num_hidden_layer": 3})
    with pytest.raises(ValueError, match="model_type 'bert'"):
        config_class(model_type="bert")


def test_audio_derived_key_is_checked_against_conv_dim(tmp_path):
    layout = AUDIO_LAYOUTS["even_pos_kernel"]
    config = data2vec.Data2VecAudioConfig(**layout, num_feat_extract_layers=4)
    assert config.num_feat_extract_layers == 4 == transformers.Data2VecAudioConfig(**layout).num_feat_extract_layers
    with pytest.raises(ValueError, match=r"num_feat_extract_layers=7 disagrees .* len\(conv_dim\) = 4"):
        data2vec.Data2VecAudioConfig(**layout, num_feat_extract_layers=7)
    # a file's derived value is recomputed from the keys it derives from, so overrides can change them
    config.save_pretrained(tmp_path)
    three = data2vec.Data2VecAudioConfig.from_pretrained(tmp_path, conv_dim=[8, 8, 8], conv_stride=[2, 2, 2], conv_kernel=[3, 3, 3])
    assert three.num_feat_extract_layers == 3 and three.to_dict()["num_feat_extract_layers"] == 3


def test_text_position_embedding_type_key_is_read():
    assert data2vec.Data2VecTextConfig(position_embedding_type="absolute").extra["position_embedding_type"] == "absolute"
    with pytest.raises(ValueError, match="position_embedding_type 'relative_key'"):
        data2vec.Data2VecTextConfig(position_embedding_type="relative_key")


def test_tie_word_embeddings_is_a_text_key_only():
    """Issue 11: the base config carries no modality field."""
    assert "tie_word_embeddings" in data2vec.Data2VecTextConfig.field_names()
    assert not data2vec.Data2VecTextConfig(tie_word_embeddings=False).tie_word_embeddings
    for family in ("Audio", "Vision"):
        config_class = getattr(data2vec, f"Data2Vec{family}Config")
        assert "tie_word_embeddings" not in config_class.field_names()
        assert "tie_word_embeddings" not in config_class().to_dict()
        assert "tie_word_embeddings" not in getattr(transformers, f"Data2Vec{family}Config")().to_dict()
        # a file that holds the key (an older save) keeps it
        assert config_class(tie_word_embeddings=False).to_dict()["tie_word_embeddings"] is False
    assert "tie_word_embeddings" not in data2vec.core.config.Config.field_names()


# ---------------------------------------------------------------------------- 3. segmentation labels at another size
@pytest.mark.parametrize("label_size", [(24, 40), (64, 48), (8, 8)])
def test_segmentation_labels_at_another_resolution(tmp_path, label_size):
    ref = reference_model(transformers.Data2VecVisionForSemanticSegmentation,
                          reference_config("Vision", num_labels=4, use_auxiliary_head=True), tmp_path)
    ours = data2vec.Data2VecVisionForSemanticSegmentation.from_pretrained(tmp_path)
    generator = torch.Generator().manual_seed(7)
    pixels = torch.randn(2, 3, 32, 32, generator=generator)
    labels = torch.randint(0, 4, (2, *label_size), generator=generator)
    labels[torch.rand(labels.shape, generator=generator) < 0.2] = 255  # ignored pixels
    with torch.no_grad():
        ref_out = ref(pixels, labels=labels)
        ours_out = ours(pixels, labels=labels)
        ours_tuple = ours(pixels, labels=labels)
    assert_close(ours_out.loss, ref_out.loss, "loss")
    assert_close(ours_out.logits, ref_out.logits, "logits")
    assert_close(ours_tuple[0], ref_out[0], "loss by index")


def test_segmentation_label_errors_stay(tmp_path):
    ours = data2vec.Data2VecVisionForSemanticSegmentation(data2vec.Data2VecVisionConfig(**VISION_TINY, num_labels=4, out_indices=[1, 2, 3, 4]))
    pixels = torch.randn(2, 3, 32, 32)
    with pytest.raises(ValueError, match="labels"):
        ours(pixels, labels=torch.zeros(3, 24, 40, dtype=torch.long))  # another batch size
    with pytest.raises(ValueError, match="labels"):
        ours(pixels, labels=torch.zeros(2, 1, 24, 40, dtype=torch.long))  # not (batch, height, width)
    with pytest.raises(ValueError, match="labels"):
        ours(pixels, labels=torch.zeros(2, 24, 40))  # floats, not class ids


# ---------------------------------------------------------------------------- 4. a decoder backbone returns its cache
def flat_cache(cache) -> list[torch.Tensor]:
    """Our cache: per layer, (self keys, self values[, cross keys, cross values]) in nested tuples."""
    if isinstance(cache, torch.Tensor):
        return [cache]
    return [tensor for item in cache for tensor in flat_cache(item)]


def flat_reference_cache(cache) -> list[torch.Tensor]:
    self_cache = getattr(cache, "self_attention_cache", cache)
    cross_cache = getattr(cache, "cross_attention_cache", None)
    tensors = []
    for index, layer in enumerate(self_cache.layers):
        tensors += [layer.keys, layer.values]
        if cross_cache is not None:
            tensors += [cross_cache.layers[index].keys, cross_cache.layers[index].values]
    return tensors


@pytest.mark.parametrize("cross_attention", [False, True], ids=["decoder", "decoder+cross"])
def test_decoder_backbone_returns_its_cache_by_default(tmp_path, cross_attention):
    config = reference_config("Text", is_decoder=True, add_cross_attention=cross_attention)
    ref = reference_model(transformers.Data2VecTextModel, config, tmp_path)
    ours = data2vec.Data2VecTextModel.from_pretrained(tmp_path)
    inputs = inputs_for("Data2VecTextModel", 2)
    if cross_attention:
        inputs["encoder_hidden_states"] = torch.randn(2, 5, TEXT_TINY["hidden_size"], generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref_out = ref(**inputs)
        ours_out = ours(**inputs)
    assert ours_out.past_key_values is not None
    assert len(ours_out) == len(ref_out) == 3
    assert_close(ours_out.last_hidden_state, ref_out.last_hidden_state, "last_hidden_state")
    assert_close(ours_out.pooler_output, ref_out.pooler_output, "pooler_output")
    expected = flat_reference_cache(ref_out[2])
    assert_close(flat_cache(ours_out.past_key_values), expected, "past_key_values")
    assert_close(flat_cache(ours_out[2]), expected, "past_key_values by index")
    assert_close(ours_out[0], ref_out[0], "last_hidden_state by index")
    # asked off, or not a decoder: no cache, as the reference
    with torch.no_grad():
        off = ours(**inputs, use_cache=False)
    assert off.past_key_values is None and len(off) == 2


def test_encoder_backbone_returns_no_cache(tmp_path):
    ref = reference_model(transformers.Data2VecTextModel, reference_config("Text"), tmp_path)
    ours = data2vec.Data2VecTextModel.from_pretrained(tmp_path)
    inputs = inputs_for("Data2VecTextModel", 2)
    with torch.no_grad():
        ref_out, ours_out = ref(**inputs), ours(**inputs)
    assert ours_out.past_key_values is None and len(ours_out) == len(ref_out) == 2


# ---------------------------------------------------------------------------- 5. data2vec.audio.load_audio
def test_load_audio_is_exported_from_the_audio_package(tmp_path):
    import soundfile

    from data2vec.audio import load_audio
    from data2vec.audio.io import load_audio as load_audio_from_module

    assert load_audio is load_audio_from_module
    assert "load_audio" in dir(data2vec.audio)
    tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(8000) / 8000)
    soundfile.write(tmp_path / "tone.wav", tone, 8000)
    waveform = load_audio(tmp_path / "tone.wav", sampling_rate=16000)
    assert waveform.dtype == np.float32 and waveform.shape == (16000,)
    np.testing.assert_array_equal(waveform, load_audio_from_module(tmp_path / "tone.wav"))
    with pytest.raises(AttributeError):
        data2vec.audio.load_audios  # noqa: B018


# ---------------------------------------------------------------------------- 6. inference, then training
VISION_CLASSES = ["Data2VecVisionModel", "Data2VecVisionForImageClassification", "Data2VecVisionForSemanticSegmentation"]
# A grid no other test uses (5x5 patches, and 6x6 through interpolate_pos_encoding), so that this
# test's inference-mode forward is the first to ask for these relative-position indices.
BIAS_CONFIG = dict(VISION_TINY, image_size=40, use_relative_position_bias=True, use_shared_relative_position_bias=True,
                   use_absolute_position_embeddings=True, num_labels=3, out_indices=[2, 3, 4, 5], drop_path_rate=0.0)


def vision_model(name: str, seed: int, device="cpu"):
    torch.manual_seed(seed)
    return add_noise(getattr(data2vec, name)(data2vec.Data2VecVisionConfig(**BIAS_CONFIG)), seed).to(device)


def training_step(model, size: int, device="cpu") -> None:
    model.train()
    model.zero_grad()
    generator = torch.Generator().manual_seed(size)
    pixels = torch.randn(2, 3, size, size, generator=generator).to(device)
    interpolate = size != BIAS_CONFIG["image_size"]
    if isinstance(model, data2vec.Data2VecVisionForImageClassification):
        loss = model(pixels, labels=torch.tensor([0, 2], device=device), interpolate_pos_encoding=interpolate).loss
    elif isinstance(model, data2vec.Data2VecVisionForSemanticSegmentation):
        labels = torch.randint(0, 3, (2, size, size), generator=generator).to(device)
        loss = model(pixels, labels=labels, interpolate_pos_encoding=interpolate).loss
    else:
        loss = model(pixels, interpolate_pos_encoding=interpolate).last_hidden_state.square().mean()
    loss.backward()
    tables = [module.table for module in model.modules() if isinstance(module, data2vec.vision.embeddings.RelativePositionBias)]
    assert tables and all(table.grad is not None and table.grad.abs().sum() > 0 for table in tables)


def inference_then_training(device="cpu") -> None:
    for index, name in enumerate(VISION_CLASSES):
        first = vision_model(name, seed=index, device=device).eval()
        with torch.inference_mode():
            for size in (40, 48):  # the trained grid and another one
                first(torch.randn(1, 3, size, size, device=device), interpolate_pos_encoding=size != 40)
        for size in (40, 48):
            training_step(first, size, device)  # the same model
            other_name = VISION_CLASSES[(index + 1) % len(VISION_CLASSES)]
            training_step(vision_model(other_name, seed=10 + index, device=device), size, device)  # another one
        with torch.inference_mode():  # and back to evaluation
            first.eval()(torch.randn(1, 3, 40, 40, device=device))


def test_inference_mode_then_training_in_one_process():
    inference_then_training()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_inference_mode_then_training_on_cuda():
    inference_then_training("cuda")
    model = vision_model("Data2VecVisionModel", seed=0, device="cuda")
    indices = [module.index for module in model.modules() if isinstance(module, data2vec.vision.embeddings.RelativePositionBias)]
    assert indices and all(index.device.type == "cuda" for index in indices)


def test_relative_position_index_is_a_buffer_moved_with_the_model_and_not_saved(tmp_path, monkeypatch):
    model = vision_model("Data2VecVisionForSemanticSegmentation", seed=0)
    biases = [module for module in model.modules() if isinstance(module, data2vec.vision.embeddings.RelativePositionBias)]
    assert len(biases) == 1 + BIAS_CONFIG["num_hidden_layers"]
    expected = data2vec.vision.embeddings.relative_position_index((5, 5))
    for bias in biases:
        assert torch.equal(bias.index, expected) and bias.index.dtype == torch.long
        assert any(buffer is bias.index for buffer in model.buffers())
    assert not any("index" in key for key in model.state_dict())
    model.save_pretrained(tmp_path)
    assert not any("relative_position_index" in key for key in load_file(tmp_path / "model.safetensors"))
    # the trained grid reads the buffer: no index is built (or copied) in a forward
    def no_new_index(*args, **kwargs):
        raise AssertionError("the trained grid's index must come from the buffer")

    monkeypatch.setattr(data2vec.vision.embeddings, "relative_position_index", no_new_index)
    with torch.no_grad():
        model.eval()(torch.randn(1, 3, 40, 40))
    monkeypatch.undo()
    model.to("meta")
    assert all(bias.index.device.type == "meta" for bias in biases)


def test_relative_position_index_function_makes_fresh_normal_tensors():
    """The TF port and other callers keep ``relative_position_index(grid)``; a call under
    inference_mode returns a tensor of that call only, never one later calls receive."""
    from data2vec.vision.embeddings import relative_position_index

    with torch.inference_mode():
        inside = relative_position_index((3, 7))
    outside = relative_position_index((3, 7))
    assert inside.is_inference() and not outside.is_inference()
    assert torch.equal(inside, outside) and outside.shape == (22, 22)
    outside[0, 0] = -1  # a caller's edit does not reach the next caller
    assert relative_position_index((3, 7))[0, 0] == (2 * 3 - 1) * (2 * 7 - 1) + 2
