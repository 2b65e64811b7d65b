"""Fine-tuning tasks of data2vec-audio: speech recognition (CTC), utterance classification,
frame classification and speaker x-vectors.

Data is a manifest (CSV / TSV / JSON lines) with a ``path`` column (audio files, relative paths
read from the manifest's folder) and the task's target column: ``text`` (speech recognition),
``label`` (audio classification; the speaker for speaker verification) or ``labels`` (frame
classification: one class name per model frame, separated by spaces).

What every audio task shares:

- Audio is decoded with ``training.data.read_audio``: channels averaged to mono, resampled to
  the feature extractor's ``sampling_rate``. A checkpoint without ``preprocessor_config.json``
  (e.g. a backbone from ``data2vec export-backbone``) gets a default feature extractor at the
  ``sampling_rate`` option (16 kHz unless set) that normalises each utterance and returns
  attention masks, as the official data2vec-audio checkpoints do; the option is ignored when
  the checkpoint has its own settings.
- ``max_seconds`` (default None: no limit): longer utterances are cropped to their first
  ``max_seconds`` seconds (for frame classification the frame labels are cropped with them).
  Speech recognition cannot crop a transcript with its audio, so it leaves longer utterances
  out instead, when the manifest is read, with a warning saying how many.
- A batch is padded to its longest utterance by the feature extractor, with an
  ``attention_mask`` when the feature extractor returns one (``return_attention_mask``).
- Evaluation runs the model in eval mode without gradients, in batches of the
  ``eval_batch_size`` option (else ``batch_size``, else 8), on the model's device.
- Errors in the data are ``DataError``s naming the manifest and its line.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import data, metrics
from .data import DataError
from .tasks import (
    Prepared,
    Task,
    accuracy_of,
    batch_outputs,
    eval_batch_size,
    load_model,
    location,
    register,
    saver,
)

AUDIO = "data2vec-audio"
DEFAULT_EVAL_BATCH_SIZE = 8
IGNORE_INDEX = -100  # padding of CTC labels


# ---------------------------------------------------------------------------- shared helpers


def load_feature_extractor(model_source: str | Path, options: dict[str, Any]) -> Any:
    """The checkpoint's ``Data2VecAudioFeatureExtractor`` (from ``preprocessor_config.json`` or
    ``processor_config.json``), or a default one at the ``sampling_rate`` option with a warning."""
    from ..audio.features import Data2VecAudioFeatureExtractor
    from ..auto import PREPROCESSOR_CONFIG_NAME, PROCESSOR_CONFIG_NAME, AutoProcessor, Data2VecAudioProcessor
    from ..core.preprocessing import PretrainedFiles

    files = PretrainedFiles(model_source)
    if files.find_optional(PREPROCESSOR_CONFIG_NAME) is None and files.find_optional(PROCESSOR_CONFIG_NAME) is None:
        sampling_rate = int(options.get("sampling_rate") or 16000)
        warnings.warn(
            f"{model_source} has no {PREPROCESSOR_CONFIG_NAME}: using a default feature extractor "
            f"({sampling_rate} Hz, per-utterance normalisation, attention masks); it is saved with the model",
            UserWarning,
            stacklevel=3,
        )
        return Data2VecAudioFeatureExtractor(sampling_rate=sampling_rate)
    processor = AutoProcessor.from_pretrained(model_source)
    return processor.feature_extractor if isinstance(processor, Data2VecAudioProcessor) else processor


def _read_manifest(path: str | Path, target: str) -> list[dict]:
    """The manifest's rows, each also naming the manifest (``_file``) for later errors."""
    return [{**example, "_file": str(path)} for example in data.read_audio_manifest(path, target)]


