"""The text fine-tuning tasks of ``data2vec finetune``.

==========================  =====================================  ==========================
task                        data                                   best checkpoint by
==========================  =====================================  ==========================
``text-classification``     CSV/JSONL: text (+ text_pair), label   accuracy (+ f1_macro)
``text-regression``         CSV/JSONL: text (+ text_pair), number  mse (lower is better)
``token-classification``    CoNLL: a token and its tag per line    entity-level f1
``question-answering``      SQuAD JSON (v1.1 or v2.0)              SQuAD f1 (+ exact_match)
``multiple-choice``         CSV/JSONL: text, choice0, choice1, ..  accuracy
                            (JSONL also ``choices``: a list), label
                            = the index of the right choice
``fill-mask``               CSV/JSONL: text                        masked-token loss
==========================  =====================================  ==========================

Every task reads its file into plain dict examples (with ``_file`` and ``_row``, so that errors
name the place in the file), and ``prepare`` builds the batching (``collate``), the metric
(``evaluate``) and the saving of the model with its tokenizer.

Choices that follow the reference library's example scripts (``run_glue``, ``run_ner``,
``run_qa``, ``run_swag``, ``run_mlm``):

- token classification scores the first sub-token of every word (the others and the special
  tokens are -100), and the tokenizer is loaded (and saved) with ``add_prefix_space=True``,
  which a byte-level BPE needs for words given one by one;
- question answering cuts a long context into windows of ``max_length`` tokens that overlap by
  ``doc_stride`` tokens; a window without the answer is trained to point at ``<s>`` (position
  0); the prediction is the best span (start <= end, at most 30 tokens, inside the context) over
  all windows of a question (for SQuAD v2 data the empty answer when the ``<s>`` score is higher);
- masked language modelling masks 15% of the tokens (``mlm_probability``), of which 80% become
  ``<mask>``, 10% a random token and 10% stay; special tokens are never masked.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from . import metrics
from .data import DataError, label_set, read_conll, read_records, read_squad
from .tasks import Prepared, Task, batch_outputs, eval_batch_size, load_model, location, register, saver

TEXT = "data2vec-text"

DEFAULTS: dict[str, Any] = {
    "text_column": "text",
    "text_pair_column": "text_pair",
    "label_column": "label",
    "max_length": 512,
    "doc_stride": 128,
    "mlm_probability": 0.15,
    "eval_batch_size": 32,
}
MAX_ANSWER_TOKENS = 30  # the longest predicted answer span (run_qa's max_answer_length)
MAX_QUESTION_TOKENS = 64  # a longer question is cut (BERT's max_query_length)
MAX_CHOICES = 64  # multiple choice: the columns choice0 .. choice63 are looked for
_UNLIMITED = 10**20  # a tokenizer model_max_length above this means "no limit"


def _option(options: dict[str, Any] | None, name: str) -> Any:
    value = (options or {}).get(name)
    return DEFAULTS[name] if value is None else value


def _load_tokenizer(source: str | Path, **overrides: Any) -> Any:
    from ..auto import AutoProcessor

    return AutoProcessor.from_pretrained(source, **overrides)


def max_length_of(options: dict[str, Any] | None, tokenizer: Any, model: nn.Module) -> int:
    """``max_length`` of the options, within what the model's position table and the
    tokenizer's ``model_max_length`` allow."""
    config = model.config
    limits = [int(_option(options, "max_length")), config.max_position_embeddings - (config.pad_token_id or 0) - 1]
    if tokenizer.model_max_length <= _UNLIMITED:
        limits.append(int(tokenizer.model_max_length))
    return min(limits)


def _check_not_empty(examples: Sequence[dict], what: str) -> None:
    if not examples:
        raise DataError(f"no {what} to train on: the training data is empty")


# ---------------------------------------------------------------------- reading text records


def _text_value(record: dict, column: str, place: str) -> str:
    value = record[column]
    if not isinstance(value, str):
        raise DataError(f"{place}: column {column!r} must hold text, got {value!r:.60}")
    return value


