"""A fourth modality from this file alone: a toy 1-D sensor signal backbone (conv patches + the
core encoder of post-norm blocks), registered in ``data2vec.registry`` and pretrained with the
unchanged data2vec trainer, command line and resume included. Nothing under ``src/`` knows it.

Also the registry's own contract: names and aliases, clear errors, lazy imports."""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys

import pytest
import torch
import yaml
from torch import nn

from data2vec import cli
from data2vec.core.config import Config
from data2vec.core.encoder import Encoder
from data2vec.core.layers import PostNormBlock
from data2vec.core.modeling import Backbone, Embedded
from data2vec.core.outputs import EncoderOutput
from data2vec.pretraining.modalities import ModalityAdapter, adapter_for, per_item_masks
from data2vec.pretraining.recipe import DataSettings, Recipe, RecipeError, SpanMaskingSettings
from data2vec.pretraining.trainer import Pretrainer
from data2vec.registry import (
    MODALITIES, ModalitySpec, UnknownModalityError, get_modality, register_modality, unregister_modality,
)
from tests.pretraining.test_resume import assert_same_training_state, run_state


# ---------------------------------------------------------------------------- the toy modality
@dataclasses.dataclass(kw_only=True)
class SensorConfig(Config):
    model_type = "toy-sensor"

    num_channels: int = 3  # e.g. a 3-axis accelerometer
    patch_size: int = 4  # samples per position (the conv's kernel and stride)
    max_positions: int = 64
    hidden_size: int = 32
    num_hidden_layers: int = 3
    num_attention_heads: int = 2
    intermediate_size: int = 64
    layer_norm_eps: float = 1e-5


class SensorModel(Backbone):
    """(batch, channels, samples) -> conv patches + learned positions -> post-norm encoder."""

    def __init__(self, config: SensorConfig) -> None:
        super().__init__(config)
        hidden = config.hidden_size
        self.patches = nn.Conv1d(config.num_channels, hidden, config.patch_size, stride=config.patch_size)
        self.positions = nn.Parameter(0.02 * torch.randn(1, config.max_positions, hidden))
        self.norm = nn.LayerNorm(hidden, eps=config.layer_norm_eps)
        self.mask_embedding = nn.Parameter(torch.rand(hidden))
        blocks = [
            PostNormBlock(hidden, config.num_attention_heads, config.intermediate_size, layer_norm_eps=config.layer_norm_eps)
            for _ in range(config.num_hidden_layers)
        ]
        self.encoder = Encoder(blocks)

    def embed(self, input_values: torch.Tensor, mask_time_indices: torch.Tensor | None = None) -> Embedded:
        states = self.patches(input_values).transpose(1, 2)  # (batch, positions, hidden)
        states = self.norm(states + self.positions[:, : states.shape[1]])
        if mask_time_indices is not None:  # the student sees the mask embedding at masked positions
            states = torch.where(mask_time_indices[..., None], self.mask_embedding.to(states.dtype), states)
        return Embedded(states)

    def forward(self, input_values: torch.Tensor, mask_time_indices: torch.Tensor | None = None) -> EncoderOutput:
        output = self.forward_intermediates(input_values, mask_time_indices=mask_time_indices, indices=[])
        return EncoderOutput(last_hidden_state=output.last_hidden_state)


@dataclasses.dataclass(kw_only=True)
class SensorDataSettings(DataSettings):
    standardize: bool = True  # zero mean, unit variance per item and channel


class SensorSignals:
    """Items of (channels, samples) signals held in memory, in the trainer's dataset protocol."""

    def __init__(self, signals: torch.Tensor, standardize: bool) -> None:
        if standardize:
            signals = (signals - signals.mean(-1, keepdim=True)) / (signals.std(-1, keepdim=True) + 1e-5)
        self.signals = signals

    def __len__(self) -> int:
        return len(self.signals)

    def load(self, indices, rngs, group) -> dict:
        return {"input_values": self.signals[list(indices)]}  # (batch, channels, samples)


