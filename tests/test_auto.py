"""Auto classes: for a folder saved by each of the 15 PyTorch classes, here and by the reference
library (transformers), ``AutoConfig`` / ``AutoModel`` / ``AutoModelFor...`` pick the right class
and load the same weights as the concrete class; ``AutoProcessor`` gives each family's
preprocessor; wrong tasks, unknown model types and missing files are one-line errors."""

from __future__ import annotations

import json
import re
import warnings

import numpy as np
import pytest
import torch
import transformers
from tokenizers import ByteLevelBPETokenizer

import data2vec
from data2vec import auto
from data2vec.core.modeling import CheckpointWarning
from tests.helpers import add_noise, assert_close, hub_cache, noisy_batch_norms

TINY = {
    "text": dict(
        vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
        max_position_embeddings=40, type_vocab_size=2, layer_norm_eps=1e-5, num_labels=3,
    ),
    "audio": dict(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37, vocab_size=12,
        conv_dim=(16, 16, 16), conv_kernel=(5, 3, 3), conv_stride=(3, 2, 2), num_conv_pos_embeddings=2,
        conv_pos_kernel_size=5, num_conv_pos_embedding_groups=4, classifier_proj_size=8, tdnn_dim=(16, 16, 12),
        tdnn_kernel=(3, 3, 1), tdnn_dilation=(1, 2, 1), xvector_output_dim=8, num_labels=3,
    ),
    "vision": dict(
        hidden_size=32, num_hidden_layers=4, num_attention_heads=4, intermediate_size=37, image_size=32,
        patch_size=8, auxiliary_channels=16, out_indices=[1, 2, 3, 4], num_labels=3,
    ),
}
CONFIG = {"text": "Data2VecTextConfig", "audio": "Data2VecAudioConfig", "vision": "Data2VecVisionConfig"}
BACKBONE = {"text": "Data2VecTextModel", "audio": "Data2VecAudioModel", "vision": "Data2VecVisionModel"}
MODEL_TYPE = {"text": "data2vec-text", "audio": "data2vec-audio", "vision": "data2vec-vision"}

# (class, family, the Auto class that builds it, extra config keys)
CASES = [
    ("Data2VecTextModel", "text", "AutoModel", {}),
    ("Data2VecTextForCausalLM", "text", "AutoModelForCausalLM", {"is_decoder": True}),
    ("Data2VecTextForMaskedLM", "text", "AutoModelForMaskedLM", {}),
    ("Data2VecTextForSequenceClassification", "text", "AutoModelForSequenceClassification", {}),
    ("Data2VecTextForMultipleChoice", "text", "AutoModelForMultipleChoice", {}),
    ("Data2VecTextForTokenClassification", "text", "AutoModelForTokenClassification", {}),
    ("Data2VecTextForQuestionAnswering", "text", "AutoModelForQuestionAnswering", {}),
    ("Data2VecAudioModel", "audio", "AutoModel", {}),
    ("Data2VecAudioForCTC", "audio", "AutoModelForCTC", {}),
    ("Data2VecAudioForSequenceClassification", "audio", "AutoModelForAudioClassification", {}),
    ("Data2VecAudioForAudioFrameClassification", "audio", "AutoModelForAudioFrameClassification", {}),
    ("Data2VecAudioForXVector", "audio", "AutoModelForAudioXVector", {}),
    ("Data2VecVisionModel", "vision", "AutoModel", {}),
    ("Data2VecVisionForImageClassification", "vision", "AutoModelForImageClassification", {}),
    ("Data2VecVisionForSemanticSegmentation", "vision", "AutoModelForSemanticSegmentation", {}),
]
TASK_AUTO_NAMES = [name for name in auto.__all__ if name.startswith("AutoModel")]


def save_model(folder, name: str, family: str, by: str, **extra):
    """Save a noisy model of class ``name`` with ours (``by="ours"``) or the reference library."""
    library = data2vec if by == "ours" else transformers
    config = getattr(library, CONFIG[family])(**{**TINY[family], **extra})
    torch.manual_seed(0)
    model = add_noise(getattr(library, name)(config)).eval()
    noisy_batch_norms(model)
    model.save_pretrained(folder)
    return model


