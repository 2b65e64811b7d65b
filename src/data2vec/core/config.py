"""Typed model configuration that reads and writes ``config.json`` as the official checkpoints have it.

Each family declares a dataclass subclass whose field names are the keys of its
``config.json``. Keys the class does not declare are kept in ``extra`` and written back,
so a file survives a load/save round trip with every key it had.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
from pathlib import Path
from typing import Any, ClassVar

from .hub import resolve_file

CONFIG_NAME = "config.json"

# Keys the reference writes for bookkeeping; kept in `extra` like any unknown key.
_PROBLEM_TYPES = ("regression", "single_label_classification", "multi_label_classification")


@dataclasses.dataclass(kw_only=True)
class Config:
    """Base of the family configurations. Subclasses add their own fields and set ``model_type``."""

    model_type: ClassVar[str] = ""

    # Keys shared by every family, with the reference's defaults.
    id2label: dict[int, str] | None = None
    label2id: dict[str, int] | None = None
    problem_type: str | None = None
    architectures: list[str] | None = None
    tie_word_embeddings: bool = True
    # Not a key on disk: with no `id2label`, the number of labels to name "LABEL_i".
    num_labels: dataclasses.InitVar[int | None] = None
    # Unknown keys from a config.json, written back unchanged.
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self, num_labels: int | None) -> None:
        if self.id2label is not None:
            self.id2label = {int(key): str(value) for key, value in self.id2label.items()}
            if num_labels is not None and num_labels != len(self.id2label):
                raise ValueError(
                    f"num_labels={num_labels} disagrees with id2label, which names {len(self.id2label)} labels"
                )
        else:
            self.id2label = {index: f"LABEL_{index}" for index in range(2 if num_labels is None else num_labels)}
        if self.label2id is None:
            self.label2id = {name: index for index, name in self.id2label.items()}
        else:
            self.label2id = {str(key): int(value) for key, value in self.label2id.items()}
        if self.problem_type is not None and self.problem_type not in _PROBLEM_TYPES:
            raise ValueError(f"problem_type must be one of {_PROBLEM_TYPES} or None, got {self.problem_type!r}")
        self.validate()

    def validate(self) -> None:
        """Check field values; subclasses raise ValueError naming the key."""

    # --------------------------------------------------------------- dict I/O
    @classmethod
    def field_names(cls) -> set[str]:
        return {f.name for f in dataclasses.fields(cls)} - {"extra"}

    @classmethod
    def from_dict(cls, values: dict[str, Any], **overrides: Any) -> "Config":
        values = {**copy.deepcopy(values), **overrides}
        found_type = values.pop("model_type", None)
        if found_type is not None and cls.model_type and found_type != cls.model_type:
            raise ValueError(
                f"config has model_type {found_type!r} but {cls.__name__} reads {cls.model_type!r}: "
                "load it with the matching class"
            )
        known = cls.field_names()
        kwargs = {key: values.pop(key) for key in list(values) if key in known}
        num_labels = values.pop("num_labels", None)
        extra = {**values.pop("extra", {}), **values}
        return cls(**kwargs, num_labels=num_labels, extra=extra)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(copy.deepcopy(self.extra))
        for f in dataclasses.fields(self):
            if f.name != "extra":
                out[f.name] = copy.deepcopy(getattr(self, f.name))
        out["model_type"] = self.model_type
        for key in ("architectures", "problem_type"):  # the reference omits these when unset
            if out[key] is None:
                del out[key]
        default_labels = {index: f"LABEL_{index}" for index in range(2)}
        if out["id2label"] == default_labels and out["label2id"] == {v: k for k, v in default_labels.items()}:
            del out["id2label"], out["label2id"]  # the reference omits the default two labels
        else:
            out["id2label"] = {str(key): value for key, value in out["id2label"].items()}
        return dict(sorted(out.items()))

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def __getattr__(self, name: str) -> Any:
        # Unknown keys read as attributes, like the reference's configs.
        extra = self.__dict__.get("extra")
        if extra is not None and name in extra:
            return extra[name]
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    # -------------------------------------------------------------- file I/O
    @classmethod
    def from_json_file(cls, path: str | os.PathLike, **overrides: Any) -> "Config":
        try:
            values = json.loads(Path(path).read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise ValueError(f"{path} is not valid JSON: {error}") from None
        if not isinstance(values, dict):
            raise ValueError(f"{path} must hold a JSON object, found {type(values).__name__}")
        return cls.from_dict(values, **overrides)

    @classmethod
    def from_pretrained(cls, path_or_repo: str | os.PathLike, **overrides: Any) -> "Config":
        return cls.from_json_file(resolve_file(path_or_repo, CONFIG_NAME), **overrides)

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / CONFIG_NAME
        path.write_text(self.to_json_string(), encoding="utf-8")
        return path

    def copy(self, **changes: Any) -> "Config":
        return type(self).from_dict(self.to_dict(), **changes)


def _get_num_labels(self: Config) -> int:
    return len(self.id2label)


def _set_num_labels(self: Config, value: int) -> None:
    if value != len(self.id2label or {}):
        self.id2label = {index: f"LABEL_{index}" for index in range(value)}
        self.label2id = {name: index for index, name in self.id2label.items()}


# Set after the dataclass is built: `num_labels` is an init-only argument and, afterwards,
# a view of `id2label` (the reference derives it the same way and never writes it to disk).
Config.num_labels = property(_get_num_labels, _set_num_labels)  # type: ignore[assignment]
