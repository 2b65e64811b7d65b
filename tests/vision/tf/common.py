"""Shared by the TensorFlow tests: quiet TensorFlow, noisy PyTorch folders, comparisons.

Import this module after ``pytest.importorskip("tensorflow")``."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402
import torch  # noqa: E402

import data2vec  # noqa: E402
from tests.helpers import ATOL, add_noise, hub_cache, noisy_batch_norms  # noqa: E402,F401
from tests.vision.test_parity import TINY  # noqa: E402,F401


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

