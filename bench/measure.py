"""What the bench measures besides time: peak memory, the matmul peak, FLOPs, the machine."""

from __future__ import annotations

import ctypes
import datetime
import gc
import os
import platform
import sys
import threading
import time
from collections.abc import Callable

import torch
from torch.utils.flop_counter import (
    FlopCounterMode,
    sdpa_backward_flop_count,
    sdpa_flop_count,
)

# --- peak memory -------------------------------------------------------------------------


def _status_kib(field: str) -> int:
    """A ``kB`` line of /proc/self/status, e.g. VmRSS (resident now) or VmHWM (peak)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field} line")


def _reset_peak_rss() -> None:
    """Writing 5 to clear_refs resets VmHWM to the current RSS (Linux >= 4.0)."""
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")


def return_free_memory() -> None:
    """Give freed heap memory back to the OS, so that RSS is what is live and a new
    allocation shows up in the peak instead of reusing memory the allocator kept."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:  # not glibc
        pass


def peak_rss_resets() -> bool:
    """Whether this kernel lets a process reset its peak RSS (checked, not assumed:
    some containers forbid writing clear_refs)."""
    try:
        return_free_memory()
        _reset_peak_rss()
        block = torch.ones(32 * 2**20 // 4)  # 32 MiB, touched
        del block
        return_free_memory()
        high = _status_kib("VmHWM")
        _reset_peak_rss()
        return _status_kib("VmHWM") < high - 16 * 1024
    except OSError:
        return False


class _RssSampler(threading.Thread):
    """Fallback when VmHWM cannot be reset: the largest VmRSS seen every 0.5 ms."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.highest = _status_kib("VmRSS")
        self.running = True

    def run(self) -> None:
        while self.running:
            self.highest = max(self.highest, _status_kib("VmRSS"))
            time.sleep(0.0005)


def peak_memory_above_base(
    run: Callable[[], None], device: str, resets: bool
) -> tuple[int, str]:
    """Bytes that ``run`` needs above what is already resident (the loaded, touched model,
    optimizer state after warm-up), and the method used."""
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        run()
        torch.cuda.synchronize()
        return (
            torch.cuda.max_memory_allocated() - base,
            "torch.cuda.max_memory_allocated",
        )
    return_free_memory()
    base = _status_kib("VmRSS")
    if resets:
        _reset_peak_rss()
        run()
        return (_status_kib("VmHWM") - base) * 1024, "VmHWM after clear_refs"
    sampler = _RssSampler()
    sampler.start()
    run()
    sampler.running = False
    sampler.join()
    return (
        max(sampler.highest, _status_kib("VmRSS")) - base
    ) * 1024, "VmRSS sampled every 0.5 ms"


# --- FLOPs --------------------------------------------------------------------------------


def _cpu_attention_flops(query, key, value, *args, out_val=None, **kwargs) -> int:
    return sdpa_flop_count(query, key, value)


def _cpu_attention_backward_flops(
    grad_out, query, key, value, *args, out_val=None, **kwargs
) -> int:
    return sdpa_backward_flop_count(grad_out, query, key, value)


# torch's counter knows the CUDA attention kernels but not the CPU one that
# F.scaled_dot_product_attention dispatches to on the CPU; without these, attention is 0 FLOPs.
_ATEN = torch.ops.aten
CPU_ATTENTION_FLOPS = {
    _ATEN._scaled_dot_product_flash_attention_for_cpu: _cpu_attention_flops,
    _ATEN._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_attention_backward_flops,
}


def count_flops(run: Callable[[], None]) -> int:
    """FLOPs (2 per multiply-add) of the matmuls, convolutions and attention that ``run`` executes."""
    counter = FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION_FLOPS)
    with counter:
        run()
    return counter.get_total_flops()


# --- the machine ----------------------------------------------------------------------------


def matmul_peak_gflops(
    device: str, dtype: torch.dtype, size: int, repeats: int = 5
) -> float:
    """Best-of-``repeats`` GFLOP/s of one ``size`` x ``size`` x ``size`` matmul: what this machine
    reaches at the work transformers are made of, with the threads set for this process."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    best = float("inf")
    for _ in range(repeats + 1):  # the first one warms up
        synchronize(device)
        start = time.perf_counter()
        torch.mm(a, b)
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(threads: int, device: str) -> dict:
    import transformers

    import data2vec

    info = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "cores_available": len(os.sched_getaffinity(0)),
        "threads": threads,
        "device": device,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "data2vec": data2vec.__version__,
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": " ".join(sys.orig_argv),
    }
    if device == "cuda":
        info["gpu"] = torch.cuda.get_device_name()
        info["cuda"] = torch.version.cuda
    return info