def quietly(load, *args, **kwargs):
    """Load, ignoring the unused / freshly initialised weights of a backbone loaded from a head."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CheckpointWarning)
        return load(*args, **kwargs)


def strictly(load, *args, **kwargs):
    """Load, failing on any missing or unused weight."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", CheckpointWarning)
        return load(*args, **kwargs)


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    state_a, state_b = a.state_dict(), b.state_dict()
    assert state_a.keys() == state_b.keys()
    for key in state_a:
        assert torch.equal(state_a[key], state_b[key]), key


# ------------------------------------------------------------------------- the class tables


def test_cases_cover_every_pytorch_model_class():
    public = {
        name for name in data2vec.__all__ if name.startswith("Data2Vec") and ("For" in name or name.endswith("Model"))
    }
    assert {name for name, *_ in CASES} == public and len(public) == 15
    assert set(TASK_AUTO_NAMES) == {auto_name for *_, auto_name, _ in CASES} | {
        "AutoModelForAudioClassification"
    } and len(TASK_AUTO_NAMES) == 13
    assert set(auto.__all__) - {"Data2VecAudioProcessor"} <= set(data2vec.__all__)
    # auto.py names this file (to place a folder without config.json) without importing the classes.
    assert auto.PREPROCESSOR_CONFIG_NAME == data2vec.Data2VecAudioFeatureExtractor.config_file
    assert auto.PREPROCESSOR_CONFIG_NAME == data2vec.Data2VecVisionImageProcessor.config_file


@pytest.mark.parametrize("auto_name", TASK_AUTO_NAMES)
def test_task_tables_are_the_reference_auto_tables(auto_name):
    reference = getattr(transformers, auto_name)._model_mapping._model_mapping
    expected = {model_type: name for model_type, name in reference.items() if model_type.startswith("data2vec")}
    auto_class = getattr(data2vec, auto_name)
    assert auto_class._classes == expected
    assert auto_class is getattr(auto, auto_name) and auto_class.__qualname__ == auto_name and auto_class.__doc__


# ------------------------------------------------------------------------- one folder per class


@pytest.mark.parametrize("by", ["ours", "reference"])
@pytest.mark.parametrize("name, family, auto_name, extra", CASES, ids=[case[0] for case in CASES])
def test_auto_classes_load_the_folder_of_each_class(tmp_path, by, name, family, auto_name, extra):
    save_model(tmp_path, name, family, by, **extra)
    assert json.loads((tmp_path / "config.json").read_text())["architectures"] == [name]

    config = data2vec.AutoConfig.from_pretrained(tmp_path)
    assert type(config) is getattr(data2vec, CONFIG[family]) and config.hidden_size == 32

    concrete = strictly(getattr(data2vec, name).from_pretrained, tmp_path)
    model = strictly(getattr(data2vec, auto_name).from_pretrained, tmp_path)
    assert type(model) is getattr(data2vec, name)
    assert_same_weights(model, concrete)
    assert data2vec.AutoModel.saved_class(tmp_path) is getattr(data2vec, name)
    assert getattr(data2vec, auto_name).class_for(tmp_path) is getattr(data2vec, name)

    # AutoModel gives the backbone whatever head was saved, with the backbone's weights of the folder.
    backbone = quietly(data2vec.AutoModel.from_pretrained, tmp_path)
    assert type(backbone) is getattr(data2vec, BACKBONE[family])
    if name != BACKBONE[family]:
        saved_backbone = concrete.backbone.state_dict()
        shared = [key for key in backbone.state_dict() if key in saved_backbone]
        assert len(shared) >= len(saved_backbone) - 2  # all but a pooler
        for key in shared:
            assert torch.equal(backbone.state_dict()[key], saved_backbone[key]), key


