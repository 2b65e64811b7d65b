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
from .preprocessing import read_json

CONFIG_NAME = "config.json"

_PROBLEM_TYPES = ("regression", "single_label_classification", "multi_label_classification")

# Keys that the reference library's base configuration writes to (or, in older releases, wrote to)
# every config.json: its own bookkeeping, export and generation settings. No family here models
# them; every constructor accepts them and keeps them in `extra`, so they are written back.
REFERENCE_COMMON_KEYS = frozenset({
    # bookkeeping
    "transformers_version", "_name_or_path", "name_or_path", "_commit_hash", "dtype", "torch_dtype",
    "use_bfloat16", "torchscript", "tf_legacy_loss", "pruned_heads", "gradient_checkpointing",
    "finetuning_task", "tokenizer_class", "prefix", "task_specific_params",
    # output switches and implementation choices of the reference's forward
    "output_hidden_states", "output_attentions", "return_dict", "chunk_size_feed_forward",
    "attn_implementation", "_attn_implementation_internal", "experts_implementation",
    # encoder-decoder wiring and special tokens no family here reads
    "is_encoder_decoder", "is_decoder", "add_cross_attention", "cross_attention_hidden_size",
    "tie_encoder_decoder", "tie_word_embeddings", "sep_token_id", "decoder_start_token_id",
    "pad_token_id", "bos_token_id", "eos_token_id",
    # generation defaults older releases stored in config.json
    "max_length", "min_length", "do_sample", "early_stopping", "num_beams", "num_beam_groups",
    "diversity_penalty", "temperature", "top_k", "top_p", "typical_p", "repetition_penalty",
    "length_penalty", "no_repeat_ngram_size", "encoder_no_repeat_ngram_size", "bad_words_ids",
    "num_return_sequences", "output_scores", "return_dict_in_generate", "forced_bos_token_id",
    "forced_eos_token_id", "remove_invalid_values", "exponential_decay_length_penalty",
    "suppress_tokens", "begin_suppress_tokens", "use_cache",
})


class ConfigType(type):
    """Lets a configuration class take a whole ``config.json`` as keyword arguments:
    ``Data2VecAudioConfig(**json.load(open("config.json")))``.

    Beside the dataclass fields, the constructor accepts, for a file saved here or by the
    reference library:

    - ``model_type``: checked against the class's;
    - the class's ``derived_keys`` (values computed from other keys, such as audio's
      ``num_feat_extract_layers = len(conv_dim)``): checked against the computed value;
    - ``REFERENCE_COMMON_KEYS`` and the class's ``file_keys``: kept in ``extra``.

    Any other unknown keyword (a typo of a real key) raises TypeError as usual.
    """

    def __call__(cls, *args: Any, **values: Any):
        found_type = values.pop("model_type", None)
        if found_type is not None and cls.model_type and found_type != cls.model_type:
            raise ValueError(
                f"config has model_type {found_type!r} but {cls.__name__} reads {cls.model_type!r}: "
                "load it with the matching class"
            )
        derived = {key: values.pop(key) for key in list(values) if key in cls.derived_keys}
        fields = cls.field_names()
        kept = {
            key: values.pop(key)
            for key in list(values)
            if key not in fields and (key in REFERENCE_COMMON_KEYS or key in cls.file_keys)
        }
        if kept:
            values["extra"] = {**(values.get("extra") or {}), **kept}
        config = super().__call__(*args, **values)
        for key, value in derived.items():
            if value is not None and value != getattr(config, key):
                raise ValueError(
                    f"{key}={value!r} disagrees with the other keys: {key} is {cls.derived_keys[key]} = "
                    f"{getattr(config, key)!r}. Leave {key} out (it is computed) or make the keys agree"
                )
        return config


@dataclasses.dataclass(kw_only=True)
class Config(metaclass=ConfigType):
    """Base of the family configurations. Subclasses add their own fields and set ``model_type``."""

    model_type: ClassVar[str] = ""
    # Keys computed from other keys that config files hold: name -> how it is computed. The
    # constructor checks a given value; from_dict recomputes them, as the reference does.
    derived_keys: ClassVar[dict[str, str]] = {}
    # Keys that files of this family hold and that its models never read: kept in `extra`.
    file_keys: ClassVar[frozenset[str]] = frozenset()

    # Keys shared by every family, with the reference's defaults.
    id2label: dict[int, str] | None = None
    label2id: dict[str, int] | None = None
    problem_type: str | None = None
    architectures: list[str] | None = None
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
        """Build from a dict (a ``config.json``); ``overrides`` replace its keys.

        A ``num_labels`` override that differs from the number of labels the dict names starts
        a new label set: ``id2label``/``label2id`` become ``LABEL_0..LABEL_{n-1}``, as the
        reference does when a checkpoint is fine-tuned on other classes. ``num_labels`` with an
        ``id2label`` of another length in the same overrides stays an error. An ``id2label``
        override without ``label2id`` derives ``label2id`` from it."""
        values = copy.deepcopy(values)
        for key in cls.derived_keys:  # computed from the other keys (which overrides may change)
            values.pop(key, None)
        new_count = overrides.get("num_labels")
        named = values.get("id2label")
        if new_count is not None and "id2label" not in overrides and named is not None and len(named) != new_count:
            del values["id2label"]
            values.pop("label2id", None)
            values.pop("num_labels", None)
        if "id2label" in overrides and "label2id" not in overrides:
            values.pop("label2id", None)  # the names of the dict's labels: derived again from the new id2label
        values.update(overrides)
        known = cls.field_names() | set(cls.derived_keys) | {"model_type"}  # the constructor checks model_type
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
        return cls.from_dict(read_json(path), **overrides)

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


@dataclasses.dataclass(kw_only=True)
class TransformerConfig(Config):
    """Base of the families' configs: the keys of every transformer encoder, with the reference's
    defaults (a base-size model). Families add their own keys and may override a default."""

    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    initializer_range: float = 0.02
