"""The data2vec 2.0 against 1.0 comparison (demos/versions.py) runs end to end on the digits task
with a few updates; the real numbers take 20 minutes and live in docs/pretraining-results.md."""

import importlib.util
import json

import pytest

from data2vec.demos import versions
from data2vec.demos.protocol import Grid


def test_thirds_are_a_third_two_thirds_and_the_end():
    assert versions.thirds(1400) == (467, 933, 1400)
    assert versions.thirds(1000) == (333, 667, 1000)
    assert versions.thirds(2) == (1, 2)  # points that coincide are kept once


def test_versions_comparison_runs_and_reports_time_and_accuracy(tmp_path, monkeypatch):
    pytest.importorskip("sklearn")
    from data2vec.demos import vision

    monkeypatch.setattr(vision, "GRID", Grid([1e-3], [1]))
    summary = versions.run("vision", tmp_path, steps=3, steps2=3, pretrain_seeds=2, finetune_seeds=2, workers=1)
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["curves"].keys() == summary["curves"].keys() == {"1.0", "2.0", "scratch"}
    assert summary["recipes"] == {"1.0": "pretrain-vision-digits", "2.0": "pretrain2-vision-digits"}
    for version in versions.VERSIONS:
        curve = summary["curves"][version]
        assert [point["step"] for point in curve] == [1, 2, 3]
        # the last point: every pretraining seed x every fine-tuning seed; the others one fine-tuning seed
        assert [len(point["test_accuracy"]) for point in curve] == [2, 2, 4]
        seconds = [point["pretrain_seconds"] for point in curve]
        assert 0 < seconds[0] < seconds[1] < seconds[2]
        for point in curve:
            runs = list(point["test_accuracy"].values())
            assert all(0.0 <= value <= 1.0 for value in runs)
            assert point["mean"] == pytest.approx(sum(runs) / len(runs))
    assert len(summary["curves"]["scratch"][0]["test_accuracy"]) == 4
    one, two = summary["curves"]["1.0"][-1], summary["curves"]["2.0"][-1]
    assert summary["time_ratio"] == pytest.approx(two["pretrain_seconds"] / one["pretrain_seconds"])
    assert summary["reached"] == (two["pretrain_seconds"] <= one["pretrain_seconds"] / 3 and two["mean"] >= one["mean"])
    assert (tmp_path / "pretrain2-vision-digits-seed1" / "checkpoint.pt").is_file()
    if importlib.util.find_spec("matplotlib") is not None:  # the plot extra
        assert (tmp_path / "versions.png").stat().st_size > 0
