"""The main demo: data2vec pretraining helps a tiny ViT learn from few labels.

Data: the 8x8 handwritten digits that ship with scikit-learn (1797 images), upsampled to 32x32.
A fixed 20% test split is held out from everything. The rest is the pretraining set (images
only); 10% of it keeps its labels for fine-tuning and another 10% forms the validation split of
the model choice.

1. Pretrain a 4-layer ViT with data2vec (EMA teacher, block masking, top-K layer targets) on
   the unlabeled training images (recipe ``recipes/pretrain-vision-digits.yaml``), with 3 seeds.
2. Compare ``Data2VecVisionForImageClassification`` fine-tuned from it against the same model
   from random initialisation with the protocol of ``demos/protocol.py`` (grid chosen on the
   validation split, 3 x 3 seeds, sample standard deviations).
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
import torch.nn.functional as F

from ..training.finetune import FinetuneSettings
from ..vision.config import Data2VecVisionConfig
from ..vision.heads import Data2VecVisionForImageClassification
from .protocol import Classifier, DemoTask, Grid, Split, demo_recipe

RECIPE = "pretrain-vision-digits.yaml"
PRETRAIN_STEPS = 1400
GRID = Grid(learning_rates=[5e-4, 1e-3], epochs=[60, 100])
FINETUNE = FinetuneSettings(batch_size=32, weight_decay=0.05)


def digits_split(size: int = 32, test_fraction: float = 0.2, label_fraction: float = 0.1, seed: int = 0) -> dict:
    """Images (N, 1, size, size) in [0, 1] and labels, split into pretrain / labeled / test."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:  # pragma: no cover - message for users without the demo extra
        raise SystemExit('the image demo reads the digits that ship with scikit-learn: pip install "data2vec[demo]"') from None
    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32)[:, None] / 16.0  # (1797, 1, 8, 8)
    images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1)
    labels = torch.tensor(digits.target)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    test_count = int(round(test_fraction * len(labels)))
    test, train = order[:test_count], order[test_count:]
    labeled = train[: int(round(label_fraction * len(train)))]
    return {"images": images, "labels": labels, "train": train, "labeled": labeled, "test": test}


def shift_augment(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Roll the whole batch by up to 2 pixels in each direction."""
    shifts = torch.randint(-2, 3, (2,), generator=generator).tolist()
    return torch.roll(batch, shifts=shifts, dims=(2, 3))


def task(out_dir: str | Path | None = None, pretrain_steps: int | None = None, recipe: str = RECIPE) -> DemoTask:
    """The digits task: splits, the recipe (``pretrain_steps`` updates) and the classifier (the data
    ships with scikit-learn: nothing is written to ``out_dir``)."""
    data = digits_split(label_fraction=0.2)
    labeled = data["labeled"]
    half = len(labeled) // 2
    split = {"train": labeled[:half], "validation": labeled[half:], "test": data["test"]}
    print(
        f"Digits: {len(data['train'])} training images for pretraining (no labels); {half} of them labeled for "
        f"fine-tuning and {len(labeled) - half} for validation; {len(data['test'])} held-out test images; 32x32"
    )
    pretraining = demo_recipe(recipe, pretrain_steps or PRETRAIN_STEPS)
    # fine-tuning sees the images normalised exactly as pretraining does
    mean = torch.tensor(pretraining.data.image_mean).view(1, -1, 1, 1)
    std = torch.tensor(pretraining.data.image_std).view(1, -1, 1, 1)
    images = (data["images"] - mean) / std
    config = Data2VecVisionConfig(**{**pretraining.model, "use_mask_token": False}, num_labels=10)
    return DemoTask(
        recipe=pretraining,
        data=data["images"][data["train"]],
        splits={name: Split(images[index], data["labels"][index]) for name, index in split.items()},
        grid=GRID,
        settings=FINETUNE,
        classifier=Classifier(Data2VecVisionForImageClassification, config),
        input_name="pixel_values",
        augment=shift_augment,
        drop_prefixes=("embeddings.mask_token",),
    )


def run(out_dir: str | Path = "runs/vision-demo", pretrain_seeds: int = 3, finetune_seeds: int = 3, pretrain_steps: int | None = None, workers: int | None = None) -> dict:
    started = time.time()
    return task(out_dir, pretrain_steps).compare(
        Path(out_dir), pretrain_seeds=pretrain_seeds, finetune_seeds=finetune_seeds, started=started, workers=workers
    )