def family_inputs(family: str) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    if family == "text":
        ids = torch.randint(3, TINY["text"]["vocab_size"], (2, 7), generator=generator)
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    if family == "audio":
        return {"input_values": torch.randn(2, 900, generator=generator)}
    return {"pixel_values": torch.randn(2, 3, 32, 32, generator=generator)}


@pytest.mark.parametrize(
    "name, family, auto_name, prefix",
    [
        ("Data2VecTextForSequenceClassification", "text", "AutoModelForSequenceClassification", "data2vec_text"),
        ("Data2VecAudioForCTC", "audio", "AutoModelForCTC", "data2vec_audio"),
        ("Data2VecVisionForSemanticSegmentation", "vision", "AutoModelForSemanticSegmentation", "data2vec_vision"),
    ],
)
def test_auto_loaded_models_give_the_reference_outputs(tmp_path, name, family, auto_name, prefix):
    reference = save_model(tmp_path, name, family, "reference")
    inputs = family_inputs(family)
    head = getattr(data2vec, auto_name).from_pretrained(tmp_path)
    backbone = quietly(data2vec.AutoModel.from_pretrained, tmp_path)
    with torch.no_grad():
        assert_close(head(**inputs).logits, reference(**inputs).logits, "logits")
        assert_close(
            backbone(**inputs).last_hidden_state,
            getattr(reference, prefix)(**inputs).last_hidden_state,
            "last_hidden_state",
        )


# ------------------------------------------------------------------------- options and sources


def test_overrides_reach_from_pretrained(tmp_path):
    save_model(tmp_path, "Data2VecTextModel", "text", "ours", num_labels=2)
    model = quietly(
        data2vec.AutoModelForSequenceClassification.from_pretrained, tmp_path, num_labels=5, dtype=torch.float64
    )
    assert type(model) is data2vec.Data2VecTextForSequenceClassification
    assert model.config.num_labels == 5 and model.dtype == torch.float64
    assert model(**family_inputs("text")).logits.shape == (2, 5)
    model, info = quietly(data2vec.AutoModel.from_pretrained, tmp_path, output_loading_info=True)
    assert info["missing_keys"] == [] and info["unexpected_keys"] == []
    with pytest.raises(TypeError, match="not_a_key"):
        data2vec.AutoModel.from_pretrained(tmp_path, not_a_key=1)


def test_ignore_mismatched_sizes_passes_through(tmp_path):
    save_model(tmp_path, "Data2VecVisionForImageClassification", "vision", "ours")  # 3 labels
    with pytest.raises(ValueError, match="ignore_mismatched_sizes"):
        data2vec.AutoModelForImageClassification.from_pretrained(tmp_path, num_labels=4)
    model = quietly(
        data2vec.AutoModelForImageClassification.from_pretrained, tmp_path, num_labels=4, ignore_mismatched_sizes=True
    )
    assert model.config.num_labels == 4 and model(**family_inputs("vision")).logits.shape == (2, 4)
    config = data2vec.AutoConfig.from_pretrained(tmp_path, num_labels=4)
    model = quietly(
        data2vec.AutoModelForImageClassification.from_pretrained, tmp_path, config=config, ignore_mismatched_sizes=True
    )
    assert model.config.num_labels == 4


def test_from_config_and_for_model():
    config = data2vec.AutoConfig.for_model("data2vec-audio", **TINY["audio"])
    assert type(config) is data2vec.Data2VecAudioConfig and config.num_labels == 3
    assert type(data2vec.AutoModelForAudioXVector.from_config(config)) is data2vec.Data2VecAudioForXVector
    assert type(data2vec.AutoModel.from_config(config)) is data2vec.Data2VecAudioModel
    assert data2vec.AutoModel.saved_class(config) is data2vec.Data2VecAudioModel  # no architectures: the backbone
    values = data2vec.Data2VecVisionConfig(**TINY["vision"]).to_dict()
    assert type(data2vec.AutoConfig.from_dict(values)) is data2vec.Data2VecVisionConfig


