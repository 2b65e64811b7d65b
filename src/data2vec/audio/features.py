"""Raw waveforms to model inputs: `input_values` (+ `attention_mask`).

data2vec-audio reads the raw 16 kHz mono waveform; the only preprocessing is to normalise
every utterance to zero mean and unit variance (over its real samples, never its padding)
and to pad a batch to a common length. The settings live in `preprocessor_config.json`,
the same file (and keys) as the official checkpoints on the Hub, whose
`feature_extractor_type` is `Wav2Vec2FeatureExtractor`.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from numbers import Real
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch

from data2vec.core.preprocessing import Batch, Preprocessor, PretrainedFiles, read_json, write_json

PREPROCESSOR_CONFIG_FILE = "preprocessor_config.json"
# The class name the Hub files carry; writing it lets other libraries load our files too.
FEATURE_EXTRACTOR_TYPE = "Wav2Vec2FeatureExtractor"
_ACCEPTED_FEATURE_EXTRACTOR_TYPES = (FEATURE_EXTRACTOR_TYPE, "Data2VecAudioFeatureExtractor")

# Added to the variance before the square root, so silence (variance 0) maps to zeros.
NORMALIZATION_EPSILON = 1e-7

PaddingArgument = bool | Literal["longest", "max_length", "do_not_pad"]
TensorType = Literal["pt", "np"] | None


# The batch type of every preprocessor; the name stays for code that imports it from here.
AudioBatch = Batch


def normalize_utterance(waveform: np.ndarray) -> np.ndarray:
    """Zero-mean unit-variance normalisation of one 1-D waveform; float32 out."""
    samples = waveform.astype(np.float64)
    normalized = (samples - samples.mean()) / np.sqrt(samples.var() + NORMALIZATION_EPSILON)
    return normalized.astype(np.float32)


@dataclass
class Data2VecAudioFeatureExtractor(Preprocessor):
    """Turns raw mono waveforms into `input_values` (+ `attention_mask`) for the audio models.

    The fields are the keys of `preprocessor_config.json`. Only `feature_size=1` exists for
    these models: every utterance is a 1-D waveform of samples. `from_pretrained` /
    `save_pretrained` (from `Preprocessor`) read and write that file; keyword overrides of
    `from_pretrained` must be fields (e.g. `return_attention_mask=False`).
    """

    config_file: ClassVar[str] = PREPROCESSOR_CONFIG_FILE

    feature_size: int = 1
    sampling_rate: int = 16000
    padding_value: float = 0.0
    do_normalize: bool = True
    return_attention_mask: bool = True
    padding_side: Literal["right", "left"] = "right"
    # Keys of a loaded preprocessor_config.json that are not fields (e.g. `processor_class`);
    # kept so that save_pretrained writes them back.
    extra_config: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.feature_size != 1:
            raise ValueError(
                f"feature_size={self.feature_size} is not supported: data2vec-audio reads raw mono "
                "waveforms, one value per sample (feature_size=1)"
            )
        if not isinstance(self.sampling_rate, int) or self.sampling_rate <= 0:
            raise ValueError(f"sampling_rate must be a positive integer (Hz), got {self.sampling_rate!r}")
        if self.padding_side not in ("right", "left"):
            raise ValueError(f"padding_side must be 'right' or 'left', got {self.padding_side!r}")

    # ------------------------------------------------------------------ call

    def __call__(
        self,
        raw_speech: np.ndarray | torch.Tensor | Sequence[float] | Sequence[np.ndarray | torch.Tensor | Sequence[float]],
        sampling_rate: int | None = None,
        padding: PaddingArgument = False,
        max_length: int | None = None,
        truncation: bool = False,
        pad_to_multiple_of: int | None = None,
        return_attention_mask: bool | None = None,
        return_tensors: TensorType = None,
    ) -> Batch:
        """Normalise and pad one waveform or a batch of them.

        `raw_speech`: one utterance (1-D numpy array / torch tensor / list of floats) or a
        batch (2-D array `(batch, samples)`, or a list of 1-D utterances of any lengths).
        `padding`: `False` (none), `True`/`"longest"` (to the longest utterance) or
        `"max_length"` (to `max_length`); `pad_to_multiple_of` rounds the padded length up.
        `truncation=True` cuts utterances longer than `max_length`.

        Returns a `Batch` with `input_values` (float32) and, unless disabled,
        `attention_mask` (int32, 1 on real samples). Always batched: with
        `return_tensors=None` each is a list of 1-D numpy arrays; with `"np"`/`"pt"` a
        `(batch, samples)` array/tensor, which needs equal lengths (use `padding`).
        """
        self._check_sampling_rate(sampling_rate)
        padding_strategy = _padding_strategy(padding, max_length)
        if truncation and max_length is None:
            raise ValueError("truncation=True needs max_length: pass the number of samples to keep")
        if pad_to_multiple_of is not None and pad_to_multiple_of <= 0:
            raise ValueError(f"pad_to_multiple_of must be a positive integer, got {pad_to_multiple_of}")
        if return_tensors not in (None, "np", "pt"):
            raise ValueError(f"return_tensors must be None, 'np' or 'pt', got {return_tensors!r}")
        if return_attention_mask is None:
            return_attention_mask = self.return_attention_mask

        utterances = _as_utterances(raw_speech)  # list of (samples,) float32

        if max_length is not None and pad_to_multiple_of is not None:
            max_length = _round_up(max_length, pad_to_multiple_of)
        if truncation:
            utterances = [utterance[:max_length] for utterance in utterances]
        if self.do_normalize:
            utterances = [normalize_utterance(utterance) for utterance in utterances]

        lengths = [len(utterance) for utterance in utterances]
        if padding_strategy == "longest":
            target_length = max(lengths)
            if pad_to_multiple_of is not None:
                target_length = _round_up(target_length, pad_to_multiple_of)
        elif padding_strategy == "max_length":
            target_length = max_length
        else:
            target_length = 0  # no padding

        input_values: list[np.ndarray] = []
        attention_mask: list[np.ndarray] = []
        for utterance, length in zip(utterances, lengths):
            missing = max(target_length - length, 0)
            real = (0, missing) if self.padding_side == "right" else (missing, 0)
            input_values.append(np.pad(utterance, real, constant_values=self.padding_value).astype(np.float32))
            attention_mask.append(np.pad(np.ones(length, dtype=np.int32), real))

        batch = Batch({"input_values": input_values})
        if return_attention_mask:
            batch["attention_mask"] = attention_mask
        if return_tensors is not None:  # (batch, samples)
            batch.convert_to_tensors(
                return_tensors,
                unit="samples",
                remedy="pass padding=True (or padding='max_length' with truncation=True)",
            )
        return batch

    def _check_sampling_rate(self, sampling_rate: int | None) -> None:
        if sampling_rate is None:
            warnings.warn(
                f"{type(self).__name__} was called without sampling_rate; it assumes "
                f"{self.sampling_rate} Hz audio. Pass sampling_rate=... so that audio at another "
                "rate is caught instead of silently giving wrong outputs.",
                UserWarning,
                stacklevel=3,
            )
            return
        if sampling_rate != self.sampling_rate:
            raise ValueError(
                f"expected {self.sampling_rate} Hz audio, got {sampling_rate} Hz: resample first, e.g. "
                f"data2vec.audio.io.load_audio(path, sampling_rate={self.sampling_rate}) or "
                f"soxr.resample(waveform, {sampling_rate}, {self.sampling_rate})"
            )

    # ------------------------------------------------------------------ files

    def to_dict(self) -> dict[str, Any]:
        """The contents of `preprocessor_config.json`."""
        values = {name: getattr(self, name) for name in self._field_names()}
        values = {**self.extra_config, **values, "feature_extractor_type": FEATURE_EXTRACTOR_TYPE}
        return dict(sorted(values.items()))

    def _save_files(self, directory: Path) -> Path:
        return write_json(directory / self.config_file, self.to_dict())

    @classmethod
    def _from_files(cls, files: PretrainedFiles, overrides: dict[str, Any]) -> Data2VecAudioFeatureExtractor:
        unknown = sorted(set(overrides) - cls._field_names())
        if unknown:
            raise TypeError(f"unknown feature extractor setting(s) {unknown}; known: {sorted(cls._field_names())}")
        path = files.find(cls.config_file)
        return cls.from_dict({**read_json(path), **overrides}, source=str(path))

    @classmethod
    def from_dict(cls, values: dict[str, Any], *, source: str = "the given dict") -> Data2VecAudioFeatureExtractor:
        extractor_type = values.get("feature_extractor_type")
        if extractor_type is not None and extractor_type not in _ACCEPTED_FEATURE_EXTRACTOR_TYPES:
            raise ValueError(
                f"{source} describes a {extractor_type}, not the raw-waveform extractor of data2vec-audio "
                f"(feature_extractor_type {FEATURE_EXTRACTOR_TYPE!r}); "
                "use the preprocessor of a data2vec-audio checkpoint"
            )
        field_names = cls._field_names()
        known = {key: value for key, value in values.items() if key in field_names}
        extra = {
            key: value for key, value in values.items() if key not in field_names | {"feature_extractor_type"}
        }
        return cls(**known, extra_config=extra)

    @classmethod
    def _field_names(cls) -> set[str]:
        """The settings: the keys of `preprocessor_config.json` this class reads."""
        return {f.name for f in dataclasses.fields(cls)} - {"extra_config"}


# ---------------------------------------------------------------------- helpers


def _round_up(length: int, multiple: int) -> int:
    return -(-length // multiple) * multiple


def _padding_strategy(padding: PaddingArgument, max_length: int | None) -> Literal["none", "longest", "max_length"]:
    if padding is False or padding == "do_not_pad":
        return "none"
    if padding is True or padding == "longest":
        return "longest"
    if padding == "max_length":
        if max_length is None:
            raise ValueError("padding='max_length' needs max_length: pass the number of samples to pad to")
        return "max_length"
    raise ValueError(f"padding must be True, False, 'longest', 'max_length' or 'do_not_pad', got {padding!r}")


def _to_numpy(value: Any, what: str) -> np.ndarray:
    """One waveform-like value to a float32 numpy array (any rank; checked by the caller)."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        if value.dtype in (torch.bfloat16, torch.float16):
            value = value.float()
        value = value.numpy()
    if isinstance(value, (str, bytes, os.PathLike)):
        raise TypeError(
            f"{what} is a {type(value).__name__}, not a waveform; to read an audio file use "
            "data2vec.audio.io.load_audio(path) and pass the array it returns"
        )
    array = np.asarray(value)
    if array.dtype == object or not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise TypeError(f"{what} must hold real numbers (float or int samples), got dtype {array.dtype}")
    return array.astype(np.float32)


