"""Small data and recipes for the pretraining loop tests (built on the spot, no downloads)."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import yaml

from data2vec.pretraining.recipe import RECIPES_FOLDER, Recipe

WORDS = ["the", "a", "loop", "function", "value", "list", "returns", "each", "item", "key", "raises", "error", "when", "with", "class", "module", "import", "name", "object", "string", "number", "file", "reads", "writes", "calls", "method", "default", "argument"]

# smaller than the laptop recipes, so that a few updates take well under a second
TINY_CHANGES = {
    "vision": {
        "model": {
            "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
            "image_size": 16, "patch_size": 4,
        },
        "targets": {"top_k": 2},
        "masking": {"num_masking_patches": 8, "min_num_patches": 2},
        "data": {"batch_size": 8},
    },
    "text": {
        "model": {
            "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
            "max_position_embeddings": 34,
        },
        "targets": {"top_k": 2},
        "data": {"batch_size": 8, "tokens_per_sample": 32, "vocab_size": 300},
    },
    "audio": {
        "model": {
            "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
            "conv_dim": [16] * 7, "num_conv_pos_embeddings": 1, "conv_pos_kernel_size": 3,
        },
        "targets": {"top_k": 2},
        "masking": {"mask_length": 3},
        "data": {"batch_size": 4, "max_tokens": None, "max_sample_size": 4000, "min_sample_size": 3000},
    },
}


def tiny_recipe_dict(modality: str, **sections) -> dict:
    """The laptop recipe of ``modality`` shrunk further; ``sections`` update its sections
    (e.g. ``optim={"total_steps": 6}``)."""
    return _shrunk(f"pretrain-{modality}-tiny.yaml", TINY_CHANGES[modality], sections)


def _shrunk(recipe_file: str, changes: dict, sections: dict) -> dict:
    """The values of ``recipes/<recipe_file>`` with the sections of ``changes``, then of ``sections``,
    updated (a dict updates a section's keys, anything else replaces it); logging every update."""
    values = yaml.safe_load((RECIPES_FOLDER / recipe_file).read_text())
    for update_set in (changes, sections):
        for section, update in update_set.items():
            if isinstance(update, dict):
                values[section] = {**values.get(section, {}), **copy.deepcopy(update)}
            else:
                values[section] = update
    if "log_every" not in sections:
        values["log_every"] = 1
    return values


# data2vec 2.0: the same small models; the 2.0 masking and a small decoder
TINY2_CHANGES = {
    "vision": {
        "model": TINY_CHANGES["vision"]["model"],
        "targets": {"top_k": 2},
        "masking": {"mask_prob": 0.75, "mask_length": 2, "mask_prob_adjust": 0.07, "inverse": True, "clones": 3},
        "decoder": {"dim": 16, "layers": 2, "kernel": 3, "groups": 4},
        "data": {"batch_size": 8},
    },
    "text": {
        "model": TINY_CHANGES["text"]["model"],
        "targets": {"top_k": 2},
        "masking": {"clones": 3},
        "decoder": {"dim": 16, "layers": 2, "kernel": 5},
        "data": TINY_CHANGES["text"]["data"],
    },
    "audio": {
        "model": TINY_CHANGES["audio"]["model"],
        "targets": {"top_k": 2},
        "masking": {"mask_length": 3, "clones": 3},
        "decoder": {"dim": 16, "layers": 2, "kernel": 3, "groups": 4},
        "data": TINY_CHANGES["audio"]["data"],
    },
}
RECIPE2_NAMES = {"vision": "vision", "text": "text", "audio": "speech"}  # recipes/pretrain2-<name>-tiny.yaml


def tiny2_recipe_dict(modality: str, **sections) -> dict:
    """The data2vec 2.0 laptop recipe of ``modality`` shrunk like ``tiny_recipe_dict``."""
    return _shrunk(f"pretrain2-{RECIPE2_NAMES[modality]}-tiny.yaml", TINY2_CHANGES[modality], sections)


def tiny2_recipe(modality: str, **sections) -> Recipe:
    recipe = Recipe.from_dict(tiny2_recipe_dict(modality, **sections), source=f"tiny 2.0 {modality} recipe")
    recipe.name = f"tiny2-{modality}"
    return recipe


def tiny_recipe(modality: str, **sections) -> Recipe:
    recipe = Recipe.from_dict(tiny_recipe_dict(modality, **sections), source=f"tiny {modality} recipe")
    recipe.name = f"tiny-{modality}"
    return recipe


def write_recipe(values: dict, path: Path) -> Path:
    path.write_text(yaml.safe_dump(values, sort_keys=False))
    return path


def make_images(folder: Path, count: int = 24, size: int = 20, seed: int = 0) -> Path:
    """PNG images of a bright rectangle on noise, in two class subfolders (ignored by pretraining)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for index in range(count):
        image = rng.integers(0, 40, (size, size, 3)).astype(np.uint8)
        top, left = rng.integers(0, size // 2, 2)
        image[top : top + size // 2, left : left + size // 3] = rng.integers(120, 255, 3).astype(np.uint8)
        sub = folder / ("cats" if index % 2 else "dogs")
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(sub / f"{index}.png")
    return folder


def make_audio(folder: Path, count: int = 8, seed: int = 0) -> Path:
    """Wav files of chirps in noise, 0.3 to 0.5 s at 16 kHz; also writes ``manifest.tsv``."""
    import soundfile

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    lines = [str(folder)]
    for index in range(count):
        samples = int(rng.integers(4800, 8000))
        time = np.arange(samples) / 16000
        frequency = rng.uniform(150, 600)
        wave = 0.4 * np.sin(2 * np.pi * frequency * time * (1 + time)) + 0.05 * rng.standard_normal(samples)
        soundfile.write(folder / f"clip{index}.wav", wave.astype(np.float32), 16000)
        lines.append(f"clip{index}.wav\t{samples}")
    (folder / "manifest.tsv").write_text("\n".join(lines) + "\n")
    return folder


def make_text(path: Path, paragraphs: int = 120, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    texts = []
    for _ in range(paragraphs):
        sentences = [" ".join(rng.choice(WORDS, size=int(rng.integers(5, 12)))) + "." for _ in range(3)]
        texts.append(" ".join(sentences).capitalize())
    path.write_text("\n\n".join(texts) + "\n")
    return path


def make_data(modality: str, folder: Path) -> Path:
    if modality == "vision":
        return make_images(folder / "images")
    if modality == "audio":
        return make_audio(folder / "audio")
    return make_text(folder / "corpus.txt")
