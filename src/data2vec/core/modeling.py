"""Base class of every model: initialisation, ``from_pretrained`` and ``save_pretrained``.

A family sets ``config_class``, ``reference_prefix`` (the attribute name the reference gives
the backbone inside head classes, e.g. ``data2vec_text``) and ``backbone_keys`` (its
``KeyMap`` for backbone parameters, names relative to the backbone). A head class also sets
``head_keys`` for its own parameters and keeps its backbone in ``self.backbone``.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from .checkpoint import KeyMap, StateDict, load_state_dict, save_state_dict
from .config import Config

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


class CheckpointWarning(UserWarning):
    """Missing, unexpected or re-initialised weights while loading a checkpoint."""


class PreTrainedModel(nn.Module):
    config_class: ClassVar[type[Config]] = Config
    reference_prefix: ClassVar[str] = ""
    backbone_keys: ClassVar[KeyMap] = KeyMap()
    head_keys: ClassVar[KeyMap | None] = None  # None: this class is the backbone itself
    # our alias parameter -> our source parameter, tied when config.tie_word_embeddings
    tied_weights: ClassVar[dict[str, str]] = {}

    def __init__(self, config: Config) -> None:
        super().__init__()
        if not isinstance(config, self.config_class):
            raise TypeError(f"{type(self).__name__} takes a {self.config_class.__name__}, got {type(config).__name__}")
        self.config = config

    # ------------------------------------------------------------ initialisation
    def _init_weights(self, module: nn.Module) -> None:
        """Family-specific initialisation of one module (called for every submodule)."""

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
        if self.head_keys is None:
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
        elif self.head_keys is None:
            backbone, head = dict(reference), {}
        else:  # a backbone checkpoint: everything that is not a head parameter belongs to the backbone
            head = {key: value for key, value in reference.items() if _matches_head(self.head_keys, key)}
            backbone = {key: value for key, value in reference.items() if key not in head}
        ours, unexpected = self.backbone_keys.to_ours(backbone)
        if self.head_keys is None:
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
