"""What this installation of sonicore can do: version, backends, threads."""
from __future__ import annotations

import importlib.util
import platform

from . import _backend
from ._ext import C


def collect() -> dict:
    info = {
        "version": C.__version__,
        "python": platform.python_version(),
        "cpu_isa": C.cpu_isa(),
        "cpu_amx": C.cpu_has_amx(),
        "threads": C.num_threads(),
        "cuda_compiled": bool(C.built_with_cuda),
    }
    try:
        import torch
        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    except ImportError:
        info["torch"] = None
    if C.built_with_cuda:
        rv = C.cuda_runtime_version()
        info["cuda_runtime"] = f"{rv // 1000}.{(rv % 1000) // 10}"
        n = C.cuda_device_count()
        info["cuda_devices"] = [C.cuda_device_name(i) for i in range(n)]
        info["cuda_usable"] = n > 0
        info["cuda_status"] = C.cuda_status()
        info["cuda_attention_kernels"] = list(_backend.cuda_attention_kernels())
    else:
        info["cuda_usable"] = False
    info["triton_installed"] = importlib.util.find_spec("triton") is not None
    ok, why = _backend.triton_usable()
    info["triton_usable"] = ok
    info["triton_status"] = "ok" if ok else why
    return info


def format_info(info: dict) -> str:
    yes = lambda b: "yes" if b else "no"  # noqa: E731
    lines = [
        f"sonicore {info['version']} (python {info['python']}, torch {info.get('torch') or 'not installed'})",
        f"  cpu      : yes, ISA {info['cpu_isa']}{' + AMX' if info['cpu_amx'] else ''}, {info['threads']} threads"
        + (f" (torch uses {info['torch_threads']})" if info.get("torch_threads") else ""),
    ]
    if info["cuda_compiled"]:
        devs = ", ".join(info["cuda_devices"]) or "none"
        lines.append(f"  cuda     : compiled (runtime {info['cuda_runtime']}), usable {yes(info['cuda_usable'])}"
                     f", devices: {devs}" + ("" if info["cuda_usable"] else f" [{info['cuda_status']}]"))
        lines.append(f"             attention kernels: {', '.join(info['cuda_attention_kernels'])}"
                     + (" (the wgmma ones on sm_90 with SONICORE_CUDA_ATTENTION=wgmma or wgmma-ws)"
                        if "wgmma" in info["cuda_attention_kernels"] else ""))
    else:
        lines.append("  cuda     : not compiled in")
    lines.append(f"  triton   : installed {yes(info['triton_installed'])}, usable {yes(info['triton_usable'])}"
                 + ("" if info["triton_usable"] else f" [{info['triton_status']}]"))
    return "\n".join(lines)
