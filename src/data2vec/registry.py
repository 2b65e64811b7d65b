"""The modalities of the library: one ``ModalitySpec`` per modality, looked up by name or alias.

A spec names everything that is specific to a modality outside its own folder: the backbone's
config and model classes, the mask sampler, the recipe sections of its masking and data settings,
and the pretraining adapter. Pretraining recipes (``modality: audio``) and the command line find
a modality here; nothing else keeps a table of modality names.

The parts are given as classes or as ``"module:attribute"`` strings, imported on first use, so
registering (and ``import data2vec``) loads no model code. The built-ins:

    name     aliases   config / backbone                                   masking   adapter
    audio    speech    Data2VecAudioConfig / Data2VecAudioModel            spans     AudioAdapter
    vision   image     Data2VecVisionConfig / Data2VecVisionModel          blocks    VisionAdapter
    text     -         Data2VecTextConfig / Data2VecTextModel              tokens    TextAdapter

A fourth modality is a spec registered from anywhere, e.g. a test file::

    register_modality(ModalitySpec(
        name="sensor", config=SensorConfig, backbone=SensorModel, sampler=span_mask,
        masking=SpanMaskingSettings, data=SensorDataSettings, adapter=SensorAdapter,
    ))
"""

from __future__ import annotations

import dataclasses
import importlib
import re
from typing import Any

_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")


class UnknownModalityError(ValueError):
    """A modality name that no spec registered (the message lists the registered names and aliases)."""


def load_reference(reference: Any) -> Any:
    """``"package.module:attribute"`` -> that attribute (imported now); anything else as is."""
    if not isinstance(reference, str):
        return reference
    module_name, separator, attribute = reference.partition(":")
    if not separator or not attribute:
        raise ValueError(f"expected 'package.module:attribute', got {reference!r}")
    module = importlib.import_module(module_name)
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise ImportError(f"{module_name} has no attribute {attribute!r} (from the reference {reference!r})") from None


@dataclasses.dataclass(frozen=True)
class ModalitySpec:
    """What makes a modality: each part a class (or function) or a ``"module:attribute"`` string.

    name: the one name recipes, logs and the command line use (lower case).
    aliases: other names accepted where a modality is named (recipes, the CLI); they resolve to ``name``.
    config: the backbone's ``Config`` subclass (the recipe's ``model`` section holds its keys).
    backbone: the backbone class, built as ``backbone(config)``.
    adapter: the pretraining adapter class (``data2vec.pretraining.modalities.ModalityAdapter``).
    masking: the dataclass of the recipe's ``masking`` section (the sampler's settings).
    data: the dataclass of the recipe's ``data`` section (a ``pretraining.recipe.DataSettings``).
    sampler: the mask sampler the adapter draws with.
    """

    name: str
    config: Any
    backbone: Any
    adapter: Any
    masking: Any
    data: Any
    sampler: Any = None
    aliases: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "aliases", tuple(self.aliases))
        for name in (self.name, *self.aliases):
            if not isinstance(name, str) or not _NAME.match(name):
                raise ValueError(
                    f"modality names are lower-case words (letters, digits, '-', '_'), got {name!r}"
                )

    # the parts, imported on first use
    config_class = property(lambda self: load_reference(self.config))
    backbone_class = property(lambda self: load_reference(self.backbone))
    adapter_class = property(lambda self: load_reference(self.adapter))
    masking_class = property(lambda self: load_reference(self.masking))
    data_class = property(lambda self: load_reference(self.data))
    sampler_function = property(lambda self: load_reference(self.sampler))

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)


class ModalityRegistry:
    """Specs by name; every alias maps to its spec's name."""

    def __init__(self) -> None:
        self._specs: dict[str, ModalitySpec] = {}
        self._names: dict[str, str] = {}  # name or alias -> name

    def register(self, spec: ModalitySpec, *, replace: bool = False) -> ModalitySpec:
        """Add ``spec``. A name or alias already taken by another spec is an error unless ``replace``
        (which drops that spec first)."""
        if not isinstance(spec, ModalitySpec):
            raise TypeError(f"expected a ModalitySpec, got {type(spec).__name__}")
        taken = {name: self._names[name] for name in spec.names if name in self._names}
        if taken and not replace:
            clashes = ", ".join(f"{name!r} (modality {owner!r})" for name, owner in taken.items())
            raise ValueError(f"modality names already registered: {clashes}; pass replace=True to replace them")
        for owner in set(taken.values()):
            self.unregister(owner)
        self._specs[spec.name] = spec
        self._names.update({name: spec.name for name in spec.names})
        return spec

    def unregister(self, name: str) -> ModalitySpec:
        spec = self.get(name)
        del self._specs[spec.name]
        self._names = {key: value for key, value in self._names.items() if value != spec.name}
        return spec

    def get(self, name: str) -> ModalitySpec:
        """The spec of ``name`` or of one of its aliases (case-insensitive)."""
        canonical = self._names.get(name.lower()) if isinstance(name, str) else None
        if canonical is None:
            raise UnknownModalityError(f"unknown modality {name!r}: registered are {self.describe()}")
        return self._specs[canonical]

    def names(self) -> tuple[str, ...]:
        """The registered modality names (no aliases), in registration order."""
        return tuple(self._specs)

    def describe(self) -> str:
        """``audio (alias speech), vision (alias image), text``."""
        return ", ".join(
            spec.name + (f" (alias {', '.join(spec.aliases)})" if spec.aliases else "") for spec in self._specs.values()
        ) or "none"

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._names


MODALITIES = ModalityRegistry()


def register_modality(spec: ModalitySpec, *, replace: bool = False) -> ModalitySpec:
    """Register ``spec`` in the library's registry (see ``ModalityRegistry.register``)."""
    return MODALITIES.register(spec, replace=replace)


def unregister_modality(name: str) -> ModalitySpec:
    """Remove the spec of ``name`` (or of an alias) from the library's registry; returns it."""
    return MODALITIES.unregister(name)


def get_modality(name: str) -> ModalitySpec:
    """The spec of a modality name or alias; ``UnknownModalityError`` lists the registered ones."""
    return MODALITIES.get(name)


# ---------------------------------------------------------------------------- the built-ins
_BUILT_INS = (
    # name, aliases, config and backbone (in data2vec.<name>), adapter, masking and data settings, sampler
    ("audio", ("speech",), "Data2VecAudioConfig", "Data2VecAudioModel", "AudioAdapter",
     "SpanMaskingSettings", "AudioDataSettings", "span_mask"),
    ("vision", ("image",), "Data2VecVisionConfig", "Data2VecVisionModel", "VisionAdapter",
     "BlockMaskingSettings", "VisionDataSettings", "block_mask_2d"),
    ("text", (), "Data2VecTextConfig", "Data2VecTextModel", "TextAdapter",
     "TokenMaskingSettings", "TextDataSettings", "token_mask"),
)
for name, aliases, config, backbone, adapter, masking, data, sampler in _BUILT_INS:
    register_modality(ModalitySpec(
        name=name,
        aliases=aliases,
        config=f"data2vec.{name}.config:{config}",
        backbone=f"data2vec.{name}.model:{backbone}",
        adapter=f"data2vec.pretraining.modalities:{adapter}",
        masking=f"data2vec.pretraining.recipe:{masking}",
        data=f"data2vec.pretraining.recipe:{data}",
        sampler=f"data2vec.pretraining.masking:{sampler}",
    ))
del name, aliases, config, backbone, adapter, masking, data, sampler
