"""Parity of the vision classes with the reference implementation (transformers) on tiny random
configs: the reference saves a noisy model, ours loads it, every output agrees within 1e-4.
Also: weights and config round trips both ways, and backbone checkpoints loading into heads."""

from __future__ import annotations

import json

import pytest
import torch
import transformers
from safetensors.torch import load_file, save_file

import data2vec
from data2vec.core.modeling import CheckpointWarning
from tests.helpers import add_noise, assert_close, noisy_batch_norms

TINY = dict(
    hidden_size=32,
    num_hidden_layers=4,
    num_attention_heads=4,
    intermediate_size=37,
    image_size=32,
    patch_size=8,
    num_channels=3,
    hidden_act="gelu",
    auxiliary_channels=16,
)



def reference(name: str, path, **config):
    """A noisy reference model of class ``name``, saved to ``path`` and reloaded with eager attention."""
    torch.manual_seed(0)
    model = add_noise(getattr(transformers, name)(transformers.Data2VecVisionConfig(**{**TINY, **config})))
    noisy_batch_norms(model)
    model.save_pretrained(path)
    return getattr(transformers, name).from_pretrained(path, attn_implementation="eager").eval()


def images(batch: int = 2, height: int = 32, width: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 3, height, width, generator=torch.Generator().manual_seed(seed))


def compare(ours, ref, fields):
    for field in fields:
        assert_close(getattr(ours, field), getattr(ref, field), field)


BACKBONES = {
    "absolute+layer_bias+mean_pool+layer_scale": dict(use_absolute_position_embeddings=True, use_relative_position_bias=True),
    "shared_bias+cls_pool+no_layer_scale": dict(
        use_shared_relative_position_bias=True, use_mean_pooling=False, layer_scale_init_value=0.0
    ),
    "absolute+shared+layer_bias+patch4+cls_pool": dict(
        patch_size=4,
        num_hidden_layers=2,
        use_absolute_position_embeddings=True,
        use_relative_position_bias=True,
        use_shared_relative_position_bias=True,
        use_mean_pooling=False,
    ),
    "no_positions+mean_pool": dict(num_hidden_layers=2),
}


@pytest.mark.parametrize("variant", list(BACKBONES))
def test_model_matches_reference(tmp_path, variant):
    ref = reference("Data2VecVisionModel", tmp_path, **BACKBONES[variant])
    ours = data2vec.Data2VecVisionModel.from_pretrained(tmp_path)
    pixels = images()
    with torch.no_grad():
        ref_out = ref(pixels, output_hidden_states=True, output_attentions=True)
        our_out = ours(pixels, output_hidden_states=True, output_attentions=True)
        fast = ours(pixels)  # fused SDPA path with the bias as attention mask
    assert len(our_out.hidden_states) == ours.config.num_hidden_layers + 1
    compare(our_out, ref_out, ["last_hidden_state", "pooler_output", "hidden_states", "attentions"])
    assert_close(fast.last_hidden_state, ref_out.last_hidden_state, "last_hidden_state (fused attention)")
    assert fast.hidden_states is None and fast.attentions is None


@pytest.mark.parametrize("variant", list(BACKBONES))
def test_image_classification_matches_reference(tmp_path, variant):
    ref = reference("Data2VecVisionForImageClassification", tmp_path, num_labels=5, **BACKBONES[variant])
    ours = data2vec.Data2VecVisionForImageClassification.from_pretrained(tmp_path)
    pixels, labels = images(3), torch.tensor([4, 0, 2])
    with torch.no_grad():
        ref_out = ref(pixels, labels=labels, output_hidden_states=True, output_attentions=True)
        our_out = ours(pixels, labels=labels, output_hidden_states=True, output_attentions=True)
    compare(our_out, ref_out, ["loss", "logits", "hidden_states", "attentions"])


