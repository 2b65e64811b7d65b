"""`data2vec export --format onnx`: each family's backbone and one head per family exported by the
command as a user runs it, then run in onnxruntime on batches of another size and length than
the export's (padded rows included) and compared with PyTorch within 1e-4."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

import data2vec
from data2vec.cli import main
from tests.helpers import add_noise
from tests.text.test_drop_padding import TINY as TINY_TEXT
from tests.training.test_tasks_audio import TINY_AUDIO
from tests.training.test_tasks_vision import TINY_VISION

onnx = pytest.importorskip("onnx", reason="the onnx extra: pip install 'data2vec[onnx]'")
onnxruntime = pytest.importorskip("onnxruntime", reason="the onnx extra: pip install 'data2vec[onnx]'")
pytest.importorskip("onnxscript", reason="the onnx extra: pip install 'data2vec[onnx]'")

ATOL = 1e-4
PAD = 1  # the text config's pad_token_id

# (model class saved to the folder, config, --task or None, the outputs the file must have)
CASES = {
    "text-backbone": (
        data2vec.Data2VecTextModel,
        lambda: data2vec.Data2VecTextConfig(**TINY_TEXT),
        None,
        ["last_hidden_state", "pooler_output"],
    ),
    "text-classification": (
        data2vec.Data2VecTextForSequenceClassification,
        lambda: data2vec.Data2VecTextConfig(**TINY_TEXT),
        "text-classification",
        ["logits"],
    ),
    "audio-backbone": (
        data2vec.Data2VecAudioModel,
        lambda: data2vec.Data2VecAudioConfig(**TINY_AUDIO),
        None,
        ["last_hidden_state", "extract_features"],
    ),
    "speech-recognition": (
        data2vec.Data2VecAudioForCTC,
        lambda: data2vec.Data2VecAudioConfig(**TINY_AUDIO, vocab_size=12),
        "speech-recognition",
        ["logits"],
    ),
    "vision-backbone": (
        data2vec.Data2VecVisionModel,
        # relative position bias shared by the layers, as the pretrained checkpoints have it
        lambda: data2vec.Data2VecVisionConfig(**TINY_VISION, use_shared_relative_position_bias=True),
        None,
        ["last_hidden_state"],  # the backbone has no pooler unless built with add_pooling_layer=True
    ),
    "image-classification": (
        data2vec.Data2VecVisionForImageClassification,
        # a relative position bias per layer, as the fine-tuned checkpoints have it
        lambda: data2vec.Data2VecVisionConfig(**TINY_VISION, num_labels=5, use_relative_position_bias=True),
        None,  # the class the folder was saved from
        ["logits"],
    ),
}


INPUT_NAMES = {
    "text": ["input_ids", "attention_mask"],
    "audio": ["input_values", "attention_mask"],
    "vision": ["pixel_values"],
}


def check_inputs(family: str, batch: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Inputs unlike the export's (batch 2; 16 tokens, 16000 samples): every row but the first
    right-padded to its own length, with dtypes as the preprocessors give them."""
    if family == "text":
        length = 9
        input_ids = torch.randint(3, TINY_TEXT["vocab_size"], (batch, length), generator=generator)
        attention_mask = torch.ones(batch, length, dtype=torch.int64)
        for row in range(1, batch):
            real = max(length - 2 * row, 2)
            input_ids[row, real:], attention_mask[row, real:] = PAD, 0
        return {"input_ids": input_ids, "attention_mask": attention_mask}
    if family == "audio":
        samples = 9000
        input_values = torch.randn(batch, samples, generator=generator)
        attention_mask = torch.ones(batch, samples, dtype=torch.int32)
        for row in range(1, batch):
            real = samples - 1500 * row
            input_values[row, real:], attention_mask[row, real:] = 0.0, 0
        return {"input_values": input_values, "attention_mask": attention_mask}
    return {"pixel_values": torch.randn(batch, 3, 32, 32, generator=generator)}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """name -> (the PyTorch model, the .onnx file, the command's stdout), exported once per module."""
    root = tmp_path_factory.mktemp("export")
    results = {}
    for name, (model_class, config, task, _) in CASES.items():
        torch.manual_seed(0)
        model = add_noise(model_class(config())).eval()
        folder = root / name
        model.save_pretrained(folder)
        output = root / f"{name}.onnx"
        command = [sys.executable, "-m", "data2vec.cli", "export", "--format", "onnx"]
        command += ["--model", str(folder), "--output", str(output)]
        if task is not None:
            command += ["--task", task]
        run = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
        assert run.returncode == 0, run.stderr
        results[name] = (model, output, run.stdout)
    return results


