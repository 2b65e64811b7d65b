"""Users' training data as lists of plain dict examples.

One reader per layout that people keep their data in: CSV/TSV/JSON-lines tables, CoNLL token
files, SQuAD JSON, audio manifests, image class folders and image + mask folders. Every mistake
in the data is a `DataError` whose message names the file and, where there is one, the 1-based
line, then says what to do: ``train.csv, line 7: the transcript is empty; fill it in or drop
the row``. Records carry their line as ``"_row"`` so that later checks can name it too.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps


PathLike = str | os.PathLike

TABLE_DELIMITERS = {".csv": ",", ".tsv": "\t"}
JSON_SUFFIXES = (".jsonl", ".json")
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
MANIFEST_TARGETS = ("text", "label", "labels")
# Single-channel integer modes, whose pixel values are class ids ("P": palette indices).
MASK_MODES = ("P", "L", "1", "I", "I;16")
IMAGE_ERRORS = (OSError, ValueError, Image.DecompressionBombError)
SQUAD_KEYS = ("id", "question", "context", "answers")
# What may stand between two elements of a valid JSON array.
_JSON_SEPARATORS = re.compile(r"[ \t\n\r,]*")


class DataError(ValueError):
    """A user's data is missing or malformed; the message names the file (and line) and says what to do."""


def _where(path: PathLike, row: int | None = None) -> str:
    return str(path) if row is None else f"{path}, line {row}"


def _existing_file(path: PathLike) -> Path:
    file = Path(path)
    if not file.exists():
        raise DataError(f"{file}: no such file; check the path")
    if not file.is_file():
        raise DataError(f"{file}: is a folder, not a file; pass the path of the data file")
    return file


def _existing_folder(path: PathLike, holding: str) -> Path:
    folder = Path(path)
    if not folder.exists():
        raise DataError(f"{folder}: no such folder; check the path")
    if not folder.is_dir():
        raise DataError(f"{folder}: is a file, not a folder; pass the folder that holds {holding}")
    return folder


def read_text(file: Path) -> str:
    """The file's text, newlines untouched (a UTF-8 byte-order mark, as Excel writes, is dropped)."""
    data = file.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise DataError(f"{file}, line {line}: not UTF-8 text; save the file with UTF-8 encoding") from None


# --- tables: CSV, TSV, JSON lines -----------------------------------------------------------


def read_records(path: PathLike, columns: Sequence[str], optional: Sequence[str] = ()) -> list[dict[str, Any]]:
    """The rows of a .csv, .tsv, .jsonl or .json file as dicts of `columns` (all required) and of the
    `optional` columns that exist, plus ``"_row"``: the row's line in the file (a CSV header is line 1).

    Values are as read: strings from CSV/TSV, JSON types from JSON lines. A .json file holds either
    JSON lines or one JSON list of objects.
    """
    file = _existing_file(path)
    suffix = file.suffix.lower()
    if suffix in TABLE_DELIMITERS:
        header, rows = _read_table(file, TABLE_DELIMITERS[suffix])
        _check_columns(file, None, columns, header)
    elif suffix in JSON_SUFFIXES:
        rows = _json_rows(file, read_text(file))
        for line, row in rows:
            _check_columns(file, line, columns, _json_object(file, line, row))
    else:
        raise DataError(f"{file}: unknown file type {suffix or '(no suffix)'!r}; use .csv, .tsv, .jsonl or .json")
    if not rows:
        raise DataError(f"{file}: no records; add at least one row of data")
    wanted = [*columns, *optional]
    return [{**{name: row[name] for name in wanted if name in row}, "_row": line} for line, row in rows]


def _read_table(file: Path, delimiter: str) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """The stripped header and the (line, row) pairs of a CSV/TSV file; blank lines are skipped."""
    reader = csv.reader(io.StringIO(read_text(file), newline=""), delimiter=delimiter)
    header: list[str] | None = None
    rows, start = [], 1  # `start`: the line where the next record begins (a quoted value may span lines)
    try:
        for values in reader:
            line, start = start, reader.line_num + 1
            if not any(value.strip() for value in values):
                continue
            if header is None:
                header = [name.strip() for name in values]
                _check_header(file, line, header)
            elif len(values) != len(header):
                separator = "comma" if delimiter == "," else "tab"
                raise DataError(
                    f"{file}, line {line}: {len(values)} values for the header's {len(header)} columns; "
                    f'put values that contain a {separator} in double quotes ("a{delimiter} b") or fix the row'
                )
            else:
                rows.append((line, dict(zip(header, values))))
    except csv.Error as error:
        raise DataError(f"{file}, line {start}: {error}; fix the quoting of this row") from None
    if header is None:
        raise DataError(f"{file}: the file is empty; its first line must name the columns (e.g. text,label)")
    return header, rows


