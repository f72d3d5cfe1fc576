"""Fused flow-matching sampler step: guidance, solver update and bookkeeping in one pass.

Convention (MMAudio): noise at t=0, data at t=1, velocity = dx/dt. One call computes, per
element and in this order, each product and sum rounded to float32 on its own (no FMA), so
that it is bit-identical to the same formula in eager PyTorch float32::

    v     = w * v_cond + (1 - w) * v_uncond        # guidance (skipped when guidance is None)
    d     = cur_weight * v + prev_weight * prev    # multistep / Heun mix (skipped when prev is None)
    out   = x + dt * d                             # in place on x unless out is given
    store = v                                      # what the next stage / step needs
    copy_to = out                                  # optional second copy of the new state
"""
from __future__ import annotations

import numbers
from typing import Optional

import torch

from .. import _backend
from .._ext import C
from ._arrays import from_torch, to_torch

_VELOCITY_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
_DTYPE_NAME = {torch.float32: "float32", torch.float16: "float16", torch.bfloat16: "bfloat16"}


def flow_step(x, velocity, dt: float, *, guidance=None, uncond=None, prev=None,
              prev_weight: float = 0.0, cur_weight: Optional[float] = None, store=None, out=None,
              copy_to=None, backend: Optional[str] = None):
    """One fused sampler update ``out = x + dt * d`` (see the module docstring for d).

    Args:
        x: (B, ...) float32 state at the current time; updated in place unless ``out`` is given.
        velocity: the network output. Without guidance: shaped like x. With ``guidance`` and no
            ``uncond``: the doubled batch (2B, ...), conditional rows first, then unconditional.
            float32, float16 or bfloat16 (the math is float32 either way).
        dt: time step (t_next - t), in the flow time unit (noise 0 -> data 1).
        guidance: None, a float w, or a (B,) sequence/array/tensor of per-sample w:
            v = w * v_cond + (1 - w) * v_uncond.
        uncond: (B, ...) unconditional velocity when it was evaluated in a separate call.
        prev: (B, ...) float32 earlier velocity mixed in as ``cur_weight * v + prev_weight * prev``.
        prev_weight: weight of ``prev``; ``cur_weight`` defaults to ``1 - prev_weight``.
        store: (B, ...) float32 buffer that receives the guided velocity v (may be ``prev``).
        out: (B, ...) float32 buffer for the new state (x is left unchanged).
        copy_to: (B, ...) float32 buffer that receives the new state too (the sampler passes the
            unconditional half of its doubled batch, so the next guided call needs no copy).
        backend: force "cpu", "cuda", "triton" or "torch" (the reference).

    Returns:
        The new state (``out``, or ``x`` updated in place); numpy in -> numpy out.
    """
    if (backend is None and uncond is None and prev is None and store is None and out is None
            and copy_to is None and type(x) is torch.Tensor and type(velocity) is torch.Tensor
            and not _backend.records_grad(x, velocity) and _fast_cpu(x, velocity, dt, guidance)):
        return x
    xt, as_np = to_torch(x, "x")
    args = _prepare(xt, velocity, dt, guidance, uncond, prev, prev_weight, cur_weight, store, out, copy_to)
    name = _backend.select_backend("flow_step", xt.device.type, backend, _reasons(xt.device.type),
                                   inputs=(xt, velocity, guidance, uncond, prev))
    _RUN[name](args)
    if as_np:  # hand back the caller's own array, updated in place
        return x if out is None else out
    return args.result


_REASONS = {}


