"""Text: does data2vec pretraining help a tiny text model learn a topic classifier from few labels?
(Measured in docs/pretraining-results.md: no; at this size it costs 15.6 to 24.0 points.)

Data: the docstrings of Python's standard library (they ship with every Python), each labeled
with the topic of its module: asyncio, concurrency, e-mail, introspection, logging, web, XML
(the groups are ``TOPICS``). A fixed test split of ``TEST_PER_TOPIC`` docstrings per topic is
held out from everything; the rest, with the docstrings of other standard-library modules
(``EXTRA_PACKAGES``) and the paragraphs of the help topics, is the pretraining text (no labels,
about 4,400 paragraphs and 166k words with Python 3.11). Of the topic docstrings,
``LABELED_PER_TOPIC`` docstrings per topic keep their labels for fine-tuning and as many more
form the validation split of the model choice.

1. Pretrain a 4-layer, 64-wide ``Data2VecTextModel`` with data2vec (recipe
   ``recipes/pretrain-text-tiny.yaml``: BERT-style masking, EMA teacher, top-K layer targets)
   on the unlabeled docstrings, with 3 seeds; the BPE vocabulary is trained on the same text.
2. Compare ``Data2VecTextForSequenceClassification`` fine-tuned from it against the same model
   from random initialisation with the protocol of ``demos/protocol.py``.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from ..text.config import Data2VecTextConfig
from ..text.model import Data2VecTextForSequenceClassification
from ..text.tokenizer import Data2VecTextTokenizer
from ..text.vocabulary import train_tokenizer
from ..training.finetune import FinetuneSettings
from .protocol import Classifier, DemoTask, Grid, Split, demo_recipe

RECIPE = "pretrain-text-tiny.yaml"
TOPICS = {
    "asyncio": ["asyncio"],
    "concurrency": ["multiprocessing", "threading", "concurrent", "queue"],
    "email": ["email", "mailbox", "smtplib", "imaplib", "poplib"],
    "introspection": ["inspect", "ast", "dis", "pdb", "bdb", "doctest", "pydoc", "traceback", "tokenize"],
    "logging": ["logging"],
    "web": ["http", "urllib", "wsgiref", "socketserver"],
    "xml": ["xml", "xmlrpc"],
}
# more unlabeled text: docstrings of other standard-library modules (no topic) and the help topics
EXTRA_PACKAGES = [
    "collections", "typing", "pathlib", "shutil", "tempfile", "os", "subprocess", "zipfile", "tarfile", "gzip",
    "bz2", "lzma", "ssl", "socket", "selectors", "statistics", "enum", "functools", "contextlib", "argparse",
    "optparse", "configparser", "calendar", "difflib", "random", "weakref", "platform", "codecs", "ipaddress",
    "uuid", "base64", "json", "locale", "textwrap", "pickletools", "dataclasses", "importlib", "numbers", "re",
]
TEST_PER_TOPIC = 40
LABELED_PER_TOPIC = 32
MAX_TOKENS = 64
VOCAB_SIZE = 2000
PRETRAIN_STEPS = 2400
GRID = Grid(learning_rates=[3e-4, 1e-3], epochs=[20, 40])
FINETUNE = FinetuneSettings(batch_size=16, weight_decay=0.01)


def module_names(package: str) -> list[str]:
    """The package and its submodules, tests and ``__main__`` modules left out."""
    module = importlib.import_module(package)
    names = [package]
    if hasattr(module, "__path__"):
        for info in pkgutil.walk_packages(module.__path__, package + ".", onerror=lambda name: None):
            if "test" not in info.name and "__main__" not in info.name and not info.name.endswith(".tool"):
                names.append(info.name)
    return names


def docstrings(package: str, min_words: int = 8) -> list[str]:
    """The docstrings (whitespace collapsed) of the classes, functions and methods defined in a
    standard-library package, in a fixed order."""
    found: dict[int, str] = {}
    for name in module_names(package):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                module = importlib.import_module(name)
        except Exception:  # optional parts (a missing C extension) are skipped
            continue
        for value in list(vars(module).values()):
            if getattr(value, "__module__", None) != name:
                continue
            members = [value, *vars(value).values()] if inspect.isclass(value) else [value]
            for member in members:
                if not (inspect.isclass(member) or inspect.isfunction(member)) or id(member) in found:
                    continue
                doc = inspect.getdoc(member) or ""
                if len(doc.split()) >= min_words:
                    found[id(member)] = " ".join(doc.split())
    return sorted(set(found.values()))


def help_paragraphs() -> list[str]:
    """Paragraphs of Python's help topics (``pydoc_data``)."""
    from .fill_mask import python_help_corpus

    return python_help_corpus()


