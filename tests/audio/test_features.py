"""Data2VecAudioFeatureExtractor against transformers.Wav2Vec2FeatureExtractor (the oracle)."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

from data2vec.audio.features import Data2VecAudioFeatureExtractor

transformers = pytest.importorskip("transformers")

ATOL = 1e-5
RATE = 16000


@pytest.fixture(autouse=True)
def _quiet_reference_logs():
    transformers.logging.set_verbosity_error()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        yield


def reference(**kwargs) -> "transformers.Wav2Vec2FeatureExtractor":
    # The official data2vec-audio preprocessor_config.json sets return_attention_mask=True.
    kwargs.setdefault("return_attention_mask", True)
    return transformers.Wav2Vec2FeatureExtractor(**kwargs)


def waveforms(*lengths: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    # Offset and scale so that the normalisation has something to do.
    return [rng.normal(loc=0.3, scale=2.5, size=length) for length in lengths]


def assert_same_batch(ours, theirs, return_attention_mask: bool = True) -> None:
    expected_keys = {"input_values", "attention_mask"} if return_attention_mask else {"input_values"}
    assert set(ours) == expected_keys
    assert len(ours["input_values"]) == len(theirs["input_values"])
    for mine, reference_row in zip(ours["input_values"], theirs["input_values"]):
        mine, reference_row = np.asarray(mine), np.asarray(reference_row)
        assert mine.dtype == np.float32
        assert mine.shape == reference_row.shape
        np.testing.assert_allclose(mine, reference_row, atol=ATOL, rtol=0)
    if return_attention_mask:
        for mine, reference_row in zip(ours["attention_mask"], theirs["attention_mask"]):
            np.testing.assert_array_equal(np.asarray(mine), np.asarray(reference_row))


# ---------------------------------------------------------------- parity


@pytest.mark.parametrize(
    "make_input",
    [
        pytest.param(lambda: waveforms(700)[0], id="numpy-1d-float64"),
        pytest.param(lambda: waveforms(700)[0].astype(np.float32), id="numpy-1d-float32"),
        pytest.param(lambda: waveforms(700)[0].tolist(), id="list-of-floats"),
        pytest.param(lambda: torch.from_numpy(waveforms(700)[0]), id="torch-1d"),
        pytest.param(lambda: waveforms(300, 700, 520), id="list-of-numpy"),
        pytest.param(lambda: [w.astype(np.float32) for w in waveforms(300, 700)], id="list-of-float32"),
        pytest.param(lambda: [w.tolist() for w in waveforms(300, 700)], id="list-of-lists"),
        pytest.param(lambda: [torch.from_numpy(w) for w in waveforms(300, 700)], id="list-of-torch"),
        pytest.param(lambda: np.stack(waveforms(400, 400, seed=3)), id="numpy-2d-batch"),
    ],
)
@pytest.mark.parametrize(
    "call_kwargs",
    [
        pytest.param({}, id="no-padding"),
        pytest.param({"padding": True}, id="padding-true"),
        pytest.param({"padding": "longest", "pad_to_multiple_of": 128}, id="longest-multiple"),
        pytest.param({"padding": "max_length", "max_length": 800}, id="max-length"),
        pytest.param({"padding": "max_length", "max_length": 350, "truncation": True}, id="max-length-truncate"),
        pytest.param(
            {"padding": "longest", "max_length": 350, "truncation": True, "pad_to_multiple_of": 64},
            id="truncate-multiple",
        ),
        pytest.param({"padding": False, "max_length": 350, "truncation": True}, id="truncate-no-padding"),
    ],
)
@pytest.mark.parametrize("do_normalize", [True, False])
def test_matches_reference(make_input, call_kwargs, do_normalize):
    raw = make_input()
    ours = Data2VecAudioFeatureExtractor(do_normalize=do_normalize)(raw, sampling_rate=RATE, **call_kwargs)
    # The reference does not accept a list of torch tensors; it gets the same values as numpy.
    reference_input = [w.numpy() for w in raw] if isinstance(raw, list) and isinstance(raw[0], torch.Tensor) else raw
    theirs = reference(do_normalize=do_normalize)(reference_input, sampling_rate=RATE, **call_kwargs)
    assert_same_batch(ours, theirs)


@pytest.mark.parametrize("return_tensors", ["np", "pt"])
def test_tensor_outputs_match_reference(return_tensors):
    raw = waveforms(300, 700, 520, seed=1)
    kwargs = dict(sampling_rate=RATE, padding=True, pad_to_multiple_of=8, return_tensors=return_tensors)
    ours = Data2VecAudioFeatureExtractor()(raw, **kwargs)
    theirs = reference()(raw, **kwargs)
    tensor_type = np.ndarray if return_tensors == "np" else torch.Tensor
    assert isinstance(ours.input_values, tensor_type) and isinstance(ours.attention_mask, tensor_type)
    assert tuple(ours.input_values.shape) == (3, 704)
    assert str(ours.input_values.dtype) == str(theirs["input_values"].dtype)  # float32
    assert str(ours.attention_mask.dtype) == str(theirs["attention_mask"].dtype)  # int32
    np.testing.assert_allclose(np.asarray(ours.input_values), np.asarray(theirs["input_values"]), atol=ATOL, rtol=0)
    np.testing.assert_array_equal(np.asarray(ours.attention_mask), np.asarray(theirs["attention_mask"]))


def test_single_waveform_gets_a_batch_dimension():
    ours = Data2VecAudioFeatureExtractor()(waveforms(500)[0], sampling_rate=RATE, return_tensors="pt")
    assert tuple(ours.input_values.shape) == (1, 500)
    assert tuple(ours.attention_mask.shape) == (1, 500)


def test_padding_value_and_settings_match_reference():
    raw = waveforms(200, 450, seed=2)
    settings = dict(padding_value=-0.5, do_normalize=True)
    ours = Data2VecAudioFeatureExtractor(**settings)(raw, sampling_rate=RATE, padding=True)
    theirs = reference(**settings)(raw, sampling_rate=RATE, padding=True)
    assert_same_batch(ours, theirs)
    assert np.all(ours.input_values[0][200:] == -0.5)


def test_quiet_audio_matches_reference():
    # With a variance near the epsilon (1e-7) the epsilon itself shows in the output.
    rng = np.random.default_rng(5)
    raw = [rng.normal(scale=scale, size=400) for scale in (3e-4, 1e-3, 0.0)]
    ours = Data2VecAudioFeatureExtractor()(raw, sampling_rate=RATE, padding=True)
    theirs = reference()(raw, sampling_rate=RATE, padding=True)
    assert_same_batch(ours, theirs)
    assert np.abs(ours.input_values[0]).max() < 2.0  # far from unit variance: the epsilon dominates


def test_return_attention_mask_off_matches_reference_without_padding():
    raw = waveforms(300, 700)
    ours = Data2VecAudioFeatureExtractor()(raw, sampling_rate=RATE, return_attention_mask=False)
    theirs = reference()(raw, sampling_rate=RATE, return_attention_mask=False)
    assert_same_batch(ours, theirs, return_attention_mask=False)


# ---------------------------------------------------------------- facts


def test_normalisation_uses_only_real_samples():
    short, long = waveforms(300, 900, seed=4)
    batch = Data2VecAudioFeatureExtractor()([short, long], sampling_rate=RATE, padding=True)
    real = batch.input_values[0][:300].astype(np.float64)
    assert abs(real.mean()) < 1e-5
    assert abs(real.std() - 1.0) < 1e-4
    assert np.all(batch.input_values[0][300:] == 0.0)
    np.testing.assert_array_equal(batch.attention_mask[0], np.r_[np.ones(300), np.zeros(600)].astype(np.int32))


def test_padding_without_attention_mask_still_normalises_over_real_samples():
    # The reference normalises over the padded vector when the mask is off; data2vec-audio
    # models are trained on utterances normalised alone, so ours does not depend on the flag.
    raw = waveforms(300, 700)
    extractor = Data2VecAudioFeatureExtractor()
    without_mask = extractor(raw, sampling_rate=RATE, padding=True, return_attention_mask=False)
    with_mask = reference()(raw, sampling_rate=RATE, padding=True)
    assert "attention_mask" not in without_mask
    for mine, theirs in zip(without_mask.input_values, with_mask["input_values"]):
        np.testing.assert_allclose(mine, theirs, atol=ATOL, rtol=0)


def test_left_padding_puts_padding_first_and_normalises_the_same():
    raw = waveforms(300, 700)
    right = Data2VecAudioFeatureExtractor()(raw, sampling_rate=RATE, padding=True)
    left = Data2VecAudioFeatureExtractor(padding_side="left", padding_value=7.0)(raw, sampling_rate=RATE, padding=True)
    assert np.all(left.input_values[0][:400] == 7.0)
    np.testing.assert_array_equal(left.input_values[0][400:], right.input_values[0][:300])
    np.testing.assert_array_equal(left.attention_mask[0], right.attention_mask[0][::-1])


def test_silence_normalises_to_zeros():
    batch = Data2VecAudioFeatureExtractor()(np.full(400, 0.25), sampling_rate=RATE)
    np.testing.assert_array_equal(batch.input_values[0], np.zeros(400, dtype=np.float32))


def test_max_length_shorter_than_an_utterance_without_truncation_leaves_it_whole():
    extractor = Data2VecAudioFeatureExtractor()
    batch = extractor(waveforms(300, 700), sampling_rate=RATE, padding="max_length", max_length=500)
    assert [len(row) for row in batch.input_values] == [500, 700]


def test_batch_moves_to_device():
    batch = Data2VecAudioFeatureExtractor()(waveforms(100)[0], sampling_rate=RATE, return_tensors="pt").to("cpu")
    assert batch.input_values.device.type == "cpu"
    with pytest.raises(AttributeError, match="no field 'labels'"):
        batch.labels


# ---------------------------------------------------------------- errors


def test_wrong_sampling_rate_is_rejected():
    with pytest.raises(ValueError, match=r"expected 16000 Hz audio, got 44100 Hz: resample first"):
        Data2VecAudioFeatureExtractor()(waveforms(100)[0], sampling_rate=44100)


def test_missing_sampling_rate_warns():
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        with pytest.warns(UserWarning, match=r"without sampling_rate; it assumes 16000 Hz"):
            Data2VecAudioFeatureExtractor()(waveforms(100)[0])


def test_empty_inputs_are_rejected():
    extractor = Data2VecAudioFeatureExtractor()
    with pytest.raises(ValueError, match=r"the waveform is empty \(0 samples\)"):
        extractor(np.zeros(0), sampling_rate=RATE)
    with pytest.raises(ValueError, match=r"utterance 1 is empty \(0 samples\)"):
        extractor([np.ones(10), np.zeros(0)], sampling_rate=RATE)
    with pytest.raises(ValueError, match="raw_speech is empty"):
        extractor([], sampling_rate=RATE)


@pytest.mark.parametrize("bad_value", [np.nan, np.inf, -np.inf])
def test_non_finite_samples_are_rejected(bad_value):
    waveform = waveforms(100)[0]
    waveform[17] = bad_value
    with pytest.raises(ValueError, match=r"utterance 1 contains NaN or infinite samples \(1 of 100\)"):
        Data2VecAudioFeatureExtractor()([np.ones(50), waveform], sampling_rate=RATE)


def test_three_dimensional_input_names_its_shape():
    with pytest.raises(ValueError, match=r"shape \(2, 3, 100\); expected a 1-D waveform \(samples,\) or a 2-D batch"):
        Data2VecAudioFeatureExtractor()(np.zeros((2, 3, 100)), sampling_rate=RATE)
    with pytest.raises(ValueError, match=r"shape torch.Size|shape \(2, 3, 100\)"):
        Data2VecAudioFeatureExtractor()(torch.zeros(2, 3, 100), sampling_rate=RATE)


def test_multichannel_utterance_in_a_batch_is_rejected():
    message = r"utterance 1 has shape \(2, 100\); each utterance must be a 1-D mono waveform"
    with pytest.raises(ValueError, match=message):
        Data2VecAudioFeatureExtractor()([np.ones(100), np.ones((2, 100))], sampling_rate=RATE)


def test_samples_by_channels_layout_is_rejected():
    with pytest.raises(ValueError, match=r"shape \(1000, 2\), which looks like multi-channel audio"):
        Data2VecAudioFeatureExtractor()(np.ones((1000, 2)), sampling_rate=RATE)


def test_file_path_instead_of_waveform_points_to_load_audio():
    with pytest.raises(TypeError, match="load_audio"):
        Data2VecAudioFeatureExtractor()("speech.wav", sampling_rate=RATE)


def test_tensors_of_unequal_lengths_ask_for_padding():
    with pytest.raises(ValueError, match=r"different lengths \(300 to 700 samples\).*padding=True"):
        Data2VecAudioFeatureExtractor()(waveforms(300, 700), sampling_rate=RATE, return_tensors="pt")


def test_bad_padding_arguments_are_rejected():
    extractor = Data2VecAudioFeatureExtractor()
    raw = waveforms(300, 700)
    with pytest.raises(ValueError, match="padding='max_length' needs max_length"):
        extractor(raw, sampling_rate=RATE, padding="max_length")
    with pytest.raises(ValueError, match="truncation=True needs max_length"):
        extractor(raw, sampling_rate=RATE, truncation=True)
    with pytest.raises(ValueError, match="padding must be True, False"):
        extractor(raw, sampling_rate=RATE, padding="shortest")
    with pytest.raises(ValueError, match="return_tensors must be None, 'np' or 'pt'"):
        extractor(raw, sampling_rate=RATE, return_tensors="tf")


def test_bad_constructor_values_are_rejected():
    with pytest.raises(ValueError, match="feature_size=80 is not supported"):
        Data2VecAudioFeatureExtractor(feature_size=80)
    with pytest.raises(ValueError, match="padding_side must be 'right' or 'left'"):
        Data2VecAudioFeatureExtractor(padding_side="middle")


# ---------------------------------------------------------------- files


def test_saved_file_is_loaded_by_the_reference(tmp_path):
    ours = Data2VecAudioFeatureExtractor(do_normalize=False, padding_value=0.5, return_attention_mask=False)
    ours.save_pretrained(tmp_path)
    written = json.loads((tmp_path / "preprocessor_config.json").read_text())
    assert written == {
        "do_normalize": False,
        "feature_extractor_type": "Wav2Vec2FeatureExtractor",
        "feature_size": 1,
        "padding_side": "right",
        "padding_value": 0.5,
        "return_attention_mask": False,
        "sampling_rate": 16000,
    }
    theirs = transformers.Wav2Vec2FeatureExtractor.from_pretrained(tmp_path)
    assert (theirs.do_normalize, theirs.padding_value, theirs.return_attention_mask) == (False, 0.5, False)
    assert theirs.sampling_rate == 16000 and theirs.padding_side == "right"


def test_reference_file_loads_and_behaves_the_same(tmp_path):
    theirs = reference(padding_value=0.0, do_normalize=True)
    theirs.save_pretrained(tmp_path)
    ours = Data2VecAudioFeatureExtractor.from_pretrained(tmp_path)
    assert ours == Data2VecAudioFeatureExtractor(return_attention_mask=True)
    raw = waveforms(300, 700)
    assert_same_batch(ours(raw, sampling_rate=RATE, padding=True), theirs(raw, sampling_rate=RATE, padding=True))


def test_unknown_keys_survive_a_round_trip_and_overrides_apply(tmp_path):
    config = {
        "do_normalize": True,
        "feature_extractor_type": "Wav2Vec2FeatureExtractor",
        "feature_size": 1,
        "padding_side": "right",
        "padding_value": 0.0,
        "processor_class": "Wav2Vec2Processor",
        "return_attention_mask": True,
        "sampling_rate": 16000,
    }
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(config))
    loaded = Data2VecAudioFeatureExtractor.from_pretrained(tmp_path, return_attention_mask=False)
    assert loaded.return_attention_mask is False
    assert loaded.extra_config == {"processor_class": "Wav2Vec2Processor"}
    loaded.save_pretrained(tmp_path / "copy")
    written = json.loads((tmp_path / "copy" / "preprocessor_config.json").read_text())
    assert written == {**config, "return_attention_mask": False}


def test_other_feature_extractor_types_are_rejected(tmp_path):
    whisper = {"feature_extractor_type": "WhisperFeatureExtractor", "feature_size": 80}
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(whisper))
    with pytest.raises(ValueError, match="describes a WhisperFeatureExtractor"):
        Data2VecAudioFeatureExtractor.from_pretrained(tmp_path)


def test_missing_config_file_is_reported(tmp_path):
    with pytest.raises(FileNotFoundError, match="preprocessor_config.json not found"):
        Data2VecAudioFeatureExtractor.from_pretrained(tmp_path)
