"""The sampling loop: solvers over a time grid, guidance, caching, progress, CUDA graphs.

Per step the Python work is a handful of attribute look-ups and one call into the fused
kernel (sonicore.ops.flow_step's backends); everything that does not change between steps
(time grid, time tensors, batched conditions, buffers, kernel arguments) is built once.
"""
from __future__ import annotations

import importlib
import numbers
from typing import Any, Callable, Mapping, Optional

import numpy as np
import torch

from .. import _backend
from .._ext import C
from .guidance import Guidance, batch_conditions
from .schedules import Schedule, time_grid

# The module, not the function that sonicore.ops exports under the same name.
_fs = importlib.import_module("sonicore.ops.flow_step")

SOLVERS = ("euler", "heun", "midpoint", "multistep", "pingpong")


class SamplingInterrupted(RuntimeError):
    """Raised when the callback asks to stop; ``.x`` holds the state after ``.step`` steps."""

    def __init__(self, step: int, x: torch.Tensor):
        super().__init__(f"sampling stopped by the callback after step {step}")
        self.step = step
        self.x = x


def sample(velocity_fn: Callable[..., torch.Tensor], x0, *, steps: Optional[int] = None,
           solver: str = "euler", schedule: Schedule = "uniform", cfg: Optional[Guidance] = None,
           conditions: Optional[Mapping[str, Any]] = None, t_start: float = 0.0, t_end: float = 1.0,
           shift: float = 3.0, callback: Optional[Callable[[int, int, float, torch.Tensor], Any]] = None,
           cache: Optional["StepCache"] = None, cuda_graph: bool = False,
           generator: Optional[torch.Generator] = None, backend: Optional[str] = None):
    """Integrates dx/dt = velocity_fn(x, t, **conditions) from t_start to t_end.

    Convention (MMAudio): noise at t=0, data at t=1; see ``sonicore.sampling.conversions`` for
    other parameterisations.

    Args:
        velocity_fn: ``velocity_fn(x, t, **conditions) -> v``; x is (B', ...) float32, t a (B',)
            tensor of the same dtype and device, v shaped like x (float32/16/bf16). B' = 2B for
            batched guidance steps (conditional rows first). It must not modify x.
        x0: (B, ...) float32 starting state (noise when t_start = 0); never modified.
        steps: number of steps (None when ``schedule`` is a list of times).
        solver: "euler", "heun" (2nd order, 2 evaluations/step), "midpoint" (2nd order, 2),
            "multistep" (2nd-order Adams-Bashforth on the velocity, 1 evaluation/step, reuses the
            previous velocity), "pingpong" (denoise to t=1, re-noise to the next time; for
            few-step distilled models).
        schedule: "uniform", "shifted" (with ``shift``) or a monotone sequence of times in [0, 1].
        cfg: ``Guidance(scale, uncond={...}, batched=True, interval=None)`` or None.
        conditions: keyword arguments for velocity_fn (the conditional branch).
        callback: ``callback(step, steps, t, x)`` after each step (t in flow time); returning
            False stops: ``SamplingInterrupted`` is raised carrying the state so far.
        cache: a ``StepCache`` to reuse the velocity when the input changed little (off by default).
        cuda_graph: on CUDA, capture the whole loop once and replay it for later calls with the
            same shapes and settings (velocity_fn must be capturable: static shapes, no host sync).
        generator: torch.Generator for the ping-pong re-noising.
        backend: force the flow_step backend ("cpu", "cuda", "triton", "torch").

    Returns:
        (B, ...) float32 final state, a new tensor (numpy in -> numpy out).
    """
    if not callable(velocity_fn):
        raise TypeError(f"velocity_fn must be callable, got {type(velocity_fn).__name__}")
    as_np = isinstance(x0, np.ndarray)
    x0t = torch.from_numpy(np.ascontiguousarray(x0)) if as_np else x0
    if not isinstance(x0t, torch.Tensor):
        raise TypeError(f"x0 must be a torch tensor or numpy array, got {type(x0).__name__}")
    if x0t.dtype != torch.float32:
        raise TypeError(f"x0 must be float32 (the sampler state), got {x0t.dtype}")
    if x0t.dim() < 1 or x0t.shape[0] < 1:
        raise ValueError(f"x0 must be shaped (B, ...) with B >= 1, got {tuple(x0t.shape)}")
    if not bool(torch.isfinite(x0t).all()):
        raise ValueError("x0 contains NaN or infinity; the starting state must be finite")
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}")
    grid = time_grid(steps, schedule, t_start=t_start, t_end=t_end, shift=shift)
    if solver == "pingpong" and not np.all(np.diff(grid) > 0):
        raise ValueError("the ping-pong solver runs from noise to data: times must increase")
    conditions = dict(conditions or {})
    if cache is not None and solver not in ("euler", "multistep"):
        raise ValueError(f"step caching works with the one-evaluation solvers euler and multistep, not {solver!r}")
    if cuda_graph:
        if x0t.device.type != "cuda":
            raise ValueError("cuda_graph=True needs x0 on a CUDA device")
        if callback is not None or cache is not None:
            raise ValueError("cuda_graph=True replays a fixed sequence of kernels: it cannot run a callback "
                             "or data-dependent step caching")
        from .graphs import run_captured
        out = run_captured(velocity_fn, x0t, grid, solver, cfg, conditions, generator, backend)
    else:
        loop = _Loop(velocity_fn, x0t, grid, solver, cfg, conditions, generator, backend)
        out = loop.run(x0t, callback, cache)
    return out.numpy() if as_np else out


