"""``data2vec finetune``: options (a YAML file and command-line flags) -> a trained output folder.

The options are the flags' names with underscores (``--learning-rate`` is ``learning_rate``); a
``--config`` YAML file may use either spelling, and a flag given on the command line wins over
the file. What a run needs::

    task      one of training.tasks.TASKS (text-classification, speech-recognition, ...)
    model     a checkpoint folder (ours, `data2vec export-backbone`, or Hugging Face layout) or Hub id
    train     the training data (its format depends on the task: see `data2vec finetune --help`)
    eval      optional evaluation data: the best checkpoint is chosen on it by the task's metric
    output    the output folder: the model ready for `from_pretrained`, `checkpoint/` to resume

Everything else has a default: the training settings of :class:`TrainSettings` and the data
options of the tasks (column names, lengths, sampling rate).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import yaml

from .loop import CHECKPOINT_DIR, PREVIOUS_DIR, STATE_NAME, TEMPORARY_DIR, Trainer, TrainSettings
from .tasks import get_task

REQUIRED = ("task", "model", "train", "output")
# the data options of the tasks; None leaves the choice to the task (its default, see --help)
DATA_OPTIONS = dict.fromkeys(
    ["text_column", "text_pair_column", "label_column", "max_length", "doc_stride", "mlm_probability",
     "sampling_rate", "max_seconds", "image_size", "eval_batch_size"]
)
RUN_OPTIONS = {"eval": None, "resume": False, "progress": True}


class OptionsError(ValueError):
    """A wrong, missing or unknown option of ``data2vec finetune``."""


def known_options() -> dict[str, Any]:
    """Every option with its default (None for the required ones)."""
    settings = {field.name: field.default for field in dataclasses.fields(TrainSettings)}
    return {**dict.fromkeys(REQUIRED), **RUN_OPTIONS, **settings, **DATA_OPTIONS}


def load_options(config: str | os.PathLike | None, flags: dict[str, Any]) -> dict[str, Any]:
    """The defaults, overridden by the YAML file ``config``, overridden by the ``flags`` that are
    not None. Unknown keys of the file and missing required options are errors."""
    options = known_options()
    if config is not None:
        path = Path(config)
        if not path.is_file():
            raise OptionsError(f"--config {path}: no such file")
        try:
            values = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as error:
            raise OptionsError(f"--config {path} is not valid YAML: {error}") from None
        if not isinstance(values, dict):
            raise OptionsError(f"--config {path} must be a mapping of option names to values")
        values = {str(key).replace("-", "_"): value for key, value in values.items()}
        unknown = sorted(set(values) - set(options))
        if unknown:
            raise OptionsError(
                f"--config {path}: unknown option{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} "
                f"(known: {', '.join(sorted(options))})"
            )
        options.update(values)
    options.update({key: value for key, value in flags.items() if value is not None and key in options})
    if options.get("clip_norm") == 0:  # --clip-norm 0: no clipping
        options["clip_norm"] = None
    missing = [name for name in REQUIRED if options.get(name) in (None, "")]
    if missing:
        raise OptionsError(
            "missing " + ", ".join(f"--{name}" for name in missing) + " (give them as flags or as keys of --config)"
        )
    return options


def layer_id(name: str, num_layers: int) -> int:
    """The layer of a parameter for layer-wise learning-rate decay: 0 for everything of the
    backbone before the blocks (embeddings, conv feature encoder, positional convolution), i + 1
    for block i, num_layers + 1 for what follows the blocks (pooler, heads)."""
    parts = name.split(".")
    for index in range(len(parts) - 2):
        if parts[index : index + 2] == ["encoder", "layers"] and parts[index + 2].isdigit():
            return int(parts[index + 2]) + 1
    if name.startswith("backbone.") and ".pooler." not in f".{name}":
        return 0
    return num_layers + 1


def run_finetune(options: dict[str, Any]) -> dict[str, Any]:
    """Fine-tune as ``options`` say (see :func:`load_options`); returns the trainer's result
    with the output folder."""
    task = get_task(options["task"])
    output = Path(options["output"])
    if not options.get("resume") and any((output / name / STATE_NAME).is_file() for name in (CHECKPOINT_DIR, TEMPORARY_DIR, PREVIOUS_DIR)):
        raise FileExistsError(
            f"{options['output']} already holds a fine-tuning run: add --resume to continue it, or choose another --output"
        )
    train_examples = task.read(options["train"], options)
    eval_examples = task.read(options["eval"], options) if options.get("eval") else None
    prepared = task.prepare(options["model"], train_examples, options)
    if eval_examples is not None and prepared.check is not None:
        prepared.check(eval_examples)  # e.g. a label the training data lacks: an error before any training
    settings = TrainSettings(**{field.name: options[field.name] for field in dataclasses.fields(TrainSettings)})
    num_layers = int(getattr(prepared.model.config, "num_hidden_layers", 0))
    trainer = Trainer(
        prepared.model,
        train_examples,
        prepared.collate,
        settings,
        options["output"],
        evaluate=(lambda model: prepared.evaluate(model, eval_examples)) if eval_examples is not None else None,
        metric=task.metric if eval_examples is not None else "loss",
        greater_is_better=task.greater_is_better if eval_examples is not None else False,
        save=prepared.save,
        progress=bool(options.get("progress", True)),
        layer_id=lambda name: layer_id(name, num_layers),
        num_layers=num_layers,
    )
    try:
        result = trainer.train(resume=bool(options.get("resume")))
    finally:
        trainer.close()
    return {**result, "output": str(options["output"])}
