"""The text fine-tuning tasks: reading users' files, batching, a few training steps, the
metrics on fixtures worked out by hand, and the saved folder loading here and in the
reference library (transformers).

Every test fine-tunes a tiny random checkpoint (hidden 32, 2 layers, no dropout) written into a
temporary folder with a byte-level BPE vocabulary trained here."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import pytest
import torch
from tokenizers import ByteLevelBPETokenizer
from torch import nn

import data2vec
from data2vec.core.outputs import PredictionOutput, QuestionAnsweringOutput
from data2vec.text.tokenizer import Data2VecTextTokenizer
from data2vec.training.data import DataError
from data2vec.training.tasks import TASKS, get_task
from data2vec.training.tasks_text import context_windows, mask_tokens
from tests.helpers import add_noise

transformers = pytest.importorskip("transformers")

WORDS = "the quick brown fox jumps over lazy dog red green blue cat sat on mat paris london city is in where".split()
CORPUS = [
    "the quick brown fox jumps over the lazy dog",
    "the red cat sat on the mat",
    "paris is a city in france and london is a city too",
    "where is the green blue dog ?",
    "Hello world! how are you doing today?",
]

TEXT_TASKS = {
    "text-classification": "AutoModelForSequenceClassification",
    "text-regression": "AutoModelForSequenceClassification",
    "token-classification": "AutoModelForTokenClassification",
    "question-answering": "AutoModelForQuestionAnswering",
    "multiple-choice": "AutoModelForMultipleChoice",
    "fill-mask": "AutoModelForMaskedLM",
}


# ---------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def backbone(tmp_path_factory) -> Path:
    """A folder with a tiny noisy Data2VecTextModel and its tokenizer (as export-backbone writes)."""
    folder = tmp_path_factory.mktemp("backbone")
    vocab = tmp_path_factory.mktemp("bpe")
    trainer = ByteLevelBPETokenizer()
    trainer.train_from_iterator(
        CORPUS * 50 + [" ".join(WORDS)] * 50,
        vocab_size=400,
        min_frequency=2,
        special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
        show_progress=False,
    )
    trainer.save_model(str(vocab))
    tokenizer = Data2VecTextTokenizer(vocab / "vocab.json", vocab / "merges.txt")
    config = data2vec.Data2VecTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=130,
        type_vocab_size=1,
        layer_norm_eps=1e-5,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    torch.manual_seed(0)
    add_noise(data2vec.Data2VecTextModel(config), seed=0).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def prepare(name: str, source: Path, examples: list[dict], **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the new head's warnings (checked in their own test)
        return get_task(name).prepare(source, examples, options)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    return write(path, "".join(json.dumps(row) + "\n" for row in rows))


def assert_loss_falls(model: nn.Module, batch: dict, steps: int = 15, learning_rate: float = 1e-2) -> None:
    """A few AdamW steps on one fixed batch lower the loss."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate)
    model.train()
    losses = []
    for _ in range(steps):
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(float(loss.detach()))
    assert all(math.isfinite(loss) for loss in losses), losses
    assert losses[-1] < 0.8 * losses[0], losses


def assert_saved_folder_loads(prepared, model: nn.Module, batch: dict, class_name: str, folder: Path) -> None:
    """``save`` writes a folder that our class and the reference class of the same name load,
    both giving the fine-tuned model's outputs."""
    prepared.save(model, folder)
    assert (folder / "config.json").exists() and (folder / "tokenizer.json").exists()
    inputs = {key: batch[key] for key in ("input_ids", "attention_mask")}
    ours = getattr(data2vec, class_name).from_pretrained(folder).eval()
    reference = getattr(transformers, class_name).from_pretrained(folder, attn_implementation="eager").eval()
    model.eval()
    names = ("start_logits", "end_logits") if "QuestionAnswering" in class_name else ("logits",)
    with torch.no_grad():
        expected, loaded, theirs = model(**inputs), ours(**inputs), reference(**inputs)
    for name in names:
        torch.testing.assert_close(getattr(loaded, name), getattr(expected, name), atol=1e-4, rtol=0)
        torch.testing.assert_close(getattr(theirs, name), getattr(expected, name), atol=1e-4, rtol=0)
    # the saved tokenizer encodes as the reference library's tokenizer of that folder
    text = "the quick brown fox"
    assert data2vec.AutoProcessor.from_pretrained(folder)(text)["input_ids"] == (
        transformers.AutoTokenizer.from_pretrained(folder)(text)["input_ids"]
    )