def test_hub_id_resolves_through_the_cache(tmp_path):
    save_model(tmp_path / "files", "Data2VecAudioForCTC", "audio", "reference")
    data2vec.Data2VecAudioFeatureExtractor().save_pretrained(tmp_path / "files")
    hub_cache(tmp_path / "cache", "someone/tiny-data2vec-audio", tmp_path / "files")
    hub = dict(cache_dir=tmp_path / "cache")
    config = data2vec.AutoConfig.from_pretrained("someone/tiny-data2vec-audio", **hub)
    assert type(config) is data2vec.Data2VecAudioConfig
    model = data2vec.AutoModelForCTC.from_pretrained("someone/tiny-data2vec-audio", **hub)
    assert type(model) is data2vec.Data2VecAudioForCTC
    assert data2vec.AutoModel.saved_class("someone/tiny-data2vec-audio", **hub) is data2vec.Data2VecAudioForCTC
    processor = data2vec.AutoProcessor.from_pretrained("someone/tiny-data2vec-audio", **hub)
    assert type(processor) is data2vec.Data2VecAudioFeatureExtractor


def test_config_without_model_type_is_placed_by_architectures(tmp_path):
    save_model(tmp_path, "Data2VecVisionForImageClassification", "vision", "ours")
    values = json.loads((tmp_path / "config.json").read_text())
    del values["model_type"]
    (tmp_path / "config.json").write_text(json.dumps(values))
    assert type(data2vec.AutoConfig.from_pretrained(tmp_path)) is data2vec.Data2VecVisionConfig
    assert data2vec.AutoModel.saved_class(tmp_path) is data2vec.Data2VecVisionForImageClassification


def test_tensorflow_architecture_names_give_the_pytorch_class(tmp_path):
    save_model(tmp_path, "Data2VecVisionForSemanticSegmentation", "vision", "ours")
    values = json.loads((tmp_path / "config.json").read_text())
    values["architectures"] = ["TFData2VecVisionForSemanticSegmentation"]
    (tmp_path / "config.json").write_text(json.dumps(values))
    assert data2vec.AutoModel.saved_class(tmp_path) is data2vec.Data2VecVisionForSemanticSegmentation


# ------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "saved, auto_name, message",
    [
        (
            "Data2VecTextForMaskedLM",
            "AutoModelForCTC",
            "AutoModelForCTC has no class for model_type 'data2vec-text'; it supports data2vec-audio. "
            "This model was saved from Data2VecTextForMaskedLM: load it with AutoModelForMaskedLM.",
        ),
        (
            "Data2VecAudioForSequenceClassification",
            "AutoModelForSequenceClassification",
            "AutoModelForSequenceClassification has no class for model_type 'data2vec-audio'; it supports "
            "data2vec-text. This model was saved from Data2VecAudioForSequenceClassification: load it with "
            "AutoModelForAudioClassification.",
        ),
        (
            "Data2VecVisionModel",
            "AutoModelForMaskedLM",
            "AutoModelForMaskedLM has no class for model_type 'data2vec-vision'; it supports data2vec-text. "
            "This model was saved from Data2VecVisionModel: load it with AutoModel or AutoModel.saved_class(folder).",
        ),
    ],
)
def test_task_the_family_lacks_is_an_error_naming_the_supported_types(tmp_path, saved, auto_name, message):
    family = next(case[1] for case in CASES if case[0] == saved)
    save_model(tmp_path, saved, family, "ours")
    with pytest.raises(ValueError, match=re.escape(message)):
        getattr(data2vec, auto_name).from_pretrained(tmp_path)


def test_unknown_model_type_names_the_supported_ones(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert", "architectures": ["BertModel"]}))
    expected = "model_type 'bert', which is not a data2vec model; supported: data2vec-audio, data2vec-text, data2vec-vision"
    for auto_class in (data2vec.AutoConfig, data2vec.AutoModel, data2vec.AutoProcessor):
        with pytest.raises(ValueError, match=re.escape(expected)):
            auto_class.from_pretrained(tmp_path)
    with pytest.raises(ValueError, match="unknown model_type 'bert'; supported: data2vec-audio"):
        data2vec.AutoConfig.for_model("bert")
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["BertModel"]}))
    with pytest.raises(ValueError, match="has no model_type and its architectures"):
        data2vec.AutoConfig.from_pretrained(tmp_path)


