"""Timing on the GPU with CUDA events, shared by the GPU benchmarks."""
import torch


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