class Scripted(nn.Module):
    """A stand-in model whose outputs the test decides: ``answer(batch) -> output``."""

    def __init__(self, answer) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))
        self.answer = answer
        self.batches: list[dict] = []

    def forward(self, **batch):
        self.batches.append(batch)
        return self.answer(batch)


def one_hot_logits(classes: list[int], count: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.tensor(classes), count).float() * 5.0


# ---------------------------------------------------------------------- registry


def test_registry_holds_every_text_task():
    for name, auto_class in TEXT_TASKS.items():
        task = TASKS[name]
        assert (task.name, task.family, task.auto_class) == (name, "data2vec-text", auto_class)
        assert task.model_class() is getattr(data2vec, auto_class)
    assert (TASKS["text-regression"].metric, TASKS["text-regression"].greater_is_better) == ("mse", False)
    assert (TASKS["fill-mask"].metric, TASKS["fill-mask"].greater_is_better) == ("loss", False)
    assert (TASKS["question-answering"].metric, TASKS["token-classification"].metric) == ("f1", "f1")
    with pytest.raises(ValueError) as error:
        get_task("text-clasification")
    message = str(error.value)
    assert "\n" not in message and "text-classification" in message and "fill-mask" in message


# ---------------------------------------------------------------------- text classification


@pytest.mark.filterwarnings("ignore::data2vec.core.modeling.CheckpointWarning")
def test_text_classification(backbone, tmp_path):
    train = write(
        tmp_path / "train.csv",
        "text,text_pair,label\n"
        "the quick brown fox,the lazy dog,pos\n"
        "the red cat sat,on the mat,neg\n"
        "paris is a city,in france,neu\n"
        "where is the dog,the dog sat,pos\n",
    )
    task = get_task("text-classification")
    examples = task.read(train, {})
    assert [example["_row"] for example in examples] == [2, 3, 4, 5]
    assert examples[0]["text_pair"] == "the lazy dog" and examples[0]["label"] == "pos"

    with pytest.warns(UserWarning, match="new head"):
        prepared = task.prepare(backbone, examples, {})
    model = prepared.model
    assert model.config.id2label == {0: "neg", 1: "neu", 2: "pos"}  # sorted labels of the data
    assert model.config.problem_type == "single_label_classification"

    batch = prepared.collate(examples)
    assert batch["labels"].tolist() == [2, 0, 1, 2]
    assert batch["input_ids"].shape[0] == 4 and batch["input_ids"].shape == batch["attention_mask"].shape
    assert_loss_falls(model, batch)

    # forced predictions, in batches of 3: neg neg neu | pos pos
    evaluation = [
        {"text": "a", "label": "neg"}, {"text": "b", "label": "neu"}, {"text": "c", "label": "neu"},
        {"text": "d", "label": "pos"}, {"text": "e", "label": "neg"},
    ]  # fmt: skip
    predicted = [0, 0, 1, 2, 2]
    rows = iter(one_hot_logits(predicted, 3))
    scripted = Scripted(
        lambda batch: PredictionOutput(
            loss=torch.tensor(0.5), logits=torch.stack([next(rows) for _ in range(len(batch["labels"]))])
        )
    )
    prepared_small = prepare("text-classification", backbone, examples, eval_batch_size=3)
    scores = prepared_small.evaluate(scripted, evaluation)
    assert [len(batch["labels"]) for batch in scripted.batches] == [3, 2]
    assert scores["accuracy"] == pytest.approx(3 / 5)
    # per class F1: neg 1/2 (P 1/2, R 1/2), neu 2/3 (P 1, R 1/2), pos 2/3 (P 1/2, R 1)
    assert scores["f1_macro"] == pytest.approx((1 / 2 + 2 / 3 + 2 / 3) / 3)
    assert scores["loss"] == pytest.approx(0.5)
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    truth = [0, 1, 1, 2, 0]
    assert scores["f1_macro"] == pytest.approx(sklearn_metrics.f1_score(truth, predicted, average="macro"))

    assert_saved_folder_loads(
        prepared, model, batch, "Data2VecTextForSequenceClassification", tmp_path / "out"
    )
    saved = json.loads((tmp_path / "out" / "config.json").read_text())
    assert saved["id2label"] == {"0": "neg", "1": "neu", "2": "pos"}


