"""The text task pipelines on tiny random checkpoints (the byte-level BPE backbone of the
fine-tuning tests with a noisy head): each result against the model called directly, against the
reference library's pipeline where it has one, batched against one at a time, and the command
line as a user runs it."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

import data2vec
from data2vec.pipelines.text import FillMaskPipeline, QuestionAnsweringPipeline, TextClassificationPipeline
from data2vec.training.tasks_text import context_windows
from tests.helpers import add_noise
from tests.training.test_tasks_text import _long_context, backbone  # noqa: F401 (backbone: a fixture)

transformers = pytest.importorskip("transformers")

ATOL = 1e-4
NER_LABELS = {0: "O", 1: "B-PER", 2: "I-PER", 3: "B-LOC", 4: "I-LOC"}
TOPICS = {0: "animals", 1: "places", 2: "greetings"}
# lines of a text file, of different lengths
TEXTS = [
    "the quick brown fox jumps over the lazy dog",
    "paris is a city",
    "Hello world! how are you doing today? the red cat sat on the mat in london",
    "where is the green blue dog ?",
    "london",
]
MASKED = [
    "the quick brown <mask> jumps over the lazy dog",
    "paris is a <mask>",
    "Hello world! how are you doing <mask>? the red cat sat on the mat",
    "<mask> is the green blue dog ?",
]
HEADS = ("lm_head", "classifier", "qa_outputs")


def save_head(source: Path, folder: Path, class_name: str, **config) -> Path:
    """The backbone with a new head (noisy, and confident enough for varied labels), saved with the
    backbone's tokenizer files."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the new head's initialisation is reported
        model = getattr(data2vec, class_name).from_pretrained(source, **config)
    add_noise(model, seed=1)
    for name in HEADS:
        if hasattr(model, name):
            add_noise(getattr(model, name), seed=2, scale=1.0)
    model.save_pretrained(folder)
    data2vec.AutoProcessor.from_pretrained(source).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def folders(backbone, tmp_path_factory) -> dict[str, Path]:  # noqa: F811 (the imported fixture)
    root = tmp_path_factory.mktemp("heads")
    return {
        "fill-mask": save_head(backbone, root / "mlm", "Data2VecTextForMaskedLM"),
        "text-classification": save_head(
            backbone, root / "classes", "Data2VecTextForSequenceClassification", id2label=TOPICS
        ),
        "token-classification": save_head(
            backbone, root / "ner", "Data2VecTextForTokenClassification", id2label=NER_LABELS
        ),
        "question-answering": save_head(backbone, root / "qa", "Data2VecTextForQuestionAnswering"),
        "text-generation": save_head(backbone, root / "lm", "Data2VecTextForCausalLM", is_decoder=True),
    }


def reference_pipeline(task: str, folder: Path, **options):
    return transformers.pipeline(task, model=str(folder), **options)


def assert_same(ours, theirs, path: str = "result") -> None:
    """Equal structure, keys and values; floats within ATOL."""
    if isinstance(theirs, dict):
        assert isinstance(ours, dict) and list(ours) == list(theirs), f"{path}: keys {list(ours)} vs {list(theirs)}"
        for key in theirs:
            assert_same(ours[key], theirs[key], f"{path}[{key!r}]")
    elif isinstance(theirs, (list, tuple)):
        assert isinstance(ours, list) and len(ours) == len(theirs), f"{path}: {ours!r:.200} vs {theirs!r:.200}"
        for index, (mine, other) in enumerate(zip(ours, theirs)):
            assert_same(mine, other, f"{path}[{index}]")
    elif isinstance(theirs, str) or isinstance(ours, str):
        assert ours == theirs, f"{path}: {ours!r} vs {theirs!r}"
    elif hasattr(theirs, "item") or isinstance(theirs, float):
        assert isinstance(ours, (float, int)) and abs(ours - float(theirs)) <= ATOL, f"{path}: {ours} vs {theirs}"
    else:
        assert ours == theirs, f"{path}: {ours!r} vs {theirs!r}"


