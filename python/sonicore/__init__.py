"""sonicore: a compiled-kernel inference engine for generative audio.

Kernels (C++ always, CUDA when built with nvcc, Triton on GPUs) for streaming STFT/iSTFT
and mel front ends, attention, flow-matching sampling and DTW, and on them three
pipelines: separate, foley, align.
"""
from __future__ import annotations

import importlib

from ._ext import C as _C

__version__ = _C.__version__


def set_num_threads(n: int) -> None:
    """Sets the size of sonicore's CPU thread pool (n <= 0: back to the usable cores).

    sonicore's pool and torch's intra-op pool never spin at the same time (each sleeps
    when idle), so the usual setting is the same number for both:
    ``sonicore.set_num_threads(k); torch.set_num_threads(k)``.
    """
    if not isinstance(n, int):
        raise TypeError(f"set_num_threads expects an int, got {type(n).__name__}")
    _C.set_num_threads(n)


def get_num_threads() -> int:
    """Threads in sonicore's CPU pool (the calling thread included)."""
    return _C.num_threads()


def __getattr__(name):
    if name in ("ops", "sampling", "models", "io", "pipelines"):
        mod = importlib.import_module(f"{__name__}.{name}")
        globals()[name] = mod
        return mod
    if name == "Aligner":
        from .pipelines.align import Aligner
        return Aligner
    raise AttributeError(f"module 'sonicore' has no attribute {name!r}")


__all__ = ["__version__", "set_num_threads", "get_num_threads", "ops"]
