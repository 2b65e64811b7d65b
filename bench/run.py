"""Side-by-side benchmark of data2vec against the reference library (transformers).

    python -m bench [--quick] [--cases a,b] [--rounds N] [--threads N]
                    [--device cpu|cuda] [--dtype float32|bfloat16] [--json PATH]

For each case: build the reference model with random weights, save it, load the folder
into both libraries (one worker process each), check that their outputs agree, then time
them interleaved run by run, measure peak memory, and count the FLOPs of the real work.
See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a file: python bench/run.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from bench import measure, worker
from bench.cases import BY_NAME, Case

ATOL = 1e-4  # between the float32 outputs of the two libraries
# more for a training step's loss and gradient norm: sums over millions of terms (the CTC
# step's gradient norm, about 1.4e4 with its summed loss, differs by 2.4e-5 of itself)
RTOL_SCALARS = 1e-4
MEMORY_RUNS = 3
FIXED_MMAP_THRESHOLD = 131072  # glibc's initial threshold, kept fixed (it grows with frees by default)
# --keep-heap: glibc's largest mmap threshold (32 MiB on 64-bit), and no trimming of the heap's top
KEEP_HEAP = {"MALLOC_MMAP_THRESHOLD_": str(32 * 1024 * 1024), "MALLOC_TRIM_THRESHOLD_": str(1 << 40)}
NOISE = 0.01  # std of the noise added to every weight: none stays a constant 0 or 1
# An idle worker's OpenMP threads spin for a few ms after its run (libgomp); without a
# pause they would take cores from the other worker's run.
PAUSE_SECONDS = 0.02
LIBRARIES = ("reference", "ours")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="data2vec against transformers, side by side, on the same weights.",
        epilog="The method and the columns: bench/README.md.",
    )
    cores = len(os.sched_getaffinity(0))
    add = parser.add_argument
    add("--quick", action="store_true", help="small shapes: a smoke test of each case")
    add("--cases", help=f"comma-separated, of: {', '.join(BY_NAME)} (default: all)")
    add("--rounds", type=int, help="timed runs per library (default 10; quick 5)")
    add(
        "--pairs", type=int, default=1,
        help="fresh pairs of worker processes per case, each timing --rounds runs (default 1): a process's "
        "memory layout can make all its runs a few percent faster or slower, which only new processes show",
    )  # fmt: skip
    add(
        "--warmup", type=int, help="untimed runs per library first (default 2; quick 1)"
    )
    add("--threads", type=int, default=cores, help=f"default: all cores ({cores})")
    add("--device", choices=["cpu", "cuda"], default="cpu")
    add("--dtype", choices=["float32", "bfloat16"], default="float32")
    add("--json", type=Path, help="write every number to this file")
    add(
        "--fixed-mmap-threshold", action="store_true",
        help="workers run with glibc's MALLOC_MMAP_THRESHOLD_=131072: freed tensors give their pages back, "
        "so peak memory is that of the live tensors rather than of the heap's growth",
    )  # fmt: skip
    add(
        "--keep-heap", action="store_true",
        help="workers run with glibc's MALLOC_MMAP_THRESHOLD_ at its 32 MiB maximum and MALLOC_TRIM_THRESHOLD_ "
        "off: freed memory stays in the process for the next run (as with a caching allocator), so times "
        "do not depend on which library's last frees happen to let glibc give pages back",
    )  # fmt: skip
    options = parser.parse_args(argv)
    if options.fixed_mmap_threshold and options.keep_heap:
        parser.error("--fixed-mmap-threshold and --keep-heap are opposite allocator settings: choose one")
    names = options.cases.split(",") if options.cases else list(BY_NAME)
    unknown = [name for name in names if name not in BY_NAME]
    if unknown:
        parser.error(f"unknown case {', '.join(unknown)}; cases: {', '.join(BY_NAME)}")
    options.cases = [BY_NAME[name] for name in names]
    if options.rounds is None:
        options.rounds = 5 if options.quick else 10
    if options.warmup is None:
        options.warmup = 1 if options.quick else 2
    if options.rounds < 1:
        parser.error("--rounds must be at least 1")
    if options.pairs < 1:
        parser.error("--pairs must be at least 1")
    if options.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA device")
    return options


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Worker:
    """The main process's handle on one worker process (see worker.py)."""

    def __init__(self, context, library: str, threads: int):
        self.library = library
        self.connection, child = context.Pipe()
        self.process = context.Process(
            target=worker.serve, args=(child, library, threads), daemon=True
        )
        self.process.start()
        child.close()

    def ask(self, command: str, *arguments):
        self.connection.send((command, *arguments))
        try:
            status, value = self.connection.recv()
        except EOFError:
            self.process.join(timeout=5)
            raise RuntimeError(
                f"the {self.library} worker died during {command!r} (exit code "
                f"{self.process.exitcode}; -9 is usually the out-of-memory killer)"
            ) from None
        if status == "error":
            raise RuntimeError(f"the {self.library} worker failed: {command}\n{value}")
        return value

    def close(self) -> None:
        try:
            self.connection.send(("quit",))
        except OSError:
            pass
        self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.terminate()


