"""Capture of the whole sampling loop as one CUDA graph, replayed for calls with the same shapes.

The first call with a given (velocity_fn, shapes, dtypes, solver, time grid, guidance
settings) warms the loop up on a side stream, then captures every step (velocity_fn, the
fused flow_step kernels, copies) into a torch.cuda.CUDAGraph whose inputs are static
buffers. Later calls copy x0 and the condition tensors into those buffers and replay: one
launch instead of hundreds. velocity_fn must be capturable (static shapes, no host sync,
no .item()). Weights updated in place are seen by the replay; swapped tensors are not.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import replace

import torch

from .guidance import Guidance

_MAX_GRAPHS = 4
_GRAPHS: "OrderedDict[tuple, _Captured]" = OrderedDict()


def _signature(d):
    sig = []
    for k in sorted(d):
        v = d[k]
        if isinstance(v, torch.Tensor):
            sig.append((k, "T", tuple(v.shape), v.dtype, v.device))
        else:
            sig.append((k, "V", repr(v)))
    return tuple(sig)


def _static(d):
    return {k: (v.detach().clone() if isinstance(v, torch.Tensor) else v) for k, v in d.items()}


class _Captured:
    def __init__(self, fn, x0, grid, solver, cfg, conditions, backend):
        from .sampler import _Loop
        self.fn = fn
        self.x0 = x0.detach().clone()
        self.cond = _static(conditions)
        self.cfg = None
        if cfg is not None:
            self.cfg = replace(cfg, uncond=_static(dict(cfg.uncond or {})),
                               scale=(cfg.scale.detach().clone() if isinstance(cfg.scale, torch.Tensor) else cfg.scale))
        self.loop = _Loop(fn, self.x0, grid, solver, self.cfg, self.cond, None, backend)
        side = torch.cuda.Stream(device=x0.device)
        side.wait_stream(torch.cuda.current_stream(x0.device))
        with torch.cuda.stream(side):
            self.loop.run(self.x0)  # compiles / autotunes / allocates outside the capture
        torch.cuda.current_stream(x0.device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.out = self.loop.run(self.x0)

    def load(self, x0, cfg, conditions):
        self.x0.copy_(x0)
        for k, v in conditions.items():
            if isinstance(v, torch.Tensor):
                self.cond[k].copy_(v)
        loop = self.loop
        if cfg is not None:
            for k, v in (cfg.uncond or {}).items():
                if isinstance(v, torch.Tensor):
                    self.cfg.uncond[k].copy_(v)
            if loop.w_rows is not None:
                loop.w_rows.copy_(torch.as_tensor(cfg.scale, dtype=torch.float32))
            if loop.batched:
                from .guidance import batch_conditions
                for k, v in batch_conditions(self.cond, self.cfg.uncond, loop.B).items():
                    if isinstance(v, torch.Tensor):
                        loop.cond2[k].copy_(v)
            else:
                loop.uncond = {**self.cond, **self.cfg.uncond}


def run_captured(fn, x0, grid, solver, cfg, conditions, generator, backend):
    if generator is not None:
        raise ValueError("cuda_graph=True uses the default CUDA generator; pass generator=None "
                         "(seed with torch.cuda.manual_seed)")
    if cfg is not None and not isinstance(cfg, Guidance):
        raise TypeError(f"cfg must be a sonicore.sampling.Guidance, got {type(cfg).__name__}")
    cfg_key = None
    if cfg is not None:
        scale = ("rows",) if isinstance(cfg.scale, torch.Tensor) or not isinstance(cfg.scale, (int, float)) \
            else float(cfg.scale)
        cfg_key = (scale, cfg.batched, cfg.interval, _signature(dict(cfg.uncond or {})))
    key = (id(fn), tuple(x0.shape), x0.dtype, x0.device, solver, grid.tobytes(), cfg_key,
           _signature(conditions), backend)
    entry = _GRAPHS.get(key)
    if entry is None or entry.fn is not fn:
        entry = _Captured(fn, x0, grid, solver, cfg, conditions, backend)
        _GRAPHS[key] = entry
        while len(_GRAPHS) > _MAX_GRAPHS:
            _GRAPHS.popitem(last=False)
    else:
        _GRAPHS.move_to_end(key)
    entry.load(x0, cfg, conditions)
    entry.graph.replay()
    return entry.out.clone()


def clear_graphs() -> None:
    """Drops every captured sampling graph (frees their memory pools)."""
    _GRAPHS.clear()