def topic_corpus(seed: int = 0) -> dict:
    """Docstrings, topic labels and the fixed test / labeled / validation / pretraining split."""
    texts, labels = [], []
    for label, packages in enumerate(TOPICS.values()):
        topic = sorted({doc for package in packages for doc in docstrings(package)})
        texts.extend(topic)
        labels.extend([label] * len(topic))
    labels_array = np.asarray(labels)
    generator = np.random.default_rng(seed)
    split = {"test": [], "train": [], "validation": []}
    for label in range(len(TOPICS)):
        members = generator.permutation(np.flatnonzero(labels_array == label))
        needed = TEST_PER_TOPIC + 2 * LABELED_PER_TOPIC
        if len(members) < needed:
            raise RuntimeError(f"topic {list(TOPICS)[label]!r} has {len(members)} docstrings, the demo needs {needed}")
        split["test"].extend(members[:TEST_PER_TOPIC])
        split["train"].extend(members[TEST_PER_TOPIC : TEST_PER_TOPIC + LABELED_PER_TOPIC])
        split["validation"].extend(members[TEST_PER_TOPIC + LABELED_PER_TOPIC : needed])
    test = {texts[index] for index in split["test"]}
    extra = sorted({doc for package in EXTRA_PACKAGES for doc in docstrings(package)} | set(help_paragraphs()))
    unlabeled = [text for text in texts + extra if text not in test]
    return {"texts": texts, "labels": torch.tensor(labels), "split": split, "unlabeled": unlabeled}


def encode(tokenizer: Data2VecTextTokenizer, texts: list[str], labels: torch.Tensor) -> Split:
    batch = tokenizer(texts, truncation=True, max_length=MAX_TOKENS, padding=True, return_tensors="pt")
    return Split({"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}, labels)


def task(out_dir: str | Path = "runs/text-demo", pretrain_steps: int | None = None, recipe: str = RECIPE) -> DemoTask:
    """The docstring-topics task: the corpus, one vocabulary trained in ``out_dir / 'tokenizer'`` on
    the unlabeled text (for every run), the recipe and the classifier."""
    corpus = topic_corpus()
    split = corpus["split"]
    print(
        f"Python docstrings of {len(TOPICS)} topics: {len(corpus['unlabeled'])} for pretraining (no labels), "
        f"{len(split['train'])} labeled for fine-tuning and {len(split['validation'])} for validation among them, "
        f"{len(split['test'])} held out for the test"
    )
    tokenizer_folder = Path(out_dir) / "tokenizer"
    train_tokenizer(corpus["unlabeled"], tokenizer_folder, vocab_size=VOCAB_SIZE)
    tokenizer = Data2VecTextTokenizer.from_pretrained(tokenizer_folder)
    pretraining = demo_recipe(recipe, pretrain_steps or PRETRAIN_STEPS)
    config = Data2VecTextConfig(
        **{**pretraining.model, "vocab_size": len(tokenizer), "pad_token_id": tokenizer.pad_token_id,
           "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id},
        num_labels=len(TOPICS), id2label=dict(enumerate(TOPICS)),
    )  # fmt: skip
    demo = DemoTask(
        recipe=pretraining,
        data=corpus["unlabeled"],
        splits={
            name: encode(tokenizer, [corpus["texts"][i] for i in index], corpus["labels"][index])
            for name, index in split.items()
        },
        grid=GRID,
        settings=FINETUNE,
        classifier=Classifier(Data2VecTextForSequenceClassification, config),
        input_name="input_ids",
        recipe_data={"tokenizer": str(tokenizer_folder)},
    )
    demo.adapt(pretraining)
    return demo


def run(out_dir: str | Path = "runs/text-demo", pretrain_seeds: int = 3, finetune_seeds: int = 3, pretrain_steps: int | None = None, workers: int | None = None) -> dict:
    started = time.time()
    return task(out_dir, pretrain_steps).compare(
        Path(out_dir), pretrain_seeds=pretrain_seeds, finetune_seeds=finetune_seeds, started=started, workers=workers
    )
