"""The benchmark cases: a model class, its config, its inputs, and what one run of it is.

Full size is the base size of the official checkpoints; ``quick`` is a smoke test of the
same code paths (hidden 64, 2 layers, short inputs).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch

# The official checkpoints' config.json, where it differs from the config class defaults.
TEXT_BASE = {  # facebook/data2vec-text-base (RoBERTa vocabulary and positions)
    "vocab_size": 50265,
    "max_position_embeddings": 514,
    "type_vocab_size": 1,
    "layer_norm_eps": 1e-5,
}
# facebook/data2vec-audio-base(-960h): the class defaults (vocab_size 32 is the CTC
# vocabulary of -960h), but no layer drop: with it, each library would skip different
# random layers, and so do different work.
AUDIO_BASE = {"layerdrop": 0.0, "vocab_size": 32}
VISION_BASE = {  # facebook/data2vec-vision-base-ft1k: one relative position bias per layer
    "use_relative_position_bias": True,
    "use_shared_relative_position_bias": False,
    "use_mean_pooling": True,
}
SMALL = {
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 128,
}

SAMPLING_RATE = 16000


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    model_class: str  # the same name in transformers and in data2vec
    family: str  # Text | Audio | Vision: the config class is Data2Vec{family}Config
    training: bool  # a training step (forward, loss, backward, AdamW), not a forward
    output: str  # what the correctness check compares: an output attribute, or "loss"
    full: dict  # config of the full-size case
    quick: dict  # config of the quick case
    make_inputs: Callable[[dict, bool, torch.Generator], tuple[dict, list[dict]]]
    shape: str  # the inputs in words: "full | quick: quick"
    # keyword arguments of our forward only (e.g. drop_padding); with them, the check compares
    # each row's real positions with the reference run on that sample alone
    ours_options: dict = dataclasses.field(default_factory=dict)

    def config(self, quick: bool) -> dict:
        return self.quick if quick else self.full

    def inputs(self, quick: bool) -> tuple[dict, list[dict]]:
        """(the batch, the real work): the padded batch that is timed, and the same samples
        without padding (each alone at its true length) on which FLOPs are counted."""
        generator = torch.Generator().manual_seed(0)
        return self.make_inputs(self.config(quick), quick, generator)


def evenly_spread(longest: int, shortest: int, count: int) -> list[int]:
    step = (longest - shortest) / (count - 1)
    return [round(longest - step * i) for i in range(count)]


def random_tokens(config: dict, shape: tuple, generator: torch.Generator):
    """Ids above <s> <pad> </s> (0 1 2) and below <mask> (the last id)."""
    return torch.randint(3, config["vocab_size"] - 1, shape, generator=generator)


def text_forward_inputs(config: dict, quick: bool, generator: torch.Generator):
    batch, longest = 8, 32 if quick else 128
    lengths = evenly_spread(longest, longest // 2, batch)
    input_ids = random_tokens(config, (batch, longest), generator)
    attention_mask = torch.zeros(batch, longest, dtype=torch.long)
    for row, length in enumerate(lengths):
        input_ids[row, 0] = 0  # <s>
        input_ids[row, length - 1] = 2  # </s>
        input_ids[row, length:] = 1  # <pad>
        attention_mask[row, :length] = 1
    samples = [
        {
            "input_ids": input_ids[row : row + 1, :length],
            "attention_mask": attention_mask[row : row + 1, :length],
        }
        for row, length in enumerate(lengths)
    ]
    return {"input_ids": input_ids, "attention_mask": attention_mask}, samples


def masked_lm_inputs(config: dict, quick: bool, generator: torch.Generator):
    batch, length = 8, 32 if quick else 128
    input_ids = random_tokens(config, (batch, length), generator)
    input_ids[:, 0], input_ids[:, -1] = 0, 2
    labels = torch.full_like(input_ids, -100)
    scored = round(0.15 * length)
    for row in range(batch):
        positions = 1 + torch.randperm(length - 2, generator=generator)[:scored]
        labels[row, positions] = input_ids[row, positions]
        input_ids[row, positions] = config["vocab_size"] - 1  # <mask>
    inputs = {
        "input_ids": input_ids,
        "attention_mask": torch.ones_like(input_ids),
        "labels": labels,
    }
    return inputs, [inputs]


def audio_forward_inputs(config: dict, quick: bool, generator: torch.Generator):
    seconds = [1.0, 0.9, 0.8, 0.7] if quick else [10.0, 9.0, 8.0, 7.0]
    lengths = [int(s * SAMPLING_RATE) for s in seconds]
    input_values = 0.1 * torch.randn(len(lengths), lengths[0], generator=generator)
    attention_mask = torch.zeros(len(lengths), lengths[0], dtype=torch.long)
    for row, length in enumerate(lengths):
        input_values[row, length:] = 0.0
        attention_mask[row, :length] = 1
    samples = [
        {
            "input_values": input_values[row : row + 1, :length],
            "attention_mask": attention_mask[row : row + 1, :length],
        }
        for row, length in enumerate(lengths)
    ]
    return {"input_values": input_values, "attention_mask": attention_mask}, samples


def ctc_inputs(config: dict, quick: bool, generator: torch.Generator):
    seconds, label_length = (0.5, 8) if quick else (5.0, 60)
    input_values = 0.1 * torch.randn(
        2, int(seconds * SAMPLING_RATE), generator=generator
    )
    vocab_size = config["vocab_size"]  # ids 1.. (0 is <pad>, the CTC blank)
    labels = torch.randint(1, vocab_size, (2, label_length), generator=generator)
    inputs = {"input_values": input_values, "labels": labels}
    return inputs, [inputs]


def image_inputs(batch: int, size: int, generator: torch.Generator) -> torch.Tensor:
    return torch.randn(batch, 3, size, size, generator=generator)


def vision_forward_inputs(config: dict, quick: bool, generator: torch.Generator):
    inputs = {"pixel_values": image_inputs(8, config["image_size"], generator)}
    return inputs, [inputs]


def image_classification_inputs(config: dict, quick: bool, generator: torch.Generator):
    pixel_values = image_inputs(8, config["image_size"], generator)
    inputs = {
        "pixel_values": pixel_values,
        "labels": torch.randint(0, config["num_labels"], (8,), generator=generator),
    }
    return inputs, [inputs]


def segmentation_inputs(config: dict, quick: bool, generator: torch.Generator):
    inputs = {"pixel_values": image_inputs(2, config["image_size"], generator)}
    return inputs, [inputs]


SMALL_TEXT = {**TEXT_BASE, **SMALL, "vocab_size": 1000}
SMALL_AUDIO = {**AUDIO_BASE, **SMALL, "conv_dim": [32] * 7}
VISION = {**VISION_BASE, "image_size": 224}
SMALL_VISION = {**VISION_BASE, **SMALL, "image_size": 32, "patch_size": 8}
SEGMENTATION = {**VISION_BASE, "image_size": 512, "num_labels": 150}  # ADE20k crops
# the segmentation head's feature pyramid takes 4 block outputs: at least 4 layers
SMALL_SEGMENTATION = {
    **SEGMENTATION,
    **SMALL_VISION,
    "num_hidden_layers": 4,
    "out_indices": [1, 2, 3, 4],
    "image_size": 64,
    "auxiliary_channels": 32,
}

CASES = [
    Case(
        name="text-forward",
        model_class="Data2VecTextModel",
        family="Text",
        training=False,
        output="last_hidden_state",
        full=TEXT_BASE,
        quick=SMALL_TEXT,
        make_inputs=text_forward_inputs,
        shape="8 x 128 tokens, padded, lengths 128..64 | quick: 8 x 32, 32..16",
    ),
    Case(
        name="masked-lm-step",
        model_class="Data2VecTextForMaskedLM",
        family="Text",
        training=True,
        output="loss",
        full=TEXT_BASE,
        quick=SMALL_TEXT,
        make_inputs=masked_lm_inputs,
        shape="8 x 128 tokens, 15% scored | quick: 8 x 32",
    ),
    Case(
        name="audio-forward",
        model_class="Data2VecAudioModel",
        family="Audio",
        training=False,
        output="last_hidden_state",
        full=AUDIO_BASE,
        quick=SMALL_AUDIO,
        make_inputs=audio_forward_inputs,
        shape="4 x 10 s at 16 kHz, padded, 10..7 s | quick: 4 x 1 s, 1..0.7 s",
    ),
    Case(
        name="ctc-step",
        model_class="Data2VecAudioForCTC",
        family="Audio",
        training=True,
        output="loss",
        full=AUDIO_BASE,
        quick=SMALL_AUDIO,
        make_inputs=ctc_inputs,
        shape="2 x 5 s, 60 labels each | quick: 2 x 0.5 s, 8 labels",
    ),
    Case(
        name="vision-forward",
        model_class="Data2VecVisionModel",
        family="Vision",
        training=False,
        output="last_hidden_state",
        full=VISION,
        quick=SMALL_VISION,
        make_inputs=vision_forward_inputs,
        shape="8 x 224 px | quick: 8 x 32 px, 8 px patches",
    ),
    Case(
        name="image-classification-step",
        model_class="Data2VecVisionForImageClassification",
        family="Vision",
        training=True,
        output="loss",
        full={**VISION, "num_labels": 1000},
        quick={**SMALL_VISION, "num_labels": 1000},
        make_inputs=image_classification_inputs,
        shape="8 x 224 px, 1000 labels | quick: 8 x 32 px",
    ),
    Case(
        name="segmentation-forward",
        model_class="Data2VecVisionForSemanticSegmentation",
        family="Vision",
        training=False,
        output="logits",
        full=SEGMENTATION,
        quick=SMALL_SEGMENTATION,
        make_inputs=segmentation_inputs,
        shape="2 x 512 px, 150 classes | quick: 2 x 64 px, 4 layers",
    ),
]
# the padded forwards again, ours with the padding dropped (the option of data2vec's forward)
CASES[1:1] = [dataclasses.replace(CASES[0], name="text-forward:drop-padding", ours_options={"drop_padding": True})]
CASES[3:3] = [
    dataclasses.replace(CASES[2], name="masked-lm-step:labels-only", ours_options={"logits_at_labels_only": True})
]
CASES[5:5] = [dataclasses.replace(CASES[4], name="audio-forward:drop-padding", ours_options={"drop_padding": True})]
BY_NAME = {case.name: case for case in CASES}
