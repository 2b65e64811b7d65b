"""Shared by the TensorFlow tests: quiet TensorFlow, noisy PyTorch folders, comparisons.

Import this module after ``pytest.importorskip("tensorflow")``."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402
import torch  # noqa: E402

import data2vec  # noqa: E402
from tests.helpers import ATOL, add_noise  # noqa: E402

TINY = dict(
    hidden_size=32,
    num_hidden_layers=4,
    num_attention_heads=4,
    intermediate_size=37,
    image_size=32,
    patch_size=8,
    num_channels=3,
    hidden_act="gelu",
    auxiliary_channels=16,
)


def noisy_batch_norms(model: torch.nn.Module, seed: int = 1) -> None:
    """Move BatchNorm running statistics off 0 and 1 so that eval-mode BatchNorm does work."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.add_(torch.randn(module.running_mean.shape, generator=generator) * 0.1)
                module.running_var.mul_(0.5 + torch.rand(module.running_var.shape, generator=generator))


def pytorch_folder(name: str, path, **config) -> torch.nn.Module:
    """A noisy model of our PyTorch class ``name`` saved to ``path``; returns it reloaded, in eval mode."""
    torch.manual_seed(0)
    model = add_noise(getattr(data2vec, name)(data2vec.Data2VecVisionConfig(**{**TINY, **config})))
    noisy_batch_norms(model)
    model.save_pretrained(path)
    return getattr(data2vec, name).from_pretrained(path).eval()


def images(batch: int = 2, height: int = 32, width: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 3, height, width, generator=torch.Generator().manual_seed(seed))


def as_numpy(value):
    if value is None or isinstance(value, np.ndarray):
        return value
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    if isinstance(value, (tuple, list)):
        return tuple(as_numpy(item) for item in value)
    return np.asarray(value)


def assert_close(ours, expected, name: str = "", atol: float = ATOL) -> None:
    """``ours`` (TF tensors, tuples of them) against ``expected`` (PyTorch or numpy) within ``atol``."""
    ours, expected = as_numpy(ours), as_numpy(expected)
    if expected is None:
        assert ours is None, f"{name}: expected None"
        return
    if isinstance(expected, tuple):
        assert isinstance(ours, tuple) and len(ours) == len(expected), f"{name}: {len(ours or ())} vs {len(expected)}"
        for index, (a, b) in enumerate(zip(ours, expected)):
            assert_close(a, b, f"{name}[{index}]", atol)
        return
    assert ours is not None, f"{name}: ours is None"
    assert ours.shape == expected.shape, f"{name}: shape {ours.shape} vs {expected.shape}"
    difference = float(np.abs(ours.astype(np.float64) - expected.astype(np.float64)).max()) if ours.size else 0.0
    assert difference <= atol, f"{name}: max abs difference {difference:.3g} > {atol}"


def compare(ours, expected, fields) -> None:
    for field in fields:
        assert_close(getattr(ours, field), getattr(expected, field), field)


def hub_cache(root: Path, repo_id: str, files: Path) -> None:
    """Lay ``files`` out as the Hub cache holds a downloaded repo (refs/main -> snapshots/<commit>)."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = root / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for file in files.iterdir():
        shutil.copy(file, snapshot / file.name)
