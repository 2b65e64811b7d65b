"""The pretraining loop: one update computed by hand, EMA wiring, logs, plots, the collapse
watch, the data readers and the CLI."""

from __future__ import annotations

import copy
import importlib.util
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from data2vec import cli
from data2vec.pretraining.data import AudioFiles, Images, StepBatches, TextBlocks
from data2vec.pretraining.trainer import CollapseError, Pretrainer
from tests.pretraining.tiny_setup import make_data, tiny_recipe, tiny_recipe_dict, write_recipe

HAS_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None  # the plot extra
HAS_TENSORBOARD = importlib.util.find_spec("tensorboard") is not None

NO_DROPOUT = {
    "audio": {"hidden_dropout": 0.0, "attention_dropout": 0.0, "activation_dropout": 0.0, "layerdrop": 0.0},
    "vision": {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0, "drop_path_rate": 0.0},
    "text": {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0},
}


@pytest.fixture(scope="module")
def data_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    return {modality: make_data(modality, folder) for modality in ("audio", "vision", "text")}


def no_dropout_recipe(modality: str, **sections):
    values = tiny_recipe_dict(modality, **sections)
    values["model"].update(NO_DROPOUT[modality])
    values["name"] = f"tiny-{modality}"
    from data2vec.pretraining.recipe import Recipe

    return Recipe.from_dict(values)


# ---------------------------------------------------------------------------- one update by hand
def instance_norm_over_time(x):  # (B, T, C): per sample and channel, biased variance, eps 1e-5
    mean = x.mean(dim=1, keepdim=True)
    variance = x.var(dim=1, unbiased=False, keepdim=True)
    return (x - mean) / torch.sqrt(variance + 1e-5)


def layer_norm(x):
    return F.layer_norm(x, x.shape[-1:], eps=1e-5)


def expected_loss(modality, student, head, teacher, batch, mask, masked_ids=None):
    """The data2vec 1.0 loss of one batch, written out from the method's description."""
    with torch.no_grad():
        if modality == "audio":
            states = student(batch["input_values"], mask_time_indices=mask).last_hidden_state
            layers = teacher.forward_intermediates(batch["input_values"], indices=[-2, -1], kind="feed_forward").intermediates
            target = torch.stack([instance_norm_over_time(layer) for layer in layers]).mean(0)[mask]
            prediction = head(states[mask])
            return ((prediction - target) ** 2).sum(-1).sum().item() / math.sqrt(target.shape[-1]) / mask.sum().item()
        if modality == "vision":
            states = student(batch["pixel_values"], bool_masked_pos=mask).last_hidden_state[:, 1:]
            layers = teacher(batch["pixel_values"], output_hidden_states=True).hidden_states[-2:]
            target = layer_norm(torch.stack([layer_norm(layer[:, 1:]) for layer in layers]).mean(0))[mask]
            prediction = head(states[mask])
            return F.smooth_l1_loss(prediction, target, beta=2.0, reduction="mean").item()
        states = student(input_ids=masked_ids).last_hidden_state
        layers = teacher.forward_intermediates(input_ids=batch["input_ids"], indices=[1, 2], kind="feed_forward").intermediates
        target = torch.stack([layer_norm(layer) for layer in layers]).mean(0)[mask]
        prediction = head(states[mask])
        return F.smooth_l1_loss(prediction, target, beta=4.0, reduction="sum").item() / mask.sum().item()


