"""The inference options against the float32 eager model: torch.compile (no graph break on any
backbone; inductor's outputs equal eager's), bfloat16 (autocast and bf16 weights) and dynamic
int8 quantisation of the linear layers, each within a stated tolerance.

Tolerances were set from drifts measured on these tiny noisy models (hidden 32, 2 layers,
outputs of unit standard deviation), with about 3x margin; the measured numbers are beside them.
"""

from __future__ import annotations

import pytest
import torch

import data2vec
from data2vec.export import quantize_dynamic_int8
from tests.helpers import add_noise
from tests.text.test_drop_padding import TINY as TINY_TEXT
from tests.training.test_tasks_audio import TINY_AUDIO
from tests.training.test_tasks_vision import TINY_VISION

PAD = 1  # the text config's pad_token_id
RELATIVE_POSITIONS = {"use_relative_position_bias": True}


def backbone_and_inputs(family: str) -> tuple[torch.nn.Module, dict[str, torch.Tensor]]:
    """A noisy tiny backbone in eval mode and a batch for it (text and audio with a padded row)."""
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    if family == "text":
        model = data2vec.Data2VecTextModel(data2vec.Data2VecTextConfig(**TINY_TEXT))
        input_ids = torch.randint(3, TINY_TEXT["vocab_size"], (4, 20), generator=generator)
        attention_mask = torch.ones_like(input_ids)
        input_ids[1, 12:], attention_mask[1, 12:] = PAD, 0
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
    elif family == "audio":
        model = data2vec.Data2VecAudioModel(data2vec.Data2VecAudioConfig(**TINY_AUDIO))
        input_values = torch.randn(3, 4000, generator=generator)
        attention_mask = torch.ones(3, 4000, dtype=torch.int32)
        input_values[1, 3000:], attention_mask[1, 3000:] = 0.0, 0
        inputs = {"input_values": input_values, "attention_mask": attention_mask}
    else:
        # a relative position bias per layer, as the official checkpoints have it
        model = data2vec.Data2VecVisionModel(data2vec.Data2VecVisionConfig(**TINY_VISION, **RELATIVE_POSITIONS))
        inputs = {"pixel_values": torch.randn(4, 3, 32, 32, generator=generator)}
    return add_noise(model).eval(), inputs


FAMILIES = ["text", "audio", "vision"]


# ---------------------------------------------------------------------- torch.compile


@pytest.mark.parametrize("family", FAMILIES)
def test_backbone_compiles_as_one_graph(family):
    model, inputs = backbone_and_inputs(family)
    torch._dynamo.reset()
    explanation = torch._dynamo.explain(model)(**inputs)
    reasons = [str(reason.reason) for reason in explanation.break_reasons]
    assert explanation.graph_break_count == 0, f"graph breaks: {reasons}"
    assert explanation.graph_count == 1
    # fullgraph=True raises on any break; the eager backend runs the captured graph with the same kernels
    torch._dynamo.reset()
    compiled = torch.compile(model, fullgraph=True, backend="eager")
    with torch.no_grad():
        expected = model(**inputs).last_hidden_state
        actual = compiled(**inputs).last_hidden_state
    torch.testing.assert_close(actual, expected, atol=1e-6, rtol=0)


def test_inductor_compile_matches_eager_float32():
    """A real inductor compile (C++ kernels) of the text backbone on a padded batch: within 1e-4
    of eager float32 (measured 4.8e-7); 5 s of compilation on 2 CPU cores, 15 s with an empty
    inductor cache."""
    model, inputs = backbone_and_inputs("text")
    torch._dynamo.reset()
    compiled = torch.compile(model, fullgraph=True)
    with torch.no_grad():
        expected = model(**inputs)
        actual = compiled(**inputs)
    torch.testing.assert_close(actual.last_hidden_state, expected.last_hidden_state, atol=1e-4, rtol=0)
    torch.testing.assert_close(actual.pooler_output, expected.pooler_output, atol=1e-4, rtol=0)
    torch._dynamo.reset()


# ---------------------------------------------------------------------- bfloat16

