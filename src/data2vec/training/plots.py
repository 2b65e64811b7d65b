"""A run's curves: PNG plots of its ``log.jsonl`` and a TensorBoard copy of its scalars.

Both are optional. The plots need matplotlib (``pip install "data2vec[plot]"``): without it no
PNG is written and the run logs one warning saying so. The TensorBoard copy needs the
``tensorboard`` package: with it, ``ScalarLog`` also writes every number of every log record to
``<run folder>/tensorboard/`` (``tensorboard --logdir <run folder>``); without it, nothing.

    pretraining   log.jsonl -> loss.png     loss (log scale); target / prediction std + collapse thresholds
    fine-tuning   log.jsonl -> curves.png   train loss (+ eval_loss); other eval_<metric>s; learning rate

matplotlib is imported inside the functions and draws on its Agg canvas directly, so importing
this module costs nothing and a user's interactive backend is never switched.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

PLOT_EXTRA = 'pip install "data2vec[plot]"'
TENSORBOARD_DIR = "tensorboard"
DPI = 100
WIDTH = 900  # pixels
MARGIN = 70  # pixels of a panel's height outside its axes
COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"]

_warned_paths: set[Path] = set()  # plot files whose missing matplotlib was reported: once per run


# ---------------------------------------------------------------------------- the log
def read_log(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of a ``log.jsonl`` (none when the file does not exist yet)."""
    path = Path(path)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class ScalarLog:
    """Appends records to a run's ``log.jsonl`` and, when the ``tensorboard`` package is
    installed, writes their numbers as TensorBoard scalars (tag = the record's key, x = its
    ``step``) to ``tensorboard/`` beside the log.

    Only the process that calls ``append`` writes (rank 0 in the trainers): the TensorBoard
    writer opens on the first record (where TensorFlow is installed too, torch's writer imports
    it: a few seconds, once per process). ``resumed_at``: the step of the checkpoint a run
    continues from; TensorBoard hides the events of later steps that an earlier attempt wrote."""

    def __init__(self, log_path: str | os.PathLike, *, resumed_at: int = 0, tensorboard: bool = True) -> None:
        self.log_path = Path(log_path)
        self.tensorboard_dir = self.log_path.parent / TENSORBOARD_DIR
        self.resumed_at = resumed_at
        self._writer: Any = None
        self._tensorboard_missing = not tensorboard  # tensorboard=False: the log file only

    def append(self, record: dict[str, Any]) -> None:
        """Write ``record`` (with a ``step``) as one JSON line, and its numbers to TensorBoard."""
        with self.log_path.open("a") as file:
            file.write(json.dumps(record) + "\n")
        writer = self._open_writer()
        if writer is None:
            return
        step = int(record["step"])
        for key, value in record.items():
            if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
                writer.add_scalar(key, value, step)
        writer.flush()

    def close(self) -> None:
        """Close the TensorBoard writer (a later ``append`` opens a new event file)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _open_writer(self) -> Any:
        if self._writer is not None or self._tensorboard_missing:
            return self._writer
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # the tensorboard package is not installed: the log file only
            self._tensorboard_missing = True
            return None
        purge_step = self.resumed_at + 1 if self.resumed_at > 0 else None
        self._writer = SummaryWriter(str(self.tensorboard_dir), purge_step=purge_step)
        self.resumed_at = 0  # purge once: a reopened writer in the same run keeps everything
        return self._writer


# ---------------------------------------------------------------------------- drawing
@dataclass
class Series:
    label: str
    x: Sequence[float]
    y: Sequence[float]
    markers: bool = False  # a dot at each point (sparse series such as evaluations)


@dataclass
class Panel:
    title: str
    series: list[Series]
    y_label: str = ""
    log_y: bool = False
    thresholds: list[tuple[float, str]] = field(default_factory=list)  # dashed lines, coloured like the series


def draw_panels(
    panels: Sequence[Panel], path: str | os.PathLike, *, x_label: str = "step", panel_height: int = 360
) -> Path | None:
    """Stack ``panels`` vertically into a ``WIDTH`` x ``panel_height * len(panels)`` PNG at
    ``path`` (written atomically). Returns None, and warns once for ``path``, without matplotlib."""
    path = Path(path)
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        if path not in _warned_paths:
            _warned_paths.add(path)
            logger.warning("matplotlib is not installed: no %s plot of this run (%s to draw it)", path.name, PLOT_EXTRA)
        return None
    height = panel_height * len(panels)
    figure = Figure(figsize=(WIDTH / DPI, height / DPI), dpi=DPI)
    FigureCanvasAgg(figure)
    # fixed margins in pixels (a layout engine would double the drawing time): each panel is its
    # axes plus MARGIN pixels for its title, tick labels and x label
    figure.subplots_adjust(
        left=80 / WIDTH, right=1 - 15 / WIDTH, top=1 - 25 / height, bottom=(MARGIN - 25) / height,
        hspace=MARGIN / (panel_height - MARGIN),
    )
    for axes, panel in zip(figure.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0], panels):
        _draw_panel(axes, panel, x_label)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    figure.savefig(temporary, format="png", dpi=DPI)
    os.replace(temporary, path)
    return path


def _draw_panel(axes: Any, panel: Panel, x_label: str) -> None:
    from matplotlib.ticker import MaxNLocator

    axes.set_title(panel.title, fontsize=11)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps
    axes.set_xlabel(x_label)
    axes.tick_params(labelbottom=True)  # on every panel, though they share the x axis
    if panel.y_label:
        axes.set_ylabel(panel.y_label)
    axes.grid(True, color="#e1e1e1")
    drawn = False
    for series, color in zip(panel.series, COLORS):
        points = [
            (float(x), float(y)) for x, y in zip(series.x, series.y)
            if y is not None and math.isfinite(float(y)) and (not panel.log_y or float(y) > 0)
        ]
        if not points:
            continue
        xs, ys = zip(*points)
        marker = "o" if series.markers or len(points) == 1 else None
        axes.plot(xs, ys, color=color, linewidth=1.8, marker=marker, markersize=4, label=series.label)
        drawn = True
    if not drawn:
        axes.text(0.5, 0.5, "no data", transform=axes.transAxes, ha="center", va="center")
        return
    for (value, label), color in zip(panel.thresholds, COLORS):
        if not panel.log_y or value > 0:
            axes.axhline(value, color=color, linestyle="--", linewidth=1, label=label)
    if panel.log_y:
        axes.set_yscale("log")
    axes.legend(loc="best", fontsize=9)


def _column(records: list[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    """(steps, values) of the records that hold ``key``."""
    rows = [(record["step"], record[key]) for record in records if record.get(key) is not None]
    return [step for step, _ in rows], [value for _, value in rows]


# ---------------------------------------------------------------------------- the two plots
def plot_pretraining(
    log_path: str | os.PathLike,
    png_path: str | os.PathLike,
    *,
    title: str = "data2vec pretraining",
    min_target_std: float | None = None,
    min_prediction_std: float | None = None,
) -> Path | None:
    """Two panels from a pretraining ``log.jsonl``: the loss (log scale), and the per-dimension
    standard deviations of targets and predictions with the collapse thresholds (dashed).
    ``event`` records (recipe changes on resume) are skipped. None without matplotlib."""
    records = [record for record in read_log(log_path) if "event" not in record]
    thresholds = []
    if min_target_std:
        thresholds.append((min_target_std, f"min target std {min_target_std:g}"))
    if min_prediction_std:
        thresholds.append((min_prediction_std, f"min prediction std {min_prediction_std:g}"))
    loss = Panel(f"{title}: loss", [Series("loss", *_column(records, "loss"))], log_y=True)
    spread = Panel(
        "per-dimension standard deviation (collapse watch)",
        [
            Series("target std", *_column(records, "target_std")),
            Series("prediction std", *_column(records, "prediction_std")),
        ],
        thresholds=thresholds,
    )
    return draw_panels([loss, spread], png_path, panel_height=360)


def plot_finetuning(
    log_path: str | os.PathLike, png_path: str | os.PathLike, *, title: str = "data2vec fine-tuning"
) -> Path | None:
    """Panels from a fine-tuning ``log.jsonl``: the training loss per logged step with
    ``eval_loss`` when evaluated (log scale when every value is positive); the other
    ``eval_<metric>`` values when there are any; the learning rate. 300 pixels per panel.
    None without matplotlib."""
    records = read_log(log_path)
    train_loss = Series("train loss", *_column(records, "loss"))
    loss_series = [train_loss]
    if any("eval_loss" in record for record in records):
        loss_series.append(Series("eval loss", *_column(records, "eval_loss"), markers=True))
    positive = all(value > 0 for series in loss_series for value in series.y)
    panels = [Panel(f"{title}: loss", loss_series, log_y=positive and bool(train_loss.y))]
    metrics = sorted({key for record in records for key in record if key.startswith("eval_")} - {"eval_loss"})
    if metrics:
        evaluations = [Series(key.removeprefix("eval_"), *_column(records, key), markers=True) for key in metrics]
        panels.append(Panel("evaluation", evaluations))
    panels.append(Panel("learning rate", [Series("lr", *_column(records, "lr"))]))
    return draw_panels(panels, png_path, panel_height=300)


__all__ = [
    "PLOT_EXTRA", "Panel", "ScalarLog", "Series", "draw_panels", "plot_finetuning", "plot_pretraining", "read_log",
]