def _read_texts(path: str | Path, options: dict[str, Any] | None, label: str | None) -> list[dict]:
    """Records of ``path`` as {"text", "text_pair"?, "label"?, "_file", "_row"}. ``label``:
    None (no label column), "class" (kept as str) or "number" (float)."""
    text_column = _option(options, "text_column")
    pair_column = _option(options, "text_pair_column")
    label_column = _option(options, "label_column")
    columns = [text_column] + ([label_column] if label is not None else [])
    records = read_records(path, columns, optional=[pair_column] if label is not None else [])
    with_pair = [pair_column in record for record in records]
    examples = []
    for record, has_pair in zip(records, with_pair):
        place = location({"_file": str(path), "_row": record["_row"]})
        if any(with_pair) and not has_pair:
            raise DataError(
                f"{place}: column {pair_column!r} is missing here but given in other rows: give every row a "
                "second text, or none"
            )
        example = {"text": _text_value(record, text_column, place), "_file": str(path), "_row": record["_row"]}
        if has_pair:
            example["text_pair"] = _text_value(record, pair_column, place)
        if label == "class":
            value = record[label_column]
            if value is None or (isinstance(value, str) and not value.strip()):
                raise DataError(f"{place}: the label (column {label_column!r}) is empty")
            example["label"] = str(value)
        elif label == "number":
            example["label"] = _number(record[label_column], label_column, place)
        examples.append(example)
    return examples


def _number(value: Any, column: str, place: str) -> float:
    try:
        if isinstance(value, bool):
            raise ValueError
        number = float(value)
    except (TypeError, ValueError):
        raise DataError(
            f"{place}: the label (column {column!r}) must be a number for text-regression, got {value!r:.40}"
        ) from None
    if not math.isfinite(number):
        raise DataError(f"{place}: the label (column {column!r}) must be a finite number, got {value!r:.40}")
    return number


def _encode_texts(tokenizer: Any, examples: Sequence[dict], max_length: int) -> dict[str, torch.Tensor]:
    """input_ids + attention_mask of the texts (and their second texts), padded to the longest."""
    texts = [example["text"] for example in examples]
    pairs = [example["text_pair"] for example in examples] if "text_pair" in examples[0] else None
    batch = tokenizer(texts, pairs, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}


def _labeled_texts(
    tokenizer: Any, model: nn.Module, options: dict[str, Any], labels: Callable[[Sequence[dict]], torch.Tensor]
) -> tuple[Callable[[list[dict]], dict[str, torch.Tensor]], int]:
    """The collate function of one label per text (pair): the texts' ``input_ids`` and
    ``attention_mask`` cut to the model's length, and ``labels(examples)``; and the evaluation
    batch size."""
    max_length = max_length_of(options, tokenizer, model)

    def collate(examples: list[dict]) -> dict[str, torch.Tensor]:
        batch = _encode_texts(tokenizer, examples, max_length)
        batch["labels"] = labels(examples)
        return batch

    return collate, eval_batch_size(options, DEFAULTS["eval_batch_size"])


def _class_ids(examples: Sequence[dict], label2id: dict[str, int], key: str = "label") -> list[int]:
    """The class ids of the examples' labels; a label the model does not know is a DataError."""
    ids = []
    for example in examples:
        index = label2id.get(example[key])
        if index is None:
            raise DataError(_unknown_label(location(example), example[key], label2id))
        ids.append(index)
    return ids


def _unknown_label(place: str, label: str, label2id: dict[str, int]) -> str:
    known = sorted(label2id, key=label2id.get)
    shown = ", ".join(known[:20]) + (", ..." if len(known) > 20 else "")
    return (
        f"{place}: label {label!r} is not among the labels of the training data ({shown}); "
        "add examples of it to the training data or remove it"
    )


def _need_two_labels(labels: list[str], examples: Sequence[dict], what: str) -> None:
    if len(labels) < 2:
        source = examples[0].get("_file", "the training data")
        raise DataError(
            f"{source}: every {what} has the label {labels[0]!r}; a classifier needs at least two labels"
        )


# ---------------------------------------------------------------------- text classification