@pytest.mark.parametrize("modality", ["audio", "vision", "text"])
def test_one_update_matches_the_method_written_out(modality, data_folder, tmp_path):
    recipe = no_dropout_recipe(modality, optim={"total_steps": 4, "warmup_steps": 1})
    trainer = Pretrainer(recipe, data_folder[modality], tmp_path / "run", progress=False)
    batch = trainer.step_batches()[0]
    student_inputs, _, mask = trainer.adapter.model_inputs(batch)
    assert mask.any() and not mask.all()

    masked_ids = None
    if modality == "text":  # BERT masking: <mask>, random or kept at chosen tokens, unchanged elsewhere
        masked_ids = student_inputs["input_ids"]
        original = batch["input_ids"]
        assert torch.equal(masked_ids[~mask], original[~mask])
        replaced = (masked_ids[mask] == trainer.adapter.tokenizer.mask_token_id).float().mean().item()
        assert 0.5 < replaced < 1.0
    elif modality == "audio":
        assert torch.equal(student_inputs["mask_time_indices"], mask)
    else:
        assert torch.equal(student_inputs["bool_masked_pos"], mask)

    student = copy.deepcopy(trainer.model.backbone).train()
    head = copy.deepcopy(trainer.model.head)
    teacher_model = copy.deepcopy(trainer.teacher.model).eval()
    teacher_before = {name: p.clone() for name, p in trainer.teacher.model.named_parameters()}
    expected = expected_loss(modality, student, head, teacher_model, batch, mask, masked_ids)

    stats = trainer.train_step(batch)
    assert stats["loss"] == pytest.approx(expected, rel=1e-5)
    assert stats["masked"] == mask.sum().item()

    # the teacher: EMA of the updated student, except the parameters the recipe copies
    decay = recipe.ema.start + (recipe.ema.end - recipe.ema.start) * 1 / recipe.ema.anneal_steps
    assert stats["ema_decay"] == pytest.approx(decay)
    student_after = dict(trainer.model.backbone.named_parameters())
    copied = {"audio": ("feature_encoder.", "feature_projection.", "positional_conv."), "vision": (), "text": ("embeddings.",)}
    checked_copied = 0
    for name, value in trainer.teacher.model.named_parameters():
        assert not value.requires_grad and value.grad is None
        if name.startswith(copied[modality]):
            torch.testing.assert_close(value, student_after[name].detach(), rtol=0, atol=0)
            checked_copied += 1
        else:
            expected_value = decay * teacher_before[name] + (1 - decay) * student_after[name].detach()
            torch.testing.assert_close(value, expected_value, rtol=1e-6, atol=1e-7)
    assert checked_copied == (0 if modality == "vision" else len(trainer.teacher.copied_names)) and (
        modality == "vision" or checked_copied > 0
    )
    assert not trainer.teacher.model.training and trainer.model.training
    assert all(p.grad is not None for p in trainer.model.parameters())


# ---------------------------------------------------------------------------- run folder
def test_run_writes_log_plot_checkpoint(data_folder, tmp_path):
    recipe = tiny_recipe("vision", optim={"total_steps": 5, "warmup_steps": 2}, save_every=2, log_every=2)
    trainer = Pretrainer(recipe, data_folder["vision"], tmp_path / "run", progress=False)
    assert trainer.model.backbone.validate_inputs is None  # the first batch is checked
    result = trainer.train()
    assert result.step == 5 and not result.interrupted
    # after it, the student and the teacher never read inputs back to check them
    assert trainer.model.backbone.validate_inputs is False
    assert all(module.validate_inputs is False for module in trainer.teacher.modules() if hasattr(module, "validate_inputs"))
    records = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [2, 4, 5]
    for record in records:
        assert {"step", "loss", "lr", "ema_decay", "target_std", "prediction_std", "seconds"} <= set(record)
        assert math.isfinite(record["loss"]) and record["target_std"] > 0
    # lr at update u of a cosine with 2 warmup updates over 5: u/2, then 0.5 (1 + cos(pi (u-2)/3))
    assert records[0]["lr"] == pytest.approx(recipe.optim.lr * 2 / 2)
    assert records[1]["lr"] == pytest.approx(recipe.optim.lr * 0.5 * (1 + math.cos(math.pi * 2 / 3)))
    # decay at update u: 0.99 + (0.999 - 0.99) u / 300
    assert records[2]["ema_decay"] == pytest.approx(0.99 + 0.009 * 5 / 300)
    if HAS_MATPLOTLIB:
        with Image.open(tmp_path / "run" / "loss.png") as plot:
            assert plot.format == "PNG" and plot.size == (900, 720)
            pixels = np.asarray(plot.convert("RGB"))
        assert (np.abs(pixels.astype(int) - [31, 119, 180]).sum(-1) < 30).sum() > 50  # the loss line was drawn
    else:
        assert not (tmp_path / "run" / "loss.png").exists()
    if HAS_TENSORBOARD:  # the logged scalars, rank 0's event file
        assert len(list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))) == 1
    checkpoint = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert checkpoint["step"] == 5 and checkpoint["world_size"] == 1
    assert {"student", "teacher", "head", "optimizer", "scheduler", "rng", "recipe", "model_config"} <= set(checkpoint)
    assert not list((tmp_path / "run").glob(".*.tmp"))  # atomic writes leave no temporary file
    with pytest.raises(FileExistsError, match="--resume"):
        Pretrainer(recipe, data_folder["vision"], tmp_path / "run", progress=False)


def test_loader_workers_give_the_same_run(data_folder, tmp_path):
    from tests.pretraining.test_resume import assert_same_training_state

    states = []
    for workers in (0, 2):
        recipe = tiny_recipe("vision", optim={"total_steps": 3, "warmup_steps": 1}, data={"batch_size": 8, "num_workers": workers})
        Pretrainer(recipe, data_folder["vision"], tmp_path / f"workers{workers}", progress=False).train()
        states.append(torch.load(tmp_path / f"workers{workers}" / "checkpoint.pt", weights_only=True))
    assert_same_training_state(*states)


