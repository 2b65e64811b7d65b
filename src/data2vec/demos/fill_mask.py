"""End-to-end text demo on a corpus every Python ships (the help topics in ``pydoc_data``):
train a byte-level BPE vocabulary, build a small ``Data2VecTextForMaskedLM``, train it on
masked-token prediction for a few minutes of CPU, then fill in masked words, save the model
and load it back. Runs offline."""

from __future__ import annotations

import json
import math
import random
import re
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..pipelines.text import FillMaskPipeline
from ..text.config import Data2VecTextConfig
from ..text.model import Data2VecTextForMaskedLM
from ..text.tokenizer import Data2VecTextTokenizer
from ..text.vocabulary import train_tokenizer

PROMPTS = [
    "The <mask> statement is used to leave a loop early.",
    "A function is defined with the def <mask>.",
    "Exceptions are raised with the <mask> statement.",
    "The value of the expression is <mask> to the variable.",
]


def python_help_corpus() -> list[str]:
    """Paragraphs of the Python documentation's help topics (about 65k words)."""
    from pydoc_data.topics import topics

    paragraphs = []
    for text in topics.values():
        for block in re.split(r"\n\s*\n", text):
            block = " ".join(block.split())
            if len(block.split()) >= 6 and not set(block) <= set("*=-~ "):
                paragraphs.append(block)
    return paragraphs


def chunk_token_ids(tokenizer: Data2VecTextTokenizer, paragraphs: list[str], length: int) -> torch.Tensor:
    """Concatenate the tokenised paragraphs and cut them into rows of ``<s> ... </s>``."""
    stream: list[int] = []
    for ids in tokenizer(paragraphs, add_special_tokens=False)["input_ids"]:
        stream.extend(ids + [tokenizer.eos_token_id])
    body = length - 2
    rows = [
        [tokenizer.bos_token_id] + stream[start : start + body] + [tokenizer.eos_token_id]
        for start in range(0, len(stream) - body, body)
    ]
    return torch.tensor(rows)


def mask_tokens(ids: torch.Tensor, tokenizer, generator: torch.Generator, probability: float = 0.15):
    """BERT masking: choose 15% of the non-special tokens; of those 80% become <mask>,
    10% a random token and 10% stay. Labels are -100 except at chosen positions."""
    special = (ids == tokenizer.bos_token_id) | (ids == tokenizer.eos_token_id) | (ids == tokenizer.pad_token_id)
    chosen = (torch.rand(ids.shape, generator=generator) < probability) & ~special
    labels = ids.masked_fill(~chosen, -100)
    inputs = ids.clone()
    draw = torch.rand(ids.shape, generator=generator)
    inputs[chosen & (draw < 0.8)] = tokenizer.mask_token_id
    random_positions = chosen & (draw >= 0.8) & (draw < 0.9)
    inputs[random_positions] = torch.randint(5, len(tokenizer), ids.shape, generator=generator)[random_positions]
    return inputs, labels


@torch.no_grad()
def masked_accuracy(model, ids: torch.Tensor, tokenizer, seed: int = 1234) -> tuple[float, float]:
    """(loss, accuracy) of predicting masked tokens on held-out rows, with a fixed masking."""
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    inputs, labels = mask_tokens(ids, tokenizer, generator)
    losses, correct, total = [], 0, 0
    for start in range(0, len(ids), 64):
        out = model(input_ids=inputs[start : start + 64], labels=labels[start : start + 64])
        chosen = labels[start : start + 64] != -100
        losses.append(out.loss.item() * int(chosen.sum()))
        correct += int((out.logits.argmax(-1)[chosen] == labels[start : start + 64][chosen]).sum())
        total += int(chosen.sum())
    model.train()
    return sum(losses) / total, correct / total