def save_reference(case: Case, quick: bool, root: str) -> str:
    """The case's reference model, seeded random weights plus noise, saved to a folder."""
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    config_class = getattr(transformers, f"Data2Vec{case.family}Config")
    torch.manual_seed(0)
    model = getattr(transformers, case.model_class)(config_class(**case.config(quick)))
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.add_(NOISE * torch.randn(tensor.shape, generator=generator))
    folder = os.path.join(root, case.name)
    model.save_pretrained(folder)
    return folder


def compare(case: Case, reference: dict, ours: dict) -> dict:
    """Max |difference| of each compared tensor, and whether all are within tolerance."""
    report = {"ok": True, "max_abs_diff": 0.0, "outputs": {}}
    for name, expected in reference.items():
        actual = ours[name]
        tolerance = ATOL
        if case.ours_options and not case.training and actual.shape[0] >= expected.shape[0]:
            # a row of ours (padded, zeros after the real positions) against the sample alone
            padding = actual[expected.shape[0] :]
            actual = actual[: expected.shape[0]] if not padding.any() else actual
        if actual.shape != expected.shape:
            diff = float("inf")
        else:
            diff = (actual - expected).abs().max().item()
            if case.training:
                tolerance += RTOL_SCALARS * expected.abs().max().item()
        ok = diff <= tolerance  # False for NaN
        report["outputs"][name] = {
            "max_abs_diff": diff,
            "tolerance": tolerance,
            "shapes": {"reference": list(expected.shape), "ours": list(actual.shape)},
            "ok": ok,
        }
        report["ok"] &= ok
        report["max_abs_diff"] = max(report["max_abs_diff"], diff)
    return report


def interleaved(workers: list[Worker], warmup: int, rounds: int) -> dict[str, list]:
    """Seconds of each timed run: reference, ours, reference, ours, ..."""
    seconds = {w.library: [] for w in workers}
    for round_ in range(warmup + rounds):
        for w in workers:
            time.sleep(PAUSE_SECONDS)
            elapsed = w.ask("run")
            if round_ >= warmup:
                seconds[w.library].append(elapsed)
    return seconds


