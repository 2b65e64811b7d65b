"""The fine-tuning metrics against the libraries the field reports with (scikit-learn, scipy,
seqeval, jiwer) on random and tricky fixtures, and against values worked out by hand in the
comments (SQuAD, mIoU, EER, CTC decoding)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from data2vec.training.metrics import (
    accuracy,
    character_error_rate,
    ctc_greedy_decode,
    entity_scores,
    equal_error_rate,
    f1_macro,
    mean_iou,
    regression_metrics,
    squad_scores,
    word_error_rate,
)

# ---------------------------------------------------------------------------------------
# classification and regression


def test_accuracy_by_hand_and_input_kinds():
    assert accuracy([1, 2, 3, 4], [1, 2, 0, 4]) == 0.75
    assert accuracy(np.array([1, 2, 3, 4]), torch.tensor([1, 2, 0, 4])) == 0.75
    assert accuracy(["pos", "neg"], ["pos", "pos"]) == 0.5
    with pytest.raises(ValueError, match="3 predictions for 2 labels"):
        accuracy([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="nothing to score"):
        accuracy([], [])


@pytest.mark.parametrize("seed", range(4))
def test_accuracy_and_macro_f1_match_sklearn(seed):
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 5, size=60)
    predictions = np.where(rng.random(60) < 0.5, labels, rng.integers(0, 6, size=60))  # class 5 only predicted
    predictions[0], labels[0] = 5, 0
    assert accuracy(torch.from_numpy(predictions), labels) == pytest.approx(sklearn_metrics.accuracy_score(labels, predictions))
    expected = sklearn_metrics.f1_score(labels, predictions, average="macro")
    assert f1_macro(torch.from_numpy(predictions), labels.tolist()) == pytest.approx(expected, abs=1e-12)


def test_macro_f1_string_labels_and_class_only_in_labels_match_sklearn():
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    labels = ["cat", "dog", "dog", "bird", "cat", "fish"]  # "fish" is never predicted
    predictions = ["cat", "dog", "cat", "bird", "bird", "cat"]
    expected = sklearn_metrics.f1_score(labels, predictions, average="macro")
    assert f1_macro(predictions, labels) == pytest.approx(expected, abs=1e-12)
    # by hand, per class F1 = 2 TP / (2 TP + FP + FN):
    # bird 2*1/(2+1+0)=2/3, cat 2*1/(2+2+1)=2/5, dog 2*1/(2+0+1)=2/3, fish 0 -> mean 0.4333...
    assert f1_macro(predictions, labels) == pytest.approx((2 / 3 + 2 / 5 + 2 / 3 + 0) / 4)


@pytest.mark.parametrize("seed", range(3))
def test_regression_metrics_match_scipy(seed):
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(seed)
    targets = rng.normal(size=40).round(1)  # rounding makes ties for the ranks
    predictions = (targets + rng.normal(scale=0.5, size=40)).round(1).astype(np.float32)
    scores = regression_metrics(torch.from_numpy(predictions)[:, None], targets)  # (n, 1) predictions are fine
    assert scores["mse"] == pytest.approx(np.mean((predictions.astype(np.float64) - targets) ** 2))
    assert scores["pearson"] == pytest.approx(stats.pearsonr(predictions.astype(np.float64), targets)[0], abs=1e-12)
    assert scores["spearman"] == pytest.approx(stats.spearmanr(predictions, targets)[0], abs=1e-12)


def test_regression_metrics_by_hand():
    # mse ((1-1)^2 + (2-3)^2 + (4-2)^2) / 3 = 5/3; ranks of the predictions 1 2 3, of the targets 1 3 2
    scores = regression_metrics([1.0, 2.0, 4.0], [1.0, 3.0, 2.0])
    assert scores["mse"] == pytest.approx(5 / 3)
    assert scores["spearman"] == pytest.approx(0.5)  # 1 - 6 * (0 + 1 + 1) / (3 * 8)
    constant = regression_metrics([1.0, 1.0, 1.0], [1.0, 2.0, 3.0])
    assert math.isnan(constant["pearson"]) and math.isnan(constant["spearman"])


# ---------------------------------------------------------------------------------------
# entity-level scores (seqeval's default mode)

TAG_POOL = ["O"] * 6 + ["B-PER", "I-PER", "E-PER", "S-PER", "B-LOC", "I-LOC", "E-LOC", "S-LOC", "I-MISC", "B-MISC"]


def _seqeval_scores(true, predicted):
    seqeval_metrics = pytest.importorskip("seqeval.metrics")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # undefined-metric warnings for corpora without entities
        return {
            "precision": seqeval_metrics.precision_score(true, predicted),
            "recall": seqeval_metrics.recall_score(true, predicted),
            "f1": seqeval_metrics.f1_score(true, predicted),
            "accuracy": seqeval_metrics.accuracy_score(true, predicted),
        }


@pytest.mark.parametrize("seed", range(40))
def test_entity_scores_match_seqeval_on_random_tag_soup(seed):
    # random IOB1 / IOB2 / IOBES mixtures hit every chunk rule: I- after O, type changes, E-/S-
    rng = np.random.default_rng(seed)
    true, predicted = [], []
    for _ in range(rng.integers(1, 6)):
        length = int(rng.integers(1, 12))
        sentence = [TAG_POOL[i] for i in rng.integers(0, len(TAG_POOL), size=length)]
        guess = [tag if rng.random() < 0.7 else TAG_POOL[rng.integers(0, len(TAG_POOL))] for tag in sentence]
        true.append(sentence)
        predicted.append(guess)
    expected = _seqeval_scores(true, predicted)
    scores = entity_scores(true, predicted)
    assert scores == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(
    "true, predicted",
    [
        # IOB2 with a missed boundary and a wrong type
        ([["B-PER", "I-PER", "O", "B-LOC", "B-LOC"], ["O", "B-ORG"]], [["B-PER", "I-PER", "O", "B-LOC", "I-LOC"], ["O", "B-LOC"]]),
        # IOB1: I- starts a chunk after O and after another type; B- splits two chunks of one type
        ([["I-PER", "I-PER", "O", "I-LOC", "B-LOC", "I-LOC"]], [["B-PER", "I-PER", "O", "I-LOC", "I-LOC", "I-LOC"]]),
        # a chunk at the end of one sentence does not run into the next
        ([["O", "B-PER"], ["I-PER", "O"]], [["O", "B-PER"], ["B-PER", "O"]]),
        # type changes inside I- runs, IOBES endings, no entities predicted
        ([["B-PER", "I-LOC", "I-LOC", "E-LOC", "S-PER"]], [["O", "O", "O", "O", "O"]]),
        # nothing anywhere
        ([["O", "O"]], [["O", "O"]]),
    ],
)
def test_entity_scores_match_seqeval_on_tricky_fixtures(true, predicted):
    assert entity_scores(true, predicted) == pytest.approx(_seqeval_scores(true, predicted), abs=1e-12)


def test_entity_scores_by_hand():
    # true entities PER 0-1, LOC 3-3, LOC 4-5 (IOB1: the first I-LOC starts a chunk after O,
    # B-LOC then splits it off); predicted PER 0-1, LOC 3-5. One match:
    # precision 1/2, recall 1/3, F1 2 * (1/6) / (5/6) = 0.4; tokens equal at 1, 2, 3, 5 -> 4/6
    scores = entity_scores([["I-PER", "I-PER", "O", "I-LOC", "B-LOC", "I-LOC"]], [["B-PER", "I-PER", "O", "I-LOC", "I-LOC", "I-LOC"]])
    assert scores == pytest.approx({"precision": 0.5, "recall": 1 / 3, "f1": 0.4, "accuracy": 4 / 6})


def test_entity_scores_rejects_misaligned_sentences():
    with pytest.raises(ValueError, match="sentence 1 has 2 true tags but 1 predicted"):
        entity_scores([["O"], ["O", "B-PER"]], [["O"], ["O"]])
    with pytest.raises(ValueError, match="1 predicted sentences for 2 true"):
        entity_scores([["O"], ["O"]], [["O"]])


# ---------------------------------------------------------------------------------------
# SQuAD


def test_squad_scores_by_hand():
    references = {
        # case and articles do not matter: "the cat" -> "cat"
        "q1": ["cat"],
        # "The big black cat." -> big black cat (3 tokens) vs black dog (2): 1 shared,
        # precision 1/3, recall 1/2, F1 = 2 * (1/6) / (5/6) = 0.4
        "q2": ["black dog"],
        # best of two references: "black cat" shares 2 of the 3 predicted tokens,
        # precision 2/3, recall 1, F1 = 2 * (2/3) / (5/3) = 0.8; "dog" shares none
        "q3": ["dog", "black cat"],
        # unanswerable (SQuAD 2.0): right only with an empty prediction
        "q4": [],
        "q5": [],
        # a reference that normalises to nothing counts as "no answer"
        "q6": ["The"],
        # punctuation goes: "Paris." == "paris"
        "q7": ["paris"],
    }
    predictions = {
        "q1": "The Cat",
        "q2": "The big black cat.",
        "q3": "big black cat",
        "q4": "",
        "q5": "cat",
        "q6": "a",
        "q7": "Paris.",
        "other": "x",
    }
    exact = [1, 0, 0, 1, 0, 1, 1]
    f1 = [1, 0.4, 0.8, 1, 0, 1, 1]
    scores = squad_scores(predictions, references)
    assert scores["exact_match"] == pytest.approx(sum(exact) / 7)
    assert scores["f1"] == pytest.approx(sum(f1) / 7)
    # a missing prediction is "no answer": wrong for an answerable question
    assert squad_scores({}, {"q1": ["cat"], "q4": []}) == {"exact_match": 0.5, "f1": 0.5}
    # a repeated token counts as often as both sides have it: "x x y" vs "x y y" share one x and one y,
    # 2 of 3 tokens each way -> F1 2/3
    assert squad_scores({"q": "x x y"}, {"q": ["x y y"]})["f1"] == pytest.approx(2 / 3)


# ---------------------------------------------------------------------------------------
# WER / CER (jiwer)

VOCABULARY = ["the", "cat", "sat", "on", "a", "mat", "dog", "ran"]


def _random_corpus(rng: np.random.Generator, sentences: int) -> tuple[list[str], list[str]]:
    references, hypotheses = [], []
    for _ in range(sentences):
        reference = [VOCABULARY[i] for i in rng.integers(0, len(VOCABULARY), size=int(rng.integers(1, 10)))]
        hypothesis = []
        for word in reference:  # random substitutions, deletions and insertions
            action = rng.random()
            if action < 0.15:
                continue
            hypothesis.append(VOCABULARY[rng.integers(0, len(VOCABULARY))] if action < 0.3 else word)
            if rng.random() < 0.15:
                hypothesis.append(VOCABULARY[rng.integers(0, len(VOCABULARY))])
        references.append(" ".join(reference))
        hypotheses.append(" ".join(hypothesis))
    return references, hypotheses


@pytest.mark.parametrize("seed", range(10))
def test_error_rates_match_jiwer_on_random_corpora(seed):
    jiwer = pytest.importorskip("jiwer")
    references, hypotheses = _random_corpus(np.random.default_rng(seed), sentences=12)
    assert word_error_rate(references, hypotheses) == pytest.approx(jiwer.wer(references, hypotheses), abs=1e-12)
    assert character_error_rate(references, hypotheses) == pytest.approx(jiwer.cer(references, hypotheses), abs=1e-12)


@pytest.mark.parametrize(
    "references, hypotheses",
    [
        (["the cat sat", "on the mat"], ["the cat sat down", "on mat"]),  # an insertion, a deletion
        (["  the   cat  sat ", "a dog"], ["the cat  sat", ""]),  # extra spaces; an empty hypothesis
        (["the cat", "", "a dog"], ["the cat", "hello there", "a dog"]),  # an empty reference in the corpus
        (["", ""], ["one two", "three"]),  # only empty references: the rate is the insertion count
        (["", " "], ["", ""]),
        (["completely different"], ["nothing in common at all here"]),  # WER above 1
        ("one sentence", "one sentense"),  # plain strings
    ],
)
def test_error_rates_match_jiwer_on_tricky_fixtures(references, hypotheses):
    jiwer = pytest.importorskip("jiwer")
    assert word_error_rate(references, hypotheses) == pytest.approx(jiwer.wer(references, hypotheses), abs=1e-12)
    assert character_error_rate(references, hypotheses) == pytest.approx(jiwer.cer(references, hypotheses), abs=1e-12)


def test_error_rates_by_hand():
    # one inserted word over 3 + one deleted word over 3: 2 edits / 6 reference words
    assert word_error_rate(["the cat sat", "on the mat"], ["the cat sat down", "on mat"]) == pytest.approx(2 / 6)
    # "kitten" -> "sitting": 3 edits over 6 characters
    assert character_error_rate(["kitten"], ["sitting"]) == pytest.approx(3 / 6)
    with pytest.raises(ValueError, match="1 hypotheses for 2 references"):
        word_error_rate(["a", "b"], ["a"])


# ---------------------------------------------------------------------------------------
# CTC greedy decoding


def test_ctc_greedy_decode_by_hand():
    # blank 0: [0 1 1 0 1 2 2 0] -> runs 0 | 1 1 | 0 | 1 | 2 2 | 0 -> 1 1 2 (the blank keeps the two 1s apart)
    ids = torch.tensor([[0, 1, 1, 0, 1, 2, 2, 0], [3, 3, 0, 0, 0, 0, 3, 3]])
    assert ctc_greedy_decode(ids, blank_id=0) == [[1, 1, 2], [3, 3]]
    # the same through logits: a one-hot per frame is argmax'ed first
    logits = torch.nn.functional.one_hot(ids, num_classes=4).float()
    assert ctc_greedy_decode(logits, blank_id=0) == [[1, 1, 2], [3, 3]]
    assert ctc_greedy_decode(logits[0].numpy(), blank_id=0) == [[1, 1, 2]]  # (frames, vocab): one sequence
    # blank id other than 0; ragged lists; a flat list is one sequence
    assert ctc_greedy_decode([[5, 5, 1, 5], [2, 2]], blank_id=5) == [[1], [2]]
    assert ctc_greedy_decode([4, 4, 0, 4], blank_id=0) == [[4, 4]]


# ---------------------------------------------------------------------------------------
# mean IoU (Hugging Face evaluate's semantics)


def test_mean_iou_by_hand():
    label = np.array([[0, 0, 1], [1, 2, 2], [255, 2, 0]], dtype=np.uint8)
    prediction = np.array([[0, 1, 1], [1, 2, 0], [2, 2, 0]])
    # the 255 pixel is ignored (its predicted 2 too); 8 pixels remain. With 4 labels:
    # class 0: labelled 3, predicted 3, both 2 -> IoU 2 / (3 + 3 - 2) = 1/2, accuracy 2/3
    # class 1: labelled 2, predicted 3, both 2 -> IoU 2/3, accuracy 1
    # class 2: labelled 3, predicted 2, both 2 -> IoU 2/3, accuracy 2/3
    # class 3: in neither -> NaN, left out of the means
    scores = mean_iou([prediction], [label], num_labels=4, ignore_index=255)
    assert scores["per_category_iou"][:3] == pytest.approx([1 / 2, 2 / 3, 2 / 3])
    assert math.isnan(scores["per_category_iou"][3])
    assert scores["mean_iou"] == pytest.approx((1 / 2 + 2 / 3 + 2 / 3) / 3)  # 11/18
    assert scores["mean_accuracy"] == pytest.approx((2 / 3 + 1 + 2 / 3) / 3)  # 7/9
    assert scores["overall_accuracy"] == pytest.approx(6 / 8)
    assert isinstance(scores["per_category_iou"], list)


def test_mean_iou_class_only_predicted_and_accumulation_over_images():
    # image 1: label [0 0], prediction [0 1]; image 2: label [1], prediction [1]
    # class 0: labelled 2, predicted 1, both 1 -> IoU 1/2, accuracy 1/2
    # class 1: labelled 1, predicted 2, both 1 -> IoU 1/2, accuracy 1
    # (pixels are summed over the images before dividing)
    scores = mean_iou([np.array([[0, 1]]), torch.tensor([[1]])], [np.array([[0, 0]]), np.array([[1]])], num_labels=2)
    assert scores["per_category_iou"] == pytest.approx([1 / 2, 1 / 2])
    assert scores["mean_accuracy"] == pytest.approx(3 / 4)
    assert scores["overall_accuracy"] == pytest.approx(2 / 3)
    # a class predicted but never labelled has IoU 0 and no accuracy
    scores = mean_iou([np.array([[0, 1]])], [np.array([[0, 0]])], num_labels=2)
    assert scores["per_category_iou"] == pytest.approx([1 / 2, 0.0])
    assert scores["mean_iou"] == pytest.approx(1 / 4)
    assert scores["mean_accuracy"] == pytest.approx(1 / 2)
    with pytest.raises(ValueError, match="resize the logits"):
        mean_iou([np.zeros((2, 2))], [np.zeros((3, 3))], num_labels=2)


@pytest.mark.parametrize("seed", range(3))
def test_mean_iou_matches_sklearn_jaccard(seed):
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(seed)
    labels = [rng.integers(0, 4, size=(6, 7)) for _ in range(3)]
    for label in labels:
        label[rng.random(label.shape) < 0.1] = 255
    predictions = [np.where(rng.random(label.shape) < 0.6, label % 255, rng.integers(0, 4, size=label.shape)) for label in labels]
    scores = mean_iou(predictions, labels, num_labels=4)
    flat_labels = np.concatenate([label.ravel() for label in labels])
    flat_predictions = np.concatenate([prediction.ravel() for prediction in predictions])
    kept = flat_labels != 255
    flat_labels, flat_predictions = flat_labels[kept], flat_predictions[kept]
    per_class = sklearn_metrics.jaccard_score(flat_labels, flat_predictions, labels=range(4), average=None)
    recall = sklearn_metrics.recall_score(flat_labels, flat_predictions, labels=range(4), average=None)
    assert scores["per_category_iou"] == pytest.approx(per_class.tolist(), abs=1e-12)
    assert scores["mean_iou"] == pytest.approx(per_class.mean(), abs=1e-12)
    assert scores["mean_accuracy"] == pytest.approx(recall.mean(), abs=1e-12)
    assert scores["overall_accuracy"] == pytest.approx(sklearn_metrics.accuracy_score(flat_labels, flat_predictions), abs=1e-12)


# ---------------------------------------------------------------------------------------
# equal error rate


def test_equal_error_rate_by_hand():
    # same-speaker scores 0.9 0.8 0.4, different-speaker 0.7 0.3 0.2. Accepting >= 0.7:
    # one of three impostors accepted (0.7), one of three genuine rejected (0.4): 1/3 = 1/3
    scores = [0.9, 0.8, 0.4, 0.7, 0.3, 0.2]
    same = [True, True, True, False, False, False]
    assert equal_error_rate(scores, same) == pytest.approx(1 / 3)
    # same 0.9 0.6, different 0.8 0.7 0.1: at >= 0.8 FAR 1/3, at >= 0.7 FAR 2/3, FRR 1/2 on both;
    # the straight ROC segment between them crosses FAR = FRR at 1/2
    assert equal_error_rate(torch.tensor([0.9, 0.6, 0.8, 0.7, 0.1]), [1, 1, 0, 0, 0]) == pytest.approx(1 / 2)
    # perfectly separated scores: no threshold errs
    assert equal_error_rate([3.0, 2.0, 1.0, 0.0], [True, True, False, False]) == 0.0
    # perfectly inverted scores: every threshold errs fully on one side; the crossing is 1
    assert equal_error_rate([0.0, 1.0], [True, False]) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="both same-speaker and different-speaker"):
        equal_error_rate([0.1, 0.2], [True, True])


@pytest.mark.parametrize("seed, decimals", [(0, None), (1, None), (2, 1), (3, 0)])
def test_equal_error_rate_matches_roc_crossing(seed, decimals):
    # the speaker-verification recipe: the root of 1 - x - TPR(x) on sklearn's ROC curve
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    optimize = pytest.importorskip("scipy.optimize")
    rng = np.random.default_rng(seed)
    same = np.concatenate([np.ones(30, dtype=bool), np.zeros(45, dtype=bool)])
    scores = np.concatenate([rng.normal(1.0, 1.0, 30), rng.normal(0.0, 1.0, 45)])
    if decimals is not None:
        scores = scores.round(decimals)  # ties between same and different trials
    false_positive_rate, true_positive_rate, _ = sklearn_metrics.roc_curve(same, scores)
    expected = optimize.brentq(lambda x: 1.0 - x - np.interp(x, false_positive_rate, true_positive_rate), 0.0, 1.0)
    assert equal_error_rate(scores, same.tolist()) == pytest.approx(expected, abs=1e-9)