class _Audio:
    """Decodes, crops and batches the audio of examples for one model and feature extractor."""

    def __init__(self, feature_extractor: Any, config: Any, max_seconds: float | None) -> None:
        from ..audio.feature_encoder import minimum_input_length

        self.feature_extractor = feature_extractor
        self.config = config
        self.sampling_rate = int(feature_extractor.sampling_rate)
        self.max_samples = None if max_seconds is None else max(1, int(float(max_seconds) * self.sampling_rate))
        self.minimum_samples = minimum_input_length(config, include_adapter=config.add_adapter)
        if self.max_samples is not None and self.max_samples < self.minimum_samples:
            raise ValueError(
                f"max_seconds={max_seconds} keeps {self.max_samples} samples, fewer than the {self.minimum_samples} "
                f"the model needs for one frame; raise max_seconds"
            )
        # the duration of one frame of the conv stack (20 ms for the standard one at 16 kHz)
        self.frame_milliseconds = 1000 * math.prod(config.conv_stride) / self.sampling_rate

    def frames(self, samples: int) -> int:
        """Model frames of ``samples`` samples (the conv stack's arithmetic, and the adapter's
        when the model has one)."""
        from ..audio.feature_encoder import feature_encoder_output_length

        return int(feature_encoder_output_length(samples, self.config, include_adapter=self.config.add_adapter))

    def read(self, example: dict) -> np.ndarray:
        """The example's whole waveform (mono float32 at the feature extractor's rate)."""
        try:
            waveform = data.read_audio(example["path"], sampling_rate=self.sampling_rate)
        except DataError as error:
            raise DataError(f"{location(example)}: {error}") from None
        if len(waveform) < self.minimum_samples:
            raise DataError(
                f"{location(example)}: {example['path']} holds {len(waveform)} samples "
                f"({len(waveform) / self.sampling_rate:.3f} s), fewer than the {self.minimum_samples} the model "
                "needs for one frame; drop the row or use longer audio"
            )
        return waveform

    def crop(self, waveform: np.ndarray) -> np.ndarray:
        return waveform if self.max_samples is None else waveform[: self.max_samples]

    def batch(self, waveforms: Sequence[np.ndarray]) -> dict[str, torch.Tensor]:
        """``input_values`` (batch, samples) padded to the longest, + ``attention_mask`` when the
        feature extractor returns one."""
        features = self.feature_extractor(
            list(waveforms), sampling_rate=self.sampling_rate, padding=True, return_tensors="pt"
        )
        return dict(features)


def _class_ids(examples: Sequence[dict], key: str, label2id: dict[str, int], what: str) -> torch.Tensor:
    """(batch,) ids of each example's ``key`` value; an unknown value is a DataError naming the row."""
    ids = []
    for example in examples:
        value = str(example[key])
        if value not in label2id:
            raise DataError(
                f"{location(example)}: {what} {value!r} is not one of the {len(label2id)} {what}s of the training "
                f"data ({_shown(label2id)}); fix the row or add examples of it to the training data"
            )
        ids.append(label2id[value])
    return torch.tensor(ids, dtype=torch.long)


def _shown(names: Sequence[str] | dict[str, int], limit: int = 10) -> str:
    names = list(names)
    return ", ".join(names[:limit]) + (", ..." if len(names) > limit else "")


def _label2id(model: nn.Module) -> dict[str, int]:
    return {str(name): int(index) for name, index in model.config.label2id.items()}


def _labeled_start(
    task: Task, model_source: str | Path, labels: Sequence[str], options: dict[str, Any]
) -> tuple[nn.Module, dict[str, int], _Audio, int]:
    """What every task with a label set starts from: the model with a head for ``labels``, its
    ``label2id``, the audio batcher (whose ``feature_extractor`` is saved beside the model) and
    the evaluation batch size."""
    feature_extractor = load_feature_extractor(model_source, options)
    model = load_model(task, model_source, labels)
    audio = _Audio(feature_extractor, model.config, options.get("max_seconds"))
    return model, _label2id(model), audio, eval_batch_size(options, DEFAULT_EVAL_BATCH_SIZE)


