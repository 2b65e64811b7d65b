"""The recipes: they load and validate, the Base ones carry the published data2vec 1.0 and 2.0
numbers (written here from PRETRAINING-FACTS.md), the tiny ones build small models."""

from __future__ import annotations

import math

import pytest
import yaml

from data2vec.pretraining.ema import EMATeacher
from data2vec.pretraining.modalities import adapter_for
from data2vec.pretraining.recipe import RECIPES_FOLDER, Recipe, RecipeError, resolve_recipe_path
from tests.pretraining.tiny_setup import tiny_recipe_dict

MODALITIES = ("audio", "vision", "text")


def base(modality: str) -> Recipe:
    return Recipe.load(RECIPES_FOLDER / f"pretrain-{modality}-base.yaml")


@pytest.mark.parametrize("modality", MODALITIES)
@pytest.mark.parametrize("size", ["base", "tiny"])
def test_recipes_load_and_validate(modality, size):
    recipe = Recipe.load(RECIPES_FOLDER / f"pretrain-{modality}-{size}.yaml")
    assert recipe.modality == modality and recipe.name == f"pretrain-{modality}-{size}"
    assert Recipe.from_dict(recipe.to_dict()) == recipe  # what checkpoints store reads back
    assert resolve_recipe_path(f"{modality}-{size}").name == f"pretrain-{modality}-{size}.yaml"
    config = adapter_for(recipe).model_config()  # the backbone config is complete and consistent
    assert config.hidden_size == recipe.model["hidden_size"]


def test_audio_base_is_the_published_recipe():
    recipe = base("audio")
    assert (recipe.ema.start, recipe.ema.end, recipe.ema.anneal_steps) == (0.999, 0.9999, 30000)
    assert (recipe.targets.top_k, recipe.targets.layer_output, recipe.targets.layer_norm, recipe.targets.post_norm) == (
        8, "feed_forward", "instance", "none")
    assert (recipe.masking.mask_prob, recipe.masking.mask_length, recipe.masking.min_masks) == (0.65, 10, 1)
    assert (recipe.loss.beta, recipe.loss.scale, recipe.loss.reduction) == (0.0, None, "sum")  # L2 x 1/sqrt(768)
    assert recipe.head.num_layers == 1
    optim = recipe.optim
    assert (optim.lr, optim.betas, optim.eps, optim.weight_decay, optim.no_decay_1d) == (5e-4, [0.9, 0.98], 1e-6, 0.01, False)
    assert (optim.schedule, optim.phase_ratio, optim.total_steps, optim.clip_norm) == ("tri_stage", [0.03, 0.9, 0.07], 400000, None)
    model = recipe.model
    assert (model["hidden_size"], model["num_hidden_layers"], model["layerdrop"]) == (768, 12, 0.05)
    assert (model["hidden_dropout"], model["attention_dropout"], model["activation_dropout"]) == (0.1, 0.1, 0.0)
    assert (model["num_conv_pos_embeddings"], model["conv_pos_kernel_size"]) == (5, 19)  # pos_conv_depth 5, conv_pos 95
    assert (recipe.data.max_sample_size, recipe.data.min_sample_size) == (320000, 32000)
    # length-bucketed batches of 3.8M samples per GPU x 16 GPUs, no accumulation; equal mask counts per batch
    assert (recipe.data.max_tokens, recipe.data.batch_size, recipe.optim.update_freq) == (3_800_000, None, 1)
    assert recipe.masking.require_same_masks is True
    assert (recipe.collapse.min_target_std, recipe.collapse.min_prediction_std, recipe.collapse.check_after) == (0.1, 0.01, 5000)


