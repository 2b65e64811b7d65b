"""Pretraining recipes: every number of a data2vec run, read from a YAML file.

A recipe has one section per part of the method (see ``recipes/pretrain-*.yaml``):

    modality     audio | vision | text (aliases speech, image), or a modality registered in
                 ``data2vec.registry``: its spec gives the config, masking and data classes
    model        keyword arguments of the backbone's config (Data2Vec{Audio,Vision,Text}Config)
    ema          teacher decay schedule and which student parameters are copied, not averaged
    targets      top-K layers, which layer output, per-layer and post-average normalisation
    masking      the modality's mask sampler settings
    loss         smooth L1 beta (0 = squared error), scale, reduction
    head         regression head depth
    optim        AdamW, learning-rate schedule, gradient clipping, number of updates,
                 micro-batches accumulated per update (update_freq)
    data         global batch size (audio: or samples per batch, max_tokens) and the modality's input settings
    collapse     thresholds of the collapse watch
    precision    fp32 | bf16 (autocast), device, log_every, save_every, seed
    model_init   default (the backbone's own initialisation) | beit (vision: BEiT's pretraining
                 initialisation, see ``vision.model.init_for_pretraining``)
    version      1 (data2vec, the default) | 2 (data2vec 2.0: the student encodes only the visible
                 positions, a convolutional ``decoder`` fills in the masked ones, each sample is
                 masked ``masking.clones`` times for one teacher pass; ``masking`` is then the
                 2.0 section, ``Masking2Settings``, for every modality, and ``head`` is unused)
    decoder      version 2 only: the decoder's width, depth, kernel, groups, input dropout and
                 the noise that stands in for the masked positions

Unknown keys are errors (a typo must not silently fall back to a default).
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import Any

import yaml

from ..registry import UnknownModalityError, get_modality

NORMS = ("instance", "layer", "none")
LAYER_OUTPUTS = ("feed_forward", "block")
MODEL_INITS = ("default", "beit")  # which a modality supports: its adapter's ``model_inits``
RECIPES_FOLDER = Path(__file__).resolve().parents[3] / "recipes"  # the repository's recipes/


class RecipeError(ValueError):
    """A recipe file or value that cannot be used."""


# ---------------------------------------------------------------------------- sections
@dataclasses.dataclass(kw_only=True)
class EMASettings:
    start: float = 0.999  # decay at update 0
    end: float = 0.9999  # decay from update `anneal_steps` on
    anneal_steps: int = 30000
    copy_patterns: list[str] = dataclasses.field(default_factory=list)  # re.match on backbone parameter names

    def validate(self) -> None:
        for name in ("start", "end"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise RecipeError(f"ema.{name} must be in [0, 1], got {getattr(self, name)}")
        if self.anneal_steps < 0:
            raise RecipeError(f"ema.anneal_steps must be >= 0, got {self.anneal_steps}")


@dataclasses.dataclass(kw_only=True)
class TargetSettings:
    top_k: int = 8
    layer_output: str = "feed_forward"  # feed_forward: FFN output before residual + LN; block: block output
    layer_norm: str = "instance"  # per-layer normalisation before averaging
    post_norm: str = "none"  # normalisation of the average

    def validate(self) -> None:
        if self.top_k < 1:
            raise RecipeError(f"targets.top_k must be >= 1, got {self.top_k}")
        if self.layer_output not in LAYER_OUTPUTS:
            raise RecipeError(f"targets.layer_output must be one of {LAYER_OUTPUTS}, got {self.layer_output!r}")
        for name in ("layer_norm", "post_norm"):
            if getattr(self, name) not in NORMS:
                raise RecipeError(f"targets.{name} must be one of {NORMS}, got {getattr(self, name)!r}")


@dataclasses.dataclass(kw_only=True)
class SpanMaskingSettings:
    """Audio: spans of `mask_length` frames, about `mask_prob * frames / mask_length` starts."""

    mask_prob: float = 0.65
    mask_length: int = 10
    min_masks: int = 1
    # every row of a batch masks as many frames as its row with the fewest (the others drop random
    # masked frames): the minimum over the global batch (data.batch_size) or the bucketed batch (data.max_tokens)
    require_same_masks: bool = True

    def validate(self) -> None:
        if not 0.0 < self.mask_prob <= 1.0:
            raise RecipeError(f"masking.mask_prob must be in (0, 1], got {self.mask_prob}")
        if self.mask_length < 1 or self.min_masks < 0:
            raise RecipeError("masking.mask_length must be >= 1 and masking.min_masks >= 0")


@dataclasses.dataclass(kw_only=True)
class BlockMaskingSettings:
    """Vision: BEiT block-wise masking of `num_masking_patches` patches."""

    num_masking_patches: int = 120
    min_num_patches: int = 16
    max_num_patches: int | None = None
    min_aspect: float = 0.3
    max_aspect: float | None = None

    def validate(self) -> None:
        if self.num_masking_patches < 1 or self.min_num_patches < 1:
            raise RecipeError("masking.num_masking_patches and masking.min_num_patches must be >= 1")
        if self.min_aspect <= 0:
            raise RecipeError(f"masking.min_aspect must be > 0, got {self.min_aspect}")


@dataclasses.dataclass(kw_only=True)
class TokenMaskingSettings:
    """Text: `bert` (15%: 80% <mask>, 10% random, 10% kept) or `span` (runs of mask_multiple_length)."""

    mode: str = "bert"
    mask_prob: float = 0.15
    mask_multiple_length: int = 1
    random_token_prob: float = 0.1
    leave_unmasked_prob: float = 0.1

    def validate(self) -> None:
        if self.mode not in ("bert", "span"):
            raise RecipeError(f"masking.mode must be 'bert' or 'span', got {self.mode!r}")
        if not 0.0 < self.mask_prob <= 1.0:
            raise RecipeError(f"masking.mask_prob must be in (0, 1], got {self.mask_prob}")
        if self.mode == "bert" and self.mask_multiple_length != 1:
            raise RecipeError("masking.mask_multiple_length > 1 needs masking.mode: span")
        if self.random_token_prob < 0 or self.leave_unmasked_prob < 0 or self.random_token_prob + self.leave_unmasked_prob > 1:
            raise RecipeError("masking.random_token_prob and leave_unmasked_prob must be >= 0 with a sum <= 1")


@dataclasses.dataclass(kw_only=True)
class Masking2Settings:
    """data2vec 2.0 masking, one section for every modality (fairseq's modality ``mask_*`` keys).

    ``mask_length`` 1: ``mask_prob`` of the positions chosen uniformly (text); > 1 on a sequence:
    blocks of ``mask_length`` frames around uniform centres (speech); > 1 on a patch grid: square
    blocks of side ``mask_length`` (images), which choose the *kept* patches when ``inverse``. Every
    mask hides exactly the same number of positions (see ``pretraining.masking``). ``clones``: masked
    versions of each sample; the teacher runs once per sample (fairseq's ``clone_batch``)."""

    mask_prob: float = 0.5
    mask_length: int = 5
    mask_prob_adjust: float = 0.0  # more block centres than mask_prob alone asks for (overlaps), then trimmed
    inverse: bool = False
    clones: int = 8

    def validate(self) -> None:
        if not 0.0 < self.mask_prob < 1.0:
            raise RecipeError(f"masking.mask_prob must be in (0, 1), got {self.mask_prob}")
        if self.mask_length < 1 or self.clones < 1:
            raise RecipeError("masking.mask_length and masking.clones must be >= 1")
        if self.mask_prob_adjust < 0:
            raise RecipeError(f"masking.mask_prob_adjust must be >= 0, got {self.mask_prob_adjust}")
        if self.inverse and self.mask_length < 2:
            raise RecipeError("masking.inverse chooses kept blocks: it needs masking.mask_length >= 2")


@dataclasses.dataclass(kw_only=True)
class DecoderSettings:
    """data2vec 2.0's convolutional decoder (``pretraining.decoder.ConvDecoder``): ``layers`` x
    (conv of ``kernel`` with ``groups`` -> LayerNorm -> GELU), residual between blocks, then a
    projection to the targets (``projection_layers`` 2: widened by ``projection_ratio`` with a GELU).
    The encoder's states get ``input_dropout``; masked positions enter as N(0, mask_noise_std^2) noise."""

    dim: int = 384
    layers: int = 4
    kernel: int = 7
    groups: int = 16
    residual: bool = True
    projection_layers: int = 1
    projection_ratio: float = 2.0
    input_dropout: float = 0.1
    mask_noise_std: float = 0.01

    def validate(self) -> None:
        if self.dim < 1 or self.layers < 1 or self.groups < 1 or self.projection_layers < 1:
            raise RecipeError("decoder.dim, decoder.layers, decoder.groups and decoder.projection_layers must be >= 1")
        if self.kernel < 1 or self.kernel % 2 == 0:
            raise RecipeError(f"decoder.kernel must be odd (the output keeps every position), got {self.kernel}")
        if self.dim % self.groups:
            raise RecipeError(f"decoder.dim ({self.dim}) must be divisible by decoder.groups ({self.groups})")
        if not 0.0 <= self.input_dropout < 1.0 or self.mask_noise_std < 0:
            raise RecipeError("decoder.input_dropout must be in [0, 1) and decoder.mask_noise_std >= 0")


@dataclasses.dataclass(kw_only=True)
class LossSettings:
    beta: float = 0.0  # 0: squared error; > 0: smooth L1 with this beta
    scale: float | None = None  # per-position scale of the sum over dimensions; None: 1/sqrt(dimensions)
    reduction: str = "sum"  # sum: summed over dimensions, / masked positions; mean: mean over all elements
    # version 2, images: the encoder's CLS state regresses the mean of the sample's targets over patches;
    # loss = (sum over masked positions) / masked + cls_weight * (sum over the update's masked versions)
    cls_weight: float = 0.0

    def validate(self) -> None:
        if self.beta < 0:
            raise RecipeError(f"loss.beta must be >= 0, got {self.beta}")
        if self.cls_weight < 0:
            raise RecipeError(f"loss.cls_weight must be >= 0, got {self.cls_weight}")
        if self.reduction not in ("sum", "mean"):
            raise RecipeError(f"loss.reduction must be 'sum' or 'mean', got {self.reduction!r}")


@dataclasses.dataclass(kw_only=True)
class HeadSettings:
    num_layers: int = 1  # 1: Linear; 2: Linear -> GELU -> Linear (inner 2 x hidden)
    init_std: float | None = None  # weights ~ N(0, init_std), zero biases; None: PyTorch's Linear init

    def validate(self) -> None:
        if self.num_layers not in (1, 2):
            raise RecipeError(f"head.num_layers must be 1 or 2, got {self.num_layers}")


@dataclasses.dataclass(kw_only=True)
class OptimSettings:
    lr: float = 5e-4
    betas: list[float] = dataclasses.field(default_factory=lambda: [0.9, 0.98])
    eps: float = 1e-6
    weight_decay: float = 0.01
    no_decay_1d: bool = False  # no weight decay on 1-D parameters (biases, norms)
    no_decay_patterns: list[str] = dataclasses.field(default_factory=list)  # re.search on parameter names
    schedule: str = "cosine"  # cosine | tri_stage
    total_steps: int = 400000
    warmup_steps: int = 0  # cosine: linear warmup from 0
    min_lr: float = 0.0  # cosine: learning rate at the last step
    phase_ratio: list[float] = dataclasses.field(default_factory=lambda: [0.03, 0.9, 0.07])  # tri_stage
    init_lr_scale: float = 0.01  # tri_stage: lr / peak at step 0
    final_lr_scale: float = 0.01  # tri_stage: lr / peak at the last step
    clip_norm: float | None = None
    update_freq: int = 1  # micro-batches accumulated into each optimizer update (fairseq's update_freq)

    def validate(self) -> None:
        if self.update_freq < 1:
            raise RecipeError(f"optim.update_freq must be >= 1, got {self.update_freq}")
        if self.lr <= 0 or self.eps <= 0 or self.weight_decay < 0:
            raise RecipeError("optim.lr and optim.eps must be > 0 and optim.weight_decay >= 0")
        if len(self.betas) != 2 or not all(0 <= beta < 1 for beta in self.betas):
            raise RecipeError(f"optim.betas must be two numbers in [0, 1), got {self.betas}")
        if self.schedule not in ("cosine", "tri_stage"):
            raise RecipeError(f"optim.schedule must be 'cosine' or 'tri_stage', got {self.schedule!r}")
        if self.total_steps < 1 or not 0 <= self.warmup_steps <= self.total_steps:
            raise RecipeError(
                f"optim.total_steps must be >= 1 and warmup_steps in [0, total_steps], got "
                f"{self.total_steps} and {self.warmup_steps}"
            )
        if len(self.phase_ratio) != 3 or abs(sum(self.phase_ratio) - 1.0) > 1e-6 or min(self.phase_ratio) < 0:
            raise RecipeError(f"optim.phase_ratio must be three fractions summing to 1, got {self.phase_ratio}")
        if self.clip_norm is not None and self.clip_norm <= 0:
            raise RecipeError(f"optim.clip_norm must be > 0 or null (no clipping), got {self.clip_norm}")

    def lr_scale(self, update: int) -> float:
        """Learning rate / peak for the ``update``-th optimizer step (1-based)."""
        total = self.total_steps
        update = min(max(update, 1), total)
        if self.schedule == "cosine":
            if update <= self.warmup_steps:
                return update / self.warmup_steps
            progress = (update - self.warmup_steps) / max(total - self.warmup_steps, 1)
            floor = self.min_lr / self.lr
            return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
        warmup, hold = (int(ratio * total) for ratio in self.phase_ratio[:2])
        decay = max(total - warmup - hold, 1)
        if update <= warmup:
            return self.init_lr_scale + (1.0 - self.init_lr_scale) * update / max(warmup, 1)
        if update <= warmup + hold:
            return 1.0
        return math.exp(math.log(self.final_lr_scale) * (update - warmup - hold) / decay)


@dataclasses.dataclass(kw_only=True)
class DataSettings:
    batch_size: int | None = 8  # global: summed over all processes (and micro-batches of optim.update_freq)
    num_workers: int = 0  # DataLoader worker processes per rank

    def validate(self) -> None:
        if self.num_workers < 0:
            raise RecipeError(f"data.num_workers must be >= 0, got {self.num_workers}")
        self.validate_batch_size()

    def validate_batch_size(self) -> None:
        if self.batch_size is None or self.batch_size < 1:
            raise RecipeError(f"data.batch_size must be >= 1, got {self.batch_size}")


@dataclasses.dataclass(kw_only=True)
class AudioDataSettings(DataSettings):
    sampling_rate: int = 16000
    max_sample_size: int = 320000  # crops: at most this many samples ...
    min_sample_size: int = 32000  # ... and files shorter than this are skipped
    normalize: bool = True  # zero mean, unit variance per file (as the feature extractor does)
    # samples per batch per process (fairseq's max_tokens), instead of batch_size: clips sorted by
    # length are cut into batches of n clips with n x (longest clip, at most max_sample_size) <= max_tokens
    max_tokens: int | None = None

    def validate(self) -> None:
        super().validate()
        if not 0 < self.min_sample_size <= self.max_sample_size:
            raise RecipeError("data.min_sample_size must be in (0, data.max_sample_size]")

    def validate_batch_size(self) -> None:
        if self.max_tokens is None:
            return super().validate_batch_size()
        if self.batch_size is not None:
            raise RecipeError(
                f"data.batch_size ({self.batch_size}) and data.max_tokens ({self.max_tokens}) both size the batches: "
                "set batch_size: null to batch by max_tokens, or max_tokens: null for fixed batches"
            )
        if self.max_tokens < self.max_sample_size:
            raise RecipeError(
                f"data.max_tokens={self.max_tokens} is below data.max_sample_size={self.max_sample_size}: a batch "
                "must hold at least one crop; raise max_tokens or lower max_sample_size"
            )


@dataclasses.dataclass(kw_only=True)
class VisionDataSettings(DataSettings):
    image_mean: list[float] = dataclasses.field(default_factory=lambda: [0.5, 0.5, 0.5])
    image_std: list[float] = dataclasses.field(default_factory=lambda: [0.5, 0.5, 0.5])
    crop_scale: list[float] | None = None  # random resized crop area range, e.g. [0.08, 1.0]; None: resize
    horizontal_flip: bool = False

    def validate(self) -> None:
        super().validate()
        if self.crop_scale is not None and not (len(self.crop_scale) == 2 and 0 < self.crop_scale[0] <= self.crop_scale[1] <= 1):
            raise RecipeError(f"data.crop_scale must be [low, high] with 0 < low <= high <= 1, got {self.crop_scale}")


@dataclasses.dataclass(kw_only=True)
class TextDataSettings(DataSettings):
    tokens_per_sample: int = 512  # block length including <s> and </s>
    tokenizer: str | None = None  # folder or Hub id; None: train a byte-level BPE vocabulary on the data
    vocab_size: int = 8000  # size of that trained vocabulary

    def validate(self) -> None:
        super().validate()
        if self.tokens_per_sample < 3:
            raise RecipeError(f"data.tokens_per_sample must be >= 3, got {self.tokens_per_sample}")


@dataclasses.dataclass(kw_only=True)
class CollapseSettings:
    min_target_std: float = 0.1
    min_prediction_std: float = 0.01
    # the spread of the teacher's top layer along each sample's positions, each position
    # layer-normalised (``objective.position_spread``, logged as position_spread); 0 = not watched
    min_position_spread: float = 0.0
    check_after: int = 5000  # updates before the watch starts

    def validate(self) -> None:
        if self.min_target_std < 0 or self.min_prediction_std < 0 or self.min_position_spread < 0 or self.check_after < 0:
            raise RecipeError("collapse thresholds and check_after must be >= 0")


SECTIONS = {
    "ema": EMASettings,
    "targets": TargetSettings,
    "loss": LossSettings,
    "head": HeadSettings,
    "optim": OptimSettings,
    "collapse": CollapseSettings,
}


# ---------------------------------------------------------------------------- the recipe
@dataclasses.dataclass(kw_only=True)
class Recipe:
    modality: str
    model: dict[str, Any]
    ema: EMASettings
    targets: TargetSettings
    masking: Any  # the modality's masking settings (its spec's `masking` class)
    loss: LossSettings
    head: HeadSettings
    optim: OptimSettings
    data: DataSettings  # the modality's subclass (its spec's `data` class)
    collapse: CollapseSettings
    precision: str = "fp32"  # fp32 | bf16 (autocast where the device supports it)
    device: str = "auto"  # auto (cuda when available) | cpu | cuda
    log_every: int = 10
    save_every: int = 1000
    seed: int = 1
    name: str = ""  # for logs; defaults to the file name
    model_init: str = "default"  # default | beit: how a fresh run initialises the backbone (see MODEL_INITS)
    version: int = 1  # 1: data2vec; 2: data2vec 2.0 (see the module docstring)
    decoder: DecoderSettings | None = None  # version 2 only

    @classmethod
    def from_dict(cls, values: dict[str, Any], *, source: str = "recipe") -> Recipe:
        if not isinstance(values, dict):
            raise RecipeError(f"{source}: expected a mapping of sections, got {type(values).__name__}")
        values = dict(values)
        try:
            spec = get_modality(values.get("modality"))
        except UnknownModalityError as error:
            raise RecipeError(f"{source}: {error}") from None
        values["modality"] = spec.name  # aliases (speech, image) read as the modality's name
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise RecipeError(f"{source}: unknown top-level keys {unknown}; known keys are {sorted(known)}")
        if not (isinstance(spec.data_class, type) and issubclass(spec.data_class, DataSettings)):
            raise TypeError(f"the data settings of modality {spec.name!r} must subclass pretraining.recipe.DataSettings")
        version = values.get("version", 1)
        if version not in (1, 2):
            raise RecipeError(f"{source}: version must be 1 (data2vec) or 2 (data2vec 2.0), got {version!r}")
        sections = dict(SECTIONS, masking=Masking2Settings if version == 2 else spec.masking_class, data=spec.data_class)
        if version == 2:
            if not values.get("decoder"):
                raise RecipeError(f"{source}: a version 2 recipe needs a decoder section (see recipes/pretrain2-*.yaml)")
            sections["decoder"] = DecoderSettings
        elif values.get("decoder") is not None:
            raise RecipeError(f"{source}: the decoder section belongs to version 2 recipes (set version: 2)")
        for name, section_class in sections.items():
            values[name] = _build_section(section_class, values.get(name) or {}, f"{source}: {name}")
        model = values.get("model")
        if not isinstance(model, dict) or not model:
            raise RecipeError(f"{source}: 'model' must be a mapping of backbone config keys")
        recipe = cls(**values)
        recipe.validate(source)
        return recipe

    @classmethod
    def load(cls, path: str | os.PathLike) -> Recipe:
        path = resolve_recipe_path(path)
        try:
            values = yaml.safe_load(path.read_text())
        except yaml.YAMLError as error:
            raise RecipeError(f"{path} is not valid YAML: {error}") from None
        recipe = cls.from_dict(values, source=str(path))
        recipe.name = recipe.name or path.stem
        return recipe

    def validate(self, source: str = "recipe") -> None:
        for name in ("ema", "targets", "masking", "loss", "head", "optim", "data", "collapse", "decoder"):
            if getattr(self, name) is None:
                continue
            try:
                getattr(self, name).validate()
            except RecipeError as error:
                raise RecipeError(f"{source}: {error}") from None
        if self.model_init not in MODEL_INITS:
            raise RecipeError(f"{source}: model_init must be one of {MODEL_INITS}, got {self.model_init!r}")
        if self.precision not in ("fp32", "bf16"):
            raise RecipeError(f"{source}: precision must be 'fp32' or 'bf16', got {self.precision!r}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise RecipeError(f"{source}: device must be 'auto', 'cpu' or 'cuda', got {self.device!r}")
        if self.log_every < 1 or self.save_every < 1:
            raise RecipeError(f"{source}: log_every and save_every must be >= 1")
        if self.version == 1 and self.loss.cls_weight:
            raise RecipeError(f"{source}: loss.cls_weight is a data2vec 2.0 loss: set version: 2 or remove it")
        layers = self.model.get("num_hidden_layers", 12)
        if self.targets.top_k > layers:
            raise RecipeError(f"{source}: targets.top_k={self.targets.top_k} exceeds the model's {layers} layers")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def replace(self, **changes: Any) -> Recipe:
        """A copy with top-level fields replaced (sections are shared, copy them to edit)."""
        return dataclasses.replace(self, **changes)

    def with_total_steps(self, total_steps: int) -> Recipe:
        optim = dataclasses.replace(self.optim, total_steps=int(total_steps))
        optim.warmup_steps = min(optim.warmup_steps, optim.total_steps)
        optim.validate()
        return dataclasses.replace(self, optim=optim)


def _build_section(section_class: type, values: Any, where: str):
    if isinstance(values, section_class):
        return values
    if not isinstance(values, dict):
        raise RecipeError(f"{where}: expected a mapping, got {type(values).__name__}")
    known = {field.name for field in dataclasses.fields(section_class)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise RecipeError(f"{where}: unknown keys {unknown}; known keys are {sorted(known)}")
    return section_class(**values)


def _recipe_names(stem: str) -> list[str]:
    """File stems a short recipe name may mean: with and without ``pretrain-`` (``pretrain2-`` names
    data2vec 2.0 recipes and stays), and with the modality written as any of its names
    (``speech-tiny`` -> ``audio-tiny``, ``pretrain2-audio-tiny`` -> ``pretrain2-speech-tiny``)."""
    prefix = "pretrain2-" if stem.startswith("pretrain2-") else ""
    bare = stem.removeprefix(prefix or "pretrain-")
    modality, _, rest = bare.partition("-")
    bares = [bare]
    try:
        names = get_modality(modality).names
    except UnknownModalityError:
        names = ()
    if rest:
        bares += [f"{name}-{rest}" for name in names if name != modality]
    if prefix:
        return [f"{prefix}{bare}" for bare in bares]
    return [name for bare in bares for name in (bare, f"pretrain-{bare}")]


def resolve_recipe_path(path: str | os.PathLike) -> Path:
    """A recipe file path, or a short name (``vision-tiny`` / ``pretrain-vision-tiny``; a modality
    alias works too: ``speech-tiny``) of a file in ``recipes/`` (of the working directory or of
    the repository)."""
    candidate = Path(path)
    if candidate.is_file():
        return candidate
    names = _recipe_names(candidate.name.removesuffix(".yaml"))
    for folder in (Path("recipes"), RECIPES_FOLDER):
        for name in names:
            file = folder / f"{name}.yaml"
            if file.is_file():
                return file
    available = sorted(file.stem for file in RECIPES_FOLDER.glob("*.yaml")) if RECIPES_FOLDER.is_dir() else []
    raise RecipeError(
        f"recipe {str(path)!r} not found: pass the path of a YAML file"
        + (f" or one of {available}" if available else "")
    )