@pytest.mark.parametrize(
    "num_labels,problem_type,labels",
    [
        (3, "multi_label_classification", torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]])),
        (3, "regression", torch.tensor([[0.5, -1.0, 2.0], [0.1, 0.2, 0.3]])),
        (1, None, torch.tensor([0.7, -1.5])),  # one output: regression
    ],
)
def test_image_classification_problem_types(tmp_path, num_labels, problem_type, labels):
    ref = reference("Data2VecVisionForImageClassification", tmp_path, num_labels=num_labels, problem_type=problem_type,
                    use_relative_position_bias=True)
    ours = data2vec.Data2VecVisionForImageClassification.from_pretrained(tmp_path)
    pixels = images()
    with torch.no_grad():
        compare(ours(pixels, labels=labels), ref(pixels, labels=labels), ["loss", "logits"])


def test_feed_forward_states_match_reference_fc2_outputs(tmp_path):
    ref = reference("Data2VecVisionModel", tmp_path, use_relative_position_bias=True)
    ours = data2vec.Data2VecVisionModel.from_pretrained(tmp_path)
    captured = []
    hooks = [layer.output.dense.register_forward_hook(lambda _m, _i, out: captured.append(out)) for layer in ref.encoder.layer]
    pixels = images()
    with torch.no_grad():
        ref_out = ref(pixels, output_hidden_states=True)
        out = ours.forward_intermediates(pixels, indices=range(-TINY["num_hidden_layers"], 0), kind="feed_forward")
        blocks = ours.forward_intermediates(pixels, indices=[0, 2, -1])
    for hook in hooks:
        hook.remove()
    assert len(captured) == TINY["num_hidden_layers"]
    assert_close(out.intermediates, tuple(captured), "feed-forward intermediates")
    assert_close(out.last_hidden_state, ref_out.last_hidden_state, "last_hidden_state")
    expected = tuple(ref_out.hidden_states[i] for i in (0, 2, TINY["num_hidden_layers"]))
    assert_close(blocks.intermediates, expected, "block intermediates")


def test_bool_masked_pos_matches_reference(tmp_path):
    ref = reference("Data2VecVisionModel", tmp_path, use_mask_token=True, use_absolute_position_embeddings=True,
                    use_relative_position_bias=True)
    ours = data2vec.Data2VecVisionModel.from_pretrained(tmp_path)
    pixels = images()
    mask = torch.rand(2, 16, generator=torch.Generator().manual_seed(3)) < 0.5
    mask[0, 0], mask[1, 0] = True, False
    with torch.no_grad():
        ref_out = ref(pixels, bool_masked_pos=mask, output_hidden_states=True, output_attentions=True)
        our_out = ours(pixels, bool_masked_pos=mask, output_hidden_states=True, output_attentions=True)
        unmasked = ours(pixels).last_hidden_state
    compare(our_out, ref_out, ["last_hidden_state", "hidden_states", "attentions"])
    # the mask changes the output (the mask token is not a no-op)
    assert (unmasked - our_out.last_hidden_state).abs().max() > 1e-3