def _check_waveform(waveform: np.ndarray, what: str) -> np.ndarray:
    if waveform.ndim != 1:
        raise ValueError(
            f"{what} has shape {waveform.shape}; each utterance must be a 1-D mono waveform (samples,). "
            "Mix multi-channel audio down to mono first (e.g. waveform.mean(axis=0))"
        )
    if waveform.size == 0:
        raise ValueError(f"{what} is empty (0 samples); drop it or pass audio with at least one sample")
    finite = np.isfinite(waveform)
    if not finite.all():
        raise ValueError(
            f"{what} contains NaN or infinite samples ({int((~finite).sum())} of {waveform.size}); "
            "fix the audio (e.g. np.nan_to_num) before extracting features"
        )
    return waveform


def _as_utterances(raw_speech: Any) -> list[np.ndarray]:
    """Normalise every accepted input layout to a list of 1-D float32 waveforms."""
    if isinstance(raw_speech, (np.ndarray, torch.Tensor)):
        array = _to_numpy(raw_speech, "raw_speech")
        if array.ndim == 1:
            return [_check_waveform(array, "the waveform")]
        if array.ndim == 2:
            batch_size, samples = array.shape
            if samples <= 2 < batch_size:
                raise ValueError(
                    f"raw_speech has shape {array.shape}, which looks like multi-channel audio laid out "
                    "(samples, channels); mix it to mono first (waveform.mean(axis=1)). A batch is (batch, samples)"
                )
            return [_check_waveform(row, f"utterance {index}") for index, row in enumerate(array)]
        raise ValueError(
            f"raw_speech has shape {array.shape}; expected a 1-D waveform (samples,) or a 2-D batch "
            "(batch, samples) of mono audio. Mix channels down to mono first"
        )
    if isinstance(raw_speech, (list, tuple)):
        if len(raw_speech) == 0:
            raise ValueError("raw_speech is empty: pass at least one waveform")
        if all(isinstance(sample, (Real, np.number)) for sample in raw_speech):
            return [_check_waveform(_to_numpy(raw_speech, "raw_speech"), "the waveform")]
        return [
            _check_waveform(_to_numpy(utterance, f"utterance {index}"), f"utterance {index}")
            for index, utterance in enumerate(raw_speech)
        ]
    if isinstance(raw_speech, (str, bytes, os.PathLike)):
        raise TypeError(
            f"raw_speech is a {type(raw_speech).__name__}, not a waveform; to read an audio file use "
            "data2vec.audio.io.load_audio(path) and pass the array it returns"
        )
    raise TypeError(
        "raw_speech must be a numpy array, a torch tensor or a list of them (or of floats), "
        f"got {type(raw_speech).__name__}"
    )
