"""Speech: does data2vec pretraining help a tiny speech model recognise spoken words from few labels?
(Measured in docs/pretraining-results.md: by +2.9 to +5.8 points in three runs, twice within its noise.)

Data, made offline by espeak-ng (``apt-get install espeak-ng``) and resampled to 16 kHz:

- pretraining (no labels): sentences of Python's help topics spoken by the training voices;
- the task: the ten digit words ("zero" .. "nine") spoken by many voices (an accent and a voice
  variant of espeak-ng), speeds and pitches, with white noise at 10-30 dB SNR. The test split is
  spoken by voices whose accent *and* variant never occur in pretraining, fine-tuning or
  validation; the labeled recordings of the training voices (one per word and voice) are split 2:1
  into fine-tuning and validation data. The whole model is fine-tuned, the conv feature encoder
  included (freezing it, as the published fine-tuning recipes do, cripples the scratch arm:
  18% against 40% on the validation split in a trial run).

1. Pretrain a 4-layer, 64-wide ``Data2VecAudioModel`` with data2vec (recipe
   ``recipes/pretrain-audio-tiny.yaml``: span masking, EMA teacher, top-K instance-normalised
   FFN targets) on the unlabeled sentences, with 3 seeds.
2. Compare ``Data2VecAudioForSequenceClassification`` fine-tuned from it against the same model
   from random initialisation with the protocol of ``demos/protocol.py``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ..audio.config import Data2VecAudioConfig
from ..audio.features import normalize_utterance
from ..audio.heads import Data2VecAudioForSequenceClassification
from ..audio.io import load_audio
from ..training.finetune import FinetuneSettings
from .protocol import Classifier, DemoTask, Grid, Split, demo_recipe

RECIPE = "pretrain-audio-tiny.yaml"
RATE = 16000
WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
TRAIN_ACCENTS = ["en-us", "en-gb", "en-gb-x-rp", "en-gb-scotland"]
TRAIN_VARIANTS = ["m1", "m3", "m5", "f1", "f3", "f5"]
TEST_ACCENTS = ["en-029", "en-gb-x-gbclan", "en-gb-x-gbcwmd"]
TEST_VARIANTS = ["m2", "m4", "f2", "f4"]
TRAIN_TAKES, TEST_TAKES = 1, 2  # recordings of each word by each voice (each its own speed and pitch)
CLIP_SECONDS = 1.0
SENTENCES = 600
PRETRAIN_STEPS = 1000
GRID = Grid(learning_rates=[5e-4, 1e-3], epochs=[20, 40])
FINETUNE = FinetuneSettings(batch_size=32, weight_decay=0.01)


def voices(accents: list[str], variants: list[str]) -> list[str]:
    return [f"{accent}+{variant}" for accent in accents for variant in variants]


def speak(text: str, voice: str, speed: int, pitch: int, rng: np.random.Generator, snr_db: tuple[float, float] | None) -> np.ndarray:
    """``text`` spoken by espeak-ng, at 16 kHz, with white noise at a random SNR in ``snr_db``."""
    if shutil.which("espeak-ng") is None:
        raise SystemExit("the speech demo speaks its data with espeak-ng: install it (apt-get install espeak-ng)")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "speech.wav"
        command = ["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(path), "--stdin"]
        done = subprocess.run(command, input=text, text=True, capture_output=True)
        if done.returncode != 0 or not path.is_file():
            raise RuntimeError(f"espeak-ng failed on {text!r} with voice {voice}: {done.stderr.strip()}")
        waveform = load_audio(path, sampling_rate=RATE)
    if snr_db is not None:
        power = float(np.mean(waveform**2)) + 1e-12
        snr = rng.uniform(*snr_db)
        waveform = waveform + rng.normal(0.0, np.sqrt(power / 10 ** (snr / 10)), size=waveform.shape).astype(np.float32)
    return waveform.astype(np.float32)


def sentences(count: int) -> list[str]:
    """Sentences of 30-160 characters from Python's help topics."""
    from pydoc_data.topics import topics

    text = " ".join(" ".join(value.split()) for value in topics.values())
    found = [s.strip() for s in re.split(r"(?<=[.!?])\s+", text) if 30 <= len(s.strip()) <= 160 and re.search("[a-z]", s)]
    return found[:count]