def test_text_classification_errors_name_the_file_and_line(backbone, tmp_path):
    task = get_task("text-classification")
    examples = task.read(write(tmp_path / "train.csv", "text,label\nthe dog,pos\nthe cat,neg\n"), {})
    prepared = prepare("text-classification", backbone, examples)
    unknown = task.read(write(tmp_path / "eval.csv", "text,label\nthe dog,pos\nthe mat,neutral\n"), {})
    with pytest.raises(DataError, match=r"eval\.csv, line 3: label 'neutral'"):
        prepared.check(unknown)
    with pytest.raises(DataError, match=r"eval\.csv, line 3"):
        prepared.evaluate(prepared.model, unknown)
    with pytest.raises(DataError, match=r"train\.csv.*at least two labels"):
        prepare("text-classification", backbone, examples[:1])
    with pytest.raises(DataError, match=r"line 2:.*empty"):
        task.read(write(tmp_path / "blank.csv", "text,label\nthe dog,\n"), {})
    with pytest.raises(DataError, match="label"):  # the missing column, named by data.read_records
        task.read(write(tmp_path / "nolabel.csv", "text,class\nthe dog,pos\n"), {})
    renamed = task.read(
        write(tmp_path / "renamed.csv", "sentence,class\nthe dog,pos\n"),
        {"text_column": "sentence", "label_column": "class"},
    )
    assert renamed[0]["text"] == "the dog" and renamed[0]["label"] == "pos"


# ---------------------------------------------------------------------- regression


@pytest.mark.filterwarnings("ignore::data2vec.core.modeling.CheckpointWarning")
def test_text_regression(backbone, tmp_path):
    rows = [
        {"text": "the quick brown fox", "label": 0.5},
        {"text": "the red cat sat", "label": 2.0},
        {"text": "paris is a city", "label": 1.0},
        {"text": "the lazy dog", "label": 3},
    ]
    task = get_task("text-regression")
    examples = task.read(write_jsonl(tmp_path / "train.jsonl", rows), {})
    assert [example["label"] for example in examples] == [0.5, 2.0, 1.0, 3.0]
    assert [example["_row"] for example in examples] == [1, 2, 3, 4]

    with pytest.warns(UserWarning, match="new head"):
        prepared = task.prepare(backbone, examples, {})
    model = prepared.model
    assert model.config.num_labels == 1 and model.config.problem_type == "regression"
    batch = prepared.collate(examples)
    assert batch["labels"].dtype == torch.float32
    assert_loss_falls(model, batch)

    predictions = iter([1.0, 2.0, 3.0, 4.0])
    scripted = Scripted(
        lambda batch: PredictionOutput(logits=torch.tensor([[next(predictions)] for _ in batch["labels"]]))
    )
    targets = [{"text": "x", "label": value} for value in (1.0, 2.0, 3.0, 5.0)]
    scores = prepare("text-regression", backbone, examples, eval_batch_size=3).evaluate(scripted, targets)
    assert scores["mse"] == pytest.approx(0.25)  # (5 - 4)^2 / 4
    assert scores["spearman"] == pytest.approx(1.0)  # the same order
    # pearson of (1, 2, 3, 4) and (1, 2, 3, 5): sum of co-deviations 6.5 / sqrt(5 * 8.75)
    assert scores["pearson"] == pytest.approx(6.5 / math.sqrt(5 * 8.75))

    assert_saved_folder_loads(prepared, model, batch, "Data2VecTextForSequenceClassification", tmp_path / "out")
    assert json.loads((tmp_path / "out" / "config.json").read_text())["problem_type"] == "regression"

    write_jsonl(tmp_path / "bad.jsonl", [{"text": "a", "label": 1}, {"text": "b", "label": "high"}])
    with pytest.raises(DataError, match=r"bad\.jsonl, line 2:.*must be a number"):
        task.read(tmp_path / "bad.jsonl", {})


# ---------------------------------------------------------------------- token classification

CONLL = """-DOCSTART- O

paris B-LOC
is O
catapults O
green O

the O
quick B-PER
fox I-PER
sat O
in O
london B-LOC
"""


