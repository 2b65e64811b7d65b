"""The text task pipelines: fill-mask, text-classification, token-classification,
question-answering and text-generation.

Each returns, for one input, what the reference library's pipeline of the task returns (its keys,
its shapes, its scores), with these choices of our own:

- fill-mask and text classification cut a text to what the model reads (its position table, the
  tokenizer's ``model_max_length``) instead of failing inside the model; token classification and
  question answering split a long text into overlapping windows, so that no word goes unread;
  text generation refuses a prompt that leaves no room for ``max_new_tokens``;
- a list of inputs always gives a list of results, also a list of one (the reference's fill-mask
  gives the bare result for a list of one text);
- text generation runs on the model's key/value cache, with the model's own positions (RoBERTa's,
  counted from ``pad_token_id + 1``): the reference's ``generate()`` counts them from 0, so its
  texts differ from what the model itself predicts.
"""

from __future__ import annotations

import functools
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..training.tasks_text import MAX_QUESTION_TOKENS, best_spans, context_windows, max_length_of
from .base import (
    FUNCTION_TO_APPLY,
    Option,
    Pipeline,
    check_score_function,
    check_top_k,
    class_scores,
    default_score_function,
    expand_texts,
    looks_like_text_file,
    pad,
    positive_int,
)

TEXT_COLUMN = Option("text_column", "text", "the column of the texts in CSV/TSV/JSONL inputs", cli_only=True)


def _labels(value: str) -> list[str]:
    """A command-line list of labels: comma-separated."""
    return [label.strip() for label in value.split(",") if label.strip()]


