"""The shared encoder: intermediates, dropped positions, gradient checkpointing, block classes,
input validation switch. Facts written here, on the three backbones built from tiny configs."""

from __future__ import annotations

import pytest
import torch

import data2vec
from data2vec.core.attention import attention_bias_from_masks, mask_value
from data2vec.core.encoder import Encoder, gather_positions, resolve_indices
from data2vec.core.layers import PostNormBlock, PreNormBlock
from tests.helpers import add_noise

TEXT = dict(vocab_size=60, hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=48,
            max_position_embeddings=40, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
AUDIO = dict(hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=48, conv_dim=(16, 16),
             conv_stride=(5, 4), conv_kernel=(10, 4), num_conv_pos_embeddings=4, num_conv_pos_embedding_groups=2,
             mask_time_prob=0.0, hidden_dropout=0.1, attention_dropout=0.1, activation_dropout=0.1)
VISION = dict(hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=48, image_size=32,
              patch_size=8, use_relative_position_bias=True, use_shared_relative_position_bias=True,
              layer_scale_init_value=0.1, drop_path_rate=0.2, hidden_dropout_prob=0.1)


def backbone(family: str):
    torch.manual_seed(0)
    if family == "text":
        return add_noise(data2vec.Data2VecTextModel(data2vec.Data2VecTextConfig(**TEXT))), {
            "input_ids": torch.randint(3, 60, (2, 9)), "attention_mask": torch.tensor([[1] * 9, [1] * 6 + [0] * 3])
        }
    if family == "audio":
        return add_noise(data2vec.Data2VecAudioModel(data2vec.Data2VecAudioConfig(**AUDIO))), {
            "input_values": torch.randn(2, 400)
        }
    return add_noise(data2vec.Data2VecVisionModel(data2vec.Data2VecVisionConfig(**VISION))), {
        "pixel_values": torch.randn(2, 3, 32, 32)
    }


FAMILIES = ["text", "audio", "vision"]


# ---------------------------------------------------------------------------- intermediates
def test_resolve_indices_uses_hidden_state_numbering():
    assert resolve_indices([0, 1, -1, -3], 3) == [0, 1, 3, 1]
    assert resolve_indices(2, 3) == [2, 3]  # an int: the last k blocks
    assert resolve_indices(range(-3, 0), 3, "feed_forward") == [1, 2, 3]
    with pytest.raises(ValueError, match="index 0, the input, has no feed-forward output"):
        resolve_indices([0], 3, "feed_forward")
    with pytest.raises(ValueError, match="out of range for 3 blocks"):
        resolve_indices([4], 3)
    with pytest.raises(ValueError, match="kind must be"):
        resolve_indices([1], 3, "attention")


@pytest.mark.parametrize("family", FAMILIES)
def test_block_intermediates_are_the_hidden_states(family):
    model, inputs = backbone(family)
    model.eval()
    with torch.no_grad():
        full = model(**inputs, output_hidden_states=True)
        picked = model.forward_intermediates(**inputs, indices=[0, 2, -1])
        early = model.forward_intermediates(**inputs, indices=[1], stop_early=True)
    assert len(full.hidden_states) == 4
    for got, expected in zip(picked.intermediates, (full.hidden_states[0], full.hidden_states[2], full.hidden_states[3])):
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(picked.last_hidden_state, full.last_hidden_state, rtol=0, atol=1e-6)
    torch.testing.assert_close(early.intermediates[0], full.hidden_states[1], rtol=0, atol=1e-6)
    assert early.last_hidden_state is None  # blocks 2 and 3 did not run


@pytest.mark.parametrize("family", FAMILIES)
def test_feed_forward_intermediates_are_the_fc2_outputs(family):
    model, inputs = backbone(family)
    model.eval()
    captured = []
    hooks = [layer.mlp.fc2.register_forward_hook(lambda _m, _i, out: captured.append(out)) for layer in model.encoder.layers]
    with torch.no_grad():
        out = model.forward_intermediates(**inputs, indices=2, kind="feed_forward")  # the top 2 blocks
    for hook in hooks:
        hook.remove()
    assert len(out.intermediates) == 2
    for got, expected in zip(out.intermediates, captured[1:]):
        assert torch.equal(got, expected)


def test_a_head_forwards_intermediates_to_its_backbone():
    torch.manual_seed(0)
    head = data2vec.Data2VecTextForMaskedLM(data2vec.Data2VecTextConfig(**TEXT)).eval()
    ids = torch.randint(3, 60, (1, 7))
    with torch.no_grad():
        assert torch.equal(
            head.forward_intermediates(input_ids=ids, indices=[-1]).intermediates[0],
            head.backbone(input_ids=ids).last_hidden_state,
        )


# ---------------------------------------------------------------------------- dropped positions
def test_gather_positions_takes_queries_and_keys():
    bias = torch.arange(2 * 5 * 5, dtype=torch.float).reshape(1, 2, 5, 5)  # (1, heads, queries, keys)
    positions = torch.tensor([[0, 3], [4, 1]])
    gathered = gather_positions(bias, positions)
    assert gathered.shape == (2, 2, 2, 2)
    assert gathered[1, 1, 0, 1] == bias[0, 1, 4, 1]
    padding = torch.tensor([[0.0, 1, 2, 3, 4]])[:, None, None, :]  # (batch, 1, 1, keys): no query axis
    assert gather_positions(padding, positions[:1]).tolist() == [[[[0.0, 3.0]]]]


@pytest.mark.parametrize("family", ["text", "vision"])
def test_dropping_tokens_equals_masking_them(family):
    """Encoding only kept tokens (with ``positions``) gives, at those tokens, what the full
    sequence gives when the dropped tokens are masked out as keys: the bias (padding, relative
    positions per block) is taken at the kept positions."""
    model, inputs = backbone(family)
    model.eval()
    embedded = model.embed(**inputs)
    batch, length, _ = embedded.hidden_states.shape
    generator = torch.Generator().manual_seed(1)
    keep = torch.stack([torch.randperm(length, generator=generator)[: length - 3].sort().values for _ in range(batch)])
    if family == "text":  # keep within the real tokens of the padded row
        keep[1] = torch.arange(6)[torch.randperm(6, generator=generator)[:6]].sort().values
    kept_mask = torch.zeros(batch, length, dtype=torch.bool).scatter_(1, keep, True)
    key_bias = attention_bias_from_masks(kept_mask, query_length=length, key_length=length)  # (batch, 1, 1, keys)

    def masked_bias(index):
        base = embedded.attention_bias(index) if callable(embedded.attention_bias) else embedded.attention_bias
        return key_bias if base is None else base + key_bias

    with torch.no_grad():
        full = model.encoder(embedded.hidden_states, masked_bias).last_hidden_state
        kept_states = embedded.hidden_states.gather(1, keep[..., None].expand(-1, -1, embedded.hidden_states.shape[-1]))
        dropped = model.encoder(kept_states, embedded.attention_bias, positions=keep).last_hidden_state
    expected = full.gather(1, keep[..., None].expand(-1, -1, full.shape[-1]))
    torch.testing.assert_close(dropped, expected, rtol=0, atol=1e-5)
    assert mask_value(torch.float32) < -1e30


# ---------------------------------------------------------------------------- gradient checkpointing
@pytest.mark.parametrize("family", FAMILIES)
def test_gradient_checkpointing_gives_the_same_gradients(family):
    """In training mode with dropout and stochastic depth: the RNG state is restored for the
    recomputation, so gradients equal those of the plain run."""

    def gradients(checkpointing: bool) -> dict[str, torch.Tensor]:
        model, inputs = backbone(family)
        model.train()
        model.set_gradient_checkpointing(checkpointing)
        torch.manual_seed(123)
        model(**inputs).last_hidden_state.square().mean().backward()
        return {name: parameter.grad.clone() for name, parameter in model.named_parameters() if parameter.grad is not None}

    plain, checkpointed = gradients(False), gradients(True)
    assert plain.keys() == checkpointed.keys() and any("encoder.layers.0" in name for name in plain)
    for name in plain:
        torch.testing.assert_close(checkpointed[name], plain[name], rtol=0, atol=1e-5, msg=name)


def test_gradient_checkpointing_keeps_fewer_activations():
    def saved_tensors(checkpointing: bool) -> int:
        model, inputs = backbone("text")
        model.train().set_gradient_checkpointing(checkpointing)
        count = 0

        def pack(tensor):
            nonlocal count
            count += 1
            return tensor

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            output = model(**inputs).last_hidden_state
        output.sum().backward()
        return count

    assert saved_tensors(True) < saved_tensors(False) / 2


# ---------------------------------------------------------------------------- blocks
def test_pre_norm_block_refuses_cross_attention_and_cache():
    block = PreNormBlock(16, 2, 32)
    with pytest.raises(ValueError, match="no cross attention"):
        block(torch.randn(1, 3, 16), encoder_hidden_states=torch.randn(1, 4, 16))
    with pytest.raises(ValueError, match="no cross attention and no key/value cache"):
        block(torch.randn(1, 3, 16), use_cache=True)


def test_post_norm_block_without_cross_attention_refuses_encoder_states():
    encoder = Encoder([PostNormBlock(16, 2, 32)])
    with pytest.raises(ValueError, match="build it with add_cross_attention=True"):
        encoder(torch.randn(1, 3, 16), encoder_hidden_states=torch.randn(1, 4, 16))


def test_layerdrop_skips_blocks_in_training_only():
    encoder = Encoder([PostNormBlock(16, 2, 32) for _ in range(3)], layerdrop=1.0)
    x = torch.randn(1, 3, 16)
    out = encoder.train()(x, indices=[1, 3], kind="feed_forward", output_attentions=True)
    assert torch.equal(out.last_hidden_state, x) and out.intermediates == (None, None)
    assert out.attentions == (None, None, None)
    assert not torch.equal(encoder.eval()(x).last_hidden_state, x)


# ---------------------------------------------------------------------------- value checks
def test_value_checks_run_on_cpu_inputs_and_follow_the_switch():
    model, _ = backbone("text")
    bad = torch.tensor([[0, 5, 99]])  # 99 >= vocab_size
    assert model.validate_inputs is None and model.should_validate(bad)
    with pytest.raises(ValueError, match="token id 99 is outside the vocabulary of 60 ids"):
        model(input_ids=bad)
    model.validate_inputs = False  # what the training loops set after their first batch
    assert not model.should_validate(bad)
    with pytest.raises(IndexError):  # no friendly check any more: the embedding lookup fails
        model(input_ids=bad)
    meta = torch.empty(2, device="meta")
    model.validate_inputs = None
    assert not model.should_validate(meta)  # an accelerator tensor is not read back by default
    model.validate_inputs = True
    assert model.should_validate(meta)


def test_audio_value_checks_follow_the_switch():
    model, _ = backbone("audio")
    model.eval()
    waveform = torch.randn(1, 400)
    waveform[0, 5] = float("nan")
    with pytest.raises(ValueError, match="NaN or infinite"):
        model(waveform)
    model.validate_inputs = False
    assert torch.isnan(model(waveform).last_hidden_state).any()


def test_heads_use_their_backbones_switch():
    torch.manual_seed(0)
    head = data2vec.Data2VecTextForSequenceClassification(data2vec.Data2VecTextConfig(**TEXT))
    assert head.base_model is head.backbone
    head.backbone.validate_inputs = False
    assert not head.should_validate(torch.zeros(1))


def test_the_training_loops_stop_validating_after_the_first_batch():
    from data2vec.core.modeling import set_input_validation
    from data2vec.training.finetune import FinetuneSettings, finetune

    model, _ = backbone("text")
    wrapper = torch.nn.Sequential(model)
    set_input_validation(wrapper, True)
    assert model.validate_inputs is True
    torch.manual_seed(0)
    head = data2vec.Data2VecTextForSequenceClassification(data2vec.Data2VecTextConfig(**TEXT, num_labels=2))
    seen = []
    head.register_forward_pre_hook(lambda module, _args: seen.append(module.base_model.validate_inputs))
    settings = FinetuneSettings(epochs=1, batch_size=2, learning_rate=1e-3)
    finetune(head, torch.randint(3, 60, (6, 5)), torch.tensor([0, 1, 0, 1, 0, 1]), settings, input_name="input_ids",
             progress=False)
    assert seen == [None, False, False]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("family", FAMILIES)
def test_default_forward_never_waits_for_the_device(family):
    """Item 8 of the architecture issue: with inputs on the GPU, the default forward (and a
    training step after the first batch) performs no host synchronisation."""
    model, inputs = backbone(family)
    model = model.cuda().eval()
    inputs = {name: value.cuda() for name, value in inputs.items()}
    model(**inputs)  # warm-up: lazy CUDA initialisation may synchronise once
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        with torch.no_grad():
            model(**inputs, output_hidden_states=True)
            model.forward_intermediates(**inputs, indices=2, kind="feed_forward")
        model.train()
        model(**inputs).last_hidden_state.float().square().mean().backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")
