"""Checkpoint files and the mapping between the reference's parameter names and ours.

Files: ``model.safetensors``, ``pytorch_model.bin`` (read with ``weights_only=True``) or a
sharded checkpoint with its ``*.index.json``, in a folder or a Hub repo (through the Hub cache).

Names: each family declares one ``KeyMap``: a table of (reference template, our template)
pairs, where ``{i}``/``{j}`` stand for layer numbers and ``{p}`` for a parameter suffix, plus
fused entries that concatenate several reference tensors (q, k, v) into one of ours along dim 0.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .hub import is_local, resolve_file

SAFE_WEIGHTS_NAME = "model.safetensors"
SAFE_WEIGHTS_INDEX_NAME = "model.safetensors.index.json"
WEIGHTS_NAME = "pytorch_model.bin"
WEIGHTS_INDEX_NAME = "pytorch_model.bin.index.json"

StateDict = dict[str, torch.Tensor]

_PLACEHOLDERS = {
    "i": r"(?P<i>\d+)",
    "j": r"(?P<j>\d+)",
    "k": r"(?P<k>\d+)",
    "p": r"(?P<p>[A-Za-z_0-9]+)",
}


def _template_regex(template: str) -> re.Pattern[str]:
    pattern = re.escape(template)
    for name, group in _PLACEHOLDERS.items():
        pattern = pattern.replace(re.escape("{" + name + "}"), group)
    return re.compile(pattern + r"\Z")


@dataclass
class KeyMap:
    """Declarative name table of one family.

    renames: (reference template, our template).
    fused:   (reference templates to concatenate along dim 0 in this order, our template).
    ignored: regexes of reference keys that are dropped silently when loading (e.g. old buffers).
    """

    renames: list[tuple[str, str]] = field(default_factory=list)
    fused: list[tuple[tuple[str, ...], str]] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._renames = [(_template_regex(ref), ref, _template_regex(ours), ours) for ref, ours in self.renames]
        self._fused = [
            ([_template_regex(ref) for ref in refs], refs, _template_regex(ours), ours) for refs, ours in self.fused
        ]
        self._ignored = [re.compile(pattern + r"\Z") for pattern in self.ignored]

    def is_ignored(self, reference_key: str) -> bool:
        return any(pattern.match(reference_key) for pattern in self._ignored)

    def to_ours(self, reference: StateDict) -> tuple[StateDict, list[str]]:
        """Map a reference state dict to our names. Returns (ours, unmatched reference keys)."""
        ours: StateDict = {}
        pending = dict(reference)
        for regexes, _refs, _ours_regex, ours_template in self._fused:
            for key in list(pending):
                found = regexes[0].match(key)
                if found is None:
                    continue
                values = found.groupdict()
                parts = [ref.format(**values) for ref in _refs]
                if not all(part in pending for part in parts):
                    continue  # left unmatched and reported
                ours[ours_template.format(**values)] = torch.cat([pending.pop(part) for part in parts], dim=0)
        for key in list(pending):
            for ref_regex, _ref, _ours_regex, ours_template in self._renames:
                found = ref_regex.match(key)
                if found is not None:
                    ours[ours_template.format(**found.groupdict())] = pending.pop(key)
                    break
        unmatched = [key for key in pending if not self.is_ignored(key)]
        return ours, unmatched

    def to_reference(self, ours: StateDict) -> StateDict:
        """Map our state dict to the reference's names (splitting fused tensors)."""
        reference: StateDict = {}
        for key, tensor in ours.items():
            for _regexes, refs, ours_regex, _template in self._fused:
                found = ours_regex.match(key)
                if found is not None:
                    values = found.groupdict()
                    for ref, part in zip(refs, tensor.chunk(len(refs), dim=0)):
                        reference[ref.format(**values)] = part
                    break
            else:
                for _ref_regex, ref_template, ours_regex, _ours in self._renames:
                    found = ours_regex.match(key)
                    if found is not None:
                        reference[ref_template.format(**found.groupdict())] = tensor
                        break
                else:
                    raise KeyError(f"no reference name for parameter {key!r}: add it to the family's KeyMap")
        return reference