def batched_equals_single(task: str, folder: Path, inputs: list, **options) -> list:
    """batch_size=3 gives the results of batch_size=1, in input order; returns them."""
    single = data2vec.pipeline(task, model=folder)(inputs, **options)
    batched = data2vec.pipeline(task, model=folder, batch_size=3)(inputs, **options)
    assert_same(batched, single)
    return single


# ---------------------------------------------------------------------- fill-mask


def test_fill_mask(folders):
    folder = folders["fill-mask"]
    pipe = data2vec.pipeline("fill-mask", model=folder)
    model, tokenizer = pipe.model, pipe.processor

    # the model called directly: softmax at the mask, the top 5 tokens, the filled-in text
    encoded = tokenizer(MASKED[0], return_tensors="pt")
    with torch.no_grad():
        logits = model(**encoded).logits[0]
    position = int((encoded["input_ids"][0] == tokenizer.mask_token_id).nonzero())
    scores, tokens = logits[position].softmax(-1).topk(5)
    result = pipe(MASKED[0])
    assert [candidate["token"] for candidate in result] == tokens.tolist()
    assert [candidate["score"] for candidate in result] == pytest.approx(scores.tolist(), abs=ATOL)
    best = tokenizer.decode(tokens[0].item())
    assert result[0]["token_str"] == best
    filled = encoded["input_ids"][0].clone()
    filled[position] = tokens[0]
    assert result[0]["sequence"] == tokenizer.decode(filled, skip_special_tokens=True)

    # the reference's pipeline: one mask, several masks (a list per mask), top_k
    reference = reference_pipeline("fill-mask", folder)
    two_masks = "the <mask> cat sat on the <mask>"
    assert_same(pipe(MASKED[1], top_k=3), reference(MASKED[1], top_k=3))
    both = pipe(two_masks)
    assert len(both) == 2 and all(len(candidates) == 5 for candidates in both)
    assert_same(both, reference(two_masks))

    assert batched_equals_single("fill-mask", folder, MASKED) == [pipe(text) for text in MASKED]
    # as the fill-mask demo builds it: on a model and tokenizer in memory
    assert FillMaskPipeline(model, tokenizer, device=model.device)(MASKED[0]) == result
    with pytest.raises(ValueError, match="<mask>"):
        pipe("a text without a mask")


# ---------------------------------------------------------------------- text classification


def test_text_classification(backbone, folders, tmp_path):  # noqa: F811 (the imported fixture)
    folder = folders["text-classification"]
    pipe = data2vec.pipeline("text-classification", model=folder)
    reference = reference_pipeline("text-classification", folder)

    encoded = pipe.processor(TEXTS[:2], padding=True, return_tensors="pt")
    with torch.no_grad():
        probabilities = pipe.model(**encoded).logits.softmax(-1)
    best = probabilities.argmax(-1)
    # the reference's shapes: a string's best label in a list, a list of texts gives a dict each
    assert pipe(TEXTS[0]) == [{"label": TOPICS[int(best[0])], "score": pytest.approx(float(probabilities[0].max()))}]
    assert [result["label"] for result in pipe(TEXTS[:2])] == [TOPICS[int(index)] for index in best]
    pair = {"text": TEXTS[1], "text_pair": TEXTS[3]}
    for inputs, options in [
        (TEXTS[0], {}),
        (TEXTS[:3], {}),
        (TEXTS[0], {"top_k": 2}),
        (TEXTS[2], {"top_k": None}),
        (TEXTS[:2], {"top_k": 1}),
        (TEXTS[3], {"function_to_apply": "sigmoid"}),
        (TEXTS[3], {"function_to_apply": "none", "top_k": None}),
        (pair, {}),
        ([pair, pair], {"top_k": 2}),
    ]:
        assert_same(pipe(inputs, **options), reference(inputs, **options), f"{inputs!r:.40} {options}")

    # one output: sigmoid by default, as the reference
    single = save_head(backbone, tmp_path / "one", "Data2VecTextForSequenceClassification", num_labels=1)
    assert_same(data2vec.pipeline("text-classification", model=single)(TEXTS[0]),
                reference_pipeline("text-classification", single)(TEXTS[0]))  # fmt: skip

    inputs = [*TEXTS, pair]
    batched_equals_single("text-classification", folder, inputs, top_k=None)
    with pytest.raises(ValueError, match="function_to_apply"):
        pipe(TEXTS[0], function_to_apply="tanh")