def test_bf16_autocast_runs(data_folder, tmp_path):
    recipe = tiny_recipe("vision", optim={"total_steps": 2, "warmup_steps": 1}, precision="bf16")
    result = Pretrainer(recipe, data_folder["vision"], tmp_path / "run", progress=False).train()
    assert math.isfinite(result.last_log["loss"]) and result.last_log["target_std"] > 0


# ---------------------------------------------------------------------------- collapse watch
def test_collapse_watch_stops_with_advice(data_folder, tmp_path):
    recipe = tiny_recipe(
        "text", optim={"total_steps": 6, "warmup_steps": 1},
        collapse={"min_target_std": 100.0, "min_prediction_std": 0.0, "check_after": 2},
    )
    trainer = Pretrainer(recipe, data_folder["text"], tmp_path / "run", progress=False)
    with pytest.raises(CollapseError) as caught:
        trainer.train()
    message = str(caught.value)
    assert "collapse at update 3" in message and "min_target_std 100" in message
    assert "Things to try" in message and "optim.lr" in message and "ema.start" in message
    assert trainer.step == 2  # the collapsed update was not applied
    assert (tmp_path / "run" / "loss.png").is_file() == HAS_MATPLOTLIB  # the curves up to the failure


def test_collapse_watch_on_the_spread_along_positions(data_folder, tmp_path):
    """position_spread is logged every update; with collapse.min_position_spread above it the run stops."""
    recipe = tiny_recipe("text", optim={"total_steps": 2, "warmup_steps": 1})
    Pretrainer(recipe, data_folder["text"], tmp_path / "run", progress=False).train()
    records = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert all(0.0 < record["position_spread"] < 1.5 for record in records), records
    recipe = tiny_recipe(
        "text", optim={"total_steps": 6, "warmup_steps": 1},
        collapse={"min_target_std": 0.0, "min_prediction_std": 0.0, "min_position_spread": 10.0, "check_after": 1},
    )
    with pytest.raises(CollapseError, match="min_position_spread 10"):
        Pretrainer(recipe, data_folder["text"], tmp_path / "watched", progress=False).train()


def test_cli_reports_collapse(data_folder, tmp_path, capsys):
    values = tiny_recipe_dict(
        "vision", optim={"total_steps": 4, "warmup_steps": 1},
        collapse={"min_target_std": 0.0, "min_prediction_std": 50.0, "check_after": 1},
    )
    recipe_file = write_recipe(values, tmp_path / "collapse.yaml")
    code = cli.main(["pretrain", "--recipe", str(recipe_file), "--data", str(data_folder["vision"]),
                     "--out", str(tmp_path / "run"), "--no-progress"])
    assert code == 3
    error = capsys.readouterr().err
    assert "representation collapse at update 2" in error and "prediction std" in error


# ---------------------------------------------------------------------------- data
def test_audio_manifest_and_folder_agree_and_crop(data_folder):
    folder = data_folder["audio"]
    from_folder = AudioFiles.from_source(folder, max_sample_size=4000, min_sample_size=3000)
    from_manifest = AudioFiles.from_source(folder / "manifest.tsv", max_sample_size=4000, min_sample_size=3000)
    assert [p.name for p in from_folder.paths] == [p.name for p in from_manifest.paths]
    assert from_folder.lengths.tolist() == from_manifest.lengths.tolist()
    short = AudioFiles.from_source(folder, max_sample_size=10**6, min_sample_size=3000)
    batch = short.load([0, 1], [np.random.default_rng(0)] * 2, group=[0, 1, 2])
    assert batch["input_values"].shape == (2, int(short.lengths[[0, 1, 2]].min()))  # the shortest of the group
    full = AudioFiles.from_source(folder, max_sample_size=10**6, min_sample_size=3000)
    whole = full.load([3], [np.random.default_rng(0)], group=[3])["input_values"][0]
    assert abs(whole.mean().item()) < 1e-4 and whole.std().item() == pytest.approx(1.0, abs=1e-3)
    with pytest.raises(ValueError, match="min_sample_size"):
        AudioFiles.from_source(folder, min_sample_size=10**7)


def test_images_from_folder_and_array(data_folder):
    folder_images = Images.from_source(data_folder["vision"], image_size=(16, 16))
    assert len(folder_images) == 24  # both class subfolders, recursively
    batch = folder_images.load([0, 1], [np.random.default_rng(0)] * 2, [0, 1])["pixel_values"]
    assert batch.shape == (2, 3, 16, 16) and -1.0 <= batch.min() and batch.max() <= 1.0
    digits = np.zeros((5, 8, 8), dtype=np.uint8)
    digits[:, 2:6, 3:5] = 255
    array_images = Images.from_source(digits, image_size=(16, 16))
    image = array_images.load([0], [np.random.default_rng(0)], [0])["pixel_values"][0]
    assert image.shape == (3, 16, 16)
    assert image[:, 8, 8].tolist() == pytest.approx([1.0] * 3, abs=0.05)  # white stroke, (1 - 0.5) / 0.5
    assert image[:, 1, 1].tolist() == pytest.approx([-1.0] * 3, abs=0.05)  # black background