class TextClassification(Task):
    """Sequence (pair) classification: one label per text."""

    def read(self, path: str | Path, options: dict[str, Any]) -> list[dict]:
        return _read_texts(path, options, label="class")

    def prepare(self, model_source: str | Path, train_examples: list[dict], options: dict[str, Any]) -> Prepared:
        _check_not_empty(train_examples, "examples")
        tokenizer = _load_tokenizer(model_source)
        labels = label_set(example["label"] for example in train_examples)
        _need_two_labels(labels, train_examples, "example")
        model = load_model(self, model_source, labels, problem_type="single_label_classification")
        label2id = dict(model.config.label2id)
        collate, batch_size = _labeled_texts(
            tokenizer, model, options, lambda examples: torch.tensor(_class_ids(examples, label2id), dtype=torch.long)
        )

        def evaluate(model: nn.Module, examples: list[dict]) -> dict[str, float]:
            predictions, truth, loss_sum = [], [], 0.0
            for chunk, batch, output in batch_outputs(model, examples, batch_size, collate):
                predictions += output.logits.argmax(-1).tolist()
                truth += batch["labels"].tolist()
                loss_sum += float(output.loss) * len(chunk)
            return {
                "accuracy": metrics.accuracy(predictions, truth),
                "f1_macro": metrics.f1_macro(predictions, truth),
                "loss": loss_sum / max(1, len(examples)),
            }

        def check(examples: list[dict]) -> None:
            _class_ids(examples, label2id)

        return Prepared(model, tokenizer, collate, evaluate, saver(tokenizer), check)


class TextRegression(Task):
    """One number per text (pair): a single-output head trained with mean squared error."""

    def read(self, path: str | Path, options: dict[str, Any]) -> list[dict]:
        return _read_texts(path, options, label="number")

    def prepare(self, model_source: str | Path, train_examples: list[dict], options: dict[str, Any]) -> Prepared:
        from ..auto import AutoConfig

        _check_not_empty(train_examples, "examples")
        tokenizer = _load_tokenizer(model_source)
        overrides: dict[str, Any] = {"problem_type": "regression"}
        checkpoint = AutoConfig.from_pretrained(model_source)
        if checkpoint.num_labels != 1:
            overrides.update(num_labels=1, ignore_mismatched_sizes=True)
            warnings.warn(
                f"{self.name}: the checkpoint's head has {checkpoint.num_labels} outputs; a new head with one "
                "output (the number) is trained from scratch",
                UserWarning,
                stacklevel=2,
            )
        model = self.model_class().from_pretrained(model_source, **overrides)
        model.train()
        collate, batch_size = _labeled_texts(
            tokenizer, model, options,
            lambda examples: torch.tensor([example["label"] for example in examples], dtype=torch.float32),
        )  # fmt: skip

        def evaluate(model: nn.Module, examples: list[dict]) -> dict[str, float]:
            predictions, targets = [], []
            for _, batch, output in batch_outputs(model, examples, batch_size, collate):
                predictions += output.logits.float().reshape(-1).tolist()
                targets += batch["labels"].tolist()
            return dict(metrics.regression_metrics(predictions, targets))

        return Prepared(model, tokenizer, collate, evaluate, saver(tokenizer), lambda examples: None)


# ---------------------------------------------------------------------- token classification


