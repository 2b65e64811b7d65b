"""Base classes of every model: ``Backbone`` (an ``embed()`` then the shared ``Encoder``) and
``HeadModel`` (a task head on a backbone held in ``self.backbone``), both ``PreTrainedModel``:
initialisation, ``from_pretrained`` and ``save_pretrained`` in the reference's layout.

A family describes itself once in a ``ModelFamily`` (its config class, the attribute name the
reference gives the backbone inside head classes, e.g. ``data2vec_text``, its ``KeyMap`` of
backbone parameters and its initialisation); its backbone class sets ``family``, its head
classes set ``backbone_class`` (the family follows from it) and ``head_keys``.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from .checkpoint import KeyMap, StateDict, load_state_dict, save_state_dict
from .config import Config
from .encoder import AttentionBias, Encoder, EncoderResult, Kind
from .outputs import ModelOutput

BACKBONE = "backbone"


def init_standard(module: nn.Module, std: float, linear_types: tuple[type, ...] = (nn.Linear,)) -> bool:
    """The initialisation the families share: normal(0, std) weights and zero biases for
    ``linear_types``, normal embeddings with a zero padding row, ones and zeros for affine
    LayerNorm / BatchNorm (whose running statistics are reset). Returns whether ``module`` was
    one of these."""
    if isinstance(module, linear_types):
        nn.init.normal_(module.weight, std=std)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, std=std)
        if module.padding_idx is not None:
            with torch.no_grad():
                module.weight[module.padding_idx].zero_()
    elif isinstance(module, (nn.LayerNorm, nn.BatchNorm2d)):
        if module.weight is not None:
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        if isinstance(module, nn.BatchNorm2d):
            module.reset_running_stats()
    else:
        return False
    return True


@dataclasses.dataclass(frozen=True)
class ModelFamily:
    """What every class of one family shares."""

    config_class: type[Config]
    reference_prefix: str  # the backbone's attribute in the reference's head classes
    backbone_keys: KeyMap  # reference <-> our names of the backbone's parameters
    init_weights: Callable[[Config, nn.Module], None]  # initialise one module as the reference does


@dataclasses.dataclass
class Embedded:
    """What a backbone's ``embed()`` hands to the encoder."""

    hidden_states: torch.Tensor  # (batch, length, hidden)
    attention_bias: AttentionBias = None  # additive, for the full sequence (or per block)
    extras: dict[str, Any] = dataclasses.field(default_factory=dict)  # e.g. extract_features, the patch grid
    # (batch, length) mask of the real tokens when the blocks are to skip the padding (``drop_padding``),
    # and whether each token then sees only those before it (a decoder; the bias is not used then)
    real_tokens: torch.Tensor | None = None
    causal: bool = False


@dataclasses.dataclass
class IntermediatesOutput(ModelOutput):
    """``forward_intermediates``: the final states (after the family's final norm / adapter when
    every block ran) and the asked-for intermediate outputs, in the order asked."""

    last_hidden_state: torch.Tensor | None = None
    intermediates: tuple[torch.Tensor | None, ...] | None = None
class CheckpointWarning(UserWarning):
    """Missing, unexpected or re-initialised weights while loading a checkpoint."""