# ---------------------------------------------------------------------------- table helpers
OUR_BLOCK = "encoder.layers.{i}."  # where a backbone keeps block i (``core.encoder.Encoder.layers``)


def unchanged(*templates: str) -> list[tuple[str, str]]:
    """Renames of parameters named the same in the reference and here."""
    return [(template, template) for template in templates]


def renames_under(reference_prefix: str, our_prefix: str, suffixes: dict[str, str]) -> list[tuple[str, str]]:
    """Renames of one module's parameters: ``reference_prefix`` + reference suffix <->
    ``our_prefix`` + our suffix, for each (reference suffix: our suffix) of ``suffixes``."""
    return [(reference_prefix + reference, our_prefix + ours) for reference, ours in suffixes.items()]


def block_renames(reference_block: str, suffixes: dict[str, str]) -> list[tuple[str, str]]:
    """``renames_under`` for every block: ``reference_block`` (with ``{i}``) <-> ``OUR_BLOCK``."""
    return renames_under(reference_block, OUR_BLOCK, suffixes)


def block_fused(reference_block: str, references: tuple[str, ...], ours: str) -> tuple[tuple[str, ...], str]:
    """A fused entry of every block: the ``references`` suffixes concatenated into our suffix ``ours``."""
    return tuple(reference_block + reference for reference in references), OUR_BLOCK + ours


# ---------------------------------------------------------------------------- files
def _load_file(path: Path) -> StateDict:
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as error:
            raise OSError(
                f"could not read {path}: the safetensors file is corrupted or incomplete ({error}). "
                "Delete it and download or save it again."
            ) from None
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as error:  # pickle errors come in many types
        raise OSError(f"could not read {path} as a PyTorch checkpoint ({type(error).__name__}: {error})") from None
    if not isinstance(state, dict):
        raise OSError(f"{path} holds a {type(state).__name__}, not a state dict of tensors")
    return state


def load_state_dict(path_or_repo: str | os.PathLike, **hub_options) -> StateDict:
    """Read all weights of a checkpoint folder or Hub repo (names as stored)."""
    for index_name in (SAFE_WEIGHTS_INDEX_NAME, WEIGHTS_INDEX_NAME):
        index_path = resolve_file(path_or_repo, index_name, required=False, **hub_options)
        if index_path is None:
            continue
        index = json.loads(index_path.read_text(encoding="utf-8"))
        state: StateDict = {}
        for shard in sorted(set(index["weight_map"].values())):
            state.update(_load_file(resolve_file(path_or_repo, shard, **hub_options)))
        missing = set(index["weight_map"]) - set(state)
        if missing:
            raise OSError(f"shards of {path_or_repo} lack tensors listed in {index_name}: {sorted(missing)[:5]}")
        return state
    for name in (SAFE_WEIGHTS_NAME, WEIGHTS_NAME):
        path = resolve_file(path_or_repo, name, required=False, **hub_options)
        if path is not None:
            return _load_file(path)
    where = "folder" if is_local(path_or_repo) else "Hub repo"
    raise FileNotFoundError(
        f"no weights in {where} {str(path_or_repo)!r}: expected {SAFE_WEIGHTS_NAME}, {WEIGHTS_NAME} "
        f"or a sharded {SAFE_WEIGHTS_INDEX_NAME}"
    )


def save_state_dict(state: StateDict, directory: str | os.PathLike) -> Path:
    """Write ``model.safetensors`` (contiguous, unshared copies, ``format: pt`` metadata)."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / SAFE_WEIGHTS_NAME
    tensors = {key: tensor.detach().to("cpu").contiguous().clone() for key, tensor in state.items()}
    temporary = path.with_suffix(".safetensors.tmp")
    save_file(tensors, str(temporary), metadata={"format": "pt"})
    os.replace(temporary, path)
    return path
