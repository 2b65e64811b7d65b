"""The task commands as a user runs them (a subprocess): a mistake gives a non-zero exit and one
`error:` line, for a missing input file, a folder that is not a checkpoint, an unreadable image
or audio file, and a checkpoint without its preprocessor file. The help lists every task
without importing torch."""

from __future__ import annotations

import subprocess
import sys

import pytest

import data2vec
from data2vec.pipelines import TASKS
from tests.test_cli import run_main
from tests.training.test_tasks_audio import write_checkpoint as write_audio_checkpoint
from tests.training.test_tasks_audio import write_wav
from tests.training.test_tasks_vision import write_checkpoint as write_vision_checkpoint
from tests.training.test_tasks_vision import write_image


def command(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "data2vec.cli", *arguments], check=False, capture_output=True, text=True, timeout=120
    )


def one_error_line(result: subprocess.CompletedProcess, *fragments: str) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0]
    assert "Traceback" not in result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def image_classifier(tmp_path_factory):
    return write_vision_checkpoint(
        tmp_path_factory.mktemp("image-classifier"), data2vec.Data2VecVisionForImageClassification,
        id2label={0: "ant", 1: "cat"},
    )  # fmt: skip


@pytest.fixture(scope="module")
def audio_classifier(tmp_path_factory):
    return write_audio_checkpoint(
        tmp_path_factory.mktemp("audio-classifier"), data2vec.Data2VecAudioForSequenceClassification,
        id2label={0: "no", 1: "yes"},
    )  # fmt: skip


def test_a_missing_input_file_and_a_folder_that_is_not_a_checkpoint(image_classifier, tmp_path):
    one_error_line(
        command("image-classification", "--model", str(image_classifier), str(tmp_path / "nope.png")),
        "image file", "nope.png' does not exist",
    )  # fmt: skip
    image = write_image(tmp_path / "cat.png", (220, 40, 30))
    (tmp_path / "empty").mkdir()
    one_error_line(
        command("image-classification", "--model", str(tmp_path / "empty"), str(image)),
        "is not a model checkpoint: it has no config.json",
    )


def test_an_unreadable_image_and_an_unreadable_audio_file(image_classifier, audio_classifier, tmp_path):
    broken_image = tmp_path / "broken.png"
    broken_image.write_bytes(b"not a PNG at all")
    one_error_line(command("image-classification", "--model", str(image_classifier), str(broken_image)), "broken.png")
    broken_audio = tmp_path / "broken.wav"
    broken_audio.write_bytes(b"RIFF....not a wave file")
    one_error_line(
        command("audio-classification", "--model", str(audio_classifier), str(broken_audio)),
        "broken.wav", "could not be decoded",
    )  # fmt: skip


def test_a_checkpoint_without_its_preprocessor_file_is_named(tmp_path, capsys):
    folder = write_audio_checkpoint(
        tmp_path / "bare", data2vec.Data2VecAudioForSequenceClassification, extractor=False, id2label={0: "a", 1: "b"}
    )
    wav = write_wav(tmp_path / "a.wav")
    status, lines = run_main(["audio-classification", "--model", str(folder), str(wav)], capsys)
    assert status == 2 and len(lines) == 1
    assert "preprocessor_config.json not found" in lines[0]


def test_the_help_lists_every_task_without_importing_torch():
    probe = (
        "import sys, contextlib, io\n"
        "from data2vec import cli\n"
        "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
        "    try: cli.main(['--help'])\n"
        "    except SystemExit: pass\n"
        "print('torch' in sys.modules)\n"
        "print(out.getvalue())\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], check=False, capture_output=True, text=True, timeout=60)
    imported, text = result.stdout.split("\n", 1)
    assert imported == "False"
    for task in TASKS:
        assert task in text
