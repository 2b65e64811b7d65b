"""Parity of the five speech classes with the reference implementation (transformers) on tiny
random configs, checkpoint and config round trips both ways, the SpecAugment span sampler's
statistics against closed-form expectations, and the errors raised at the model boundary."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
import torch
import transformers
from transformers.models.data2vec import modeling_data2vec_audio as reference_audio

import data2vec
from data2vec.audio.feature_encoder import feature_encoder_output_length, minimum_input_length
from data2vec.audio.model import compute_span_mask
from data2vec.core.modeling import CheckpointWarning
from tests.helpers import add_noise, assert_close, reference_model

BASE = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=37,
    vocab_size=12,
    hidden_dropout=0.0,
    activation_dropout=0.0,
    attention_dropout=0.0,
    feat_proj_dropout=0.0,
    final_dropout=0.0,
    layerdrop=0.0,
    classifier_proj_size=8,
    tdnn_dim=(16, 16, 12),
    tdnn_kernel=(3, 3, 1),
    tdnn_dilation=(1, 2, 1),
    xvector_output_dim=8,
    num_labels=3,
    mask_time_length=3,
)
# Conv layouts: odd positional kernel, and an even one (one frame dropped) with conv biases,
# four feature-encoder layers and fewer groups.
LAYOUTS = {
    "odd_pos_kernel": dict(
        conv_dim=(16, 16, 16), conv_kernel=(5, 3, 3), conv_stride=(3, 2, 2),
        num_conv_pos_embeddings=2, conv_pos_kernel_size=5, num_conv_pos_embedding_groups=4,
    ),
    "even_pos_kernel": dict(
        conv_dim=(8, 16, 12, 16), conv_kernel=(4, 3, 2, 2), conv_stride=(2, 2, 2, 1), conv_bias=True,
        num_conv_pos_embeddings=3, conv_pos_kernel_size=4, num_conv_pos_embedding_groups=2,
    ),
}
# Receptive fields of the two layouts, worked backwards by hand from one output frame; a layer
# needs kernel + (frames after it - 1) * stride frames before it:
#   odd:  1 -> 3 + 0*2 = 3 -> 3 + 2*2 = 7 -> 5 + 6*3 = 23 samples
#   even: 1 -> 2 + 0*1 = 2 -> 2 + 1*2 = 4 -> 3 + 3*2 = 9 -> 4 + 8*2 = 20 samples
RECEPTIVE_FIELD = {"odd_pos_kernel": 23, "even_pos_kernel": 20}

CLASSES = [
    "Data2VecAudioModel",
    "Data2VecAudioForCTC",
    "Data2VecAudioForSequenceClassification",
    "Data2VecAudioForAudioFrameClassification",
    "Data2VecAudioForXVector",
]
FIELDS = {
    "Data2VecAudioModel": ["last_hidden_state", "extract_features", "hidden_states", "attentions"],
    "Data2VecAudioForXVector": ["loss", "logits", "embeddings", "hidden_states", "attentions"],
}
LENGTHS = (1200, 905, 640)


def reference_config(layout="odd_pos_kernel", **extra):
    return transformers.Data2VecAudioConfig(**{**BASE, **LAYOUTS[layout], **extra})


def our_config(layout="odd_pos_kernel", **extra):
    return data2vec.Data2VecAudioConfig(**{**BASE, **LAYOUTS[layout], **extra})


def padded_audio(lengths=LENGTHS, seed=0):
    """Waveforms of different lengths, right-padded with zeros, and the sample attention mask."""
    generator = torch.Generator().manual_seed(seed)
    values = torch.zeros(len(lengths), max(lengths))
    mask = torch.zeros(len(lengths), max(lengths), dtype=torch.long)
    for row, length in enumerate(lengths):
        values[row, :length] = torch.randn(length, generator=generator)
        mask[row, :length] = 1
    return values, mask


def labels_for(name, values, frames=None):
    """Labels of the shape each head expects (CTC: padded with -100; frames: per-frame one-hot)."""
    generator = torch.Generator().manual_seed(1)
    batch = values.shape[0]
    if name == "Data2VecAudioForCTC":
        labels = torch.randint(1, BASE["vocab_size"], (batch, 6), generator=generator)
        labels[1, 4:] = -100
        labels[2, 2:] = -100
        return labels
    if name in ("Data2VecAudioForSequenceClassification", "Data2VecAudioForXVector"):
        return torch.randint(0, BASE["num_labels"], (batch,), generator=generator)
    if name == "Data2VecAudioForAudioFrameClassification":
        classes = torch.randint(0, BASE["num_labels"], (batch, int(frames)), generator=generator)
        return torch.nn.functional.one_hot(classes, BASE["num_labels"]).float()
    return None


def reference_frames(ref, values) -> int:
    """Frames of the feature encoder for the batch's length, by the reference's formula."""
    return int(ref._get_feat_extract_output_lengths(torch.tensor(values.shape[1]), add_adapter=False))


def run_both(ours, ref, **inputs):
    with torch.no_grad():
        return ours(**inputs), ref(**inputs)


def compare(ours_out, ref_out, name):
    fields = FIELDS.get(name, ["loss", "logits", "hidden_states", "attentions"])
    for field in fields:
        assert_close(getattr(ours_out, field, None), getattr(ref_out, field, None), f"{name}.{field}")


# ---------------------------------------------------------------------------- parity
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("name", CLASSES)
def test_padded_batch_matches_reference(tmp_path, name, layout):
    ref = reference_model(getattr(transformers, name), reference_config(layout), tmp_path)
    ours = getattr(data2vec, name).from_pretrained(tmp_path)
    values, mask = padded_audio()
    labels = labels_for(name, values, reference_frames(ref, values))
    inputs = dict(input_values=values, attention_mask=mask, output_hidden_states=True, output_attentions=True)
    if labels is not None:
        inputs["labels"] = labels
    ours_out, ref_out = run_both(ours, ref, **inputs)
    compare(ours_out, ref_out, name)
    if labels is not None:
        assert torch.isfinite(ref_out.loss) and ours_out.loss is not None
    # no labels, no mask, fused attention (no explicit probabilities): the same numbers
    ours_out, ref_out = run_both(ours, ref, input_values=values[:, :1000])
    first = "last_hidden_state" if name == "Data2VecAudioModel" else "logits"
    assert_close(getattr(ours_out, first), getattr(ref_out, first), first + " (unmasked, fused attention)")
    assert getattr(ours_out, "loss", None) is None and ours_out.hidden_states is None and ours_out.attentions is None


def test_outputs_by_index_skip_none(tmp_path):
    ref = reference_model(transformers.Data2VecAudioForCTC, reference_config(), tmp_path)
    ours = data2vec.Data2VecAudioForCTC.from_pretrained(tmp_path)
    values, mask = padded_audio()
    ours_out, ref_out = run_both(ours, ref, input_values=values, attention_mask=mask)
    assert len(ours_out) == len(ref_out) == 1
    assert_close(ours_out[0], ref_out[0], "out[0]")


@pytest.mark.parametrize("name", ["Data2VecAudioForSequenceClassification", "Data2VecAudioForAudioFrameClassification",
                                  "Data2VecAudioForXVector"])
def test_weighted_layer_sum(tmp_path, name):
    ref = reference_model(getattr(transformers, name), reference_config(use_weighted_layer_sum=True), tmp_path)
    ours = getattr(data2vec, name).from_pretrained(tmp_path)
    assert ours.layer_weights.shape == (BASE["num_hidden_layers"] + 1,)
    values, mask = padded_audio()
    labels = labels_for(name, values, reference_frames(ref, values))
    ours_out, ref_out = run_both(ours, ref, input_values=values, attention_mask=mask, labels=labels)
    compare(ours_out, ref_out, name)
    assert ours_out.hidden_states is None  # used internally, returned only when asked for


@pytest.mark.parametrize("output_hidden_size", [32, 24])
def test_adapter(tmp_path, output_hidden_size):
    config = reference_config(add_adapter=True, num_adapter_layers=2, output_hidden_size=output_hidden_size)
    ref = reference_model(transformers.Data2VecAudioForCTC, config, tmp_path)
    ours = data2vec.Data2VecAudioForCTC.from_pretrained(tmp_path)
    values, mask = padded_audio()
    labels = labels_for("Data2VecAudioForCTC", values)[:, :3]
    inputs = dict(input_values=values, attention_mask=mask, labels=labels, output_hidden_states=True)
    ours_out, ref_out = run_both(ours, ref, **inputs)
    compare(ours_out, ref_out, "Data2VecAudioForCTC")
    # the adapter halves the frames twice; hidden states stay those of the transformer
    assert ours_out.logits.shape[1] < ours_out.hidden_states[-1].shape[1]
    with torch.no_grad():
        backbone = ours.backbone(values, attention_mask=mask)
    assert backbone.last_hidden_state.shape[-1] == output_hidden_size


@pytest.mark.parametrize("name", ["Data2VecAudioModel", "Data2VecAudioForCTC"])
def test_explicit_mask_time_indices(tmp_path, name):
    """The reference's SpecAugment is random; given explicit indices, it applies them also in eval."""
    ref = reference_model(getattr(transformers, name), reference_config(mask_time_prob=0.2), tmp_path)
    ours = getattr(data2vec, name).from_pretrained(tmp_path)
    values, mask = padded_audio()
    frames = reference_frames(ref, values)
    indices = torch.zeros(values.shape[0], frames, dtype=torch.bool)
    indices[0, 3:6] = True
    indices[1, 10:13] = True
    indices[2, 30:] = True  # covers padding frames too
    inputs = dict(input_values=values, attention_mask=mask, mask_time_indices=indices, output_hidden_states=True)
    ours_out, ref_out = run_both(ours, ref, **inputs)
    compare(ours_out, ref_out, name)
    unmasked, _ = run_both(ours, ref, input_values=values, attention_mask=mask, output_hidden_states=True)
    assert not torch.allclose(unmasked.hidden_states[0], ours_out.hidden_states[0])