class TokenClassification(Task):
    """A tag per word (named entities, parts of speech) from a CoNLL file."""

    def read(self, path: str | Path, options: dict[str, Any]) -> list[dict]:
        return [{**sentence, "_file": str(path)} for sentence in read_conll(path)]

    def prepare(self, model_source: str | Path, train_examples: list[dict], options: dict[str, Any]) -> Prepared:
        _check_not_empty(train_examples, "sentences")
        # Words are encoded one by one: a byte-level BPE needs the space before each of them.
        tokenizer = _load_tokenizer(model_source, add_prefix_space=True)
        labels = label_set(tag for example in train_examples for tag in example["tags"])
        _need_two_labels(labels, train_examples, "word")
        model = load_model(self, model_source, labels)
        label2id = dict(model.config.label2id)
        id2label = dict(model.config.id2label)
        max_length = max_length_of(options, tokenizer, model)
        batch_size = eval_batch_size(options, DEFAULTS["eval_batch_size"])

        def check(examples: list[dict]) -> None:
            for example in examples:
                for offset, tag in enumerate(example["tags"]):
                    if tag not in label2id:
                        row = example.get("_row")
                        place = location({**example, "_row": None if row is None else row + offset})
                        raise DataError(_unknown_label(place, tag, label2id))

        def encode(examples: list[dict]) -> tuple[dict[str, torch.Tensor], list[dict[int, int]]]:
            """The batch and, per sentence, word index -> position of its first sub-token (words
            cut off by max_length have none)."""
            check(examples)
            words = [list(example["tokens"]) for example in examples]
            encoded = tokenizer(
                words,
                is_split_into_words=True,
                padding=True,
                truncation=True,
                max_length=max_length,
                return_tensors="pt",
            )
            labels = torch.full_like(encoded["input_ids"], -100)
            first_tokens = []
            for row, example in enumerate(examples):
                first: dict[int, int] = {}
                for position, word in enumerate(encoded.word_ids(row)):
                    if word is not None and word not in first:
                        first[word] = position
                        labels[row, position] = label2id[example["tags"][word]]
                first_tokens.append(first)
            batch = {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"], "labels": labels}
            return batch, first_tokens

        def collate(examples: list[dict]) -> dict[str, torch.Tensor]:
            return encode(examples)[0]

        def evaluate(model: nn.Module, examples: list[dict]) -> dict[str, float]:
            true_tags, predicted_tags = [], []
            for chunk, (_, first_tokens), output in batch_outputs(model, examples, batch_size, encode):
                classes = output.logits.argmax(-1).tolist()
                for row, example in enumerate(chunk):
                    first = first_tokens[row]
                    # a word cut off by max_length is predicted outside any entity
                    predicted = [
                        id2label[classes[row][first[word]]] if word in first else "O"
                        for word in range(len(example["tokens"]))
                    ]
                    true_tags.append(list(example["tags"]))
                    predicted_tags.append(predicted)
            return dict(metrics.entity_scores(true_tags, predicted_tags))

        return Prepared(model, tokenizer, collate, evaluate, saver(tokenizer), check)


# ---------------------------------------------------------------------- question answering


def context_windows(context_length: int, room: int, doc_stride: int) -> list[tuple[int, int]]:
    """[start, end) ranges of context tokens of at most ``room`` tokens, each starting
    ``room - doc_stride`` tokens after the one before (so that neighbours share ``doc_stride``
    tokens), until one reaches the end. An empty context gives one empty window."""
    if not 0 <= doc_stride < room:
        raise ValueError(f"doc_stride ({doc_stride}) must be at least 0 and less than the window's room ({room})")
    windows, start = [], 0
    while True:
        end = min(start + room, context_length)
        windows.append((start, end))
        if end >= context_length:
            return windows
        start += room - doc_stride


def answer_tokens(offsets: Sequence[tuple[int, int]], window: tuple[int, int], start_char: int, end_char: int):
    """The first and last context token (indices into ``offsets``) of the answer that covers the
    characters [start_char, end_char), or None when the window does not hold all of it. The
    first token is the first that ends after ``start_char``, the last the last that starts
    before ``end_char`` (so a space at either end of the answer takes no token)."""
    first, last = window
    if first == last or offsets[first][0] > start_char or offsets[last - 1][1] < end_char:
        return None
    start = min(index for index in range(first, last) if offsets[index][1] > start_char)
    end = max((index for index in range(first, last) if offsets[index][0] < end_char), default=start)
    return start, max(start, end)


def best_spans(
    start_logits: torch.Tensor,
    end_logits: torch.Tensor,
    first: int,
    last: int,
    max_tokens: int = MAX_ANSWER_TOKENS,
    count: int = 1,
) -> list[tuple[float, int, int]]:
    """The ``count`` best (score, start, end) spans start <= end < start + max_tokens within
    positions [first, last), by start_logits[start] + end_logits[end], best first (fewer when the
    range holds fewer spans; none for an empty range)."""
    if last <= first:
        return []
    starts = start_logits[first:last].float()
    ends = end_logits[first:last].float()
    scores = starts[:, None] + ends[None, :]  # (start, end)
    offsets = torch.arange(last - first)
    length = offsets[None, :] - offsets[:, None]  # end - start
    scores = scores.masked_fill((length < 0) | (length >= max_tokens), float("-inf")).flatten()
    values, indices = scores.topk(min(count, scores.numel()))
    spans = []
    for value, index in zip(values.tolist(), indices.tolist()):
        if value == float("-inf"):
            break
        start, end = divmod(index, last - first)
        spans.append((value, first + start, first + end))
    return spans


def best_span(
    start_logits: torch.Tensor, end_logits: torch.Tensor, first: int, last: int, max_tokens: int = MAX_ANSWER_TOKENS
) -> tuple[float, int, int] | None:
    """(score, start, end) of the span start <= end < start + max_tokens within positions
    [first, last) that maximises start_logits[start] + end_logits[end]; None for an empty range."""
    spans = best_spans(start_logits, end_logits, first, last, max_tokens)
    return spans[0] if spans else None


class QuestionAnswering(Task):
    """Extractive question answering on SQuAD-style data."""

    def read(self, path: str | Path, options: dict[str, Any]) -> list[dict]:
        return [{**example, "_file": str(path)} for example in read_squad(path)]

    def prepare(self, model_source: str | Path, train_examples: list[dict], options: dict[str, Any]) -> Prepared:
        _check_not_empty(train_examples, "questions")
        tokenizer = _load_tokenizer(model_source)
        model = load_model(self, model_source)
        max_length = max_length_of(options, tokenizer, model)
        doc_stride = int(_option(options, "doc_stride"))
        # <s> question </s></s> context </s>: the question gives way so that each window holds
        # more than doc_stride context tokens.
        max_question = min(MAX_QUESTION_TOKENS, max_length - 4 - doc_stride - 1)
        if doc_stride < 0 or max_question < 1:
            raise ValueError(
                f"max_length={max_length} leaves no room for a question and more than doc_stride={doc_stride} "
                f"context tokens: use max_length > doc_stride + 5 (e.g. doc_stride={max(0, (max_length - 6) // 4)})"
            )
        # SQuAD v2 data (questions without an answer) teaches the model to say "no answer".
        may_be_unanswerable = any(not example["answers"]["text"] for example in train_examples)
        batch_size = eval_batch_size(options, DEFAULTS["eval_batch_size"])
        special = (tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id)

        def featurize(examples: list[dict]) -> tuple[dict[str, torch.Tensor], list[dict]]:
            """Every window of every question as one row; ``windows`` says, per row, which example
            it belongs to, where its context tokens sit and their character offsets."""
            cls_id, sep_id, pad_id = special
            rows, windows = [], []
            for number, example in enumerate(examples):
                question = tokenizer(example["question"], add_special_tokens=False)["input_ids"][:max_question]
                context = tokenizer(example["context"], add_special_tokens=False, return_offsets_mapping=True)
                ids, offsets = context["input_ids"], [tuple(pair) for pair in context["offset_mapping"]]
                prefix = [cls_id, *question, sep_id, sep_id]
                room = max_length - len(prefix) - 1
                answers = example["answers"]
                target = None
                if answers["text"] and answers["text"][0]:
                    start_char = int(answers["answer_start"][0])
                    target = (start_char, start_char + len(answers["text"][0]))
                for first, last in context_windows(len(ids), room, doc_stride):
                    start_position = end_position = 0  # <s>: the answer is not in this window
                    span = answer_tokens(offsets, (first, last), *target) if target is not None else None
                    if span is not None:
                        start_position = len(prefix) + span[0] - first
                        end_position = len(prefix) + span[1] - first
                    rows.append((prefix + ids[first:last] + [sep_id], start_position, end_position))
                    windows.append({
                        "example": number,
                        "context_start": len(prefix),
                        "offsets": offsets[first:last],
                    })
            longest = max(len(row[0]) for row in rows)
            input_ids = torch.full((len(rows), longest), pad_id, dtype=torch.long)
            attention_mask = torch.zeros((len(rows), longest), dtype=torch.long)
            for index, (ids, _, _) in enumerate(rows):
                input_ids[index, : len(ids)] = torch.tensor(ids)
                attention_mask[index, : len(ids)] = 1
            batch = {
                "input_ids": input_ids,
                "attention_mask": attention_mask,
                "start_positions": torch.tensor([row[1] for row in rows], dtype=torch.long),
                "end_positions": torch.tensor([row[2] for row in rows], dtype=torch.long),
            }
            return batch, windows

        def collate(examples: list[dict]) -> dict[str, torch.Tensor]:
            return featurize(examples)[0]

        def predict(model: nn.Module, examples: list[dict]) -> dict[str, str]:
            """The answer text of every question id."""
            answers: dict[str, str] = {}

            def inputs_and_windows(chunk: list[dict]) -> tuple[dict[str, torch.Tensor], list[dict]]:
                batch, windows = featurize(chunk)  # the model gets no answer positions: no loss
                return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}, windows

            for chunk, (_, windows), output in batch_outputs(model, examples, batch_size, inputs_and_windows):
                best: list[tuple[float, str] | None] = [None] * len(chunk)
                null: list[float] = [math.inf] * len(chunk)
                for row, window in enumerate(windows):
                    start_logits, end_logits = output.start_logits[row], output.end_logits[row]
                    number, first = window["example"], window["context_start"]
                    null[number] = min(null[number], float(start_logits[0] + end_logits[0]))
                    span = best_span(start_logits, end_logits, first, first + len(window["offsets"]))
                    if span is None:
                        continue
                    score, start, end = span
                    if best[number] is None or score > best[number][0]:
                        context = chunk[number]["context"]
                        text = context[window["offsets"][start - first][0] : window["offsets"][end - first][1]]
                        best[number] = (score, text)
                for number, example in enumerate(chunk):
                    candidate = best[number]
                    if candidate is None or (may_be_unanswerable and null[number] > candidate[0]):
                        answers[example["id"]] = ""
                    else:
                        answers[example["id"]] = candidate[1]
            return answers

        def evaluate(model: nn.Module, examples: list[dict]) -> dict[str, float]:
            check(examples)
            predictions = predict(model, examples)
            references = {example["id"]: list(example["answers"]["text"]) for example in examples}
            return dict(metrics.squad_scores(predictions, references))

        def check(examples: list[dict]) -> None:
            seen: dict[str, str] = {}
            for example in examples:
                if example["id"] in seen:
                    raise DataError(
                        f"{location(example)}: question id {example['id']!r} is used twice (also at "
                        f"{seen[example['id']]}); give every question its own id"
                    )
                seen[example["id"]] = location(example)

        return Prepared(model, tokenizer, collate, evaluate, saver(tokenizer), check)