# ---------------------------------------------------------------------------- speech recognition

SPECIAL_TOKENS = ("<pad>", "<s>", "</s>", "<unk>")
WORD_DELIMITER = "|"


def normalize_transcript(text: Any) -> str:
    """Runs of whitespace become one space, leading and trailing whitespace goes."""
    return " ".join(str(text).split())


def build_vocabulary(transcripts: Sequence[str]) -> dict[str, int]:
    """The CTC character vocabulary of ``transcripts``, in the wav2vec 2.0 / data2vec layout:
    ``<pad>`` 0 (the CTC blank), ``<s>`` 1, ``</s>`` 2, ``<unk>`` 3, ``|`` 4 (the word delimiter
    that spaces become), then every other character of the transcripts in sorted order. The
    characters are taken as written (no case folding)."""
    characters = sorted({character for text in transcripts for character in normalize_transcript(text)} - {" "})
    tokens = [*SPECIAL_TOKENS, WORD_DELIMITER, *(c for c in characters if c not in (*SPECIAL_TOKENS, WORD_DELIMITER))]
    return {token: index for index, token in enumerate(tokens)}


def case_folding(vocabulary: Sequence[str]) -> Callable[[str], str]:
    """How transcripts are matched to a vocabulary: lower-cased when its letters are all lower
    case (it has no upper-case letter), upper-cased when they are all upper case (as in the
    official checkpoints' vocabularies), left as written when it has both cases or no letters."""
    letters = [token for token in vocabulary if len(token) == 1 and token.lower() != token.upper()]
    has_upper = any(letter.isupper() for letter in letters)
    has_lower = any(letter.islower() for letter in letters)
    if has_lower and not has_upper:
        return str.lower
    if has_upper and not has_lower:
        return str.upper
    return lambda text: text


def _repeats(ids: Sequence[int]) -> int:
    return sum(1 for previous, current in itertools.pairwise(ids) if previous == current)


