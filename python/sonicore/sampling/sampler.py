"""The sampling loop: solvers over a time grid, guidance, caching, progress, CUDA graphs.

Per step the Python work is a handful of attribute look-ups and one call into the fused
kernel (sonicore.ops.flow_step's backends); everything that does not change between steps
(time grid, time tensors, batched conditions, buffers, kernel arguments) is built once.
"""
from __future__ import annotations

import sys
from typing import Any, Callable, Mapping, Optional

import numpy as np
import torch

from .. import _backend
from .._ext import C
from .guidance import Guidance, batch_conditions
from .schedules import Schedule, time_grid

# sonicore.ops exports the function flow_step from the submodule of the same name. Going
# through the package's lazy export (and not importing the submodule directly) keeps
# sonicore.ops.flow_step bound to the function; the module is then taken from sys.modules.
from ..ops import flow_step as _flow_step_fn  # noqa: E402,F401
_fs = sys.modules["sonicore.ops.flow_step"]

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
    """Everything the steps reuse: buffers, time tensors, batched conditions, the kernel.

    The fused kernel is called with "handles": on the CPU backend the buffers' addresses
    (taken once; the shapes were checked here), elsewhere the tensors themselves. Only
    velocity_fn's fresh output is checked and wrapped per step.
    """

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
        self._device = dev
        reasons = _backend.device_reasons(dev.type)
        self.backend = _backend.select_backend("sample", dev.type, backend, reasons)
        # cpu and cuda take raw addresses (checked here once); triton and torch take tensors
        self.raw = self.backend in ("cpu", "cuda")
        self._stream = 0  # the CUDA stream of the current run (set by run())
        # The state lives in the first B rows of a (rows, ...) buffer; with batched guidance
        # the kernel also writes it into the second half, which is then the doubled batch.
        self.xbuf = torch.empty((rows,) + self.shape[1:], dtype=torch.float32, device=dev)
        self.tbuf = torch.empty_like(self.xbuf) if solver in ("heun", "midpoint") else None
        self.vbuf = torch.empty(self.shape, dtype=torch.float32, device=dev) if solver in ("heun", "multistep") else None
        self.cols = int(np.prod(self.shape[1:], dtype=np.int64))
        self._half_bytes = {dt: B * self.cols * dt.itemsize for dt in _fs._VELOCITY_DTYPES}
        self.xs, self.hx, self.hx_dup = self._state(self.xbuf)
        if self.tbuf is not None:
            self.ys, self.hy, self.hy_dup = self._state(self.tbuf)
        self._dup = {}  # kernel handle of a state -> handle of its copy in the unconditional half
        if self.hx_dup is not None:
            self._dup[self._key(self.hx)] = self.hx_dup
            if self.tbuf is not None:
                self._dup[self._key(self.hy)] = self.hy_dup
        self.hv = self._handle(self.vbuf) if self.vbuf is not None else None
        self._times = {}
        self._want = {B: x0.shape, 2 * B: torch.Size((2 * B,) + self.shape[1:])}
        self._first = {id(self.xbuf): self.xs}
        if self.tbuf is not None:
            self._first[id(self.tbuf)] = self.ys
        self._always = cfg is not None and cfg.interval is None
        self._kernel = self._make_kernel()

    # -- pieces -------------------------------------------------------------------------
    @staticmethod
    def _key(h):
        return h if isinstance(h, int) else h.data_ptr()

    def _handle(self, t):
        """What the kernel takes for a state buffer: its address on the CPU, else the tensor."""
        return t.data_ptr() if self.raw else t

    def _state(self, buf):
        """(state tensor = buf's first B rows, its kernel handle, handle of the second half or None).

        With batched guidance every kernel call that writes a state also writes it into the
        buffer's second half (out_copy), so the next doubled-batch call needs no copy."""
        B = self.B
        first = buf[:B]
        second = self._handle(buf[B:]) if buf.shape[0] != B else None
        return first, self._handle(first), second

    def prepare_times(self, times):
        """Builds the (B,) and (2B,) time tensors for every time the run visits, in one go."""
        times = sorted(set(times) - {t for t, _ in self._times})
        if not times:
            return
        counts = (self.B, 2 * self.B) if self.cfg is not None else (self.B,)
        for n in counts:
            table = torch.from_numpy(np.repeat(np.asarray(times, dtype=np.float32)[:, None], n, 1))
            for t, row in zip(times, table.to(self._device).unbind(0)):
                self._times[(t, n)] = row

    def _make_kernel(self):
        w = self.w
        wu = None if w is None else 1.0 - w
        if self.raw:
            B, n = self.B, self.cols
            g = 1.0 if w is None else w
            gu = 0.0 if wu is None else wu
            grows = 0 if self.w_rows is None else self.w_rows.data_ptr()
            dups = self._dup

            if self.backend == "cpu":
                def kernel(out, x, v, prev, cw, pw, store, dt):
                    # v = (v_cond address, v_uncond address or 0, dtype name, the tensor kept alive)
                    vc, vu, name, _ = v
                    C.flow_step_cpu_ptr(B, n, out, n, x, n, name, vc, n, vu, n, g if vu else 1.0, gu,
                                        grows if vu else 0, prev or 0, n, cw, pw, store or 0, n,
                                        dups.get(out, 0), n, dt)
            else:
                def kernel(out, x, v, prev, cw, pw, store, dt):
                    vc, vu, name, _ = v
                    C.flow_step_cuda(B, n, out, n, x, n, name, vc, n, vu, n, g if vu else 1.0, gu,
                                     grows if vu else 0, prev or 0, n, cw, pw, store or 0, n,
                                     dups.get(out, 0), n, dt, self._stream)
            return kernel
        run = _fs._RUN[self.backend]

        def kernel(out, x, v, prev, cw, pw, store, dt):
            vc, vu, _, _ = v
            a = _fs._Args()
            a.x, a.out, a.result, a.vc, a.vu = x, out, out, vc, vu
            a.w, a.wu, a.w_rows = (w, wu, self.w_rows) if vu is not None else (None, None, None)
            a.prev, a.cw, a.pw, a.store, a.dt, a.writeback = prev, cw, pw, store, dt, None
            a.dup = self._dup.get(out.data_ptr())
            run(a)
        return kernel

    def _check_v(self, v, rows):
        if (type(v) is torch.Tensor and v.shape == self._want[rows] and v.dtype in _fs._DTYPE_NAME
                and v.device == self._device):
            return v if v.is_contiguous() else v.contiguous()
        if not isinstance(v, torch.Tensor):
            raise TypeError(f"velocity_fn must return a torch tensor, got {type(v).__name__}")
        if v.shape != self._want[rows]:
            raise ValueError(f"velocity_fn returned shape {tuple(v.shape)}, expected {tuple(self._want[rows])}: it "
                             "must return a velocity shaped like its input x, the same at every call")
        if v.dtype not in _fs._DTYPE_NAME:
            raise TypeError(f"velocity_fn must return float32, float16 or bfloat16, got {v.dtype}")
        if v.device != self._device:
            raise ValueError(f"velocity_fn returned a tensor on {v.device}, expected {self._device}")
        return v.contiguous()

    def evaluate(self, buf, t: float):
        """(v_cond, v_uncond or None/0, dtype name, keep-alive) at time t for the state in the
        first B rows of buf (whose second half already holds the same state)."""
        B, fn, cfg, raw = self.B, self.fn, self.cfg, self.raw
        if cfg is not None and (self._always or cfg.active(t)):
            if self.batched:
                v = self._check_v(fn(buf, self._times[(t, 2 * B)], **self.cond2), 2 * B)
                if raw:
                    p = v.data_ptr()
                    return p, p + self._half_bytes[v.dtype], _fs._DTYPE_NAME[v.dtype], v
                return v[:B], v[B:], None, v
            x = self._first[id(buf)]
            tt = self._times[(t, B)]
            vc = self._check_v(fn(x, tt, **self.cond), B)
            vu = self._check_v(fn(x, tt, **self.uncond), B)
            if vu.dtype != vc.dtype:
                raise TypeError("velocity_fn returned different dtypes for the two guidance branches")
            if raw:
                return vc.data_ptr(), vu.data_ptr(), _fs._DTYPE_NAME[vc.dtype], (vc, vu)
            return vc, vu, None, None
        v = self._check_v(fn(self._first[id(buf)], self._times[(t, B)], **self.cond), B)
        if raw:
            return v.data_ptr(), 0, _fs._DTYPE_NAME[v.dtype], v
        return v, None, None, v

    # -- the loop -----------------------------------------------------------------------
    def run(self, x0, callback=None, cache=None):
        if self.backend == "cuda":
            with torch.cuda.device(self._device):
                return self._run(x0, callback, cache)
        return self._run(x0, callback, cache)

    def _run(self, x0, callback, cache):
        grid, k, solver, ev = self.grid, self._kernel, self.solver, self.evaluate
        xs, hx, xbuf = self.xs, self.hx, self.xbuf
        if self.backend == "cuda":
            # the stream the run is issued on (a side stream or a graph-capture stream included)
            self._stream = torch.cuda.current_stream(self._device).cuda_stream
        xs.copy_(x0)
        if self.hx_dup is not None:
            xbuf[self.B:].copy_(x0)
        ts = grid.tolist()
        # dt exactly as MMAudio forms it: the float32 difference of float32 grid times.
        dts = (grid[1:] - grid[:-1]).tolist()
        n = len(dts)
        stage2 = []
        if solver == "heun":
            stage2 = ts[1:]
        elif solver == "midpoint":
            stage2 = [t + 0.5 * dt for t, dt in zip(ts, dts)]
        self.prepare_times(ts[:-1] + stage2)
        if cache is not None:
            cache.reset()
        for i in range(n):
            t, dt = ts[i], dts[i]
            if solver == "euler":
                v = cache.evaluate(ev, xbuf, t, xs, i, n) if cache is not None else ev(xbuf, t)
                k(hx, hx, v, None, 1.0, 0.0, None, dt)
            elif solver == "multistep":
                v = cache.evaluate(ev, xbuf, t, xs, i, n) if cache is not None else ev(xbuf, t)
                if i == 0:
                    k(hx, hx, v, None, 1.0, 0.0, self.hv, dt)
                else:
                    # Adams-Bashforth 2 with variable steps: extrapolate the velocity linearly
                    # from the previous step's to the middle of this one.
                    r = dt / (2.0 * dts[i - 1])
                    k(hx, hx, v, self.hv, 1.0 + r, -r, self.hv, dt)
            elif solver == "heun":
                k(self.hy, hx, ev(xbuf, t), None, 1.0, 0.0, self.hv, dt)
                k(hx, hx, ev(self.tbuf, stage2[i]), self.hv, 0.5, 0.5, None, dt)
            elif solver == "midpoint":
                k(self.hy, hx, ev(xbuf, t), None, 1.0, 0.0, None, 0.5 * dt)
                k(hx, hx, ev(self.tbuf, stage2[i]), None, 1.0, 0.0, None, dt)
            else:  # pingpong: jump to the data estimate, then re-noise to the next time
                k(hx, hx, ev(xbuf, t), None, 1.0, 0.0, None, 1.0 - t)
                if i + 1 < n:
                    noise = torch.randn(xs.shape, generator=self.generator, dtype=xs.dtype, device=xs.device)
                    torch.lerp(noise, xs, ts[i + 1], out=xs)
                    if self.hx_dup is not None:
                        xbuf[self.B:].copy_(xs)
            if callback is not None and callback(i + 1, n, ts[i + 1], xs) is False:
                raise SamplingInterrupted(i + 1, xs.clone())
        return xs.clone()
