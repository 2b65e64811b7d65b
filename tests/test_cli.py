"""Every `data2vec` command reports a user's mistake as one `error: ...` line with a non-zero exit
status and no traceback; `--debug` shows the traceback."""

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from data2vec.cli import main


def run_main(argv, capsys):
    """(exit status, stderr lines) of ``data2vec argv`` run in this process."""
    try:
        status = main(argv)
    except SystemExit as stop:  # argparse exits
        status = stop.code
    err = capsys.readouterr().err
    return status, [line for line in err.splitlines() if line.strip()]


@pytest.fixture
def two_images(tmp_path):
    folder = tmp_path / "few"
    folder.mkdir()
    for index in range(2):
        Image.fromarray(np.full((20, 20, 3), 40 * index, dtype=np.uint8)).save(folder / f"{index}.png")
    return folder


def mistakes(tmp_path, two_images):
    (tmp_path / "empty").mkdir()
    (tmp_path / "config.yaml").write_text("learning-rate: 1e-4\nnot_an_option: 3\n")
    return {
        "missing data folder": (["pretrain", "--recipe", "vision-tiny", "--data", str(tmp_path / "nope")], "neither a folder"),
        "empty data folder": (["pretrain", "--recipe", "vision-tiny", "--data", str(tmp_path / "empty")], "no image files"),
        "too few items": (["pretrain", "--recipe", "vision-tiny", "--data", str(two_images)], "fewer than one batch"),
        "unknown recipe": (["pretrain", "--recipe", "nope", "--data", "x"], "recipe 'nope' not found"),
        "missing checkpoint": (["export-backbone", str(tmp_path / "nope.pt"), str(tmp_path / "out")], "no pretraining checkpoint"),
        "unknown demo": (["demo", "nosuch"], "no demo for 'nosuch'"),
        "unknown flag": (["finetune", "--task", "text-classification", "--nope"], "unrecognized arguments: --nope"),
        "unknown task": (["finetune", "--task", "nope", "--model", "m", "--train", "t", "--output", "o"], "unknown task 'nope'"),
        "missing options": (["finetune", "--task", "image-classification"], "missing --model, --train, --output"),
        "unknown config key": (["finetune", "--config", str(tmp_path / "config.yaml")], "unknown option not_an_option"),
        "not an image folder": (
            ["finetune", "--task", "image-classification", "--model", "m", "--train", str(two_images), "--output", str(tmp_path / "o")],
            "no class folders",
        ),
    }


@pytest.mark.parametrize(
    "case",
    [
        "missing data folder", "empty data folder", "too few items", "unknown recipe", "missing checkpoint", "unknown demo",
        "unknown flag", "unknown task", "missing options", "unknown config key", "not an image folder",
    ],
)
def test_a_mistake_is_one_error_line(case, tmp_path, two_images, capsys):
    argv, expected = mistakes(tmp_path, two_images)[case]
    status, lines = run_main(argv, capsys)
    assert status == 2
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], lines


def test_the_command_line_shows_no_traceback_and_debug_does(tmp_path):
    argv = [sys.executable, "-m", "data2vec.cli", "pretrain", "--recipe", "vision-tiny", "--data", str(tmp_path / "nope")]
    plain = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert plain.returncode == 2
    assert plain.stderr.strip().startswith("error: ") and "Traceback" not in plain.stderr
    debug = subprocess.run([*argv, "--debug"], capture_output=True, text=True, timeout=120)
    assert debug.returncode != 0 and "Traceback" in debug.stderr


def test_an_unexpected_error_says_it_is_one_and_points_to_debug(monkeypatch, capsys):
    import data2vec.cli as cli

    def broken(args):
        raise RuntimeError("something internal")

    parser = cli.build_parser()
    monkeypatch.setattr(cli, "build_parser", lambda argv=None: parser)
    parser._subparsers._group_actions[0].choices["export-backbone"].set_defaults(handler=broken)
    status, lines = run_main(["export-backbone", "a", "b"], capsys)
    assert status == 1
    assert lines[0] == "error: RuntimeError: something internal" and "--debug" in lines[1]
