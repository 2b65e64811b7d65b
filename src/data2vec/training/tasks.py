"""Fine-tuning tasks: one ``Task`` per task name of ``data2vec finetune``.

A task knows which Auto class builds its model, how it reads a user's data file into plain
dict examples, and (in ``prepare``) how examples become model inputs and how its metric is
computed. The modality modules (``tasks_text``, ``tasks_audio``, ``tasks_vision``) define
subclasses of ``Task`` that override ``read`` and ``prepare`` and ``register`` one instance per
task name; importing this module imports them, so ``TASKS`` holds every task.

The helpers below are what every modality's ``prepare`` shares: loading a model whose head
fits the training labels (``load_model``), writing the model with its preprocessor
(``saver``), naming an example's place in its file for error messages (``location``) and
evaluating:

- ``eval_batch_size``: the evaluation batch size of the options (``eval_batch_size``, else
  ``batch_size``, else the modality's default);
- ``batch_outputs``: the model's outputs for consecutive batches, in eval mode without
  gradients, on the model's device (built on ``in_batches``, ``evaluation_mode``,
  ``model_device`` and ``to_device``);
- ``without_labels``: a collate whose batch leaves the labels out of the model's inputs;
- ``accuracy_of``: the classification accuracy of the logits' argmax.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import metrics
from .loop import padding_free


@dataclasses.dataclass
class Prepared:
    """A task made ready for one model and one training set."""

    model: nn.Module
    processor: Any  # saved beside the model
    collate: Callable[[list[dict]], dict[str, torch.Tensor]]  # examples -> model inputs incl. labels
    evaluate: Callable[[nn.Module, list[dict]], dict[str, float]]  # the task metric(s) on examples
    save: Callable[[nn.Module, Path], None]  # model.save_pretrained + processor.save_pretrained
    # Raises DataError (naming the file and line) for examples the model cannot be scored on,
    # e.g. a label that the training data lacks; call it on the evaluation data before training.
    check: Callable[[list[dict]], None] | None = None


@dataclasses.dataclass
class Task:
    """One task name. Subclasses override ``read`` and ``prepare``."""

    name: str  # "text-classification", ...
    family: str  # "data2vec-text" | "data2vec-audio" | "data2vec-vision"
    auto_class: str  # e.g. "AutoModelForSequenceClassification" (data2vec.auto)
    metric: str  # the metric the best checkpoint is chosen by, e.g. "accuracy", "wer"
    greater_is_better: bool

    def read(self, path: str | Path, options: dict[str, Any]) -> list[dict]:
        """The task's examples in the file or folder ``path`` (via ``training.data``)."""
        raise NotImplementedError(f"task {self.name!r} does not read data")

    def prepare(self, model_source: str | Path, train_examples: list[dict], options: dict[str, Any]) -> Prepared:
        """Load the processor and the model (a new head when the training labels differ from the
        checkpoint's) and build the batching, evaluation and saving functions."""
        raise NotImplementedError(f"task {self.name!r} cannot be prepared")

    def model_class(self) -> Any:
        """The Auto class of ``data2vec.auto`` named by ``auto_class``."""
        from .. import auto

        return getattr(auto, self.auto_class)


TASKS: dict[str, Task] = {}


def register(task: Task) -> Task:
    """Add ``task`` to ``TASKS`` under its name (each name once)."""
    if task.name in TASKS:
        raise ValueError(f"a fine-tuning task named {task.name!r} is already registered")
    TASKS[task.name] = task
    return task


def get_task(name: str) -> Task:
    """The task called ``name``; an unknown name is a one-line error listing the task names."""
    task = TASKS.get(name)
    if task is None:
        raise ValueError(f"unknown task {name!r}; choose one of: {', '.join(sorted(TASKS))}")
    return task


# ---------------------------------------------------------------------- shared by the modalities


def location(example: dict) -> str:
    """Where an example came from, for error messages: "train.csv, line 7" (the ``_file`` and
    ``_row`` keys that the tasks' ``read`` leave in each example; either may be absent)."""
    file, row = example.get("_file"), example.get("_row")
    if file is not None and row is not None:
        return f"{file}, line {row}"
    if file is not None:
        return str(file)
    return f"line {row}" if row is not None else "an example"