def test_text_blocks_and_step_batches_split_across_ranks(data_folder, tmp_path):
    recipe = tiny_recipe("text")
    trainer = Pretrainer(recipe, data_folder["text"], tmp_path / "run", progress=False)
    blocks: TextBlocks = trainer.dataset
    tokenizer = trainer.adapter.tokenizer
    assert blocks.blocks.shape[1] == 32 and len(tokenizer) <= 300
    assert (blocks.blocks[:, 0] == tokenizer.bos_token_id).all() and (blocks.blocks[:, -1] == tokenizer.eos_token_id).all()
    assert (tmp_path / "run" / "tokenizer" / "vocab.json").is_file()

    sampler = trainer.adapter.sample_masks
    whole = StepBatches(blocks, 8, seed=3, mask_sampler=sampler)
    halves = [StepBatches(blocks, 8, seed=3, rank=rank, world_size=2, mask_sampler=sampler) for rank in range(2)]
    for step in (0, 1, whole.steps_per_epoch + 1):
        reference = whole[step]
        assert set(reference) == {"input_ids", "mask_seeds", "mask", "masked_input_ids"}
        for key in reference:  # items, mask seeds and masks do not depend on the split
            assert torch.equal(torch.cat([half[step][key] for half in halves]), reference[key]), key
    # each epoch visits distinct items, in an order drawn from (seed, epoch)
    epoch = np.concatenate([whole.global_indices(step) for step in range(whole.steps_per_epoch)])
    assert len(set(epoch.tolist())) == len(epoch)
    assert not np.array_equal(whole.global_indices(0), whole.global_indices(whole.steps_per_epoch))
    assert np.array_equal(StepBatches(blocks, 8, seed=3).global_indices(5), whole.global_indices(5))
    with pytest.raises(ValueError, match="not divisible"):
        StepBatches(blocks, 8, seed=3, rank=0, world_size=3)


# ---------------------------------------------------------------------------- weight decay
def test_parameter_groups_exempt_one_dimensional_tokens_and_named_parameters():
    from torch import nn

    from data2vec.core.optim import parameter_groups

    model = nn.Module()
    model.linear, model.norm = nn.Linear(4, 4), nn.LayerNorm(4)
    model.cls_token = nn.Parameter(torch.zeros(1, 1, 4))
    model.frozen = nn.Parameter(torch.zeros(4, 4), requires_grad=False)
    names = {id(p): name for name, p in model.named_parameters()}

    def grouped(**options):
        return [([names[id(p)] for p in group["params"]], group["weight_decay"]) for group in parameter_groups(model, 0.1, **options)]

    # the fine-tuning rule (the default): 1-D parameters and learned tokens are not decayed
    assert grouped() == [(["linear.weight"], 0.1), (["cls_token", "linear.bias", "norm.weight", "norm.bias"], 0.0)]
    # the pretraining recipes' rule: optim.no_decay_1d and optim.no_decay_patterns
    assert grouped(no_decay_1d=False, no_decay_patterns=[r"^norm\."]) == [
        (["cls_token", "linear.weight", "linear.bias"], 0.1), (["norm.weight", "norm.bias"], 0.0)
    ]
    trained = [name for name, p in model.named_parameters() if p.requires_grad]
    assert grouped(no_decay_1d=False, no_decay_patterns=[]) == [(trained, 0.1)]
    with pytest.raises(ValueError, match="no_decay_patterns"):
        parameter_groups(model, 0.1, no_decay_patterns=["("])


def test_trainer_decays_as_the_recipe_says(data_folder, tmp_path):
    recipe = tiny_recipe("vision", optim={"total_steps": 2, "warmup_steps": 1, "weight_decay": 0.05, "no_decay_1d": True})
    trainer = Pretrainer(recipe, data_folder["vision"], tmp_path / "run", progress=False)
    assert recipe.optim.no_decay_patterns == ["cls_token", "position_embeddings"]
    decayed, exempt = trainer.optimizer.param_groups
    assert (decayed["weight_decay"], exempt["weight_decay"]) == (0.05, 0.0)
    names = {id(p): name for name, p in trainer.model.named_parameters()}
    expected_exempt = [name for name, p in trainer.model.named_parameters() if p.ndim <= 1 or "cls_token" in name]
    assert [names[id(p)] for p in exempt["params"]] == expected_exempt and "backbone.embeddings.cls_token" in expected_exempt
    assert len(decayed["params"]) + len(exempt["params"]) == len(names)
