"""Serving with ``drop_padding`` on batches of random lengths: the mean time per batch, with the
CPU's common sizes (core.encoder.common_size_padding) or without them (--no-common-sizes).

    python scripts/serving-shapes.py --model audio --dtype float32 --seed 1
    python scripts/serving-shapes.py --model audio --dtype float32 --seed 1 --no-common-sizes

Base-size models with random weights. text: batches of 8 sequences of 16-256 tokens; audio: 4
utterances of 1-4 s. Each batch has new lengths, as in serving; oneDNN compiles kernels for every
new shape it meets. Run each setting in its own process, alternating, on an idle machine.
"""

from __future__ import annotations

import argparse
import json
import random
import time

import torch

import data2vec
import data2vec.audio.model
import data2vec.core.encoder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=["text", "audio"], required=True)
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-common-sizes", action="store_true", help="run every batch at its own sizes")
    options = parser.parse_args()
    torch.set_num_threads(options.threads)
    if options.no_common_sizes:
        data2vec.core.encoder.packed_rows_to_add = lambda states: 0
        data2vec.audio.model.common_size_padding = lambda count: 0
    torch.manual_seed(0)
    dtype = getattr(torch, options.dtype)
    if options.model == "text":
        config = data2vec.Data2VecTextConfig(
            vocab_size=50265, max_position_embeddings=514, type_vocab_size=1, layer_norm_eps=1e-5
        )
        model = data2vec.Data2VecTextModel(config)
        count, low, high = 8, 16, 256
    else:
        model = data2vec.Data2VecAudioModel(data2vec.Data2VecAudioConfig())
        count, low, high = 4, 16000, 64000
    model = model.eval().to(dtype)
    rng = random.Random(options.seed)

    def batch(lengths: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        mask = torch.zeros(len(lengths), max(lengths), dtype=torch.long)
        for row, length in enumerate(lengths):
            mask[row, :length] = 1
        if options.model == "text":
            return torch.randint(3, 50000, mask.shape) * mask + (1 - mask), mask
        return torch.randn(mask.shape, dtype=dtype) * mask, mask

    def run(lengths: list[int]) -> float:
        inputs, mask = batch(lengths)
        start = time.perf_counter()
        with torch.no_grad():
            model(inputs, mask, drop_padding=True)
        return (time.perf_counter() - start) * 1e3

    run([high] * count)  # the first call's one-off costs
    times = [run([rng.randint(low, high) for _ in range(count)]) for _ in range(options.batches)]
    print(json.dumps({
        "model": options.model, "dtype": options.dtype, "seed": options.seed, "batches": options.batches,
        "common_sizes": not options.no_common_sizes, "mean_ms": round(sum(times) / len(times), 1),
        "median_ms": round(sorted(times)[len(times) // 2], 1),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