class SpeechRecognitionTask(Task):
    """``speech-recognition``: CTC on characters; manifest columns ``path`` and ``text``.

    Vocabulary: the checkpoint's ``vocab.json`` when the folder has one; otherwise one is built
    from the training transcripts (``build_vocabulary``) and the model gets a new ``lm_head``
    of that size (``vocab_size``, ``pad_token_id`` 0 = blank). Transcripts are reduced to
    single spaces and folded to the vocabulary's case (``case_folding``: lower-cased only when
    the vocabulary has no upper-case letter, upper-cased only when it has no lower-case one), so
    a built vocabulary keeps the transcripts' case; characters outside a loaded vocabulary
    become ``<unk>`` (with a warning). Labels are the character ids padded with -100. The
    feature extractor and the tokenizer are saved together (a ``Data2VecAudioProcessor``).

    Metrics: ``wer`` (chosen by, lower is better) and ``cer`` of greedy CTC decoding of each
    utterance's real frames, against the normalised, case-folded transcripts.
    """

    def read(self, path: str | Path, options: dict[str, Any]) -> list[dict]:
        examples = _read_manifest(path, "text")
        max_seconds = options.get("max_seconds")
        if max_seconds is None:
            return examples
        kept = [example for example in examples if not _longer_than(example["path"], float(max_seconds))]
        if len(kept) < len(examples):
            warnings.warn(
                f"{path}: {len(examples) - len(kept)} of {len(examples)} utterances are longer than max_seconds="
                f"{max_seconds} and are left out (a transcript cannot be cropped with its audio)",
                UserWarning,
                stacklevel=2,
            )
        if not kept:
            raise DataError(f"{path}: every utterance is longer than max_seconds={max_seconds}; raise max_seconds")
        return kept

    def prepare(self, model_source: str | Path, train_examples: list[dict], options: dict[str, Any]) -> Prepared:
        from ..audio.ctc_tokenizer import VOCAB_FILE, Data2VecAudioCTCTokenizer
        from ..auto import Data2VecAudioProcessor
        from ..core.preprocessing import PretrainedFiles

        feature_extractor = load_feature_extractor(model_source, options)
        if PretrainedFiles(model_source).find_optional(VOCAB_FILE) is not None:
            tokenizer = Data2VecAudioCTCTokenizer.from_pretrained(model_source)
            vocabulary = list(tokenizer.get_vocab())
            fold = case_folding(vocabulary)
            _warn_unknown_characters(tokenizer, [fold(normalize_transcript(e["text"])) for e in train_examples])
        else:
            tokenizer = Data2VecAudioCTCTokenizer(build_vocabulary([example["text"] for example in train_examples]))
            fold = case_folding(list(tokenizer.get_vocab()))
            warnings.warn(
                f"{model_source} has no {VOCAB_FILE}: built a vocabulary of {len(tokenizer)} tokens from the "
                "training transcripts; the model gets a new lm_head for it",
                UserWarning,
                stacklevel=2,
            )
        model = load_model(
            self,
            model_source,
            vocab_size=len(tokenizer),
            pad_token_id=tokenizer.pad_token_id,
            ignore_mismatched_sizes=True,
        )
        processor = Data2VecAudioProcessor(feature_extractor, tokenizer)
        audio = _Audio(feature_extractor, model.config, options.get("max_seconds"))
        batch_size = eval_batch_size(options, DEFAULT_EVAL_BATCH_SIZE)
        blank = tokenizer.pad_token_id

        def transcript(example: dict) -> str:
            return fold(normalize_transcript(example["text"]))

        def inputs(examples: list[dict]) -> tuple[dict[str, torch.Tensor], list[int]]:
            waveforms = [audio.crop(audio.read(example)) for example in examples]
            return audio.batch(waveforms), [audio.frames(len(waveform)) for waveform in waveforms]

        def collate(examples: list[dict]) -> dict[str, torch.Tensor]:
            batch, frames = inputs(examples)
            labels = tokenizer.encode_labels([transcript(example) for example in examples], return_tensors="pt")
            for example, row, available in zip(examples, labels, frames):
                ids = row[row != IGNORE_INDEX].tolist()
                needed = len(ids) + _repeats(ids)  # a repeated character needs a blank between
                if needed > available:
                    raise DataError(
                        f"{location(example)}: the transcript needs {needed} CTC frames but the audio gives "
                        f"{available}; check that the transcript belongs to the audio, or drop the row"
                    )
            batch["labels"] = labels
            return batch

        def evaluate(model: nn.Module, examples: list[dict]) -> dict[str, float]:
            references, hypotheses = [], []
            for chunk, (_, frames), output in batch_outputs(model, examples, batch_size, inputs):
                logits = output.logits.float().cpu()  # (batch, frames, vocab)
                rows = [row[: min(length, row.shape[0])] for row, length in zip(logits, frames)]
                for ids in metrics.ctc_greedy_decode(rows, blank):
                    hypotheses.append(tokenizer.decode(ids, group_tokens=False))
                references.extend(transcript(example) for example in chunk)
            return {
                "wer": metrics.word_error_rate(references, hypotheses),
                "cer": metrics.character_error_rate(references, hypotheses),
            }

        return Prepared(model, processor, collate, evaluate, saver(processor))


def _longer_than(path: Path, seconds: float) -> bool:
    """Whether the audio file lasts more than ``seconds`` (from its header; an unreadable header
    counts as not longer, the decoder reports the file later)."""
    import soundfile  # here: the text and image tasks need no audio library

    try:
        return soundfile.info(str(path)).duration > seconds
    except (soundfile.SoundFileError, RuntimeError):
        return False