@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("zero_infinity", [False, True])
def test_ctc_loss_reductions_and_zero_infinity(tmp_path, reduction, zero_infinity):
    config = reference_config(ctc_loss_reduction=reduction, ctc_zero_infinity=zero_infinity, pad_token_id=3)
    ref = reference_model(transformers.Data2VecAudioForCTC, config, tmp_path)
    ours = data2vec.Data2VecAudioForCTC.from_pretrained(tmp_path)
    values, mask = padded_audio()
    labels = labels_for("Data2VecAudioForCTC", values)
    labels[0, -1] = 3  # the pad/blank id inside labels counts as padding
    ours_out, ref_out = run_both(ours, ref, input_values=values, attention_mask=mask, labels=labels)
    assert_close(ours_out.loss, ref_out.loss, "loss")
    # 60 labels cannot be aligned to the 52 frames of the shortest row: infinite unless zeroed
    long_labels = torch.randint(4, BASE["vocab_size"], (3, 60), generator=torch.Generator().manual_seed(2))
    ours_out, ref_out = run_both(ours, ref, input_values=values, attention_mask=mask, labels=long_labels)
    if zero_infinity:
        assert_close(ours_out.loss, ref_out.loss, "loss (zero_infinity)")
        assert torch.isfinite(ours_out.loss)
    else:
        assert torch.isinf(ref_out.loss) and torch.isinf(ours_out.loss)