class _Loop:
    """Everything the steps reuse: buffers, time tensors, batched conditions, the kernel."""

    def __init__(self, fn, x0, grid, solver, cfg, conditions, generator, backend):
        self.fn, self.grid, self.solver, self.cfg, self.generator = fn, grid, solver, cfg, generator
        B, dev = x0.shape[0], x0.device
        self.B, self.shape = B, tuple(x0.shape)
        self.cond = conditions
        self.w = self.w_rows = None
        self.batched = False
        rows = B
        if cfg is not None:
            if not isinstance(cfg, Guidance):
                raise TypeError(f"cfg must be a sonicore.sampling.Guidance, got {type(cfg).__name__}")
            self.w, self.w_rows = cfg.validate(B, dev)
            self.uncond = {**conditions, **dict(cfg.uncond)}
            if cfg.batched:
                self.cond2 = batch_conditions(conditions, cfg.uncond, B)
                self.batched = True
                rows = 2 * B
        # The state lives in the first B rows of a (rows, ...) buffer so that a batched
        # guidance step only copies it into the second half before calling velocity_fn.
        self.xbuf = torch.empty((rows,) + self.shape[1:], dtype=torch.float32, device=dev)
        self.tbuf = torch.empty_like(self.xbuf) if solver in ("heun", "midpoint") else None
        self.vbuf = torch.empty(self.shape, dtype=torch.float32, device=dev) if solver in ("heun", "multistep") else None
        self._times = {}
        self._device = dev
        reasons = _backend.device_reasons(dev.type)
        self.backend = _backend.select_backend("sample", dev.type, backend, reasons)
        self._kernel = self._make_kernel()

    # -- pieces -------------------------------------------------------------------------
    def _t(self, t: float, n: int) -> torch.Tensor:
        key = (t, n)
        tt = self._times.get(key)
        if tt is None:
            tt = torch.full((n,), t, dtype=torch.float32, device=self._device)
            self._times[key] = tt
        return tt

    def _make_kernel(self):
        B, w, wu = self.B, self.w, (None if self.w is None else 1.0 - self.w)
        if self.backend == "cpu":
            flow = C.flow_step_cpu
            g = 1.0 if w is None else w
            gu = 0.0 if wu is None else wu
            if self.w_rows is not None:
                g, gu = self.w_rows.numpy(), 0.0
            names = _fs._DTYPE_NAME

            def rows_np(t):
                if t.dtype == torch.bfloat16:
                    t = t.view(torch.int16)
                return t.view(B, -1).numpy()

            def kernel(out, x, vc, vu, prev, cw, pw, store, dt):
                flow(rows_np(out), rows_np(x), rows_np(vc), names[vc.dtype],
                     None if vu is None else rows_np(vu), g if vu is not None else 1.0, gu,
                     None if prev is None else rows_np(prev), cw, pw,
                     None if store is None else rows_np(store), dt)
            return kernel
        run = _fs._RUN[self.backend]

        def kernel(out, x, vc, vu, prev, cw, pw, store, dt):
            a = _fs._Args()
            a.x, a.out, a.result, a.vc, a.vu = x, out, out, vc, vu
            a.w, a.wu, a.w_rows = (w, wu, self.w_rows) if vu is not None else (None, None, None)
            a.prev, a.cw, a.pw, a.store, a.dt, a.writeback = prev, cw, pw, store, dt, None
            run(a)
        return kernel

    def _check_v(self, v, rows):
        if not isinstance(v, torch.Tensor):
            raise TypeError(f"velocity_fn must return a torch tensor, got {type(v).__name__}")
        want = (rows,) + self.shape[1:]
        if tuple(v.shape) != want:
            raise ValueError(f"velocity_fn returned shape {tuple(v.shape)}, expected {want}: it must return "
                             "a velocity shaped like its input x, the same at every call")
        if v.dtype not in _fs._VELOCITY_DTYPES:
            raise TypeError(f"velocity_fn must return float32, float16 or bfloat16, got {v.dtype}")
        if v.device != self._device:
            raise ValueError(f"velocity_fn returned a tensor on {v.device}, expected {self._device}")
        return v if v.is_contiguous() else v.contiguous()

    def evaluate(self, buf: torch.Tensor, t: float):
        """(v_cond, v_uncond or None) at time t for the state in buf[:B]."""
        B, fn, cfg = self.B, self.fn, self.cfg
        x = buf[:B] if buf.shape[0] != B else buf
        if cfg is not None and cfg.active(t):
            if self.batched:
                buf[B:].copy_(x)
                v = self._check_v(fn(buf, self._t(t, 2 * B), **self.cond2), 2 * B)
                return v[:B], v[B:]
            vc = self._check_v(fn(x, self._t(t, B), **self.cond), B)
            vu = self._check_v(fn(x, self._t(t, B), **self.uncond), B)
            return vc, vu
        return self._check_v(fn(x, self._t(t, B), **self.cond), B), None

    # -- the loop -----------------------------------------------------------------------
    def run(self, x0, callback=None, cache=None):
        B, grid, k = self.B, self.grid, self._kernel
        xs = self.xbuf[:B] if self.xbuf.shape[0] != B else self.xbuf
        xs.copy_(x0)
        ts = [float(t) for t in grid]
        # dt exactly as MMAudio forms it: the float32 difference of float32 grid times.
        dts = [float(d) for d in (grid[1:] - grid[:-1])]
        n = len(dts)
        solver, ev = self.solver, self.evaluate
        if cache is not None:
            cache.reset()
        for i in range(n):
            t, dt = ts[i], dts[i]
            if solver == "euler":
                vc, vu = cache.evaluate(ev, self.xbuf, t, xs, i, n) if cache is not None else ev(self.xbuf, t)
                k(xs, xs, vc, vu, None, 1.0, 0.0, None, dt)
            elif solver == "multistep":
                vc, vu = cache.evaluate(ev, self.xbuf, t, xs, i, n) if cache is not None else ev(self.xbuf, t)
                if i == 0:
                    k(xs, xs, vc, vu, None, 1.0, 0.0, self.vbuf, dt)
                else:
                    # Adams-Bashforth 2 with variable steps: extrapolate the velocity linearly
                    # from the previous step's to the middle of this one.
                    r = dt / (2.0 * dts[i - 1])
                    k(xs, xs, vc, vu, self.vbuf, 1.0 + r, -r, self.vbuf, dt)
            elif solver == "heun":
                ys = self.tbuf[:B]
                vc, vu = ev(self.xbuf, t)
                k(ys, xs, vc, vu, None, 1.0, 0.0, self.vbuf, dt)
                vc, vu = ev(self.tbuf, ts[i + 1])
                k(xs, xs, vc, vu, self.vbuf, 0.5, 0.5, None, dt)
            elif solver == "midpoint":
                ys = self.tbuf[:B]
                vc, vu = ev(self.xbuf, t)
                k(ys, xs, vc, vu, None, 1.0, 0.0, None, 0.5 * dt)
                vc, vu = ev(self.tbuf, t + 0.5 * dt)
                k(xs, xs, vc, vu, None, 1.0, 0.0, None, dt)
            else:  # pingpong: jump to the data estimate, then re-noise to the next time
                vc, vu = ev(self.xbuf, t)
                k(xs, xs, vc, vu, None, 1.0, 0.0, None, 1.0 - t)
                if i + 1 < n:
                    noise = torch.randn(xs.shape, generator=self.generator, dtype=xs.dtype, device=xs.device)
                    torch.lerp(noise, xs, ts[i + 1], out=xs)
            if callback is not None and callback(i + 1, n, ts[i + 1], xs) is False:
                raise SamplingInterrupted(i + 1, xs.clone())
        return xs.clone()