def _fast_cpu(x, v, dt, guidance) -> bool:
    """The sampler's common call (contiguous CPU float32 state, velocity or doubled velocity,
    no guidance or one scalar w, in place) with the fewest Python steps; False: not this case,
    the general path takes it (and produces the error messages)."""
    if (x.dtype is not torch.float32 or not x.is_contiguous() or not v.is_contiguous()
            or x.device.type != "cpu" or v.device.type != "cpu" or x.dim() < 1):
        return False
    name = _DTYPE_NAME.get(v.dtype)
    tdt, tg = type(dt), type(guidance)
    if name is None or (tdt is not float and tdt is not int) or (
            guidance is not None and tg is not float and tg is not int):
        return False
    B, n = x.shape[0], x.numel()
    rows = 2 * B if guidance is not None else B
    if v.shape[0] != rows or v.shape[1:] != x.shape[1:] or n == 0:
        return False
    cols = n // B
    xp, vp = x.data_ptr(), v.data_ptr()
    vbytes = v.numel() * v.element_size()
    if not (xp == vp and guidance is None) and xp < vp + vbytes and vp < xp + 4 * n:
        return False  # overlapping: let the general path judge it
    if guidance is None:
        C.flow_step_cpu_ptr(B, cols, xp, cols, xp, cols, name, vp, cols, 0, 0, 1.0, 0.0, 0, 0, 0,
                            1.0, 0.0, 0, 0, 0, 0, dt)
    else:
        w = float(guidance)
        C.flow_step_cpu_ptr(B, cols, xp, cols, xp, cols, name, vp, cols, vp + vbytes // 2, cols, w, 1.0 - w,
                            0, 0, 0, 1.0, 0.0, 0, 0, 0, 0, dt)
    return True


def _reasons(device_type: str) -> dict:
    """Backend availability per device type, computed once per process (it cannot change)."""
    r = _REASONS.get(device_type)
    if r is None:
        r = _REASONS[device_type] = _backend.device_reasons(device_type)
    return r


def flow_step_reference(x, velocity, dt, *, guidance=None, uncond=None, prev=None, prev_weight=0.0,
                        cur_weight=None, store=None, out=None, copy_to=None):
    """The same update written as plain PyTorch float32 expressions (the tests' peer)."""
    xt, as_np = to_torch(x, "x")
    args = _prepare(xt, velocity, dt, guidance, uncond, prev, prev_weight, cur_weight, store, out, copy_to)
    _run_torch(args)
    return from_torch(args.result, as_np)


class _Args:
    __slots__ = ("x", "out", "result", "vc", "vu", "w", "wu", "w_rows", "prev", "cw", "pw", "store", "dt",
                 "writeback", "dup", "keep")


def _is_real(v) -> bool:
    t = type(v)
    return t is float or t is int or (isinstance(v, numbers.Real) and t is not bool)


def _as_tensor(a, name, device):
    if a is None:
        return None
    t = a if type(a) is torch.Tensor else to_torch(a, name)[0]
    if t.device != device:
        raise ValueError(f"flow_step: {name} is on {t.device}, but x is on {device}; keep them together")
    return t


def _check_f32(t, name, shape):
    if t.dtype != torch.float32:
        raise TypeError(f"flow_step: {name} must be float32, got {t.dtype}")
    if tuple(t.shape) != shape:
        raise ValueError(f"flow_step: {name} has shape {tuple(t.shape)}, expected {shape} (like x)")