class SensorAdapter(ModalityAdapter):
    input_name, mask_argument = "input_values", "mask_time_indices"  # student and teacher inputs

    def build_dataset(self, source, work_dir, *, is_main=True, barrier=lambda: None):
        signals = source if isinstance(source, torch.Tensor) else torch.load(source, weights_only=True)
        return SensorSignals(signals.float(), self.recipe.data.standardize)

    def sample_masks(self, batch):
        masking, config = self.recipe.masking, self._config
        positions = batch["input_values"].shape[-1] // config.patch_size
        mask = per_item_masks(  # the registered sampler: the library's span masks
            batch,
            lambda generator: self.sampler(
                1, positions, masking.mask_prob, masking.mask_length, min_masks=masking.min_masks, generator=generator
            ),
        )
        return {"mask": mask}  # (batch, positions)


def sensor_spec(**changes) -> ModalitySpec:
    from data2vec.pretraining.masking import span_mask

    parts = dict(
        name="sensor", aliases=("imu",), config=SensorConfig, backbone=SensorModel, adapter=SensorAdapter,
        masking=SpanMaskingSettings, data=SensorDataSettings, sampler=span_mask,
    )
    return ModalitySpec(**{**parts, **changes})


@pytest.fixture
def sensor():
    spec = register_modality(sensor_spec())
    yield spec
    unregister_modality("sensor")


def sensor_signals(count: int = 32, channels: int = 3, samples: int = 96, seed: int = 0) -> torch.Tensor:
    """Noisy sines of random frequency and phase per item and channel: (count, channels, samples)."""
    generator = torch.Generator().manual_seed(seed)
    time = torch.arange(samples) / samples
    frequency = 2 + 6 * torch.rand(count, channels, 1, generator=generator)
    phase = 2 * math.pi * torch.rand(count, channels, 1, generator=generator)
    return torch.sin(2 * math.pi * frequency * time + phase) + 0.1 * torch.randn(count, channels, samples, generator=generator)


RECIPE = {
    "modality": "sensor",
    "model": {"hidden_size": 32, "num_hidden_layers": 3, "num_attention_heads": 2, "intermediate_size": 64},
    "ema": {"start": 0.99, "end": 0.999, "anneal_steps": 100},
    "targets": {"top_k": 2, "layer_output": "feed_forward", "layer_norm": "instance", "post_norm": "none"},
    "masking": {"mask_prob": 0.65, "mask_length": 3, "min_masks": 1},
    "loss": {"beta": 0.0},
    "optim": {"lr": 1e-3, "total_steps": 6, "warmup_steps": 1, "clip_norm": 5.0},
    "data": {"batch_size": 8, "standardize": True},
    "collapse": {"check_after": 1000},
    "device": "cpu",
    "log_every": 1,
    "save_every": 100,
}


# ---------------------------------------------------------------------------- pretraining it
def test_a_registered_fourth_modality_pretrains_and_resumes(sensor, tmp_path):
    signals = sensor_signals()
    torch.save(signals, tmp_path / "signals.pt")
    recipe_file = tmp_path / "pretrain-sensor.yaml"
    recipe_file.write_text(yaml.safe_dump(RECIPE, sort_keys=False))
    recipe = Recipe.load(recipe_file)
    assert recipe.modality == "sensor"
    assert type(recipe.masking) is SpanMaskingSettings and type(recipe.data) is SensorDataSettings

    straight = Pretrainer(recipe, signals, tmp_path / "straight", progress=False)
    assert isinstance(straight.model.backbone, SensorModel) and isinstance(straight.adapter, SensorAdapter)
    initial_teacher = {name: value.clone() for name, value in straight.teacher.model.state_dict().items()}
    result = straight.train()
    assert result.step == 6 and not result.interrupted
    records = [json.loads(line) for line in (tmp_path / "straight" / "log.jsonl").read_text().splitlines()]
    assert [record["step"] for record in records] == [1, 2, 3, 4, 5, 6]
    assert all(math.isfinite(record["loss"]) and record["loss"] > 0 for record in records)
    assert all(record["target_std"] > 0 for record in records)

    state = run_state(tmp_path / "straight")
    assert state["recipe"]["modality"] == "sensor" and state["model_config"]["num_channels"] == 3
    # the teacher is an average: it moved away from its start but is not the student
    assert any(not torch.equal(state["teacher"][name], initial_teacher[name]) for name in initial_teacher)
    assert any(not torch.equal(state["teacher"][name], state["student"][name]) for name in state["student"])

    # stopped after 3 updates, resumed through the command line (by alias, from a file): the same run
    first = Pretrainer(recipe, signals, tmp_path / "resumed", progress=False)
    assert first.train(stop_after=3).step == 3
    alias_file = tmp_path / "imu.yaml"
    alias_file.write_text(yaml.safe_dump({**RECIPE, "modality": "imu"}, sort_keys=False))
    code = cli.main(["pretrain", "--recipe", str(alias_file), "--data", str(tmp_path / "signals.pt"),
                     "--out", str(tmp_path / "resumed"), "--resume", "--no-progress"])
    assert code == 0
    assert_same_training_state(state, run_state(tmp_path / "resumed"))
    resumed_log = [json.loads(line) for line in (tmp_path / "resumed" / "log.jsonl").read_text().splitlines()]
    assert [record["loss"] for record in resumed_log] == [record["loss"] for record in records]


