"""Inference options beyond the float32 eager model: ONNX export, checked with onnxruntime
against PyTorch, and dynamic int8 quantisation of the linear layers for CPU serving.

``export_onnx(folder, "model.onnx")`` loads the folder's model (the class it was saved from, or
the Auto class of ``task``), exports it with ``torch.onnx.export`` with dynamic batch and length
axes, runs the file in onnxruntime on a batch of another size and length (one row padded), and
reports the largest difference from PyTorch per output. The ONNX inputs are the ones the
family's preprocessor returns, with its dtypes:

- text: ``input_ids`` and ``attention_mask``, int64, ``(batch, sequence)`` (multiple choice:
  ``(batch, choices, sequence)``);
- audio: ``input_values`` float32 and ``attention_mask`` int32, ``(batch, samples)``;
- vision: ``pixel_values`` float32, ``(batch, channels, height, width)``, the height and width
  fixed at the configuration's ``image_size``.

The outputs are named after the model's output fields (``last_hidden_state``, ``pooler_output``,
``logits``, ``start_logits``, ``embeddings``, ...). The command is
``data2vec export --format onnx --model FOLDER --output FILE.onnx``.

The ONNX packages are the ``onnx`` extra (``pip install 'data2vec[onnx]'``) and are imported
only here, on first use.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import inspect
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

PathLike = str | os.PathLike

# the task names of the inference commands (and the reference library's aliases) work, plus these
EXTRA_TASKS = {
    "feature-extraction": "AutoModel",
    "multiple-choice": "AutoModelForMultipleChoice",
    "text-regression": "AutoModelForSequenceClassification",
}
# output fields that are not exported: training, the KV cache, per-layer tensors asked for by flags
SKIPPED_FIELDS = ("loss", "past_key_values", "hidden_states", "attentions", "cross_attentions")
# one ONNX file holds at most 2 GB; larger models keep their weights in FILE.onnx.data beside it
SINGLE_FILE_LIMIT = 1_900_000_000
# torch.onnx.export (the torch.export-based exporter) writes opset 18 and newer; older opsets go
# through a version converter that fails on this graph (LayerNormalization, Split)
MIN_OPSET = 18
ONNX_INSTALL_HINT = "ONNX export needs onnx, onnxscript and onnxruntime: pip install 'data2vec[onnx]'"


@dataclasses.dataclass
class OnnxExport:
    """What ``export_onnx`` wrote and how the file agreed with PyTorch."""

    path: Path
    model_class: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    opset: int
    check_shapes: dict[str, tuple[int, ...]]  # the inputs of the onnxruntime check
    max_abs_difference: dict[str, float] | None  # per output; None when the check was skipped
    atol: float

    @property
    def passed(self) -> bool:
        return self.max_abs_difference is None or max(self.max_abs_difference.values()) <= self.atol

    def describe(self) -> str:
        lines = [
            (
                f"wrote {self.path} ({self.model_class}; inputs {', '.join(self.inputs)}; "
                f"outputs {', '.join(self.outputs)}; opset {self.opset})"
            )
        ]
        if self.max_abs_difference is not None:
            shapes = ", ".join(f"{name} {tuple(shape)}" for name, shape in self.check_shapes.items())
            differences = ", ".join(f"{name} {value:.2g}" for name, value in self.max_abs_difference.items())
            padded = " (one row padded)" if "attention_mask" in self.check_shapes else ""
            lines.append(
                f"onnxruntime vs PyTorch on {shapes}{padded}: max |difference| {differences} (tolerance {self.atol:g})"
            )
        return "\n".join(lines)


def model_class_for(model_folder: PathLike, task: str | None = None) -> type:
    """The class ``export_onnx`` loads: the Auto class of ``task``, or the class the folder was saved from."""
    import data2vec

    if task is None:
        return data2vec.AutoModel.saved_class(model_folder)
    if task in EXTRA_TASKS:
        auto_name = EXTRA_TASKS[task]
    else:
        from .pipelines import pipeline_class

        try:
            auto_name = pipeline_class(task).auto_class
        except ValueError as error:
            raise ValueError(f"{error}, {', '.join(EXTRA_TASKS)}") from None
    return getattr(data2vec, auto_name).class_for(model_folder)


def export_onnx(
    model_folder: PathLike,
    output_path: PathLike,
    task: str | None = None,
    opset: int | None = None,
    *,
    check: bool = True,
    atol: float = 1e-4,
    seed: int = 0,
) -> OnnxExport:
    """Export the model of ``model_folder`` (a folder in the Hugging Face layout or a Hub id) to
    ``output_path`` and, with ``check``, compare onnxruntime's outputs with PyTorch's on inputs of
    another batch size and length than the export's. ``task``: an inference command's name
    (e.g. ``text-classification``), ``feature-extraction`` for the backbone, ``multiple-choice``;
    by default the class the folder was saved from. ``opset``: the ONNX opset (default: the
    exporter's). The result says whether the differences stay within ``atol``; the file is
    written either way."""
    _require_onnx()
    if opset is not None and opset < MIN_OPSET:
        raise ValueError(f"opset {opset} is too old: the exporter writes opset {MIN_OPSET} or newer (default: its own)")
    if model_folder is None or str(model_folder) == "":
        raise ValueError("no model given: pass a checkpoint folder (config.json + weights)")
    output_path = Path(output_path)
    if output_path.suffix != ".onnx":
        raise ValueError(f"the output file should end in .onnx, got {output_path}")
    if output_path.parent and not output_path.parent.is_dir():
        raise FileNotFoundError(f"no folder {output_path.parent} to write {output_path.name} into: create it first")
    model = model_class_for(model_folder, task).from_pretrained(model_folder).eval()
    inputs = ExampleInputs(model)
    generator = torch.Generator().manual_seed(seed)
    example = inputs.make(generator, export=True)
    graph = _NamedOutputs(model, inputs.names, _call_options(model))
    with torch.no_grad():
        graph.output_names = _exported_fields(model(**example, **graph.call_options))
    weights_bytes = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
    # no_grad: with gradients on, attention with a bias computed from parameters (vision's relative
    # position bias) is traced to a CPU kernel whose decomposition then fails ("Cannot view a tensor")
    with _quiet_exporter(), torch.no_grad():
        torch.onnx.export(
            graph,
            tuple(example.values()),
            str(output_path),
            input_names=list(inputs.names),
            output_names=list(graph.output_names),
            dynamic_shapes=(inputs.dynamic_shapes(),),  # one entry: the tuple of `forward(*tensors)`
            opset_version=opset,
            dynamo=True,
            external_data=weights_bytes > SINGLE_FILE_LIMIT,
            verbose=False,
        )
    written_opset = _opset_of(output_path)
    if opset is not None and written_opset != opset:
        raise ValueError(
            f"the exporter could not write opset {opset} (it wrote {written_opset}): choose another --opset"
        )
    result = OnnxExport(
        path=output_path,
        model_class=type(model).__name__,
        inputs=inputs.names,
        outputs=graph.output_names,
        opset=written_opset,
        check_shapes={},
        max_abs_difference=None,
        atol=atol,
    )
    if check:
        check_inputs = inputs.make(generator, export=False)
        result.check_shapes = {name: tuple(value.shape) for name, value in check_inputs.items()}
        result.max_abs_difference = compare_with_onnxruntime(output_path, graph, check_inputs)
    return result


def compare_with_onnxruntime(path: PathLike, graph: nn.Module, inputs: dict[str, torch.Tensor]) -> dict[str, float]:
    """Max |onnxruntime - PyTorch| per output of ``graph`` (a ``_NamedOutputs``) on ``inputs``."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 4  # its errors reach the caller as the exception below, not as log lines too
    try:
        session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        exported = session.run(list(graph.output_names), {name: value.numpy() for name, value in inputs.items()})
    except Exception as error:  # onnxruntime's errors are its own classes, one per status code
        message = " ".join(str(error).split())
        if len(message) > 300:  # the start names the node, the end says what was wrong
            message = f"{message[:120]} ... {message[-160:]}"
        raise OnnxCheckError(
            f"{path} was written but onnxruntime {onnxruntime.__version__} cannot run it: {message} "
            "(with --opset: try another, or the default)"
        ) from error
    with torch.no_grad():
        expected = graph(*inputs.values())
    return {
        name: float((torch.from_numpy(ours) - theirs.float()).abs().max())
        for name, ours, theirs in zip(graph.output_names, exported, expected)
    }


class OnnxCheckError(RuntimeError):
    """The exported file does not run in onnxruntime."""


class _NamedOutputs(nn.Module):
    """The model called with its inputs by position, returning the exported output fields as a tuple."""

    def __init__(self, model: nn.Module, input_names: tuple[str, ...], call_options: dict[str, Any]) -> None:
        super().__init__()
        self.model = model
        self.input_names = input_names
        self.call_options = call_options
        self.output_names: tuple[str, ...] = ()
        self.eval()

    def forward(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outputs = self.model(**dict(zip(self.input_names, tensors)), **self.call_options)
        return tuple(getattr(outputs, name) for name in self.output_names)


def _call_options(model: nn.Module) -> dict[str, Any]:
    """Keyword arguments of every call: no key/value cache (a causal LM returns one by default)."""
    return {"use_cache": False} if "use_cache" in inspect.signature(model.forward).parameters else {}


def _exported_fields(outputs: Any) -> tuple[str, ...]:
    # an output iterates over its values, as the reference's do: the names come from keys()
    return tuple(name for name in outputs.keys() if name not in SKIPPED_FIELDS)  # noqa: SIM118


class ExampleInputs:
    """Random inputs of a model's family: a small batch to export with, and a check batch of
    another size and length with one right-padded row (text and audio)."""

    def __init__(self, model: nn.Module) -> None:
        self.config = model.config
        self.family = self.config.model_type.removeprefix("data2vec-")
        self.multiple_choice = type(model).__name__ == "Data2VecTextForMultipleChoice"
        self.names = {
            "text": ("input_ids", "attention_mask"),
            "audio": ("input_values", "attention_mask"),
            "vision": ("pixel_values",),
        }[self.family]

    def dynamic_shapes(self) -> tuple[dict[int, Any], ...]:
        from torch.export import Dim

        batch = Dim("batch")
        if self.family == "vision":
            return ({0: batch},)
        if self.family == "audio":
            samples = Dim("samples", min=self._audio_min_samples())
            return ({0: batch, 1: samples}, {0: batch, 1: samples})
        sequence = Dim("sequence", max=self._text_max_length())
        axes = {0: batch, 1: Dim("choices"), 2: sequence} if self.multiple_choice else {0: batch, 1: sequence}
        return (axes, dict(axes))

    def make(self, generator: torch.Generator, export: bool) -> dict[str, torch.Tensor]:
        """The export's inputs (batch 2, no padding) or the check's (batch 3, other lengths, row 1 padded)."""
        batch = 2 if export else 3
        if self.family == "vision":
            height, width = _pair(self.config.image_size)
            return {"pixel_values": torch.randn(batch, self.config.num_channels, height, width, generator=generator)}
        if self.family == "audio":
            samples = max(16000, 4 * self._audio_min_samples())
            if not export:
                samples = samples * 3 // 4 + 7
            values = torch.randn(batch, samples, generator=generator)
            mask = torch.ones(batch, samples, dtype=torch.int32)
            if not export:
                real = max(samples * 3 // 5, self._audio_min_samples())
                values[1, real:] = 0.0
                mask[1, real:] = 0
            return {"input_values": values, "attention_mask": mask}
        longest = self._text_max_length()
        length = min(16, longest) if export else max(min(11, longest - 1), 2)
        pad = self.config.pad_token_id if self.config.pad_token_id is not None else -1
        shape = (batch, 2 if export else 3, length) if self.multiple_choice else (batch, length)
        input_ids = torch.randint(0, self.config.vocab_size, shape, generator=generator)
        input_ids[input_ids == pad] = (pad + 1) % self.config.vocab_size
        mask = torch.ones(shape, dtype=torch.int64)
        if not export:
            real = (length + 1) // 2
            input_ids[1, ..., real:] = pad
            mask[1, ..., real:] = 0
        return {"input_ids": input_ids, "attention_mask": mask}

    def _text_max_length(self) -> int:
        """Tokens per sequence that the position table holds (RoBERTa positions start after the pad id)."""
        offset = self.config.pad_token_id + 1 if self.config.pad_token_id is not None else 0
        return self.config.max_position_embeddings - offset

    def _audio_min_samples(self) -> int:
        from .audio.feature_encoder import minimum_input_length

        return minimum_input_length(self.config, include_adapter=getattr(self.config, "add_adapter", False))


def _pair(size: int | list[int] | tuple[int, int]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def _opset_of(path: Path) -> int:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return next(entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx"))


def _require_onnx() -> None:
    missing = []
    for module in ("onnx", "onnxscript", "onnxruntime"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise ImportError(f"{ONNX_INSTALL_HINT} ({', '.join(missing)} missing)")


@contextlib.contextmanager
def _quiet_exporter():
    """The exporter's progress lines and its warnings about optional operators (torchvision's) are
    noise to a user whose export works; its errors still propagate."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "onnxscript")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


# ---------------------------------------------------------------------- int8


def quantize_dynamic_int8(model: nn.Module) -> nn.Module:
    """A copy of ``model`` for CPU inference with its linear layers in dynamic int8 (weights int8
    per tensor, activations quantised per batch at run time; ``torch.ao.quantization.quantize_dynamic``).

    Every ``nn.Linear`` is quantised (the fused query/key/value projections, attention outputs,
    feed-forward, pooler, heads). The copy is for inference only (``eval()``); ``save_pretrained``
    of it is not supported: keep the float model for that."""
    names = {name for name, module in model.named_modules() if isinstance(module, nn.Linear)}
    quantized = copy.deepcopy(model).eval()
    with warnings.catch_warnings():  # torch warns that the quantized tensor types are deprecated
        warnings.simplefilter("ignore")
        torch.ao.quantization.quantize_dynamic(
            quantized, {name: torch.ao.quantization.default_dynamic_qconfig for name in names}, inplace=True
        )
    return quantized
