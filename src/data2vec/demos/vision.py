"""The main demo: data2vec pretraining helps a tiny ViT learn from few labels.

Data: the 8x8 handwritten digits that ship with scikit-learn (1797 images), upsampled to 32x32.
A fixed 20% test split is held out from everything. The rest is the pretraining set (images
only); 10% of it keeps its labels for fine-tuning.

1. Pretrain a 4-layer ViT with data2vec (EMA teacher, block masking, top-K layer targets) on
   the unlabeled training images (recipe ``recipes/pretrain-vision-digits.yaml``).
2. Fine-tune it on the labeled 10%, and the same model from random initialisation with the
   same settings, for each of three seeds.
3. Report test accuracy of both, mean and spread over the seeds.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from ..pretraining.recipe import Recipe, resolve_recipe_path
from ..pretraining.trainer import Pretrainer
from ..training.finetune import FinetuneSettings, accuracy, finetune
from ..vision.config import Data2VecVisionConfig
from ..vision.heads import Data2VecVisionForImageClassification
from ..vision.model import Data2VecVisionModel

RECIPE = "pretrain-vision-digits.yaml"
FINETUNE = FinetuneSettings(epochs=60, batch_size=32, learning_rate=1e-3, weight_decay=0.05)


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


def classifier_from(config: Data2VecVisionConfig, backbone_state: dict | None, seed: int):
    torch.manual_seed(1000 + seed)  # the head (and, from scratch, everything) starts the same in both arms
    model = Data2VecVisionForImageClassification(config)
    if backbone_state is not None:
        missing, unexpected = model.backbone.load_state_dict(backbone_state, strict=False)
        assert not unexpected, unexpected
    return model


def run(out_dir: str | Path = "runs/vision-demo", seeds: int = 3, pretrain_steps: int | None = None) -> dict:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    data = digits_split()
    images, labels = data["images"], data["labels"]
    print(
        f"Digits: {len(data['train'])} training images (pretraining, no labels), {len(data['labeled'])} of them "
        f"labeled for fine-tuning, {len(data['test'])} held-out test images; upsampled to 32x32"
    )

    recipe = Recipe.load(resolve_recipe_path(RECIPE))
    if pretrain_steps is not None:
        recipe = recipe.with_total_steps(pretrain_steps)
    print(f"1/2 data2vec pretraining ({recipe.optim.total_steps} steps, recipe recipes/{RECIPE})")
    trainer = Pretrainer(recipe, images[data["train"]], out_dir / "pretrain")
    result = trainer.train()
    if result.interrupted:
        trainer.close()
        raise SystemExit(f"pretraining was interrupted at step {result.step}; its checkpoint is in {out_dir / 'pretrain'}")
    backbone: Data2VecVisionModel = trainer.model.backbone
    config = Data2VecVisionConfig.from_dict(backbone.config.to_dict(), use_mask_token=False, num_labels=10)
    state = {key: value for key, value in backbone.state_dict().items() if not key.startswith("embeddings.mask_token")}
    trainer.close()
    pretrain_seconds = time.time() - started
    # fine-tuning sees the images normalised exactly as pretraining did
    mean = torch.tensor(recipe.data.image_mean).view(1, -1, 1, 1)
    std = torch.tensor(recipe.data.image_std).view(1, -1, 1, 1)
    images = (images - mean) / std
    print(f"    done in {pretrain_seconds:.0f} s; last log {json.dumps(result.last_log)}")

    print(f"2/2 fine-tuning on {len(data['labeled'])} labels: pretrained vs random initialisation, {seeds} seeds")
    scores: dict[str, list[float]] = {"data2vec": [], "scratch": []}
    for seed in range(seeds):
        for arm, backbone_state in (("data2vec", state), ("scratch", None)):
            model = classifier_from(config, backbone_state, seed)
            settings = FinetuneSettings(**{**FINETUNE.__dict__, "seed": seed})
            finetune(
                model, images[data["labeled"]], labels[data["labeled"]], settings,
                augment=shift_augment, description=f"    seed {seed} {arm:8s}",
            )
            scores[arm].append(accuracy(model, images[data["test"]], labels[data["test"]], "pixel_values"))
        print(f"    seed {seed}: data2vec {scores['data2vec'][-1]:.1%}   scratch {scores['scratch'][-1]:.1%}")

    gains = [a - b for a, b in zip(scores["data2vec"], scores["scratch"])]
    summary = {
        "test_accuracy": scores,
        "mean": {arm: statistics.mean(values) for arm, values in scores.items()},
        "spread": {arm: statistics.pstdev(values) for arm, values in scores.items()},
        "gain_mean": statistics.mean(gains),
        "gain_spread": statistics.pstdev(gains),
        "pretrain_steps": result.step,
        "pretrain_seconds": round(pretrain_seconds, 1),
        "total_seconds": round(time.time() - started, 1),
    }
    print()
    print("| initialisation | " + " | ".join(f"seed {s}" for s in range(seeds)) + " | mean ± std |")
    print("|---|" + "---|" * seeds + "---|")
    for arm in ("data2vec", "scratch"):
        cells = " | ".join(f"{value:.1%}" for value in scores[arm])
        print(f"| {arm} | {cells} | {summary['mean'][arm]:.1%} ± {summary['spread'][arm]:.1%} |")
    print(
        f"\ngain {summary['gain_mean'] * 100:+.1f} points (std over seeds {summary['gain_spread'] * 100:.1f}); "
        f"total {summary['total_seconds']:.0f} s. Summary: {out_dir / 'summary.json'}"
    )
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