def run(out_dir: str | Path = "runs/text-demo", steps: int = 600, seed: int = 0) -> dict:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    started = time.time()

    print("1. Corpus: Python's built-in help topics (pydoc_data), read offline")
    paragraphs = python_help_corpus()
    random.Random(seed).shuffle(paragraphs)
    print(f"   {len(paragraphs)} paragraphs, {sum(len(p.split()) for p in paragraphs)} words")

    print("2. Tokenizer: byte-level BPE vocabulary trained with `tokenizers`")
    tokenizer = train_tokenizer(paragraphs, out_dir / "model", vocab_size=4000)
    example = tokenizer("Assert statements insert debugging assertions.")
    print(f"   vocabulary of {len(tokenizer)} tokens; example ids {example['input_ids']}")
    print(f"   tokens {tokenizer.convert_ids_to_tokens(example['input_ids'])}")

    ids = chunk_token_ids(tokenizer, paragraphs, length=64)
    held_out = ids[: len(ids) // 10]
    train = ids[len(ids) // 10 :]
    print(f"   {len(train)} training rows and {len(held_out)} held-out rows of 64 tokens")

    print("3. Model: Data2VecTextForMaskedLM (4 layers, hidden 128)")
    config = Data2VecTextConfig(
        vocab_size=len(tokenizer), hidden_size=128, num_hidden_layers=4, num_attention_heads=4,
        intermediate_size=512, max_position_embeddings=66, layer_norm_eps=1e-5, hidden_dropout_prob=0.1,
    )
    model = Data2VecTextForMaskedLM(config)
    batch = tokenizer(["The if statement is used for conditional execution."], return_tensors="pt")
    with torch.no_grad():
        hidden = model.backbone(**batch).last_hidden_state
    print(f"   {model.num_parameters() / 1e6:.2f}M parameters; forward of one sentence -> hidden states {tuple(hidden.shape)}")
    before_loss, before_accuracy = masked_accuracy(model, held_out, tokenizer)
    print(f"   untrained: held-out masked-token loss {before_loss:.2f}, accuracy {before_accuracy:.1%}")

    print(f"4. Training on masked-token prediction ({steps} steps, batch 32)")
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.01)
    warmup = max(1, steps // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, step / steps)))
    )
    generator = torch.Generator().manual_seed(seed)
    model.train()
    progress = tqdm(range(steps), desc="   masked LM", unit="step")
    for _ in progress:
        rows = train[torch.randint(len(train), (32,), generator=generator)]
        inputs, labels = mask_tokens(rows, tokenizer, generator)
        # score only the masked positions: the vocabulary projection is most of the cost
        hidden = model.backbone(input_ids=inputs).last_hidden_state  # (batch, length, hidden)
        chosen = labels != -100
        loss = torch.nn.functional.cross_entropy(model.lm_head(hidden[chosen]), labels[chosen])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        progress.set_postfix(loss=f"{loss.item():.3f}")
    after_loss, after_accuracy = masked_accuracy(model, held_out, tokenizer)
    print(f"   trained: held-out masked-token loss {after_loss:.2f}, accuracy {after_accuracy:.1%} "
          f"(was {before_accuracy:.1%})")

    print("5. Masked-token prediction")
    model.eval()
    fill = FillMaskPipeline(model, tokenizer, device=model.device)
    predictions = {}
    for prompt in PROMPTS:
        best = fill(prompt, top_k=5)
        predictions[prompt] = [item["token_str"].strip() for item in best]
        shown = ", ".join(f"{item['token_str'].strip()!r} {item['score']:.2f}" for item in best)
        print(f"   {prompt}\n      -> {shown}")

    print(f"6. Saved to {out_dir / 'model'} and loaded back")
    model.save_pretrained(out_dir / "model")
    reloaded = Data2VecTextForMaskedLM.from_pretrained(out_dir / "model")
    reloaded_tokenizer = Data2VecTextTokenizer.from_pretrained(out_dir / "model")
    with torch.no_grad():
        encoded = reloaded_tokenizer(PROMPTS[0], return_tensors="pt")
        same = torch.allclose(model(**encoded).logits, reloaded(**encoded).logits)
    print(f"   reloaded model gives the same logits: {same}")

    summary = {
        "held_out_loss_before": round(before_loss, 4),
        "held_out_accuracy_before": round(before_accuracy, 4),
        "held_out_loss_after": round(after_loss, 4),
        "held_out_accuracy_after": round(after_accuracy, 4),
        "predictions": predictions,
        "reload_identical": bool(same),
        "seconds": round(time.time() - started, 1),
    }
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"Done in {summary['seconds']} s; summary in {out_dir / 'summary.json'}")
    return summary