def test_token_classification_alignment_and_training(backbone, tmp_path):
    task = get_task("token-classification")
    examples = task.read(write(tmp_path / "train.conll", CONLL), {})
    assert [example["_row"] for example in examples] == [3, 8]
    prepared = prepare("token-classification", backbone, examples)
    model, tokenizer = prepared.model, prepared.processor
    assert model.config.id2label == {0: "B-LOC", 1: "B-PER", 2: "I-PER", 3: "O"}
    assert tokenizer.add_prefix_space  # words are encoded one by one

    batch = prepared.collate(examples)
    # the first sub-token of each word carries the word's tag; the other sub-tokens, <s>, </s>
    # and the padding are -100
    for row, example in enumerate(examples):
        expected = [-100]
        for word, tag in zip(example["tokens"], example["tags"]):
            pieces = len(tokenizer.tokenize(" " + word))
            expected += [model.config.label2id[tag]] + [-100] * (pieces - 1)
        expected += [-100]
        length = int(batch["attention_mask"][row].sum())
        assert batch["labels"][row, :length].tolist() == expected
        assert (batch["labels"][row, length:] == -100).all()
    assert len(tokenizer.tokenize(" catapults")) > 1  # the fixture has a word of several pieces
    assert_loss_falls(model, batch)

    assert_saved_folder_loads(prepared, model, batch, "Data2VecTextForTokenClassification", tmp_path / "out")
    saved_tokenizer = json.loads((tmp_path / "out" / "tokenizer_config.json").read_text())
    assert saved_tokenizer["add_prefix_space"] is True


def test_token_classification_entity_f1_from_first_sub_tokens(backbone, tmp_path):
    examples = get_task("token-classification").read(write(tmp_path / "train.conll", CONLL), {})
    prepared = prepare("token-classification", backbone, examples)
    tokenizer, label2id = prepared.processor, prepared.model.config.label2id
    # The scripted model predicts, per token id, the tag below (O elsewhere): "catapults"'s
    # first piece says B-LOC, its later pieces I-PER (ignored: only first pieces count).
    words = [word for example in examples for word in example["tokens"]]
    pieces = {word: tokenizer.tokenize(" " + word) for word in words}
    assert len({pieces[word][0] for word in words}) == len(words)  # every word starts with its own piece
    table = {piece: "I-PER" for piece in pieces["catapults"][1:]}
    table.update({pieces["paris"][0]: "B-LOC", pieces["catapults"][0]: "B-LOC"})
    table.update({pieces["quick"][0]: "B-PER", pieces["fox"][0]: "B-PER"})
    table = {tokenizer.convert_tokens_to_ids(piece): tag for piece, tag in table.items()}

    def answer(batch):
        ids = batch["input_ids"]
        classes = [[label2id[table.get(int(token), "O")] for token in row] for row in ids]
        return PredictionOutput(logits=one_hot_logits(sum(classes, []), 4).view(*ids.shape, 4))

    scores = prepared.evaluate(Scripted(answer), examples)
    # words predicted: paris B-LOC, is O, catapults B-LOC, green O | the O, quick B-PER,
    # fox B-PER, sat O, in O, london O.
    # true entities: LOC(paris), PER(quick fox), LOC(london)         -> 3
    # predicted: LOC(paris), LOC(catapults), PER(quick), PER(fox)    -> 4, one of them right
    precision, recall = 1 / 4, 1 / 3
    assert scores["precision"] == pytest.approx(precision)
    assert scores["recall"] == pytest.approx(recall)
    assert scores["f1"] == pytest.approx(2 * precision * recall / (precision + recall))
    assert scores["accuracy"] == pytest.approx(7 / 10)  # wrong: catapults, fox, london

    # a tag the training data lacks: the error names its own line
    unknown = write(tmp_path / "eval.conll", "the O\ncat B-ANIMAL\n")
    with pytest.raises(DataError, match=r"eval\.conll, line 2: label 'B-ANIMAL'"):
        prepared.check(get_task("token-classification").read(unknown, {}))


# ---------------------------------------------------------------------- question answering


def test_context_windows_arithmetic():
    assert context_windows(50, 24, 8) == [(0, 24), (16, 40), (32, 50)]
    assert context_windows(24, 24, 8) == [(0, 24)]
    assert context_windows(25, 24, 8) == [(0, 24), (16, 25)]
    assert context_windows(0, 24, 8) == [(0, 0)]
    with pytest.raises(ValueError, match="doc_stride"):
        context_windows(50, 8, 8)


