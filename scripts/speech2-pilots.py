"""Pilots on the collapse of data2vec 2.0's tiny speech backbones (docs/pretraining-results.md,
"Speech: spoken digits", later pilots). One pretraining of the speech demo's 2.0 recipe (or its 1.0
recipe) with recipe overrides, then: the teacher's last logged ``position_spread``; the spread along
time of the student backbone's last states on 64 validation clips (each frame layer-normalised, the
standard deviation over frames, averaged over channels and clips); optionally the validation accuracy
after fine-tuning at lr 1e-3 for 40 epochs (fine-tuning seed 0). Prints one JSON line.

    .venv/bin/python scripts/speech2-pilots.py --seed 1 --set decoder.layers=1 --finetune
    .venv/bin/python scripts/speech2-pilots.py --version1 --finetune
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from data2vec.audio.model import Data2VecAudioModel
from data2vec.demos import audio as demo
from data2vec.demos.protocol import Pretraining, demo_recipe
from data2vec.pretraining import modalities
from data2vec.training.finetune import accuracy, finetune


def override(recipe, assignment: str) -> None:
    """``section.field=value``: the value parsed as JSON when the field holds a list, else as the field's type."""
    key, value = assignment.split("=", 1)
    section, field = key.split(".")
    old = getattr(getattr(recipe, section), field)
    parsed = json.loads(value) if old is None or isinstance(old, list) else type(old)(value)
    setattr(getattr(recipe, section), field, parsed)


def zero_mask_frames() -> None:
    """Masked frames enter the positional convolution as zeros (fairseq's ``encoder_zero_mask``)
    instead of the backbone's learned mask embedding: the embedding is zeroed and frozen."""
    build = modalities.ModalityAdapter.build_backbone

    def build_backbone(self, config):
        backbone = build(self, config)
        backbone.masked_spec_embed.data.zero_()
        backbone.masked_spec_embed.requires_grad_(False)
        return backbone

    modalities.ModalityAdapter.build_backbone = build_backbone


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE")
    parser.add_argument("--version1", action="store_true", help="the demo's 1.0 recipe, 1000 updates")
    parser.add_argument("--zero-mask-frames", action="store_true")
    parser.add_argument("--finetune", action="store_true")
    parser.add_argument("--out", default="runs/speech2-pilots")
    args = parser.parse_args()
    torch.set_num_threads(1)
    name = "+".join(["v1"] * args.version1 + args.set + ["zero-mask-frames"] * args.zero_mask_frames) or "shipped"
    out = Path(args.out) / f"{name.replace('/', '_')}-seed{args.seed}"
    task = demo.task(out)  # the data, splits and classifier of the speech demo
    if args.version1:
        recipe = demo_recipe("pretrain-audio-tiny.yaml", demo.PRETRAIN_STEPS)
    else:
        recipe = demo_recipe("pretrain2-speech-tiny.yaml", 450)  # VERSION2_STEPS["audio"]
    for assignment in args.set:
        override(recipe, assignment)
    if args.zero_mask_frames:
        zero_mask_frames()
    began = time.time()
    pretraining = Pretraining(recipe, task.data, out)
    pretraining.progress = False
    result = pretraining(args.seed)
    record = {"pilot": name, "seed": args.seed, "pretrain_s": round(time.time() - began, 1)}
    record["position_spread"] = round((result.last_log or {}).get("position_spread", float("nan")), 3)

    backbone = Data2VecAudioModel(task.classifier.config)
    backbone.load_state_dict(result.state, strict=False)
    with torch.no_grad():
        states = backbone.eval()(task.splits["validation"].inputs[:64]).last_hidden_state
    record["state_spread"] = round(float(F.layer_norm(states, states.shape[-1:]).std(dim=1).mean()), 3)
    if args.finetune:
        model = task.classifier(result.state, 0)
        settings = dataclasses.replace(task.settings, learning_rate=1e-3, epochs=40, seed=0)
        train, validation = task.splits["train"], task.splits["validation"]
        finetune(model, train.inputs, train.labels, settings, input_name=task.input_name, progress=False)
        record["validation"] = round(accuracy(model, validation.inputs, validation.labels, task.input_name), 3)
    print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
