"""Train a RoBERTa-style byte-level BPE vocabulary with the ``tokenizers`` library."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from .tokenizer import Data2VecTextTokenizer

SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]  # ids 0..4, as in RoBERTa


def train_tokenizer(
    texts: Iterable[str], directory: str | os.PathLike, *, vocab_size: int = 8000, min_frequency: int = 2
) -> Data2VecTextTokenizer:
    """Learn a byte-level BPE vocabulary from ``texts``, write ``vocab.json`` and ``merges.txt``
    to ``directory`` and return the tokenizer loaded from them."""
    from tokenizers import ByteLevelBPETokenizer

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    trainer = ByteLevelBPETokenizer()
    trainer.train_from_iterator(
        texts, vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=SPECIAL_TOKENS, show_progress=False
    )
    trainer.save_model(str(directory))
    tokenizer = Data2VecTextTokenizer(directory / "vocab.json", directory / "merges.txt", model_max_length=512)
    tokenizer.save_pretrained(directory)
    return tokenizer