def _warn_unknown_characters(tokenizer: Any, transcripts: Sequence[str]) -> None:
    vocabulary = tokenizer.get_vocab()
    unknown = sorted(
        {character for text in transcripts for character in text if character != " " and character not in vocabulary}
    )
    if unknown:
        warnings.warn(
            f"the training transcripts hold {len(unknown)} characters that the checkpoint's vocabulary lacks "
            f"({_shown([repr(c) for c in unknown], 20)}); they are trained as <unk>",
            UserWarning,
            stacklevel=3,
        )


# ---------------------------------------------------------------------------- utterance classification


class AudioClassificationTask(Task):
    """``audio-classification``: one class per utterance; manifest columns ``path`` and
    ``label``. The sorted labels of the training data become ``id2label`` (a new head when they
    differ from the checkpoint's). Metric: ``accuracy``."""

    def read(self, path: str | Path, options: dict[str, Any]) -> list[dict]:
        return _read_manifest(path, "label")

    def prepare(self, model_source: str | Path, train_examples: list[dict], options: dict[str, Any]) -> Prepared:
        labels = data.label_set(e["label"] for e in train_examples)
        model, label2id, audio, batch_size = _labeled_start(self, model_source, labels, options)

        def collate(examples: list[dict]) -> dict[str, torch.Tensor]:
            labels = _class_ids(examples, "label", label2id, "label")
            batch = audio.batch([audio.crop(audio.read(example)) for example in examples])
            batch["labels"] = labels
            return batch

        def evaluate(model: nn.Module, examples: list[dict]) -> dict[str, float]:
            return accuracy_of(model, examples, batch_size, collate)

        def check(examples: list[dict]) -> None:
            _class_ids(examples, "label", label2id, "label")

        return Prepared(model, audio.feature_extractor, collate, evaluate, saver(audio.feature_extractor), check)


# ---------------------------------------------------------------------------- frame classification


def frame_label_names(example: dict) -> list[str]:
    """The example's per-frame class names: a space-separated string (or a JSON list)."""
    value = example["labels"]
    names = [str(name) for name in value] if isinstance(value, (list, tuple)) else str(value).split()
    if not names:
        raise DataError(f"{location(example)}: the frame labels are empty; give one class name per frame")
    return names


def _check_frame_names(example: dict, names: Sequence[str], label2id: dict[str, int]) -> None:
    unknown = [name for name in names if name not in label2id]
    if unknown:
        raise DataError(
            f"{location(example)}: frame label {unknown[0]!r} is not one of the {len(label2id)} labels of the "
            f"training data ({_shown(label2id)}); fix the row or add examples of it to the training data"
        )


