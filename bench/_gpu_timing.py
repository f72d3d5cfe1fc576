"""Timing on the GPU with CUDA events, shared by the GPU benchmarks."""
import os

import torch


def optin_kernels_enabled() -> bool:
    """False where bench/gpu/run.sh found the tests of the opt-in (never-run) GPU kernels failing
    (SONICORE_BENCH_OPTIN_KERNELS=0): the benchmarks and tuning probes then leave those kernels out."""
    return os.environ.get("SONICORE_BENCH_OPTIN_KERNELS", "1") != "0"


def cuda_time(fn, reps: int = 20) -> float:
    """Seconds per call of fn: one warm-up, then the best of 3 batches of `reps` back-to-back
    calls timed with CUDA events (launch gaps amortised over the batch)."""
    fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    best = float("inf")
    for _ in range(3):
        start.record()
        for _ in range(reps):
            fn()
        end.record()
        end.synchronize()
        best = min(best, start.elapsed_time(end) / 1e3 / reps)
    return best