class PreTrainedModel(nn.Module):
    """Use ``Backbone`` or ``HeadModel``; this holds what both share."""

    role: ClassVar[Literal["backbone", "head"]]
    family: ClassVar[ModelFamily]
    config_class: ClassVar[type[Config]] = Config  # these three are copied from `family`
    reference_prefix: ClassVar[str] = ""
    backbone_keys: ClassVar[KeyMap] = KeyMap()
    head_keys: ClassVar[KeyMap] = KeyMap()  # a head's own parameters
    # our alias parameter -> our source parameter, tied when config.tie_word_embeddings
    tied_weights: ClassVar[dict[str, str]] = {}

    def __init__(self, config: Config) -> None:
        super().__init__()
        if not isinstance(config, self.config_class):
            raise TypeError(f"{type(self).__name__} takes a {self.config_class.__name__}, got {type(config).__name__}")
        self.config = config
        # Checks of input values (token ids in range, finite audio) need the values on the host.
        # None: check inputs that are on the CPU (no device synchronisation); True: always;
        # False: never (training loops turn it off after their first batch).
        self.validate_inputs: bool | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        family = getattr(cls, "family", None)
        if family is not None:  # the family's facts, readable on the class (e.g. Cls.config_class)
            cls.config_class = family.config_class
            cls.reference_prefix = family.reference_prefix
            cls.backbone_keys = family.backbone_keys

    @property
    def base_model(self) -> "Backbone":
        """The backbone: this model itself, or the one a head holds."""
        return self if self.role == "backbone" else self.backbone

    def should_validate(self, tensor: torch.Tensor) -> bool:
        """Whether to run a check that reads ``tensor``'s values (see ``validate_inputs``)."""
        setting = self.base_model.validate_inputs
        if setting is None:
            return tensor.device.type == "cpu" and not torch.compiler.is_compiling()
        return setting

    # ------------------------------------------------------------ initialisation
    def _init_weights(self, module: nn.Module) -> None:
        """Initialise one module (called for every submodule, children before parents)."""
        self.family.init_weights(self.config, module)

    def post_init(self) -> None:
        """Initialise all weights as the reference does, then tie shared weights."""
        self.apply(self._init_weights)
        self.tie_weights()

    def tie_weights(self) -> None:
        if not getattr(self.config, "tie_word_embeddings", False):
            return
        for alias, source in self.tied_weights.items():
            owner_name, _, attribute = alias.rpartition(".")
            setattr(self.get_submodule(owner_name), attribute, self.get_parameter(source))

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def num_parameters(self, only_trainable: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not only_trainable)

    def _tied_aliases(self) -> set[str]:
        return set(self.tied_weights) if getattr(self.config, "tie_word_embeddings", False) else set()

    # ------------------------------------------------------------ name mapping
    def state_dict_to_reference(self, state: StateDict | None = None) -> StateDict:
        """Our state dict under the reference's parameter names (what ``save_pretrained`` writes)."""
        state = dict(self.state_dict() if state is None else state)
        for alias in self._tied_aliases():
            state.pop(alias, None)
        if self.role == "backbone":
            return self.backbone_keys.to_reference(state)
        backbone = {key[len(BACKBONE) + 1 :]: value for key, value in state.items() if key.startswith(BACKBONE + ".")}
        head = {key: value for key, value in state.items() if not key.startswith(BACKBONE + ".")}
        reference = {f"{self.reference_prefix}.{key}": value for key, value in self.backbone_keys.to_reference(backbone).items()}
        reference.update(self.head_keys.to_reference(head))
        return reference

    def state_dict_from_reference(self, reference: StateDict) -> tuple[StateDict, list[str]]:
        """Map a checkpoint's state dict to our names. Returns (ours, unexpected reference keys).

        A backbone checkpoint loads into a head class (the head stays freshly initialised) and a
        head checkpoint into the backbone class (the head's tensors are reported as unexpected).
        """
        prefix = self.reference_prefix + "."
        has_prefix = any(key.startswith(prefix) for key in reference)
        if has_prefix:
            backbone = {key[len(prefix) :]: value for key, value in reference.items() if key.startswith(prefix)}
            head = {key: value for key, value in reference.items() if not key.startswith(prefix)}
        elif self.role == "backbone":
            backbone, head = dict(reference), {}
        else:  # a backbone checkpoint: everything that is not a head parameter belongs to the backbone
            head = {key: value for key, value in reference.items() if _matches_head(self.head_keys, key)}
            backbone = {key: value for key, value in reference.items() if key not in head}
        ours, unexpected = self.backbone_keys.to_ours(backbone)
        if self.role == "backbone":
            unexpected += [key for key in head if not self.backbone_keys.is_ignored(key)]
        else:
            ours = {f"{BACKBONE}.{key}": value for key, value in ours.items()}
            unexpected = [prefix + key if has_prefix else key for key in unexpected]
            head_ours, head_unexpected = self.head_keys.to_ours(head)
            ours.update(head_ours)
            unexpected += head_unexpected
        for alias in self._tied_aliases():
            ours.pop(alias, None)
        return ours, unexpected

    # ------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(
        cls,
        path_or_repo: str | os.PathLike,
        *,
        config: Config | None = None,
        revision: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        dtype: torch.dtype | None = None,
        device: str | torch.device | None = None,
        ignore_mismatched_sizes: bool = False,
        output_loading_info: bool = False,
        **config_overrides: Any,
    ):
        """Load a folder or Hub repo in the Hugging Face layout. Extra keyword arguments
        override keys of ``config.json`` (e.g. ``num_labels=5``)."""
        hub_options = {"revision": revision, "cache_dir": cache_dir}
        known = cls.config_class.field_names() | {"num_labels"}
        unknown = sorted(set(config_overrides) - known)
        if unknown:
            raise TypeError(f"{cls.__name__}.from_pretrained got unknown arguments {unknown} (not config keys either)")
        if config is None:
            from .config import CONFIG_NAME
            from .hub import resolve_file

            config = cls.config_class.from_json_file(resolve_file(path_or_repo, CONFIG_NAME, **hub_options), **config_overrides)
        elif config_overrides:
            config = config.copy(**config_overrides)
        reference = load_state_dict(path_or_repo, **hub_options)
        model = cls(config)
        info = model.load_reference_state_dict(reference, ignore_mismatched_sizes=ignore_mismatched_sizes, source=str(path_or_repo))
        if dtype is not None:
            model = model.to(dtype)
        if device is not None:
            model = model.to(device)
        model.eval()
        return (model, info) if output_loading_info else model

    def load_reference_state_dict(
        self, reference: StateDict, *, ignore_mismatched_sizes: bool = False, source: str = "checkpoint"
    ) -> dict[str, list[str]]:
        """Load tensors named as the reference names them; report what did not fit."""
        ours, unexpected = self.state_dict_from_reference(reference)
        expected = self.state_dict()
        mismatched = []
        for key in list(ours):
            if key not in expected:  # e.g. the pooler of a backbone checkpoint in a head without one
                names = self._reference_names(key, ours.pop(key))
                if not any(name.startswith(self.reference_prefix + ".") for name in reference):
                    names = [name.removeprefix(self.reference_prefix + ".") for name in names]
                unexpected.extend(names)
                continue
            if ours[key].shape != expected[key].shape:
                message = f"{key}: checkpoint {tuple(ours[key].shape)}, model {tuple(expected[key].shape)}"
                if not ignore_mismatched_sizes:
                    raise ValueError(
                        f"the weights in {source} do not fit the configuration ({message}). Check that config.json "
                        "belongs to these weights; pass ignore_mismatched_sizes=True to re-initialise such tensors "
                        "(e.g. a classifier with another number of labels)."
                    )
                mismatched.append(message)
                del ours[key]
        result = self.load_state_dict(ours, strict=False)
        tied = self._tied_aliases()
        missing = [key for key in result.missing_keys if key not in tied]
        name = type(self).__name__
        if missing:
            warnings.warn(
                f"{name}: {len(missing)} weights not in {source} were freshly initialised "
                f"(train them before use): {', '.join(missing)}",
                CheckpointWarning,
                stacklevel=3,
            )
        if unexpected:
            warnings.warn(
                f"{name}: {len(unexpected)} weights in {source} were not used: {', '.join(unexpected)}",
                CheckpointWarning,
                stacklevel=3,
            )
        if mismatched:
            warnings.warn(
                f"{name}: weights of another shape re-initialised: {'; '.join(mismatched)}", CheckpointWarning, stacklevel=3
            )
        self.tie_weights()
        return {"missing_keys": missing, "unexpected_keys": unexpected, "mismatched_keys": mismatched}

    def _reference_names(self, key: str, tensor: torch.Tensor) -> list[str]:
        """The checkpoint's name(s) of one of our parameters, for messages."""
        try:
            return list(self.state_dict_to_reference({key: tensor}))
        except KeyError:
            return [key]

    # ------------------------------------------------------------ saving
    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write ``config.json`` and ``model.safetensors`` in the reference's layout."""
        directory = Path(directory)
        self.config.architectures = [type(self).__name__]
        self.config.save_pretrained(directory)
        save_state_dict(self.state_dict_to_reference(), directory)
        return directory