class AudioFrameClassificationTask(Task):
    """``audio-frame-classification``: a class per model frame (20 ms for the standard conv
    stack); manifest columns ``path`` and ``labels``, the frame classes separated by spaces.

    A row must name one class per frame of its audio: a count off by one frame (rounding of the
    audio's length) is fixed by dropping the last name or repeating it; more is a DataError that
    gives both counts. The sorted class names of the training data become ``id2label``.
    Labels are one-hot (batch, frames, num_labels), as the head takes them; the frames that
    padding adds to shorter utterances get all-zero rows, which the head's loss (that of the
    reference, with no ignore index) reads as class 0. Metric: ``accuracy`` over the real frames
    of every utterance (frame accuracy)."""

    def read(self, path: str | Path, options: dict[str, Any]) -> list[dict]:
        return _read_manifest(path, "labels")

    def prepare(self, model_source: str | Path, train_examples: list[dict], options: dict[str, Any]) -> Prepared:
        names = data.label_set(name for example in train_examples for name in frame_label_names(example))
        model, label2id, audio, batch_size = _labeled_start(self, model_source, names, options)
        num_labels = len(label2id)

        def frame_ids(example: dict, waveform: np.ndarray) -> list[int]:
            """One class id per frame of the whole waveform, checked against the frame count."""
            names = frame_label_names(example)
            frames = audio.frames(len(waveform))
            if abs(len(names) - frames) > 1:
                raise DataError(
                    f"{location(example)}: {len(names)} frame labels for {frames} model frames of "
                    f"{len(waveform) / audio.sampling_rate:.3f} s of audio; give one label per frame "
                    f"({audio.frame_milliseconds:g} ms each)"
                )
            names = names[:frames] + names[-1:] * (frames - len(names))
            _check_frame_names(example, names, label2id)
            return [label2id[name] for name in names]

        def encoded(examples: list[dict]) -> tuple[dict[str, torch.Tensor], list[list[int]]]:
            """The inputs and the class ids of each utterance's frames after cropping."""
            waveforms, targets = [], []
            for example in examples:
                waveform = audio.read(example)
                ids = frame_ids(example, waveform)
                waveform = audio.crop(waveform)
                waveforms.append(waveform)
                targets.append(ids[: audio.frames(len(waveform))])
            return audio.batch(waveforms), targets

        def collate(examples: list[dict]) -> dict[str, torch.Tensor]:
            batch, targets = encoded(examples)
            frames = audio.frames(batch["input_values"].shape[1])
            labels = torch.zeros(len(examples), frames, num_labels)  # (batch, frames, num_labels)
            for row, ids in enumerate(targets):
                labels[row, torch.arange(len(ids)), torch.tensor(ids, dtype=torch.long)] = 1.0
            batch["labels"] = labels
            return batch

        def evaluate(model: nn.Module, examples: list[dict]) -> dict[str, float]:
            predictions, labels = [], []
            for _, (_, targets), output in batch_outputs(model, examples, batch_size, encoded):
                predicted = output.logits.argmax(-1).cpu()  # (batch, frames)
                for row, ids in zip(predicted, targets):
                    predictions.append(row[: len(ids)])
                    labels.append(torch.tensor(ids, dtype=torch.long))
            return {"accuracy": metrics.accuracy(torch.cat(predictions), torch.cat(labels))}

        def check(examples: list[dict]) -> None:
            for example in examples:
                _check_frame_names(example, frame_label_names(example), label2id)

        return Prepared(model, audio.feature_extractor, collate, evaluate, saver(audio.feature_extractor), check)


# ---------------------------------------------------------------------------- speaker verification


def speaker_predictions(model: nn.Module, logits: torch.Tensor) -> torch.Tensor | None:
    """The training speaker each x-vector output is closest to: argmax of the cosine between the
    output (``logits``, batch x xvector_output_dim) and each speaker's AM-softmax weight; None for a
    model without that weight."""
    head = getattr(getattr(model, "module", model), "am_softmax", None)  # through a DDP wrapper
    if head is None:
        return None
    weight = head.weight.detach().float().cpu()  # (xvector_output_dim, num_speakers)
    return (F.normalize(logits.float(), dim=1) @ F.normalize(weight, dim=0)).argmax(-1)


def verification_trials(embeddings: torch.Tensor, speakers: Sequence[str]) -> tuple[torch.Tensor, list[bool]]:
    """Cosine similarity and same-speaker flag of every pair (i < j) of utterances."""
    normalized = F.normalize(embeddings.float(), dim=1)
    first, second = torch.triu_indices(len(speakers), len(speakers), offset=1)
    scores = (normalized[first] * normalized[second]).sum(-1)
    same = [speakers[i] == speakers[j] for i, j in zip(first.tolist(), second.tolist())]
    return scores, same


