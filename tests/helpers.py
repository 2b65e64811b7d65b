"""Shared test helpers: noisy reference models and output comparison."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

ATOL = 1e-4


def add_noise(model: torch.nn.Module, seed: int = 0, scale: float = 0.05) -> torch.nn.Module:
    """Perturb every parameter and floating buffer so that initial values (zeros, ones,
    constant tables) cannot hide a wrong index or a missing term."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in list(model.parameters()):
            tensor.add_(torch.randn(tensor.shape, generator=generator) * scale)
    return model


def noisy_batch_norms(model: torch.nn.Module, seed: int = 1) -> None:
    """BatchNorm running statistics start at 0 and 1; move them so eval-mode BatchNorm does work."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.add_(torch.randn(module.running_mean.shape, generator=generator) * 0.1)
                module.running_var.mul_(0.5 + torch.rand(module.running_var.shape, generator=generator))


def reference_model(cls, config, path, seed: int = 0, **load_options):
    """Build a reference model, add noise, save it to `path`, and reload it with eager attention
    (transformers 5 returns no attention weights under SDPA)."""
    torch.manual_seed(seed)
    model = add_noise(cls(config), seed)
    model.save_pretrained(path)
    return cls.from_pretrained(path, attn_implementation="eager", **load_options).eval()


def assert_close(ours, reference, name: str = "", atol: float = ATOL) -> None:
    if reference is None:
        assert ours is None, f"{name}: reference gives None, ours does not"
        return
    if isinstance(reference, (tuple, list)):
        assert ours is not None and len(ours) == len(reference), f"{name}: length {len(ours or [])} vs {len(reference)}"
        for index, (a, b) in enumerate(zip(ours, reference)):
            assert_close(a, b, f"{name}[{index}]", atol)
        return
    assert ours is not None, f"{name}: ours is None"
    assert tuple(ours.shape) == tuple(reference.shape), f"{name}: shape {tuple(ours.shape)} vs {tuple(reference.shape)}"
    difference = (ours.float() - reference.float()).abs().max().item() if ours.numel() else 0.0
    assert difference <= atol, f"{name}: max abs difference {difference:.3g} > {atol}"


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


def losses_fall(model, batch, steps=6, learning_rate=2e-3):
    """AdamW steps on one fixed batch; returns the losses before each step."""
    torch.manual_seed(0)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate)
    losses = []
    for _ in range(steps):
        loss = model(**batch).loss
        losses.append(loss.item())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return losses