def _prepare(xt, velocity, dt, guidance, uncond, prev, prev_weight, cur_weight, store, out, copy_to=None) -> _Args:
    if xt.dtype != torch.float32:
        raise TypeError(f"flow_step: x must be float32 (the sampler state), got {xt.dtype}")
    if xt.dim() < 1:
        raise ValueError("flow_step: x must have a batch dimension, shape (B, ...)")
    if not _is_real(dt):
        raise TypeError(f"flow_step: dt must be a real number, got {type(dt).__name__}")
    dev, shape, B = xt.device, tuple(xt.shape), xt.shape[0]
    a = _Args()
    a.x, a.dt = xt, float(dt)
    v = _as_tensor(velocity, "velocity", dev)
    if v.dtype not in _VELOCITY_DTYPES:
        raise TypeError(f"flow_step: velocity must be float32, float16 or bfloat16, got {v.dtype}")
    a.w = a.wu = None
    a.w_rows = None
    if guidance is None:
        if uncond is not None:
            raise ValueError("flow_step: uncond was given without guidance; pass guidance=w to combine them")
        if tuple(v.shape) != shape:
            raise ValueError(f"flow_step: velocity has shape {tuple(v.shape)}, expected {shape} (like x)")
        a.vc, a.vu = v, None
    else:
        if uncond is None:
            want = (2 * B,) + shape[1:]
            if tuple(v.shape) != want:
                raise ValueError(
                    f"flow_step: with guidance and no uncond, velocity must be the doubled batch {want} "
                    f"(conditional rows first), got {tuple(v.shape)}")
            a.vc, a.vu = v.narrow(0, 0, B), v.narrow(0, B, B)
        else:
            u = _as_tensor(uncond, "uncond", dev)
            if tuple(v.shape) != shape or tuple(u.shape) != shape:
                raise ValueError(f"flow_step: velocity {tuple(v.shape)} and uncond {tuple(u.shape)} "
                                 f"must both be shaped like x {shape}")
            if u.dtype != v.dtype:
                raise TypeError(f"flow_step: uncond must have the velocity's dtype {v.dtype}, got {u.dtype}")
            a.vc, a.vu = v, u
        if _is_real(guidance):
            a.w, a.wu = float(guidance), 1.0 - float(guidance)
        else:
            if isinstance(guidance, (list, tuple)):
                guidance = torch.tensor(guidance, dtype=torch.float32, device=dev)
            g = _as_tensor(guidance, "guidance", dev)
            if g.dim() == 0:  # a 0-dim tensor is one weight for every row
                g = g.reshape(1).expand(B)
            if g.dim() != 1 or g.shape[0] != B or not (g.is_floating_point() or g.dtype == torch.int64):
                raise ValueError(f"flow_step: guidance must be a float or a ({B},) array of per-sample "
                                 f"weights, got shape {tuple(g.shape)} dtype {g.dtype}")
            a.w_rows = g.to(torch.float32).contiguous()
    a.prev = _as_tensor(prev, "prev", dev)
    if a.prev is not None:
        _check_f32(a.prev, "prev", shape)
    a.pw = float(prev_weight)
    a.cw = 1.0 - a.pw if cur_weight is None else float(cur_weight)
    a.store = _as_tensor(store, "store", dev)
    if a.store is not None:
        _check_f32(a.store, "store", shape)
    o = _as_tensor(out, "out", dev)
    if o is not None:
        _check_f32(o, "out", shape)
    a.out = xt if o is None else o
    a.result = a.out
    a.dup = _as_tensor(copy_to, "copy_to", dev)
    if a.dup is not None:
        _check_f32(a.dup, "copy_to", shape)
    a.writeback = None
    return a


def _run_torch(a: _Args) -> None:
    v = a.vc.float()
    if a.vu is not None:
        u = a.vu.float()
        if a.w_rows is not None:
            w = a.w_rows.view((-1,) + (1,) * (v.dim() - 1))
            v = w * v + (1 - w) * u
        else:
            v = a.w * v + a.wu * u
    d = v if a.prev is None else a.cw * v + a.pw * a.prev
    new = a.x + torch.tensor(a.dt, dtype=torch.float32, device=a.x.device) * d
    if a.store is not None:
        a.store.copy_(v)
    a.out.copy_(new)
    if a.dup is not None:
        a.dup.copy_(new)


def _rows(t: torch.Tensor, B: int):
    """(B, cols) view with unit column stride, or None when t cannot be viewed so."""
    cols = t.numel() // B if B else 0
    try:
        r = t.view(B, cols)
    except RuntimeError:
        return None
    if cols > 1 and r.stride(1) != 1:
        return None
    return r


def _input_rows(t, B):
    r = _rows(t, B) if t is not None else None
    if t is not None and r is None:
        r = _rows(t.contiguous(), B)
    return r