def test_architectures_of_another_family_is_an_error(tmp_path):
    save_model(tmp_path, "Data2VecTextModel", "text", "ours")
    values = json.loads((tmp_path / "config.json").read_text())
    values["architectures"] = ["Data2VecAudioForCTC"]
    (tmp_path / "config.json").write_text(json.dumps(values))
    with pytest.raises(ValueError, match="model_type 'data2vec-text' but architectures names Data2VecAudioForCTC"):
        data2vec.AutoModel.saved_class(tmp_path)


def test_missing_config_json(tmp_path):
    for auto_class in (data2vec.AutoConfig, data2vec.AutoModel, data2vec.AutoModelForCTC):
        with pytest.raises(FileNotFoundError, match=re.escape(f"config.json not found in folder {str(tmp_path)!r}")):
            auto_class.from_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match="config.json not found in .*nor preprocessor files") as error:
        data2vec.AutoProcessor.from_pretrained(tmp_path)
    assert "\n" not in str(error.value)


def test_auto_classes_are_not_instantiated():
    with pytest.raises(TypeError, match=re.escape("AutoModelForCTC.from_pretrained(folder)")):
        data2vec.AutoModelForCTC()
    with pytest.raises(TypeError, match="AutoProcessor.from_pretrained"):
        data2vec.AutoProcessor()


# ------------------------------------------------------------------------- preprocessors

CTC_VOCAB = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4, "E": 5, "T": 6, "A": 7, "O": 8, "H": 9, "N": 10}
CORPUS = ["the quick brown fox jumps over the lazy dog", "hello world, hello data2vec", "a b c d e f g"] * 20


@pytest.fixture(scope="module")
def bpe_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bpe")
    trainer = ByteLevelBPETokenizer()
    trainer.train_from_iterator(
        CORPUS, vocab_size=300, min_frequency=2, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
        show_progress=False,
    )
    trainer.save_model(str(folder))
    return folder


def model_config_into(folder, family):
    getattr(data2vec, CONFIG[family])(**TINY[family]).save_pretrained(folder)


@pytest.mark.parametrize("by", ["ours", "reference"])
def test_text_folder_gives_the_tokenizer(tmp_path, bpe_files, by):
    if by == "ours":
        data2vec.Data2VecTextTokenizer.from_pretrained(bpe_files).save_pretrained(tmp_path)
    else:
        transformers.RobertaTokenizer.from_pretrained(bpe_files).save_pretrained(tmp_path)
    model_config_into(tmp_path, "text")
    tokenizer = data2vec.AutoProcessor.from_pretrained(tmp_path)
    assert type(tokenizer) is data2vec.Data2VecTextTokenizer
    expected = data2vec.Data2VecTextTokenizer.from_pretrained(bpe_files)("hello world")["input_ids"]
    assert tokenizer("hello world")["input_ids"] == expected
    # Without config.json the tokenizer files still tell the family.
    (tmp_path / "config.json").unlink()
    assert type(data2vec.AutoProcessor.from_pretrained(tmp_path)) is data2vec.Data2VecTextTokenizer
    assert data2vec.AutoProcessor.from_pretrained(tmp_path, model_max_length=7).model_max_length == 7


@pytest.mark.parametrize("by", ["ours", "reference"])
def test_vision_folder_gives_the_image_processor(tmp_path, by):
    if by == "ours":
        data2vec.Data2VecVisionImageProcessor(size=48, crop_size=32, do_center_crop=True).save_pretrained(tmp_path)
    else:
        transformers.BeitImageProcessor(
            size={"height": 48, "width": 48}, crop_size={"height": 32, "width": 32}, do_center_crop=True
        ).save_pretrained(tmp_path)
    model_config_into(tmp_path, "vision")
    processor = data2vec.AutoProcessor.from_pretrained(tmp_path)
    assert type(processor) is data2vec.Data2VecVisionImageProcessor
    image = np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    assert processor(image, return_tensors="pt")["pixel_values"].shape == (1, 3, 32, 32)
    (tmp_path / "config.json").unlink()
    assert type(data2vec.AutoProcessor.from_pretrained(tmp_path)) is data2vec.Data2VecVisionImageProcessor


