"""Task metrics of fine-tuning, in plain Python and numpy.

Each function takes what a task's evaluation produces (Python lists, numpy arrays or torch
tensors) and returns plain floats, with the semantics of the library that the field reports
with: scikit-learn (accuracy, macro F1), scipy (Pearson, Spearman), seqeval's default
conlleval mode (entity F1), the official SQuAD scripts (exact match, token F1), jiwer
(corpus WER/CER) and Hugging Face evaluate's ``mean_iou``. Rates are fractions (0.25, not
25). The tests compare every function with its library."""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Hashable, Iterable, Sequence
from typing import Any

import numpy as np
import torch

__all__ = [
    "accuracy",
    "character_error_rate",
    "ctc_greedy_decode",
    "entity_scores",
    "equal_error_rate",
    "f1_macro",
    "mean_iou",
    "regression_metrics",
    "squad_scores",
    "word_error_rate",
]


def _array(values: Any) -> np.ndarray:
    """A numpy array of a list, array or tensor (bf16 tensors become float32)."""
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu()
        if values.dtype == torch.bfloat16:
            values = values.float()
        return values.numpy()
    return np.asarray(values)


def _flat_pair(predictions: Any, labels: Any, what: str) -> tuple[np.ndarray, np.ndarray]:
    predictions, labels = _array(predictions).reshape(-1), _array(labels).reshape(-1)
    if predictions.shape != labels.shape:
        raise ValueError(f"{what}: got {len(predictions)} predictions for {len(labels)} labels; pass one prediction per label.")
    if len(labels) == 0:
        raise ValueError(f"{what}: there is nothing to score; pass at least one example.")
    return predictions, labels


# ---------------------------------------------------------------------------------------
# classification and regression


def accuracy(predictions, labels) -> float:
    """The fraction of predictions equal to their label."""
    predictions, labels = _flat_pair(predictions, labels, "accuracy")
    return float(np.mean(predictions == labels))


