"""data2vec 2.0 pretraining runs end to end: a few updates per modality, the decoder stored as the
checkpoint's head, two processes equal to one, exact resume (after Ctrl-C: test_resume.py, for
both versions), and export of the student backbone to this library and to transformers."""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch

from data2vec.pretraining.export import export_backbone
from data2vec.pretraining.recipe import DecoderSettings, Recipe
from data2vec.pretraining.trainer import Pretrainer, build_decoder
from tests.helpers import assert_close
from tests.pretraining.test_distributed import torchrun
from tests.pretraining.test_export import load_exported
from tests.pretraining.test_resume import assert_same_training_state, run_state
from tests.pretraining.tiny_setup import make_data, tiny2_recipe, tiny2_recipe_dict, write_recipe

MASK_DIMS = {"audio": 1, "vision": 2, "text": 1}  # the decoder convolves frames, the patch grid, tokens


def log_records(folder) -> list[dict]:
    return [json.loads(line) for line in (folder / "log.jsonl").read_text().splitlines() if line.strip()]


def example_inputs(modality: str, config) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    if modality == "audio":
        return {"input_values": torch.randn(2, 4000, generator=generator)}
    if modality == "vision":
        size = config.image_size
        return {"pixel_values": torch.randn(2, 3, size, size, generator=generator)}
    return {"input_ids": torch.randint(5, config.vocab_size, (2, 20), generator=generator)}


@pytest.mark.parametrize("modality", ["audio", "vision", "text"])
def test_three_updates_store_the_decoder_as_head_and_export_the_student(modality, tmp_path):
    data = make_data(modality, tmp_path)
    recipe = tiny2_recipe(modality, optim={"total_steps": 3, "warmup_steps": 1})
    assert recipe.version == 2 and recipe.masking.clones > 1
    result = Pretrainer(recipe, data, tmp_path / "run", progress=False, tensorboard=False).train()
    assert result.step == 3 and not result.interrupted

    records = log_records(tmp_path / "run")
    assert [record["step"] for record in records] == [1, 2, 3]  # log_every 1
    assert all(math.isfinite(record["loss"]) and record["loss"] > 0 for record in records), records

    checkpoint = run_state(tmp_path / "run")
    assert checkpoint["step"] == 3 and checkpoint["recipe"]["version"] == 2
    assert checkpoint["recipe"]["decoder"] == vars(recipe.decoder)
    # the decoder of the recipe's decoder section, stored where 1.0 keeps its regression head
    settings = DecoderSettings(**checkpoint["recipe"]["decoder"])
    hidden = checkpoint["model_config"]["hidden_size"]
    fresh = build_decoder(settings, hidden, MASK_DIMS[modality]).state_dict()
    assert checkpoint["head"].keys() == fresh.keys()
    assert all(checkpoint["head"][name].shape == value.shape for name, value in fresh.items())
    assert sum(value.numel() for value in checkpoint["head"].values()) > 0
    conv_weights = [value for name, value in checkpoint["head"].items() if value.dim() == MASK_DIMS[modality] + 2]
    assert conv_weights and all(weight.shape[-1] == settings.kernel for weight in conv_weights)
    assert checkpoint["optimizer"]["state"]  # the decoder is trained with the backbone

    # export: the student backbone, nothing of the decoder, loads here and in transformers
    export_backbone(tmp_path / "run" / "checkpoint.pt", tmp_path / "export")
    ours, reference = load_exported(tmp_path / "export", modality)
    for name, value in checkpoint["student"].items():
        assert torch.equal(ours.state_dict()[name], value), name
    inputs = example_inputs(modality, ours.config)
    with torch.no_grad():
        assert_close(ours(**inputs).last_hidden_state, reference(**inputs).last_hidden_state, "last_hidden_state")


def test_two_processes_match_one_with_the_same_global_batch(tmp_path):
    """Vision (no dropout, no drop path); the decoder's noise at the masked positions, drawn from
    each rank's own random stream, is set to 0 here, as dropout is in the 1.0 test."""
    images = make_data("vision", tmp_path)
    values = tiny2_recipe_dict("vision", optim={"total_steps": 3, "warmup_steps": 1}, decoder={"mask_noise_std": 0.0})
    values["data"]["batch_size"] = 8  # 4 per process, each x clones masked versions
    model = values["model"]
    assert model["hidden_dropout_prob"] == model["attention_probs_dropout_prob"] == model["drop_path_rate"] == 0
    assert values["decoder"]["input_dropout"] == 0 and values["loss"]["cls_weight"] > 0
    recipe_file = write_recipe(values, tmp_path / "recipe.yaml")

    done = torchrun(2, ["pretrain", "--recipe", str(recipe_file), "--data", str(images),
                        "--out", str(tmp_path / "two"), "--no-progress"])
    assert done.returncode == 0, done.stdout + done.stderr
    two = run_state(tmp_path / "two")
    assert two["world_size"] == 2 and len(two["rng"]) == 2

    Pretrainer(Recipe.from_dict(values), images, tmp_path / "one", progress=False, tensorboard=False).train()
    one = run_state(tmp_path / "one")
    assert one["world_size"] == 1
    assert_same_training_state(one, two, exact=False)  # student, teacher, decoder and optimizer state
    losses = [[record["loss"] for record in log_records(tmp_path / name)] for name in ("one", "two")]
    assert len(losses[0]) == 3
    torch.testing.assert_close(torch.tensor(losses[0]), torch.tensor(losses[1]), rtol=1e-5, atol=1e-7)


def test_stopped_and_resumed_run_equals_uninterrupted_run(tmp_path):
    """Text with dropout in the encoder and at the decoder's input and noise at the masked
    positions: the random state must be restored for a bit-exact continuation."""
    corpus = make_data("text", tmp_path)
    recipe = tiny2_recipe("text", optim={"total_steps": 4, "warmup_steps": 1})
    assert recipe.model["hidden_dropout_prob"] > 0 and recipe.decoder.input_dropout > 0
    assert recipe.decoder.mask_noise_std > 0

    Pretrainer(recipe, corpus, tmp_path / "straight", progress=False, tensorboard=False).train()

    first = Pretrainer(recipe, corpus, tmp_path / "resumed", progress=False, tensorboard=False)
    assert first.train(stop_after=2).step == 2
    assert run_state(tmp_path / "resumed")["step"] == 2
    shutil.copytree(tmp_path / "resumed", tmp_path / "reseeded")
    second = Pretrainer(recipe, corpus, tmp_path / "resumed", resume=True, progress=False, tensorboard=False)
    assert second.step == 2
    assert second.train().step == 4

    straight, resumed = run_state(tmp_path / "straight"), run_state(tmp_path / "resumed")
    assert straight["head"] and resumed["head"].keys() == straight["head"].keys()
    assert_same_training_state(straight, resumed)  # bit for bit, the decoder ("head") included
    logs = [log_records(tmp_path / name) for name in ("straight", "resumed")]
    assert [record["step"] for record in logs[1]] == [1, 2, 3, 4]
    assert [record["loss"] for record in logs[0]] == [record["loss"] for record in logs[1]]

    # the random state matters: the same resume without it (reseeded) ends elsewhere
    path = tmp_path / "reseeded" / "checkpoint.pt"
    stopped = torch.load(path, weights_only=True)
    torch.save({**stopped, "rng": []}, path)
    Pretrainer(recipe, corpus, tmp_path / "reseeded", resume=True, progress=False, tensorboard=False).train()
    reseeded = run_state(tmp_path / "reseeded")
    assert reseeded["step"] == 4
    assert any(not torch.equal(value, straight["student"][name]) for name, value in reseeded["student"].items())