# ---------------------------------------------------------------------- multiple choice


def _choices(record: dict, place: str) -> list[str]:
    if "choices" in record:
        choices = record["choices"]
        if not isinstance(choices, list) or not all(isinstance(choice, str) for choice in choices):
            raise DataError(f"{place}: 'choices' must be a list of texts, got {choices!r:.60}")
        return list(choices)
    choices = []
    while f"choice{len(choices)}" in record:
        choices.append(_text_value(record, f"choice{len(choices)}", place))
    return choices


class MultipleChoice(Task):
    """Pick the right continuation/answer among the choices of each text."""

    def read(self, path: str | Path, options: dict[str, Any]) -> list[dict]:
        text_column = _option(options, "text_column")
        label_column = _option(options, "label_column")
        optional = ["choices", *(f"choice{index}" for index in range(MAX_CHOICES))]
        examples = []
        for record in read_records(path, [text_column, label_column], optional=optional):
            place = location({"_file": str(path), "_row": record["_row"]})
            choices = _choices(record, place)
            if len(choices) < 2:
                raise DataError(
                    f"{place}: found {len(choices)} choice(s); give at least two in columns choice0, choice1, ... "
                    "(or, in JSON lines, a list under 'choices')"
                )
            if examples and len(choices) != len(examples[0]["choices"]):
                raise DataError(
                    f"{place}: {len(choices)} choices, but line {examples[0]['_row']} has "
                    f"{len(examples[0]['choices'])}; every row of a file needs the same number of choices"
                )
            value = record[label_column]
            text = str(value).strip() if not isinstance(value, bool) else ""
            if not text.isdigit() or int(text) >= len(choices):
                raise DataError(
                    f"{place}: the label (column {label_column!r}) must be the index of the right choice, "
                    f"0 to {len(choices) - 1}, got {value!r:.40}"
                )
            examples.append({
                "text": _text_value(record, text_column, place),
                "choices": choices,
                "label": int(text),
                "_file": str(path),
                "_row": record["_row"],
            })
        return examples

    def prepare(self, model_source: str | Path, train_examples: list[dict], options: dict[str, Any]) -> Prepared:
        _check_not_empty(train_examples, "examples")
        tokenizer = _load_tokenizer(model_source)
        model = load_model(self, model_source)
        max_length = max_length_of(options, tokenizer, model)
        batch_size = eval_batch_size(options, DEFAULTS["eval_batch_size"])

        def collate(examples: list[dict]) -> dict[str, torch.Tensor]:
            count = len(examples[0]["choices"])
            if any(len(example["choices"]) != count for example in examples):
                raise DataError(
                    "the examples of one batch have different numbers of choices: give every row of a file the "
                    "same number"
                )
            texts = [example["text"] for example in examples for _ in range(count)]
            choices = [choice for example in examples for choice in example["choices"]]
            encoded = tokenizer(
                texts, choices, padding=True, truncation=True, max_length=max_length, return_tensors="pt"
            )
            shape = (len(examples), count, encoded["input_ids"].shape[-1])  # (batch, choices, length)
            return {
                "input_ids": encoded["input_ids"].view(shape),
                "attention_mask": encoded["attention_mask"].view(shape),
                "labels": torch.tensor([example["label"] for example in examples], dtype=torch.long),
            }

        def evaluate(model: nn.Module, examples: list[dict]) -> dict[str, float]:
            predictions, truth, loss_sum = [], [], 0.0
            for chunk, batch, output in batch_outputs(model, examples, batch_size, collate):
                predictions += output.logits.argmax(-1).tolist()
                truth += batch["labels"].tolist()
                loss_sum += float(output.loss) * len(chunk)
            return {"accuracy": metrics.accuracy(predictions, truth), "loss": loss_sum / max(1, len(examples))}

        return Prepared(model, tokenizer, collate, evaluate, saver(tokenizer), lambda examples: None)