def _check_header(file: Path, line: int, header: list[str]) -> None:
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise DataError(f"{file}, line {line}: column {repeated[0]!r} appears twice; give every column its own name")


def _check_columns(file: Path, line: int | None, columns: Sequence[str], found: Iterable[str]) -> None:
    found = list(found)  # may be a dict (a JSON record)
    missing = [name for name in columns if name not in found]
    if missing:
        noun = "column" if len(missing) == 1 else "columns"
        raise DataError(
            f"{_where(file, line)}: no {noun} {', '.join(map(repr, missing))} "
            f"(columns found: {', '.join(map(repr, found)) or 'none'}); rename the column in the file or "
            "choose the column with the matching --...-column option (e.g. --text-column)"
        )


def _json_rows(file: Path, text: str) -> list[tuple[int, Any]]:
    """(line, value) of every JSON line, or of every element when the text is one JSON list."""
    if text.lstrip().startswith("["):
        return _json_array(file, text)
    rows = []
    for line, content in enumerate(text.split("\n"), start=1):
        if not content.strip():
            continue
        try:
            rows.append((line, json.loads(content)))
        except json.JSONDecodeError as error:
            raise DataError(
                f"{file}, line {line}: not valid JSON ({error.msg}, column {error.colno}); "
                "write one JSON object per line"
            ) from None
    return rows


def _json_array(file: Path, text: str) -> list[tuple[int, Any]]:
    try:
        elements = json.loads(text)
    except json.JSONDecodeError as error:
        raise DataError(
            f"{file}, line {error.lineno}: not valid JSON ({error.msg}, column {error.colno}); "
            "fix the file, or write one JSON object per line"
        ) from None
    # Decode the elements once more, one by one, to learn the line each starts on.
    decoder, rows = json.JSONDecoder(), []
    position = text.index("[") + 1
    line = text.count("\n", 0, position) + 1
    for _ in elements:
        start = _JSON_SEPARATORS.match(text, position).end()
        line += text.count("\n", position, start)
        value, position = decoder.raw_decode(text, start)
        rows.append((line, value))
        line += text.count("\n", start, position)
    return rows


