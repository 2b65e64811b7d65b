"""The machinery every task pipeline shares: length-sorted batching that returns results in
input order, a window of inputs at a time; the device and dtype choice; call options; and how
the commands expand their inputs (files, folders, globs, text files)."""

from __future__ import annotations

import io
import json

import pytest
import torch
from torch import nn

from data2vec.pipelines import ALIASES, TASKS, pipeline_class, task_name
from data2vec.pipelines.base import (
    AUDIO_SUFFIXES,
    Option,
    Pipeline,
    choose_device,
    choose_dtype,
    expand_files,
    expand_texts,
    pad,
)


class MeanOfValid(nn.Module):
    """Per row: the mean of the real values (attention mask 1) times a weight, and the length seen."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.tensor(2.0))

    def forward(self, values, attention_mask):
        mask = attention_mask.to(values.dtype)
        return {"mean": (values * mask).sum(1) / mask.sum(1) * self.weight, "padded_length": values.shape[1]}


class Toy(Pipeline):
    """Inputs are lists of numbers; a list longer than `split` is cut into pieces of that size,
    and the result is the mean of the piece means (times 2): the base must give each piece its
    own output and each input its own pieces, whatever the batching."""

    task = "toy"
    modality = "text"
    options = (Option("split", 100, "piece size"), Option("offset", 0.0, "added to each result"))

    def __init__(self, **kwargs):
        super().__init__(MeanOfValid(), None, **kwargs)
        self.batches: list[list[int]] = []

    def preprocess(self, item, split, offset):
        values = torch.tensor(item, dtype=torch.float32)
        return [{"values": part} for part in values.split(split)]

    def length(self, piece):
        return len(piece["values"])

    def collate(self, pieces):
        self.batches.append([len(piece["values"]) for piece in pieces])
        values, mask = pad([piece["values"] for piece in pieces])
        return {"values": values, "attention_mask": mask}

    def unbatch(self, outputs, pieces):
        return [float(value) for value in outputs["mean"]]

    def postprocess(self, item, pieces, outputs, split, offset):
        return sum(outputs) / len(outputs) + offset


def expected(item, split=100):
    parts = [item[start : start + split] for start in range(0, len(item), split)]
    return sum(2 * sum(part) / len(part) for part in parts) / len(parts)


ITEMS = [[float(value + 1) for value in range(length)] for length in (3, 9, 1, 7, 2, 8, 5)]


def test_length_sorted_batches_give_results_in_input_order_equal_to_batch_size_one():
    one = Toy(batch_size=1, device="cpu", progress=False)
    three = Toy(batch_size=3, device="cpu", progress=False)
    assert one(ITEMS) == pytest.approx([expected(item) for item in ITEMS])
    assert three(ITEMS) == pytest.approx(one(ITEMS))
    # longest first, in batches of three: padding only within a batch of similar lengths
    assert three.batches == [[9, 8, 7], [5, 3, 2], [1]]


def test_an_input_of_several_pieces_and_windows_of_inputs(monkeypatch):
    from data2vec.pipelines import base

    monkeypatch.setattr(base, "WINDOW_BATCHES", 1)  # a window of two inputs at batch size 2
    pipe = Toy(batch_size=2, device="cpu", progress=False)
    results = pipe(ITEMS, split=4, offset=0.5)
    assert results == pytest.approx([expected(item, split=4) + 0.5 for item in ITEMS])
    # ceil(len / 4) pieces per input, never mixed across windows of two inputs
    pieces = [sum(len(batch) for batch in pipe.batches[:2]), sum(len(batch) for batch in pipe.batches[2:4])]
    assert pieces == [1 + 3, 1 + 2]


def test_one_input_gives_one_result_and_a_generator_gives_a_list():
    pipe = Toy(device="cpu", progress=False)
    assert pipe(tuple(ITEMS[1])) == pytest.approx(expected(ITEMS[1]))  # a list would be a list of inputs
    assert pipe(item for item in ITEMS[:2]) == pytest.approx([expected(ITEMS[0]), expected(ITEMS[1])])
    assert list(pipe.iterate(ITEMS[:2])) == pytest.approx(pipe(ITEMS[:2]))


def test_unknown_options_and_bad_batch_sizes_are_errors_that_name_them():
    pipe = Toy(device="cpu", progress=False)
    with pytest.raises(TypeError, match=r"unknown option\(s\) splt; it takes split, offset"):
        pipe(ITEMS[0], splt=3)
    for size in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="batch_size must be a positive integer"):
            Toy(batch_size=size, device="cpu")


def test_the_progress_bar_counts_inputs_when_asked(capsys):
    Toy(device="cpu", progress=True)(ITEMS)
    assert "toy:   0%|          | 0/7" in capsys.readouterr().err  # labelled with the task, counting inputs
    Toy(device="cpu", progress=False)(ITEMS)
    assert capsys.readouterr().err == ""


def test_bfloat16_casts_the_model_and_the_floating_inputs():
    pipe = Toy(device="cpu", dtype="bfloat16", progress=False)
    assert pipe.model.weight.dtype == torch.bfloat16
    batch = pipe.to_device({"values": torch.ones(2, 3), "attention_mask": torch.ones(2, 3, dtype=torch.long)})
    assert batch["values"].dtype == torch.bfloat16 and batch["attention_mask"].dtype == torch.long
    assert pipe([[1.0, 2.0, 4.0]])[0] == pytest.approx(expected([1.0, 2.0, 4.0]), rel=1e-2)


def test_device_and_dtype_choices():
    if not torch.cuda.is_available():
        assert choose_device(None).type in ("cpu", "mps")
        with pytest.raises(ValueError, match="no CUDA GPU"):
            choose_device("cuda")
    assert choose_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="unknown device 'gpu0'"):
        choose_device("gpu0")
    cpu = torch.device("cpu")
    assert choose_dtype(None, cpu) == torch.float32
    assert choose_dtype("bf16", cpu) == choose_dtype(torch.bfloat16, cpu) == torch.bfloat16
    with pytest.raises(ValueError, match="float16 is not supported on the CPU"):
        choose_dtype("float16", cpu)
    with pytest.raises(ValueError, match="unknown dtype 'half-ish'"):
        choose_dtype("half-ish", cpu)
    with pytest.raises(ValueError, match="not a floating type"):
        choose_dtype(torch.int8, cpu)


def test_pad_gives_the_mask_of_real_positions():
    padded, mask = pad([torch.tensor([1, 2, 3]), torch.tensor([4])], value=-1)
    assert padded.tolist() == [[1, 2, 3], [4, -1, -1]]
    assert mask.tolist() == [[1, 1, 1], [1, 0, 0]]


def test_task_names_and_the_reference_aliases():
    assert task_name("automatic-speech-recognition") == "speech-recognition"
    assert task_name("image-segmentation") == "semantic-segmentation"
    assert set(ALIASES.values()) <= set(TASKS)
    with pytest.raises(ValueError, match="unknown task 'translation'"):
        pipeline_class("translation")


# ---------------------------------------------------------------------- the commands' inputs


def test_files_from_paths_folders_and_globs_in_order(tmp_path):
    (tmp_path / "a" / "deep").mkdir(parents=True)
    for name in ("a/2.wav", "a/deep/1.flac", "a/notes.txt", "b.ogg", "c.wav"):
        (tmp_path / name).write_bytes(b"x")
    found = expand_files(
        [str(tmp_path / "c.wav"), str(tmp_path / "a"), str(tmp_path / "*.ogg")], AUDIO_SUFFIXES, "audio"
    )
    assert [path.relative_to(tmp_path).as_posix() for path in found] == ["c.wav", "a/2.wav", "a/deep/1.flac", "b.ogg"]
    with pytest.raises(FileNotFoundError, match="audio file '.*missing.wav' does not exist"):
        expand_files([str(tmp_path / "missing.wav")], AUDIO_SUFFIXES, "audio")
    with pytest.raises(FileNotFoundError, match="no file matches"):
        expand_files([str(tmp_path / "*.mp3")], AUDIO_SUFFIXES, "audio")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no audio files"):
        expand_files([str(tmp_path / "empty")], AUDIO_SUFFIXES, "audio")


def test_texts_from_strings_files_folders_and_standard_input(tmp_path, monkeypatch):
    (tmp_path / "lines.txt").write_text("first line\n\nsecond line\n", encoding="utf-8")
    (tmp_path / "rows.csv").write_text('id,text\n1,from csv\n2,"with, comma"\n', encoding="utf-8")
    (tmp_path / "rows.jsonl").write_text(json.dumps({"text": "from jsonl"}) + "\n", encoding="utf-8")
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "one.txt").write_text("in a folder\n", encoding="utf-8")
    monkeypatch.setattr("sys.stdin", io.StringIO("from stdin\n"))
    arguments = [
        "just a text.txt",
        *(str(tmp_path / name) for name in ("lines.txt", "rows.csv", "rows.jsonl")),
        str(tmp_path / "folder"),
        "-",
    ]
    texts = expand_texts(arguments)
    assert [text for _, text in texts] == [
        "just a text.txt", "first line", "second line", "from csv", "with, comma", "from jsonl", "in a folder", "from stdin",
    ]  # fmt: skip
    assert texts[2][0] == f"{tmp_path / 'lines.txt'}:3" and texts[3][0] == f"{tmp_path / 'rows.csv'}:2"
    with pytest.raises(FileNotFoundError, match="text file '.*nope.txt' does not exist"):
        expand_texts([str(tmp_path / "nope.txt")])
    with pytest.raises(ValueError, match="body"):  # a missing column names the file and the column
        expand_texts([str(tmp_path / "rows.csv")], column="body")