def test_the_teacher_targets_are_the_top_k_feed_forward_outputs(sensor):
    recipe = Recipe.from_dict(RECIPE)
    adapter = adapter_for(recipe)
    config = adapter.model_config()
    adapter.bind(config)
    model = adapter.build_backbone(config).eval()
    inputs = {"input_values": sensor_signals(2)}
    layers, padding = adapter.teacher_layers(model, inputs)
    assert padding is None and len(layers) == recipe.targets.top_k
    # written out: the fc2 outputs of the last two of three blocks, hooked
    captured = []
    hooks = [block.mlp.fc2.register_forward_hook(lambda module, args, out: captured.append(out)) for block in model.encoder.layers]
    with torch.no_grad():
        model(**inputs)
    for hook in hooks:
        hook.remove()
    for layer, expected in zip(layers, captured[-2:]):
        torch.testing.assert_close(layer, expected, rtol=0, atol=0)


# ---------------------------------------------------------------------------- the registry
def test_names_and_aliases_resolve_to_one_spec(sensor):
    assert MODALITIES.names()[:3] == ("audio", "vision", "text")
    assert get_modality("speech") is get_modality("audio") and get_modality("Image") is get_modality("vision")
    assert get_modality("imu") is sensor and "imu" in MODALITIES and "smell" not in MODALITIES
    values = {**RECIPE, "modality": "IMU"}
    assert Recipe.from_dict(values).modality == "sensor"


def test_unknown_and_clashing_names_are_explained(sensor):
    with pytest.raises(UnknownModalityError, match=r"'smell': registered are audio \(alias speech\), vision \(alias image\), "
                                                   r"text, sensor \(alias imu\)"):
        get_modality("smell")
    with pytest.raises(RecipeError, match="unknown modality 'smell'"):
        Recipe.from_dict({**RECIPE, "modality": "smell"})
    with pytest.raises(ValueError, match=r"'speech' \(modality 'audio'\).*replace=True"):
        register_modality(sensor_spec(name="accelerometer", aliases=("speech",)))
    replaced = register_modality(sensor_spec(aliases=("imu", "accelerometer")), replace=True)
    assert get_modality("accelerometer") is replaced and get_modality("sensor") is replaced
    with pytest.raises(ValueError, match="lower-case words"):
        sensor_spec(name="Sensor data")
    with pytest.raises(TypeError, match="must subclass pretraining.recipe.DataSettings"):
        register_modality(sensor_spec(data=SpanMaskingSettings), replace=True)
        Recipe.from_dict(RECIPE)


def test_specs_import_their_parts_on_first_use():
    code = (
        "import sys\n"
        "from data2vec.registry import get_modality\n"
        "spec = get_modality('speech')\n"
        "assert 'data2vec.audio.model' not in sys.modules and 'data2vec.pretraining.modalities' not in sys.modules\n"
        "assert spec.backbone_class.__name__ == 'Data2VecAudioModel' and 'data2vec.audio.model' in sys.modules\n"
        "assert spec.adapter_class.__name__ == 'AudioAdapter'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