def f1_macro(predictions, labels) -> float:
    """The unweighted mean over classes of each class's F1 = 2 TP / (2 TP + FP + FN), over the
    classes that occur among the labels or the predictions (scikit-learn's
    ``f1_score(average="macro")``)."""
    predictions, labels = _flat_pair(predictions, labels, "f1_macro")
    classes = np.unique(np.concatenate([labels, predictions]))
    scores = []
    for cls in classes:
        true_positives = np.sum((predictions == cls) & (labels == cls))
        false_positives = np.sum((predictions == cls) & (labels != cls))
        false_negatives = np.sum((predictions != cls) & (labels == cls))
        # every class here was predicted or labelled at least once, so the denominator is > 0
        scores.append(2 * true_positives / (2 * true_positives + false_positives + false_negatives))
    return float(np.mean(scores))


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson's r; NaN when either side is constant (as scipy.stats.pearsonr)."""
    if len(x) < 2:
        return float("nan")
    x_centred, y_centred = x - x.mean(), y - y.mean()
    x_norm, y_norm = np.sqrt(np.sum(x_centred**2)), np.sqrt(np.sum(y_centred**2))
    if x_norm == 0 or y_norm == 0:
        return float("nan")
    correlation = np.sum((x_centred / x_norm) * (y_centred / y_norm))
    return float(np.clip(correlation, -1.0, 1.0))


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n; tied values share the mean of the ranks they span (scipy.stats.rankdata)."""
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    # a new group of equal values starts where the sorted value changes
    group_starts = np.flatnonzero(np.concatenate([[True], ordered[1:] != ordered[:-1]]))
    group_ends = np.concatenate([group_starts[1:], [len(values)]])  # exclusive
    group_ranks = (group_starts + 1 + group_ends) / 2.0  # mean of ranks start+1 .. end
    group_of_position = np.repeat(np.arange(len(group_starts)), group_ends - group_starts)
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = group_ranks[group_of_position]
    return ranks


def regression_metrics(predictions, targets) -> dict[str, float]:
    """``{"mse", "pearson", "spearman"}``; a correlation is NaN when one side is constant.
    Spearman's rho is Pearson's r of the average ranks (ties share their mean rank)."""
    predictions, targets = _flat_pair(predictions, targets, "regression_metrics")
    predictions, targets = predictions.astype(np.float64), targets.astype(np.float64)
    return {
        "mse": float(np.mean((predictions - targets) ** 2)),
        "pearson": _pearson(predictions, targets),
        "spearman": _pearson(_average_ranks(predictions), _average_ranks(targets)),
    }


# ---------------------------------------------------------------------------------------
# token classification: entity-level scores as conlleval (seqeval's default mode)


def _split_tag(tag: str) -> tuple[str, str]:
    """``"B-PER"`` -> ``("B", "PER")``: the prefix is the first character, the entity type what
    follows the first ``-`` after it (or the rest of the tag when there is none; ``"_"`` when
    empty), as conlleval and seqeval read tags."""
    rest = tag[1:]
    entity_type = rest.partition("-")[2] if "-" in rest else rest
    return tag[:1], entity_type or "_"


def _chunk_ends(previous: tuple[str, str], current: tuple[str, str]) -> bool:
    """Whether the chunk open at the previous tag ends before the current one."""
    (previous_prefix, previous_type), (prefix, entity_type) = previous, current
    if previous_prefix in ("E", "S"):
        return True
    if previous_prefix in ("B", "I") and prefix in ("B", "S", "O"):
        return True
    return previous_prefix not in ("O", ".") and previous_type != entity_type


def _chunk_starts(previous: tuple[str, str], current: tuple[str, str]) -> bool:
    """Whether a chunk starts at the current tag (an ``I-`` after ``O`` starts one: IOB1)."""
    (previous_prefix, previous_type), (prefix, entity_type) = previous, current
    if prefix in ("B", "S"):
        return True
    if prefix in ("I", "E") and previous_prefix in ("O", "E", "S"):
        return True
    return prefix not in ("O", ".") and previous_type != entity_type


def _entities(sentences: Sequence[Sequence[str]]) -> set[tuple[str, int, int]]:
    """Every chunk as (type, first, last) position in the sentences laid end to end, each
    followed by an ``O`` (so that no chunk crosses a sentence end)."""
    tags = [tag for sentence in sentences for tag in [*sentence, "O"]]
    entities = set()
    previous, start = ("O", ""), 0  # before the first tag: outside, of no type
    for position, tag in enumerate([*tags, "O"]):
        current = _split_tag(tag)
        if _chunk_ends(previous, current):
            entities.add((previous[1], start, position - 1))
        if _chunk_starts(previous, current):
            start = position
        previous = current
    return entities


def _sentences(tags: Any) -> list[list[str]]:
    tags = list(tags)
    if tags and isinstance(tags[0], str):  # one sentence given flat
        return [tags]
    return [list(sentence) for sentence in tags]


def entity_scores(true_tags: list[list[str]], predicted_tags: list[list[str]]) -> dict[str, float]:
    """Entity-level micro ``precision``, ``recall`` and ``f1`` plus token ``accuracy``.

    Chunks are read as conlleval does (seqeval's default mode): ``B-`` starts an entity,
    ``I-`` continues one of its type and starts one after ``O`` or another type (IOB1 and
    sloppy IOB2), ``E-``/``S-`` close one (IOBES). An entity counts as found when its type
    and span both match. A score whose denominator is 0 is 0."""
    true_sentences, predicted_sentences = _sentences(true_tags), _sentences(predicted_tags)
    if len(true_sentences) != len(predicted_sentences):
        raise ValueError(
            f"entity_scores: got {len(predicted_sentences)} predicted sentences for {len(true_sentences)} true ones; "
            "pass one tag sequence per sentence."
        )
    for index, (true, predicted) in enumerate(zip(true_sentences, predicted_sentences)):
        if len(true) != len(predicted):
            raise ValueError(
                f"entity_scores: sentence {index} has {len(true)} true tags but {len(predicted)} predicted ones; predict one tag per token."
            )
    tokens = sum(len(sentence) for sentence in true_sentences)
    if tokens == 0:
        raise ValueError("entity_scores: there is nothing to score; pass at least one tagged token.")
    true_entities, predicted_entities = _entities(true_sentences), _entities(predicted_sentences)
    found = len(true_entities & predicted_entities)
    precision = found / len(predicted_entities) if predicted_entities else 0.0
    recall = found / len(true_entities) if true_entities else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    correct = sum(t == p for true, predicted in zip(true_sentences, predicted_sentences) for t, p in zip(true, predicted))
    return {"precision": float(precision), "recall": float(recall), "f1": float(f1), "accuracy": correct / tokens}


# ---------------------------------------------------------------------------------------
# extractive question answering: the official SQuAD scores

_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(?:a|an|the)\b")


def _normalise_answer(text: str) -> str:
    """Lower case, drop ASCII punctuation, drop the articles a/an/the, single spaces."""
    text = "".join(character for character in text.lower() if character not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def _token_f1(reference: str, prediction: str) -> float:
    reference_tokens, predicted_tokens = _normalise_answer(reference).split(), _normalise_answer(prediction).split()
    if not reference_tokens or not predicted_tokens:  # "no answer" is right only against "no answer"
        return float(reference_tokens == predicted_tokens)
    shared = sum((Counter(reference_tokens) & Counter(predicted_tokens)).values())
    if shared == 0:
        return 0.0
    precision, recall = shared / len(predicted_tokens), shared / len(reference_tokens)
    return 2 * precision * recall / (precision + recall)


def squad_scores(predictions: dict[str, str], references: dict[str, list[str]]) -> dict[str, float]:
    """Mean ``exact_match`` and token ``f1`` over the questions of ``references`` (id -> the
    reference answers), each question scored by its best reference. A question whose
    references are empty (or normalise to empty: SQuAD 2.0's unanswerable questions) scores
    1 for an empty prediction and 0 otherwise. A question without a prediction counts as
    predicted "" (no answer). Predictions of other ids are ignored."""
    if not references:
        raise ValueError("squad_scores: there is nothing to score; pass at least one question's references.")
    exact_total = f1_total = 0.0
    for question_id, answers in references.items():
        if isinstance(answers, str):
            answers = [answers]
        answers = [answer for answer in answers if _normalise_answer(answer)] or [""]
        prediction = predictions.get(question_id, "")
        exact_total += max(float(_normalise_answer(answer) == _normalise_answer(prediction)) for answer in answers)
        f1_total += max(_token_f1(answer, prediction) for answer in answers)
    return {"exact_match": exact_total / len(references), "f1": f1_total / len(references)}


# ---------------------------------------------------------------------------------------
# speech recognition: corpus-level error rates


def _edit_distance(reference: Sequence[Hashable], hypothesis: Sequence[Hashable]) -> int:
    """Levenshtein distance (unit-cost substitutions, deletions, insertions) between two
    token sequences: one numpy row of the dynamic programme per token of the shorter one."""
    if len(reference) < len(hypothesis):
        reference, hypothesis = hypothesis, reference  # the distance is symmetric
    if len(hypothesis) == 0:
        return len(reference)
    ids: dict[Hashable, int] = {}
    row_tokens = np.array([ids.setdefault(token, len(ids)) for token in hypothesis])
    column_tokens = np.array([ids.setdefault(token, len(ids)) for token in reference])
    offsets = np.arange(len(column_tokens) + 1)
    previous = offsets.copy()  # distances from the empty prefix of the row sequence
    for row, token in enumerate(row_tokens, start=1):
        current = np.empty_like(previous)
        current[0] = row
        # deletion (from above) or match / substitution (from the diagonal)
        current[1:] = np.minimum(previous[1:] + 1, previous[:-1] + (column_tokens != token))
        # insertions run along the row: current[j] = min over k <= j of current[k] + (j - k)
        current = np.minimum.accumulate(current - offsets) + offsets
        previous = current
    return int(previous[-1])


def _error_rate(references: Any, hypotheses: Any, split, what: str) -> float:
    references = [references] if isinstance(references, str) else list(references)
    hypotheses = [hypotheses] if isinstance(hypotheses, str) else list(hypotheses)
    if len(references) != len(hypotheses):
        raise ValueError(f"{what}: got {len(hypotheses)} hypotheses for {len(references)} references; pass one per reference.")
    if not references:
        raise ValueError(f"{what}: there is nothing to score; pass at least one reference.")
    edits = reference_length = 0
    for reference, hypothesis in zip(references, hypotheses):
        reference_tokens, hypothesis_tokens = split(reference), split(hypothesis)
        edits += _edit_distance(reference_tokens, hypothesis_tokens)
        reference_length += len(reference_tokens)
    # as jiwer: with only empty references the rate is the number of inserted tokens
    return edits / reference_length if reference_length else float(edits)


def _words(text: str) -> list[str]:
    # as jiwer's default: runs of 2+ whitespace become one space, strip, split at spaces
    return [word for word in re.sub(r"\s\s+", " ", text).strip().split(" ") if word]


def _characters(text: str) -> list[str]:
    return list(text.strip())  # spaces inside count as characters, as jiwer's default


def word_error_rate(references: list[str], hypotheses: list[str]) -> float:
    """Corpus WER: the word edits (substitutions + deletions + insertions) of all pairs over
    the number of reference words (jiwer.wer). Can exceed 1."""
    return _error_rate(references, hypotheses, _words, "word_error_rate")


def character_error_rate(references: list[str], hypotheses: list[str]) -> float:
    """Corpus CER over characters, spaces included, of the stripped texts (jiwer.cer)."""
    return _error_rate(references, hypotheses, _characters, "character_error_rate")


def ctc_greedy_decode(logits_or_ids, blank_id: int) -> list[list[int]]:
    """Best-path CTC decoding: the argmax class per frame, repeats collapsed, blanks dropped.

    Floating point input is logits (or probabilities) of shape (batch, frames, vocab), or
    (frames, vocab) for one sequence; integer input is class ids of shape (batch, frames),
    (frames,) for one sequence, or a list of sequences of different lengths (each ids, or
    (frames, vocab) logits)."""
    if isinstance(logits_or_ids, (torch.Tensor, np.ndarray)):
        values = _array(logits_or_ids)
        if np.issubdtype(values.dtype, np.floating):
            if values.ndim not in (2, 3):
                raise ValueError(f"ctc_greedy_decode: logits must be (batch, frames, vocab) or (frames, vocab), got shape {values.shape}.")
            values = values.argmax(-1)
        if values.ndim == 1:
            values = values[None]
        if values.ndim != 2:
            raise ValueError(f"ctc_greedy_decode: ids must be (batch, frames) or (frames,), got shape {values.shape}.")
        sequences: Iterable = values
    else:
        sequences = list(logits_or_ids)
        if sequences and not isinstance(sequences[0], (Sequence, np.ndarray, torch.Tensor)):
            sequences = [sequences]  # one flat sequence of ids
    decoded = []
    for sequence in sequences:
        ids = _array(sequence)
        if np.issubdtype(ids.dtype, np.floating) and ids.ndim == 2:  # one sequence's (frames, vocab) logits
            ids = ids.argmax(-1)
        ids = ids.reshape(-1).astype(np.int64)
        keep = np.ones(len(ids), dtype=bool)
        keep[1:] = ids[1:] != ids[:-1]  # first frame of each run
        keep &= ids != blank_id
        decoded.append(ids[keep].tolist())
    return decoded


# ---------------------------------------------------------------------------------------
# semantic segmentation


def mean_iou(predictions: list[np.ndarray], labels: list[np.ndarray], num_labels: int, ignore_index: int = 255) -> dict[str, Any]:
    """Intersection over union per class from the pixel counts of all images together, as
    Hugging Face evaluate's ``mean_iou`` (``reduce_labels=False``).

    Pixels labelled ``ignore_index`` are left out. A class absent from both predictions and
    labels has a NaN IoU, and a class absent from the labels a NaN accuracy; the means skip
    NaNs. Class ids outside 0..num_labels-1 count for no class (a pixel so labelled adds
    nothing; a pixel so predicted misses its label). Returns ``mean_iou``,
    ``mean_accuracy``, ``overall_accuracy`` and ``per_category_iou`` (a list)."""
    if num_labels < 1:
        raise ValueError(f"mean_iou: num_labels must be at least 1, got {num_labels}.")
    predictions, labels = list(predictions), list(labels)
    if len(predictions) != len(labels):
        raise ValueError(f"mean_iou: got {len(predictions)} predicted maps for {len(labels)} label maps; pass one per image.")
    if not labels:
        raise ValueError("mean_iou: there is nothing to score; pass at least one segmentation map.")
    intersection = np.zeros(num_labels, dtype=np.int64)  # pixels predicted and labelled as the class
    predicted_area = np.zeros(num_labels, dtype=np.int64)
    label_area = np.zeros(num_labels, dtype=np.int64)
    for index, (prediction, label) in enumerate(zip(predictions, labels)):
        prediction, label = _array(prediction).astype(np.int64), _array(label).astype(np.int64)
        if prediction.shape != label.shape:
            raise ValueError(
                f"mean_iou: image {index} has a {prediction.shape} prediction for a {label.shape} label map; "
                "resize the logits to the label size before the argmax."
            )
        counted = label != ignore_index
        prediction, label = prediction[counted], label[counted]
        predicted_in_range = prediction[(prediction >= 0) & (prediction < num_labels)]
        label_in_range = label[(label >= 0) & (label < num_labels)]
        correct = label[(label == prediction) & (label >= 0) & (label < num_labels)]
        predicted_area += np.bincount(predicted_in_range, minlength=num_labels)
        label_area += np.bincount(label_in_range, minlength=num_labels)
        intersection += np.bincount(correct, minlength=num_labels)
    union = predicted_area + label_area - intersection
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = intersection / union
        class_accuracy = intersection / label_area
        overall = intersection.sum() / label_area.sum()

    def nan_mean(values: np.ndarray) -> float:
        present = values[~np.isnan(values)]
        return float(present.mean()) if len(present) else float("nan")

    return {
        "mean_iou": nan_mean(iou),
        "mean_accuracy": nan_mean(class_accuracy),
        "overall_accuracy": float(overall),
        "per_category_iou": [float(value) for value in iou],
    }


# ---------------------------------------------------------------------------------------
# speaker verification


def equal_error_rate(scores, same: list[bool]) -> float:
    """The rate at which false acceptances equal false rejections, for trials accepted when
    their score is at or above a threshold.

    The ROC curve (false acceptance rate, true acceptance rate) over every threshold is
    joined by straight lines, and the EER is its false acceptance rate where it crosses
    FAR = 1 - TAR (= the false rejection rate); this is the usual
    ``brentq(lambda x: 1 - x - interp1d(fpr, tpr)(x), 0, 1)`` of speaker verification."""
    scores = _array(scores).reshape(-1).astype(np.float64)
    same = _array(same).reshape(-1).astype(bool)
    if scores.shape != same.shape:
        raise ValueError(f"equal_error_rate: got {len(scores)} scores for {len(same)} trials; pass one score per trial.")
    if np.isnan(scores).any():
        raise ValueError("equal_error_rate: some scores are NaN; check the model's outputs.")
    genuine, impostor = int(same.sum()), int((~same).sum())
    if genuine == 0 or impostor == 0:
        raise ValueError(
            f"equal_error_rate: needs both same-speaker and different-speaker trials, got {genuine} same and {impostor} different."
        )
    order = np.argsort(-scores, kind="stable")
    ordered_scores, ordered_same = scores[order], same[order]
    # one ROC point per distinct score, lowering the threshold from above the highest score
    last_of_group = np.concatenate([ordered_scores[1:] != ordered_scores[:-1], [True]])
    true_accept = np.concatenate([[0], np.cumsum(ordered_same)[last_of_group]]) / genuine
    false_accept = np.concatenate([[0], np.cumsum(~ordered_same)[last_of_group]]) / impostor
    # gap = FAR - FRR = FAR + TAR - 1 rises from -1 (accept nothing) to +1 (accept all)
    gap = false_accept + true_accept - 1.0
    crossing = int(np.argmax(gap >= 0))
    if gap[crossing] == 0:
        return float(false_accept[crossing])
    before, after = gap[crossing - 1], gap[crossing]
    fraction = -before / (after - before)
    return float(false_accept[crossing - 1] + fraction * (false_accept[crossing] - false_accept[crossing - 1]))