def _output_rows(a: _Args, t, B):
    """Rows to write into; a non-viewable output gets a scratch buffer copied back afterwards."""
    r = _rows(t, B)
    if r is None:
        r = torch.empty((B, t.numel() // B if B else 0), dtype=t.dtype, device=t.device)
        a.writeback = a.writeback or []
        a.writeback.append((t, r))
    return r


def _finish(a: _Args) -> None:
    for dst, src in a.writeback or ():
        if dst is not None:
            dst.copy_(src.view(dst.shape))


def _row_views(a: _Args):
    """Every operand as a (B, cols) view with unit column stride: inputs that are not viewable
    so are copied, outputs get a scratch buffer copied back by _finish. Checks aliasing."""
    B = a.x.shape[0]
    cols = a.x.numel() // B
    r = {"out": _output_rows(a, a.out, B),
         "store": _output_rows(a, a.store, B) if a.store is not None else None,
         "copy_to": _output_rows(a, a.dup, B) if a.dup is not None else None}
    for name, t in (("x", a.x), ("velocity", a.vc), ("uncond", a.vu), ("prev", a.prev)):
        r[name] = _input_rows(t, B)
    specs = [(n, t.data_ptr(), t.stride(0) if B > 1 else cols, t.element_size(), n in _OUTPUTS)
             for n, t in r.items() if t is not None]
    _check_aliasing(specs, B, cols)
    return r, B, cols


_OUTPUTS = ("out", "store", "copy_to")


def _check_aliasing(specs, B, cols):
    """Each output must be exactly one input (same address and stride) or disjoint from it."""
    def span(p, s, size):
        return p, p + ((B - 1) * s + cols) * size
    for on, op, os_, oz, is_out in specs:
        if not is_out:
            continue
        olo, ohi = span(op, os_, oz)
        for n, p, s, z, _ in specs:
            if n == on:
                continue
            lo, hi = span(p, s, z)
            if (p == op and s == os_ and z == oz) or ohi <= lo or hi <= olo:
                if p == op and n in _OUTPUTS:
                    raise ValueError(f"flow_step: {on} and {n} must be different buffers")
                continue
            raise ValueError(f"flow_step: {on} partially overlaps {n}; pass the same tensor (in place) "
                             "or a separate one")


def _raw_args(a: _Args):
    r, B, cols = _row_views(a)
    a.keep = r  # the addresses below must outlive this function: keep the views (and copies) alive
    ptr = lambda t: 0 if t is None else t.data_ptr()  # noqa: E731
    stride = lambda t: 0 if t is None else t.stride(0)  # noqa: E731
    guided = a.vu is not None
    g = 1.0 if a.w is None else a.w
    gu = 0.0 if a.wu is None else a.wu
    grows = a.w_rows.data_ptr() if (guided and a.w_rows is not None) else 0
    return (B, cols, ptr(r["out"]), stride(r["out"]), ptr(r["x"]), stride(r["x"]), _DTYPE_NAME[a.vc.dtype],
            ptr(r["velocity"]), stride(r["velocity"]), ptr(r["uncond"]), stride(r["uncond"]), g, gu, grows,
            ptr(r["prev"]), stride(r["prev"]), a.cw, a.pw, ptr(r["store"]), stride(r["store"]),
            ptr(r["copy_to"]), stride(r["copy_to"]), a.dt)


def _run_cpu(a: _Args) -> None:
    if a.x.shape[0] == 0 or a.x.numel() == 0:
        return
    C.flow_step_cpu_ptr(*_raw_args(a))
    _finish(a)


def _run_cuda(a: _Args) -> None:
    if a.x.shape[0] == 0 or a.x.numel() == 0:
        return
    args = _raw_args(a)
    with torch.cuda.device(a.x.device):
        C.flow_step_cuda(*args, torch.cuda.current_stream(a.x.device).cuda_stream)
    _finish(a)


def _run_triton(a: _Args) -> None:
    if a.x.shape[0] == 0 or a.x.numel() == 0:
        return
    r, _, _ = _row_views(a)
    _backend.triton_kernels("flow_step").flow_step(
        r["out"], r["x"], r["velocity"], r["uncond"], a.w, a.wu, a.w_rows, r["prev"], a.cw, a.pw, r["store"], a.dt,
        copy_to=r["copy_to"])
    _finish(a)


_RUN = {"cpu": _run_cpu, "cuda": _run_cuda, "triton": _run_triton, "torch": _run_torch}