def bench_case(case: Case, folder: str, workers: list[Worker], options, new_workers=None) -> dict:
    """Check, count FLOPs, time and measure memory with ``workers``; with ``--pairs`` above 1,
    ``new_workers()`` gives the further pairs, which load the same folder and time again."""
    reference, ours = workers
    result = {
        "case": case.name,
        "model_class": case.model_class,
        "inputs": case.shape.split(" | quick: ")[1 if options.quick else 0],
        "config": case.config(options.quick),
    }
    log(f"[{case.name}] loading the checkpoint into both libraries")
    load = ("load", case.name, folder, options.quick, options.device, options.dtype)
    result["load"] = {w.library: w.ask(*load) for w in workers}
    check = result["check"] = compare(case, reference.ask("check"), ours.ask("check"))
    if not check["ok"]:
        log(f"[{case.name}] FAILED: outputs disagree: {json.dumps(check['outputs'])}")
        return result
    log(f"[{case.name}] outputs agree (max |diff| {check['max_abs_diff']:.1e})")
    result["flops"] = reference.ask("flops")  # {"real": ..., "batch": ...}
    log(f"[{case.name}] {options.warmup} warm-up + {options.rounds} timed runs each")
    seconds = interleaved(workers, options.warmup, options.rounds)
    # the allocator's state makes one measurement vary (glibc's heap): the median of three
    memory = {w.library: [w.ask("memory") for _ in range(MEMORY_RUNS)] for w in workers}
    pair_seconds = [seconds]
    for pair in range(2, options.pairs + 1):
        for w in workers:
            w.close()
        workers[:] = new_workers()
        log(f"[{case.name}] pair {pair} of {options.pairs}: fresh workers, {options.rounds} timed runs each")
        for w in workers:
            w.ask(*load)
        pair_seconds.append(interleaved(workers, options.warmup, options.rounds))
    seconds = {lib: [s for one in pair_seconds for s in one[lib]] for lib in seconds}
    result["pair_ratios"] = [
        statistics.median(one["reference"]) / statistics.median(one["ours"]) for one in pair_seconds
    ]
    result["memory_method"] = memory["reference"][0][1]
    result["peak_memory_runs_mb"] = {lib: [m[0] / 2**20 for m in runs] for lib, runs in memory.items()}
    result["peak_memory_mb"] = {lib: statistics.median(runs) for lib, runs in result["peak_memory_runs_mb"].items()}
    result["times_ms"] = {lib: [1e3 * s for s in runs] for lib, runs in seconds.items()}
    median = result["median_ms"] = {
        lib: statistics.median(runs) for lib, runs in result["times_ms"].items()
    }
    result["gflops"] = {
        lib: result["flops"]["real"] / ms / 1e6 for lib, ms in median.items()
    }
    result["ratio"] = median["reference"] / median["ours"]
    ratios = sorted(r / o for r, o in zip(seconds["reference"], seconds["ours"]))
    q1, _, q3 = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else ratios * 3
    result["round_ratios"] = {"min": ratios[0], "q1": q1, "q3": q3, "max": ratios[-1]}
    return result


COLUMNS = [  # (title, width, text of a measured case)
    ("case", 28, lambda r: r["case"]),
    ("ref ms", 9, lambda r: f"{r['median_ms']['reference']:.1f}"),
    ("ours ms", 9, lambda r: f"{r['median_ms']['ours']:.1f}"),
    ("ref/ours", 9, lambda r: f"{r['ratio']:.2f}x"),
    ("spread", 11, lambda r: "{min:.2f}-{max:.2f}".format(**r["round_ratios"])),
    ("pairs", 11, lambda r: "{:.2f}-{:.2f}".format(min(r["pair_ratios"]), max(r["pair_ratios"]))),
    ("GFLOP/s ref", 12, lambda r: f"{r['gflops']['reference']:.1f}"),
    ("ours", 7, lambda r: f"{r['gflops']['ours']:.1f}"),
    ("% peak ref", 11, lambda r: f"{100 * r['fraction_of_peak']['reference']:.0f}%"),
    ("ours", 6, lambda r: f"{100 * r['fraction_of_peak']['ours']:.0f}%"),
    ("peak MB ref", 12, lambda r: f"{r['peak_memory_mb']['reference']:.0f}"),
    ("ours", 7, lambda r: f"{r['peak_memory_mb']['ours']:.0f}"),
    ("max |diff|", 11, lambda r: f"{r['check']['max_abs_diff']:.1e}"),
]


