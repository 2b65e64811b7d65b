"""Write scikit-learn's 8x8 digits as an ImageFolder (a folder per class) of 32x32 RGB PNGs, for the
README's fine-tuning example: ``train/`` (80%) and ``eval/`` (20%), split with a fixed seed.

    python scripts/digits-imagefolder.py data/digits
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image


def main(out: str) -> None:
    from sklearn.datasets import load_digits

    digits = load_digits()
    order = np.random.default_rng(0).permutation(len(digits.target))
    cut = int(0.8 * len(order))
    for split, indices in (("train", order[:cut]), ("eval", order[cut:])):
        for index in indices:
            folder = Path(out) / split / str(digits.target[index])
            folder.mkdir(parents=True, exist_ok=True)
            pixels = (digits.images[index] * (255.0 / 16.0)).astype(np.uint8)
            Image.fromarray(pixels, mode="L").resize((32, 32), Image.BILINEAR).convert("RGB").save(folder / f"{index:04d}.png")
        print(f"{split}: {len(indices)} images in {Path(out) / split}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "data/digits")
