"""Checkpoint I/O of the text family: round trips with the reference, file formats, the Hub
cache offline, and the errors a user meets with bad files."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest
import torch
import transformers
from safetensors.torch import load_file

import data2vec
from data2vec.core.modeling import CheckpointWarning
from tests.helpers import add_noise, assert_close, hub_cache, reference_model
from tests.text.test_parity import TINY, padded_batch

CLASSES = [
    "Data2VecTextModel",
    "Data2VecTextForCausalLM",
    "Data2VecTextForMaskedLM",
    "Data2VecTextForSequenceClassification",
    "Data2VecTextForMultipleChoice",
    "Data2VecTextForTokenClassification",
    "Data2VecTextForQuestionAnswering",
]


def tiny_config(**extra):
    return data2vec.Data2VecTextConfig(**TINY, **extra)


@pytest.mark.parametrize("name", CLASSES)
def test_our_folder_loads_into_reference_with_equal_state_dict(tmp_path, name):
    extra = {"is_decoder": True} if name.endswith("CausalLM") else {}
    torch.manual_seed(0)
    ours = add_noise(getattr(data2vec, name)(tiny_config(**extra))).eval()
    ours.save_pretrained(tmp_path)
    with torch.no_grad():
        ref = getattr(transformers, name).from_pretrained(tmp_path).eval()
    ref_state = ref.state_dict()
    saved = load_file(tmp_path / "model.safetensors")
    # every tensor we wrote lands in the reference under the same name with equal values
    for key, tensor in saved.items():
        assert key in ref_state, f"reference has no parameter {key}"
        assert torch.equal(ref_state[key], tensor), key
    # and the reference is complete: nothing it has was left at its own initialisation
    untied = {k for k in ref_state if not k.endswith(("position_ids", "token_type_ids", "lm_head.decoder.weight", "lm_head.decoder.bias"))}
    assert untied <= set(saved), sorted(untied - set(saved))
    # this library loads its own folder back bit for bit
    again = getattr(data2vec, name).from_pretrained(tmp_path)
    for key, tensor in ours.state_dict().items():
        assert torch.equal(again.state_dict()[key], tensor), key


def test_reference_folder_round_trips_through_us(tmp_path):
    config = transformers.Data2VecTextConfig(**TINY, num_labels=3, problem_type="multi_label_classification",
                                             id2label={0: "neg", 1: "neu", 2: "pos"}, label2id={"neg": 0, "neu": 1, "pos": 2})
    ref = reference_model(transformers.Data2VecTextForSequenceClassification, config, tmp_path / "ref")
    ours = data2vec.Data2VecTextForSequenceClassification.from_pretrained(tmp_path / "ref")
    ours.save_pretrained(tmp_path / "ours")
    assert load_file(tmp_path / "ours" / "model.safetensors").keys() == load_file(tmp_path / "ref" / "model.safetensors").keys()
    for key, tensor in load_file(tmp_path / "ref" / "model.safetensors").items():
        assert torch.equal(load_file(tmp_path / "ours" / "model.safetensors")[key], tensor), key
    back = transformers.Data2VecTextForSequenceClassification.from_pretrained(tmp_path / "ours")
    for key, tensor in ref.state_dict().items():
        assert torch.equal(back.state_dict()[key], tensor), key


def test_config_round_trips_every_key(tmp_path):
    ref_config = transformers.Data2VecTextConfig(**TINY, num_labels=4, classifier_dropout=0.2, is_decoder=True,
                                                 add_cross_attention=True, problem_type="regression")
    ref_config.save_pretrained(tmp_path / "ref")
    written = json.loads((tmp_path / "ref" / "config.json").read_text())
    ours = data2vec.Data2VecTextConfig.from_pretrained(tmp_path / "ref")
    assert ours.num_labels == 4 and ours.id2label[3] == "LABEL_3" and ours.hidden_size == TINY["hidden_size"]
    ours.save_pretrained(tmp_path / "ours")
    rewritten = json.loads((tmp_path / "ours" / "config.json").read_text())
    assert rewritten == written  # every key, unknown ones (dtype, transformers_version) included
    back = transformers.Data2VecTextConfig.from_pretrained(tmp_path / "ours")
    assert back.to_dict() == ref_config.to_dict() | {"transformers_version": back.to_dict()["transformers_version"]}


def test_config_defaults_match_reference():
    ours = data2vec.Data2VecTextConfig().to_dict()
    ref = transformers.Data2VecTextConfig().to_dict()
    for key, value in ours.items():
        if key in ref and key not in ("architectures",):
            assert ref[key] == value, key
    for key in ("vocab_size", "hidden_size", "layer_norm_eps", "max_position_embeddings", "pad_token_id"):
        assert key in ours


def test_unknown_config_keys_are_kept(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "data2vec-text", "hidden_size": 64, "num_attention_heads": 4, "my_key": [1, 2]}))
    config = data2vec.Data2VecTextConfig.from_pretrained(tmp_path)
    assert config.my_key == [1, 2] and config.hidden_size == 64
    config.save_pretrained(tmp_path / "out")
    assert json.loads((tmp_path / "out" / "config.json").read_text())["my_key"] == [1, 2]


def test_pytorch_bin_and_sharded_checkpoints_load(tmp_path):
    ref = reference_model(transformers.Data2VecTextForMaskedLM, transformers.Data2VecTextConfig(**TINY), tmp_path / "st")
    ids, mask, _ = padded_batch()
    with torch.no_grad():
        expected = ref(input_ids=ids, attention_mask=mask).logits
    # pytorch_model.bin
    (tmp_path / "bin").mkdir()
    shutil.copy(tmp_path / "st" / "config.json", tmp_path / "bin")
    state = {k: v.clone() for k, v in ref.state_dict().items()}
    torch.save(state, tmp_path / "bin" / "pytorch_model.bin")
    ours = data2vec.Data2VecTextForMaskedLM.from_pretrained(tmp_path / "bin")
    with torch.no_grad():
        assert_close(ours(input_ids=ids, attention_mask=mask).logits, expected, "bin")
    # sharded safetensors written by the reference
    ref.save_pretrained(tmp_path / "sharded", max_shard_size="20KB")
    assert list((tmp_path / "sharded").glob("*.index.json")), "reference did not shard"
    ours = data2vec.Data2VecTextForMaskedLM.from_pretrained(tmp_path / "sharded")
    with torch.no_grad():
        assert_close(ours(input_ids=ids, attention_mask=mask).logits, expected, "sharded")


def test_old_checkpoint_names_load(tmp_path):
    """Checkpoints saved by older libraries keep buffers and both LM-head biases; they load cleanly."""
    ref = reference_model(transformers.Data2VecTextForMaskedLM, transformers.Data2VecTextConfig(**TINY), tmp_path / "new")
    state = dict(load_file(tmp_path / "new" / "model.safetensors"))
    state["data2vec_text.embeddings.position_ids"] = torch.arange(TINY["max_position_embeddings"])[None]
    state["lm_head.decoder.bias"] = state["lm_head.bias"].clone()
    state["lm_head.decoder.weight"] = state["data2vec_text.embeddings.word_embeddings.weight"].clone()
    (tmp_path / "old").mkdir()
    shutil.copy(tmp_path / "new" / "config.json", tmp_path / "old")
    torch.save(state, tmp_path / "old" / "pytorch_model.bin")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", CheckpointWarning)
        ours = data2vec.Data2VecTextForMaskedLM.from_pretrained(tmp_path / "old")
    ids, mask, _ = padded_batch()
    with torch.no_grad():
        assert_close(ours(input_ids=ids, attention_mask=mask).logits, ref(input_ids=ids, attention_mask=mask).logits)


def test_backbone_checkpoint_into_head_warns_and_initialises(tmp_path):
    reference_model(transformers.Data2VecTextModel, transformers.Data2VecTextConfig(**TINY), tmp_path)
    with pytest.warns(CheckpointWarning, match=r"freshly initialised.*classifier\.dense\.weight"):
        model = data2vec.Data2VecTextForSequenceClassification.from_pretrained(tmp_path, num_labels=3)
    assert model.classifier.out_proj.weight.shape == (3, TINY["hidden_size"])
    assert torch.isfinite(model.classifier.out_proj.weight).all()
    with pytest.warns(CheckpointWarning, match=r"not used: pooler\.dense"):
        data2vec.Data2VecTextForTokenClassification.from_pretrained(tmp_path)


def test_head_checkpoint_into_backbone_reports_unused(tmp_path):
    reference_model(transformers.Data2VecTextForMaskedLM, transformers.Data2VecTextConfig(**TINY), tmp_path)
    with pytest.warns(CheckpointWarning) as record:
        data2vec.Data2VecTextModel.from_pretrained(tmp_path)
    messages = " ".join(str(w.message) for w in record)
    assert "lm_head.dense.weight" in messages and "pooler.dense.weight" in messages


# ------------------------------------------------------------------------ Hub cache
def test_hub_id_loads_from_cache_offline(tmp_path):
    ref = reference_model(transformers.Data2VecTextModel, transformers.Data2VecTextConfig(**TINY), tmp_path / "files")
    hub_cache(tmp_path / "cache", "someone/tiny-data2vec-text", tmp_path / "files")
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    ours = data2vec.Data2VecTextModel.from_pretrained("someone/tiny-data2vec-text", cache_dir=tmp_path / "cache")
    ids, mask, _ = padded_batch()
    with torch.no_grad():
        assert_close(ours(input_ids=ids, attention_mask=mask).last_hidden_state,
                     ref(input_ids=ids, attention_mask=mask).last_hidden_state)
    with pytest.raises(FileNotFoundError, match="Hub cache"):
        data2vec.Data2VecTextModel.from_pretrained("someone/not-cached", cache_dir=tmp_path / "cache")


def test_hub_id_resolves_through_default_cache_in_a_fresh_process(tmp_path):
    reference_model(transformers.Data2VecTextModel, transformers.Data2VecTextConfig(**TINY), tmp_path / "files")
    hub_cache(tmp_path / "hub", "someone/tiny-data2vec-text", tmp_path / "files")
    script = textwrap.dedent(
        """
        import data2vec
        model = data2vec.Data2VecTextModel.from_pretrained("someone/tiny-data2vec-text")
        print("hidden", model.config.hidden_size)
        """
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hub")}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert f"hidden {TINY['hidden_size']}" in result.stdout


# ------------------------------------------------------------------------ errors
def test_folder_without_weights(tmp_path):
    tiny_config().save_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match="no weights in folder"):
        data2vec.Data2VecTextModel.from_pretrained(tmp_path)


def test_folder_without_config(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json not found"):
        data2vec.Data2VecTextModel.from_pretrained(tmp_path)


def test_corrupted_safetensors(tmp_path):
    data2vec.Data2VecTextModel(tiny_config()).save_pretrained(tmp_path)
    path = tmp_path / "model.safetensors"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(OSError, match="corrupted or incomplete"):
        data2vec.Data2VecTextModel.from_pretrained(tmp_path)


def test_tensors_that_do_not_match_the_config(tmp_path):
    data2vec.Data2VecTextModel(tiny_config()).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["intermediate_size"] = 48
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"do not fit the configuration.*layers\.0\.mlp\.fc1\.(weight|bias): checkpoint \(37(, 32)?,?\), model \(48(, 32)?,?\)"):
        data2vec.Data2VecTextModel.from_pretrained(tmp_path)


def test_other_number_of_labels_needs_ignore_mismatched_sizes(tmp_path):
    data2vec.Data2VecTextForSequenceClassification(tiny_config(num_labels=2)).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="ignore_mismatched_sizes"):
        data2vec.Data2VecTextForSequenceClassification.from_pretrained(tmp_path, num_labels=5)
    with pytest.warns(CheckpointWarning, match="re-initialised"):
        model = data2vec.Data2VecTextForSequenceClassification.from_pretrained(tmp_path, num_labels=5, ignore_mismatched_sizes=True)
    assert model.classifier.out_proj.out_features == 5


def test_unknown_from_pretrained_argument(tmp_path):
    data2vec.Data2VecTextModel(tiny_config()).save_pretrained(tmp_path)
    with pytest.raises(TypeError, match="hiden_size"):
        data2vec.Data2VecTextModel.from_pretrained(tmp_path, hiden_size=3)


def test_wrong_model_type(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "data2vec-audio"}))
    with pytest.raises(ValueError, match="model_type 'data2vec-audio'"):
        data2vec.Data2VecTextConfig.from_pretrained(tmp_path)


@pytest.fixture(scope="module")
def model():
    return data2vec.Data2VecTextModel(tiny_config()).eval()


def test_sequence_longer_than_positions(model):
    too_long = torch.full((1, TINY["max_position_embeddings"] - 1), 5)
    with pytest.raises(ValueError, match=r"at most 38 tokens \(max_position_embeddings - 2\)"):
        model(input_ids=too_long)
    model(input_ids=too_long[:, :-1])  # 38 tokens fit


def test_token_id_out_of_vocabulary(model):
    with pytest.raises(ValueError, match="token id 99 is outside the vocabulary of 99"):
        model(input_ids=torch.tensor([[0, 5, 99, 2]]))
    with pytest.raises(ValueError, match="token id -3"):
        model(input_ids=torch.tensor([[0, -3, 2]]))


def test_attention_mask_of_wrong_shape(model):
    with pytest.raises(ValueError, match=r"attention_mask has shape \(1, 3\).*expected \(1, 4\)"):
        model(input_ids=torch.tensor([[0, 5, 6, 2]]), attention_mask=torch.ones(1, 3))


def test_both_or_neither_inputs(model):
    with pytest.raises(ValueError, match="exactly one of input_ids and inputs_embeds"):
        model()