def _matches_head(head_keys: KeyMap, reference_key: str) -> bool:
    return bool(head_keys.to_ours({reference_key: torch.empty(0)})[0]) or head_keys.is_ignored(reference_key)


class Backbone(PreTrainedModel):
    """A modality's ``embed()`` followed by the shared ``Encoder`` (``self.encoder``).

    Subclasses define ``embed(**inputs) -> Embedded`` (taking the inputs of their ``forward``
    that concern the embedding) and, when their last states are more than the last block's
    output, ``final_states`` (a final LayerNorm, an adapter)."""

    role = "backbone"
    encoder: Encoder

    def embed(self, *args: Any, **kwargs: Any) -> Embedded:
        raise NotImplementedError

    def final_states(self, hidden_states: torch.Tensor, embedded: Embedded) -> torch.Tensor:
        return hidden_states

    def run_encoder(self, embedded: Embedded, **options: Any) -> EncoderResult:
        """The encoder on what ``embed()`` gave (``options``: those of ``Encoder.forward``), with
        ``last_hidden_state`` after ``final_states``, or None when ``stop_early`` left blocks out."""
        if embedded.real_tokens is not None:
            options = {**options, "drop_padding": embedded.real_tokens, "causal": embedded.causal}
        result = self.encoder(embedded.hidden_states, embedded.attention_bias, **options)
        last = self.final_states(result.last_hidden_state, embedded) if result.ran_all_blocks else None
        return dataclasses.replace(result, last_hidden_state=last)

    def forward_intermediates(
        self, *args: Any, indices: int | Sequence[int], kind: Kind = "block", stop_early: bool = False, **inputs: Any
    ) -> IntermediatesOutput:
        """Run ``embed(*args, **inputs)`` and the encoder, returning the outputs of the blocks named
        by ``indices`` (0 = embedding output, n = block n, negative from the end; an int k = the
        last k blocks) of ``kind`` "block" or "feed_forward" (the feed-forward output before its
        residual and norm). ``stop_early`` skips the blocks after the last one asked for (then
        ``last_hidden_state`` is None)."""
        result = self.run_encoder(self.embed(*args, **inputs), indices=indices, kind=kind, stop_early=stop_early)
        return IntermediatesOutput(last_hidden_state=result.last_hidden_state, intermediates=result.intermediates)

    def set_gradient_checkpointing(self, enabled: bool = True) -> None:
        """Recompute each block in the backward pass instead of keeping its activations."""
        self.encoder.gradient_checkpointing = enabled