@pytest.mark.parametrize("name", list(CASES))
def test_onnxruntime_matches_pytorch_on_other_shapes(exported, name):
    model, path, stdout = exported[name]
    family = model.config.model_type.removeprefix("data2vec-")
    expected_outputs = CASES[name][3]
    # the command reports its own check: onnxruntime against PyTorch on a padded batch of 3
    assert f"wrote {path}" in stdout and "max |difference|" in stdout, stdout

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [output.name for output in session.get_outputs()] == expected_outputs
    input_names = [entry.name for entry in session.get_inputs()]
    assert input_names == INPUT_NAMES[family]
    dynamic = [dim for entry in session.get_inputs() for dim in entry.shape if isinstance(dim, str)]
    assert len(dynamic) == (1 if family == "vision" else 4)  # batch (and length) by name, not fixed

    generator = torch.Generator().manual_seed(1)
    for batch in (1, 4):
        inputs = check_inputs(family, batch, generator)
        results = session.run(None, {key: value.numpy() for key, value in inputs.items()})
        with torch.no_grad():
            reference = model(**inputs)
        for output_name, actual in zip(expected_outputs, results):
            expected = getattr(reference, output_name).numpy()
            assert actual.shape == expected.shape, (output_name, actual.shape, expected.shape)
            difference = float(np.abs(actual - expected).max())
            assert difference <= ATOL, f"{name} {output_name} batch {batch}: {difference:.3g}"


def test_export_reports_the_difference_from_pytorch(tmp_path):
    """The function behind the command: its own check on 3 rows, one padded, of a new length."""
    from data2vec.export import export_onnx

    torch.manual_seed(0)
    add_noise(data2vec.Data2VecTextForMultipleChoice(data2vec.Data2VecTextConfig(**TINY_TEXT))).save_pretrained(
        tmp_path / "model"
    )
    result = export_onnx(tmp_path / "model", tmp_path / "model.onnx", opset=18)
    assert result.model_class == "Data2VecTextForMultipleChoice"
    assert result.outputs == ("logits",) and result.opset == 18
    assert result.check_shapes == {"input_ids": (3, 3, 11), "attention_mask": (3, 3, 11)}  # export: (2, 2, 16)
    assert set(result.max_abs_difference) == {"logits"}
    assert 0 <= result.max_abs_difference["logits"] <= ATOL and result.passed


def test_command_errors_are_one_line(tmp_path, capsys):
    assert main(["export", "--model", str(tmp_path / "missing"), "--output", str(tmp_path / "m.onnx")]) == 2
    assert main(["export", "--model", str(tmp_path), "--output", str(tmp_path / "m.onnx"), "--opset", "9"]) == 2
    assert main(["export", "--model", str(tmp_path), "--output", str(tmp_path / "model.pt")]) == 2
    assert main(["export", "--model", str(tmp_path), "--output", str(tmp_path / "m.onnx"), "--task", "nope"]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 4 and all(line.startswith("error: ") for line in errors), errors
    assert "missing" in errors[0] and "opset 9" in errors[1] and ".onnx" in errors[2] and "nope" in errors[3]


def test_importing_the_command_does_not_import_onnx():
    code = "import sys, data2vec.cli; print(sorted(m for m in sys.modules if m.split('.')[0] in ('onnx', 'onnxruntime', 'onnxscript')))"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "[]"