def test_sequence_classification_without_mask_and_single_input(tmp_path):
    ref = reference_model(transformers.Data2VecAudioForSequenceClassification, reference_config(), tmp_path)
    ours = data2vec.Data2VecAudioForSequenceClassification.from_pretrained(tmp_path)
    values, _ = padded_audio(lengths=(800, 800))
    labels = torch.tensor([2, 0])
    ours_out, ref_out = run_both(ours, ref, input_values=values, labels=labels)
    compare(ours_out, ref_out, "Data2VecAudioForSequenceClassification")
    with torch.no_grad():  # a 1-D waveform is one utterance
        single = ours(values[0]).logits
    assert_close(single, ref_out.logits[:1], "1-D input")


def test_feed_forward_states_match_reference_ffn_outputs(tmp_path):
    """Per layer, the feed-forward output before residual/LayerNorm (what pretraining regresses)."""
    ref = reference_model(transformers.Data2VecAudioModel, reference_config(), tmp_path)
    ours = data2vec.Data2VecAudioModel.from_pretrained(tmp_path)
    captured = []
    hooks = [layer.feed_forward.output_dense.register_forward_hook(lambda m, i, o: captured.append(o))
             for layer in ref.encoder.layers]
    values, mask = padded_audio()
    with torch.no_grad():
        ref(values, attention_mask=mask)
        out = ours.forward_intermediates(values, attention_mask=mask, indices=range(1, BASE["num_hidden_layers"] + 1),
                                         kind="feed_forward")
        top = ours.forward_intermediates(values, attention_mask=mask, indices=[-1], kind="feed_forward")
    for hook in hooks:
        hook.remove()
    assert len(out.intermediates) == BASE["num_hidden_layers"]
    assert_close(out.intermediates, tuple(captured), "feed-forward intermediates")
    assert_close(top.intermediates, tuple(captured[-1:]), "last feed-forward intermediate")
    with torch.no_grad():
        assert_close(out.last_hidden_state, ref(values, attention_mask=mask).last_hidden_state, "last_hidden_state")