class HeadModel(PreTrainedModel):
    """A task head on a backbone, kept in ``self.backbone`` (the reference names it after the
    family, e.g. ``data2vec_text``; ``state_dict_to_reference`` maps the prefix)."""

    role = "head"
    backbone_class: ClassVar[type[Backbone]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        backbone_class = cls.__dict__.get("backbone_class")
        if backbone_class is not None:
            cls.family = backbone_class.family
            cls._backbone_parameters = frozenset(inspect.signature(backbone_class.forward).parameters) - {"self"}
        super().__init_subclass__(**kwargs)

    def __init__(self, config: Config, **backbone_options: Any) -> None:
        super().__init__(config)
        self.backbone = self.backbone_class(config, **backbone_options)

    def run_backbone(self, inputs: Mapping[str, Any], **changes: Any):
        """Call the backbone with the entries of ``inputs`` that its ``forward`` takes (a head
        passes ``locals()`` of its own forward arguments), with ``changes`` applied."""
        arguments = {name: value for name, value in inputs.items() if name in self._backbone_parameters}
        arguments.update(changes)
        return self.backbone(**arguments)

    def forward_intermediates(self, *args: Any, **kwargs: Any) -> IntermediatesOutput:
        """The backbone's ``forward_intermediates``."""
        return self.backbone.forward_intermediates(*args, **kwargs)

    def set_gradient_checkpointing(self, enabled: bool = True) -> None:
        self.backbone.set_gradient_checkpointing(enabled)

    def freeze_base_model(self) -> None:
        """Stop gradients into the whole backbone; only the head trains."""
        for parameter in self.backbone.parameters():
            parameter.requires_grad = False


def set_input_validation(module: nn.Module, enabled: bool | None) -> None:
    """Set ``validate_inputs`` of every model inside ``module`` (a model, a wrapper, a teacher):
    training loops call ``set_input_validation(model, False)`` after their first batch, whose
    inputs were checked, so that later steps never wait for the device."""
    for child in module.modules():
        if isinstance(child, PreTrainedModel):
            child.validate_inputs = enabled
