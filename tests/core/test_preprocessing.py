"""The preprocessor base (folder / Hub files in and out) and the one batch type, on all four
preprocessors: text tokenizer, CTC tokenizer, audio feature extractor, image processor."""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from tokenizers import ByteLevelBPETokenizer

from data2vec.audio.ctc_tokenizer import Data2VecAudioCTCTokenizer
from data2vec.audio.features import AudioBatch, Data2VecAudioFeatureExtractor
from data2vec.core.preprocessing import Batch, Preprocessor, PretrainedFiles, read_json
from data2vec.text.tokenizer import BatchEncoding, Data2VecTextTokenizer
from data2vec.vision.image_processor import Data2VecVisionImageProcessor, ImageBatch
from tests.helpers import hub_cache

CTC_VOCAB = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4, **{c: 5 + i for i, c in enumerate("ETAONIHSRDLU'")}}
TEXTS = ["Hello world, hello there.", "the lazy dog", "naïve café <mask> done"]


def _text_tokenizer(folder: Path) -> Data2VecTextTokenizer:
    trainer = ByteLevelBPETokenizer()
    trainer.train_from_iterator(
        ["The quick brown fox jumps over the lazy dog.", "Hello world! Hello there, naïve café."] * 20,
        vocab_size=300,
        min_frequency=2,
        special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
        show_progress=False,
    )
    folder.mkdir()
    trainer.save_model(str(folder))
    return Data2VecTextTokenizer(folder / "vocab.json", folder / "merges.txt", model_max_length=12, add_prefix_space=True)


def _ctc_tokenizer(folder: Path) -> Data2VecAudioCTCTokenizer:
    return Data2VecAudioCTCTokenizer(CTC_VOCAB, do_lower_case=True, added_tokens={"<laugh>": 40}, added_special_tokens=["<laugh>"])


def _feature_extractor(folder: Path) -> Data2VecAudioFeatureExtractor:
    return Data2VecAudioFeatureExtractor(padding_value=0.5, padding_side="left", extra_config={"processor_class": "X"})


def _image_processor(folder: Path) -> Data2VecVisionImageProcessor:
    return Data2VecVisionImageProcessor(size=(20, 24), do_center_crop=True, crop_size=16, image_mean=0.4, image_std=0.2)


def _text_outputs(tokenizer: Data2VecTextTokenizer) -> Any:
    batch = tokenizer(TEXTS, padding="max_length", truncation=True, return_tensors="np")
    return dict(batch), tokenizer.batch_decode(batch["input_ids"]), tokenizer.special_tokens_map


def _ctc_outputs(tokenizer: Data2VecAudioCTCTokenizer) -> Any:
    batch = tokenizer(["hello there", "a <laugh> dot"], padding=True, return_tensors="np")
    decoded = tokenizer.batch_decode(batch["input_ids"], skip_special_tokens=True)
    return dict(batch), decoded, tokenizer.get_vocab()


def _feature_outputs(extractor: Data2VecAudioFeatureExtractor) -> Any:
    waveforms = [np.sin(np.arange(n) / 7.0).astype(np.float32) for n in (50, 80)]
    return dict(extractor(waveforms, sampling_rate=16000, padding=True, return_tensors="np"))


def _image_outputs(processor: Data2VecVisionImageProcessor) -> Any:
    image = np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    label_map = np.random.default_rng(1).integers(0, 5, (30, 40))
    return dict(processor(image, segmentation_maps=label_map, return_tensors="np"))


PREPROCESSORS: dict[str, tuple[Callable[[Path], Preprocessor], Callable[[Any], Any], str]] = {
    # name: (build a non-default instance, its outputs on fixed inputs, the file it cannot do without)
    "text_tokenizer": (_text_tokenizer, _text_outputs, "merges.txt"),
    "ctc_tokenizer": (_ctc_tokenizer, _ctc_outputs, "vocab.json"),
    "feature_extractor": (_feature_extractor, _feature_outputs, "preprocessor_config.json"),
    "image_processor": (_image_processor, _image_outputs, "preprocessor_config.json"),
}