def _json_object(file: Path, line: int, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise DataError(
            f'{file}, line {line}: expected a JSON object ({{"column": value, ...}}), got '
            f"{type(value).__name__}; write one object per record"
        )
    return value


# --- CoNLL and SQuAD ------------------------------------------------------------------------


def read_conll(path: PathLike) -> list[dict[str, Any]]:
    """Sentences of a CoNLL file: one token per line (token first, tag last, whitespace between
    columns), a blank line between sentences, ``-DOCSTART-`` lines skipped.

    Returns ``{"tokens": [...], "tags": [...], "_row": line of the first token}`` per sentence.
    """
    file = _existing_file(path)
    sentences: list[dict[str, Any]] = []
    tokens: list[str] = []
    tags: list[str] = []
    first = 0
    for line, content in enumerate([*read_text(file).split("\n"), ""], start=1):  # "": ends the last one
        fields = content.split()
        if not fields or fields[0] == "-DOCSTART-":
            if tokens:
                sentences.append({"tokens": tokens, "tags": tags, "_row": first})
                tokens, tags = [], []
        elif len(fields) < 2:
            raise DataError(
                f"{file}, line {line}: {content.strip()!r} has no tag; write the token and its tag "
                "separated by whitespace (e.g. 'Paris B-LOC'), one token per line"
            )
        else:
            first = first if tokens else line
            tokens.append(fields[0])
            tags.append(fields[-1])
    if not sentences:
        raise DataError(
            f"{file}: no sentences; write one 'token tag' line per token and a blank line between sentences"
        )
    return sentences


def read_squad(path: PathLike) -> list[dict[str, Any]]:
    """Questions of a SQuAD v1.1 / v2.0 JSON file, or JSON lines of flat records, as
    ``{"id", "question", "context", "answers": {"text": [...], "answer_start": [...]}, "_row"}``.

    Unanswerable v2 questions (``"is_impossible": true``) get empty answer lists. Every
    ``answer_start`` must be the character offset of its answer in the context.
    """
    file = _existing_file(path)
    text = read_text(file)
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        if error.msg != "Extra data":  # not several JSON values (JSON lines): the document breaks here
            raise DataError(
                f"{file}, line {error.lineno}: not valid JSON ({error.msg}, column {error.colno}); fix the file"
            ) from None
        document = None
    if isinstance(document, dict) and "data" in document:
        questions = _squad_document(file, text, document)
    else:
        questions = [_flat_question(file, line, row) for line, row in _json_rows(file, text)]
    if not questions:
        raise DataError(f"{file}: no questions; add at least one question with its context and answers")
    for question in questions:
        _check_answers(file, question)
    return questions


def _squad_document(file: Path, text: str, document: dict[str, Any]) -> list[dict[str, Any]]:
    line_of = _line_finder(text)
    questions = []
    try:
        for article in document["data"]:
            for paragraph in article["paragraphs"]:
                for qa in paragraph["qas"]:
                    answers = [] if qa.get("is_impossible") else qa.get("answers", [])
                    questions.append(
                        {
                            "id": qa["id"],
                            "question": qa["question"],
                            "context": paragraph["context"],
                            "answers": _answer_lists(answers),
                            "_row": line_of(qa["id"]),
                        }
                    )
    except (KeyError, TypeError, AttributeError) as error:
        problem = f"no key {error}" if isinstance(error, KeyError) else "a value of the wrong type"
        raise DataError(
            f"{file}: not in the SQuAD layout ({problem}); expected "
            '{"data": [{"paragraphs": [{"context": ..., "qas": [{"id", "question", "answers"}]}]}]}'
        ) from None
    return questions


def _line_finder(text: str) -> Callable[[Any], int]:
    """line_of(id): the line where the quoted id next appears in `text` (ids are looked up in file order)."""
    position, line = 0, 1

    def line_of(key: Any) -> int:
        nonlocal position, line
        found = text.find(json.dumps(str(key), ensure_ascii=False), position)
        if found >= 0:
            line += text.count("\n", position, found)
            position = found
        return line

    return line_of


def _flat_question(file: Path, line: int, row: Any) -> dict[str, Any]:
    row = _json_object(file, line, row)
    _check_columns(file, line, SQUAD_KEYS, row)
    try:
        answers = _answer_lists(row["answers"])
    except (KeyError, TypeError, AttributeError):
        raise DataError(
            f'{file}, line {line}: "answers" must be {{"text": [...], "answer_start": [...]}} or a list of '
            '{"text", "answer_start"} objects; fix the record'
        ) from None
    return {**{key: row[key] for key in SQUAD_KEYS}, "answers": answers, "_row": line}


def _answer_lists(answers: Any) -> dict[str, list]:
    """Answers as column lists, from either SQuAD's list of objects or the column form."""
    if isinstance(answers, dict):
        return {"text": list(answers["text"]), "answer_start": list(answers["answer_start"])}
    return {
        "text": [answer["text"] for answer in answers],
        "answer_start": [answer["answer_start"] for answer in answers],
    }


def _check_answers(file: Path, question: dict[str, Any]) -> None:
    where = f"{_where(file, question['_row'])}: question {question['id']!r}"
    context, answers = question["context"], question["answers"]
    if not isinstance(context, str) or not isinstance(question["question"], str):
        raise DataError(f"{where}: the question and the context must be strings; fix the record")
    if len(answers["text"]) != len(answers["answer_start"]):
        texts, starts = len(answers["text"]), len(answers["answer_start"])
        raise DataError(f"{where}: {texts} answer texts but {starts} answer_start values; give one start per answer")
    for answer, start in zip(answers["text"], answers["answer_start"]):
        valid_start = isinstance(start, int) and not isinstance(start, bool) and start >= 0
        found = context[start : start + len(answer)] if valid_start else ""
        if found != answer:
            raise DataError(
                f"{where}: the answer {answer!r} is not at answer_start {start!r} of the context (found {found!r}); "
                "answer_start must be the answer's character offset in the context"
            )


# --- audio ----------------------------------------------------------------------------------


def read_audio_manifest(path: PathLike, target: str) -> list[dict[str, Any]]:
    """The rows of a CSV/TSV/JSONL manifest with a ``path`` column and the `target` column
    (``"text"``, ``"label"`` or ``"labels"``) as ``{"path": Path, target: value, "_row"}``.

    Relative audio paths are read from the manifest's folder.
    """
    if target not in MANIFEST_TARGETS:
        raise ValueError(f"target must be one of {MANIFEST_TARGETS}, got {target!r}")
    folder = Path(path).parent
    examples = []
    for record in read_records(path, ("path", target)):
        where = _where(path, record["_row"])
        name, value = record["path"], record[target]
        if not isinstance(name, str) or not name.strip():
            raise DataError(f"{where}: the path is empty; write the audio file's path in the 'path' column")
        audio = folder / name.strip()
        if not audio.is_file():
            raise DataError(
                f"{where}: audio file {str(audio)!r} does not exist; fix the path "
                f"(relative paths are read from the manifest's folder, {str(folder)!r})"
            )
        if _is_blank(value):
            what = "transcript" if target == "text" else target
            raise DataError(f"{where}: the {what} is empty; fill it in or drop the row")
        examples.append({"path": audio, target: value, "_row": record["_row"]})
    return examples


def _is_blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip()) or (isinstance(value, list) and not value)


