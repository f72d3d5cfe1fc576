"""Which backends exist in this process, and the one place that picks one for a call.

Rule (DESIGN.md): a CUDA tensor goes to the CUDA or Triton kernel, a CPU tensor to the C++
kernel; every op also has a pure-PyTorch reference ("torch"). A caller may force a backend
with ``backend=``; a backend that cannot take the call says why.
"""
from __future__ import annotations

import functools
import importlib
import importlib.util
import os
import sys
from typing import Iterable, Optional, Sequence, Tuple

from ._ext import C

BACKENDS = ("cpu", "cuda", "triton", "torch")


class BackendUnavailable(ValueError):
    """Raised when no backend (or not the requested one) can run a call; lists each reason."""


@functools.lru_cache(maxsize=None)
def torch_cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def cuda_kernels_usable() -> Tuple[bool, str]:
    """(usable, reason) for sonicore's own CUDA kernels."""
    if not C.built_with_cuda:
        return False, "sonicore was built without CUDA (no nvcc at build time, or SONICORE_CUDA=OFF)"
    if C.cuda_device_count() == 0:
        return False, f"no CUDA device is usable ({C.cuda_status()})"
    return True, ""


def cuda_attention_kernels() -> Tuple[str, ...]:
    """The CUDA attention kernels compiled in: ("mma",), or ("mma", "wgmma", "wgmma-ws") with sm_90a;
    () without CUDA."""
    fn = getattr(C, "attention_cuda_kernels", None)
    return tuple(fn().split(",")) if fn is not None else ()


def wgmma_attention_runs(kernel: str = "wgmma") -> bool:
    """Whether SONICORE_CUDA_ATTENTION=<kernel> ("wgmma" or "wgmma-ws") would run that Hopper kernel
    here (built, compute capability 9.0)."""
    return (kernel in cuda_attention_kernels() and cuda_kernels_usable()[0]
            and torch_cuda_available() and _torch_cuda_capability() == (9, 0))


def _torch_cuda_capability():
    import torch
    return torch.cuda.get_device_capability()


@functools.lru_cache(maxsize=None)
def triton_usable() -> Tuple[bool, str]:
    """(usable, reason) for the Triton kernels: a GPU, or the interpreter (TRITON_INTERPRET=1)."""
    if importlib.util.find_spec("triton") is None:
        return False, "triton is not installed (pip install triton)"
    if os.environ.get("TRITON_INTERPRET") == "1":
        return True, ""
    if not torch_cuda_available():
        return False, "triton needs a CUDA GPU (or TRITON_INTERPRET=1 for the slow CPU interpreter)"
    return True, ""


# Compile options every sonicore Triton launch passes (flow_step aside, which turns FMA
# contraction off on purpose): FMA contraction on, as the kernels were tested and measured with
# on GPUs, whatever the installed Triton's default (3.10 turns it off). The CPU interpreter
# ignores them.
TRITON_OPTIONS = {"enable_fp_fusion": True}


def triton_kernels(name: str):
    """Imports the Triton kernel module `name` lazily.

    Installed packages carry them as sonicore.kernels.<name>; a developer checkout
    (PYTHONPATH=python) finds them in the repository's kernels/ folder.
    """
    ok, why = triton_usable()
    if not ok:
        raise BackendUnavailable(f"triton backend unavailable: {why}")
    full = f"sonicore.kernels.{name}"
    if full in sys.modules:
        return sys.modules[full]
    try:
        return importlib.import_module(full)
    except ModuleNotFoundError:
        pass
    here = os.path.dirname(os.path.abspath(__file__))
    path = os.path.join(os.path.dirname(os.path.dirname(here)), "kernels", f"{name}.py")
    if not os.path.exists(path):
        raise BackendUnavailable(f"triton kernel module {name!r} is not installed with sonicore")
    spec = importlib.util.spec_from_file_location(full, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[full] = module
    spec.loader.exec_module(module)
    return module


# Every kernel is forward-only; the torch reference is the one differentiable backend.
NO_BACKWARD = ("it has no backward pass and an input requires grad: call it under torch.no_grad() "
               "or torch.inference_mode(), or pass backend='torch' to differentiate")


def records_grad(*tensors) -> bool:
    """Whether autograd records an op on these tensors (grad mode on, one of them requires grad)."""
    if not any(getattr(t, "requires_grad", False) for t in tensors):
        return False
    import torch
    return torch.is_grad_enabled()


def select_backend(op: str, device_type: str, requested: Optional[str],
                   reasons: dict, order: Optional[Sequence[str]] = None, inputs: Sequence = ()) -> str:
    """Pick the backend for one call.

    reasons: backend name -> None if it can take this call, else a sentence why not.
    order: preference for the automatic choice; defaults to cuda, triton for CUDA tensors
    and cpu for CPU tensors, with torch (the reference) last.
    inputs: the call's tensors (None allowed). When autograd records the call, every backend
    but torch is out (NO_BACKWARD): the automatic choice differentiates, a forced kernel
    raises, and no input is silently detached.
    """
    if inputs and records_grad(*inputs):
        reasons = {name: (NO_BACKWARD if why is None and name != "torch" else why) for name, why in reasons.items()}
    if requested is not None:
        if requested not in reasons:
            raise BackendUnavailable(
                f"{op}: unknown backend {requested!r}; expected one of {sorted(reasons)}")
        why = reasons[requested]
        if why is not None:
            raise BackendUnavailable(f"{op}: backend {requested!r} cannot take this call: {why}")
        return requested
    if order is None:
        order = ("cuda", "triton", "torch") if device_type == "cuda" else ("cpu", "torch")
    for name in order:
        if name in reasons and reasons[name] is None:
            return name
    lines = "; ".join(f"{k}: {v}" for k, v in reasons.items())
    raise BackendUnavailable(f"{op}: no backend can take this call ({lines})")


def device_reasons(device_type: str, names: Iterable[str] = BACKENDS) -> dict:
    """Default availability for each backend given where the data lives."""
    out = {}
    for name in names:
        if name == "cpu":
            out[name] = None if device_type == "cpu" else f"the data is on {device_type}, the C++ kernel needs CPU memory"
        elif name == "cuda":
            ok, why = cuda_kernels_usable()
            out[name] = None if (ok and device_type == "cuda") else (why or f"the data is on {device_type}, not a CUDA device")
        elif name == "triton":
            ok, why = triton_usable()
            if not ok:
                out[name] = why
            elif device_type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
                out[name] = f"the data is on {device_type}; triton runs on CUDA tensors (or under TRITON_INTERPRET=1)"
            else:
                out[name] = None
        elif name == "torch":
            out[name] = None
    return out
