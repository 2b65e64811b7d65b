"""The image pretraining initialisation of the released code (data2vec_vision beit/modeling_cyclical.py,
as BEiT's modeling_pretrain.py): truncated normal of std 0.02 cut at -0.02 and +0.02 (BEiT's
``trunc_normal_`` passes a=-std, b=std) for Linear and patch Conv2d weights, the CLS and the mask
token; zero biases; LayerNorm 1 / 0; then block i (1-based) has its attention output projection and
fc2 weights divided by sqrt(2 i)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from data2vec.pretraining.modalities import adapter_for
from data2vec.pretraining.recipe import Recipe, RecipeError
from data2vec.vision.config import Data2VecVisionConfig
from data2vec.vision.model import Data2VecVisionModel, init_for_pretraining
from tests.pretraining.tiny_setup import tiny_recipe, tiny_recipe_dict

STD = 0.02
# N(0, 1) cut at -1 and +1: variance 1 - 2 phi(1) / (Phi(1) - Phi(-1)), about 0.5396^2
_PHI_1 = math.exp(-0.5) / math.sqrt(2 * math.pi)
_MASS_1 = math.erf(1 / math.sqrt(2))  # P(|z| < 1)
TRUNCATED_STD = STD * math.sqrt(1 - 2 * _PHI_1 / _MASS_1)  # ~0.01079
INNER_HALF = math.erf(0.5 / math.sqrt(2)) / _MASS_1  # P(|w| < std / 2), ~0.561 (uniform on [-std, std]: 0.5)


def config(**changes) -> Data2VecVisionConfig:
    values = dict(
        hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024, image_size=32,
        patch_size=8, use_mask_token=True, use_shared_relative_position_bias=True, use_relative_position_bias=False,
        use_absolute_position_embeddings=True, layer_scale_init_value=0.1, initializer_range=STD,
    )
    return Data2VecVisionConfig(**{**values, **changes})


def initialised(seed: int = 0, depth_rescale: bool = True) -> Data2VecVisionModel:
    torch.manual_seed(seed)
    model = Data2VecVisionModel(config())
    init_for_pretraining(model, depth_rescale=depth_rescale)
    return model


def test_weights_are_a_normal_of_std_002_truncated_at_one_std():
    model = initialised()
    block = model.encoder.layers[0]
    # 256 x 1024 and 768 x 256 weights (block 1's fc1 and fused q/k/v: not rescaled)
    for weight in (block.mlp.fc1.weight, block.attention.qkv.weight):
        values = weight.detach().double().flatten()
        assert values.numel() >= 196608
        assert values.abs().max() <= STD  # cut at +-std ...
        assert values.abs().max() > 0.99 * STD  # ... and the cut is reached
        assert values.mean().abs() < 1e-4
        # the spread of the truncated normal (1% = ~10 standard errors of the estimate at this size)
        assert values.std().item() == pytest.approx(TRUNCATED_STD, rel=0.01)
        # its shape: denser in the middle than a uniform on [-std, std] (0.005 = ~5 standard errors)
        assert (values.abs() < STD / 2).double().mean().item() == pytest.approx(INNER_HALF, abs=0.005)
    patch = model.embeddings.patch_embedding
    assert isinstance(patch, nn.Conv2d) and patch.weight.abs().max() <= STD
    assert patch.weight.std().item() == pytest.approx(TRUNCATED_STD, rel=0.05)  # 256 x 192 values
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            assert module.weight.abs().max() <= STD
            assert module.bias is None or not module.bias.any()
        if isinstance(module, nn.LayerNorm):
            assert torch.equal(module.weight, torch.ones_like(module.weight)) and not module.bias.any()


def test_cls_mask_token_and_positions_are_truncated_normal_too():
    embeddings = initialised().embeddings
    tokens = {"cls": embeddings.cls_token, "mask": embeddings.mask_token}
    for name, token in tokens.items():
        values = token.detach().double().flatten()  # 256 values
        assert values.abs().max() <= STD, name
        assert (values != 0).all(), name
        assert values.std().item() == pytest.approx(TRUNCATED_STD, rel=0.15), name  # ~5 standard errors
    assert not torch.equal(tokens["cls"], tokens["mask"])  # drawn independently
    positions = embeddings.position_embeddings.detach().double()  # (1, 17, 256)
    assert positions.abs().max() <= STD and positions.std().item() == pytest.approx(TRUNCATED_STD, rel=0.05)


def test_the_rest_keeps_the_model_init():
    model = initialised()
    assert not model.shared_relative_position_bias.table.any()
    for block in model.encoder.layers:
        assert not block.attention.query_bias.any() and not block.attention.value_bias.any()
        assert torch.equal(block.attention_scale, torch.full((256,), 0.1))
        assert torch.equal(block.mlp_scale, torch.full((256,), 0.1))


def test_block_i_attention_output_and_fc2_are_divided_by_sqrt_2i():
    plain, rescaled = initialised(seed=3, depth_rescale=False), initialised(seed=3)
    rescaled_names = set()
    for layer_id, (before, after) in enumerate(zip(plain.encoder.layers, rescaled.encoder.layers), start=1):
        for name in ("attention.out_proj.weight", "mlp.fc2.weight"):
            expected = before.get_parameter(name) / math.sqrt(2 * layer_id)
            assert torch.equal(after.get_parameter(name), expected), (layer_id, name)
            rescaled_names.add(f"encoder.layers.{layer_id - 1}.{name}")
    assert len(rescaled_names) == 8
    for name, value in rescaled.named_parameters():  # every other parameter: the same draw
        if name not in rescaled_names:
            assert torch.equal(value, plain.get_parameter(name)), name
    # and in numbers: block 4's fc2 (1024 x 256) spreads 0.0108 / sqrt(8)
    fc2 = rescaled.encoder.layers[3].mlp.fc2.weight.detach().double()
    assert fc2.std().item() == pytest.approx(TRUNCATED_STD / math.sqrt(8), rel=0.01)
    assert fc2.abs().max() <= STD / math.sqrt(8)


def test_vision_pretraining_builds_the_backbone_with_it():
    recipe = tiny_recipe("vision")
    assert recipe.model_init == "beit"  # set in recipes/pretrain-vision-tiny.yaml
    adapter = adapter_for(recipe)
    torch.manual_seed(0)
    backbone = adapter.build_backbone(adapter.model_config())
    assert backbone.encoder.layers[0].attention.qkv.weight.abs().max() <= STD
    assert backbone.encoder.layers[1].mlp.fc2.weight.abs().max() <= STD / 2  # block 2: / sqrt(4)
    assert backbone.embeddings.mask_token.any() and backbone.embeddings.cls_token.any()

    plain = adapter_for(Recipe.from_dict({**tiny_recipe_dict("vision"), "model_init": "default"}))
    torch.manual_seed(0)
    default = plain.build_backbone(plain.model_config())  # N(0, 0.02), zero tokens
    assert default.encoder.layers[0].attention.qkv.weight.abs().max() > STD
    assert not default.embeddings.mask_token.any()


def test_the_published_vision_recipe_uses_it_and_other_modalities_refuse_it():
    assert Recipe.load("vision-base").model_init == "beit"
    with pytest.raises(RecipeError, match="model_init 'beit' is not available for text"):
        adapter_for(Recipe.from_dict({**tiny_recipe_dict("text"), "model_init": "beit"}))
    with pytest.raises(RecipeError, match=r"model_init must be one of \('default', 'beit'\), got 'xavier'"):
        Recipe.from_dict({**tiny_recipe_dict("vision"), "model_init": "xavier"})
