"""The comparison protocol of the pretraining demos: model choice on the validation split only,
pretraining x fine-tuning seeds, paired gains, sample standard deviations."""

import math

import pytest
import torch

from data2vec.demos import protocol
from data2vec.training.finetune import FinetuneSettings


class Probe(torch.nn.Module):
    def __init__(self, state, seed):
        super().__init__()
        self.state, self.seed = state, seed
        self.lr = self.epochs = None


def test_sample_std_divides_by_n_minus_one():
    assert protocol.sample_std([0.5, 0.7]) == pytest.approx(math.sqrt(2 * 0.1**2 / 1))
    assert protocol.sample_std([1.0, 2.0, 3.0, 4.0]) == pytest.approx(math.sqrt(5.0 / 3.0))
    assert protocol.sample_std([0.3]) == 0.0


def test_choice_uses_validation_only_and_gains_pair_runs(monkeypatch, tmp_path):
    train = protocol.Split(torch.zeros(4, 2), torch.zeros(4, dtype=torch.long))
    validation = protocol.Split(torch.ones(3, 2), torch.zeros(3, dtype=torch.long))
    test = protocol.Split(torch.full((5, 2), 2.0), torch.zeros(5, dtype=torch.long))
    evaluated = []

    def fake_finetune(model, inputs, labels, settings, **options):
        assert inputs is train.inputs  # fine-tuning only ever sees the training split
        model.lr, model.epochs = settings.learning_rate, settings.epochs

    def fake_accuracy(model, inputs, labels, input_name):
        split = "validation" if inputs is validation.inputs else "test"
        pretrained = model.state is not None
        evaluated.append(("data2vec" if pretrained else "scratch", split))
        if split == "validation":
            # data2vec is best at lr 0.1 / 2 epochs, scratch at lr 0.2 / 1 epoch
            best = (0.1, 2) if pretrained else (0.2, 1)
            return 0.9 if (model.lr, model.epochs) == best else 0.5
        # test: data2vec 0.6 + 0.01 * pretraining seed + 0.001 * fine-tuning seed; scratch 0.4 - 0.01 * seed
        if pretrained:
            return 0.6 + 0.01 * model.state["seed"] + 0.001 * model.seed
        return 0.4 - 0.01 * model.seed

    monkeypatch.setattr(protocol, "finetune", fake_finetune)
    monkeypatch.setattr(protocol, "accuracy", fake_accuracy)
    summary = protocol.compare(
        pretrain=lambda seed: protocol.Pretrained({"seed": seed}, 1.0),
        build=Probe,
        train=train,
        validation=validation,
        test=test,
        grid=protocol.Grid([0.1, 0.2], [1, 2]),
        settings=FinetuneSettings(),
        input_name="pixel_values",
        pretrain_seeds=3,
        finetune_seeds=2,
        out_dir=tmp_path,
        log=lambda line: None,
    )
    # per arm: its 4 grid points on validation, then (its choice made) its 3 x 2 test runs; the test is never
    # used for the choice, and the test runs of the chosen point do not also score the validation split
    for arm in ("data2vec", "scratch"):
        splits = [split for name, split in evaluated if name == arm]
        assert splits == ["validation"] * 4 + ["test"] * 6
    assert summary["chosen"]["data2vec"]["learning_rate"] == 0.1 and summary["chosen"]["data2vec"]["epochs"] == 2
    assert summary["chosen"]["scratch"]["learning_rate"] == 0.2 and summary["chosen"]["scratch"]["epochs"] == 1
    data2vec = [0.6 + 0.01 * p + 0.001 * f for p in range(3) for f in range(2)]
    scratch = [0.4 - 0.01 * seed for seed in range(6)]  # as many runs as the data2vec arm, seeds 0..5
    assert list(summary["test_accuracy"]["data2vec"].values()) == pytest.approx(data2vec)
    assert list(summary["test_accuracy"]["scratch"].values()) == pytest.approx(scratch)
    assert summary["gain_mean"] == pytest.approx(sum(data2vec) / 6 - sum(scratch) / 6)

    def variance(values):
        mean = sum(values) / len(values)
        return sum((v - mean) ** 2 for v in values) / (len(values) - 1)

    # the standard deviation of a difference of two independent means
    assert summary["gain_std"] == pytest.approx(math.sqrt(variance(data2vec) / 6 + variance(scratch) / 6))
    paired = [0.6 + 0.01 * p + 0.001 * f - (0.4 - 0.01 * f) for p in range(3) for f in range(2)]
    assert summary["paired_gain_std"] == pytest.approx(math.sqrt(variance(paired)))
    assert summary["std"]["scratch"] == pytest.approx(math.sqrt(variance(scratch)))
    assert (tmp_path / "summary.json").is_file()
    assert "more than twice" in protocol.report(summary)


def test_the_demo_command_names_every_modality_and_its_aliases():
    from data2vec.cli import _demo_choice

    assert [_demo_choice(name) for name in ("image", "vision", "speech", "audio", "text", "fill-mask")] == [
        "vision", "vision", "audio", "audio", "text", "fill-mask",
    ]
    import argparse

    with pytest.raises(argparse.ArgumentTypeError, match="no demo for 'video'"):
        _demo_choice("video")