def _long_context() -> tuple[str, int]:
    """50 one-token words; "lazy dog" are words 27 and 28. Returns (context, its answer_start)."""
    filler = ["the", "red", "cat", "sat", "on", "mat", "green", "blue", "city", "over"]
    words = [filler[index % len(filler)] for index in range(50)]
    words[27], words[28] = "lazy", "dog"
    context = " ".join(words)
    return context, context.index("lazy dog")


def test_question_answering_windows_and_training(backbone, tmp_path):
    context, start = _long_context()
    squad = {
        "version": "v2.0",
        "data": [{"title": "t", "paragraphs": [{"context": context, "qas": [
            {"id": "q1", "question": "where is the dog", "answers": [{"text": "lazy dog", "answer_start": start}]},
        ]}]}],
    }  # fmt: skip
    task = get_task("question-answering")
    examples = task.read(write(tmp_path / "train.json", json.dumps(squad)), {})
    tokenizer = data2vec.AutoProcessor.from_pretrained(backbone)
    for word in context.split() + ["lazy"]:  # every context word is one token (its index = the word's)
        assert len(tokenizer.tokenize(" " + word)) == 1, word
    question = tokenizer("where is the dog", add_special_tokens=False)["input_ids"]
    prefix = 1 + len(question) + 2  # <s> question </s></s>
    room = 24
    prepared = prepare("question-answering", backbone, examples, max_length=prefix + room + 1, doc_stride=8)

    batch = prepared.collate(examples)
    # windows of context words [0, 24), [16, 40), [32, 50): the answer (words 27-28) is in the second only
    assert batch["input_ids"].shape[0] == 3
    assert batch["start_positions"].tolist() == [0, prefix + 27 - 16, 0]
    assert batch["end_positions"].tolist() == [0, prefix + 28 - 16, 0]
    row = batch["input_ids"][1]
    assert tokenizer.decode(row[prefix + 11 : prefix + 13]).strip() == "lazy dog"
    context_ids = tokenizer(context, add_special_tokens=False)["input_ids"]
    assert row.tolist() == [0, *question, 2, 2, *context_ids[16:40], 2]
    # the second text of the reference's pair encoding is the same window
    assert row.tolist() == tokenizer("where is the dog", " " + " ".join(context.split()[16:40]))["input_ids"]
    assert batch["attention_mask"][2].sum() == prefix + 18 + 1  # the last window: 18 words, padded
    assert_loss_falls(prepared.model, batch)

    assert_saved_folder_loads(
        prepared, prepared.model, batch, "Data2VecTextForQuestionAnswering", tmp_path / "out"
    )


def test_question_answering_metrics_from_the_best_span(backbone, tmp_path):
    long_context, start = _long_context()
    short_context = "the quick brown fox jumps over the lazy dog"
    examples = [
        {"id": "q1", "question": "where is the dog", "context": long_context,
         "answers": {"text": ["lazy dog"], "answer_start": [start]}, "_row": 1},
        {"id": "q2", "question": "which fox", "context": short_context,
         "answers": {"text": ["brown fox"], "answer_start": [10]}, "_row": 2},
        {"id": "q3", "question": "where is paris", "context": "the red cat sat on the mat",
         "answers": {"text": [], "answer_start": []}, "_row": 3},
    ]  # fmt: skip
    prepared = prepare("question-answering", backbone, examples, max_length=40, doc_stride=8, eval_batch_size=2)
    tokenizer = prepared.processor
    token = {word: tokenizer.convert_tokens_to_ids("Ġ" + word) for word in ("lazy", "dog", "quick", "fox", "jumps")}
    assert tokenizer.unk_token_id not in token.values()
    start_scores = {token["lazy"]: 10.0, token["quick"]: 10.0, 0: 5.0}  # <s> (id 0): "no answer" scores 10
    end_scores = {token["dog"]: 10.0, token["fox"]: 10.0, token["jumps"]: 30.0, 0: 5.0}

    def answer(batch):
        ids = batch["input_ids"]
        starts = torch.tensor([[start_scores.get(int(t), 0.0) for t in row] for row in ids])
        ends = torch.tensor([[end_scores.get(int(t), 0.0) for t in row] for row in ids])
        return QuestionAnsweringOutput(start_logits=starts, end_logits=ends)

    scripted = Scripted(answer)
    scores = prepared.evaluate(scripted, examples)
    # q1: "lazy dog" (10 + 10 > the <s> score 10): exact. q2: "quick brown fox jumps" (10 + 30)
    # beats "quick brown fox" (10 + 10); its F1 against "brown fox" = 2 * (2/4 * 2/2) / (2/4 + 1) = 2/3.
    # q3: nothing scores above the <s> score 10 -> "" (v2 data), right for an unanswerable question.
    assert scores["exact_match"] == pytest.approx(2 / 3)
    assert scores["f1"] == pytest.approx((1 + 2 / 3 + 1) / 3)
    assert scripted.batches[0]["input_ids"].shape[0] > 2  # q1's long context gave several windows

    with pytest.raises(DataError, match="q2.*twice"):
        prepared.check([examples[1], {**examples[1], "_row": 9}])