# ---------------------------------------------------------------------- masked language modelling


def mask_tokens(
    input_ids: torch.Tensor,
    maskable: torch.Tensor,
    *,
    probability: float,
    mask_token_id: int,
    vocab_size: int,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's masking: each ``maskable`` token is chosen with ``probability`` (at least one per
    batch when any is maskable); of the chosen, 80% become ``mask_token_id``, 10% a random id
    below ``vocab_size`` and 10% stay. Returns (the new input ids, labels: the original id where
    chosen, -100 elsewhere)."""
    chosen = (torch.rand(input_ids.shape, generator=generator) < probability) & maskable
    if not chosen.any() and maskable.any():  # a batch with nothing to predict has no loss
        candidates = maskable.flatten().nonzero().squeeze(1)
        pick = candidates[torch.randint(len(candidates), (1,), generator=generator)]
        chosen = chosen.flatten().index_fill(0, pick, True).view_as(chosen)
    labels = input_ids.masked_fill(~chosen, -100)
    draw = torch.rand(input_ids.shape, generator=generator)
    random_ids = torch.randint(vocab_size, input_ids.shape, generator=generator)
    masked = input_ids.masked_fill(chosen & (draw < 0.8), mask_token_id)
    masked = torch.where(chosen & (draw >= 0.8) & (draw < 0.9), random_ids, masked)
    return masked, labels


class FillMask(Task):
    """Masked language modelling on the user's texts (domain adaptation)."""

    def read(self, path: str | Path, options: dict[str, Any]) -> list[dict]:
        text_column = _option(options, "text_column")
        examples = []
        for record in read_records(path, [text_column]):
            place = location({"_file": str(path), "_row": record["_row"]})
            text = _text_value(record, text_column, place)
            if text.strip():  # blank lines hold nothing to predict (run_mlm drops them too)
                examples.append({"text": text, "_file": str(path), "_row": record["_row"]})
        if not examples:
            raise DataError(f"{path}: every text (column {text_column!r}) is empty")
        return examples

    def prepare(self, model_source: str | Path, train_examples: list[dict], options: dict[str, Any]) -> Prepared:
        _check_not_empty(train_examples, "texts")
        tokenizer = _load_tokenizer(model_source)
        model = load_model(self, model_source)
        max_length = max_length_of(options, tokenizer, model)
        probability = float(_option(options, "mlm_probability"))
        if not 0 < probability < 1:
            raise ValueError(f"mlm_probability must be between 0 and 1, got {probability}")
        vocab_size = min(len(tokenizer), model.config.vocab_size)
        batch_size = eval_batch_size(options, DEFAULTS["eval_batch_size"])

        def masked_batch(examples: list[dict], generator: torch.Generator) -> dict[str, torch.Tensor]:
            encoded = tokenizer(
                [example["text"] for example in examples],
                padding=True,
                truncation=True,
                max_length=max_length,
                return_special_tokens_mask=True,
                return_tensors="pt",
            )
            maskable = (encoded["special_tokens_mask"] == 0) & (encoded["attention_mask"] == 1)
            input_ids, labels = mask_tokens(
                encoded["input_ids"],
                maskable,
                probability=probability,
                mask_token_id=tokenizer.mask_token_id,
                vocab_size=vocab_size,
                generator=generator,
            )
            return {"input_ids": input_ids, "attention_mask": encoded["attention_mask"], "labels": labels}

        def collate(examples: list[dict]) -> dict[str, torch.Tensor]:
            # Seeded from torch's global generator, which the trainer seeds and restores on resume:
            # a resumed run masks its batches as the uninterrupted run did.
            seed = int(torch.randint(0, 2**62, (1,)))
            return masked_batch(examples, torch.Generator().manual_seed(seed))

        def evaluate(model: nn.Module, examples: list[dict]) -> dict[str, float]:
            generator = torch.Generator().manual_seed(0)  # the same masks at every evaluation
            loss_sum, correct, count = 0.0, 0, 0
            batches = batch_outputs(model, examples, batch_size, lambda chunk: masked_batch(chunk, generator))
            for _, batch, output in batches:
                labels = batch["labels"].to(output.logits.device)
                scored = labels != -100
                logits = output.logits[scored].float()
                loss_sum += float(F.cross_entropy(logits, labels[scored], reduction="sum"))
                correct += int((logits.argmax(-1) == labels[scored]).sum())
                count += int(scored.sum())
            loss = loss_sum / max(1, count)
            return {"loss": loss, "accuracy": correct / max(1, count), "perplexity": math.exp(min(loss, 700.0))}

        return Prepared(model, tokenizer, collate, evaluate, saver(tokenizer), lambda examples: None)


# ---------------------------------------------------------------------- the registry

register(TextClassification("text-classification", TEXT, "AutoModelForSequenceClassification", "accuracy", True))
register(TextRegression("text-regression", TEXT, "AutoModelForSequenceClassification", "mse", False))
register(TokenClassification("token-classification", TEXT, "AutoModelForTokenClassification", "f1", True))
register(QuestionAnswering("question-answering", TEXT, "AutoModelForQuestionAnswering", "f1", True))
register(MultipleChoice("multiple-choice", TEXT, "AutoModelForMultipleChoice", "accuracy", True))
register(FillMask("fill-mask", TEXT, "AutoModelForMaskedLM", "loss", False))
