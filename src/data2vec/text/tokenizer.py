"""The data2vec-text tokenizer: RoBERTa's byte-level BPE, run by the ``tokenizers`` library.

The pipeline every RoBERTa checkpoint was trained with:

    text --ByteLevel pre-tokenizer--> byte "words" (a space becomes the prefix "Ġ")
         --BPE merges-->              sub-word ids
         --RobertaProcessing-->       <s> A </s>    or    <s> A </s></s> B </s>

Decoding maps the byte symbols back to UTF-8. The files are those of the Hub repos:
``vocab.json`` + ``merges.txt``, and/or ``tokenizer.json``; ``tokenizer_config.json`` and
``special_tokens_map.json`` add the length limit, ``add_prefix_space`` and the special tokens.

Where this class and the reference library (transformers 5) differ, on purpose:

- ``<mask>`` strips the space on its left (``lstrip``), as RoBERTa's tokenizer always did,
  also for a folder of bare ``vocab.json`` + ``merges.txt`` (the reference forgets it there);
  a ``tokenizer.json`` or config that describes ``<mask>`` is followed as written.
- Truncating to a ``max_length`` shorter than the special tokens raises instead of silently
  returning the untruncated sequence.
- ``decode(..., clean_up_tokenization_spaces=True)`` cleans up as asked (the reference ignores
  the request for BPE tokenizers); the default, ``False``, is the reference's.
- An empty ``text_pair=""`` still makes a pair (``<s> A </s></s></s>``), alone as in a batch; the
  reference drops it when it is a single unbatched pair.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from tokenizers import AddedToken, Tokenizer, decoders, pre_tokenizers, processors
from tokenizers.models import BPE

from data2vec.core.preprocessing import Batch, Preprocessor, PretrainedFiles, write_json

VOCAB_FILE = "vocab.json"
MERGES_FILE = "merges.txt"
TOKENIZER_FILE = "tokenizer.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
SPECIAL_TOKENS_MAP_FILE = "special_tokens_map.json"

# What the reference library stores as model_max_length when a checkpoint names no limit.
NO_LENGTH_LIMIT = int(1e30)
# Any limit above this means "no limit" (the reference's threshold).
_LIMIT_MEANS_UNLIMITED = int(1e20)

# Named special tokens, in the order they are added to a vocabulary that lacks them.
SPECIAL_TOKEN_NAMES = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
DEFAULT_SPECIAL_TOKENS = {
    "bos_token": "<s>",
    "eos_token": "</s>",
    "unk_token": "<unk>",
    "sep_token": "</s>",
    "pad_token": "<pad>",
    "cls_token": "<s>",
    "mask_token": "<mask>",
}

# The first strategy is what True means, the last what False / None mean.
PADDING_STRATEGIES = ("longest", "max_length", "do_not_pad")
TRUNCATION_STRATEGIES = ("longest_first", "only_first", "only_second", "do_not_truncate")
TENSOR_TYPES = ("pt", "np")

# Classic detokenisation of "word ." -> "word." (used only when decode is asked to clean up).
_CLEAN_UP_REPLACEMENTS = (
    (" .", "."),
    (" ?", "?"),
    (" !", "!"),
    (" ,", ","),
    (" ' ", "'"),
    (" n't", "n't"),
    (" 'm", "'m"),
    (" 's", "'s"),
    (" 've", "'ve"),
    (" 're", "'re"),
)

TokenSpec = str | AddedToken


# The tokenizer's output, the batch type of every preprocessor: a dict of `input_ids`,
# `attention_mask`, ... (also attributes) that keeps the `tokenizers` encodings for
# `word_ids`, `sequence_ids` and `tokens`. The name stays for code that imports it from here.
BatchEncoding = Batch


def _special_token_property(name: str) -> property:
    """The string of the named special token (``bos_token`` ...)."""

    def content(self: Data2VecTextTokenizer) -> str:
        return self._special_tokens[name].content

    return property(content, doc=f"The {name} string.")


def _special_token_id_property(name: str) -> property:
    """The vocabulary id of the named special token."""

    def token_id(self: Data2VecTextTokenizer) -> int:
        return self._backend.token_to_id(self._special_tokens[name].content)

    return property(token_id, doc=f"The id of the {name}.")


class Data2VecTextTokenizer(Preprocessor):
    """RoBERTa byte-level BPE tokenizer.

    Build it from ``vocab_file`` + ``merges_file`` or from a ``tokenizer_file``
    (``tokenizer.json``), or with :meth:`from_pretrained` from a folder or Hub repo id.
    Special tokens may be strings or ``tokenizers.AddedToken`` (to choose ``lstrip`` etc.).
    ``add_prefix_space=True`` treats the first word like any other (a space before it);
    ``is_split_into_words`` encodes each word on its own, so it mostly wants that setting.
    ``added_tokens`` (id -> AddedToken, as a config's ``added_tokens_decoder``) registers
    further tokens and describes the flags of named special tokens given as strings.
    """

    config_file: ClassVar[str] = TOKENIZER_CONFIG_FILE
    model_input_names = ("input_ids", "attention_mask")
    padding_side = "right"
    truncation_side = "right"

    def __init__(
        self,
        vocab_file: str | os.PathLike | None = None,
        merges_file: str | os.PathLike | None = None,
        *,
        tokenizer_file: str | os.PathLike | None = None,
        bos_token: TokenSpec = "<s>",
        eos_token: TokenSpec = "</s>",
        sep_token: TokenSpec = "</s>",
        cls_token: TokenSpec = "<s>",
        unk_token: TokenSpec = "<unk>",
        pad_token: TokenSpec = "<pad>",
        mask_token: TokenSpec = "<mask>",
        add_prefix_space: bool = False,
        trim_offsets: bool = True,
        model_max_length: int = NO_LENGTH_LIMIT,
        clean_up_tokenization_spaces: bool = False,
        added_tokens: Mapping[int, AddedToken] | None = None,
    ):
        self._backend = _load_bpe_tokenizer(vocab_file, merges_file, tokenizer_file)
        self.add_prefix_space = bool(add_prefix_space)
        self.trim_offsets = bool(trim_offsets)
        self.model_max_length = int(model_max_length)
        self.clean_up_tokenization_spaces = bool(clean_up_tokenization_spaces)
        self._lock = threading.Lock()  # __call__ sets padding/truncation on the shared backend

        # Tokens described elsewhere (config, tokenizer.json): their lstrip/rstrip/... are kept.
        known_tokens = {token.content: token for token in self._backend.get_added_tokens_decoder().values()}
        extra_tokens = [_copy_token(added_tokens[index]) for index in sorted(added_tokens or {})]
        known_tokens.update({token.content: token for token in extra_tokens})

        given = (bos_token, eos_token, unk_token, sep_token, pad_token, cls_token, mask_token)  # as SPECIAL_TOKEN_NAMES
        self._special_tokens: dict[str, AddedToken] = {
            name: _special_token(spec, known_tokens, strip_left=name == "mask_token")
            for name, spec in zip(SPECIAL_TOKEN_NAMES, given)
        }

        # Register the extra tokens (in id order), then the named ones; a token the vocabulary
        # lacks gets the next free id, one already there keeps its id and takes the new flags.
        for token in extra_tokens:
            if token.special:
                self._backend.add_special_tokens([token])
            else:
                self._backend.add_tokens([token])
        self._backend.add_special_tokens(list(self._special_tokens.values()))

        self._backend.normalizer = None
        self._backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=self.add_prefix_space)
        self._backend.decoder = decoders.ByteLevel()
        self._backend.post_processor = processors.RobertaProcessing(
            (self.sep_token, self.sep_token_id),
            (self.cls_token, self.cls_token_id),
            trim_offsets=self.trim_offsets,
            add_prefix_space=self.add_prefix_space,
        )
        self._backend.no_padding()
        self._backend.no_truncation()

    def __getstate__(self) -> dict[str, Any]:  # picklable (DataLoader workers), the lock is not
        state = dict(self.__dict__)
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ loading and saving

    @classmethod
    def _from_files(cls, files: PretrainedFiles, overrides: dict[str, Any]) -> Data2VecTextTokenizer:
        """``tokenizer.json`` if present, else ``vocab.json`` + ``merges.txt``;
        ``tokenizer_config.json`` / ``special_tokens_map.json`` when present. ``overrides`` are
        constructor keyword arguments and win over the files."""
        tokenizer_file = files.find_optional(TOKENIZER_FILE)
        vocab_file = merges_file = None
        if tokenizer_file is None:
            vocab_file, merges_file = files.find_optional(VOCAB_FILE), files.find_optional(MERGES_FILE)
            if vocab_file is None or merges_file is None:
                found = {VOCAB_FILE: vocab_file, MERGES_FILE: merges_file}
                missing = [name for name, path in found.items() if path is None]
                raise FileNotFoundError(
                    f"no tokenizer files in {str(files.path_or_repo)!r}: expected {TOKENIZER_FILE}, or "
                    f"{VOCAB_FILE} + {MERGES_FILE} (missing: {', '.join(missing)})"
                )

        settings = _settings_from_files(
            files.read_optional_json(TOKENIZER_CONFIG_FILE), files.read_optional_json(SPECIAL_TOKENS_MAP_FILE)
        )
        settings.update(overrides)
        return cls(vocab_file, merges_file, tokenizer_file=tokenizer_file, **settings)

    def _save_files(self, directory: Path) -> tuple[Path, ...]:
        """Write ``tokenizer.json``, ``vocab.json``, ``merges.txt``, ``tokenizer_config.json`` and
        ``special_tokens_map.json``; returns their paths."""
        with self._lock:
            self._backend.no_padding()
            self._backend.no_truncation()
            self._backend.save(str(directory / TOKENIZER_FILE))
        self._backend.model.save(str(directory))  # vocab.json + merges.txt

        special_tokens_map = {name: _token_to_dict(token) for name, token in self._special_tokens.items()}
        added_tokens = sorted(self._backend.get_added_tokens_decoder().items())
        added_tokens_decoder = {str(index): _token_to_dict(token) for index, token in added_tokens}
        config = {
            "tokenizer_class": "RobertaTokenizer",  # the reference library's name for this tokenizer
            **{name: token.content for name, token in self._special_tokens.items()},
            "add_prefix_space": self.add_prefix_space,
            "trim_offsets": self.trim_offsets,
            "model_max_length": self.model_max_length,
            "clean_up_tokenization_spaces": self.clean_up_tokenization_spaces,
            "errors": "replace",
            "added_tokens_decoder": added_tokens_decoder,
        }
        return (
            directory / TOKENIZER_FILE,
            directory / VOCAB_FILE,
            directory / MERGES_FILE,
            write_json(directory / TOKENIZER_CONFIG_FILE, config),
            write_json(directory / SPECIAL_TOKENS_MAP_FILE, special_tokens_map),
        )

    # ------------------------------------------------------------------ vocabulary

    @property
    def vocab_size(self) -> int:
        """Size of the BPE vocabulary, without tokens added on top of it."""
        return self._backend.get_vocab_size(with_added_tokens=False)

    def __len__(self) -> int:
        """Size of the whole vocabulary, added tokens included."""
        return self._backend.get_vocab_size(with_added_tokens=True)

    def get_vocab(self) -> dict[str, int]:
        return self._backend.get_vocab(with_added_tokens=True)

    def convert_tokens_to_ids(self, tokens: str | Iterable[str]) -> int | list[int]:
        """Token string(s) to id(s); a token outside the vocabulary gives ``unk_token_id``."""
        if isinstance(tokens, str):
            return self._token_id_or_unknown(tokens)
        return [self._token_id_or_unknown(token) for token in tokens]

    def convert_ids_to_tokens(self, ids: int | Iterable[int], skip_special_tokens: bool = False) -> Any:
        """Id(s) to token string(s) (``None`` for an id outside the vocabulary)."""
        ids = _as_python_ids(ids)
        if isinstance(ids, int):
            return self._backend.id_to_token(ids)
        skipped = set(self.all_special_ids) if skip_special_tokens else set()
        return [self._backend.id_to_token(index) for index in ids if index not in skipped]

    def tokenize(self, text: str) -> list[str]:
        """The BPE tokens of ``text`` (byte symbols, e.g. ``"Ġworld"``), no special tokens added."""
        _check_text(text, "text")
        with self._lock:
            self._backend.no_padding()
            self._backend.no_truncation()
            return self._backend.encode(text, add_special_tokens=False).tokens

    def _token_id_or_unknown(self, token: str) -> int:
        index = self._backend.token_to_id(token)
        return self.unk_token_id if index is None else index

    # ------------------------------------------------------------------ special tokens

    bos_token = _special_token_property("bos_token")
    eos_token = _special_token_property("eos_token")
    unk_token = _special_token_property("unk_token")
    sep_token = _special_token_property("sep_token")
    pad_token = _special_token_property("pad_token")
    cls_token = _special_token_property("cls_token")
    mask_token = _special_token_property("mask_token")

    bos_token_id = _special_token_id_property("bos_token")
    eos_token_id = _special_token_id_property("eos_token")
    unk_token_id = _special_token_id_property("unk_token")
    sep_token_id = _special_token_id_property("sep_token")
    pad_token_id = _special_token_id_property("pad_token")
    cls_token_id = _special_token_id_property("cls_token")
    mask_token_id = _special_token_id_property("mask_token")

    @property
    def special_tokens_map(self) -> dict[str, str]:
        return {name: token.content for name, token in self._special_tokens.items()}

    @property
    def all_special_tokens(self) -> list[str]:
        return list(dict.fromkeys(token.content for token in self._special_tokens.values()))

    @property
    def all_special_ids(self) -> list[int]:
        return [self._backend.token_to_id(token) for token in self.all_special_tokens]

    # ------------------------------------------------------------------ encoding

    def __call__(
        self,
        text: str | Sequence[str] | Sequence[Sequence[str]],
        text_pair: str | Sequence[str] | Sequence[Sequence[str]] | None = None,
        *,
        add_special_tokens: bool = True,
        padding: bool | str = False,
        truncation: bool | str | None = None,
        max_length: int | None = None,
        pad_to_multiple_of: int | None = None,
        is_split_into_words: bool = False,
        return_tensors: str | None = None,
        return_attention_mask: bool = True,
        return_token_type_ids: bool = False,
        return_offsets_mapping: bool = False,
        return_special_tokens_mask: bool = False,
    ) -> Batch:
        """Encode one text (or pair) or a batch of them.

        ``padding``: ``False``/``"do_not_pad"``, ``True``/``"longest"`` (longest of the batch) or
        ``"max_length"``. ``truncation``: ``True``/``"longest_first"``, ``"only_first"``,
        ``"only_second"`` or ``False``/``"do_not_truncate"``; giving only ``max_length`` turns on
        ``"longest_first"``. Without ``max_length``, padding to and truncating at
        ``"max_length"`` use ``model_max_length`` (nothing happens when it is unlimited).
        One text gives flat lists; a batch gives lists of lists; ``return_tensors="pt"``/``"np"``
        gives ``(batch, tokens)`` tensors (``(batch, tokens, 2)`` for ``offset_mapping``).
        """
        examples, is_batched = _collect_examples(text, text_pair, is_split_into_words)
        padding_strategy, truncation_strategy, max_length = self._resolve_strategies(
            padding, truncation, max_length, pad_to_multiple_of
        )
        if return_tensors is not None and return_tensors not in TENSOR_TYPES:
            raise ValueError(f"return_tensors must be one of {TENSOR_TYPES} or None, got {return_tensors!r}")
        if truncation_strategy != "do_not_truncate" and add_special_tokens:
            has_pair = any(isinstance(example, tuple) for example in examples)
            needed = self._backend.num_special_tokens_to_add(has_pair)
            if max_length < needed:
                raise ValueError(
                    f"max_length={max_length} leaves no room for the {needed} special tokens of "
                    f"{'a pair' if has_pair else 'a sequence'}: pass max_length >= {needed}"
                )

        with self._lock:
            self._configure_backend(padding_strategy, truncation_strategy, max_length, pad_to_multiple_of)
            try:
                encodings = self._backend.encode_batch(
                    examples, add_special_tokens=add_special_tokens, is_pretokenized=is_split_into_words
                )
            except Exception as error:  # the Rust library raises a bare Exception
                if "Truncation error" not in str(error):
                    raise
                raise ValueError(
                    f"cannot truncate with truncation={truncation_strategy!r} to max_length={max_length}: {error}. "
                    "The sequence that strategy may shorten is missing or too short; use "
                    "truncation='longest_first' or a larger max_length."
                ) from None

        fields: dict[str, list[Any]] = {"input_ids": [encoding.ids for encoding in encodings]}
        if return_token_type_ids:
            fields["token_type_ids"] = [encoding.type_ids for encoding in encodings]
        if return_attention_mask:
            fields["attention_mask"] = [encoding.attention_mask for encoding in encodings]
        if return_special_tokens_mask:
            fields["special_tokens_mask"] = [encoding.special_tokens_mask for encoding in encodings]
        if return_offsets_mapping:
            fields["offset_mapping"] = [encoding.offsets for encoding in encodings]

        if return_tensors is not None:  # (batch, tokens), (batch, tokens, 2) for offset_mapping
            return Batch(fields, encodings).convert_to_tensors(
                return_tensors,
                dtype=np.int64,
                unit="tokens",
                remedy="pass padding=True (or padding='max_length' with max_length)",
            )
        if not is_batched:
            return Batch({key: value[0] for key, value in fields.items()}, encodings)
        return Batch(fields, encodings)

    def _resolve_strategies(
        self,
        padding: bool | str,
        truncation: bool | str | None,
        max_length: int | None,
        pad_to_multiple_of: int | None,
    ) -> tuple[str, str, int | None]:
        if max_length is not None and (type(max_length) is not int or max_length < 0):
            raise ValueError(f"max_length must be a non-negative int or None, got {max_length!r}")
        if pad_to_multiple_of is not None and (type(pad_to_multiple_of) is not int or pad_to_multiple_of <= 0):
            raise ValueError(f"pad_to_multiple_of must be a positive int or None, got {pad_to_multiple_of!r}")
        # Only max_length given: that means truncate to it.
        if max_length is not None and padding is False and truncation is None:
            truncation = True

        padding_strategy = _strategy("padding", padding, PADDING_STRATEGIES)
        if padding is True and max_length is not None and truncation in (None, False, "do_not_truncate"):
            warnings.warn(
                "max_length is ignored with padding=True and no truncation: pass padding='max_length' "
                "to pad to max_length, or truncation=True to truncate to it",
                stacklevel=3,
            )
        truncation_strategy = _strategy("truncation", truncation, TRUNCATION_STRATEGIES)

        if max_length is None:
            limited = self.model_max_length <= _LIMIT_MEANS_UNLIMITED
            if padding_strategy == "max_length":
                if limited:
                    max_length = self.model_max_length
                else:
                    warnings.warn(
                        "padding='max_length' without max_length, and this tokenizer has no model_max_length: "
                        "nothing is padded; pass max_length=...",
                        stacklevel=3,
                    )
                    padding_strategy = "do_not_pad"
            if truncation_strategy != "do_not_truncate":
                if limited:
                    max_length = self.model_max_length
                else:
                    truncation_strategy = "do_not_truncate"

        if (
            truncation_strategy != "do_not_truncate"
            and padding_strategy != "do_not_pad"
            and pad_to_multiple_of is not None
            and max_length is not None
            and max_length % pad_to_multiple_of != 0
        ):
            raise ValueError(
                f"truncation to max_length={max_length} and padding to a multiple of {pad_to_multiple_of} "
                "contradict each other: make max_length a multiple of pad_to_multiple_of"
            )
        return padding_strategy, truncation_strategy, max_length

    def _configure_backend(
        self, padding_strategy: str, truncation_strategy: str, max_length: int | None, pad_to_multiple_of: int | None
    ) -> None:
        if truncation_strategy == "do_not_truncate":
            self._backend.no_truncation()
        else:
            self._backend.enable_truncation(
                max_length, stride=0, strategy=truncation_strategy, direction=self.truncation_side
            )
        if padding_strategy == "do_not_pad":
            self._backend.no_padding()
        else:
            self._backend.enable_padding(
                direction=self.padding_side,
                pad_id=self.pad_token_id,
                pad_type_id=0,
                pad_token=self.pad_token,
                length=max_length if padding_strategy == "max_length" else None,
                pad_to_multiple_of=pad_to_multiple_of,
            )

    # ------------------------------------------------------------------ decoding

    def decode(
        self,
        token_ids: int | Sequence[int] | Any,
        skip_special_tokens: bool = False,
        clean_up_tokenization_spaces: bool | None = None,
    ) -> str:
        """Ids (list, 1-D numpy array or torch tensor, or one int) back to text."""
        ids = _as_python_ids(token_ids)
        if isinstance(ids, int):
            ids = [ids]
        if any(not isinstance(index, int) for index in ids):
            raise TypeError(
                "decode takes one sequence of ids (a list of int, or a 1-D array/tensor); "
                "use batch_decode for a batch"
            )
        text = self._backend.decode(ids, skip_special_tokens=skip_special_tokens)
        if clean_up_tokenization_spaces is None:
            clean_up_tokenization_spaces = False  # the reference never cleans up BPE output unasked
        if clean_up_tokenization_spaces:
            for spaced, joined in _CLEAN_UP_REPLACEMENTS:
                text = text.replace(spaced, joined)
        return text

    def batch_decode(
        self,
        sequences: Sequence[Sequence[int]] | Any,
        skip_special_tokens: bool = False,
        clean_up_tokenization_spaces: bool | None = None,
    ) -> list[str]:
        """Decode each sequence of a batch (list of lists, 2-D numpy array or torch tensor)."""
        sequences = _as_python_ids(sequences)
        if isinstance(sequences, int) or any(isinstance(item, int) for item in sequences):
            raise TypeError("batch_decode takes a batch of id sequences (2-D); use decode for one sequence")
        return [self.decode(ids, skip_special_tokens, clean_up_tokenization_spaces) for ids in sequences]

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(vocab_size={self.vocab_size}, model_max_length={self.model_max_length}, "
            f"add_prefix_space={self.add_prefix_space}, special_tokens={self.special_tokens_map})"
        )


# ---------------------------------------------------------------------- helpers


def _load_bpe_tokenizer(
    vocab_file: str | os.PathLike | None,
    merges_file: str | os.PathLike | None,
    tokenizer_file: str | os.PathLike | None,
) -> Tokenizer:
    """A ``tokenizers.Tokenizer`` holding the BPE model (and, from tokenizer.json, its added tokens)."""
    if tokenizer_file is not None:
        path = Path(tokenizer_file)
        if not path.is_file():
            raise FileNotFoundError(f"tokenizer_file {str(path)!r} does not exist")
        backend = Tokenizer.from_file(str(path))
        if not isinstance(backend.model, BPE):
            raise ValueError(
                f"{str(path)!r} holds a {type(backend.model).__name__} model; "
                "the data2vec-text tokenizer needs a byte-level BPE (RoBERTa) tokenizer.json"
            )
        return backend
    if vocab_file is None or merges_file is None:
        raise ValueError(
            "pass vocab_file and merges_file (vocab.json, merges.txt) or tokenizer_file (tokenizer.json), "
            "or use Data2VecTextTokenizer.from_pretrained(folder_or_repo_id)"
        )
    for name, file in (("vocab_file", vocab_file), ("merges_file", merges_file)):
        if not Path(file).is_file():
            raise FileNotFoundError(f"{name} {str(file)!r} does not exist")
    model = BPE.from_file(
        str(vocab_file),
        str(merges_file),
        dropout=None,
        continuing_subword_prefix="",
        end_of_word_suffix="",
        fuse_unk=False,
    )
    return Tokenizer(model)


def _copy_token(token: AddedToken) -> AddedToken:
    return AddedToken(**token.__getstate__())


def _special_token(spec: TokenSpec, known_tokens: Mapping[str, AddedToken], strip_left: bool) -> AddedToken:
    """The AddedToken for a named special token: as given, as the files describe it, or RoBERTa's
    default (not normalised; ``<mask>`` also swallows the space before it)."""
    if isinstance(spec, AddedToken):
        token = _copy_token(spec)
    elif isinstance(spec, str):
        if spec in known_tokens:
            token = _copy_token(known_tokens[spec])
        else:
            token = AddedToken(spec, lstrip=strip_left, rstrip=False, single_word=False, normalized=False)
    else:
        raise TypeError(f"a special token must be a str or tokenizers.AddedToken, got {type(spec).__name__}")
    token.special = True
    return token


def _token_to_dict(token: AddedToken) -> dict[str, Any]:
    state = token.__getstate__()
    return {key: state[key] for key in ("content", "lstrip", "normalized", "rstrip", "single_word", "special")}


def _token_from_file(value: Any) -> TokenSpec:
    """A special token as written in tokenizer_config.json / special_tokens_map.json."""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping) and isinstance(value.get("content"), str):
        flags = {key: bool(value[key]) for key in ("lstrip", "rstrip", "single_word", "normalized") if key in value}
        return AddedToken(value["content"], special=True, **{"normalized": False, **flags})
    raise ValueError(f"cannot read special token {value!r}: expected a string or a dict with 'content'")


def _settings_from_files(config: Mapping[str, Any], special_tokens_map: Mapping[str, Any]) -> dict[str, Any]:
    """Constructor arguments from tokenizer_config.json (wins) and special_tokens_map.json."""
    settings: dict[str, Any] = {}
    for name in SPECIAL_TOKEN_NAMES:
        value, described = config.get(name), special_tokens_map.get(name)
        same_token_with_flags = isinstance(described, Mapping) and described.get("content") == value
        if value is None or (isinstance(value, str) and same_token_with_flags):
            value = described
        if value is not None:
            settings[name] = _token_from_file(value)
    for key in ("add_prefix_space", "trim_offsets", "clean_up_tokenization_spaces"):
        if config.get(key) is not None:
            settings[key] = bool(config[key])
    if config.get("model_max_length") is not None:
        settings["model_max_length"] = int(config["model_max_length"])
    added = config.get("added_tokens_decoder")
    if added:
        tokens = {}
        for index, value in added.items():
            token = _token_from_file(value)
            token = token if isinstance(token, AddedToken) else AddedToken(token, normalized=False, special=True)
            token.special = bool(value.get("special", True)) if isinstance(value, Mapping) else True
            tokens[int(index)] = token
        settings["added_tokens"] = tokens
    return settings


def _strategy(name: str, value: bool | str | None, strategies: tuple[str, ...]) -> str:
    """A ``padding`` / ``truncation`` argument as a strategy name: ``True`` is the first of
    ``strategies``, ``False`` and ``None`` the last (none), a name stays."""
    if value is True:
        return strategies[0]
    if value is False or value is None:
        return strategies[-1]
    if value in strategies:
        return value
    raise ValueError(f"unknown {name} {value!r}: use True, False or one of {strategies}")


def _check_text(value: Any, name: str) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {type(value).__name__}")


def _check_words(value: Any, name: str) -> None:
    if not isinstance(value, (list, tuple)) or any(not isinstance(word, str) for word in value):
        raise TypeError(f"with is_split_into_words=True, {name} must be a list of str (the words), got {value!r:.80}")


def _collect_examples(
    text: Any, text_pair: Any, is_split_into_words: bool
) -> tuple[list[Any], bool]:
    """The inputs as a batch for ``encode_batch`` (a text, a word list, or a tuple pair of them),
    and whether the caller passed a batch."""
    check = _check_words if is_split_into_words else _check_text
    if is_split_into_words:
        is_batched = isinstance(text, (list, tuple)) and len(text) > 0 and isinstance(text[0], (list, tuple))
    else:
        is_batched = isinstance(text, (list, tuple))
    if not is_batched:
        check(text, "text")
        if text_pair is None:
            return [text], False
        check(text_pair, "text_pair")
        return [(text, text_pair)], False

    for index, item in enumerate(text):
        check(item, f"text[{index}]")
    if text_pair is None:
        return list(text), True
    if not isinstance(text_pair, (list, tuple)):
        raise TypeError(
            f"text is a batch, so text_pair must be a list of the same length, got {type(text_pair).__name__}"
        )
    if len(text_pair) != len(text):
        raise ValueError(
            f"text has {len(text)} items but text_pair has {len(text_pair)}: pass one second text per text"
        )
    for index, item in enumerate(text_pair):
        check(item, f"text_pair[{index}]")
    return list(zip(text, text_pair)), True


def _as_python_ids(ids: Any) -> Any:
    """Ids from a torch tensor / numpy array / list as Python ints (nested lists for 2-D)."""
    if hasattr(ids, "tolist"):  # torch.Tensor, numpy array and numpy scalars
        ids = ids.tolist()
    if isinstance(ids, bool):
        raise TypeError("token ids must be integers, got a bool")
    if isinstance(ids, int):
        return ids
    if isinstance(ids, (list, tuple)):
        return [_as_python_ids(item) for item in ids]
    raise TypeError(
        f"token ids must be an int, a list of int, a numpy array or a torch tensor, got {type(ids).__name__}"
    )