def _number(name: str, value: Any, low: float, high: float | None = None) -> float:
    """``value`` as a float in (low, high]; a ValueError naming the option otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= low or (high and value > high):
        bounds = f"above {low}" + (f" and at most {high}" if high else "")
        raise ValueError(f"{name} must be a number {bounds}, got {value!r}")
    return float(value)


def _text(value: Any, what: str = "a text") -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected {what} (a str), got {type(value).__name__}: {value!r:.60}")
    return value


# ---------------------------------------------------------------------- shared by the text tasks


class TextPipeline(Pipeline):
    """A text task: a tokenizer, right-padded batches of token ids, and per-token logits back."""

    modality = "text"
    unit = "text"

    @functools.cached_property
    def max_length(self) -> int:
        """The most tokens (special tokens included) the model reads: its position table and the
        tokenizer's ``model_max_length`` decide."""
        return max_length_of({"max_length": sys.maxsize}, self.processor, self.model)

    def encode(self, text: str, text_pair: str | None = None) -> dict[str, Any]:
        """The tokenizer's encoding of a text (pair), cut to ``max_length`` tokens."""
        return self.processor(text, text_pair, truncation=True, max_length=self.max_length)

    def length(self, piece: dict[str, Any]) -> int:
        return len(piece["input_ids"])

    def collate(self, pieces: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        input_ids, attention_mask = pad([piece["input_ids"] for piece in pieces], self.processor.pad_token_id)
        return {"input_ids": input_ids, "attention_mask": attention_mask}

    def forward(self, batch: dict[str, torch.Tensor], **options: Any) -> Any:
        return self.model(**batch, drop_padding=True)  # the blocks run on the real tokens only

    def unbatch(self, outputs: Any, pieces: Sequence[dict[str, Any]]) -> list[torch.Tensor]:
        """Each piece's logits, (tokens, classes) without padding."""
        return [outputs.logits[row, : len(piece["input_ids"])].float().cpu() for row, piece in enumerate(pieces)]


# ---------------------------------------------------------------------- fill-mask


class FillMaskPipeline(TextPipeline):
    """The most likely tokens for the ``<mask>`` of a text.

    Result (as the reference's): ``[{"score", "token", "token_str", "sequence"}, ...]``, the
    ``top_k`` best first; a text with several masks gives one such list per mask, each
    ``sequence`` filling only its mask and keeping the special tokens (the reference's choice, so
    that the other masks stay visible). A text without a mask is a ValueError.
    """

    task = "fill-mask"
    auto_class = "AutoModelForMaskedLM"
    options = (Option("top_k", 5, "how many tokens to give per mask (default 5)"), TEXT_COLUMN)

    def check_options(self, options: dict[str, Any]) -> dict[str, Any]:
        options = super().check_options(options)
        positive_int("top_k", options["top_k"])
        return options

    def preprocess(self, item: Any, **options: Any) -> list[dict[str, Any]]:
        text = _text(item)
        ids = torch.tensor(self.encode(text)["input_ids"])
        masks = (ids == self.processor.mask_token_id).nonzero().flatten()
        if len(masks) == 0:
            mask = self.processor.mask_token
            if mask in text:
                raise ValueError(
                    f"the {mask} of {text!r:.60} lies beyond the {self.max_length} tokens the model reads: "
                    "shorten the text"
                )
            raise ValueError(f"no {mask} in the text {text!r:.60}: put {mask} where a word is to be predicted")
        return [{"input_ids": ids, "masks": masks}]

    def unbatch(self, outputs: Any, pieces: Sequence[dict[str, Any]]) -> list[torch.Tensor]:
        """The logits at each piece's masks, (masks, vocabulary)."""
        return [outputs.logits[row, piece["masks"]].float().cpu() for row, piece in enumerate(pieces)]

    def postprocess(self, item: Any, pieces: list[dict], outputs: list[torch.Tensor], **options: Any) -> Any:
        (piece,), (logits,) = pieces, outputs
        ids, masks = piece["input_ids"], piece["masks"]
        scores, tokens = logits.softmax(dim=-1).topk(min(options["top_k"], logits.shape[-1]))
        single = len(masks) == 1
        results = []
        for position, mask_scores, mask_tokens in zip(masks.tolist(), scores.tolist(), tokens.tolist()):
            candidates = []
            for score, token in zip(mask_scores, mask_tokens):
                filled = ids.clone()
                filled[position] = token
                candidates.append(
                    {
                        "score": score,
                        "token": token,
                        "token_str": self.processor.decode([token]),
                        "sequence": self.processor.decode(filled.tolist(), skip_special_tokens=single),
                    }
                )
            results.append(candidates)
        return results[0] if single else results

    def describe(self, name: str, result: Any) -> str:
        per_mask = [result] if result and isinstance(result[0], dict) else result
        lines = [
            ", ".join(f"{candidate['token_str'].strip()!r} {candidate['score']:.3f}" for candidate in candidates)
            for candidates in per_mask
        ]
        return f"{name}: " + "\n    ".join(lines)


# ---------------------------------------------------------------------- text classification


class TextClassificationPipeline(TextPipeline):
    """Labels of a text, or of a text pair given as ``{"text": ..., "text_pair": ...}``.

    As the reference: without ``top_k`` a text gives its best label, ``[{"label", "score"}]`` for
    a string (``{"label", "score"}`` for a pair, a dict per text for a list of texts); with
    ``top_k=N`` the N best labels, sorted, and ``top_k=None`` all of them. Scores: softmax over
    the labels, sigmoid for one label or multi-label models, the raw logits for regression
    (``function_to_apply`` chooses otherwise).
    """

    task = "text-classification"
    auto_class = "AutoModelForSequenceClassification"
    options = (
        Option("top_k", None, "give the N best labels, sorted (default: the best label)", type=int),
        FUNCTION_TO_APPLY,
        TEXT_COLUMN,
        Option("text_pair_column", "text_pair", "the column of the second texts (pairs) in CSV/JSONL inputs",
               cli_only=True),
    )  # fmt: skip

    def __call__(self, inputs: Any, **options: Any) -> Any:
        # The reference's shapes: top_k=None (given) asks for every label; without top_k, a single
        # string's best label comes in a list.
        if "top_k" in options and options["top_k"] is None:
            options["top_k"] = len(self.model.config.id2label)
        result = super().__call__(inputs, **options)
        return [result] if isinstance(inputs, str) and options.get("top_k") is None else result

    def check_options(self, options: dict[str, Any]) -> dict[str, Any]:
        options = super().check_options(options)
        check_top_k(options["top_k"])
        options["function_to_apply"] = check_score_function(options["function_to_apply"])
        return options

    def preprocess(self, item: Any, **options: Any) -> list[dict[str, Any]]:
        if isinstance(item, dict):
            unknown = set(item) - {"text", "text_pair"}
            if "text" not in item or unknown:
                raise ValueError(f"a text pair is a dict with the keys text and text_pair, got keys {sorted(item)}")
            encoded = self.encode(_text(item["text"]), _text(item["text_pair"]) if "text_pair" in item else None)
        else:
            encoded = self.encode(_text(item, 'a text or a {"text", "text_pair"} dict'))
        return [{"input_ids": torch.tensor(encoded["input_ids"])}]

    def unbatch(self, outputs: Any, pieces: Sequence[dict[str, Any]]) -> list[torch.Tensor]:
        return list(outputs.logits.float().cpu())

    def postprocess(self, item: Any, pieces: list[dict], outputs: list[torch.Tensor], **options: Any) -> Any:
        (logits,) = outputs
        scores = class_scores(logits, options["function_to_apply"] or default_score_function(self.model.config))
        id2label = self.model.config.id2label
        if options["top_k"] is None:
            best = int(scores.argmax())
            return {"label": id2label[best], "score": float(scores[best])}
        order = scores.argsort(descending=True, stable=True)[: options["top_k"]]
        return [{"label": id2label[int(index)], "score": float(scores[index])} for index in order]

    @classmethod
    def read_inputs(cls, arguments: Sequence[str], options: dict[str, Any]) -> list[tuple[str, Any]]:
        """Texts; a CSV/TSV/JSONL file with a ``--text-pair-column`` gives text pairs."""
        text_column, pair_column = options["text_column"], options["text_pair_column"]

        def read_file(path: Path) -> list[tuple[str, Any]]:
            from ..training.data import read_records

            rows = read_records(path, [text_column], optional=[pair_column])
            return [
                (
                    f"{path}:{row['_row']}",
                    {"text": str(row[text_column]), "text_pair": str(row[pair_column])}
                    if row.get(pair_column) is not None
                    else str(row[text_column]),
                )
                for row in rows
            ]

        return expand_texts(arguments, text_column, read_file)

    def describe(self, name: str, result: Any) -> str:
        labels = [result] if isinstance(result, dict) else result
        return f"{name}: " + ", ".join(f"{label['label']} {label['score']:.3f}" for label in labels)


# ---------------------------------------------------------------------- token classification

AGGREGATIONS = ("none", "simple", "first", "average", "max")


class TokenClassificationPipeline(TextPipeline):
    """A label per token, or entities: runs of words with the same label.

    ``aggregation_strategy`` (the reference's): ``"none"`` gives one dict per token that is not an
    ignored label, ``{"entity", "score", "index", "word", "start", "end"}`` (``index``: the token's
    position after ``<s>``, ``word``: the token as the vocabulary spells it); the others give
    ``{"entity_group", "score", "word", "start", "end"}`` per entity, grouping neighbours whose
    labels share the tag (``B-PER`` starts an entity, ``I-PER`` continues it; the score is the mean
    of theirs). ``"simple"`` groups tokens; ``"first"``, ``"average"`` and ``"max"`` first give each
    word one label: the first token's, the best of the averaged scores, the best token's. A token
    starts a new word when a space comes before it (read from the tokenizer's character offsets).
    ``start``/``end`` are character offsets into the text; ``ignore_labels`` (default ``["O"]``)
    are left out.

    A text longer than the model reads is split into windows sharing ``stride`` tokens; each token
    takes the labels of the window where it sits farthest from an edge (the reference truncates
    unless asked for its own windows). The command's default aggregation is ``"none"``, as the
    Python call's: pass ``--aggregation-strategy simple`` for entities.
    """

    task = "token-classification"
    auto_class = "AutoModelForTokenClassification"
    options = (
        Option("aggregation_strategy", "none", "none (a label per token), or entities: simple (the command's "
               "default), first, average, max", choices=AGGREGATIONS, cli_default="simple"),
        Option("ignore_labels", ("O",), "labels left out, comma-separated (default O)", type=_labels),
        Option("stride", 32, "tokens shared by neighbouring windows of a text longer than the model reads"),
        TEXT_COLUMN,
    )  # fmt: skip

    def check_options(self, options: dict[str, Any]) -> dict[str, Any]:
        options = super().check_options(options)
        if options["aggregation_strategy"] not in AGGREGATIONS:
            raise ValueError(
                f"aggregation_strategy must be one of {', '.join(AGGREGATIONS)}, got {options['aggregation_strategy']!r}"
            )
        if isinstance(options["ignore_labels"], str) or not all(isinstance(x, str) for x in options["ignore_labels"]):
            raise TypeError(f"ignore_labels must be a list of labels, got {options['ignore_labels']!r}")
        if isinstance(options["stride"], bool) or not isinstance(options["stride"], int) or options["stride"] < 0:
            raise ValueError(f"stride must be a non-negative integer, got {options['stride']!r}")
        return options

    def preprocess(self, item: Any, **options: Any) -> list[dict[str, Any]]:
        text = _text(item)
        encoded = self.processor(text, add_special_tokens=False, return_offsets_mapping=True,
                                 return_special_tokens_mask=True)  # fmt: skip
        ids = encoded["input_ids"]
        room = self.max_length - 2  # <s> window </s>
        stride = min(options["stride"], room // 2)
        encoding = {"text": text, "ids": ids, "offsets": encoded["offset_mapping"],
                    "special": encoded["special_tokens_mask"]}  # fmt: skip
        pieces = []
        for first, last in context_windows(len(ids), room, stride):
            window = [self.processor.cls_token_id, *ids[first:last], self.processor.sep_token_id]
            pieces.append({"input_ids": torch.tensor(window), "first": first, "last": last, "encoding": encoding})
        return pieces

    def postprocess(self, item: Any, pieces: list[dict], outputs: list[torch.Tensor], **options: Any) -> list[dict]:
        encoded = pieces[0]["encoding"]
        # each token's scores from the window where it sits farthest from an edge
        scores = torch.empty(len(encoded["ids"]), outputs[0].shape[-1])
        margin = torch.full((len(encoded["ids"]),), -1)
        for piece, logits in zip(pieces, outputs):
            first, last = piece["first"], piece["last"]
            positions = torch.arange(first, last)
            distance = torch.minimum(positions - first, last - 1 - positions)
            better = distance > margin[first:last]
            scores[first:last][better] = logits[1 : 1 + last - first].softmax(-1)[better]
            margin[first:last] = torch.maximum(margin[first:last], distance)
        tokens = self._tokens(encoded, scores)
        strategy = options["aggregation_strategy"]
        if strategy in ("none", "simple"):
            entities = [self._label(token) for token in tokens]
        else:
            entities = [self._word(group, strategy) for group in _words(tokens)]
        if strategy != "none":
            entities = _group_entities(entities, self.processor)
        ignored = set(options["ignore_labels"])
        kept = [entity for entity in entities if entity.get("entity", entity.get("entity_group")) not in ignored]
        for entity in kept:
            entity.pop("ids", None)
        return kept

    def _tokens(self, encoded: dict[str, Any], scores: torch.Tensor) -> list[dict[str, Any]]:
        """The text's tokens (special tokens left out) with their scores, offsets and whether each
        continues the word before it (no space before it)."""
        text, tokens = encoded["text"], []
        for index, (token, (start, end), special) in enumerate(
            zip(encoded["ids"], encoded["offsets"], encoded["special"])
        ):
            if special:
                continue
            continues = start > 0 and not any(character.isspace() for character in text[start - 1 : start + 1])
            tokens.append({"ids": [token], "scores": scores[index], "index": index + 1, "start": start, "end": end,
                           "continues": continues and token != self.processor.unk_token_id})  # fmt: skip
        return tokens

    def _label(self, token: dict[str, Any]) -> dict[str, Any]:
        """The best label of a token, as the reference's ``aggregation_strategy="none"`` gives it."""
        scores = token["scores"]
        best = int(scores.argmax())
        return {
            "entity": self.model.config.id2label[best],
            "score": float(scores[best]),
            "index": token["index"],
            "word": self.processor.convert_ids_to_tokens(token["ids"][0]),
            "start": token["start"],
            "end": token["end"],
            "ids": token["ids"],
        }

    def _word(self, tokens: list[dict[str, Any]], strategy: str) -> dict[str, Any]:
        """One label for the tokens of a word, as ``strategy`` chooses."""
        if strategy == "first":
            scores = tokens[0]["scores"]
        elif strategy == "max":
            scores = max(tokens, key=lambda token: float(token["scores"].max()))["scores"]
        else:  # average
            scores = torch.stack([token["scores"] for token in tokens]).mean(0)
        best = int(scores.argmax())
        ids = [token_id for token in tokens for token_id in token["ids"]]
        return {
            "entity": self.model.config.id2label[best],
            "score": float(scores[best]),
            "word": self.processor.decode(ids),
            "start": tokens[0]["start"],
            "end": tokens[-1]["end"],
            "ids": ids,
        }

    def describe(self, name: str, result: Any) -> str:
        if not result:
            return f"{name}: (no entities)"
        shown = [
            f"{entity.get('entity_group', entity.get('entity'))} {entity['word'].strip()!r} "
            f"[{entity['start']}:{entity['end']}] {entity['score']:.3f}"
            for entity in result
        ]
        return f"{name}: " + "; ".join(shown)


def _words(tokens: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """The tokens grouped into words: a token that continues a word joins the group before it."""
    words: list[list[dict[str, Any]]] = []
    for token in tokens:
        if words and token["continues"]:
            words[-1].append(token)
        else:
            words.append([token])
    return words


def _tag(label: str) -> tuple[str, str]:
    """(B or I, the tag) of a label: ``B-PER`` -> (B, PER); a label without a prefix continues."""
    if label.startswith(("B-", "I-")):
        return label[0], label[2:]
    return "I", label


def _group_entities(entities: list[dict[str, Any]], tokenizer: Any) -> list[dict[str, Any]]:
    """Neighbours with the same tag, each after the first not a ``B-``, become one entity."""
    groups: list[list[dict[str, Any]]] = []
    for entity in entities:
        bio, tag = _tag(entity["entity"])
        if groups and bio != "B" and _tag(groups[-1][-1]["entity"])[1] == tag:
            groups[-1].append(entity)
        else:
            groups.append([entity])
    return [
        {
            "entity_group": group[0]["entity"].split("-", 1)[-1],
            "score": sum(entity["score"] for entity in group) / len(group),
            "word": tokenizer.decode([token for entity in group for token in entity["ids"]]),
            "start": group[0]["start"],
            "end": group[-1]["end"],
        }
        for group in groups
    ]


# ---------------------------------------------------------------------- question answering


class QuestionAnsweringPipeline(TextPipeline):
    """The answer span of ``{"question": ..., "context": ...}`` (or of a list of them).

    Result: ``{"score", "start", "end", "answer"}``, with ``start``/``end`` character offsets into
    the context (the answer's first and last token's); ``top_k > 1`` gives a list of the best,
    best first. A context longer than ``max_seq_len`` tokens (with the question) is read in windows
    that share ``doc_stride`` tokens (at most half a window's context). In each window, start and
    end probabilities are softmaxes over its context tokens (and ``<s>`` when
    ``handle_impossible_answer``); a span's score is p(start) * p(end), with start <= end and at
    most ``max_answer_len`` tokens; the best over all windows win. With
    ``handle_impossible_answer`` the empty answer (start = end = 0) competes with the score
    p(<s>) * p(<s>) of the window where that is lowest.
    """

    task = "question-answering"
    auto_class = "AutoModelForQuestionAnswering"
    options = (
        Option("top_k", 1, "how many answers to give (default 1)"),
        Option("doc_stride", 128, "tokens shared by neighbouring windows of a long context"),
        Option("max_answer_len", 15, "the longest answer, in tokens"),
        Option("max_seq_len", 384, "tokens per window, question included (at most what the model reads)"),
        Option("max_question_len", MAX_QUESTION_TOKENS, "a longer question is cut to this many tokens"),
        Option("handle_impossible_answer", False, "allow the empty answer (for models trained on SQuAD 2.0)"),
        Option("context", None, "the context of the questions given as INPUT: a text, or a .txt file holding it",
               cli_only=True),
    )  # fmt: skip
    unit = "question"

    def check_options(self, options: dict[str, Any]) -> dict[str, Any]:
        options = super().check_options(options)
        for name in ("top_k", "max_answer_len", "max_seq_len", "max_question_len"):
            positive_int(name, options[name])
        stride = options["doc_stride"]
        if isinstance(stride, bool) or not isinstance(stride, int) or stride < 0:
            raise ValueError(f"doc_stride must be a non-negative integer, got {stride!r}")
        return options

    def preprocess(self, item: Any, **options: Any) -> list[dict[str, Any]]:
        if not isinstance(item, dict) or not {"question", "context"} <= set(item):
            raise TypeError(f'question answering takes {{"question": ..., "context": ...}} dicts, got {item!r:.80}')
        question, context = _text(item["question"], "a question"), _text(item["context"], "a context")
        if not context.strip():
            raise ValueError(f"the context of the question {question!r:.60} is empty")
        tokenizer = self.processor
        question_ids = tokenizer(question, add_special_tokens=False)["input_ids"][: options["max_question_len"]]
        encoded = tokenizer(context, add_special_tokens=False, return_offsets_mapping=True)
        prefix = [tokenizer.cls_token_id, *question_ids, tokenizer.sep_token_id, tokenizer.sep_token_id]
        room = min(options["max_seq_len"], self.max_length) - len(prefix) - 1  # context tokens per window
        if room < 1:
            raise ValueError(
                f"the question {question!r:.60} leaves no room for the context in {options['max_seq_len']} tokens: "
                "raise max_seq_len or lower max_question_len"
            )
        pieces = []
        for first, last in context_windows(len(encoded["input_ids"]), room, min(options["doc_stride"], room // 2)):
            ids = [*prefix, *encoded["input_ids"][first:last], tokenizer.sep_token_id]
            pieces.append(
                {
                    "input_ids": torch.tensor(ids),
                    "context_start": len(prefix),
                    "offsets": encoded["offset_mapping"][first:last],
                }
            )
        return pieces

    def unbatch(self, outputs: Any, pieces: Sequence[dict[str, Any]]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [
            (outputs.start_logits[row, : len(piece["input_ids"])].float().cpu(),
             outputs.end_logits[row, : len(piece["input_ids"])].float().cpu())
            for row, piece in enumerate(pieces)
        ]  # fmt: skip

    def postprocess(self, item: Any, pieces: list[dict], outputs: list[Any], **options: Any) -> Any:
        context, top_k = item["context"], options["top_k"]
        impossible = options["handle_impossible_answer"]
        best: dict[tuple[int, int], float] = {}  # (start, end) characters -> score
        null_score = float("inf")
        for piece, (start_logits, end_logits) in zip(pieces, outputs):
            first, last = piece["context_start"], piece["context_start"] + len(piece["offsets"])
            allowed = torch.zeros(len(start_logits), dtype=torch.bool)
            allowed[first:last] = True
            allowed[0] = impossible  # <s>: the empty answer
            start_scores = start_logits.masked_fill(~allowed, float("-inf")).log_softmax(-1)
            end_scores = end_logits.masked_fill(~allowed, float("-inf")).log_softmax(-1)
            if impossible:
                null_score = min(null_score, float((start_scores[0] + end_scores[0]).exp()))
            spans = best_spans(start_scores, end_scores, first, last, options["max_answer_len"], top_k)
            for score, start, end in spans:
                characters = (piece["offsets"][start - first][0], piece["offsets"][end - first][1])
                best[characters] = max(best.get(characters, 0.0), math.exp(score))
        answers = [
            {"score": score, "start": start, "end": end, "answer": context[start:end]}
            for (start, end), score in best.items()
        ]
        if impossible:
            answers.append({"score": null_score, "start": 0, "end": 0, "answer": ""})
        answers = sorted(answers, key=lambda answer: -answer["score"])[:top_k]
        return answers[0] if top_k == 1 else answers

    @classmethod
    def read_inputs(cls, arguments: Sequence[str], options: dict[str, Any]) -> list[tuple[str, Any]]:
        """Questions (texts, .txt lines) with ``--context``, or CSV/TSV/JSONL files with question and
        context columns, or SQuAD JSON files."""
        from ..training.data import read_records, read_squad, read_text

        def read_file(path: Path) -> list[tuple[str, Any]]:
            import json

            is_squad = False
            if path.suffix.lower() == ".json":
                try:
                    document = json.loads(read_text(path))
                    is_squad = isinstance(document, dict) and "data" in document
                except json.JSONDecodeError:
                    pass  # JSON lines: read as records
            rows = read_squad(path) if is_squad else read_records(path, ["question", "context"])
            return [
                (f"{path}:{row['_row']}", {"question": str(row["question"]), "context": str(row["context"])})
                for row in rows
            ]

        named = expand_texts(arguments, "question", read_file)
        questions = [question for _, question in named if isinstance(question, str)]
        if questions and options.get("context") is None:
            raise ValueError(
                f"the question {questions[0]!r:.60} has no context: pass --context TEXT_OR_FILE, or give a "
                "CSV/JSONL file with question and context columns (or a SQuAD JSON file)"
            )
        context = options.get("context")
        if context is not None and looks_like_text_file(context):
            if not Path(context).is_file():
                raise FileNotFoundError(f"context file {context!r} does not exist")
            context = read_text(Path(context))
        return [
            (name, {"question": question, "context": context} if isinstance(question, str) else question)
            for name, question in named
        ]

    def describe(self, name: str, result: Any) -> str:
        answers = [result] if isinstance(result, dict) else result
        shown = [
            f"{answer['answer']!r} [{answer['start']}:{answer['end']}] {answer['score']:.3f}" for answer in answers
        ]
        return f"{name}: " + "; ".join(shown)


# ---------------------------------------------------------------------- text generation


class TextGenerationPipeline(TextPipeline):
    """The continuation of a text by a causal language model (``is_decoder=True``).

    Result (as the reference's): ``[{"generated_text": ...}]``, the prompt followed by the new text
    (``return_full_text=False``: the new text only). The prompt is encoded as the reference encodes
    it, special tokens included (``<s> prompt </s>``), and a continuation stops at ``</s>`` or after
    ``max_new_tokens``. Greedy unless ``do_sample``; sampling keeps the ``top_k`` most likely tokens
    and the smallest set reaching ``top_p`` of the probability, after dividing the logits by
    ``temperature``; ``seed`` makes it repeatable (for the same inputs and batch size).

    Batches are padded on the left and generated together, on the key/value cache.
    """

    task = "text-generation"
    auto_class = "AutoModelForCausalLM"
    options = (
        Option("max_new_tokens", 20, "the most tokens to add (default 20)"),
        Option("do_sample", False, "sample the tokens (default: the most likely token each step)"),
        Option("temperature", 1.0, "sampling: divide the logits by this (default 1.0)"),
        Option("top_k", 50, "sampling: only among the K most likely tokens (default 50; 0: all)"),
        Option("top_p", 1.0, "sampling: only among the most likely tokens that reach this probability (default 1)"),
        Option("seed", None, "sampling: the seed of the random generator", type=int),
        Option("return_full_text", True, "the prompt and its continuation (default), or the new text only"),
        TEXT_COLUMN,
    )  # fmt: skip

    def __init__(self, model: torch.nn.Module, processor: Any, **settings: Any) -> None:
        if not getattr(model.config, "is_decoder", False):
            raise ValueError(
                "text generation needs a causal language model: set is_decoder to true in the checkpoint's "
                "config.json (a masked language model is for fill-mask)"
            )
        super().__init__(model, processor, **settings)

    def check_options(self, options: dict[str, Any]) -> dict[str, Any]:
        options = super().check_options(options)
        positive_int("max_new_tokens", options["max_new_tokens"])
        _number("temperature", options["temperature"], 0.0)
        _number("top_p", options["top_p"], 0.0, 1.0)
        top_k = options["top_k"]
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 0:
            raise ValueError(f"top_k must be a non-negative integer (0: no limit), got {top_k!r}")
        if options["seed"] is not None and (isinstance(options["seed"], bool) or not isinstance(options["seed"], int)):
            raise ValueError(f"seed must be an integer, got {options['seed']!r}")
        return options

    def preprocess(self, item: Any, **options: Any) -> list[dict[str, Any]]:
        text = _text(item, "a prompt")
        ids = self.processor(text)["input_ids"]
        if len(ids) + options["max_new_tokens"] > self.max_length:
            raise ValueError(
                f"the prompt {text!r:.40} has {len(ids)} tokens; with max_new_tokens={options['max_new_tokens']} "
                f"that passes the {self.max_length} tokens the model reads: shorten it or lower max_new_tokens"
            )
        return [{"input_ids": torch.tensor(ids)}]

    def collate(self, pieces: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """Prompts padded on the left, so that every row continues at the same step."""
        flipped, mask = pad([piece["input_ids"].flip(0) for piece in pieces], self.processor.pad_token_id)
        return {"input_ids": flipped.flip(1), "attention_mask": mask.flip(1)}

    def forward(self, batch: dict[str, torch.Tensor], **options: Any) -> torch.Tensor:
        generator = None
        if options["do_sample"] and options["seed"] is not None:
            generator = torch.Generator(self.device).manual_seed(options["seed"])
        return self.model.generate(
            batch["input_ids"], batch["attention_mask"], max_new_tokens=options["max_new_tokens"],
            do_sample=options["do_sample"], temperature=options["temperature"], top_k=options["top_k"],
            top_p=options["top_p"], eos_token_id=self.processor.eos_token_id, pad_token_id=self.processor.pad_token_id,
            generator=generator,
        )  # fmt: skip

    def unbatch(self, outputs: torch.Tensor, pieces: Sequence[dict[str, Any]]) -> list[torch.Tensor]:
        """Each row's new tokens (the prompts are as long as the longest)."""
        longest = max(len(piece["input_ids"]) for piece in pieces)
        return list(outputs[:, longest:].cpu())

    def postprocess(self, item: Any, pieces: list[dict], outputs: list[torch.Tensor], **options: Any) -> list[dict]:
        new_text = self.processor.decode(outputs[0].tolist(), skip_special_tokens=True)
        return [{"generated_text": item + new_text if options["return_full_text"] else new_text}]

    def describe(self, name: str, result: Any) -> str:
        return f"{name}: {result[0]['generated_text']}"


PIPELINES = {
    cls.task: cls
    for cls in (
        FillMaskPipeline,
        TextClassificationPipeline,
        TokenClassificationPipeline,
        QuestionAnsweringPipeline,
        TextGenerationPipeline,
    )
}
