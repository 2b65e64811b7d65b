"""What the preprocessors share: their files in a folder or Hub repo, and the batch they return.

The text tokenizer, the CTC tokenizer, the audio feature extractor and the image processor
keep their settings in JSON files laid out as in the Hub repos of the official checkpoints
(``preprocessor_config.json``, ``tokenizer_config.json``, ``vocab.json`` ...). ``Preprocessor``
owns the way in and out; a subclass names its main file in ``config_file`` and implements two
hooks for the files it reads and writes:

    Cls.from_pretrained(folder_or_repo_id, revision=..., cache_dir=..., **overrides)
        -> Cls._from_files(PretrainedFiles(folder_or_repo_id, ...), overrides)
    preprocessor.save_pretrained(folder)      # the folder is checked and created first
        -> preprocessor._save_files(folder)   # returns the paths written

Every preprocessor returns a ``Batch``: a dict of model inputs that also reads by attribute,
stacks its rows into tensors and moves them with ``.to(device)``.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

import numpy as np

from .hub import resolve_file

TensorType = Literal["pt", "np"]

PreprocessorT = TypeVar("PreprocessorT", bound="Preprocessor")


# ---------------------------------------------------------------------- JSON files


def read_json(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON object in ``path``; a ValueError naming the file when it holds anything else."""
    text = Path(path).read_text(encoding="utf-8")
    try:
        content = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{str(path)!r} is not valid JSON: {error}") from None
    if isinstance(content, dict):
        return content
    raise ValueError(f"{str(path)!r} must hold a JSON object, got {type(content).__name__}")


