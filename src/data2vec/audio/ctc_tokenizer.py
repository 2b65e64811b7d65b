"""Character vocabulary of the CTC heads: transcripts to label ids, CTC outputs to text.

The files are those of the official fine-tuned checkpoints on the Hub: `vocab.json`
(token -> id), and optionally `tokenizer_config.json` / `special_tokens_map.json`. The CTC
blank is the pad token (`<pad>`, id `config.pad_token_id`); words are separated by the
word delimiter token `|`.

Greedy CTC decoding (`decode`, `batch_decode`) collapses runs of the same id, then drops
blanks, so `H H <pad> E L <pad> L O` reads `HELLO`. Offsets are in frames of the CTC
output; `offsets_to_seconds` converts them to seconds.

Labels for `Data2VecAudioForCTC` come from `encode_labels(texts)`: the ids of each
transcript, padded with -100 (ignored by the loss).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch

from data2vec.core.preprocessing import Batch, Preprocessor, PretrainedFiles, read_json, write_json

VOCAB_FILE = "vocab.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
SPECIAL_TOKENS_MAP_FILE = "special_tokens_map.json"
ADDED_TOKENS_FILE = "added_tokens.json"  # older layout of tokens added after vocab.json
# The class name the Hub files carry; writing it lets other libraries load our files too.
TOKENIZER_CLASS = "Wav2Vec2CTCTokenizer"
# Label value ignored by the CTC loss (positions past the end of a transcript).
IGNORED_LABEL = -100

# With clean_up_tokenization_spaces, these spaces before punctuation / contractions go.
_CLEAN_UP_REPLACEMENTS = (
    (" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"),
    (" n't", "n't"), (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re"),
)  # fmt: skip

Offsets = list[dict[str, Any]]  # [{"char" or "word": str, "start_offset": int, "end_offset": int}]
TensorType = Literal["pt", "np"] | None


@dataclass
class CTCDecoding:
    """Text with the frame offsets of its characters and words (when asked for).

    From `decode`: `text` is a string and the offsets lists of dicts; from `batch_decode`:
    one entry per sequence. An offset dict holds `char` (or `word`), `start_offset` and
    `end_offset`: frames `[start, end)` of the CTC output.
    """

    text: str | list[str]
    char_offsets: Offsets | list[Offsets] | None = None
    word_offsets: Offsets | list[Offsets] | None = None


def offsets_to_seconds(offsets: Offsets, stride: int, sampling_rate: int = 16000) -> Offsets:
    """Frame offsets to times: adds `start_time` / `end_time` in seconds to copies of the dicts.

    `stride` is the number of input samples per output frame: the product of the
    feature encoder's `conv_stride` (320 for data2vec-audio), so one frame lasts
    `stride / sampling_rate` seconds (20 ms).
    """
    if stride <= 0 or sampling_rate <= 0:
        raise ValueError(f"stride and sampling_rate must be positive, got {stride} and {sampling_rate}")
    seconds_per_frame = stride / sampling_rate
    return [
        {
            **offset,
            "start_time": offset["start_offset"] * seconds_per_frame,
            "end_time": offset["end_offset"] * seconds_per_frame,
        }
        for offset in offsets
    ]


def _token_id_property(token_attribute: str) -> property:
    """A read-only `<token>_id`: the id of the token named by `token_attribute`, `None` when that
    token is unset or outside the vocabulary."""

    def token_id(self: Data2VecAudioCTCTokenizer) -> int | None:
        token = getattr(self, token_attribute)
        return None if token is None else self.token_to_id.get(token)

    return property(token_id, doc=f"The id of `{token_attribute}`, or None.")


class Data2VecAudioCTCTokenizer(Preprocessor):
    """Character-level tokenizer of the data2vec-audio CTC checkpoints.

    `vocab` is a dict `{token: id}` or the path of a `vocab.json`. A multilingual vocabulary
    (`{language: {token: id}}`) needs `target_lang`. With `do_lower_case=True`, transcripts
    are upper-cased before lookup (the vocabularies are upper case) and decoded text is
    lower-cased. `from_pretrained` reads `vocab.json` (+ optional `tokenizer_config.json`,
    `special_tokens_map.json`, `added_tokens.json`); keyword overrides are constructor
    arguments and win over the files (e.g. `target_lang="fra"`).
    """

    config_file: ClassVar[str] = TOKENIZER_CONFIG_FILE

    def __init__(
        self,
        vocab: Mapping[str, Any] | str | os.PathLike,
        *,
        bos_token: str | None = "<s>",
        eos_token: str | None = "</s>",
        unk_token: str | None = "<unk>",
        pad_token: str = "<pad>",
        word_delimiter_token: str | None = "|",
        replace_word_delimiter_char: str = " ",
        do_lower_case: bool = False,
        target_lang: str | None = None,
        clean_up_tokenization_spaces: bool = False,
        added_tokens: Mapping[str, int] | None = None,
        added_special_tokens: Sequence[str] = (),
    ) -> None:
        """`added_tokens` / `added_special_tokens`: tokens outside `vocab` (from a checkpoint's
        `added_tokens_decoder` or `added_tokens.json`) and which of them are special."""
        if not isinstance(vocab, Mapping):
            if not Path(vocab).is_file():
                raise FileNotFoundError(f"vocabulary file {str(vocab)!r} does not exist")
            vocab = read_json(vocab)
        self.vocab: dict[str, Any] = dict(vocab)  # as in vocab.json (nested when multilingual)
        self.target_lang = target_lang
        vocab_tokens = _select_language(self.vocab, target_lang)
        self.added_tokens = {
            token: int(token_id) for token, token_id in (added_tokens or {}).items() if token not in vocab_tokens
        }
        self.token_to_id: dict[str, int] = {**vocab_tokens, **self.added_tokens}
        self.id_to_token = {token_id: token for token, token_id in self.token_to_id.items()}
        self.added_special_tokens = tuple(added_special_tokens)

        self.bos_token, self.eos_token, self.unk_token, self.pad_token = bos_token, eos_token, unk_token, pad_token
        self.word_delimiter_token = word_delimiter_token
        self.replace_word_delimiter_char = replace_word_delimiter_char
        self.do_lower_case = do_lower_case
        self.clean_up_tokenization_spaces = clean_up_tokenization_spaces
        if pad_token not in self.token_to_id:
            raise ValueError(
                f"the pad token {pad_token!r} (the CTC blank) is not in the vocabulary; pass pad_token=..."
            )

        # Tokens longer than one character are matched whole in transcripts, the longest
        # first; whitespace around those of vocab.json is dropped, around added tokens kept.
        # Everything else is read character by character.
        multi_character = sorted((token for token in self.token_to_id if len(token) > 1), key=len, reverse=True)
        alternatives = [
            re.escape(token) if token in self.added_tokens else r"\s*" + re.escape(token) + r"\s*"
            for token in multi_character
        ]
        self._whole_token_pattern = re.compile("(" + "|".join(alternatives) + ")") if alternatives else None
        special = {bos_token, eos_token, unk_token, *self.added_special_tokens}
        self._skipped_when_skipping_special = frozenset(special - {None, word_delimiter_token, pad_token})

    # ------------------------------------------------------------------ vocabulary

    def __len__(self) -> int:
        return len(self.token_to_id)

    @property
    def vocab_size(self) -> int:
        return len(self.token_to_id)

    def get_vocab(self) -> dict[str, int]:
        return dict(self.token_to_id)

    @property
    def pad_token_id(self) -> int:
        return self.token_to_id[self.pad_token]

    unk_token_id = _token_id_property("unk_token")
    bos_token_id = _token_id_property("bos_token")
    eos_token_id = _token_id_property("eos_token")
    word_delimiter_token_id = _token_id_property("word_delimiter_token")

    def convert_tokens_to_ids(self, tokens: str | Sequence[str]) -> int | list[int]:
        if isinstance(tokens, str):
            return self._token_id(tokens)
        return [self._token_id(token) for token in tokens]

    def convert_ids_to_tokens(self, ids: int | Sequence[int]) -> str | list[str]:
        if isinstance(ids, (int, np.integer)):
            return self._token(int(ids))
        return [self._token(int(token_id)) for token_id in ids]

    def _token_id(self, token: str) -> int:
        token_id = self.token_to_id.get(token, self.unk_token_id)
        if token_id is None:
            raise ValueError(
                f"{token!r} is not in the vocabulary and the vocabulary has no unknown token to stand for it"
            )
        return token_id

    def _token(self, token_id: int) -> str:
        token = self.id_to_token.get(token_id, self.unk_token)
        if token is None:
            raise ValueError(f"id {token_id} is not in the vocabulary (ids 0..{len(self) - 1})")
        return token

    # ------------------------------------------------------------------ encoding

    def tokenize(self, text: str) -> list[str]:
        """Split a transcript into vocabulary tokens: one per character, spaces -> word delimiter."""
        if not isinstance(text, str):
            raise TypeError(f"a transcript must be a str, got {type(text).__name__}")
        pieces = self._whole_token_pattern.split(text) if self._whole_token_pattern else [text]
        tokens: list[str] = []
        for index, piece in enumerate(pieces):
            if index % 2 == 1:  # a whole multi-character token, maybe with whitespace around it
                tokens.append(piece if piece in self.token_to_id else piece.strip())
                continue
            if self.do_lower_case:
                piece = piece.upper()
            delimiter = self.word_delimiter_token
            tokens.extend(delimiter if character == " " and delimiter is not None else character for character in piece)
        return tokens

    def __call__(
        self,
        text: str | Sequence[str],
        padding: bool | Literal["longest", "max_length", "do_not_pad"] = False,
        max_length: int | None = None,
        truncation: bool = False,
        pad_to_multiple_of: int | None = None,
        return_attention_mask: bool = True,
        return_tensors: TensorType = None,
    ) -> Batch:
        """Transcript(s) to `input_ids` (+ `attention_mask`), padded on the right with the pad id.

        A single string gives flat lists (or a `(1, length)` tensor); a list gives one row
        per transcript. For CTC labels (padding = -100) use `encode_labels`.
        """
        single = isinstance(text, str)
        texts = [text] if single else list(text)
        if not texts:
            raise ValueError("no transcript given: pass a string or a non-empty list of strings")
        if return_tensors not in (None, "np", "pt"):
            raise ValueError(f"return_tensors must be None, 'np' or 'pt', got {return_tensors!r}")
        if truncation and max_length is None:
            raise ValueError("truncation=True needs max_length: pass the number of tokens to keep")

        rows = [self.convert_tokens_to_ids(self.tokenize(transcript)) for transcript in texts]
        if truncation:
            rows = [row[:max_length] for row in rows]
        target_length = _padded_length([len(row) for row in rows], padding, max_length, pad_to_multiple_of)
        ids = [row + [self.pad_token_id] * max(target_length - len(row), 0) for row in rows]
        mask = [[1] * len(row) + [0] * max(target_length - len(row), 0) for row in rows]

        batch = Batch({"input_ids": ids})
        if return_attention_mask:
            batch["attention_mask"] = mask
        if return_tensors is not None:  # (batch, tokens)
            batch.convert_to_tensors(return_tensors, dtype=np.int64, unit="tokens", remedy="pass padding=True")
        elif single:
            batch = Batch({key: value[0] for key, value in batch.items()})
        return batch

    def encode_labels(
        self, text: str | Sequence[str], return_tensors: Literal["pt", "np"] = "pt"
    ) -> torch.Tensor | np.ndarray:
        """CTC `labels` for `Data2VecAudioForCTC`: `(batch, max_tokens)` int64, padded with -100."""
        batch = self([text] if isinstance(text, str) else text, padding=True, return_tensors="np")
        labels = np.where(batch["attention_mask"] == 1, batch["input_ids"], IGNORED_LABEL)  # (batch, tokens)
        if return_tensors == "pt":
            return torch.from_numpy(labels)
        if return_tensors == "np":
            return labels
        raise ValueError(f"return_tensors must be 'pt' or 'np', got {return_tensors!r}")

    # ------------------------------------------------------------------ decoding

    def decode(
        self,
        token_ids: int | Sequence[int] | np.ndarray | torch.Tensor,
        skip_special_tokens: bool = False,
        group_tokens: bool = True,
        output_char_offsets: bool = False,
        output_word_offsets: bool = False,
        clean_up_tokenization_spaces: bool | None = None,
    ) -> str | CTCDecoding:
        """CTC output of one utterance to text.

        `token_ids`: ids `(frames,)` (list, numpy, torch) or float logits `(frames, vocab)`,
        decoded greedily (argmax). Runs of one id are collapsed (unless `group_tokens=False`),
        blanks dropped, the word delimiter becomes a space. `skip_special_tokens` also drops
        `<s>`, `</s>`, `<unk>`. With `output_char_offsets` / `output_word_offsets` returns a
        `CTCDecoding` whose offsets are frame indices of the input sequence.
        """
        ids = _as_id_list(token_ids)
        if clean_up_tokenization_spaces is None:
            clean_up_tokenization_spaces = self.clean_up_tokenization_spaces
        text, characters = self._decode_ids(ids, skip_special_tokens, group_tokens, clean_up_tokenization_spaces)
        if not (output_char_offsets or output_word_offsets):
            return text
        return CTCDecoding(
            text=text,
            char_offsets=characters if output_char_offsets else None,
            word_offsets=self._word_offsets(characters) if output_word_offsets else None,
        )

    def batch_decode(
        self,
        sequences: Sequence[Sequence[int]] | np.ndarray | torch.Tensor,
        skip_special_tokens: bool = False,
        group_tokens: bool = True,
        output_char_offsets: bool = False,
        output_word_offsets: bool = False,
        clean_up_tokenization_spaces: bool | None = None,
    ) -> list[str] | CTCDecoding:
        """`decode` for every row of `(batch, frames)` ids or `(batch, frames, vocab)` logits.

        Returns a list of strings, or one `CTCDecoding` holding lists when offsets are asked for.
        """
        if isinstance(sequences, torch.Tensor):
            sequences = sequences.detach().cpu()
            sequences = sequences.float().numpy() if sequences.is_floating_point() else sequences.numpy()
        if isinstance(sequences, np.ndarray):
            expected_rank = 3 if np.issubdtype(sequences.dtype, np.floating) else 2
            if sequences.ndim != expected_rank:
                raise ValueError(
                    f"batch_decode got an array of shape {sequences.shape}; expected ids (batch, frames) or "
                    "logits (batch, frames, vocab). For a single utterance use decode"
                )
        decoded = [
            self.decode(
                sequence,
                skip_special_tokens=skip_special_tokens,
                group_tokens=group_tokens,
                output_char_offsets=output_char_offsets,
                output_word_offsets=output_word_offsets,
                clean_up_tokenization_spaces=clean_up_tokenization_spaces,
            )
            for sequence in sequences
        ]
        if not (output_char_offsets or output_word_offsets):
            return decoded
        return CTCDecoding(
            text=[item.text for item in decoded],
            char_offsets=[item.char_offsets for item in decoded] if output_char_offsets else None,
            word_offsets=[item.word_offsets for item in decoded] if output_word_offsets else None,
        )

    def _decode_ids(
        self, ids: list[int], skip_special_tokens: bool, group_tokens: bool, clean_up: bool
    ) -> tuple[str, Offsets]:
        """Text, and the kept characters with their frame spans."""
        runs: list[tuple[str, int, int]] = []  # (token, first frame, frame after the last)
        for frame, token in enumerate(self.convert_ids_to_tokens(ids)):
            if group_tokens and runs and runs[-1][0] == token:
                runs[-1] = (token, runs[-1][1], frame + 1)
            else:
                runs.append((token, frame, frame + 1))

        characters: Offsets = []
        for token, start, end in runs:
            if token == self.pad_token:  # CTC blank
                continue
            if skip_special_tokens and token in self._skipped_when_skipping_special:
                continue
            character = self.replace_word_delimiter_char if token == self.word_delimiter_token else token
            if self.do_lower_case:
                character = character.lower()
            characters.append({"char": character, "start_offset": start, "end_offset": end})

        text = "".join(item["char"] for item in characters).strip()
        if clean_up:
            for before, after in _CLEAN_UP_REPLACEMENTS:
                text = text.replace(before, after)
        return text, characters

    def _word_offsets(self, characters: Offsets) -> Offsets:
        """Group consecutive non-delimiter characters into words."""
        words: Offsets = []
        in_word = False
        for item in characters:
            if item["char"] == self.replace_word_delimiter_char:
                in_word = False
            elif in_word:
                words[-1]["word"] += item["char"]
                words[-1]["end_offset"] = item["end_offset"]
            else:
                words.append(
                    {"word": item["char"], "start_offset": item["start_offset"], "end_offset": item["end_offset"]}
                )
                in_word = True
        return words

    # ------------------------------------------------------------------ files

    def _save_files(self, directory: Path) -> tuple[Path, ...]:
        """Write `vocab.json`, `tokenizer_config.json` and `special_tokens_map.json`."""
        named_tokens = {"bos_token": self.bos_token, "eos_token": self.eos_token, "unk_token": self.unk_token}
        special_tokens = {key: token for key, token in named_tokens.items() if token is not None}
        special_tokens["pad_token"] = self.pad_token
        config: dict[str, Any] = {
            **special_tokens,
            "word_delimiter_token": self.word_delimiter_token,
            "replace_word_delimiter_char": self.replace_word_delimiter_char,
            "do_lower_case": self.do_lower_case,
            "target_lang": self.target_lang,
            "clean_up_tokenization_spaces": self.clean_up_tokenization_spaces,
            "tokenizer_class": TOKENIZER_CLASS,
        }
        if self.added_tokens:
            config["added_tokens_decoder"] = {
                str(token_id): {
                    "content": token,
                    "special": token in self.added_special_tokens,
                    "lstrip": False,
                    "rstrip": False,
                    "normalized": False,
                    "single_word": False,
                }
                for token, token_id in sorted(self.added_tokens.items(), key=lambda item: item[1])
            }
        return (
            write_json(directory / VOCAB_FILE, self.vocab, sort_keys=True),
            write_json(directory / TOKENIZER_CONFIG_FILE, config),
            write_json(directory / SPECIAL_TOKENS_MAP_FILE, special_tokens),
        )

    @classmethod
    def _from_files(cls, files: PretrainedFiles, overrides: dict[str, Any]) -> Data2VecAudioCTCTokenizer:
        vocab = files.read_json(VOCAB_FILE)
        config = files.read_optional_json(TOKENIZER_CONFIG_FILE)
        # special_tokens_map.json takes precedence over tokenizer_config.json for the named tokens.
        special_tokens_map = files.read_optional_json(SPECIAL_TOKENS_MAP_FILE)
        config.update({key: value for key, value in special_tokens_map.items() if key.endswith("_token")})

        settings: dict[str, Any] = {}
        for key in ("bos_token", "eos_token", "unk_token", "pad_token", "word_delimiter_token"):
            if key in config:
                settings[key] = _token_content(config[key])
        for key in ("replace_word_delimiter_char", "do_lower_case", "target_lang", "clean_up_tokenization_spaces"):
            if key in config and config[key] is not None:
                settings[key] = config[key]

        vocab_tokens = _select_language(vocab, overrides.get("target_lang", settings.get("target_lang")))
        added_tokens = {token: int(token_id) for token, token_id in files.read_optional_json(ADDED_TOKENS_FILE).items()}
        added_special_tokens = []
        for token_id, entry in (config.get("added_tokens_decoder") or {}).items():
            token = _token_content(entry)
            if vocab_tokens.get(token) == int(token_id):
                continue  # a vocab.json token listed again
            added_tokens[token] = int(token_id)
            if isinstance(entry, dict) and entry.get("special"):
                added_special_tokens.append(token)
        settings.update(added_tokens=added_tokens, added_special_tokens=added_special_tokens)
        return cls(vocab, **{**settings, **overrides})


# ---------------------------------------------------------------------- helpers


def _select_language(vocab: Mapping[str, Any], target_lang: str | None) -> Mapping[str, int]:
    """The `{token: id}` table: the vocabulary itself, or one language of a nested one."""
    nested = bool(vocab) and all(isinstance(value, Mapping) for value in vocab.values())
    if target_lang is None:
        if nested:
            examples = ", ".join(sorted(vocab)[:5])
            raise ValueError(
                f"this vocabulary has one table per language; pass target_lang=... (one of {examples}, ...)"
            )
        return vocab
    if not nested:
        raise ValueError(f"target_lang={target_lang!r} given, but the vocabulary is not split by language")
    if target_lang not in vocab:
        raise ValueError(
            f"target_lang={target_lang!r} is not in the vocabulary; "
            f"it has {len(vocab)} languages, e.g. {sorted(vocab)[:5]}"
        )
    return vocab[target_lang]


def _token_content(value: Any) -> Any:
    """A token as written in tokenizer files: a string, or a dict with its `content`."""
    return value.get("content") if isinstance(value, dict) else value


def _padded_length(
    lengths: list[int], padding: Any, max_length: int | None, pad_to_multiple_of: int | None
) -> int:
    if padding is False or padding == "do_not_pad":
        return 0
    if padding is True or padding == "longest":
        target = max(lengths)
    elif padding == "max_length":
        if max_length is None:
            raise ValueError("padding='max_length' needs max_length: pass the number of tokens to pad to")
        target = max_length
    else:
        raise ValueError(f"padding must be True, False, 'longest', 'max_length' or 'do_not_pad', got {padding!r}")
    if pad_to_multiple_of:
        target = -(-target // pad_to_multiple_of) * pad_to_multiple_of
    return target


def _as_id_list(token_ids: Any) -> list[int]:
    """Ids of one utterance from an int, a list, numpy or torch; float logits `(frames, vocab)` -> argmax."""
    if isinstance(token_ids, (int, np.integer)):
        return [int(token_ids)]
    if isinstance(token_ids, torch.Tensor):
        token_ids = token_ids.detach().cpu()
        token_ids = token_ids.float().numpy() if token_ids.is_floating_point() else token_ids.numpy()
    array = np.asarray(token_ids)
    if array.size == 0:
        return []
    if np.issubdtype(array.dtype, np.floating):
        if array.ndim != 2:
            raise ValueError(
                f"decode got floating-point values of shape {array.shape}; pass integer token ids (frames,) "
                "or logits (frames, vocab). For a batch use batch_decode"
            )
        return array.argmax(axis=-1).tolist()  # (frames,)
    if not np.issubdtype(array.dtype, np.integer):
        raise TypeError(f"token ids must be integers, got dtype {array.dtype}")
    if array.ndim != 1:
        raise ValueError(f"decode got ids of shape {array.shape}; expected (frames,). For a batch use batch_decode")
    return array.tolist()
