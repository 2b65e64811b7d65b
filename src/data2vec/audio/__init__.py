"""The speech family. ``load_audio`` (from ``data2vec.audio.io``) is importable from here; it is
resolved on first use so that importing the models does not load the audio file libraries."""

from __future__ import annotations

from typing import Any

__all__ = ["load_audio"]


def __getattr__(name: str) -> Any:
    if name == "load_audio":
        from .io import load_audio

        return load_audio
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
