"""The audio task pipelines: speech recognition (CTC), audio classification, frame
classification and speaker verification (x-vectors).

Every audio pipeline takes, for each input, the path of an audio file (any format and rate
that libsndfile reads; channels averaged, resampled to the feature extractor's rate), a 1-D
numpy waveform (taken to be at the feature extractor's rate) or a dict ``{"raw": waveform,
"sampling_rate": rate}`` (``"array"`` for ``"raw"``, as the ``datasets`` library names it;
resampled when the rate differs). Each waveform is normalised on its own by the checkpoint's
feature extractor (``preprocessor_config.json``); a batch is padded with an attention mask,
and the padding is kept out of the model's positional convolutions (``_padding_kept_out``), so
the frames of a waveform get the same outputs alone and in a batch of any other inputs.

Speech recognition can cut a long recording into overlapping chunks (``chunk_length_s``):
each chunk is run as one row of a batch, the frames near its cut edges (``stride_length_s``)
are dropped, and the remaining frames of all chunks, which tile the recording, are decoded
as one CTC sequence.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..audio.feature_encoder import feature_encoder_output_length, minimum_input_length
from ..audio.io import load_audio, resample
from .base import (
    AUDIO_SUFFIXES,
    FUNCTION_TO_APPLY,
    Option,
    Pipeline,
    check_score_function,
    check_top_k,
    class_scores,
    default_score_function,
    expand_files,
    pad,
)

# keys of a dict input: the waveform under one of WAVEFORM_KEYS, its rate, and the file it came
# from (the `datasets` library's audio dicts carry it; not read)
WAVEFORM_KEYS = ("raw", "array")
DICT_KEYS = frozenset({*WAVEFORM_KEYS, "sampling_rate", "path"})
TIMESTAMP_KINDS = ("word", "char")
DEFAULT_SPEAKER_THRESHOLD = 0.5


def _seconds(value: float) -> str:
    return f"{value:.2f}"


class AudioPipeline(Pipeline):
    """What the audio pipelines share: reading inputs to waveforms at the feature extractor's
    rate, normalising them, padding a batch with its attention mask, and the frame arithmetic
    of the model (real frames of a padded row, seconds per frame)."""

    modality = "audio"
    unit = "file"

    # ------------------------------------------------------------------ loading

    @classmethod
    def load_processor(cls, model: Any, **hub: Any) -> Any:
        """The checkpoint's feature extractor (``preprocessor_config.json``, or its section of
        ``processor_config.json``)."""
        import data2vec
        from data2vec.audio.features import Data2VecAudioFeatureExtractor
        from data2vec.auto import Data2VecAudioProcessor

        try:
            processor = data2vec.AutoProcessor.from_pretrained(model, **hub)
        except FileNotFoundError as error:
            raise FileNotFoundError(f"{error}: {cls.task} needs {_FEATURE_EXTRACTOR_HINT}") from None
        if isinstance(processor, Data2VecAudioProcessor):
            return processor.feature_extractor
        if not isinstance(processor, Data2VecAudioFeatureExtractor):  # a folder with only a CTC vocabulary
            raise FileNotFoundError(
                f"preprocessor_config.json not found in {str(model)!r}: {cls.task} needs {_FEATURE_EXTRACTOR_HINT}"
            )
        return processor

    @property
    def feature_extractor(self) -> Any:
        return self.processor

    @property
    def sampling_rate(self) -> int:
        return int(self.feature_extractor.sampling_rate)

    # ------------------------------------------------------------------ frame arithmetic

    @property
    def _adapted(self) -> bool:
        """Whether the head reads the frames of the backbone's adapter (strided convolutions)."""
        backbone = getattr(self.model, "backbone", None)
        return getattr(backbone, "adapter", None) is not None and getattr(self.model, "layer_weights", None) is None

    def frames(self, samples: int) -> int:
        """Output frames of ``samples`` real samples."""
        return int(feature_encoder_output_length(samples, self.model.config, include_adapter=self._adapted))

    @property
    def samples_per_frame(self) -> int:
        """Input samples per output frame: the product of the conv strides (and the adapter's)."""
        config = self.model.config
        adapter = config.adapter_stride**config.num_adapter_layers if self._adapted else 1
        return config.inputs_to_logits_ratio * adapter

    @property
    def minimum_samples(self) -> int:
        """The fewest samples that give one output frame."""
        return minimum_input_length(self.model.config, include_adapter=self._adapted)

    # ------------------------------------------------------------------ inputs

    def waveform(self, item: Any) -> np.ndarray:
        """The mono float32 waveform of an input at the feature extractor's rate."""
        rate = self.sampling_rate
        if isinstance(item, (str, os.PathLike)):
            return load_audio(item, sampling_rate=rate)
        if isinstance(item, dict):
            return _waveform_of_dict(item, rate)
        if isinstance(item, (np.ndarray, torch.Tensor)):
            return _as_waveform(item, "the waveform")
        raise TypeError(
            f"{self.task} got a {type(item).__name__}; pass the path of an audio file, a 1-D numpy waveform at "
            f"{rate} Hz, or a dict {{'raw': waveform, 'sampling_rate': rate}}"
        )

    def check_length(self, waveform: np.ndarray, item: Any) -> None:
        """A waveform too short for the model is an error naming the input."""
        if len(waveform) < self.minimum_samples:
            rate, minimum = self.sampling_rate, self.minimum_samples
            raise ValueError(
                f"{_name_of(item)} holds {len(waveform)} samples ({len(waveform) / rate:.4f} s at {rate} Hz), fewer "
                f"than the {minimum} ({minimum / rate:.4f} s) that the model needs; pass longer audio"
            )

    def piece(self, waveform: np.ndarray, **metadata: Any) -> dict[str, Any]:
        """One row of a batch: the normalised waveform (``input_values``, unbatched)."""
        features = self.feature_extractor(waveform, sampling_rate=self.sampling_rate)
        return {"input_values": torch.from_numpy(features["input_values"][0]), **metadata}

    def preprocess(self, item: Any, **options: Any) -> list[dict[str, Any]]:
        waveform = self.waveform(item)
        self.check_length(waveform, item)
        return [self.piece(waveform)]

    def length(self, piece: dict[str, Any]) -> int:
        return int(piece["input_values"].shape[0])

    def collate(self, pieces: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        padding = float(self.feature_extractor.padding_value)
        input_values, attention_mask = pad([piece["input_values"] for piece in pieces], padding)
        return {"input_values": input_values, "attention_mask": attention_mask}  # (batch, samples) each

    def forward(self, batch: dict[str, torch.Tensor], **options: Any) -> Any:
        # each recording on its own samples and frames: no work on padding, and no padding reaching
        # its last frames through the positional convolutions (as it does in a padded batch)
        return self.model(**batch, drop_padding=True)

    def frame_outputs(self, values: torch.Tensor, pieces: Sequence[dict[str, Any]]) -> list[torch.Tensor]:
        """Each row of (batch, frames, ...) outputs cut to its piece's real frames, float32 on the CPU."""
        return [row[: self.frames(self.length(piece))].float().cpu() for row, piece in zip(values, pieces)]

    # ------------------------------------------------------------------ the command line

    def export(self, name: str, result: Any, options: dict[str, Any]) -> Any:
        return _plain(result)


# ---------------------------------------------------------------------- speech recognition


class SpeechRecognitionPipeline(AudioPipeline):
    """Transcripts of a CTC model: ``{"text": ...}`` per input, as the reference library's
    automatic-speech-recognition pipeline gives for CTC models (greedy decoding, special tokens
    kept). ``return_timestamps="word"`` (or ``"char"``) adds ``"chunks"``: ``[{"text", "timestamp":
    (start, end)}]`` in seconds. ``chunk_length_s`` cuts long recordings into overlapping chunks."""

    task = "speech-recognition"
    auto_class = "AutoModelForCTC"
    options = (
        Option(
            "chunk_length_s", 0.0,
            "cut each recording into chunks of this many seconds, run as rows of a batch, then decoded as one "
            "sequence (0, the default: the whole recording at once; use e.g. 10 for long files)",
            type=float,
        ),
        Option(
            "stride_length_s", None,
            "seconds of context on each side of a chunk whose frames are dropped when chunks are joined "
            "(default: chunk_length_s / 6; in Python also a (left, right) pair)",
            type=float,
        ),
        Option(
            "return_timestamps", None,
            "add the start and end (seconds) of each word or character",
            type=str, choices=TIMESTAMP_KINDS,
        ),
    )  # fmt: skip

    @classmethod
    def load_processor(cls, model: Any, **hub: Any) -> Any:
        """The feature extractor and the CTC tokenizer: ``preprocessor_config.json`` and ``vocab.json``."""
        from data2vec.auto import Data2VecAudioProcessor

        try:
            return Data2VecAudioProcessor.from_pretrained(model, **hub)
        except FileNotFoundError as error:
            raise FileNotFoundError(
                f"{error}: speech recognition needs the CTC vocabulary (vocab.json) and {_FEATURE_EXTRACTOR_HINT}"
            ) from None

    @property
    def feature_extractor(self) -> Any:
        return self.processor.feature_extractor

    @property
    def tokenizer(self) -> Any:
        return self.processor.tokenizer

    def check_options(self, options: dict[str, Any]) -> dict[str, Any]:
        options = super().check_options(options)
        chunk = options["chunk_length_s"]
        if isinstance(chunk, bool) or not isinstance(chunk, (int, float)) or not chunk >= 0:
            raise ValueError(f"chunk_length_s must be a number of seconds >= 0 (0: no chunking), got {chunk!r}")
        stride = options["stride_length_s"]
        strides = stride if isinstance(stride, (tuple, list)) else (stride, stride)
        if stride is not None and (
            len(strides) != 2 or any(isinstance(s, bool) or not isinstance(s, (int, float)) or s < 0 for s in strides)
        ):
            raise ValueError(f"stride_length_s must be seconds >= 0, or a (left, right) pair of them, got {stride!r}")
        if options["return_timestamps"] not in (None, *TIMESTAMP_KINDS):
            raise ValueError(
                f"return_timestamps must be None, 'word' or 'char' for a CTC model, got {options['return_timestamps']!r}"
            )
        return options

    def preprocess(self, item: Any, **options: Any) -> list[dict[str, Any]]:
        waveform = self.waveform(item)
        self.check_length(waveform, item)
        bounds = self.chunk_bounds(len(waveform), options["chunk_length_s"], options["stride_length_s"])
        pieces, align = [], self.samples_per_frame
        for start, end, keep_start, keep_end in bounds:
            first = -(-(keep_start - start) // align)  # frames whose first sample lies in [keep_start, keep_end)
            last = -(-(keep_end - start) // align)
            pieces.append(self.piece(waveform[start:end], kept=(first, last)))
        return pieces

    def chunk_bounds(self, total: int, chunk_length_s: float, stride_length_s: Any) -> list[tuple[int, int, int, int]]:
        """(start, end, keep_start, keep_end) samples of each chunk of a ``total``-sample recording:
        the chunk runs over [start, end) and gives the frames that start in [keep_start, keep_end).

        Lengths are rounded to whole frames; chunks start ``chunk - left - right`` samples apart,
        so the kept spans tile the recording. A last chunk too short for the model starts earlier
        (its extra frames are not kept)."""
        if not chunk_length_s:
            return [(0, total, 0, total)]
        if stride_length_s is None:
            stride_length_s = chunk_length_s / 6
        left_s, right_s = stride_length_s if isinstance(stride_length_s, (tuple, list)) else (stride_length_s,) * 2
        align, rate = self.samples_per_frame, self.sampling_rate
        chunk, left, right = (round(seconds * rate / align) * align for seconds in (chunk_length_s, left_s, right_s))
        if chunk <= left + right:
            raise ValueError(
                f"chunk_length_s={chunk_length_s} must be longer than the strides on its two sides "
                f"({left_s} + {right_s} s, in frames of {align / rate * 1000:g} ms): raise it or lower stride_length_s"
            )
        if chunk < self.minimum_samples:
            raise ValueError(
                f"chunk_length_s={chunk_length_s} is shorter than the {self.minimum_samples / rate:.4f} s the model "
                "needs for one frame; raise it"
            )
        bounds = []
        start = 0
        while True:
            end = min(start + chunk, total)
            last = end >= total
            keep_start = start + left if start > 0 else 0
            keep_end = end if last else end - right
            if last and end - start < self.minimum_samples:
                start = max(0, (total - self.minimum_samples) // align * align)
            bounds.append((start, end, keep_start, keep_end))
            if last:
                return bounds
            start += chunk - left - right

    def unbatch(self, outputs: Any, pieces: Sequence[dict[str, Any]]) -> list[torch.Tensor]:
        return self.frame_outputs(outputs.logits, pieces)  # each (frames, vocab)

    def postprocess(self, item: Any, pieces: list[dict], outputs: list[torch.Tensor], **options: Any) -> dict:
        kept = [logits[piece["kept"][0] : piece["kept"][1]] for piece, logits in zip(pieces, outputs)]
        ids = torch.cat(kept).argmax(-1)  # (frames,) the recording's frames, each once
        kind = options["return_timestamps"]
        if kind is None:
            return {"text": self.tokenizer.decode(ids)}
        decoded = self.tokenizer.decode(ids, output_char_offsets=kind == "char", output_word_offsets=kind == "word")
        offsets = decoded.word_offsets if kind == "word" else decoded.char_offsets
        seconds = self.samples_per_frame / self.sampling_rate
        chunks = [
            {"text": offset[kind], "timestamp": (offset["start_offset"] * seconds, offset["end_offset"] * seconds)}
            for offset in offsets
        ]
        return {"text": decoded.text, "chunks": chunks}

    def describe(self, name: str, result: Any) -> str:
        lines = [f"{name}: {result['text']}"]
        for chunk in result.get("chunks", []):
            start, end = chunk["timestamp"]
            lines.append(f"  {_seconds(start)}-{_seconds(end)} s  {chunk['text']}")
        return "\n".join(lines)


# ---------------------------------------------------------------------- audio classification


class AudioClassificationPipeline(AudioPipeline):
    """The ``top_k`` labels of each recording: ``[{"score", "label"}, ...]``, best first, as the
    reference library's audio-classification pipeline gives them."""

    task = "audio-classification"
    auto_class = "AutoModelForAudioClassification"
    options = (
        Option(
            "top_k", 5, "how many labels to give, best first (default 5; at most the model's number of labels)",
            type=int,
        ),
        FUNCTION_TO_APPLY,
    )  # fmt: skip

    def check_options(self, options: dict[str, Any]) -> dict[str, Any]:
        options = super().check_options(options)
        check_top_k(options["top_k"])
        options["function_to_apply"] = check_score_function(options["function_to_apply"])
        return options

    def unbatch(self, outputs: Any, pieces: Sequence[dict[str, Any]]) -> list[torch.Tensor]:
        return list(outputs.logits.float().cpu())  # each (num_labels,)

    def postprocess(self, item: Any, pieces: list[dict], outputs: list[torch.Tensor], **options: Any) -> list[dict]:
        (logits,) = outputs
        # the reference's audio pipeline takes softmax for a model with one label too
        function = options["function_to_apply"] or default_score_function(self.model.config, one_label_sigmoid=False)
        scores = class_scores(logits, function)
        top_k = min(options["top_k"] or len(scores), len(scores))
        values, ids = scores.topk(top_k)
        id2label = self.model.config.id2label
        return [{"score": value, "label": id2label[index]} for value, index in zip(values.tolist(), ids.tolist())]

    def describe(self, name: str, result: Any) -> str:
        return f"{name}: " + ", ".join(f"{entry['label']} ({entry['score']:.3f})" for entry in result)


# ---------------------------------------------------------------------- frame classification


class AudioFrameClassificationPipeline(AudioPipeline):
    """A label per frame, given as time segments: ``{"segments": [{"label", "start", "end",
    "score"}]}`` per recording, each segment a run of frames with the same most likely label
    (seconds; ``score``: that label's mean softmax probability over the run). Fine-tuning trains
    one class per frame (cross entropy), so the labels of a frame are exclusive: softmax, argmax.
    ``return_frames=True`` adds ``"frames"``: the label of every frame."""

    task = "audio-frame-classification"
    auto_class = "AutoModelForAudioFrameClassification"
    options = (Option("return_frames", False, "also give the label of every frame"),)

    def unbatch(self, outputs: Any, pieces: Sequence[dict[str, Any]]) -> list[torch.Tensor]:
        return self.frame_outputs(outputs.logits, pieces)  # each (frames, num_labels)

    def postprocess(self, item: Any, pieces: list[dict], outputs: list[torch.Tensor], **options: Any) -> dict:
        (logits,) = outputs
        probabilities = logits.softmax(-1)  # (frames, num_labels)
        best = probabilities.argmax(-1)  # (frames,)
        id2label = self.model.config.id2label
        seconds = self.samples_per_frame / self.sampling_rate
        segments, start = [], 0
        for label_id, run in itertools.groupby(best.tolist()):
            end = start + len(list(run))
            score = probabilities[start:end, label_id].mean().item()
            segments.append(
                {"label": id2label[label_id], "start": start * seconds, "end": end * seconds, "score": score}
            )
            start = end
        result: dict[str, Any] = {"segments": segments}
        if options["return_frames"]:
            result["frames"] = [id2label[label_id] for label_id in best.tolist()]
        return result

    def describe(self, name: str, result: Any) -> str:
        lines = [f"{name}:"]
        for segment in result["segments"]:
            lines.append(
                f"  {_seconds(segment['start'])}-{_seconds(segment['end'])} s  {segment['label']} ({segment['score']:.3f})"
            )
        return "\n".join(lines)


# ---------------------------------------------------------------------- speaker verification


class SpeakerVerificationPipeline(AudioPipeline):
    """Speaker x-vectors and verification trials. One recording gives ``{"embedding": [floats]}``
    (the model's ``embeddings``); a tuple of two gives ``{"score", "same_speaker", "threshold"}``:
    the cosine similarity of their embeddings and whether it reaches ``threshold``."""

    task = "speaker-verification"
    auto_class = "AutoModelForAudioXVector"
    options = (
        Option(
            "threshold", DEFAULT_SPEAKER_THRESHOLD,
            "cosine score from which two recordings count as the same speaker (default 0.5, not calibrated: "
            "choose it on trials of your own, e.g. at the equal error rate of same/different speaker pairs)",
            type=float,
        ),
        Option(
            "reference", None,
            "an audio file of the claimed speaker: each INPUT is scored against it (without it, every pair of "
            "INPUTs is scored: n files give n(n-1)/2 trials)",
            type=str, cli_only=True,
        ),
    )  # fmt: skip

    def check_options(self, options: dict[str, Any]) -> dict[str, Any]:
        options = super().check_options(options)
        threshold = options["threshold"]
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not -1 <= threshold <= 1:
            raise ValueError(f"threshold must be a cosine similarity in [-1, 1], got {threshold!r}")
        return options

    @property
    def minimum_samples(self) -> int:
        """The x-vector head's TDNN layers remove frames; its statistics pooling needs two after them."""
        config = self.model.config
        removed = sum(dilation * (kernel - 1) for kernel, dilation in zip(config.tdnn_kernel, config.tdnn_dilation))
        return minimum_input_length(config, frames=removed + 2)

    @staticmethod
    def recordings(item: Any) -> tuple[Any, ...]:
        """The recordings of one input: one, or the two of a trial."""
        if not isinstance(item, tuple):
            return (item,)
        if len(item) != 2:
            raise ValueError(f"a speaker verification trial is a tuple of two recordings, got a tuple of {len(item)}")
        return item

    def preprocess(self, item: Any, **options: Any) -> list[dict[str, Any]]:
        pieces = []
        for audio in self.recordings(item):
            waveform = self.waveform(audio)
            self.check_length(waveform, audio)
            pieces.append(self.piece(waveform))
        return pieces

    def _run_window(self, items: Sequence[Any], options: dict[str, Any]) -> list[Any]:
        """Each distinct recording of the window (a file path, or one and the same object) is
        read and embedded once: trials that share one (``--reference``, every pair of n files)
        reuse its embedding instead of computing it per trial."""
        keys_of, distinct = [], {}
        for item in items:
            keys = []
            for audio in self.recordings(item):
                key = ("file", os.fspath(audio)) if isinstance(audio, (str, os.PathLike)) else ("object", id(audio))
                distinct.setdefault(key, audio)
                keys.append(key)
            keys_of.append(keys)
        embedded = super()._run_window(list(distinct.values()), options)
        embedding_of = {key: torch.tensor(result["embedding"]) for key, result in zip(distinct, embedded)}
        return [
            self.postprocess(item, [], [embedding_of[key] for key in keys], **options)
            for item, keys in zip(items, keys_of)
        ]

    def unbatch(self, outputs: Any, pieces: Sequence[dict[str, Any]]) -> list[torch.Tensor]:
        return list(outputs.embeddings.float().cpu())  # each (xvector_output_dim,)

    def postprocess(self, item: Any, pieces: list[dict], outputs: list[torch.Tensor], **options: Any) -> dict:
        if len(outputs) == 1:
            return {"embedding": outputs[0].tolist()}
        score = F.cosine_similarity(outputs[0].double(), outputs[1].double(), dim=0).item()
        threshold = options["threshold"]
        return {"score": score, "same_speaker": score >= threshold, "threshold": threshold}

    @classmethod
    def read_inputs(cls, arguments: Sequence[str], options: dict[str, Any]) -> list[tuple[str, Any]]:
        """Trials: each INPUT file with ``--reference``, else every pair of INPUT files (in order)."""
        files = [str(path) for path in expand_files(arguments, AUDIO_SUFFIXES, "audio")]
        reference = options.get("reference")
        if reference is not None:
            if not Path(reference).is_file():
                raise FileNotFoundError(f"reference audio file {reference!r} does not exist")
            return [(f"{file} vs {reference}", (file, reference)) for file in files]
        if len(files) < 2:
            raise ValueError(
                "speaker-verification compares recordings: give two or more INPUT files (every pair is scored) "
                "or --reference FILE (each INPUT is scored against it)"
            )
        return [(f"{first} vs {second}", (first, second)) for first, second in itertools.combinations(files, 2)]

    def describe(self, name: str, result: Any) -> str:
        if "embedding" in result:
            return f"{name}: embedding of {len(result['embedding'])} values"
        verdict = "same speaker" if result["same_speaker"] else "different speakers"
        relation = ">=" if result["same_speaker"] else "<"
        return f"{name}: {verdict} (score {result['score']:.3f} {relation} threshold {result['threshold']:g})"


# ---------------------------------------------------------------------- helpers

_FEATURE_EXTRACTOR_HINT = (
    "the feature extractor settings (preprocessor_config.json) beside the model; a folder written by "
    "`data2vec finetune` holds them"
)


def _name_of(item: Any) -> str:
    if isinstance(item, (str, os.PathLike)):
        return f"audio file {str(item)!r}"
    return "the audio dict" if isinstance(item, dict) else "the waveform"


def _as_waveform(values: Any, what: str) -> np.ndarray:
    """A 1-D float32 numpy waveform (the feature extractor checks its values)."""
    if isinstance(values, torch.Tensor):
        values = values.detach().float().cpu().numpy()
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(
            f"{what} has shape {array.shape}; pass a 1-D mono waveform (samples,) (mix channels down first, "
            "e.g. waveform.mean(axis=0)) or the audio file's path"
        )
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise TypeError(f"{what} must hold numbers, got dtype {array.dtype}")
    return array.astype(np.float32)


def _waveform_of_dict(item: dict, rate: int) -> np.ndarray:
    """The waveform of ``{"raw" or "array": waveform, "sampling_rate": rate}``, resampled to ``rate``."""
    unknown = sorted(set(item) - DICT_KEYS)
    if unknown:
        raise TypeError(
            f"an audio dict has keys 'raw' (or 'array'), 'sampling_rate' and optionally 'path'; got {unknown} too"
        )
    key = next((key for key in WAVEFORM_KEYS if key in item), None)
    if key is None or "sampling_rate" not in item:
        raise ValueError(
            "an audio dict needs the waveform under 'raw' (or 'array') and its rate under 'sampling_rate', e.g. "
            "{'raw': waveform, 'sampling_rate': 44100}"
        )
    source_rate = item["sampling_rate"]
    if isinstance(source_rate, bool) or not isinstance(source_rate, (int, np.integer)) or source_rate <= 0:
        raise ValueError(f"the audio dict's sampling_rate must be a positive integer (Hz), got {source_rate!r}")
    waveform = _as_waveform(item[key], f"the audio dict's {key!r}")
    return resample(waveform, int(source_rate), rate)


def _plain(value: Any) -> Any:
    """A result with tuples as lists and numpy numbers as Python numbers (JSON-ready)."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


PIPELINES = {
    cls.task: cls
    for cls in (
        SpeechRecognitionPipeline,
        AudioClassificationPipeline,
        AudioFrameClassificationPipeline,
        SpeakerVerificationPipeline,
    )
}

__all__ = [
    "AudioClassificationPipeline",
    "AudioFrameClassificationPipeline",
    "AudioPipeline",
    "SpeakerVerificationPipeline",
    "SpeechRecognitionPipeline",
]
