"""training.data: every reader on small files the tests write, with hand-written expected records,
and every DataError naming the file (and line) of the mistake."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import soundfile
from PIL import Image

from data2vec.training.data import (
    DataError,
    label_set,
    load_image,
    load_mask,
    read_audio,
    read_audio_manifest,
    read_conll,
    read_image_folder,
    read_records,
    read_segmentation_folder,
    read_squad,
)


def error_of(call, *args) -> str:
    with pytest.raises(DataError) as caught:
        call(*args)
    return str(caught.value)


# --- tables ---------------------------------------------------------------------------------


def test_csv_records_keep_quoted_commas_and_count_lines_of_multiline_values(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text(' text , label ,note\n"hello, world",pos,first\n"two\nlines",neg,\n\nplain,pos,last\n')
    records = read_records(path, ["text", "label"], optional=["note", "text_pair"])
    assert records == [
        {"text": "hello, world", "label": "pos", "note": "first", "_row": 2},
        {"text": "two\nlines", "label": "neg", "note": "", "_row": 3},
        {"text": "plain", "label": "pos", "note": "last", "_row": 6},
    ]


def test_csv_with_windows_line_endings_and_byte_order_mark(tmp_path):
    path = tmp_path / "excel.csv"
    path.write_bytes("\ufefftext,label\r\nune phrase,oui\r\n".encode())
    assert read_records(path, ["text", "label"]) == [{"text": "une phrase", "label": "oui", "_row": 2}]


TABLES = {
    "csv": ('text,label\n"hello, world",pos\n"say ""hi""",neg\n', [2, 3]),
    "tsv": ('text\tlabel\nhello, world\tpos\n"say ""hi"""\tneg\n', [2, 3]),
    "jsonl": ('{"text": "hello, world", "label": "pos"}\n{"text": "say \\"hi\\"", "label": "neg"}\n', [1, 2]),
    "json": (
        '[\n  {"text": "hello, world",\n   "label": "pos"},\n  {"text": "say \\"hi\\"", "label": "neg"}\n]\n',
        [2, 4],
    ),
}


@pytest.mark.parametrize("suffix", sorted(TABLES))
def test_csv_tsv_jsonl_and_json_list_give_the_same_records(tmp_path, suffix):
    text, rows = TABLES[suffix]
    path = tmp_path / f"data.{suffix}"
    path.write_text(text)
    assert read_records(path, ["text", "label"]) == [
        {"text": "hello, world", "label": "pos", "_row": rows[0]},
        {"text": 'say "hi"', "label": "neg", "_row": rows[1]},
    ]