def fixed_length(waveform: np.ndarray, samples: int) -> np.ndarray:
    """The normalised clip, centred in ``samples`` zeros (or its centre, when longer)."""
    waveform = normalize_utterance(waveform)
    if len(waveform) >= samples:
        start = (len(waveform) - samples) // 2
        return waveform[start : start + samples]
    out = np.zeros(samples, dtype=np.float32)
    start = (samples - len(waveform)) // 2
    out[start : start + len(waveform)] = waveform
    return out


def make_data(folder: Path, seed: int = 0) -> dict:
    """Write the pretraining sentences as wav files below ``folder / 'sentences'`` and return the
    word recordings of the task (fixed-length arrays) with labels and split."""
    import soundfile

    rng = np.random.default_rng(seed)
    train_voices = voices(TRAIN_ACCENTS, TRAIN_VARIANTS)
    sentence_folder = folder / "sentences"
    shutil.rmtree(sentence_folder, ignore_errors=True)
    sentence_folder.mkdir(parents=True)
    for index, sentence in enumerate(sentences(SENTENCES)):
        voice = train_voices[index % len(train_voices)]
        waveform = speak(sentence, voice, int(rng.integers(130, 200)), int(rng.integers(30, 70)), rng, (10.0, 30.0))
        soundfile.write(sentence_folder / f"{index:04d}.wav", waveform, RATE)

    samples = int(CLIP_SECONDS * RATE)
    clips, labels, is_test = [], [], []
    for test, voice_list in ((False, train_voices), (True, voices(TEST_ACCENTS, TEST_VARIANTS))):
        for voice in voice_list:
            for label, word in enumerate(WORDS):
                for _ in range(TEST_TAKES if test else TRAIN_TAKES):
                    waveform = speak(word, voice, int(rng.integers(130, 200)), int(rng.integers(30, 70)), rng, (10.0, 30.0))
                    clips.append(fixed_length(waveform, samples))
                    labels.append(label)
                    is_test.append(test)
    is_test = np.asarray(is_test)
    labeled = rng.permutation(np.flatnonzero(~is_test))
    cut = len(labeled) * 2 // 3
    return {
        "clips": torch.from_numpy(np.stack(clips)),
        "labels": torch.tensor(labels),
        "split": {"train": labeled[:cut], "validation": labeled[cut:], "test": np.flatnonzero(is_test)},
        "sentences": sentence_folder,
    }


def task(out_dir: str | Path = "runs/audio-demo", pretrain_steps: int | None = None, recipe: str = RECIPE) -> DemoTask:
    """The spoken-digits task: its data made in ``out_dir / 'data'``, the recipe and the classifier."""
    began = time.time()
    data = make_data(Path(out_dir) / "data")
    split = data["split"]
    print(
        f"espeak-ng speech: {SENTENCES} sentences for pretraining (no labels); spoken digits: {len(split['train'])} "
        f"labeled for fine-tuning, {len(split['validation'])} for validation, {len(split['test'])} by held-out voices "
        f"for the test ({time.time() - began:.0f} s to make)"
    )
    pretraining = demo_recipe(recipe, pretrain_steps or PRETRAIN_STEPS)
    config = Data2VecAudioConfig(**pretraining.model, num_labels=len(WORDS), id2label=dict(enumerate(WORDS)))
    return DemoTask(
        recipe=pretraining,
        data=data["sentences"],
        splits={name: Split(data["clips"][index], data["labels"][index]) for name, index in split.items()},
        grid=GRID,
        settings=FINETUNE,
        classifier=Classifier(Data2VecAudioForSequenceClassification, config),
        input_name="input_values",
    )


def run(out_dir: str | Path = "runs/audio-demo", pretrain_seeds: int = 3, finetune_seeds: int = 3, pretrain_steps: int | None = None, workers: int | None = None) -> dict:
    started = time.time()
    return task(out_dir, pretrain_steps).compare(
        Path(out_dir), pretrain_seeds=pretrain_seeds, finetune_seeds=finetune_seeds, started=started, workers=workers
    )