def _assert_same(left: Any, right: Any) -> None:
    if isinstance(left, dict):
        assert isinstance(right, dict) and sorted(left) == sorted(right)
        for key in left:
            _assert_same(left[key], right[key])
    elif isinstance(left, tuple):
        assert isinstance(right, tuple) and len(left) == len(right)
        for left_item, right_item in zip(left, right):
            _assert_same(left_item, right_item)
    elif isinstance(left, np.ndarray):
        assert isinstance(right, np.ndarray) and left.dtype == right.dtype
        np.testing.assert_array_equal(left, right)
    else:
        assert left == right


def _files(folder: Path) -> dict[str, str]:
    return {path.name: path.read_text(encoding="utf-8") for path in sorted(folder.iterdir())}


# ---------------------------------------------------------------------- the base


@pytest.mark.parametrize("name", list(PREPROCESSORS))
def test_round_trip_through_a_folder_keeps_outputs_and_files(name: str, tmp_path: Path) -> None:
    build, outputs, _ = PREPROCESSORS[name]
    original = build(tmp_path / "source")
    written = original.save_pretrained(tmp_path / "saved" / "nested")  # parents are created
    paths = written if isinstance(written, tuple) else (written,)
    assert paths and all(path.parent == tmp_path / "saved" / "nested" and path.is_file() for path in paths)
    assert any(path.name == type(original).config_file for path in paths)

    loaded = type(original).from_pretrained(tmp_path / "saved" / "nested")
    assert type(loaded) is type(original)
    _assert_same(outputs(loaded), outputs(original))
    loaded.save_pretrained(tmp_path / "again")  # a second trip writes the same files
    assert _files(tmp_path / "again") == _files(tmp_path / "saved" / "nested")


@pytest.mark.parametrize("name", list(PREPROCESSORS))
def test_hub_id_resolves_through_the_cache(name: str, tmp_path: Path) -> None:
    build, outputs, _ = PREPROCESSORS[name]
    original = build(tmp_path / "source")
    original.save_pretrained(tmp_path / "files")
    hub_cache(tmp_path / "cache", "someone/tiny-preprocessor", tmp_path / "files")
    loaded = type(original).from_pretrained("someone/tiny-preprocessor", cache_dir=tmp_path / "cache")
    _assert_same(outputs(loaded), outputs(original))
    with pytest.raises(FileNotFoundError, match="someone/not-cached"):
        type(original).from_pretrained("someone/not-cached", cache_dir=tmp_path / "cache")


@pytest.mark.parametrize("name", list(PREPROCESSORS))
def test_missing_file_is_named(name: str, tmp_path: Path) -> None:
    build, _, needed = PREPROCESSORS[name]
    original = build(tmp_path / "source")
    original.save_pretrained(tmp_path / "saved")
    (tmp_path / "saved" / needed).unlink()
    if name == "text_tokenizer":  # tokenizer.json stands in for vocab.json + merges.txt
        (tmp_path / "saved" / "tokenizer.json").unlink()
    with pytest.raises(FileNotFoundError, match=needed.replace(".", r"\.")):
        type(original).from_pretrained(tmp_path / "saved")


@pytest.mark.parametrize("name", list(PREPROCESSORS))
def test_unknown_override_is_an_error(name: str, tmp_path: Path) -> None:
    build, _, _ = PREPROCESSORS[name]
    original = build(tmp_path / "source")
    original.save_pretrained(tmp_path / "saved")
    with pytest.raises(TypeError, match="not_a_setting"):
        type(original).from_pretrained(tmp_path / "saved", not_a_setting=1)