def read_audio(path: PathLike, sampling_rate: int = 16000) -> np.ndarray:
    """`data2vec.audio.io.load_audio` (mono float32 at `sampling_rate`) with a DataError naming the file."""
    from ..audio.io import load_audio  # here: the text and image tasks need no audio library

    try:
        return load_audio(path, sampling_rate=sampling_rate)
    except FileNotFoundError:
        raise DataError(f"{path}: no such audio file; check the path") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder; pass the path of an audio file") from None
    except ValueError as error:  # load_audio's messages name the file
        raise DataError(str(error)) from None


# --- images ---------------------------------------------------------------------------------


def _suffix_list() -> str:
    return ", ".join(sorted(IMAGE_SUFFIXES))


def _images_in(folder: Path, recursive: bool) -> list[Path]:
    """Image files under `folder`, sorted; hidden files and folders are left out."""
    candidates = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(
        file
        for file in candidates
        if file.suffix.lower() in IMAGE_SUFFIXES
        and not any(part.startswith(".") for part in file.relative_to(folder).parts)
        and file.is_file()
    )


def read_image_folder(root: PathLike) -> list[dict[str, Any]]:
    """``{"path": Path, "label": class-folder name}`` for every image of ``root/<class>/...``, sorted."""
    folder = _existing_folder(root, "one sub-folder of images per class")
    classes = sorted(child for child in folder.iterdir() if child.is_dir() and not child.name.startswith("."))
    if not classes:
        raise DataError(
            f"{folder}: no class folders; put each class's images in a sub-folder named after the class "
            "(e.g. cat/1.png, dog/2.png)"
        )
    examples = [
        {"path": image, "label": label.name} for label in classes for image in _images_in(label, recursive=True)
    ]
    if not examples:
        raise DataError(f"{folder}: no images in the class folders; add images ending in {_suffix_list()}")
    return examples


def read_segmentation_folder(root: PathLike) -> list[dict[str, Path]]:
    """``{"image", "mask"}`` pairs of ``root/images/<stem>.<ext>`` and ``root/masks/<stem>.png``, sorted."""
    folder = _existing_folder(root, "the images/ and masks/ folders")
    images, masks = folder / "images", folder / "masks"
    for needed in (images, masks):
        if not needed.is_dir():
            raise DataError(
                f"{folder}: no {needed.name}/ folder; put the images in images/ and their masks "
                "(PNGs of the same names) in masks/"
            )
    pairs = []
    for image in _images_in(images, recursive=False):
        mask = masks / f"{image.stem}.png"
        if not mask.is_file():
            raise DataError(
                f"{image}: no mask {str(mask)!r}; add the image's mask as a PNG of the same name, or remove the image"
            )
        pairs.append({"image": image, "mask": mask})
    if not pairs:
        raise DataError(f"{images}: no images; add images ending in {_suffix_list()}")
    return pairs


def _unreadable(path: PathLike, error: Exception) -> DataError:
    if isinstance(error, FileNotFoundError):
        return DataError(f"{path}: no such image file; check the path")
    return DataError(f"{path}: not a readable image ({error}); convert it to PNG or JPEG, or remove it")


def load_image(path: PathLike) -> Image.Image:
    """The image at `path` in RGB, turned upright by its EXIF orientation (as cameras save it)."""
    try:
        with Image.open(path) as image:
            return ImageOps.exif_transpose(image).convert("RGB")
    except IMAGE_ERRORS as error:
        raise _unreadable(path, error) from None


def load_mask(path: PathLike, size: tuple[int, int]) -> np.ndarray:
    """(height, width) int64 class ids of a palette or grayscale PNG; `size` is its image's (width, height)."""
    try:
        with Image.open(path) as mask:
            mode, mask_size = mask.mode, mask.size
            class_ids = np.array(mask) if mode in MASK_MODES else None
    except IMAGE_ERRORS as error:
        raise _unreadable(path, error) from None
    if class_ids is None:
        raise DataError(
            f"{path}: the mask has mode {mode!r} (colours, not class ids); save masks as palette ('P') or "
            "grayscale ('L') PNGs whose pixel values are the class ids"
        )
    if mask_size != tuple(size):
        raise DataError(
            f"{path}: the mask is {mask_size[0]}x{mask_size[1]} pixels but its image is {size[0]}x{size[1]} "
            "(width x height); give every mask the size of its image"
        )
    return class_ids.astype(np.int64)


def label_set(values: Iterable[Any]) -> list[str]:
    """The sorted distinct labels, as strings."""
    return sorted({str(value) for value in values})