def test_jsonl_keeps_json_types_skips_blank_lines_and_counts_them(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text('{"text": "a", "label": 3, "score": 0.5}\n\n{"text": "b", "label": 1, "extra": [1]}\n')
    assert read_records(path, ["text", "label"], optional=["score"]) == [
        {"text": "a", "label": 3, "score": 0.5, "_row": 1},
        {"text": "b", "label": 1, "_row": 3},
    ]


def test_missing_csv_column_names_the_file_the_column_the_columns_found_and_the_option(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text("sentence,target\nhi,1\n")
    message = error_of(read_records, path, ["text", "label"])
    assert message.startswith(f"{path}: no columns 'text', 'label' (columns found: 'sentence', 'target')")
    assert "--...-column" in message


def test_missing_jsonl_key_names_its_line(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text('{"text": "a", "label": 1}\n{"text": "b"}\n')
    message = error_of(read_records, path, ["text", "label"])
    assert message.startswith(f"{path}, line 2: no column 'label' (columns found: 'text')")


def test_bad_json_line_names_its_line(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text('{"text": "a", "label": 1}\n\n{"text": "b", label: 2}\n')
    message = error_of(read_records, path, ["text"])
    assert message.startswith(f"{path}, line 3: not valid JSON")


def test_json_line_that_is_not_an_object(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text('["a", 1]\n')
    assert error_of(read_records, path, ["text"]).startswith(f"{path}, line 1: expected a JSON object")


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("extra.csv", "text,label\na,1\nb,2,3\n", "line 3: 3 values for the header's 2 columns"),
        ("repeated.csv", "text,text\na,b\n", "line 1: column 'text' appears twice"),
        ("empty.csv", "\n", "the file is empty"),
        ("header.csv", "text,label\n", "no records; add at least one row of data"),
        ("notes.txt", "text\n", "unknown file type '.txt'"),
    ],
)
def test_malformed_tables(tmp_path, name, content, expected):
    path = tmp_path / name
    path.write_text(content)
    message = error_of(read_records, path, ["text"])
    assert message.startswith(str(path)) and expected in message


def test_non_utf8_file_names_the_line(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("text,label\ncafé,1\n".encode("latin-1"))
    message = error_of(read_records, path, ["text"])
    assert message == f"{path}, line 2: not UTF-8 text; save the file with UTF-8 encoding"


def test_missing_file(tmp_path):
    path = tmp_path / "absent.csv"
    assert error_of(read_records, path, ["text"]) == f"{path}: no such file; check the path"
    assert issubclass(DataError, ValueError)


def test_label_set_is_sorted_unique_strings():
    assert label_set([2, "1", 1, "b", "a", 2]) == ["1", "2", "a", "b"]


# --- CoNLL ----------------------------------------------------------------------------------

CONLL = """-DOCSTART- -X- -X- O

EU NNP B-NP B-ORG
rejects VBZ B-VP O


Peter\tNNP\tB-NP\tB-PER
Blackburn NNP I-NP I-PER"""


def test_conll_sentences_token_first_tag_last(tmp_path):
    path = tmp_path / "train.conll"
    path.write_text(CONLL)
    assert read_conll(path) == [
        {"tokens": ["EU", "rejects"], "tags": ["B-ORG", "O"], "_row": 3},
        {"tokens": ["Peter", "Blackburn"], "tags": ["B-PER", "I-PER"], "_row": 7},
    ]


def test_conll_line_without_tag(tmp_path):
    path = tmp_path / "train.conll"
    path.write_text("EU B-ORG\nrejects\n")
    assert error_of(read_conll, path).startswith(f"{path}, line 2: 'rejects' has no tag")


def test_conll_without_sentences(tmp_path):
    path = tmp_path / "train.conll"
    path.write_text("-DOCSTART- O\n\n")
    assert error_of(read_conll, path).startswith(f"{path}: no sentences")


# --- SQuAD ----------------------------------------------------------------------------------

SQUAD_V1 = """{"version": "1.1", "data": [
 {"title": "Paris", "paragraphs": [
  {"context": "Paris is the capital of France.",
   "qas": [
    {"id": "q1", "question": "What is the capital of France?",
     "answers": [{"text": "Paris", "answer_start": 0}, {"text": "Paris", "answer_start": 0}]},
    {"id": "q2", "question": "Paris is the capital of what?",
     "answers": [{"text": "France", "answer_start": 24}]}
   ]}
 ]}
]}
"""

SQUAD_V2 = """{"version": "v2.0", "data": [{"title": "Ada", "paragraphs": [{"context": "Ada wrote the first program.",
"qas": [
{"id": "a1", "question": "Who wrote it?", "answers": [{"text": "Ada", "answer_start": 0}], "is_impossible": false},
{"id": "a2", "question": "Who read it?", "answers": [], "is_impossible": true,
 "plausible_answers": [{"text": "Ada", "answer_start": 0}]}
]}]}]}
"""


def test_squad_v1(tmp_path):
    path = tmp_path / "train.json"
    path.write_text(SQUAD_V1)
    context = "Paris is the capital of France."
    assert read_squad(path) == [
        {
            "id": "q1",
            "question": "What is the capital of France?",
            "context": context,
            "answers": {"text": ["Paris", "Paris"], "answer_start": [0, 0]},
            "_row": 5,
        },
        {
            "id": "q2",
            "question": "Paris is the capital of what?",
            "context": context,
            "answers": {"text": ["France"], "answer_start": [24]},
            "_row": 7,
        },
    ]


def test_squad_v2_unanswerable_question_has_no_answers(tmp_path):
    path = tmp_path / "train.json"
    path.write_text(SQUAD_V2)
    context = "Ada wrote the first program."
    assert read_squad(path) == [
        {
            "id": "a1",
            "question": "Who wrote it?",
            "context": context,
            "answers": {"text": ["Ada"], "answer_start": [0]},
            "_row": 3,
        },
        {
            "id": "a2",
            "question": "Who read it?",
            "context": context,
            "answers": {"text": [], "answer_start": []},
            "_row": 4,
        },
    ]


def test_squad_flat_json_lines_in_both_answer_forms(tmp_path):
    path = tmp_path / "train.jsonl"
    records = [
        {"id": "x", "question": "Who?", "context": "Ada wrote it.", "answers": {"text": ["Ada"], "answer_start": [0]}},
        {"id": "y", "question": "What?", "context": "Ada wrote it.", "answers": [{"text": "it", "answer_start": 10}]},
    ]
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    assert read_squad(path) == [
        {**records[0], "_row": 1},
        {**records[1], "answers": {"text": ["it"], "answer_start": [10]}, "_row": 2},
    ]


def test_squad_wrong_answer_start_names_the_question(tmp_path):
    path = tmp_path / "train.json"
    path.write_text(SQUAD_V1.replace('"answer_start": 24', '"answer_start": 23'))
    message = error_of(read_squad, path)
    assert message.startswith(f"{path}, line 7: question 'q2': the answer 'France' is not at answer_start 23")
    assert "found ' Franc'" in message


def test_squad_document_with_a_syntax_error_names_its_line(tmp_path):
    path = tmp_path / "train.json"
    path.write_text(SQUAD_V1.replace('of what?",', 'of what?"'))
    assert error_of(read_squad, path).startswith(f"{path}, line 8: not valid JSON (Expecting ',' delimiter")


def test_squad_file_in_another_layout(tmp_path):
    path = tmp_path / "train.json"
    path.write_text('{"data": [{"paragraphs": [{"qas": [{"id": "q", "question": "?", "answers": []}]}]}]}')
    assert error_of(read_squad, path).startswith(f"{path}: not in the SQuAD layout (no key 'context')")


# --- audio ----------------------------------------------------------------------------------


def write_wav(path, seconds: float = 0.1, rate: int = 16000) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, np.zeros(int(seconds * rate), dtype=np.float32), rate)


def test_manifest_paths_are_read_from_the_manifest_folder(tmp_path, monkeypatch):
    write_wav(tmp_path / "data" / "clips" / "a.wav")
    write_wav(tmp_path / "elsewhere" / "b.wav")
    absolute = tmp_path / "elsewhere" / "b.wav"
    (tmp_path / "data" / "train.tsv").write_text(f"path\ttext\nclips/a.wav\thello, world\n{absolute}\tgood bye\n")
    monkeypatch.chdir(tmp_path)
    assert read_audio_manifest("data/train.tsv", "text") == [
        {"path": tmp_path.joinpath("data", "clips", "a.wav").relative_to(tmp_path), "text": "hello, world", "_row": 2},
        {"path": absolute, "text": "good bye", "_row": 3},
    ]


def test_manifest_with_labels_as_json_lines(tmp_path):
    write_wav(tmp_path / "a.wav")
    path = tmp_path / "train.jsonl"
    path.write_text('{"path": "a.wav", "label": 7, "speaker": "s1"}\n')
    assert read_audio_manifest(path, "label") == [{"path": tmp_path / "a.wav", "label": 7, "_row": 1}]


def test_manifest_missing_audio_file_names_the_manifest_and_row(tmp_path):
    write_wav(tmp_path / "a.wav")
    path = tmp_path / "train.csv"
    path.write_text("path,text\na.wav,hello\nmissing.wav,bye\n")
    message = error_of(read_audio_manifest, path, "text")
    assert message.startswith(f"{path}, line 3: audio file {str(tmp_path / 'missing.wav')!r} does not exist")


def test_manifest_empty_transcript_names_the_manifest_and_row(tmp_path):
    write_wav(tmp_path / "a.wav")
    path = tmp_path / "train.csv"
    path.write_text('path,text\na.wav,"  "\n')
    assert error_of(read_audio_manifest, path, "text") == (
        f"{path}, line 2: the transcript is empty; fill it in or drop the row"
    )


def test_manifest_without_path_column(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text("file,text\na.wav,hi\n")
    message = error_of(read_audio_manifest, path, "text")
    assert message.startswith(f"{path}: no column 'path' (columns found: 'file', 'text')")


def test_read_audio_makes_44k_stereo_16k_mono(tmp_path):
    seconds, file_rate = 0.25, 44100
    t = np.arange(int(seconds * file_rate)) / file_rate
    tone = np.sin(2 * np.pi * 440.0 * t)
    path = tmp_path / "stereo.wav"
    soundfile.write(path, np.stack([0.6 * tone, 0.2 * tone], axis=1), file_rate)
    waveform = read_audio(path, sampling_rate=16000)
    assert waveform.ndim == 1 and waveform.dtype == np.float32
    assert abs(len(waveform) - round(seconds * 16000)) <= 1
    # The channels are averaged: a 0.6 and a 0.2 tone make a 0.4 one.
    assert np.abs(waveform[200:-200]).max() == pytest.approx(0.4, abs=0.01)


def test_read_audio_errors_name_the_file(tmp_path):
    missing = tmp_path / "absent.wav"
    assert error_of(read_audio, missing) == f"{missing}: no such audio file; check the path"
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"this is not a wav file")
    assert str(broken) in error_of(read_audio, broken)


# --- images ---------------------------------------------------------------------------------


def write_image(path, size=(4, 3), mode="RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size).save(path)


def test_image_folder_lists_images_per_class_sorted(tmp_path):
    for name in ["cat/b.png", "cat/a.JPG", "cat/sub/c.png", "dog/d.webp", "cat/.hidden.png"]:
        write_image(tmp_path / name)
    (tmp_path / "dog" / "notes.txt").write_text("not an image")
    (tmp_path / "empty").mkdir()
    assert read_image_folder(tmp_path) == [
        {"path": tmp_path / "cat" / "a.JPG", "label": "cat"},
        {"path": tmp_path / "cat" / "b.png", "label": "cat"},
        {"path": tmp_path / "cat" / "sub" / "c.png", "label": "cat"},
        {"path": tmp_path / "dog" / "d.webp", "label": "dog"},
    ]


def test_image_folder_errors(tmp_path):
    write_image(tmp_path / "loose.png")
    assert error_of(read_image_folder, tmp_path).startswith(f"{tmp_path}: no class folders")
    (tmp_path / "cat").mkdir()
    assert error_of(read_image_folder, tmp_path).startswith(f"{tmp_path}: no images in the class folders")
    assert error_of(read_image_folder, tmp_path / "absent") == f"{tmp_path / 'absent'}: no such folder; check the path"


def test_segmentation_folder_pairs_images_with_masks(tmp_path):
    for name in ["images/x.jpg", "images/y.png", "masks/x.png", "masks/y.png"]:
        write_image(tmp_path / name)
    assert read_segmentation_folder(tmp_path) == [
        {"image": tmp_path / "images" / "x.jpg", "mask": tmp_path / "masks" / "x.png"},
        {"image": tmp_path / "images" / "y.png", "mask": tmp_path / "masks" / "y.png"},
    ]


def test_segmentation_image_without_mask_is_named(tmp_path):
    for name in ["images/x.png", "images/z.png", "masks/x.png"]:
        write_image(tmp_path / name)
    message = error_of(read_segmentation_folder, tmp_path)
    assert message.startswith(f"{tmp_path / 'images' / 'z.png'}: no mask {str(tmp_path / 'masks' / 'z.png')!r}")


def test_segmentation_folder_without_pairs_or_masks_folder(tmp_path):
    (tmp_path / "images").mkdir()
    assert error_of(read_segmentation_folder, tmp_path).startswith(f"{tmp_path}: no masks/ folder")
    (tmp_path / "masks").mkdir()
    assert error_of(read_segmentation_folder, tmp_path).startswith(f"{tmp_path / 'images'}: no images")


def test_load_image_is_rgb(tmp_path):
    path = tmp_path / "gray.png"
    Image.fromarray(np.full((3, 4), 200, dtype=np.uint8)).save(path)
    image = load_image(path)
    assert image.mode == "RGB" and image.size == (4, 3)
    assert np.array(image).tolist() == [[[200, 200, 200]] * 4] * 3


def test_unreadable_or_missing_image_is_named(tmp_path):
    path = tmp_path / "broken.png"
    path.write_bytes(b"not an image at all")
    assert re.match(rf"{re.escape(str(path))}: not a readable image \(.*\); convert it", error_of(load_image, path))
    missing = tmp_path / "absent.png"
    assert error_of(load_image, missing) == f"{missing}: no such image file; check the path"
    assert error_of(load_mask, path, (4, 3)).startswith(f"{path}: not a readable image")


CLASS_IDS = np.array([[0, 1, 2], [3, 4, 255]], dtype=np.uint8)  # (height 2, width 3)


def test_palette_and_grayscale_masks_give_class_ids(tmp_path):
    palette = Image.new("P", (3, 2))
    palette.putdata(CLASS_IDS.flatten().tolist())
    palette.putpalette([value for index in range(256) for value in (index, 255 - index, 0)])
    palette.save(tmp_path / "palette.png")
    Image.fromarray(CLASS_IDS).save(tmp_path / "gray.png")
    for name in ["palette.png", "gray.png"]:
        class_ids = load_mask(tmp_path / name, (3, 2))
        assert class_ids.dtype == np.int64
        assert class_ids.tolist() == [[0, 1, 2], [3, 4, 255]]
    with Image.open(tmp_path / "palette.png") as written:
        assert written.mode == "P"


def test_mask_of_another_size_gives_both_sizes(tmp_path):
    path = tmp_path / "mask.png"
    Image.fromarray(CLASS_IDS).save(path)
    assert error_of(load_mask, path, (4, 2)).startswith(
        f"{path}: the mask is 3x2 pixels but its image is 4x2 (width x height)"
    )


def test_rgb_mask_asks_for_class_ids(tmp_path):
    path = tmp_path / "mask.png"
    write_image(path, size=(3, 2))
    message = error_of(load_mask, path, (3, 2))
    assert message.startswith(f"{path}: the mask has mode 'RGB'")
    assert "palette ('P') or grayscale ('L')" in message