def test_vision_base_is_the_published_recipe():
    recipe = base("vision")
    assert (recipe.ema.start, recipe.ema.end) == (0.9998, 0.9998) and recipe.ema.copy_patterns == []
    assert (recipe.targets.top_k, recipe.targets.layer_output, recipe.targets.layer_norm, recipe.targets.post_norm) == (
        6, "block", "layer", "layer")
    assert (recipe.masking.num_masking_patches, recipe.masking.min_num_patches, recipe.masking.min_aspect) == (120, 16, 0.3)
    assert (recipe.loss.beta, recipe.loss.scale, recipe.loss.reduction) == (2.0, 1.0, "mean")
    optim = recipe.optim
    assert (optim.lr, optim.betas, optim.eps, optim.weight_decay, optim.no_decay_1d) == (2e-3, [0.9, 0.999], 1e-8, 0.05, True)
    assert (optim.schedule, optim.clip_norm) == ("cosine", 3.0)
    model = recipe.model
    assert (model["drop_path_rate"], model["layer_scale_init_value"], model["attention_probs_dropout_prob"]) == (0.25, 1e-4, 0.05)
    assert (model["image_size"] // model["patch_size"]) ** 2 == 196 and model["use_mask_token"] is True
    assert recipe.data.batch_size == 2048


def test_text_base_is_the_published_recipe():
    recipe = base("text")
    assert (recipe.ema.start, recipe.ema.end, recipe.ema.anneal_steps) == (0.999, 0.9999, 300000)
    assert (recipe.targets.top_k, recipe.targets.layer_output, recipe.targets.layer_norm, recipe.targets.post_norm) == (
        10, "feed_forward", "layer", "none")
    masking = recipe.masking  # the released config: spans of 4, 35%, all <mask>
    assert (masking.mode, masking.mask_prob, masking.mask_multiple_length) == ("span", 0.35, 4)
    assert (masking.random_token_prob, masking.leave_unmasked_prob) == (0.0, 0.0)
    assert (recipe.loss.beta, recipe.loss.scale, recipe.loss.reduction) == (4.0, 1.0, "sum")
    assert recipe.head.num_layers == 2
    optim = recipe.optim
    assert (optim.lr, optim.betas, optim.eps, optim.weight_decay) == (2e-4, [0.9, 0.98], 1e-6, 0.01)
    assert (optim.schedule, optim.warmup_steps, optim.total_steps, optim.clip_norm) == ("cosine", 10000, 1000000, 5.0)
    assert (recipe.data.batch_size, recipe.data.tokens_per_sample) == (256, 512)
    assert (recipe.model["hidden_dropout_prob"], recipe.model["attention_probs_dropout_prob"]) == (0.1, 0.1)


@pytest.mark.parametrize("modality", MODALITIES)
def test_tiny_recipes_build_small_models_and_copy_the_right_parameters(modality):
    tiny = Recipe.load(RECIPES_FOLDER / f"pretrain-{modality}-tiny.yaml")
    assert 64 <= tiny.model["hidden_size"] <= 128 and 2 <= tiny.model["num_hidden_layers"] <= 4
    adapter = adapter_for(tiny)
    if modality == "text":
        tiny.model["vocab_size"] = tiny.data.vocab_size  # set from the tokenizer in a run
    backbone = adapter.build_backbone(adapter.config_class(**tiny.model))
    assert sum(p.numel() for p in backbone.parameters()) < 1_000_000
    teacher = EMATeacher(backbone, copy_patterns=base(modality).ema.copy_patterns)
    names = [name for name, _ in backbone.named_parameters()]
    expected_copied = {
        "audio": [n for n in names if n.split(".")[0] in ("feature_encoder", "feature_projection", "positional_conv")],
        "vision": [],
        "text": [n for n in names if n.startswith("embeddings.")],
    }[modality]
    assert teacher.copied_names == sorted(expected_copied)
    if modality != "vision":
        assert len(expected_copied) >= 3
    assert teacher.averaged_names == sorted(set(names) - set(expected_copied))


def test_modality_aliases_are_accepted_in_recipes_and_the_cli():
    from data2vec.cli import build_parser

    audio = Recipe.from_dict({**tiny_recipe_dict("audio"), "modality": "speech"})
    assert audio.modality == "audio" and type(audio.data).__name__ == "AudioDataSettings"
    assert Recipe.from_dict({**tiny_recipe_dict("vision"), "modality": "image"}).modality == "vision"
    assert resolve_recipe_path("speech-tiny").name == "pretrain-audio-tiny.yaml"
    assert resolve_recipe_path("pretrain-image-base").name == "pretrain-vision-base.yaml"
    # data2vec 2.0 recipes keep their prefix; the speech ones are named speech, and audio finds them too
    assert resolve_recipe_path("pretrain2-audio-tiny").name == "pretrain2-speech-tiny.yaml"
    assert resolve_recipe_path("pretrain2-image-digits").name == "pretrain2-vision-digits.yaml"
    assert resolve_recipe_path("pretrain2-text-base").name == "pretrain2-text-base.yaml"
    parser = build_parser()
    assert parser.parse_args(["demo", "image"]).modality == parser.parse_args(["demo"]).modality == "vision"


def test_learning_rate_schedules():
    values = tiny_recipe_dict("vision", optim={"total_steps": 110, "warmup_steps": 10, "min_lr": 1e-4, "lr": 1e-3})
    cosine = Recipe.from_dict(values).optim
    assert cosine.lr_scale(5) == pytest.approx(0.5)
    assert cosine.lr_scale(10) == pytest.approx(1.0)
    assert cosine.lr_scale(60) == pytest.approx(0.1 + 0.9 * 0.5)  # half way down the cosine
    assert cosine.lr_scale(110) == pytest.approx(0.1)  # min_lr / lr
    values["optim"].update(schedule="tri_stage", total_steps=1000, phase_ratio=[0.03, 0.9, 0.07])
    tri = Recipe.from_dict(values).optim  # 30 warmup, 900 hold, 70 exponential decay to 0.01
    assert tri.lr_scale(15) == pytest.approx(0.01 + 0.99 * 0.5)
    assert tri.lr_scale(500) == 1.0
    assert tri.lr_scale(965) == pytest.approx(math.exp(math.log(0.01) * 35 / 70))
    assert tri.lr_scale(1000) == pytest.approx(0.01)


def test_bad_recipes_are_rejected_with_the_reason():
    values = tiny_recipe_dict("vision")
    with pytest.raises(RecipeError, match=r"unknown keys \['mask_prob'\]"):
        Recipe.from_dict({**values, "masking": {**values["masking"], "mask_prob": 0.5}})
    with pytest.raises(RecipeError, match="unknown top-level keys"):
        Recipe.from_dict({**values, "optimiser": {}})
    with pytest.raises(RecipeError, match=r"unknown modality 'smell': registered are audio \(alias speech\), vision \(alias image\), text"):
        Recipe.from_dict({**values, "modality": "smell"})
    with pytest.raises(RecipeError, match="exceeds the model's 2 layers"):
        Recipe.from_dict({**values, "targets": {**values["targets"], "top_k": 3}})
    with pytest.raises(RecipeError, match="phase_ratio"):
        Recipe.from_dict({**values, "optim": {**values["optim"], "phase_ratio": [0.5, 0.6, 0.1]}})
    with pytest.raises(RecipeError, match="not found"):
        resolve_recipe_path("no-such-recipe")
    recipe = Recipe.from_dict({**values, "model": {**values["model"], "hidden_sise": 32}})
    with pytest.raises(RecipeError, match="hidden_sise"):
        adapter_for(recipe)
    recipe = Recipe.from_dict({**values, "model": {**values["model"], "use_mask_token": False}})
    with pytest.raises(RecipeError, match="use_mask_token"):
        adapter_for(recipe).model_config()


# ---------------------------------------------------------------------------- data2vec 2.0 recipes
RECIPE2_NAMES = {"audio": "speech", "vision": "vision", "text": "text"}  # recipes/pretrain2-<name>-<size>.yaml


def base2(modality: str) -> Recipe:
    return Recipe.load(RECIPES_FOLDER / f"pretrain2-{RECIPE2_NAMES[modality]}-base.yaml")


@pytest.mark.parametrize("modality", MODALITIES)
@pytest.mark.parametrize("size", ["base", "tiny"])
def test_version_2_recipes_load_and_validate(modality, size):
    name = f"pretrain2-{RECIPE2_NAMES[modality]}-{size}"
    recipe = Recipe.load(RECIPES_FOLDER / f"{name}.yaml")
    assert recipe.modality == modality and recipe.name == name and recipe.version == 2
    assert type(recipe.masking).__name__ == "Masking2Settings" and type(recipe.decoder).__name__ == "DecoderSettings"
    assert Recipe.from_dict(recipe.to_dict()) == recipe  # what checkpoints store reads back
    assert resolve_recipe_path(name).name == f"{name}.yaml"
    config = adapter_for(recipe).model_config()
    assert config.hidden_size == recipe.model["hidden_size"]
    if modality == "vision":
        assert recipe.model["use_mask_token"] is False  # 2.0 drops the masked patches
    assert recipe.decoder.dim % recipe.decoder.groups == 0 and recipe.decoder.kernel % 2 == 1


# the published 2.0 Base settings (PRETRAINING-FACTS.md sections 1-5, fairseq config/v2/base_*_only_task.yaml)
PUBLISHED2 = {
    "audio": {
        "masking": (8, 0.5, 5, 0.05, False),  # clones, mask_prob, mask_length, mask_prob_adjust, inverse
        # dim, layers, kernel, groups, residual, projection layers, input dropout, mask noise std
        "decoder": (384, 4, 7, 16, True, 1, 0.1, 0.01),
        "ema": (0.999, 0.99999, 75000),
        "targets": (8, "feed_forward", "instance", "none"),
        "loss": (0.0, None, "sum"),  # L2 x 1/sqrt(768)
        "optim": (7.5e-4, [0.9, 0.98], 1e-6, 0.01, True, "cosine", 8000, 400000, None),
        "collapse": (0.1, 0.01),
    },
    "vision": {
        "masking": (16, 0.8, 3, 0.07, True),
        "decoder": (768, 6, 3, 16, True, 1, 0.0, 0.01),
        "ema": (0.9998, 0.99999, 100000),
        "targets": (10, "feed_forward", "instance", "layer"),
        "loss": (0.0, None, "sum"),
        "optim": (1e-3, [0.9, 0.95], 1e-8, 0.05, True, "cosine", 50040, 375300, 4.0),
        "collapse": (0.0, 0.0),  # min_target_var 0, min_pred_var 0
    },
    "text": {
        "masking": (8, 0.48, 1, 0.0, False),
        "decoder": (768, 5, 9, 1, False, 2, 0.1, 0.01),
        "ema": (0.9999, 0.99999, 100000),
        "targets": (12, "feed_forward", "instance", "none"),
        "loss": (0.0, 1.0, "sum"),
        "optim": (2e-4, [0.9, 0.98], 1e-6, 0.01, True, "cosine", 4000, 1000000, 1.0),
        "collapse": (0.1, 0.01),
    },
}


@pytest.mark.parametrize("modality", MODALITIES)
def test_version_2_base_recipes_are_the_published_ones(modality):
    recipe, facts = base2(modality), PUBLISHED2[modality]
    masking, decoder, optim = recipe.masking, recipe.decoder, recipe.optim
    masked = (masking.clones, masking.mask_prob, masking.mask_length, masking.mask_prob_adjust, masking.inverse)
    assert masked == facts["masking"]
    assert (
        decoder.dim, decoder.layers, decoder.kernel, decoder.groups, decoder.residual, decoder.projection_layers,
        decoder.input_dropout, decoder.mask_noise_std,
    ) == facts["decoder"]
    if decoder.projection_layers == 2:
        assert decoder.projection_ratio == 2.0  # text: 768 -> 1536 -> GELU -> 768
    assert (recipe.ema.start, recipe.ema.end, recipe.ema.anneal_steps) == facts["ema"]
    targets = recipe.targets
    assert (targets.top_k, targets.layer_output, targets.layer_norm, targets.post_norm) == facts["targets"]
    assert (recipe.loss.beta, recipe.loss.scale, recipe.loss.reduction) == facts["loss"]
    assert (
        optim.lr, optim.betas, optim.eps, optim.weight_decay, optim.no_decay_1d, optim.schedule, optim.warmup_steps,
        optim.total_steps, optim.clip_norm,
    ) == facts["optim"]
    assert (recipe.collapse.min_target_std, recipe.collapse.min_prediction_std) == facts["collapse"]
    assert recipe.model["hidden_size"] == 768 and recipe.model["num_hidden_layers"] == 12
    if modality == "vision":
        # cls_loss 0.01 is scaled by one GPU's masked count and the sum divided by all 16 GPUs' count:
        # per masked version that is 0.01 / 16
        assert recipe.loss.cls_weight == pytest.approx(0.01 / 16)
        assert recipe.data.batch_size == 16 * 16  # 16 GPUs x 16 images
    else:
        assert recipe.loss.cls_weight == 0.0
    if modality == "audio":
        model = recipe.model
        dropouts = (model["hidden_dropout"], model["attention_dropout"], model["activation_dropout"])
        assert dropouts == (0.1, 0.1, 0.0) and model["layerdrop"] == 0.05
        assert (recipe.data.max_tokens, recipe.data.batch_size) == (1_000_000, None)  # 1M samples per GPU, 8 GPUs
        assert (recipe.data.max_sample_size, recipe.data.min_sample_size) == (320000, 32000)
    if modality == "text":
        assert (recipe.model["hidden_dropout_prob"], recipe.model["attention_probs_dropout_prob"]) == (0.1, 0.1)
        assert (recipe.data.batch_size, recipe.data.tokens_per_sample) == (64, 512)  # 16 GPUs x 4 blocks


def test_version_2_vision_base_has_no_dropout():
    # base_images_only_task.yaml: encoder_dropout, post_mlp_drop, attention_dropout, activation_dropout 0,
    # start/end_drop_path_rate left at their default 0
    model = base2("vision").model
    assert (model["hidden_dropout_prob"], model["attention_probs_dropout_prob"], model["drop_path_rate"]) == (0, 0, 0)


@pytest.mark.parametrize("modality", MODALITIES)
def test_version_2_teachers_average_what_the_published_ones_do(modality):
    """Speech: the teacher averages its blocks and positional convolution, the CNN front end is the
    student's; images: everything averaged; text: the blocks averaged, the embeddings the student's."""
    tiny = Recipe.load(RECIPES_FOLDER / f"pretrain2-{RECIPE2_NAMES[modality]}-tiny.yaml")
    adapter = adapter_for(tiny)
    if modality == "text":
        tiny.model["vocab_size"] = tiny.data.vocab_size  # set from the tokenizer in a run
    backbone = adapter.build_backbone(adapter.config_class(**tiny.model))
    names = [name for name, _ in backbone.named_parameters()]
    expected_copied = {
        "audio": [n for n in names if n.split(".")[0] in ("feature_encoder", "feature_projection")],
        "vision": [],
        "text": [n for n in names if n.startswith("embeddings.")],
    }[modality]
    if modality == "audio":
        assert any(n.startswith("positional_conv") for n in names)
    for recipe in (base2(modality), tiny):
        teacher = EMATeacher(backbone, copy_patterns=recipe.ema.copy_patterns)
        assert teacher.copied_names == sorted(expected_copied)
        assert teacher.averaged_names == sorted(set(names) - set(expected_copied))


def test_version_2_sections_are_checked():
    values = tiny_recipe_dict("vision")
    version2 = yaml.safe_load((RECIPES_FOLDER / "pretrain2-vision-tiny.yaml").read_text())
    with pytest.raises(RecipeError, match="decoder section belongs to version 2"):
        Recipe.from_dict({**values, "decoder": version2["decoder"]})  # version 1 (the default)
    with pytest.raises(RecipeError, match="decoder section belongs to version 2"):
        Recipe.from_dict({**values, "version": 1, "decoder": version2["decoder"]})
    with pytest.raises(RecipeError, match="needs a decoder section"):
        Recipe.from_dict({key: value for key, value in version2.items() if key != "decoder"})
    with pytest.raises(RecipeError, match="needs a decoder section"):
        Recipe.from_dict({**version2, "decoder": {}})
    with pytest.raises(RecipeError, match="version must be 1"):
        Recipe.from_dict({**version2, "version": 3})
    with pytest.raises(RecipeError, match="cls_weight"):
        Recipe.from_dict({**values, "loss": {**values["loss"], "cls_weight": 0.01}})
    # a version 2 recipe reads the 2.0 masking section: 1.0's keys are unknown there
    with pytest.raises(RecipeError, match=r"unknown keys \['num_masking_patches'\]"):
        Recipe.from_dict({**version2, "masking": {**version2["masking"], "num_masking_patches": 8}})
    with pytest.raises(RecipeError, match="decoder.kernel must be odd"):
        Recipe.from_dict({**version2, "decoder": {**version2["decoder"], "kernel": 4}})
    assert Recipe.from_dict(version2).version == 2
