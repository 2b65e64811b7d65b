"""Export: a pretraining checkpoint becomes a backbone folder that this library and the
reference library load with every weight, giving the same outputs."""

from __future__ import annotations

import warnings

import pytest
import torch
import transformers

from data2vec import cli
from data2vec.audio.model import Data2VecAudioModel
from data2vec.core.modeling import CheckpointWarning
from data2vec.pretraining.export import export_backbone
from data2vec.pretraining.trainer import Pretrainer
from data2vec.text.model import Data2VecTextModel
from data2vec.text.tokenizer import Data2VecTextTokenizer
from data2vec.vision.model import Data2VecVisionModel
from tests.helpers import assert_close
from tests.pretraining.tiny_setup import make_data, tiny_recipe

CLASSES = {
    "audio": (Data2VecAudioModel, transformers.Data2VecAudioModel),
    "vision": (Data2VecVisionModel, transformers.Data2VecVisionModel),
    "text": (Data2VecTextModel, transformers.Data2VecTextModel),
}


def example_inputs(modality: str, config) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    if modality == "audio":
        return {"input_values": torch.randn(2, 4000, generator=generator)}
    if modality == "vision":
        return {"pixel_values": torch.randn(2, 3, 16, 16, generator=generator)}
    return {"input_ids": torch.randint(5, config.vocab_size, (2, 20), generator=generator)}


def load_exported(folder, modality: str):
    """(ours, the reference's) backbone loaded from an exported folder, both in eval mode, checking
    that neither library finds a weight missing, unused or of another shape."""
    ours_class, reference_class = CLASSES[modality]
    with warnings.catch_warnings():
        warnings.simplefilter("error", CheckpointWarning)  # nothing missing, nothing unused
        ours = ours_class.from_pretrained(folder)
    reference, info = reference_class.from_pretrained(folder, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    return ours.eval(), reference.eval()


@pytest.mark.parametrize("modality", ["audio", "vision", "text"])
def test_exported_backbone_loads_here_and_in_transformers(modality, tmp_path):
    data = make_data(modality, tmp_path)
    recipe = tiny_recipe(modality, optim={"total_steps": 2, "warmup_steps": 1})
    Pretrainer(recipe, data, tmp_path / "run", progress=False).train()
    checkpoint = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)

    assert cli.main(["export-backbone", str(tmp_path / "run" / "checkpoint.pt"), str(tmp_path / "export")]) == 0
    ours, reference = load_exported(tmp_path / "export", modality)

    # the exported weights are the student's
    for name, value in checkpoint["student"].items():
        assert torch.equal(ours.state_dict()[name], value), name
    assert any(not torch.equal(value, checkpoint["teacher"][name]) for name, value in checkpoint["student"].items())

    inputs = example_inputs(modality, ours.config)
    with torch.no_grad():
        assert_close(ours(**inputs).last_hidden_state, reference(**inputs).last_hidden_state, "last_hidden_state")

    # preprocessing files for fine-tuning
    if modality == "text":
        tokenizer = Data2VecTextTokenizer.from_pretrained(tmp_path / "export")
        assert len(tokenizer) == ours.config.vocab_size
        reference_tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path / "export")
        text = "the loop returns each item"
        assert tokenizer(text)["input_ids"] == reference_tokenizer(text)["input_ids"]
    elif modality == "vision":
        processor = transformers.AutoImageProcessor.from_pretrained(tmp_path / "export")
        assert processor.size == {"height": 16, "width": 16}
    else:
        extractor = transformers.AutoFeatureExtractor.from_pretrained(tmp_path / "export")
        assert extractor.sampling_rate == 16000 and extractor.do_normalize

    # the teacher on request
    export_backbone(tmp_path / "run", tmp_path / "teacher", which="teacher")
    teacher = CLASSES[modality][0].from_pretrained(tmp_path / "teacher")
    for name, value in checkpoint["teacher"].items():
        assert torch.equal(teacher.state_dict()[name], value), name


def test_export_rejects_other_files(tmp_path):
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a data2vec pretraining checkpoint"):
        export_backbone(tmp_path / "other.pt", tmp_path / "out")
    assert cli.main(["export-backbone", str(tmp_path / "missing.pt"), str(tmp_path / "out")]) == 2
