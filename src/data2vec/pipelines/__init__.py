"""Task pipelines: a checkpoint folder (or Hub id) in, answers out.

``data2vec.pipeline(task, model=folder)`` builds the pipeline of a task; the ``data2vec
<task>`` commands run the same pipelines on files. This module stays free of torch so that
the command line can list the tasks without loading the models' code; each task's class
lives in the module of its modality (``text``, ``audio``, ``vision``).
"""

from __future__ import annotations

import importlib
import os
from typing import Any

# task -> (module of its pipeline class, one line for `data2vec --help`)
TASKS: dict[str, tuple[str, str]] = {
    "fill-mask": ("text", "the most likely words for each <mask> in a text"),
    "text-classification": ("text", "labels (or a score) for texts and text pairs"),
    "token-classification": ("text", "a label per word, e.g. named entities (grouped into spans)"),
    "question-answering": ("text", "the answer span of a question in a context"),
    "text-generation": ("text", "continue a text with a causal language model"),
    "speech-recognition": ("audio", "transcripts of audio files (CTC), with word timestamps on request"),
    "audio-classification": ("audio", "labels for audio files"),
    "audio-frame-classification": ("audio", "a label per 20 ms frame of audio files, as time segments"),
    "speaker-verification": ("audio", "whether two recordings have the same speaker (x-vector cosine score)"),
    "image-classification": ("vision", "the top labels of images, with scores"),
    "semantic-segmentation": ("vision", "a class per pixel of images, saved as PNG label maps and overlays"),
}
# the reference library's names of the same tasks
ALIASES = {
    "automatic-speech-recognition": "speech-recognition",
    "image-segmentation": "semantic-segmentation",
    "sentiment-analysis": "text-classification",
    "ner": "token-classification",
}


def task_name(task: str) -> str:
    """The task's name here (an alias of the reference library resolved)."""
    name = ALIASES.get(task, task)
    if name not in TASKS:
        raise ValueError(f"unknown task {task!r}; the tasks are {', '.join(TASKS)}")
    return name


def pipeline_class(task: str) -> type:
    """The pipeline class of a task (its modality's module is imported on first use)."""
    name = task_name(task)
    module = importlib.import_module(f"{__name__}.{TASKS[name][0]}")
    return module.PIPELINES[name]


def pipeline(
    task: str,
    model: str | os.PathLike,
    *,
    device: Any = None,
    dtype: Any = None,
    batch_size: int = 1,
    progress: bool | None = None,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> Any:
    """The pipeline of ``task`` on a checkpoint folder or Hub repo id.

    ``device``: ``None`` picks cuda, then mps, then cpu. ``dtype``: float32 unless
    ``"bfloat16"`` (or ``"float16"`` on a GPU) is asked for. ``batch_size``: inputs per model
    call; inputs are sorted by length into batches and their results returned in input order.
    ``progress``: ``None`` shows a progress bar once a call runs longer than 2 seconds.

    ``pipe(one_input)`` returns that input's result, as the reference library's pipeline of
    the task returns it; ``pipe([inputs])`` a list of them.
    """
    return pipeline_class(task).from_pretrained(
        model,
        device=device,
        dtype=dtype,
        batch_size=batch_size,
        progress=progress,
        revision=revision,
        cache_dir=cache_dir,
    )