def report(summary: dict) -> str:
    machine, settings = summary["machine"], summary["settings"]
    peak = summary["matmul_peak_gflops"]
    quick = " (quick shapes)" if settings["quick"] else ""
    methods = {r["memory_method"] for r in summary["cases"] if "memory_method" in r}
    cores = f"{machine['cores']} cores ({machine['cores_available']} available)"
    gpu = machine.get("gpu", "no GPU used")
    versions = (
        f"torch {machine['torch']}, transformers {machine['transformers']} (reference), "
        f"data2vec {machine['data2vec']} (ours), python {machine['python']}"
    )
    runs = (
        f"{settings['warmup']} warm-up + {settings['rounds']} timed runs per library, "
        "interleaved"
    )
    if settings.get("fixed_mmap_threshold"):
        runs += "; glibc's mmap threshold fixed at 128 KiB"
    if settings.get("keep_heap"):
        runs += "; glibc keeps freed memory (mmap threshold 32 MiB, no trimming)"
    peaks = (
        f"matmul peak ({settings['dtype']}, {peak['size']}^3, best of 5): "
        f"{peak['before']:.1f} GFLOP/s before the cases, {peak['after']:.1f} after; "
        "% peak is of the higher"
    )
    lines = [
        f"machine: {machine['cpu']}, {cores}, {machine['threads']} threads, {gpu}",
        versions,
        f"date: {machine['date']}",
        f"command: {machine['command']}",
        f"{settings['dtype']} on {settings['device']}{quick}; {runs}",
        peaks,
        "",
        "".join(title.ljust(width) for title, width, _ in COLUMNS).rstrip(),
    ]
    for result in summary["cases"]:
        if "median_ms" in result:
            cells = [text(result).ljust(width) for _, width, text in COLUMNS]
            lines.append("".join(cells).rstrip())
        else:
            failure = result.get("error", "FAILED: the outputs disagree (see the log)")
            lines.append(f"{result['case']:<26}{failure}")
    memory = ", ".join(sorted(methods)) or "-"
    lines += [
        "",
        "spread: min-max over rounds of reference time / our time",
        (
            f"pairs: min-max over the {settings['pairs']} fresh worker pairs of their median ratio (all rounds "
            "pooled for the medians)"
        ),
        "GFLOP/s: FLOPs of the real (unpadded) work / median time",
        f"peak MB: median of {MEMORY_RUNS} runs' memory above the loaded, touched model ({memory})",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    if options.fixed_mmap_threshold:  # read by glibc when each worker process starts
        os.environ["MALLOC_MMAP_THRESHOLD_"] = str(FIXED_MMAP_THRESHOLD)
    if options.keep_heap:
        os.environ.update(KEEP_HEAP)
    torch.set_num_threads(options.threads)
    dtype = getattr(torch, options.dtype)
    peak_size = 8192 if options.device == "cuda" else 2048
    settings = {
        key: getattr(options, key)
        for key in (
            "quick", "rounds", "pairs", "warmup", "threads", "device", "dtype", "fixed_mmap_threshold", "keep_heap"
        )
    }
    settings.update(atol=ATOL, rtol_training_scalars=RTOL_SCALARS, weight_noise=NOISE)
    summary = {
        "machine": measure.machine(options.threads, options.device),
        "settings": settings,
        "cases": [],
    }
    log(f"measuring the {options.dtype} matmul peak ({peak_size}^3)")
    peak_before = measure.matmul_peak_gflops(options.device, dtype, peak_size)
    context = multiprocessing.get_context("spawn")

    def new_pair() -> list[Worker]:
        return [Worker(context, lib, options.threads) for lib in LIBRARIES]

    workers = None
    with tempfile.TemporaryDirectory(prefix="data2vec-bench-") as root:
        for case in options.cases:
            if workers is None:  # they import their library while the model is built
                workers = new_pair()
            try:
                log(f"[{case.name}] building and saving the reference model")
                folder = save_reference(case, options.quick, root)
                summary["cases"].append(bench_case(case, folder, workers, options, new_pair))
            except Exception as error:  # noqa: BLE001 (report it, go on to the next case)
                log(f"[{case.name}] ERROR: {error}")
                first_line = str(error).splitlines()[0]
                summary["cases"].append(
                    {"case": case.name, "error": f"ERROR: {first_line}"}
                )
            # A full run starts a fresh pair of workers for each case, so that no case
            # inherits another's heap; quick mode keeps them (imports take seconds).
            if not options.quick or "median_ms" not in summary["cases"][-1]:
                for w in workers:
                    w.close()
                workers = None
        for w in workers or []:
            w.close()
    peak_after = measure.matmul_peak_gflops(options.device, dtype, peak_size)
    peak = max(peak_before, peak_after)
    summary["matmul_peak_gflops"] = {
        "size": peak_size,
        "before": peak_before,
        "after": peak_after,
        "used": peak,
    }
    for result in summary["cases"]:
        if "gflops" in result:
            gflops = result["gflops"].items()
            result["fraction_of_peak"] = {lib: g / peak for lib, g in gflops}
    print(report(summary), flush=True)
    if options.json:
        options.json.parent.mkdir(parents=True, exist_ok=True)
        options.json.write_text(json.dumps(summary, indent=2) + "\n")
        log(f"wrote {options.json}")
    failed = [r["case"] for r in summary["cases"] if "median_ms" not in r]
    if failed:
        log(f"FAILED: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
