"""Line plots drawn with Pillow (no plotting library needed): the loss curve and the
collapse-watch quantities of a pretraining log."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

COLORS = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (255, 127, 14), (148, 103, 189)]
GRID = (225, 225, 225)
AXIS = (60, 60, 60)


@dataclass
class Series:
    label: str
    x: Sequence[float]
    y: Sequence[float]


@dataclass
class Panel:
    title: str
    series: list[Series]
    y_label: str = ""
    log_y: bool = False
    thresholds: list[tuple[float, str]] = field(default_factory=list)  # dashed horizontal lines


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About ``count`` round numbers (1, 2, 5 x 10^k steps) covering [low, high]."""
    if not math.isfinite(low) or not math.isfinite(high):
        return []
    if high <= low:
        high = low + (abs(low) or 1.0)
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    first = math.ceil(low / step) * step
    return [first + i * step for i in range(int((high - first) / step + 1e-9) + 1)]


def _label(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1e4 or abs(value) < 1e-3:
        return f"{value:.0e}"
    return f"{value:g}"


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: one fixed-size bitmap font
        return ImageFont.load_default()


def _draw_panel(draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int], panel: Panel, x_label: str) -> None:
    left, top, right, bottom = box
    font, small = _font(15), _font(12)
    plot_left, plot_top, plot_right, plot_bottom = left + 70, top + 30, right - 20, bottom - 45
    draw.text(((left + right) // 2, top + 8), panel.title, fill=AXIS, font=font, anchor="mt")

    points = [
        (float(x), float(y))
        for series in panel.series
        for x, y in zip(series.x, series.y)
        if math.isfinite(float(y)) and (not panel.log_y or float(y) > 0)
    ]
    levels = [value for value, _ in panel.thresholds if not panel.log_y or value > 0]
    if not points:
        draw.text(((plot_left + plot_right) // 2, (plot_top + plot_bottom) // 2), "no data", fill=AXIS, font=font, anchor="mm")
        return
    xs = [x for x, _ in points]
    transform = (lambda v: math.log10(v)) if panel.log_y else (lambda v: v)
    ys = [transform(y) for _, y in points] + [transform(v) for v in levels]
    x_low, x_high = min(xs), max(xs)
    if x_high == x_low:
        x_high = x_low + 1
    y_low, y_high = min(ys), max(ys)
    pad = (y_high - y_low) * 0.05 or 0.5
    y_low, y_high = y_low - pad, y_high + pad

    def to_pixel(x: float, y: float) -> tuple[float, float]:
        px = plot_left + (x - x_low) / (x_high - x_low) * (plot_right - plot_left)
        py = plot_bottom - (transform(y) - y_low) / (y_high - y_low) * (plot_bottom - plot_top)
        return px, py

    # grid and tick labels
    for tick in nice_ticks(x_low, x_high):
        px, _ = to_pixel(tick, 1.0 if panel.log_y else 0.0)
        draw.line([(px, plot_top), (px, plot_bottom)], fill=GRID)
        draw.text((px, plot_bottom + 5), _label(tick), fill=AXIS, font=small, anchor="mt")
    if panel.log_y:
        y_ticks = [10.0**k for k in range(math.floor(y_low), math.ceil(y_high) + 1) if y_low <= k <= y_high]
        if len(y_ticks) < 2:  # less than a decade: round values, placed on the log axis
            y_ticks = [t for t in nice_ticks(10**y_low, 10**y_high) if t > 0 and y_low <= math.log10(t) <= y_high]
    else:
        y_ticks = nice_ticks(y_low, y_high)
    for tick in y_ticks:
        _, py = to_pixel(x_low, tick)
        draw.line([(plot_left, py), (plot_right, py)], fill=GRID)
        draw.text((plot_left - 6, py), _label(tick), fill=AXIS, font=small, anchor="rm")
    draw.rectangle([plot_left, plot_top, plot_right, plot_bottom], outline=AXIS)
    draw.text(((plot_left + plot_right) // 2, bottom - 18), x_label, fill=AXIS, font=small, anchor="mm")
    if panel.y_label:
        draw.text((left + 4, plot_top - 18), panel.y_label, fill=AXIS, font=small)

    # thresholds (dashed), then the series
    for (value, label), color in zip(panel.thresholds, COLORS):  # coloured like the series they bound
        if panel.log_y and value <= 0:
            continue
        _, py = to_pixel(x_low, value)
        for start in range(int(plot_left), int(plot_right), 12):
            draw.line([(start, py), (min(start + 6, plot_right), py)], fill=color, width=1)
        draw.text((plot_left + 6, py - 3), label, fill=color, font=small, anchor="lb")
    legend_y = plot_top + 6
    legend_x = plot_right - 150
    for series, color in zip(panel.series, COLORS):
        line = [
            to_pixel(float(x), float(y))
            for x, y in zip(series.x, series.y)
            if math.isfinite(float(y)) and (not panel.log_y or float(y) > 0)
        ]
        if len(line) == 1:
            px, py = line[0]
            draw.ellipse([px - 2, py - 2, px + 2, py + 2], fill=color)
        elif line:
            draw.line(line, fill=color, width=2, joint="curve")
        draw.line([(legend_x, legend_y + 7), (legend_x + 20, legend_y + 7)], fill=color, width=3)
        draw.text((legend_x + 26, legend_y), series.label, fill=AXIS, font=small)
        legend_y += 16


def draw_panels(panels: Sequence[Panel], path: str | os.PathLike, *, x_label: str = "step", width: int = 900, panel_height: int = 360) -> Path:
    """Stack ``panels`` vertically into one PNG at ``path``."""
    image = Image.new("RGB", (width, panel_height * len(panels)), "white")
    draw = ImageDraw.Draw(image)
    for index, panel in enumerate(panels):
        _draw_panel(draw, (0, index * panel_height, width, (index + 1) * panel_height), panel, x_label)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    image.save(temporary, format="PNG")
    os.replace(temporary, path)
    return path


def read_log(path: str | os.PathLike) -> list[dict]:
    records = []
    for line in Path(path).read_text().splitlines():
        if line.strip():
            records.append(json.loads(line))
    return records


def plot_training_log(
    log_path: str | os.PathLike,
    png_path: str | os.PathLike,
    *,
    title: str = "data2vec pretraining",
    min_target_std: float | None = None,
    min_prediction_std: float | None = None,
) -> Path:
    """Two panels from a pretraining JSONL log: the loss (log scale), and the per-dimension
    standard deviations of targets and predictions with the collapse thresholds."""
    records = read_log(log_path) if Path(log_path).is_file() else []
    records = [record for record in records if "event" not in record]  # measurements only (not recipe changes)
    steps = [record["step"] for record in records]
    loss = Panel(f"{title}: loss", [Series("loss", steps, [r["loss"] for r in records])], log_y=True)
    thresholds = []
    if min_target_std:
        thresholds.append((min_target_std, f"min target std {min_target_std:g}"))
    if min_prediction_std:
        thresholds.append((min_prediction_std, f"min prediction std {min_prediction_std:g}"))
    spread = Panel(
        "per-dimension standard deviation (collapse watch)",
        [
            Series("target std", steps, [r["target_std"] for r in records]),
            Series("prediction std", steps, [r["prediction_std"] for r in records]),
        ],
        thresholds=thresholds,
    )
    return draw_panels([loss, spread], png_path)