class SpeakerVerificationTask(Task):
    """``speaker-verification``: x-vector speaker embeddings; manifest columns ``path`` and
    ``label`` (the speaker). Training fits the x-vector head's AM-softmax classifier over the
    training speakers (their sorted names become ``id2label``).

    Evaluation: every pair of evaluation utterances is a trial scored by the cosine similarity
    of their embeddings; ``eer`` is the equal error rate of those trials (chosen by, lower is
    better; all pairs, so its cost grows with the square of the number of utterances). When
    every evaluation speaker is a training speaker, ``accuracy`` of the closest speaker (cosine
    to the AM-softmax weights) is reported too. Evaluation speakers need not be training
    speakers, but the set needs two speakers and one of them twice."""

    def read(self, path: str | Path, options: dict[str, Any]) -> list[dict]:
        return _read_manifest(path, "label")

    def prepare(self, model_source: str | Path, train_examples: list[dict], options: dict[str, Any]) -> Prepared:
        labels = data.label_set(e["label"] for e in train_examples)
        model, label2id, audio, batch_size = _labeled_start(self, model_source, labels, options)
        config = model.config
        # frames the TDNN layers remove; the statistics pooling needs two frames after them
        reduction = sum(dilation * (kernel - 1) for kernel, dilation in zip(config.tdnn_kernel, config.tdnn_dilation))
        minimum_frames = reduction + 2

        def inputs(examples: list[dict]) -> dict[str, torch.Tensor]:
            waveforms = []
            for example in examples:
                waveform = audio.crop(audio.read(example))
                frames = audio.frames(len(waveform))
                if frames < minimum_frames:
                    raise DataError(
                        f"{location(example)}: the audio gives {frames} frames, but the x-vector head needs at least "
                        f"{minimum_frames}; use longer audio (or a larger max_seconds) or drop the row"
                    )
                waveforms.append(waveform)
            return audio.batch(waveforms)

        def collate(examples: list[dict]) -> dict[str, torch.Tensor]:
            labels = _class_ids(examples, "label", label2id, "speaker")
            batch = inputs(examples)
            batch["labels"] = labels
            return batch

        def check(examples: list[dict]) -> None:
            speakers = [str(example["label"]) for example in examples]
            counts = {speaker: speakers.count(speaker) for speaker in set(speakers)}
            if len(counts) < 2 or max(counts.values()) < 2:
                where = examples[0].get("_file", "the evaluation data") if examples else "the evaluation data"
                raise DataError(
                    f"{where}: speaker verification needs utterances of at least two speakers, one of them at least "
                    f"twice (found {len(speakers)} utterances of {len(counts)} speakers); add utterances"
                )

        def evaluate(model: nn.Module, examples: list[dict]) -> dict[str, float]:
            check(examples)
            embeddings, logits = [], []
            for _, _, output in batch_outputs(model, examples, batch_size, inputs):
                embeddings.append(output.embeddings.float().cpu())
                logits.append(output.logits.float().cpu())
            speakers = [str(example["label"]) for example in examples]
            scores, same = verification_trials(torch.cat(embeddings), speakers)
            results = {"eer": metrics.equal_error_rate(scores, same)}
            predicted = speaker_predictions(model, torch.cat(logits))
            if predicted is not None and all(speaker in label2id for speaker in speakers):
                results["accuracy"] = metrics.accuracy(predicted, [label2id[speaker] for speaker in speakers])
            return results

        return Prepared(model, audio.feature_extractor, collate, evaluate, saver(audio.feature_extractor), check)


# ---------------------------------------------------------------------------- registry

register(SpeechRecognitionTask("speech-recognition", AUDIO, "AutoModelForCTC", "wer", False))
register(AudioClassificationTask("audio-classification", AUDIO, "AutoModelForAudioClassification", "accuracy", True))
register(
    AudioFrameClassificationTask(
        "audio-frame-classification", AUDIO, "AutoModelForAudioFrameClassification", "accuracy", True
    )
)
register(SpeakerVerificationTask("speaker-verification", AUDIO, "AutoModelForAudioXVector", "eer", False))

__all__ = [
    "AudioClassificationTask",
    "AudioFrameClassificationTask",
    "SpeakerVerificationTask",
    "SpeechRecognitionTask",
    "build_vocabulary",
    "case_folding",
    "frame_label_names",
    "load_feature_extractor",
    "normalize_transcript",
]