def test_padding_does_not_change_real_frames():
    """A fact, not a comparison: a padded row's logits on its real frames equal those of the
    utterance alone (conv encoder, attention mask and the zeroed padding frames see to it). This
    holds with one positional conv layer only: from the second on, the padding frames carry the
    previous layer's output into the last real frames (in the reference too)."""
    torch.manual_seed(0)
    config = our_config(num_conv_pos_embeddings=1)
    model = add_noise(data2vec.Data2VecAudioForCTC(config)).eval()
    values, mask = padded_audio()
    with torch.no_grad():
        batch = model(values, attention_mask=mask).logits
        alone = model(values[2:, :LENGTHS[2]]).logits
    assert_close(batch[2, : alone.shape[1]], alone[0], "padded row vs alone")


@pytest.mark.parametrize("name", CLASSES[1:])
def test_training_step_with_spec_augment_and_layerdrop(name):
    """No reference here (its masks are random): a training step runs and reaches the weights."""
    torch.manual_seed(0)
    config = our_config(mask_time_prob=0.3, mask_feature_prob=0.2, mask_feature_length=4, layerdrop=0.3,
                        hidden_dropout=0.1, final_dropout=0.1)
    model = getattr(data2vec, name)(config).train()
    model.freeze_feature_encoder()
    values, mask = padded_audio()
    frames = int(feature_encoder_output_length(values.shape[1], config))
    out = model(values, attention_mask=mask, labels=labels_for(name, values, frames))
    assert torch.isfinite(out.loss)
    out.loss.backward()
    assert model.backbone.feature_encoder.layers[0].conv.weight.grad is None
    assert model.backbone.feature_projection.linear.weight.grad is not None


def test_layerdrop_keeps_one_entry_per_layer():
    config = our_config(layerdrop=1.0, mask_time_prob=0.0)
    model = data2vec.Data2VecAudioModel(config).train()
    out = model(torch.randn(1, 400), output_hidden_states=True, output_attentions=True)
    assert len(out.hidden_states) == BASE["num_hidden_layers"] + 1
    assert all(torch.equal(state, out.hidden_states[0]) for state in out.hidden_states)
    assert out.attentions == (None,) * BASE["num_hidden_layers"]
    feed_forward = model.forward_intermediates(torch.randn(1, 400), indices=[1, -1], kind="feed_forward")
    assert feed_forward.intermediates == (None, None)


# ---------------------------------------------------------------------------- checkpoints and config
def reference_config_values(config) -> dict:
    skip = {"transformers_version", "_name_or_path", "architectures"}
    return {key: value for key, value in json.loads(json.dumps(config.to_dict())).items() if key not in skip}


def test_config_defaults_and_derived_values_match_reference():
    ours = data2vec.Data2VecAudioConfig()
    reference = reference_config_values(transformers.Data2VecAudioConfig())
    # the reference's bookkeeping keys are not model keys; every other key is ours with its value
    bookkeeping = {"output_hidden_states", "output_attentions", "return_dict", "dtype", "chunk_size_feed_forward",
                   "is_encoder_decoder"}
    keys = set(reference) - bookkeeping
    assert keys - ours.field_names() == {"model_type", "num_feat_extract_layers"}
    ours_values = json.loads(json.dumps({key: getattr(ours, key) for key in keys}))
    assert ours_values == {key: reference[key] for key in keys}
    assert set(json.loads(ours.to_json_string())) <= ours.field_names() | {"model_type", "num_feat_extract_layers"}
    assert ours.num_feat_extract_layers == 7 and ours.output_hidden_size == 768
    assert ours.inputs_to_logits_ratio == 320 == transformers.Data2VecAudioConfig().inputs_to_logits_ratio
    assert minimum_input_length(ours) == 400  # 25 ms at 16 kHz