# max |bf16 - float32| of last_hidden_state (std 1.0 text and audio, 0.72 vision; max |value|
# 2.9-4.2), measured on these inputs:
#   autocast: text 1.9e-3, audio 8.0e-2 (the conv feature encoder), vision 1.2e-2
#   bf16 weights and inputs: text 3.6e-2, audio 8.5e-2, vision 2.0e-2
BF16_TOLERANCE = {
    ("text", "autocast"): 0.01,
    ("audio", "autocast"): 0.25,
    ("vision", "autocast"): 0.04,
    ("text", "weights"): 0.1,
    ("audio", "weights"): 0.25,
    ("vision", "weights"): 0.1,
}


@pytest.mark.parametrize("family", FAMILIES)
def test_bfloat16_autocast_within_tolerance(family):
    model, inputs = backbone_and_inputs(family)
    with torch.no_grad():
        expected = model(**inputs).last_hidden_state
        with torch.autocast("cpu", dtype=torch.bfloat16):
            actual = model(**inputs).last_hidden_state
    drift = (actual.float() - expected).abs().max().item()
    assert 0 < drift <= BF16_TOLERANCE[family, "autocast"], drift  # 0 would mean autocast changed nothing


@pytest.mark.parametrize("family", FAMILIES)
def test_bfloat16_weights_within_tolerance(family):
    model, inputs = backbone_and_inputs(family)
    with torch.no_grad():
        expected = model(**inputs).last_hidden_state
        model = model.to(torch.bfloat16)
        bf16_inputs = {name: v.to(torch.bfloat16) if v.is_floating_point() else v for name, v in inputs.items()}
        actual = model(**bf16_inputs).last_hidden_state
    assert actual.dtype == torch.bfloat16
    drift = (actual.float() - expected).abs().max().item()
    assert 0 < drift <= BF16_TOLERANCE[family, "weights"], drift


# ---------------------------------------------------------------------- int8

# Tiny random classifiers are a harsh case for int8: their logits are small (std 0.073 text,
# 0.29 vision) and close together (median top-1 - top-2 gap 0.067 and 0.17), so a small absolute
# drift can flip labels that a trained model separates by more. Measured on these 48 inputs:
#   text (3 labels): max |logit drift| 5.6e-3 (8% of the logits' std), top-1 agreement 48/48
#   vision (10 labels): max |logit drift| 1.6e-2 (6% of the logits' std), top-1 agreement 48/48
# and on 240 other inputs: text 6.2e-3, 240/240; vision 1.7e-2, 238/240
INT8_CASES = {
    "text": (
        data2vec.Data2VecTextForSequenceClassification,
        lambda: data2vec.Data2VecTextConfig(**TINY_TEXT),
        lambda generator: {"input_ids": torch.randint(3, TINY_TEXT["vocab_size"], (48, 24), generator=generator)},
        0.02,  # drift bound
        0.9,  # agreement bound
    ),
    "vision": (
        data2vec.Data2VecVisionForImageClassification,
        lambda: data2vec.Data2VecVisionConfig(**TINY_VISION, **RELATIVE_POSITIONS, num_labels=10),
        lambda generator: {"pixel_values": torch.randn(48, 3, 32, 32, generator=generator)},
        0.05,
        0.85,
    ),
}


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.ao's quantized modules use torch.jit
@pytest.mark.filterwarnings("ignore::UserWarning")  # and the deprecated quantized tensor types
@pytest.mark.parametrize("family", ["text", "vision"])
def test_int8_dynamic_quantisation_drift_and_label_agreement(family):
    model_class, config, make_inputs, drift_bound, agreement_bound = INT8_CASES[family]
    torch.manual_seed(0)
    model = add_noise(model_class(config())).eval()
    quantized = quantize_dynamic_int8(model)
    inputs = make_inputs(torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = model(**inputs).logits
        actual = quantized(**inputs).logits
    drift = (actual - expected).abs().max().item()
    agreement = (actual.argmax(-1) == expected.argmax(-1)).float().mean().item()
    assert 0 < drift <= drift_bound, drift
    assert agreement >= agreement_bound, agreement

    quantized_linears = [m for m in quantized.modules() if isinstance(m, torch.ao.nn.quantized.dynamic.Linear)]
    float_linears = [m for m in quantized.modules() if type(m) is torch.nn.Linear]
    # per layer the fused q/k/v, the attention output and the two feed-forward projections, plus the head's
    assert len(quantized_linears) >= 4 * model.config.num_hidden_layers + 1
    assert not float_linears
    assert all(type(m) is not torch.ao.nn.quantized.dynamic.Linear for m in model.modules())  # model untouched
