"""A worker process: one per library. It loads a case's checkpoint folder into its library,
then answers the main process's commands one at a time over a pipe; so the two libraries
never run at the same time, and each has a process (allocator, threads, peak memory) of
its own."""

from __future__ import annotations

import contextlib
import importlib
import time
import traceback

import torch

from bench import measure
from bench.cases import BY_NAME

MODULES = {"reference": "transformers", "ours": "data2vec"}


class Arm:
    """One library's model of one case: loaded, every weight touched, inputs ready."""

    def __init__(self, library, case_name, folder, quick, device, dtype):
        self.case = BY_NAME[case_name]
        self.options = self.case.ours_options if library == "ours" else {}
        self.device = device
        self.bfloat16 = dtype == "bfloat16"
        module = importlib.import_module(MODULES[library])
        start = time.perf_counter()
        self.model = getattr(module, self.case.model_class).from_pretrained(folder)
        self.model.to(device).train(self.case.training)
        # Read every weight once: a memory-mapped checkpoint would otherwise be paged in
        # by the first run, and the weights would count as that run's memory.
        with torch.no_grad():
            tensors = [*self.model.parameters(), *self.model.buffers()]
            self.weight_sum = sum(float(t.float().sum()) for t in tensors)
        self.load_seconds = time.perf_counter() - start
        batch, samples = self.case.inputs(quick)
        self.padded = not (len(samples) == 1 and samples[0] is batch)
        self.batch = self.to_device(batch)
        self.samples = [self.to_device(sample) for sample in samples]
        if self.case.training:
            # fused: what both libraries' training loops use (transformers' Trainer defaults to
            # adamw_torch_fused with torch >= 2.8; data2vec's fine-tuning loop asks for it)
            self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-5, fused=True)
        self.peak_rss_resets = device == "cpu" and measure.peak_rss_resets()

    def to_device(self, inputs: dict) -> dict:
        return {name: value.to(self.device) for name, value in inputs.items()}

    def once(self) -> None:
        """One timed run: a forward without gradients, or a whole training step."""
        autocast = torch.autocast(self.device, torch.bfloat16, enabled=self.bfloat16)
        if not self.case.training:
            with torch.no_grad(), autocast:
                self.model(**self.batch, **self.options)
            return
        with autocast:
            loss = self.model(**self.batch, **self.options).loss
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    # --- the commands --------------------------------------------------------------------

    def info(self) -> dict:
        return {
            "class": f"{type(self.model).__module__}.{type(self.model).__name__}",
            "parameters": sum(p.numel() for p in self.model.parameters()),
            "weight_sum": self.weight_sum,
            "load_seconds": self.load_seconds,
            "peak_rss_resets": self.peak_rss_resets,
        }

    def run(self) -> float:
        measure.synchronize(self.device)
        start = time.perf_counter()
        self.once()
        measure.synchronize(self.device)
        return time.perf_counter() - start

    def memory(self) -> tuple[int, str]:
        return measure.peak_memory_above_base(
            self.once, self.device, self.peak_rss_resets
        )

    def check(self) -> dict[str, torch.Tensor]:
        """What the libraries must agree on, in float32 without dropout or masking: the
        forward's output, or a step's loss and gradient norm (no optimizer step)."""
        self.model.eval()
        with exact_float32():
            if self.case.training:
                loss = self.model(**self.batch, **self.options).loss
                loss.backward()
                grads = [p.grad for p in self.model.parameters() if p.grad is not None]
                squares = torch.stack([g.double().square().sum() for g in grads])
                result = {"loss": loss.detach(), "grad_norm": squares.sum().sqrt()}
                self.model.zero_grad(set_to_none=True)
            elif self.case.ours_options:  # row by row: ours on the batch, the reference on each sample
                with torch.no_grad():
                    if self.options:
                        rows = list(getattr(self.model(**self.batch, **self.options), self.case.output))
                    else:
                        rows = [getattr(self.model(**sample), self.case.output)[0] for sample in self.samples]
                result = {f"{self.case.output}[{row}]": output for row, output in enumerate(rows)}
            else:
                with torch.no_grad():
                    outputs = self.model(**self.batch)
                result = {self.case.output: getattr(outputs, self.case.output)}
        self.model.train(self.case.training)
        return {name: value.float().cpu() for name, value in result.items()}

    def flops(self) -> dict[str, int]:
        """FLOPs of the real work (each sample alone at its true length: no padding) and of
        the batch as run (padding included); forward, and backward for a training step."""

        def work(inputs: list[dict]) -> None:
            for sample in inputs:
                if self.case.training:
                    self.model(**sample).loss.backward()
                else:
                    with torch.no_grad():
                        self.model(**sample)

        real = measure.count_flops(lambda: work(self.samples))
        batch = measure.count_flops(lambda: work([self.batch])) if self.padded else real
        self.model.zero_grad(set_to_none=True)
        return {"real": real, "batch": batch}


@contextlib.contextmanager
def exact_float32():
    """No TF32 on a GPU while outputs are compared (cuDNN convolutions use it by default)."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def serve(connection, library: str, threads: int) -> None:
    """The worker's loop. Commands: ("load", case_name, folder, quick, device, dtype),
    then ("check",), ("flops",), ("run",), ("memory",), ("info",); ("quit",) ends it.
    Each is answered ("ok", value) or ("error", traceback)."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    module = importlib.import_module(MODULES[library])  # while the main process works
    if library == "reference":
        module.logging.set_verbosity_error()
        module.logging.disable_progress_bar()
    arm = None
    while True:
        command, *arguments = connection.recv()
        if command == "quit":
            return
        try:
            if command == "load":
                arm = None  # free the previous case's model before loading the next
                measure.return_free_memory()
                arm = Arm(library, *arguments)
                connection.send(("ok", arm.info()))
            else:
                connection.send(("ok", getattr(arm, command)()))
        except Exception:  # noqa: BLE001 (the main process reports it)
            connection.send(("error", traceback.format_exc()))