# ---------------------------------------------------------------------- multiple choice


def test_multiple_choice(backbone, tmp_path):
    task = get_task("multiple-choice")
    csv_examples = task.read(
        write(
            tmp_path / "train.csv",
            "text,choice0,choice1,choice2,label\n"
            "the quick brown fox,jumps over,sat on,is in,0\n"
            "the red cat,sat on the mat,jumps over,is a city,0\n"
            "paris is,a city,a dog,a fox,0\n",
        ),
        {},
    )
    json_examples = task.read(
        write_jsonl(
            tmp_path / "train.jsonl",
            [
                {"text": "the quick brown fox", "choices": ["jumps over", "sat on", "is in"], "label": 0},
                {"text": "the red cat", "choices": ["sat on the mat", "jumps over", "is a city"], "label": 0},
                {"text": "paris is", "choices": ["a city", "a dog", "a fox"], "label": 0},
            ],
        ),
        {},
    )
    strip = lambda examples: [{k: v for k, v in e.items() if not k.startswith("_")} for e in examples]  # noqa: E731
    assert strip(csv_examples) == strip(json_examples)
    assert csv_examples[1]["choices"] == ["sat on the mat", "jumps over", "is a city"]

    prepared = prepare("multiple-choice", backbone, csv_examples)
    batch = prepared.collate(csv_examples)
    assert batch["input_ids"].shape[:2] == (3, 3) and batch["labels"].tolist() == [0, 0, 0]
    first = prepared.processor("the red cat", "jumps over")["input_ids"]
    assert batch["input_ids"][1, 1, : len(first)].tolist() == first  # example 1, choice 1
    assert_loss_falls(prepared.model, batch)

    predicted = iter([[0.0, 1.0, 0.0], [3.0, 0.0, 0.0], [0.0, 0.0, 2.0]])
    scripted = Scripted(
        lambda batch: PredictionOutput(
            loss=torch.tensor(1.0), logits=torch.tensor([next(predicted) for _ in batch["labels"]])
        )
    )
    scores = prepare("multiple-choice", backbone, csv_examples, eval_batch_size=2).evaluate(scripted, csv_examples)
    assert scores["accuracy"] == pytest.approx(1 / 3)

    assert_saved_folder_loads(prepared, prepared.model, batch, "Data2VecTextForMultipleChoice", tmp_path / "out")

    with pytest.raises(DataError, match=r"bad\.csv, line 2:.*index of the right choice, 0 to 1"):
        task.read(write(tmp_path / "bad.csv", "text,choice0,choice1,label\nthe cat,sat,ran,2\n"), {})
    with pytest.raises(DataError, match=r"one\.csv, line 2:.*at least two"):
        task.read(write(tmp_path / "one.csv", "text,choice0,label\nthe cat,sat,0\n"), {})


# ---------------------------------------------------------------------- masked language modelling


