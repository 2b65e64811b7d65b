"""What every task pipeline shares: loading a checkpoint folder, the device and dtype, and
length-sorted batching that gives results back in input order.

A pipeline turns each input into one or more *pieces* (a text, a window of a long context, a
chunk of a long recording: one row of a model batch), runs the pieces in batches of similar
length, and turns each input's piece outputs into its result::

    item --preprocess--> [piece, ...]                     (per input)
    pieces of a window --sort by length, collate--> batch --forward--> outputs --unbatch--> per piece
    item + its piece outputs --postprocess--> result      (per input, in input order)

Inputs are read a window at a time (``WINDOW_BATCHES`` batches' worth), so a folder of
thousands of files never sits in memory at once. A subclass implements ``preprocess``,
``collate``, ``unbatch`` and ``postprocess`` (``forward`` calls the model by default), names
its Auto class and its call options, and says how the command line reads its inputs
(``read_inputs``) and shows its results (``describe``).
"""

from __future__ import annotations

import dataclasses
import glob
import os
import types
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch

PathLike = str | os.PathLike

# inputs read and preprocessed at once: this many batches' worth (then sorted by length)
WINDOW_BATCHES = 16
# the progress bar appears once a call has run this long (seconds)
PROGRESS_DELAY = 2.0

DTYPES = {
    "float32": torch.float32, "fp32": torch.float32,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
    "float16": torch.float16, "fp16": torch.float16,
}  # fmt: skip
AUDIO_SUFFIXES = frozenset({".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif", ".au", ".caf", ".w64"})
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm"})
# a command-line argument ending so (and without spaces) names a file of texts rather than being a text
TEXT_FILE_SUFFIXES = frozenset({".txt", ".csv", ".tsv", ".jsonl", ".json"})


# ---------------------------------------------------------------------- device and dtype


def mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def choose_device(device: str | torch.device | None = None) -> torch.device:
    """``None`` or ``"auto"``: cuda when available, else mps, else cpu; otherwise the device
    named, which must exist here."""
    if device is None or device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if mps_available() else torch.device("cpu")
    try:
        chosen = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {device!r}: use auto, cpu, cuda, cuda:N or mps") from None
    if chosen.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("device cuda: this machine has no CUDA GPU that torch can use; use --device cpu")
        if chosen.index is not None and chosen.index >= torch.cuda.device_count():
            raise ValueError(f"device {chosen}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if chosen.type == "mps" and not mps_available():
        raise ValueError("device mps: Apple's Metal backend is not available here; use --device cpu")
    return chosen


def choose_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """float32 unless asked; bfloat16 or float16 where ``device`` supports it."""
    if dtype is None:
        return torch.float32
    if isinstance(dtype, str):
        if dtype not in DTYPES:
            raise ValueError(f"unknown dtype {dtype!r}: use float32, bfloat16 or float16")
        dtype = DTYPES[dtype]
    if dtype not in (torch.float32, torch.bfloat16, torch.float16):
        raise ValueError(f"dtype {dtype} is not a floating type a model runs in: use float32, bfloat16 or float16")
    if dtype == torch.bfloat16 and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError(f"{torch.cuda.get_device_name(device)} does not support bfloat16: use float16 or float32")
    if dtype == torch.float16 and device.type == "cpu":
        raise ValueError("float16 is not supported on the CPU: use bfloat16 or float32")
    return dtype


# ---------------------------------------------------------------------- options


_CALL_DEFAULT = object()  # an Option's flag defaults to the call's default


@dataclasses.dataclass(frozen=True)
class Option:
    """A call option of a pipeline (keyword ``name``), also a flag of its command
    (``--name`` with dashes). ``cli_only`` options say how the command reads its inputs or
    writes its files; ``command=False`` keeps a Python-only option off the command line."""

    name: str
    default: Any
    help: str
    type: Callable[[str], Any] | None = None  # the flag's type (default: the default's type)
    cli_only: bool = False
    choices: tuple[Any, ...] | None = None
    command: bool = True
    cli_default: Any = dataclasses.field(default=_CALL_DEFAULT, repr=False)  # the flag's, where it differs

    @property
    def flag_default(self) -> Any:
        return self.default if self.cli_default is _CALL_DEFAULT else self.cli_default

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


def positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


# ---------------------------------------------------------------------- the base


class Pipeline:
    """One task on one model: ``pipe(input)`` gives that input's result, ``pipe([inputs])``
    a list of results in the same order. See the module docstring for the subclass hooks."""

    task: ClassVar[str] = ""
    auto_class: ClassVar[str] = ""  # the Auto class (by its public name) that loads the model
    modality: ClassVar[str] = ""  # "text", "audio" or "image": how the command expands its inputs
    options: ClassVar[tuple[Option, ...]] = ()
    unit: ClassVar[str] = "input"  # what the progress bar counts
    # call options the command always passes (what its `export` needs), over the flags
    command_call_options: ClassVar[dict[str, Any]] = {}

    def __init__(
        self,
        model: torch.nn.Module,
        processor: Any,
        *,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        batch_size: int = 1,
        progress: bool | None = None,
    ) -> None:
        self.device = choose_device(device)
        self.dtype = choose_dtype(dtype, self.device)
        self.model = model.to(device=self.device, dtype=self.dtype).eval()
        self.processor = processor
        self.batch_size = positive_int("batch_size", batch_size)
        self.progress = progress  # None: a bar once a call runs longer than PROGRESS_DELAY seconds

    # ------------------------------------------------------------------ loading

    @classmethod
    def from_pretrained(
        cls,
        model: PathLike,
        *,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        batch_size: int = 1,
        progress: bool | None = None,
        revision: str | None = None,
        cache_dir: PathLike | None = None,
    ) -> Pipeline:
        """The pipeline on a checkpoint folder or Hub repo id: the model through the task's Auto
        class, the preprocessor from the folder's files (a missing file is an error naming it)."""
        import data2vec

        check_checkpoint(model)
        hub = {"revision": revision, "cache_dir": cache_dir}
        network = getattr(data2vec, cls.auto_class).from_pretrained(model, **hub)
        processor = cls.load_processor(model, **hub)
        return cls(network, processor, device=device, dtype=dtype, batch_size=batch_size, progress=progress)

    @classmethod
    def load_processor(cls, model: PathLike, **hub: Any) -> Any:
        """The preprocessor of the checkpoint (by default what ``AutoProcessor`` finds)."""
        import data2vec

        return data2vec.AutoProcessor.from_pretrained(model, **hub)

    # ------------------------------------------------------------------ subclass hooks

    def preprocess(self, item: Any, **options: Any) -> list[dict[str, Any]]:
        """The pieces of one input: dicts of unbatched tensors and whatever postprocess needs."""
        raise NotImplementedError

    def length(self, piece: dict[str, Any]) -> int:
        """The size that sorting by length uses (tokens, samples, ...)."""
        return 0

    def collate(self, pieces: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """The model's keyword arguments for a batch of pieces (on the CPU; moved here after)."""
        raise NotImplementedError

    def forward(self, batch: dict[str, torch.Tensor], **options: Any) -> Any:
        return self.model(**batch)

    def unbatch(self, outputs: Any, pieces: Sequence[dict[str, Any]]) -> list[Any]:
        """Each piece's outputs (float32 CPU tensors, padding removed)."""
        raise NotImplementedError

    def postprocess(self, item: Any, pieces: list[dict[str, Any]], outputs: list[Any], **options: Any) -> Any:
        """The result of one input from its pieces and their outputs."""
        raise NotImplementedError

    # ------------------------------------------------------------------ calling

    def __call__(self, inputs: Any, **options: Any) -> Any:
        """One input gives one result; a list (or a generator) of inputs gives a list of results
        in input order."""
        many = isinstance(inputs, (list, types.GeneratorType, map, filter))
        items = list(inputs) if many else [inputs]
        results = list(self.iterate(items, **options))
        return results if many else results[0]

    def iterate(self, items: Sequence[Any], **options: Any) -> Iterator[Any]:
        """The results of ``items`` one at a time, in order (a window of inputs is run at once)."""
        options = self.check_options(options)
        window = max(1, self.batch_size * WINDOW_BATCHES)
        with self._progress_bar(len(items)) as bar:
            for start in range(0, len(items), window):
                chunk = items[start : start + window]
                for result in self._run_window(chunk, options):
                    bar.update(1)
                    yield result

    def check_options(self, options: dict[str, Any]) -> dict[str, Any]:
        """The call options with defaults filled in; an unknown name is a TypeError."""
        known = {option.name: option for option in self.options if not option.cli_only}
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise TypeError(
                f"{type(self).__name__} got unknown option(s) {', '.join(unknown)}; it takes {', '.join(known) or 'none'}"
            )
        return {name: options.get(name, option.default) for name, option in known.items()}

    def _run_window(self, items: Sequence[Any], options: dict[str, Any]) -> list[Any]:
        pieces_of = [self.preprocess(item, **options) for item in items]
        flat = [(index, piece) for index, pieces in enumerate(pieces_of) for piece in pieces]
        order = sorted(range(len(flat)), key=lambda position: -self.length(flat[position][1]))
        outputs: list[Any] = [None] * len(flat)
        for start in range(0, len(order), self.batch_size):
            positions = order[start : start + self.batch_size]
            batch_pieces = [flat[position][1] for position in positions]
            with torch.inference_mode():
                batch = self.to_device(self.collate(batch_pieces))
                results = self.unbatch(self.forward(batch, **options), batch_pieces)
            for position, result in zip(positions, results):
                outputs[position] = result
        outputs_of: list[list[Any]] = [[] for _ in items]
        for (index, _), output in zip(flat, outputs):
            outputs_of[index].append(output)
        return [
            self.postprocess(item, pieces, piece_outputs, **options)
            for item, pieces, piece_outputs in zip(items, pieces_of, outputs_of)
        ]

    def to_device(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The batch on the model's device; floating inputs in the model's dtype."""
        moved = {}
        for name, value in batch.items():
            if isinstance(value, torch.Tensor):
                value = value.to(self.device, dtype=self.dtype if value.is_floating_point() else None)
            moved[name] = value
        return moved

    def _progress_bar(self, total: int) -> Any:
        from tqdm.auto import tqdm

        return tqdm(
            total=total,
            unit=self.unit,
            desc=self.task,
            delay=PROGRESS_DELAY if self.progress is None else 0,
            disable=self.progress is False or total == 0,
            leave=False,
        )

    # ------------------------------------------------------------------ the command line

    @classmethod
    def read_inputs(cls, arguments: Sequence[str], options: dict[str, Any]) -> list[tuple[str, Any]]:
        """The command's positional arguments as (name shown, pipeline input) pairs."""
        if cls.modality == "text":
            return expand_texts(arguments, column=options.get("text_column", "text"))
        if cls.modality == "audio":
            return [(str(path), str(path)) for path in expand_files(arguments, AUDIO_SUFFIXES, "audio")]
        if cls.modality == "image":
            return [(str(path), str(path)) for path in expand_files(arguments, IMAGE_SUFFIXES, "image")]
        raise NotImplementedError(f"{cls.__name__} does not say how to read its inputs")

    def export(self, name: str, result: Any, options: dict[str, Any]) -> Any:
        """The command's JSON-ready form of a result (a hook for writing files, e.g. masks)."""
        return result

    def describe(self, name: str, result: Any) -> str:
        """The command's readable form of one exported result."""
        return f"{name}: {result}"


# ---------------------------------------------------------------------- the checkpoint


def check_checkpoint(model: PathLike) -> None:
    """A local path must be a folder holding ``config.json``: say so in one line otherwise
    (a Hub id is left to the Hub resolution)."""
    path = Path(model)
    if path.is_file():
        raise NotADirectoryError(f"{str(path)!r} is a file; --model takes the folder that holds config.json")
    if path.is_dir() and not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"{str(path)!r} is not a model checkpoint: it has no config.json (pass the folder written by "
            "save_pretrained, `data2vec finetune` or `data2vec export-backbone`)"
        )
    if not path.exists() and (str(model).startswith((".", "/", "~")) or str(model).count("/") > 1):
        raise FileNotFoundError(f"model folder {str(model)!r} does not exist")


# ---------------------------------------------------------------------- inputs of the command


def _has_glob(argument: str) -> bool:
    return any(character in argument for character in "*?[")


def expand_files(arguments: Iterable[str], suffixes: Iterable[str], what: str) -> list[Path]:
    """Files from paths, folders (searched recursively for ``suffixes``) and globs, in the order
    given (a folder's and a glob's files sorted); anything missing is a FileNotFoundError."""
    suffixes = frozenset(suffixes)
    files: list[Path] = []
    for argument in arguments:
        if _has_glob(argument):
            matches = sorted(Path(match) for match in glob.glob(argument, recursive=True) if Path(match).is_file())
            if not matches:
                raise FileNotFoundError(f"no file matches {argument!r}")
            files.extend(matches)
            continue
        path = Path(argument)
        if path.is_dir():
            found = sorted(file for file in path.rglob("*") if file.is_file() and file.suffix.lower() in suffixes)
            if not found:
                raise FileNotFoundError(
                    f"folder {argument!r} holds no {what} files (looked for {', '.join(sorted(suffixes))})"
                )
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"{what} file {argument!r} does not exist")
    return files


def looks_like_text_file(argument: str) -> bool:
    return Path(argument).suffix.lower() in TEXT_FILE_SUFFIXES and not any(c.isspace() for c in argument)


def texts_of_file(
    path: Path, column: str, read_table: Callable[[Path], list[tuple[str, Any]]] | None = None
) -> list[tuple[str, Any]]:
    """(``file:line``, input) for each input of a file: a line of a .txt file (blank lines
    skipped); of a .csv, .tsv, .jsonl or .json file, what ``read_table(path)`` reads (by default
    ``column`` of each row)."""
    from ..training.data import read_records, read_text

    if path.suffix.lower() == ".txt":
        lines = read_text(path).splitlines()
        return [(f"{path}:{number}", line) for number, line in enumerate(lines, 1) if line.strip()]
    if read_table is not None:
        return read_table(path)
    return [(f"{path}:{row['_row']}", str(row[column])) for row in read_records(path, [column])]


def expand_texts(
    arguments: Iterable[str], column: str = "text", read_table: Callable[[Path], list[tuple[str, Any]]] | None = None
) -> list[tuple[str, Any]]:
    """(name, input) pairs: an argument naming a .txt/.csv/.tsv/.jsonl/.json file, a folder (its
    .txt files) or a glob gives the inputs in it (see ``texts_of_file``), ``-`` the lines of
    standard input, and any other argument is a text itself. A file name that does not exist is a
    FileNotFoundError."""
    import sys

    texts: list[tuple[str, Any]] = []
    for argument in arguments:
        if argument == "-":
            texts.extend((f"stdin:{n}", line.rstrip("\n")) for n, line in enumerate(sys.stdin, 1) if line.strip())
        elif Path(argument).is_dir():
            for path in expand_files([argument], {".txt"}, "text"):
                texts.extend(texts_of_file(path, column, read_table))
        elif looks_like_text_file(argument):  # a file, or a glob of files
            for path in expand_files([argument], TEXT_FILE_SUFFIXES, "text"):
                texts.extend(texts_of_file(path, column, read_table))
        else:
            texts.append((argument, argument))
    return texts


# ---------------------------------------------------------------------- batching helpers


def pad(sequences: Sequence[torch.Tensor], value: float = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad 1-D (or (length, ...)) tensors to the longest: (batch, longest, ...) and the
    (batch, longest) attention mask of ones on real positions."""
    longest = max(len(sequence) for sequence in sequences)
    first = sequences[0]
    padded = first.new_full((len(sequences), longest, *first.shape[1:]), value)
    mask = torch.zeros(len(sequences), longest, dtype=torch.long)
    for row, sequence in enumerate(sequences):
        padded[row, : len(sequence)] = sequence
        mask[row, : len(sequence)] = 1
    return padded, mask


# ---------------------------------------------------------------------- classification scores

SCORE_FUNCTIONS = ("softmax", "sigmoid", "none")


FUNCTION_TO_APPLY = Option(
    "function_to_apply", None,
    "how logits become scores: softmax, sigmoid or none (default: none for regression, sigmoid for a multi-label "
    "model, softmax otherwise)",
    type=str, choices=SCORE_FUNCTIONS,
)  # fmt: skip


def check_score_function(value: Any) -> str | None:
    """``function_to_apply`` as given (``None``: by the model's problem type), lower case."""
    if value is None:
        return None
    name = str(getattr(value, "value", value)).lower()  # the reference's enum members work too
    if name not in SCORE_FUNCTIONS:
        raise ValueError(
            f"function_to_apply must be one of {', '.join(SCORE_FUNCTIONS)} (or None: by the model's problem "
            f"type), got {value!r}"
        )
    return name


def check_top_k(value: Any) -> int | None:
    """``top_k``: a positive integer, or ``None`` (every label)."""
    return None if value is None else positive_int("top_k", value)


def default_score_function(config: Any, *, one_label_sigmoid: bool = True) -> str:
    """How a classifier's logits become scores when the call does not say: none for regression,
    sigmoid for multi-label models (and for a single label, in the text and image pipelines of
    the reference library), softmax otherwise."""
    if config.problem_type == "regression":
        return "none"
    if config.problem_type == "multi_label_classification" or (one_label_sigmoid and config.num_labels == 1):
        return "sigmoid"
    return "softmax"


def class_scores(logits: torch.Tensor, function: str) -> torch.Tensor:
    """(labels,) scores of (labels,) logits by a name of ``SCORE_FUNCTIONS``."""
    if function == "softmax":
        return logits.softmax(-1)
    return logits.sigmoid() if function == "sigmoid" else logits