@pytest.mark.parametrize("height,width", [(48, 48), (32, 48), (16, 24)])
def test_interpolate_pos_encoding_at_other_sizes(tmp_path, height, width):
    config = dict(use_absolute_position_embeddings=True, use_relative_position_bias=True,
                  use_shared_relative_position_bias=True, num_labels=3)
    ref = reference("Data2VecVisionForImageClassification", tmp_path, **config)
    ours = data2vec.Data2VecVisionForImageClassification.from_pretrained(tmp_path)
    pixels = images(height=height, width=width)
    kwargs = dict(interpolate_pos_encoding=True, output_hidden_states=True, output_attentions=True)
    with torch.no_grad():
        ref_out = ref(pixels, **kwargs)
        our_out = ours(pixels, **kwargs)
    tokens = 1 + (height // 8) * (width // 8)
    assert our_out.attentions[0].shape == (2, 4, tokens, tokens)
    compare(our_out, ref_out, ["logits", "hidden_states", "attentions"])


SEGMENTATION = {
    "auxiliary+layer_bias": dict(use_relative_position_bias=True, out_indices=[1, 2, 3, 4]),
    "auxiliary_two_convs_concat+absolute+shared": dict(
        use_absolute_position_embeddings=True,
        use_shared_relative_position_bias=True,
        auxiliary_num_convs=2,
        auxiliary_concat_input=True,
        out_indices=[5, 2, 4, 3],  # unsorted: the reference takes them in layer order
        pool_scales=[1, 3],
    ),
    "no_auxiliary+cls_norm+no_layer_scale": dict(
        use_auxiliary_head=False,
        use_relative_position_bias=True,
        use_mean_pooling=False,
        layer_scale_init_value=0.0,
        out_indices=[2, 3, 4, 5],
        semantic_loss_ignore_index=0,
    ),
    "patch4+auxiliary_weight": dict(
        patch_size=4, num_hidden_layers=3, out_indices=[1, 2, 3, 4], auxiliary_loss_weight=0.7, pool_scales=[2]
    ),
}


@pytest.mark.parametrize("variant", list(SEGMENTATION))
def test_semantic_segmentation_matches_reference(tmp_path, variant):
    config = SEGMENTATION[variant]
    ref = reference("Data2VecVisionForSemanticSegmentation", tmp_path, num_labels=5, **config)
    ours = data2vec.Data2VecVisionForSemanticSegmentation.from_pretrained(tmp_path)
    generator = torch.Generator().manual_seed(4)
    pixels = images()
    labels = torch.randint(0, 5, (2, 32, 32), generator=generator)
    ignore = config.get("semantic_loss_ignore_index", 255)
    labels[torch.rand(labels.shape, generator=generator) < 0.3] = ignore
    with torch.no_grad():
        ref_out = ref(pixels, labels=labels, output_hidden_states=True, output_attentions=True)
        our_out = ours(pixels, labels=labels, output_hidden_states=True, output_attentions=True)
        plain = ours(pixels)
    grid = 32 // config.get("patch_size", 8)
    assert our_out.logits.shape == (2, 5, 4 * grid, 4 * grid)  # 4x the patch grid
    compare(our_out, ref_out, ["loss", "logits", "hidden_states", "attentions"])
    assert plain.loss is None and plain.hidden_states is None
    assert_close(plain.logits, ref_out.logits, "logits (fused attention)")


# ---------------------------------------------------------------------------- checkpoints
FULL = dict(  # every optional parameter present
    use_mask_token=True,
    use_absolute_position_embeddings=True,
    use_relative_position_bias=True,
    use_shared_relative_position_bias=True,
    use_mean_pooling=False,
    auxiliary_num_convs=2,
    auxiliary_concat_input=True,
    out_indices=[2, 3, 4, 5],
    num_labels=4,
)
CLASSES = ["Data2VecVisionModel", "Data2VecVisionForImageClassification", "Data2VecVisionForSemanticSegmentation"]


@pytest.mark.parametrize("name", CLASSES)
@pytest.mark.parametrize("mean_pooling", [False, True])
def test_our_folder_loads_into_reference_with_equal_state_dict(tmp_path, name, mean_pooling):
    torch.manual_seed(0)
    config = data2vec.Data2VecVisionConfig(**{**TINY, **FULL, "use_mean_pooling": mean_pooling})
    ours = add_noise(getattr(data2vec, name)(config)).eval()
    noisy_batch_norms(ours)
    ours.save_pretrained(tmp_path)
    ref = getattr(transformers, name).from_pretrained(tmp_path).eval()
    ref_state = ref.state_dict()
    saved = load_file(tmp_path / "model.safetensors")
    assert set(saved) == set(ref_state), sorted(set(saved) ^ set(ref_state))
    for key, tensor in saved.items():
        assert torch.equal(ref_state[key], tensor), key
    again = getattr(data2vec, name).from_pretrained(tmp_path)
    for key, tensor in ours.state_dict().items():
        assert torch.equal(again.state_dict()[key], tensor), key
    pixels = images()
    with torch.no_grad():
        assert_close(ours(pixels)[0], ref(pixels)[0], f"{name} output after loading our folder")


@pytest.mark.parametrize("name", CLASSES)
def test_reference_folder_round_trips_through_us(tmp_path, name):
    ref = reference(name, tmp_path / "ref", **FULL)
    ours = getattr(data2vec, name).from_pretrained(tmp_path / "ref")
    ours.save_pretrained(tmp_path / "ours")
    written, rewritten = load_file(tmp_path / "ref" / "model.safetensors"), load_file(tmp_path / "ours" / "model.safetensors")
    assert written.keys() == rewritten.keys()
    for key, tensor in written.items():
        assert torch.equal(rewritten[key], tensor), key
    back = getattr(transformers, name).from_pretrained(tmp_path / "ours")
    for key, tensor in ref.state_dict().items():
        assert torch.equal(back.state_dict()[key], tensor), key


def test_config_round_trips_every_key(tmp_path):
    ref_config = transformers.Data2VecVisionConfig(
        **{**TINY, **FULL}, problem_type="single_label_classification", drop_path_rate=0.25, layer_scale_init_value=0.01,
        pool_scales=[1, 2], auxiliary_loss_weight=0.3, semantic_loss_ignore_index=7,
        id2label={0: "sky", 1: "road", 2: "car", 3: "tree"}, label2id={"sky": 0, "road": 1, "car": 2, "tree": 3},
    )
    ref_config.save_pretrained(tmp_path / "ref")
    written = json.loads((tmp_path / "ref" / "config.json").read_text())
    ours = data2vec.Data2VecVisionConfig.from_pretrained(tmp_path / "ref")
    assert ours.num_labels == 4 and ours.id2label[2] == "car" and ours.use_mask_token is True
    assert ours.out_indices == [2, 3, 4, 5] and ours.drop_path_rate == 0.25
    ours.save_pretrained(tmp_path / "ours")
    rewritten = json.loads((tmp_path / "ours" / "config.json").read_text())
    assert rewritten == written  # every key, unknown ones (dtype, transformers_version) included
    back = transformers.Data2VecVisionConfig.from_pretrained(tmp_path / "ours")
    assert back.to_dict() == ref_config.to_dict() | {"transformers_version": back.to_dict()["transformers_version"]}


def test_our_config_loads_in_reference_with_every_value(tmp_path):
    ours = data2vec.Data2VecVisionConfig(**{**TINY, **FULL, "image_size": [32, 48]}, hidden_dropout_prob=0.2)
    ours.save_pretrained(tmp_path)
    ref = transformers.Data2VecVisionConfig.from_pretrained(tmp_path)
    for key, value in ours.to_dict().items():
        if key == "id2label":
            assert ref.id2label == {int(k): v for k, v in value.items()}
        else:
            assert getattr(ref, key) == value, key


def test_config_defaults_match_reference():
    ours = data2vec.Data2VecVisionConfig().to_dict()
    ref = transformers.Data2VecVisionConfig().to_dict()
    checked = [key for key in ours if key in ref and key != "architectures"]
    for key in checked:
        assert ref[key] == ours[key], key
    assert len(checked) >= 28
    for key in ("use_relative_position_bias", "layer_scale_init_value", "out_indices", "semantic_loss_ignore_index"):
        assert key in checked


@pytest.mark.parametrize("name", CLASSES[1:])
def test_backbone_checkpoint_loads_into_head_with_warning(tmp_path, name):
    ref = reference("Data2VecVisionModel", tmp_path, num_labels=3, use_relative_position_bias=True, out_indices=[1, 2, 3, 4])
    with pytest.warns(CheckpointWarning, match="freshly initialised") as record:
        ours = getattr(data2vec, name).from_pretrained(tmp_path)
    message = " ".join(str(w.message) for w in record)
    expected = (
        ["classifier.weight", "classifier.bias", "backbone.pooler.norm.weight"]
        if name.endswith("Classification")
        else ["decode_head.classifier.weight", "feature_pyramid.upsample_by_4.norm.running_var",
              "auxiliary_head.convs.0.conv.weight", "decode_head.fuse_bottleneck.norm.bias"]
    )
    for key in expected:
        assert key in message, key
    assert "backbone.encoder.layers.0" not in message and "not used" not in message
    # the backbone weights arrived
    pixels = images()
    with torch.no_grad():
        ref_states = ref(pixels, output_hidden_states=True).hidden_states
        our_states = ours(pixels, output_hidden_states=True).hidden_states
    assert_close(our_states, ref_states, "hidden_states")


def test_old_checkpoints_with_relative_position_index_buffers_load_cleanly(tmp_path, recwarn):
    ref = reference("Data2VecVisionForImageClassification", tmp_path, num_labels=3, use_relative_position_bias=True,
                    use_shared_relative_position_bias=True)
    state = load_file(tmp_path / "model.safetensors")
    index = torch.zeros(17, 17, dtype=torch.long)
    state["data2vec_vision.encoder.relative_position_bias.relative_position_index"] = index.clone()
    for layer in range(TINY["num_hidden_layers"]):
        state[f"data2vec_vision.encoder.layer.{layer}.attention.attention.relative_position_bias.relative_position_index"] = index.clone()
    save_file(state, tmp_path / "model.safetensors", metadata={"format": "pt"})
    ours = data2vec.Data2VecVisionForImageClassification.from_pretrained(tmp_path)
    assert not [w for w in recwarn if issubclass(w.category, CheckpointWarning)]
    pixels = images()
    with torch.no_grad():
        assert_close(ours(pixels).logits, ref(pixels).logits, "logits")


def test_fresh_models_initialise_like_the_reference():
    config = {**TINY, **FULL, "layer_scale_init_value": 0.2, "initializer_range": 0.05}
    torch.manual_seed(0)
    ours = data2vec.Data2VecVisionForSemanticSegmentation(data2vec.Data2VecVisionConfig(**config))
    ref = transformers.Data2VecVisionForSemanticSegmentation(transformers.Data2VecVisionConfig(**config))
    ours_as_ref = ours.state_dict_to_reference()
    ref_state = ref.state_dict()
    assert set(ours_as_ref) == set(ref_state)
    for key, tensor in ref_state.items():
        mine = ours_as_ref[key]
        if tensor.numel() > 1000:  # random: same spread
            assert abs(mine.float().std() - tensor.float().std()) < 0.01, key
        elif tensor.numel() == 1 or tensor.float().std() == 0:  # constants: equal
            assert torch.equal(mine, tensor), key
    assert torch.equal(ours.backbone.encoder.layers[1].attention_scale, torch.full((TINY["hidden_size"],), 0.2))
    # stochastic depth grows linearly over depth like the reference's
    rates = [layer.drop_path.rate for layer in ours.backbone.encoder.layers]
    ref_rates = [getattr(layer.drop_path, "drop_prob", 0.0) for layer in ref.data2vec_vision.encoder.layer]
    assert rates == pytest.approx(ref_rates) and rates[0] == 0.0 and rates[-1] == pytest.approx(0.1)


def test_non_square_image_size_reads_the_bias_table_as_laid_out(tmp_path):
    """Documented deviation: for a non-square ``image_size`` the reference resamples its own
    table at the trained grid (it views the (2*rows-1, 2*cols-1) offset table transposed before
    a bilinear resize), so its bias is not its table. Ours is the table looked up with the
    reference's own relative position index. Square sizes (all official checkpoints) agree."""
    ref = reference("Data2VecVisionModel", tmp_path, image_size=[32, 48], use_relative_position_bias=True)
    ours = data2vec.Data2VecVisionModel.from_pretrained(tmp_path)
    ref_bias = ref.encoder.layer[0].attention.attention.relative_position_bias
    index = ref_bias.generate_relative_position_index((4, 6))  # (25, 25)
    looked_up = ref_bias.relative_position_bias_table[index].permute(2, 0, 1)  # (heads, 25, 25)
    with torch.no_grad():
        assert_close(ours.layer_relative_position_biases[0]((4, 6))[0], looked_up, "bias")
        assert (ref_bias((4, 6))[0] - looked_up).abs().max() > 1e-2  # the reference's resampled table
        out = ours(images(height=32, width=48))
    assert out.last_hidden_state.shape == (2, 25, 32)