def test_text_classification_in_bfloat16(folders):
    """bfloat16 on the CPU: the same best label, scores close to float32's."""
    folder = folders["text-classification"]
    full = data2vec.pipeline("text-classification", model=folder)(TEXTS, top_k=None)
    half = data2vec.pipeline("text-classification", model=folder, dtype="bfloat16", batch_size=3)(TEXTS, top_k=None)
    assert next(data2vec.pipeline("text-classification", model=folder, dtype="bf16").model.parameters()).dtype == (
        torch.bfloat16
    )
    for ours, exact in zip(half, full):
        if exact[0]["score"] - exact[1]["score"] > 0.02:
            assert ours[0]["label"] == exact[0]["label"]
        scores = {label["label"]: label["score"] for label in ours}
        assert all(abs(scores[label["label"]] - label["score"]) < 0.02 for label in exact)


# ---------------------------------------------------------------------- token classification


def test_token_classification(folders):
    folder = folders["token-classification"]
    pipe = data2vec.pipeline("token-classification", model=folder)
    text = "Hello world! the quick brownish fox, paris london."

    # the model called directly: a label per token (O left out), its softmax score and offsets
    encoded = pipe.processor(text, return_offsets_mapping=True)
    with torch.no_grad():
        probabilities = pipe.model(input_ids=torch.tensor([encoded["input_ids"]])).logits[0].softmax(-1)
    expected = [
        (index, NER_LABELS[int(probabilities[index].argmax())], float(probabilities[index].max()), *offsets)
        for index, offsets in enumerate(encoded["offset_mapping"][1:-1], 1)
        if int(probabilities[index].argmax()) != 0
    ]
    tokens = pipe(text)
    assert [(t["index"], t["entity"], t["score"], t["start"], t["end"]) for t in tokens] == [
        (index, label, pytest.approx(score, abs=ATOL), start, end) for index, label, score, start, end in expected
    ]
    assert len({t["entity"] for t in tokens}) > 1 and len(tokens) < len(encoded["input_ids"]) - 2  # a real test

    # the reference's pipeline, every aggregation strategy
    reference = reference_pipeline("token-classification", folder)
    for strategy in ("none", "simple", "first", "average", "max"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Tokenizer does not support real words": the same heuristic here
            theirs = reference([text, TEXTS[2]], aggregation_strategy=strategy)
        assert_same(pipe([text, TEXTS[2]], aggregation_strategy=strategy), theirs, strategy)
    grouped = pipe(text, aggregation_strategy="simple", ignore_labels=[])
    assert all(text[entity["start"] : entity["end"]] == entity["word"].strip() for entity in grouped)
    assert {entity["entity_group"] for entity in grouped} >= {"O"}

    batched_equals_single("token-classification", folder, TEXTS, aggregation_strategy="average")
    with pytest.raises(ValueError, match="aggregation_strategy"):
        pipe(text, aggregation_strategy="longest")


def test_token_classification_reads_a_long_text_in_windows(folders):
    """A text longer than the model reads (128 tokens here): every token gets the labels of the
    window, run directly, where it sits farthest from an edge."""
    pipe = data2vec.pipeline("token-classification", model=folders["token-classification"], batch_size=2)
    text = " ".join(TEXTS * 6)
    ids = pipe.processor(text, add_special_tokens=False)["input_ids"]
    windows = context_windows(len(ids), 126, 16)
    assert len(windows) == 3
    best: dict[int, tuple[int, torch.Tensor]] = {}
    for first, last in windows:
        window = torch.tensor([[0, *ids[first:last], 2]])
        with torch.no_grad():
            probabilities = pipe.model(input_ids=window).logits[0, 1:-1].softmax(-1)
        for offset, token in enumerate(range(first, last)):
            margin = min(token - first, last - 1 - token)
            if token not in best or margin > best[token][0]:
                best[token] = (margin, probabilities[offset])
    tokens = pipe(text, stride=16, ignore_labels=[])
    assert [t["index"] for t in tokens] == list(range(1, len(ids) + 1))
    for token in tokens:
        probabilities = best[token["index"] - 1][1]
        assert token["entity"] == NER_LABELS[int(probabilities.argmax())]
        assert token["score"] == pytest.approx(float(probabilities.max()), abs=ATOL)
    assert tokens[-1]["end"] == len(text)


# ---------------------------------------------------------------------- question answering


def expected_answers(model, tokenizer, question: str, context: str, *, max_seq_len=128, doc_stride=64,
                     max_answer_len=15, impossible=False) -> list[dict]:  # fmt: skip
    """Every candidate answer by the formula, best first: per window, softmaxes of the start and end
    logits over the context tokens (and <s> when impossible answers are allowed), a span's score
    p(start) * p(end) for start <= end < start + max_answer_len; the null answer's score is the
    lowest p(<s>) * p(<s>) over the windows."""
    question_ids = tokenizer(question, add_special_tokens=False)["input_ids"][:64]
    encoded = tokenizer(context, add_special_tokens=False, return_offsets_mapping=True)
    prefix = [tokenizer.cls_token_id, *question_ids, tokenizer.sep_token_id, tokenizer.sep_token_id]
    room = max_seq_len - len(prefix) - 1
    answers: dict[tuple[int, int], float] = {}
    null = math.inf
    for first, last in context_windows(len(encoded["input_ids"]), room, doc_stride):
        ids = [*prefix, *encoded["input_ids"][first:last], tokenizer.sep_token_id]
        with torch.no_grad():
            output = model(input_ids=torch.tensor([ids]))
        allowed = [0] * impossible + list(range(len(prefix), len(prefix) + last - first))
        p_start = dict(zip(allowed, output.start_logits[0, allowed].softmax(-1).tolist()))
        p_end = dict(zip(allowed, output.end_logits[0, allowed].softmax(-1).tolist()))
        if impossible:
            null = min(null, p_start[0] * p_end[0])
        for start in allowed[impossible:]:
            for end in allowed[impossible:]:
                if start <= end < start + max_answer_len:
                    span = (encoded["offset_mapping"][first + start - len(prefix)][0],
                            encoded["offset_mapping"][first + end - len(prefix)][1])  # fmt: skip
                    answers[span] = max(answers.get(span, 0.0), p_start[start] * p_end[end])
    results = [{"score": score, "start": s, "end": e, "answer": context[s:e]} for (s, e), score in answers.items()]
    if impossible:
        results.append({"score": null, "start": 0, "end": 0, "answer": ""})
    return sorted(results, key=lambda answer: -answer["score"])


def test_question_answering(folders):
    pipe = data2vec.pipeline("question-answering", model=folders["question-answering"])
    model, tokenizer = pipe.model, pipe.processor
    question, context = "where is the lazy dog?", "the quick brown fox jumps over the lazy dog in paris"
    # the window's layout is the tokenizer's own pair encoding: <s> question </s></s> context </s>
    prefix = tokenizer(question, add_special_tokens=False)["input_ids"]
    assert tokenizer(question, context)["input_ids"] == [0, *prefix, 2, 2, *tokenizer(context)["input_ids"][1:]]

    item = {"question": question, "context": context}
    expected = expected_answers(model, tokenizer, question, context)
    assert_same(pipe(item), expected[0])
    assert_same(pipe(item, top_k=3), expected[:3])
    assert_same(pipe(item, top_k=2, max_answer_len=2), expected_answers(model, tokenizer, question, context,
                                                                        max_answer_len=2)[:2])  # fmt: skip
    # the empty answer competes: ask for enough answers to reach it
    with_null = expected_answers(model, tokenizer, question, context, impossible=True)
    count = max(2, 1 + next(rank for rank, answer in enumerate(with_null) if answer["answer"] == ""))
    assert_same(pipe(item, top_k=count, handle_impossible_answer=True), with_null[:count])

    # a long context in windows: 40 tokens a window sharing 8; the default reads 128-token windows
    long_context, _ = _long_context()
    long_item = {"question": question, "context": long_context}
    windows = expected_answers(model, tokenizer, question, long_context, max_seq_len=40, doc_stride=8)
    assert_same(pipe(long_item, max_seq_len=40, doc_stride=8, top_k=3), windows[:3])
    assert_same(pipe(long_item), expected_answers(model, tokenizer, question, long_context)[0])
    assert len(tokenizer(long_context)["input_ids"]) > 40

    items = [item, long_item, {"question": "who?", "context": "paris is a city"}, item]
    results = batched_equals_single("question-answering", folders["question-answering"], items, max_seq_len=40,
                                    doc_stride=8)  # fmt: skip
    assert_same(results[0], pipe(item))
    with pytest.raises(TypeError, match="question"):
        pipe("a question without its context")


# ---------------------------------------------------------------------- text generation


def greedy_loop(model, ids: list[int], steps: int, eos: int) -> list[int]:
    """Full passes without a cache, the argmax each step, stopping after eos."""
    sequence = list(ids)
    with torch.no_grad():
        for _ in range(steps):
            token = int(model(input_ids=torch.tensor([sequence])).logits[0, -1].argmax())
            sequence.append(token)
            if token == eos:
                break
    return sequence[len(ids) :]


def test_text_generation(folders):
    folder = folders["text-generation"]
    pipe = data2vec.pipeline("text-generation", model=folder)
    tokenizer = pipe.processor
    reference_model = transformers.AutoModelForCausalLM.from_pretrained(folder).eval()

    prompt = TEXTS[1]
    ids = tokenizer(prompt)["input_ids"]  # <s> prompt </s>, as the reference's pipeline encodes it
    new = greedy_loop(pipe.model, ids, 12, tokenizer.eos_token_id)
    # the reference's model in the same loop: the same tokens
    assert greedy_loop(reference_model, ids, 12, tokenizer.eos_token_id) == new
    expected = prompt + tokenizer.decode(new, skip_special_tokens=True)
    assert pipe(prompt, max_new_tokens=12) == [{"generated_text": expected}]
    assert pipe(prompt, max_new_tokens=12, return_full_text=False) == [{"generated_text": expected[len(prompt) :]}]
    # The reference's pipeline takes the checkpoint, but its generate() counts positions from 0, not
    # from pad_token_id + 1 as the model does: it continues as the reference model does with such
    # positions, so it is not the oracle here.
    reference = reference_pipeline("text-generation", folder)
    theirs = reference(prompt, do_sample=False, max_new_tokens=6)
    zero_based = list(ids)
    with torch.no_grad():
        for _ in range(6):
            positions = torch.arange(len(zero_based))[None]
            logits = reference_model(input_ids=torch.tensor([zero_based]), position_ids=positions).logits
            zero_based.append(int(logits[0, -1].argmax()))
    assert theirs == [{"generated_text": prompt + tokenizer.decode(zero_based[len(ids) :], skip_special_tokens=True)}]

    # prompts of different lengths, padded on the left in a batch: the texts of one at a time
    results = batched_equals_single("text-generation", folder, TEXTS, max_new_tokens=8)
    assert results[1] == pipe(prompt, max_new_tokens=8)
    sample = {"do_sample": True, "seed": 3, "top_k": 10, "top_p": 0.9, "temperature": 0.8, "max_new_tokens": 8}
    assert pipe(TEXTS[:2], **sample) == pipe(TEXTS[:2], **sample)
    with pytest.raises(ValueError, match="is_decoder"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the model's own warning about is_decoder
        data2vec.pipeline("text-generation", model=folders["fill-mask"])


# ---------------------------------------------------------------------- the commands


def test_commands_give_the_pipelines_results(folders, tmp_path):
    """Each task's command on files a user writes (its --json lines) gives the Python pipeline's
    results; the five commands run side by side."""
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(TEXTS) + "\n\n", encoding="utf-8")
    masked = tmp_path / "masked.txt"
    masked.write_text("\n".join(MASKED) + "\n", encoding="utf-8")
    pairs = tmp_path / "pairs.csv"
    with pairs.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["sentence", "second"])
        writer.writerows([[TEXTS[0], TEXTS[1]], [TEXTS[2], TEXTS[3]]])
    context = tmp_path / "context.txt"
    context.write_text(_long_context()[0], encoding="utf-8")
    questions = tmp_path / "questions.txt"
    questions.write_text("where is the lazy dog?\nwhat sat on the mat?\n", encoding="utf-8")

    commands = {
        "fill-mask": ([str(masked), "--top-k", "2"], MASKED, {"top_k": 2}),
        "text-classification": (
            [str(pairs), "--text-column", "sentence", "--text-pair-column", "second", "--top-k", "2"],
            [{"text": TEXTS[0], "text_pair": TEXTS[1]}, {"text": TEXTS[2], "text_pair": TEXTS[3]}],
            {"top_k": 2},
        ),
        "token-classification": (
            [str(texts), "--ignore-labels", "O,B-LOC"],  # entity grouping (simple) is the command's default
            TEXTS,
            {"aggregation_strategy": "simple", "ignore_labels": ["O", "B-LOC"]},
        ),
        "question-answering": (
            [str(questions), "--context", str(context), "--top-k", "2", "--max-seq-len", "40", "--doc-stride", "8"],
            [{"question": q, "context": _long_context()[0]} for q in questions.read_text().split("\n")[:2]],
            {"top_k": 2, "max_seq_len": 40, "doc_stride": 8},
        ),
        "text-generation": ([str(texts), "--max-new-tokens", "5", "--no-return-full-text"], TEXTS,
                            {"max_new_tokens": 5, "return_full_text": False}),
    }  # fmt: skip
    command = [sys.executable, "-m", "data2vec.cli"]
    common = ["--json", "--no-progress", "--batch-size", "3"]
    quiet = {**os.environ, "OMP_NUM_THREADS": "1"}  # five processes share the cores
    running = {
        task: subprocess.Popen(
            [*command, task, "--model", str(folders[task]), *common, *arguments],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=quiet,
        )
        for task, (arguments, _, _) in commands.items()
    }
    for task, process in running.items():
        stdout, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, f"{task}: {stderr}"
        lines = [json.loads(line) for line in stdout.splitlines()]
        _, inputs, options = commands[task]
        expected = data2vec.pipeline(task, model=folders[task])(inputs, **options)
        assert len(lines) == len(inputs), task
        assert_same([line["result"] for line in lines], expected, task)
        first = {
            "fill-mask": f"{masked}:1",
            "text-classification": f"{pairs}:2",
            "question-answering": f"{questions}:1",
        }
        assert lines[0]["input"] == first.get(task, f"{texts}:1")


def test_command_reads_questions_from_files_and_says_what_is_missing(tmp_path):
    squad = tmp_path / "dev.json"
    squad.write_text(json.dumps({"data": [{"paragraphs": [{"context": "paris is a city", "qas": [
        {"id": "a", "question": "what is paris?", "answers": []}]}]}]}), encoding="utf-8")  # fmt: skip
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"question": "where?", "context": "in london"}) + "\n", encoding="utf-8")
    read = QuestionAnsweringPipeline.read_inputs
    assert read([str(squad), str(rows)], {"context": None}) == [
        (f"{squad}:1", {"question": "what is paris?", "context": "paris is a city"}),
        (f"{rows}:1", {"question": "where?", "context": "in london"}),
    ]
    assert read(["who is there?"], {"context": "nobody"}) == [
        ("who is there?", {"question": "who is there?", "context": "nobody"})
    ]
    with pytest.raises(ValueError, match="--context"):
        read(["who is there?"], {"context": None})
    pairs = TextClassificationPipeline.read_inputs(
        [str(rows)], {"text_column": "question", "text_pair_column": "context"}
    )
    assert pairs == [(f"{rows}:1", {"text": "where?", "text_pair": "in london"})]