def load_model(task: Task, model_source: str | Path, labels: Sequence[str] | None = None, **config: Any) -> nn.Module:
    """Load ``model_source`` with the task's Auto class.

    ``labels`` (the sorted label set of the training data) become ``id2label`` / ``label2id``;
    when they differ from the checkpoint's, the classification head is re-initialised for them
    (``ignore_mismatched_sizes``) and a warning says so. ``config`` overrides other keys of
    ``config.json`` (e.g. ``problem_type``). The model is returned in training mode."""
    from ..auto import AutoConfig

    auto_class = task.model_class()
    options: dict[str, Any] = dict(config)
    if labels is not None:
        labels = [str(label) for label in labels]
        checkpoint = AutoConfig.from_pretrained(model_source)
        found = [checkpoint.id2label[index] for index in sorted(checkpoint.id2label)]
        if found != labels:
            id2label = dict(enumerate(labels))
            options.update(
                num_labels=len(labels),
                id2label=id2label,
                label2id={label: index for index, label in id2label.items()},
                ignore_mismatched_sizes=True,
            )
            shown = ", ".join(labels[:10]) + (", ..." if len(labels) > 10 else "")
            warnings.warn(
                f"{task.name}: the checkpoint's head predicts {len(found)} labels ({', '.join(found[:10])}"
                f"{', ...' if len(found) > 10 else ''}), the training data has {len(labels)} ({shown}): "
                "a new head is trained from scratch for them",
                UserWarning,
                stacklevel=2,
            )
    model = auto_class.from_pretrained(model_source, **options)
    model.train()
    return model


def saver(processor: Any) -> Callable[[nn.Module, Path], None]:
    """``save(model, folder)``: the model's ``save_pretrained`` and the processor's, into one folder."""

    def save(model: nn.Module, folder: Path) -> None:
        model = getattr(model, "module", model)  # a DistributedDataParallel wrapper
        model.save_pretrained(folder)
        processor.save_pretrained(folder)

    return save


def in_batches(examples: Sequence[dict], batch_size: int) -> Iterator[list[dict]]:
    """Consecutive slices of ``examples`` of ``batch_size`` (the last one may be shorter)."""
    for start in range(0, len(examples), max(1, batch_size)):
        yield list(examples[start : start + batch_size])


def evaluation_mode(model: nn.Module) -> Callable[[], None]:
    """Put ``model`` in eval mode; returns the function that restores its former mode."""
    was_training = model.training
    model.eval()
    return lambda: model.train(was_training)


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (CPU for a model without parameters)."""
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """Move the tensors of a batch dict to ``device``."""
    return {key: value.to(device) if isinstance(value, torch.Tensor) else value for key, value in batch.items()}


def eval_batch_size(options: dict[str, Any] | None, default: int) -> int:
    """The evaluation batch size: the ``eval_batch_size`` option, else ``batch_size``, else ``default``."""
    options = options or {}
    return int(options.get("eval_batch_size") or options.get("batch_size") or default)


def batch_outputs(
    model: nn.Module,
    examples: Sequence[dict],
    batch_size: int,
    collate: Callable[[list[dict]], dict[str, Any] | tuple[Any, ...]],
) -> Iterator[tuple[list[dict], Any, Any]]:
    """(examples, what ``collate`` returned for them, the model's output) for consecutive batches
    of ``batch_size`` examples, in eval mode without gradients, on the model's device (through a
    DistributedDataParallel wrapper); the model's former mode is restored at the end.

    ``collate`` returns the model's inputs: a dict, or a tuple whose first item is that dict and
    whose other items are what the caller needs besides (e.g. ``(batch, frames)``). Either is
    yielded as ``collate`` returned it, so the caller keeps its extras."""
    model = getattr(model, "module", model)  # a DistributedDataParallel wrapper
    restore = evaluation_mode(model)
    device = model_device(model)
    options = padding_free(model)
    try:
        with torch.no_grad():
            for chunk in in_batches(examples, batch_size):
                collated = collate(chunk)
                inputs = collated[0] if isinstance(collated, tuple) else collated
                yield chunk, collated, model(**to_device(inputs, device), **options)
    finally:
        restore()


def without_labels(
    collate: Callable[[list[dict]], dict[str, Any]], key: str = "labels"
) -> Callable[[list[dict]], tuple[dict[str, Any], Any]]:
    """A collate returning ``(inputs, labels)``: the batch of ``collate`` without its ``key``
    entry (so that the model computes no loss), and that entry."""

    def collate_apart(examples: list[dict]) -> tuple[dict[str, Any], Any]:
        batch = collate(examples)
        labels = batch.pop(key)
        return batch, labels

    return collate_apart


def accuracy_of(
    model: nn.Module, examples: Sequence[dict], batch_size: int, collate: Callable[[list[dict]], dict[str, Any]]
) -> dict[str, float]:
    """``{"accuracy": ...}``: how often the argmax of the model's ``logits`` is the batch's
    ``labels`` (the model runs without them), over ``examples`` in batches of ``batch_size``."""
    predictions, labels = [], []
    for _, (_, batch_labels), output in batch_outputs(model, examples, batch_size, without_labels(collate)):
        labels.append(batch_labels)
        predictions.append(output.logits.argmax(-1).cpu())
    return {"accuracy": metrics.accuracy(torch.cat(predictions), torch.cat(labels))}


# Each modality module registers its tasks when imported (it imports this module first, so
# the names above exist by then).
from . import tasks_audio, tasks_text, tasks_vision  # noqa: E402, F401