def test_config_round_trips_with_reference(tmp_path):
    original = reference_config("even_pos_kernel", add_adapter=True, output_hidden_size=24,
                                id2label={0: "yes", 1: "no", 2: "maybe"}, label2id={"yes": 0, "no": 1, "maybe": 2},
                                ctc_loss_reduction="mean")
    original.save_pretrained(tmp_path / "ref")
    ours = data2vec.Data2VecAudioConfig.from_pretrained(tmp_path / "ref")
    for key in ours.field_names():
        if not hasattr(original, key):  # tie_word_embeddings, apply_spec_augment: not keys of the reference's class
            continue
        expected = getattr(original, key)
        expected = list(expected) if isinstance(expected, tuple) else expected
        assert getattr(ours, key) == expected, key
    assert ours.num_labels == 3 and ours.id2label[2] == "maybe" and ours.num_feat_extract_layers == 4
    ours.save_pretrained(tmp_path / "ours")
    back = reference_config_values(transformers.Data2VecAudioConfig.from_pretrained(tmp_path / "ours"))
    for key, value in reference_config_values(original).items():
        assert back[key] == value, key


@pytest.mark.parametrize("name", ["Data2VecAudioModel", "Data2VecAudioForXVector"])
def test_weights_round_trip_both_ways(tmp_path, name):
    ref = reference_model(getattr(transformers, name), reference_config("even_pos_kernel", mask_time_prob=0.1), tmp_path / "a")
    ours = getattr(data2vec, name).from_pretrained(tmp_path / "a")
    ours.save_pretrained(tmp_path / "b")
    reloaded = getattr(transformers, name).from_pretrained(tmp_path / "b")
    ref_state, reloaded_state = ref.state_dict(), reloaded.state_dict()
    assert set(ref_state) == set(reloaded_state)
    for key, tensor in ref_state.items():
        assert torch.equal(tensor, reloaded_state[key]), key
    # ours -> reference -> ours, bit for bit
    config = data2vec.Data2VecAudioConfig.from_pretrained(tmp_path / "a")
    fresh = add_noise(getattr(data2vec, name)(config), seed=3)
    fresh.save_pretrained(tmp_path / "c")
    getattr(transformers, name).from_pretrained(tmp_path / "c").save_pretrained(tmp_path / "d")
    with warnings.catch_warnings():
        warnings.simplefilter("error", CheckpointWarning)
        back = getattr(data2vec, name).from_pretrained(tmp_path / "d")
    for key, tensor in fresh.state_dict().items():
        assert torch.equal(tensor, back.state_dict()[key]), key


@pytest.mark.parametrize("name", CLASSES[1:])
def test_backbone_checkpoint_loads_into_heads(tmp_path, name):
    ref = reference_model(transformers.Data2VecAudioModel, reference_config(), tmp_path)
    with pytest.warns(CheckpointWarning, match="freshly initialised"):
        head = getattr(data2vec, name).from_pretrained(tmp_path)
    values, mask = padded_audio()
    with torch.no_grad():
        ours_out = head.backbone(values, attention_mask=mask, output_hidden_states=True)
        ref_out = ref(values, attention_mask=mask, output_hidden_states=True)
    assert_close(ours_out.hidden_states, ref_out.hidden_states, "backbone hidden states")


def test_freezing():
    config = our_config()
    model = data2vec.Data2VecAudioForSequenceClassification(config)
    model.freeze_feature_encoder()
    frozen = {name for name, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {name for name, _ in model.named_parameters() if name.startswith("backbone.feature_encoder.")}
    model.freeze_base_model()
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"projector.weight", "projector.bias", "classifier.weight", "classifier.bias"}