def test_overrides_win_over_the_files(tmp_path: Path) -> None:
    _feature_extractor(tmp_path).save_pretrained(tmp_path / "audio")
    assert Data2VecAudioFeatureExtractor.from_pretrained(tmp_path / "audio", padding_value=2.0).padding_value == 2.0
    _image_processor(tmp_path).save_pretrained(tmp_path / "vision")
    assert Data2VecVisionImageProcessor.from_pretrained(tmp_path / "vision", crop_size=8).crop_size == {
        "height": 8,
        "width": 8,
    }
    _ctc_tokenizer(tmp_path).save_pretrained(tmp_path / "ctc")
    assert Data2VecAudioCTCTokenizer.from_pretrained(tmp_path / "ctc", do_lower_case=False).do_lower_case is False


@pytest.mark.parametrize("name", list(PREPROCESSORS))
def test_saving_onto_a_file_is_an_error(name: str, tmp_path: Path) -> None:
    build, _, _ = PREPROCESSORS[name]
    (tmp_path / "a_file").write_text("")
    with pytest.raises(NotADirectoryError, match="a_file.*is a file"):
        build(tmp_path / "source").save_pretrained(tmp_path / "a_file")


def test_config_file_names_and_shared_base() -> None:
    assert Data2VecTextTokenizer.config_file == "tokenizer_config.json"
    assert Data2VecAudioCTCTokenizer.config_file == "tokenizer_config.json"
    assert Data2VecAudioFeatureExtractor.config_file == "preprocessor_config.json"
    assert Data2VecVisionImageProcessor.config_file == "preprocessor_config.json"
    for cls in (Data2VecTextTokenizer, Data2VecAudioCTCTokenizer, Data2VecAudioFeatureExtractor,
                Data2VecVisionImageProcessor):  # fmt: skip
        assert issubclass(cls, Preprocessor)
        assert cls.from_pretrained.__func__ is Preprocessor.from_pretrained.__func__
        assert cls.save_pretrained is Preprocessor.save_pretrained


def test_a_subclass_without_hooks_says_so(tmp_path: Path) -> None:
    class Bare(Preprocessor):
        config_file = "bare.json"

    with pytest.raises(NotImplementedError, match="Bare does not implement _from_files"):
        Bare.from_pretrained(tmp_path)
    with pytest.raises(NotImplementedError, match="Bare does not implement _save_files"):
        Bare().save_pretrained(tmp_path)


def test_pretrained_files_reads_json_and_names_bad_files(tmp_path: Path) -> None:
    (tmp_path / "good.json").write_text('{"a": [1, 2]}')
    (tmp_path / "broken.json").write_text('{"a": ')
    (tmp_path / "list.json").write_text("[1, 2]")
    files = PretrainedFiles(tmp_path)
    assert files.read_json("good.json") == {"a": [1, 2]} == read_json(tmp_path / "good.json")
    assert files.find("good.json") == tmp_path / "good.json"
    assert files.find_optional("absent.json") is None
    assert files.read_optional_json("absent.json") == {}
    with pytest.raises(FileNotFoundError, match=r"absent\.json not found in folder"):
        files.read_json("absent.json")
    with pytest.raises(ValueError, match=r"broken\.json' is not valid JSON"):
        files.read_json("broken.json")
    with pytest.raises(ValueError, match=r"list\.json' must hold a JSON object, got list"):
        files.read_optional_json("list.json")
    with pytest.raises(FileNotFoundError, match="neither an existing folder nor a valid Hub repo id"):
        PretrainedFiles(str(tmp_path / "no" / "such" / "folder")).read_json("good.json")


def test_written_json_is_indented_utf8(tmp_path: Path) -> None:
    Data2VecAudioFeatureExtractor(extra_config={"note": "café"}).save_pretrained(tmp_path)
    text = (tmp_path / "preprocessor_config.json").read_text(encoding="utf-8")
    assert text.endswith("}\n") and '\n  "do_normalize": true,' in text and '"note": "café"' in text
    assert list(json.loads(text)) == sorted(json.loads(text))


# ---------------------------------------------------------------------- the batch