def test_audio_folder_gives_the_feature_extractor(tmp_path):
    data2vec.Data2VecAudioFeatureExtractor(return_attention_mask=True).save_pretrained(tmp_path)
    model_config_into(tmp_path, "audio")
    extractor = data2vec.AutoProcessor.from_pretrained(tmp_path)
    assert type(extractor) is data2vec.Data2VecAudioFeatureExtractor and extractor.return_attention_mask
    assert data2vec.AutoProcessor.from_pretrained(tmp_path, return_attention_mask=False).return_attention_mask is False


@pytest.mark.parametrize("by", ["ours", "reference"])
def test_audio_folder_with_vocabulary_gives_extractor_and_ctc_tokenizer(tmp_path, by):
    (tmp_path / "v.json").write_text(json.dumps(CTC_VOCAB))
    folder = tmp_path / "model"
    if by == "ours":
        auto.Data2VecAudioProcessor(
            data2vec.Data2VecAudioFeatureExtractor(), data2vec.Data2VecAudioCTCTokenizer(tmp_path / "v.json")
        ).save_pretrained(folder)
    else:  # transformers 5 writes processor_config.json (the extractor's settings inside), no preprocessor_config.json
        transformers.Wav2Vec2Processor(
            feature_extractor=transformers.Wav2Vec2FeatureExtractor(),
            tokenizer=transformers.Wav2Vec2CTCTokenizer(str(tmp_path / "v.json")),
        ).save_pretrained(folder)
    model_config_into(folder, "audio")
    processor = data2vec.AutoProcessor.from_pretrained(folder)
    assert type(processor) is auto.Data2VecAudioProcessor
    assert type(processor.feature_extractor) is data2vec.Data2VecAudioFeatureExtractor
    assert type(processor.tokenizer) is data2vec.Data2VecAudioCTCTokenizer
    assert processor.sampling_rate == 16000

    waveforms = [np.random.default_rng(0).standard_normal(400).astype(np.float32), np.zeros(300, np.float32)]
    batch = processor(waveforms, sampling_rate=16000, padding=True, return_tensors="pt", text=["THE", "A NO"])
    expected = data2vec.Data2VecAudioFeatureExtractor()(
        waveforms, sampling_rate=16000, padding=True, return_tensors="pt"
    )
    assert torch.equal(batch["input_values"], expected["input_values"])
    assert batch["labels"].tolist() == [[6, 9, 5, -100], [7, 4, 10, 8]]
    assert processor.batch_decode(torch.tensor([[6, 6, 0, 9, 5], [7, 4, 10, 8, 8]])) == ["THE", "A NO"]
    assert processor(text="THE")["input_ids"] == [6, 9, 5]
    with pytest.raises(ValueError, match="pass audio"):
        processor()

    # The vocabulary alone gives the CTC tokenizer; the settings alone the feature extractor.
    for name in ("preprocessor_config.json", "processor_config.json"):
        (folder / name).unlink(missing_ok=True)
    assert type(data2vec.AutoProcessor.from_pretrained(folder)) is data2vec.Data2VecAudioCTCTokenizer


@pytest.mark.parametrize(
    "family, missing",
    [
        ("text", "no tokenizer files in .*: expected tokenizer.json, or vocab.json \\+ merges.txt"),
        ("vision", "preprocessor_config.json not found in folder"),
        ("audio", "preprocessor_config.json not found in folder"),
    ],
)
def test_folder_without_preprocessor_files_names_the_missing_file(tmp_path, family, missing):
    model_config_into(tmp_path, family)
    with pytest.raises(FileNotFoundError, match=missing) as error:
        data2vec.AutoProcessor.from_pretrained(tmp_path)
    assert "\n" not in str(error.value)