# ---------------------------------------------------------------------------- SpecAugment sampler
def expected_masked_fraction(valid, length, mask_prob, mask_length, min_masks):
    """E[fraction of the first `valid` positions masked]: the span count n is floor(b) or floor(b)+1
    with probability 1 - frac(b) / frac(b), b = mask_prob * valid / mask_length, raised to min_masks
    and capped; starts are n of the N = valid - mask_length + 1 positions without replacement, so
    position t stays unmasked with probability C(N - c_t, n) / C(N, n), c_t = starts covering t."""
    base = mask_prob * valid / mask_length
    starts = valid - mask_length + 1
    total = 0.0
    for count, probability in ((math.floor(base), 1 - (base - math.floor(base))), (math.floor(base) + 1, base - math.floor(base))):
        count = min(max(count, min_masks), length // mask_length, starts)
        covered = [1 - math.comb(starts - (min(t, starts - 1) - max(0, t - mask_length + 1) + 1), count) / math.comb(starts, count)
                   for t in range(valid)]
        total += probability * sum(covered) / valid
    return total


@pytest.mark.parametrize(
    "length,valid,mask_prob,mask_length,min_masks",
    [
        (50, 50, 0.3, 4, 0),
        (50, 50, 0.65, 10, 2),
        (50, 50, 0.0, 5, 2),  # only min_masks spans
        (50, 23, 0.05, 3, 1),  # padding: spans inside the 23 real positions
        (20, 20, 0.9, 8, 0),  # 2 or 3 spans drawn, capped at length // mask_length = 2
        (50, 12, 0.0, 5, 10),  # capped at the 8 possible starts: everything real is masked
    ],
)
def test_span_mask_statistics(length, valid, mask_prob, mask_length, min_masks):
    batch, calls = 8, 600
    generator = torch.Generator().manual_seed(0)
    attention_mask = (torch.arange(length) < valid).expand(batch, length)
    masks = torch.cat([
        compute_span_mask((batch, length), mask_prob, mask_length, min_masks=min_masks,
                          attention_mask=attention_mask, generator=generator)
        for _ in range(calls)
    ])
    assert not masks[:, valid:].any()  # spans stay inside the real positions
    fraction = masks[:, :valid].float().mean().item()
    expected = expected_masked_fraction(valid, length, mask_prob, mask_length, min_masks)
    assert abs(fraction - expected) < 0.01, (fraction, expected)
    # every maximal masked run is at least one span long
    for row in masks[:200].tolist():
        runs = [len(run) for run in "".join("1" if x else "0" for x in row).split("0") if run]
        assert all(run >= mask_length for run in runs)
    if mask_prob == 0.0 and valid == length:  # only the min_masks spans: between one span (full overlap) and min_masks disjoint ones
        counts = masks.sum(-1)
        assert counts.min() >= mask_length + 1 and counts.max() <= min_masks * mask_length


def test_span_mask_matches_reference_sampler_on_average():
    shape, mask_prob, mask_length, min_masks = (8, 40), 0.4, 5, 2
    np.random.seed(0)
    ref = np.mean([reference_audio._compute_mask_indices(shape, mask_prob, mask_length, min_masks=min_masks).mean()
                   for _ in range(500)])
    generator = torch.Generator().manual_seed(0)
    ours = np.mean([compute_span_mask(shape, mask_prob, mask_length, min_masks=min_masks, generator=generator).float().mean().item()
                    for _ in range(500)])
    assert abs(ours - ref) < 0.01


def test_span_mask_is_reproducible_and_validates():
    make = lambda seed: compute_span_mask((4, 30), 0.5, 4, generator=torch.Generator().manual_seed(seed))
    assert torch.equal(make(5), make(5)) and not torch.equal(make(5), make(6))
    with pytest.raises(ValueError, match="do not fit in a sequence of 3"):
        compute_span_mask((1, 3), 0.5, 4)
    with pytest.raises(ValueError, match="at least 1"):
        compute_span_mask((1, 3), 0.5, 0)


def test_spec_augment_in_training_masks_spans_of_valid_frames():
    config = our_config(mask_time_prob=0.5, mask_feature_prob=0.3, mask_feature_length=4)
    model = data2vec.Data2VecAudioModel(config).train()
    hidden = torch.randn(2, 40, 32)
    frame_mask = torch.arange(40)[None] < torch.tensor([[40], [25]])
    torch.manual_seed(0)
    with torch.no_grad():
        out = model._apply_spec_augment(hidden.clone(), None, frame_mask)
        embed = model.masked_spec_embed
    zeroed_channels = (out == 0).all(1)  # (batch, hidden): masked channels are zero at every frame
    assert (zeroed_channels.sum(-1) >= 4).all()
    # a time-masked frame is masked_spec_embed on every channel that was not zeroed
    time_masked = ((out == embed) | zeroed_channels[:, None, :]).all(-1)  # (batch, frames)
    assert not time_masked[1, 25:].any()
    for row in time_masked.tolist():
        runs = [len(run) for run in "".join("1" if x else "0" for x in row).split("0") if run]
        assert runs and all(run >= config.mask_time_length for run in runs)
    untouched = ~time_masked[..., None] & ~zeroed_channels[:, None, :]
    assert torch.equal(out[untouched], hidden[untouched])
    model.eval()
    assert torch.equal(model._apply_spec_augment(hidden.clone(), None, frame_mask), hidden)


# ---------------------------------------------------------------------------- errors
@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    config = our_config()
    return data2vec.Data2VecAudioForCTC(config).eval()


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_receptive_field_is_the_minimum_length(tmp_path, layout):
    needed = RECEPTIVE_FIELD[layout]
    ref = reference_model(transformers.Data2VecAudioModel, reference_config(layout), tmp_path)
    ours = data2vec.Data2VecAudioModel.from_pretrained(tmp_path)
    assert minimum_input_length(ours.config) == needed
    ours_out, ref_out = run_both(ours, ref, input_values=torch.randn(1, needed))
    assert ours_out.last_hidden_state.shape[1] == ref_out.last_hidden_state.shape[1] == 1
    with pytest.raises(ValueError, match=f"needs at least {needed}"):
        ours(torch.randn(1, needed - 1))
    with pytest.raises(ValueError, match=f"marks {needed - 1} real samples, fewer than the {needed}"):
        mask = torch.ones(2, 200, dtype=torch.long)
        mask[1, needed - 1 :] = 0
        ours(torch.randn(2, 200), attention_mask=mask)


def test_input_errors(tiny):
    with pytest.raises(ValueError, match=r"got shape \(2, 1, 400\)"):
        tiny(torch.randn(2, 1, 400))
    with pytest.raises(ValueError, match="NaN or infinite"):
        tiny(torch.tensor([[0.0] * 399 + [float("nan")]]))
    with pytest.raises(ValueError, match="NaN or infinite"):
        tiny(torch.tensor([[0.0] * 399 + [float("inf")]]))
    with pytest.raises(ValueError, match="dtype torch.int16"):
        tiny(torch.zeros(1, 400, dtype=torch.int16))
    with pytest.raises(ValueError, match=r"attention_mask has shape \(2, 300\) but input_values is \(2, 400\)"):
        tiny(torch.randn(2, 400), attention_mask=torch.ones(2, 300))
    with pytest.raises(ValueError, match="label id 12 is outside the vocabulary of 12"):
        tiny(torch.randn(1, 400), labels=torch.tensor([[1, 12]]))
    with pytest.raises(ValueError, match="label id -3 is negative"):
        tiny(torch.randn(1, 400), labels=torch.tensor([[1, -3]]))
    with pytest.raises(ValueError, match="no masked_spec_embed"):
        data2vec.Data2VecAudioModel(tiny.config.copy(mask_time_prob=0.0))(
            torch.randn(1, 400), mask_time_indices=torch.zeros(1, 32, dtype=torch.bool))


def test_head_specific_errors():
    config = our_config()
    model = data2vec.Data2VecAudioModel(config).eval()
    with pytest.raises(ValueError, match=r"expected \(1, 32\)"):
        model(torch.randn(1, 400), mask_time_indices=torch.zeros(1, 30, dtype=torch.bool))
    with pytest.raises(ValueError, match="does not support the adapter"):
        data2vec.Data2VecAudioForSequenceClassification(config.copy(add_adapter=True))
    frames = data2vec.Data2VecAudioForAudioFrameClassification(config).eval()
    with pytest.raises(ValueError, match=r"\(batch, frames, num_labels\) = \(1, 32, 3\)"):
        frames(torch.randn(1, 400), labels=torch.zeros(1, 32, dtype=torch.long))
    xvector = data2vec.Data2VecAudioForXVector(config).eval()
    with pytest.raises(ValueError, match=r"must lie in \[0, 3\)"):
        xvector(torch.randn(1, 400), labels=torch.tensor([3]))
    # three TDNN layers with kernels (3, 3, 1), dilations (1, 2, 1) need 1 + 2 + 4 = 7 frames
    with pytest.raises(ValueError, match="at least 7 frames"):
        xvector(torch.randn(1, 60))
    with pytest.raises(ValueError, match="one entry per feature-encoder layer"):
        data2vec.Data2VecAudioConfig(conv_dim=[8, 8], conv_kernel=[3], conv_stride=[1, 1])