def test_mask_tokens_proportions_and_special_tokens():
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(5, 300, (200, 100), generator=generator)
    maskable = torch.ones_like(input_ids, dtype=torch.bool)
    maskable[:, 0] = maskable[:, -1] = False  # <s> ... </s>
    masked, labels = mask_tokens(
        input_ids, maskable, probability=0.15, mask_token_id=4, vocab_size=300, generator=generator
    )
    chosen = labels != -100
    assert not chosen[:, 0].any() and not chosen[:, -1].any()
    assert (masked[~chosen] == input_ids[~chosen]).all()  # only chosen tokens change
    assert (labels[chosen] == input_ids[chosen]).all()
    count = int(chosen.sum())
    assert count / maskable.sum() == pytest.approx(0.15, abs=0.01)
    as_mask = int((masked[chosen] == 4).sum())
    kept = int((masked[chosen] == input_ids[chosen]).sum())
    assert as_mask / count == pytest.approx(0.8, abs=0.03)
    assert kept / count == pytest.approx(0.1 + 0.1 / 295, abs=0.02)  # 10% kept (+ random draws of itself)
    # a batch whose draw chose nothing still gets one token to predict
    _, labels = mask_tokens(
        input_ids[:1, :3], maskable[:1, :3], probability=1e-9, mask_token_id=4, vocab_size=300, generator=generator
    )
    assert int((labels != -100).sum()) == 1 and labels[0, 1] == input_ids[0, 1]


def test_fill_mask(backbone, tmp_path):
    task = get_task("fill-mask")
    rows = [{"text": sentence} for sentence in CORPUS[:4]] + [{"text": "   "}]
    examples = task.read(write_jsonl(tmp_path / "train.jsonl", rows), {})
    assert len(examples) == 4  # the blank text is left out
    prepared = prepare("fill-mask", backbone, examples, mlm_probability=0.3)
    tokenizer = prepared.processor

    torch.manual_seed(3)
    batch = prepared.collate(examples)
    torch.manual_seed(3)
    again = prepared.collate(examples)
    assert all(torch.equal(batch[key], again[key]) for key in batch)  # seeded by torch's generator
    different = prepared.collate(examples)
    assert not torch.equal(different["labels"], batch["labels"])
    plain = tokenizer([example["text"] for example in examples], padding=True, return_tensors="pt")["input_ids"]
    special = torch.isin(plain, torch.tensor(tokenizer.all_special_ids))
    assert (batch["labels"][special] == -100).all() and torch.equal(batch["input_ids"][special], plain[special])
    chosen = batch["labels"] != -100
    assert chosen.any() and torch.equal(batch["labels"][chosen], plain[chosen])
    assert torch.equal(batch["input_ids"][~chosen], plain[~chosen])
    assert_loss_falls(prepared.model, batch)

    vocab = prepared.model.config.vocab_size

    def uniform(batch):
        return PredictionOutput(logits=torch.zeros(*batch["input_ids"].shape, vocab))

    scores = prepared.evaluate(Scripted(uniform), examples)
    assert scores["loss"] == pytest.approx(math.log(vocab))  # every token equally likely
    assert scores["perplexity"] == pytest.approx(vocab)
    assert scores["accuracy"] == 0.0  # argmax is id 0 (<s>), never a masked token

    def perfect(batch):
        labels = batch["labels"].clamp(min=0)
        return PredictionOutput(logits=torch.nn.functional.one_hot(labels, vocab).float() * 50)

    perfect_model = Scripted(perfect)
    scores = prepared.evaluate(perfect_model, examples)
    assert scores["accuracy"] == 1.0 and scores["loss"] < 1e-6
    # evaluation masks are the same every time and leave torch's generator alone
    state = torch.get_rng_state()
    prepared.evaluate(perfect_model, examples)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(perfect_model.batches[0]["labels"], perfect_model.batches[-1]["labels"])

    assert_saved_folder_loads(prepared, prepared.model, batch, "Data2VecTextForMaskedLM", tmp_path / "out")


# ---------------------------------------------------------------------- the new head


@pytest.mark.filterwarnings("ignore::data2vec.core.modeling.CheckpointWarning")
def test_new_head_only_when_the_labels_differ(backbone, tmp_path):
    task = get_task("text-classification")
    examples = task.read(write(tmp_path / "train.csv", "text,label\nthe dog,pos\nthe cat,neg\n"), {})
    with pytest.warns(UserWarning, match="new head"):
        prepared = task.prepare(backbone, examples, {})
    prepared.save(prepared.model, tmp_path / "tuned")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the same labels: the head is kept, nothing to warn about
        again = task.prepare(tmp_path / "tuned", examples, {})
    for name, tensor in prepared.model.state_dict().items():
        assert torch.equal(tensor, again.model.state_dict()[name]), name