def test_old_batch_names_are_the_one_batch_type(tmp_path: Path) -> None:
    assert BatchEncoding is AudioBatch is ImageBatch is Batch
    for name, (build, _, _) in PREPROCESSORS.items():
        preprocessor = build(tmp_path / name)
        if isinstance(preprocessor, Data2VecAudioFeatureExtractor):
            batch = preprocessor([np.zeros(10, dtype=np.float32)], sampling_rate=16000)
        elif isinstance(preprocessor, Data2VecVisionImageProcessor):
            batch = preprocessor(np.zeros((8, 8, 3), dtype=np.uint8))
        else:
            batch = preprocessor(["hello"])
        assert type(batch) is Batch, name


def test_batch_reads_by_key_and_attribute() -> None:
    batch = Batch({"input_ids": [[1, 2]], "attention_mask": [[1, 1]]})
    assert isinstance(batch, dict) and batch.input_ids is batch["input_ids"]
    assert list(batch) == ["input_ids", "attention_mask"]
    with pytest.raises(AttributeError, match=r"Batch has no field 'labels'; fields: \['attention_mask', 'input_ids'\]"):
        batch.labels
    assert not hasattr(batch, "pixel_values")
    assert Batch() == {} and Batch(None).encodings == []


def test_batch_to_moves_tensors_in_place() -> None:
    ids = torch.tensor([[1, 2]])
    batch = Batch({"input_ids": ids, "lengths": [2], "mask": np.ones((1, 2))})
    moved = batch.to(torch.device("meta"))
    assert moved is batch
    assert batch.input_ids.device.type == "meta" and ids.device.type == "cpu"
    assert batch.lengths == [2] and isinstance(batch.mask, np.ndarray)


def test_batch_convert_to_tensors() -> None:
    rows = [np.arange(3, dtype=np.float32), np.ones(3, dtype=np.float32)]
    numpy_batch = Batch({"values": list(rows), "mask": [[1, 1, 0], [1, 1, 1]]}).convert_to_tensors(
        "np", unit="samples", remedy="pad"
    )
    assert numpy_batch["values"].shape == (2, 3) and numpy_batch["values"].dtype == np.float32  # (batch, samples)
    assert numpy_batch["mask"].dtype == np.int64
    torch_batch = Batch({"ids": [[1, 2], [3, 4]]}).convert_to_tensors("pt", dtype=np.int64, unit="tokens", remedy="")
    assert torch.equal(torch_batch.ids, torch.tensor([[1, 2], [3, 4]]))
    empty = Batch({"ids": []}).convert_to_tensors("pt", dtype=np.int64, unit="tokens", remedy="")
    assert tuple(empty.ids.shape) == (0, 0)

    ragged = Batch({"ids": [[1, 2, 3], [1], [1, 2]]})
    with pytest.raises(ValueError, match=r"cannot stack ids of different lengths \(1 to 3 tokens\); pass padding=True"):
        ragged.convert_to_tensors("np", unit="tokens", remedy="pass padding=True")
    images = Batch({"pixel_values": [np.zeros((3, 4, 4)), np.zeros((3, 4, 5))]})
    with pytest.raises(ValueError, match=r"pixel_values of different sizes \[\(3, 4, 4\), \(3, 4, 5\)\]; resize"):
        images.convert_to_tensors("pt", unit="pixels", remedy="resize")


def test_batch_token_alignment_and_pickle(tmp_path: Path) -> None:
    tokenizer = _text_tokenizer(tmp_path / "bpe")
    batch = tokenizer(["hello world", "hello"], ["the dog", "the dog"], padding=True)
    assert len(batch.encodings) == 2
    assert batch.sequence_ids(1)[0] is None and 1 in batch.sequence_ids(1)
    assert batch.word_ids(0)[1] == 0 and batch.tokens(0)[0] == "<s>"
    with pytest.raises(IndexError, match="batch_index 2 is out of range for a batch of 2"):
        batch.word_ids(2)
    restored = pickle.loads(pickle.dumps(batch))
    assert type(restored) is Batch and restored == batch and restored.word_ids(1) == batch.word_ids(1)
    with pytest.raises(ValueError, match="holds no token alignment"):
        Batch({"input_ids": [[0, 2]]}).word_ids()