def write_json(path: Path, content: Mapping[str, Any], *, sort_keys: bool = False) -> Path:
    """Write ``content`` as indented UTF-8 JSON with a final newline; returns ``path``."""
    path.write_text(json.dumps(content, indent=2, sort_keys=sort_keys, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


@dataclasses.dataclass(frozen=True)
class PretrainedFiles:
    """The files of a local folder or a Hub repo id (``revision`` and ``cache_dir`` apply to a
    Hub id). A file that must exist and does not gives a FileNotFoundError naming it."""

    path_or_repo: str | os.PathLike
    revision: str | None = None
    cache_dir: str | os.PathLike | None = None

    def find(self, filename: str) -> Path:
        """The local path of ``filename``, which must exist."""
        path = self._resolve(filename, required=True)
        assert path is not None  # resolve_file raises instead
        return path

    def find_optional(self, filename: str) -> Path | None:
        """The local path of ``filename``, or ``None`` when the folder or repo lacks it."""
        return self._resolve(filename, required=False)

    def read_json(self, filename: str) -> dict[str, Any]:
        """The JSON object of a file that must exist."""
        return read_json(self.find(filename))

    def read_optional_json(self, filename: str) -> dict[str, Any]:
        """The JSON object of a file that may be absent (then ``{}``)."""
        path = self.find_optional(filename)
        return {} if path is None else read_json(path)

    def _resolve(self, filename: str, *, required: bool) -> Path | None:
        return resolve_file(
            self.path_or_repo, filename, required=required, revision=self.revision, cache_dir=self.cache_dir
        )


# ---------------------------------------------------------------------- the base


class Preprocessor:
    """Base of the preprocessors: ``from_pretrained`` / ``save_pretrained`` of their JSON files.

    A subclass sets ``config_file`` (the file that holds its settings) and implements
    ``_from_files`` (build an instance from the files, ``overrides`` winning over them and
    unknown overrides raising TypeError) and ``_save_files`` (write the files into an existing
    folder and return their paths).
    """

    config_file: ClassVar[str]

    @classmethod
    def from_pretrained(
        cls: type[PreprocessorT],
        path_or_repo: str | os.PathLike,
        *,
        revision: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        **overrides: Any,
    ) -> PreprocessorT:
        """Load from a local folder or a Hub repo id (through the Hub cache; ``revision`` and
        ``cache_dir`` as ``huggingface_hub`` takes them). Keyword ``overrides`` are settings
        that replace those of the files; an unknown one raises TypeError."""
        return cls._from_files(PretrainedFiles(path_or_repo, revision, cache_dir), overrides)

    def save_pretrained(self, save_directory: str | os.PathLike) -> Path | tuple[Path, ...]:
        """Write this preprocessor's files into ``save_directory`` (created if needed), in the
        layout ``from_pretrained`` reads; returns the path(s) written."""
        directory = Path(save_directory)
        if directory.is_file():
            raise NotADirectoryError(f"{str(directory)!r} is a file; pass a folder to save into")
        directory.mkdir(parents=True, exist_ok=True)
        return self._save_files(directory)

    @classmethod
    def _from_files(cls: type[PreprocessorT], files: PretrainedFiles, overrides: dict[str, Any]) -> PreprocessorT:
        raise NotImplementedError(f"{cls.__name__} does not implement _from_files")

    def _save_files(self, directory: Path) -> Path | tuple[Path, ...]:
        raise NotImplementedError(f"{type(self).__name__} does not implement _save_files")


# ---------------------------------------------------------------------- the batch


class Batch(dict):
    """What a preprocessor returns: a dict of model inputs (``input_ids``, ``input_values``,
    ``pixel_values``, ``attention_mask``, ``labels`` ...) whose keys also read as attributes.

    ``encodings`` optionally holds one alignment object per sequence (the text tokenizer's
    ``tokenizers.Encoding``), which ``word_ids``, ``sequence_ids`` and ``tokens`` read.
    """

    def __init__(self, data: Mapping[str, Any] | None = None, encodings: Sequence[Any] = ()) -> None:
        super().__init__(data or {})
        self._encodings = list(encodings)

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"{type(self).__name__} has no field {name!r}; fields: {sorted(self)}") from None

    def __getstate__(self) -> dict[str, Any]:
        return {"data": dict(self), "encodings": self._encodings}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.update(state["data"])
        self._encodings = state["encodings"]

    # ------------------------------------------------------------------ tensors

    def to(self, device: Any) -> Batch:
        """Move the torch tensors to ``device`` (a batch made with ``return_tensors="pt"``);
        other values stay. Moves in place and returns ``self``."""
        for key, value in list(self.items()):
            if hasattr(value, "to"):
                self[key] = value.to(device)
        return self

    def convert_to_tensors(self, tensor_type: TensorType, *, dtype: Any = None, unit: str, remedy: str) -> Batch:
        """Stack the rows of every field into one ``(batch, ...)`` numpy array (``"np"``) or
        torch tensor (``"pt"``), in place; returns ``self``. ``dtype`` (a numpy dtype) converts
        the values, ``None`` keeps theirs. Rows of different shapes raise a ValueError that counts
        the lengths in ``unit`` ("tokens") and tells the caller ``remedy`` ("pass padding=True")."""
        for key, rows in list(self.items()):
            self[key] = _stack_rows(key, rows, tensor_type, dtype, unit, remedy)
        return self

    # ------------------------------------------------------------------ token alignment

    @property
    def encodings(self) -> list[Any]:
        """One alignment object per sequence of the batch (``tokenizers.Encoding`` for text)."""
        return self._encodings

    def word_ids(self, batch_index: int = 0) -> list[int | None]:
        """For each token, the index of the word it came from (``None`` for special and pad
        tokens); word indices restart at 0 in the second text of a pair."""
        return self._encoding(batch_index).word_ids

    def sequence_ids(self, batch_index: int = 0) -> list[int | None]:
        """For each token, 0 (first text), 1 (second text of a pair) or ``None`` (special/pad)."""
        return self._encoding(batch_index).sequence_ids

    def tokens(self, batch_index: int = 0) -> list[str]:
        return self._encoding(batch_index).tokens

    def _encoding(self, batch_index: int) -> Any:
        if not self._encodings:
            raise ValueError("this batch holds no token alignment (it was not made by the text tokenizer)")
        if not -len(self._encodings) <= batch_index < len(self._encodings):
            raise IndexError(f"batch_index {batch_index} is out of range for a batch of {len(self._encodings)}")
        return self._encodings[batch_index]


def _stack_rows(key: str, rows: Sequence[Any], tensor_type: TensorType, dtype: Any, unit: str, remedy: str) -> Any:
    """Rows of one field -> a ``(batch, ...)`` numpy array or torch tensor."""
    shapes = sorted({np.shape(row) for row in rows})
    if len(shapes) > 1:
        if all(len(shape) == 1 for shape in shapes):
            found = f"different lengths ({shapes[0][0]} to {shapes[-1][0]} {unit})"
        else:
            found = f"different sizes {shapes}"
        raise ValueError(f"return_tensors={tensor_type!r}: cannot stack {key} of {found}; {remedy}")
    array = np.asarray(rows, dtype=dtype) if rows else np.zeros((0, 0), dtype=dtype)
    if tensor_type == "pt":
        import torch

        return torch.from_numpy(array)
    return array
