"""Scaled dot-product attention: one op for self-, cross- and joint attention.

Backends: ``cpu`` (C++ tiled flash-style kernel, AVX-512 / AVX2 / portable), ``cuda``
(tensor-core flash forward, fp16/bf16, sm_80+), ``triton`` (flash forward) and ``torch``
(the plain reference every kernel is tested against). Semantics shared by all of them:

* shapes (layout ``"bhnd"``): q (B, Hq, Nq, D), k and v (B, Hkv, Nk, D), out (B, Hq, Nq, D);
  layout ``"bnhd"`` swaps the head and sequence axes of every tensor (q (B, Nq, Hq, D), ...)
  and is read through strides, without a copy. Hq must be a multiple of Hkv (grouped-query
  attention): query head h reads key/value head ``h // (Hq // Hkv)``.
* ``q_lens`` / ``kv_lens`` (length B, integers): only the first ``q_lens[b]`` queries and the
  first ``kv_lens[b]`` keys/values of batch entry b are valid. Keys past ``kv_lens[b]`` are
  never read; query rows past ``q_lens[b]`` come out as zeros (lse ``-inf``).
* ``causal=True``: query i may see key j iff ``j <= i + (kv_len - q_len)``, i.e. the mask is
  aligned to the bottom-right corner (the last query sees every key), using the valid lengths
  of each batch entry. With Nq == Nk this is the usual lower triangle.
* a query row that sees no key at all (kv_len 0, or causal with q_len > kv_len for the first
  rows) returns zeros and lse ``-inf``; never NaN.
* NaN in q, or in a valid key/value, propagates as NaN to the outputs that read it; the
  kernels never crash on it.
* accumulation is float32; the output has the input dtype; lse is float32 (B, Hq, Nq) in
  natural-log units, ``lse = log(sum_j exp(scale * q.k_j))`` over the visible keys.
* the kernels are forward-only: when autograd records the call (an input requires grad and
  grad mode is on) the automatic choice is the differentiable ``torch`` backend, and a forced
  kernel backend raises ``BackendUnavailable``; inputs are never silently detached.
"""
from __future__ import annotations

import math
import sys
import types
from typing import Any, Optional, Sequence

import numpy as np
import torch

from .. import _backend
from ._arrays import from_torch, to_torch

_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
_LAYOUTS = ("bhnd", "bnhd")
# Head dims every backend is tested with; the C++ and torch backends take any D up to this.
_MAX_HEAD_DIM = 512
_CUDA_HEAD_DIMS = (64, 128)
# Caps the instruction set of the C++ kernel (-1: best available; 0 portable, 1 AVX2, 2 AVX-512).
# Tests set it to cover every code path on one machine.
_CPU_ISA_CAP = -1


# ----------------------------------------------------------------------------- validation

def _check_layout(layout: str) -> None:
    if layout not in _LAYOUTS:
        raise ValueError(f"layout must be one of {_LAYOUTS}, got {layout!r}")


def _as_bhnd(t: torch.Tensor, layout: str) -> torch.Tensor:
    """A (B, H, N, D) view of t (no copy)."""
    return t if layout == "bhnd" else t.transpose(1, 2)


def _check_lens(lens: Any, name: str, batch: int, limit: int, device) -> Optional[torch.Tensor]:
    """Validates q_lens / kv_lens; returns an int32 tensor of shape (B,) on `device`, or None."""
    if lens is None:
        return None
    if isinstance(lens, torch.Tensor):
        t = lens.detach().to("cpu")
    else:
        try:
            t = torch.as_tensor(np.asarray(lens))
        except Exception as exc:  # pragma: no cover - exotic inputs
            raise TypeError(f"{name} must be a sequence of {batch} integers, got {type(lens).__name__}") from exc
    if t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool:
        raise TypeError(f"{name} must hold integers, got dtype {t.dtype}")
    if t.dim() != 1 or t.shape[0] != batch:
        raise ValueError(f"{name} must have shape ({batch},) (one length per batch entry), got {tuple(t.shape)}")
    if batch and (int(t.min()) < 0 or int(t.max()) > limit):
        raise ValueError(f"{name} must lie in [0, {limit}] (the padded sequence length), "
                         f"got values in [{int(t.min())}, {int(t.max())}]")
    return t.to(torch.int32).to(device)


def _check_scale(scale: Any, d: int) -> float:
    if scale is None:
        return 1.0 / math.sqrt(d)
    if isinstance(scale, bool) or not isinstance(scale, (int, float, np.floating, np.integer)):
        raise TypeError(f"scale must be a real number or None, got {type(scale).__name__}")
    scale = float(scale)
    if not math.isfinite(scale):
        raise ValueError(f"scale must be finite, got {scale}")
    return scale


def _check_qkv(q, k, v, layout):
    """Returns (q, k, v) as (B, H, N, D) torch views plus the shape tuple."""
    _check_layout(layout)
    names = ("q", "k", "v")
    ts = [q, k, v]
    for i, t in enumerate(ts):
        if t.dim() != 4:
            want = "(B, H, N, D)" if layout == "bhnd" else "(B, N, H, D)"
            raise ValueError(f"{names[i]} must be 4-D {want} for layout {layout!r}, got shape {tuple(t.shape)}")
        if t.dtype not in _DTYPES:
            raise TypeError(f"{names[i]} must be float32, float16 or bfloat16, got {t.dtype}")
    if not (q.dtype == k.dtype == v.dtype):
        raise TypeError(f"q, k and v must share one dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    if not (q.device == k.device == v.device):
        raise ValueError(f"q, k and v must be on one device, got {q.device}, {k.device}, {v.device}")
    qb, kb, vb = (_as_bhnd(t, layout) for t in (q, k, v))
    B, Hq, Nq, D = qb.shape
    if kb.shape[0] != B or vb.shape[0] != B:
        raise ValueError(f"q, k and v must share the batch size, got {B}, {kb.shape[0]}, {vb.shape[0]}")
    if kb.shape != vb.shape:
        raise ValueError(f"k and v must have the same shape, got {tuple(k.shape)} and {tuple(v.shape)}")
    Hkv, Nk = kb.shape[1], kb.shape[2]
    if kb.shape[3] != D:
        raise ValueError(f"q and k must share the head dim D, got {D} and {kb.shape[3]}")
    if D < 1 or D > _MAX_HEAD_DIM:
        raise ValueError(f"head dim D must lie in [1, {_MAX_HEAD_DIM}], got {D}")
    if Hkv < 1 or Hq % Hkv != 0:
        raise ValueError(f"the query heads ({Hq}) must be a multiple of the key/value heads ({Hkv})")
    return qb, kb, vb, (B, Hq, Hkv, Nq, Nk, D)


# ----------------------------------------------------------------------------- torch reference

def _visible_mask(B, Nq, Nk, causal, q_lens, kv_lens, device):
    """(B, 1, Nq, Nk) bool: which keys each query row sees (see the module docstring)."""
    i = torch.arange(Nq, device=device).view(1, Nq, 1)
    j = torch.arange(Nk, device=device).view(1, 1, Nk)
    ql = (q_lens.to(device).long() if q_lens is not None else torch.full((B,), Nq, device=device)).view(B, 1, 1)
    kl = (kv_lens.to(device).long() if kv_lens is not None else torch.full((B,), Nk, device=device)).view(B, 1, 1)
    m = (j < kl) & (i < ql)
    if causal:
        m = m & (j <= i + (kl - ql))
    return m.unsqueeze(1)


def _torch_attention(qb, kb, vb, scale, causal, q_lens, kv_lens):
    """Reference: float32 scores, masked softmax, float32 P @ V. Returns (out bhnd, lse)."""
    B, Hq, Nq, D = qb.shape
    Hkv, Nk = kb.shape[1], kb.shape[2]
    G = Hq // Hkv
    acc = torch.float64 if qb.dtype == torch.float64 else torch.float32
    # (B, Hkv, G, Nq, D) so that each key/value head serves its G query heads without a copy.
    q5 = qb.to(acc).reshape(B, Hkv, G, Nq, D)
    k5 = kb.to(acc).unsqueeze(2)
    v5 = vb.to(acc).unsqueeze(2)
    # Padding past kv_lens may hold anything (even NaN): zero it so it is never read.
    mask = _visible_mask(B, Nq, Nk, causal, q_lens, kv_lens, qb.device)  # (B,1,Nq,Nk)
    if kv_lens is not None:
        kvalid = (torch.arange(Nk, device=qb.device).view(1, Nk) < kv_lens.to(qb.device).view(B, 1).long())
        kvalid = kvalid.view(B, 1, 1, Nk, 1)
        k5 = torch.where(kvalid, k5, torch.zeros((), dtype=acc, device=qb.device))
        v5 = torch.where(kvalid, v5, torch.zeros((), dtype=acc, device=qb.device))
    s = torch.matmul(q5, k5.transpose(-1, -2)) * scale  # (B, Hkv, G, Nq, Nk)
    m5 = mask.unsqueeze(2)
    s = s.masked_fill(~m5, float("-inf"))
    lse = torch.logsumexp(s, dim=-1)  # -inf for rows with no visible key
    p = torch.exp(s - lse.unsqueeze(-1).masked_fill(torch.isneginf(lse).unsqueeze(-1), 0.0))
    p = p.masked_fill(~m5, 0.0)
    out = torch.matmul(p, v5)
    if q_lens is not None:
        qvalid = (torch.arange(Nq, device=qb.device).view(1, Nq) < q_lens.to(qb.device).view(B, 1).long())
        qvalid = qvalid.view(B, 1, 1, Nq)
        out = torch.where(qvalid.unsqueeze(-1), out, torch.zeros((), dtype=acc, device=qb.device))
        lse = torch.where(qvalid, lse, torch.full((), float("-inf"), dtype=acc, device=qb.device))
    return out.reshape(B, Hq, Nq, D), lse.reshape(B, Hq, Nq).float()


# ----------------------------------------------------------------------------- backends

def _backend_reasons(qb, shape, kv=()):
    """backend -> None if it can take this call, else the sentence why not."""
    B, Hq, Hkv, Nq, Nk, D = shape
    dev = qb.device.type
    reasons = _backend.device_reasons(dev)
    if reasons.get("cpu") is None and not hasattr(_backend.C, "attention_forward"):
        reasons["cpu"] = "cpu backend: this build of sonicore._C has no attention kernel"
    if reasons.get("cuda") is None:
        if qb.dtype == torch.float32:
            reasons["cuda"] = "cuda backend: float32 is not supported (tensor cores need float16/bfloat16); use triton or torch"
        elif D not in _CUDA_HEAD_DIMS:
            reasons["cuda"] = f"cuda backend: head dim {D} not supported (supported: {_CUDA_HEAD_DIMS})"
        elif not hasattr(_backend.C, "attention_forward_cuda"):
            reasons["cuda"] = "cuda backend: this build of sonicore._C has no CUDA attention kernel"
        elif _backend.C.built_with_cuda and torch.cuda.get_device_capability(qb.device)[0] < 8:
            reasons["cuda"] = "cuda backend: needs a GPU of compute capability 8.0 or newer (tensor-core mma.sync)"
        else:
            reasons["cuda"] = _cuda_layout_reason((qb,) + tuple(kv))
    if reasons.get("triton") is None and D > 256:
        reasons["triton"] = f"triton backend: head dim {D} not supported (at most 256)"
    return reasons


def _np_view(t: torch.Tensor) -> np.ndarray:
    """Zero-copy numpy view for the C++ kernels; bfloat16 travels as its int16 bit pattern."""
    t = t.detach()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy()
    return t.numpy()


def _dtype_tag(dtype: torch.dtype) -> str:
    return {torch.float32: "float32", torch.float16: "float16", torch.bfloat16: "bfloat16"}[dtype]


def _last_dim_dense(t: torch.Tensor) -> torch.Tensor:
    """The kernels read rows of D contiguous values; anything else is copied once here."""
    return t if t.stride(-1) == 1 or t.shape[-1] == 1 else t.contiguous()


def _lens_np(lens: Optional[torch.Tensor]):
    return None if lens is None else lens.to("cpu", torch.int32).contiguous().numpy()


def _run_cpu(qb, kb, vb, out, lse, scale, causal, q_lens, kv_lens):
    qb, kb, vb = (_last_dim_dense(t) for t in (qb, kb, vb))
    _backend.C.attention_forward(_np_view(qb), _np_view(kb), _np_view(vb), _np_view(out),
                                 None if lse is None else lse.numpy(), _dtype_tag(qb.dtype), scale, causal,
                                 _lens_np(q_lens), _lens_np(kv_lens), _CPU_ISA_CAP)


def _cuda_layout_reason(ts) -> Optional[str]:
    """The CUDA kernel reads 16-byte vectors: why these (B, H, N, D) views cannot go there, or None."""
    for t in ts:
        if t.stride(-1) != 1:
            return "cuda backend: the head dim must be contiguous (stride 1)"
        if t.data_ptr() % 16 or any(s % 8 for s in t.stride()[:3]):
            return "cuda backend: tensors must be 16-byte aligned with strides that are multiples of 8"
    return None


def _run_cuda(qb, kb, vb, out, lse, scale, causal, q_lens, kv_lens):
    B, Hq, Nq, D = qb.shape
    Hkv, Nk = kb.shape[1], kb.shape[2]
    ql = q_lens.contiguous() if q_lens is not None else None
    kl = kv_lens.contiguous() if kv_lens is not None else None
    with torch.cuda.device(qb.device):
        _backend.C.attention_forward_cuda(
            qb.data_ptr(), kb.data_ptr(), vb.data_ptr(), out.data_ptr(), lse.data_ptr(),
            [B, Hq, Hkv, Nq, Nk, D], list(qb.stride()[:3]), list(kb.stride()[:3]), list(vb.stride()[:3]),
            list(out.stride()[:3]), _dtype_tag(qb.dtype), scale, causal,
            ql.data_ptr() if ql is not None else 0, kl.data_ptr() if kl is not None else 0,
            torch.cuda.current_stream(qb.device).cuda_stream)


def attention(q, k, v, *, causal: bool = False, scale: Optional[float] = None,
              q_lens=None, kv_lens=None, return_lse: bool = False, layout: str = "bhnd",
              backend: Optional[str] = None):
    """Scaled dot-product attention ``softmax(scale * q k^T + mask) v``.

    Args:
      q: (B, Hq, Nq, D) queries (layout "bhnd") or (B, Nq, Hq, D) (layout "bnhd");
        float32, float16 or bfloat16; numpy array or torch tensor.
      k, v: (B, Hkv, Nk, D) keys and values (or (B, Nk, Hkv, D)); same dtype and device as q;
        Hq must be a multiple of Hkv (grouped-query attention).
      causal: mask key j for query i unless ``j <= i + kv_len - q_len`` (bottom-right aligned).
      scale: multiplies the scores; default ``1 / sqrt(D)``.
      q_lens, kv_lens: optional (B,) integers, the valid query / key lengths of each batch entry
        (padding is never read; padded query rows come out as zeros).
      return_lse: also return the float32 log-sum-exp of the scaled scores, shape (B, Hq, Nq)
        (``-inf`` for rows that see no key).
      layout: "bhnd" or "bnhd" (the output uses the same layout).
      backend: None (automatic), "cpu", "cuda", "triton" or "torch".

    Returns:
      out with q's shape, dtype and kind (numpy in, numpy out), or (out, lse) when return_lse.
      Rows with no visible key are zeros (lse -inf); NaN inputs propagate, never crash.
    """
    if _compiling() and _OPS is not None and isinstance(q, torch.Tensor):
        return _OPS.attention(q, k, v, causal, scale, q_lens, kv_lens, return_lse, layout, backend)
    qt, q_np = to_torch(q, "q")
    kt, _ = to_torch(k, "k")
    vt, _ = to_torch(v, "v")
    qb, kb, vb, shape = _check_qkv(qt, kt, vt, layout)
    B, Hq, Hkv, Nq, Nk, D = shape
    scale = _check_scale(scale, D)
    causal = bool(causal)
    ql = _check_lens(q_lens, "q_lens", B, Nq, qt.device)
    kl = _check_lens(kv_lens, "kv_lens", B, Nk, qt.device)
    if (backend is None and qt.device.type == "cpu" and hasattr(_backend.C, "attention_forward")
            and not _backend.records_grad(qt, kt, vt)):
        name = "cpu"  # the common case, decided without building every backend's reason
    else:
        reasons = _backend_reasons(qb, shape, (kb, vb))
        # On CUDA the Triton kernel goes first: on an H200 it measured 1.6-2.1x the TFLOP/s of
        # our mma.sync CUDA kernel at every shape tried (bench/RESULTS.md); CUDA is the fallback
        # when Triton is not installed.
        order = ("triton", "cuda", "torch") if qt.device.type == "cuda" else None
        name = _backend.select_backend("attention", qt.device.type, backend, reasons, order=order,
                                       inputs=(qt, kt, vt))

    out_full = torch.empty_like(qt, memory_format=torch.contiguous_format)  # in the caller's layout
    ob = _as_bhnd(out_full, layout)
    # The C++ kernel skips the lse when it is not wanted; the other backends always write it.
    need_lse = return_lse or name != "cpu"
    lse = torch.empty((B, Hq, Nq), dtype=torch.float32, device=qt.device) if need_lse else None
    if B * Hq * Nq == 0:
        pass
    elif Nk == 0:
        ob.zero_()
        if lse is not None:
            lse.fill_(float("-inf"))
    elif name == "torch":
        o, l = _torch_attention(qb, kb, vb, scale, causal, ql, kl)
        ob.copy_(o)
        lse.copy_(l)
    elif name == "cpu":
        _run_cpu(qb, kb, vb, ob, lse, scale, causal, ql, kl)
    elif name == "triton":
        _backend.triton_kernels("attention").forward(qb, kb, vb, ob, lse, scale, causal, ql, kl)
    elif name == "cuda":
        _run_cuda(qb, kb, vb, ob, lse, scale, causal, ql, kl)
    result = from_torch(out_full, q_np)
    if return_lse:
        return result, from_torch(lse, q_np)
    return result


# ----------------------------------------------------------------------------- attention_probs

def _check_heads(heads, Hq) -> list:
    if heads is None:
        return list(range(Hq))
    if isinstance(heads, torch.Tensor):
        heads = heads.tolist()
    elif isinstance(heads, np.ndarray):
        heads = heads.tolist()
    try:
        hs = [h for h in heads]
    except TypeError as exc:
        raise TypeError(f"heads must be a sequence of query-head indices, got {type(heads).__name__}") from exc
    out = []
    for h in hs:
        if isinstance(h, bool) or not isinstance(h, (int, np.integer)):
            raise TypeError(f"heads must hold integers, got {h!r}")
        h = int(h)
        if not 0 <= h < Hq:
            raise ValueError(f"head index {h} is out of range for {Hq} query heads (expected 0 <= h < {Hq})")
        out.append(h)
    return out


def _torch_probs(qb, kb, heads, scale, kv_lens):
    B, Hq, Nq, D = qb.shape
    Hkv, Nk = kb.shape[1], kb.shape[2]
    G = Hq // Hkv
    idx = torch.tensor(heads, dtype=torch.long, device=qb.device)
    qs = qb.index_select(1, idx).float()                 # (B, h, Nq, D)
    ks = kb.index_select(1, idx // G).float()            # (B, h, Nk, D)
    if kv_lens is not None:
        kvalid = (torch.arange(Nk, device=qb.device).view(1, Nk) < kv_lens.to(qb.device).view(B, 1).long())
        ks = torch.where(kvalid.view(B, 1, Nk, 1), ks, torch.zeros((), device=qb.device))
    s = torch.matmul(qs, ks.transpose(-1, -2)) * scale
    if kv_lens is not None:
        s = s.masked_fill(~kvalid.view(B, 1, 1, Nk), float("-inf"))
    m = s.amax(dim=-1, keepdim=True)
    m = torch.where(torch.isneginf(m), torch.zeros_like(m), m)
    p = torch.exp(s - m)
    return p / p.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(torch.float32).tiny)


def attention_probs(q, k, *, heads: Optional[Sequence[int]] = None, scale: Optional[float] = None,
                    kv_lens=None, layout: str = "bhnd", backend: Optional[str] = None):
    """Softmax attention weights for a chosen subset of query heads (e.g. Whisper's alignment heads).

    Only the selected heads are computed; the (B, Hq, Nq, Nk) tensor of all heads is never built.

    Args:
      q: (B, Hq, Nq, D) queries ("bhnd") or (B, Nq, Hq, D) ("bnhd"); float32/float16/bfloat16.
      k: (B, Hkv, Nk, D) keys (or (B, Nk, Hkv, D)); Hq a multiple of Hkv.
      heads: query-head indices to return, in that order (repeats allowed); None means all.
      scale: score multiplier, default ``1 / sqrt(D)``.
      kv_lens: optional (B,) valid key lengths; keys past them get weight 0 (a batch entry with
        kv_len 0 gives all-zero rows).
      layout: "bhnd" or "bnhd" for the inputs; the output is always (B, len(heads), Nq, Nk).
      backend: None (automatic), "cpu" or "torch" ("torch" runs on any device).

    Returns:
      float32 weights (B, len(heads), Nq, Nk), rows summing to 1 over the valid keys; numpy if
      q was numpy. NaN in q or a valid key propagates to the rows that read it.
    """
    if _compiling() and _OPS is not None and isinstance(q, torch.Tensor):
        return _OPS.attention_probs(q, k, heads, scale, kv_lens, layout, backend)
    qt, q_np = to_torch(q, "q")
    kt, _ = to_torch(k, "k")
    qb, kb, _, shape = _check_qkv(qt, kt, kt, layout)
    B, Hq, Hkv, Nq, Nk, D = shape
    hs = _check_heads(heads, Hq)
    scale = _check_scale(scale, D)
    kl = _check_lens(kv_lens, "kv_lens", B, Nk, qt.device)
    reasons = {"cpu": _backend.device_reasons(qt.device.type, ("cpu",))["cpu"], "torch": None}
    if reasons["cpu"] is None and not hasattr(_backend.C, "attention_probs"):
        reasons["cpu"] = "cpu backend: this build of sonicore._C has no attention kernel"
    name = _backend.select_backend("attention_probs", qt.device.type, backend, reasons,
                                   order=("cpu", "torch"), inputs=(qt, kt))
    out = torch.zeros((B, len(hs), Nq, Nk), dtype=torch.float32, device=qt.device)
    if out.numel() == 0:
        pass
    elif name == "torch":
        out.copy_(_torch_probs(qb, kb, hs, scale, kl))
    else:
        qb, kb = _last_dim_dense(qb), _last_dim_dense(kb)
        _backend.C.attention_probs(_np_view(qb), _np_view(kb), out.numpy(), hs, _dtype_tag(qb.dtype),
                                   scale, _lens_np(kl), _CPU_ISA_CAP)
    return from_torch(out, q_np)


# ----------------------------------------------------------------------------- torch.compile

def _compiling() -> bool:
    fn = getattr(getattr(torch, "compiler", None), "is_compiling", None)
    return bool(fn and fn())


def _lens_arg(lens, device) -> Optional[torch.Tensor]:
    """q_lens / kv_lens as the custom op's Optional[Tensor] (validated inside the op)."""
    if lens is None or isinstance(lens, torch.Tensor):
        return lens
    return torch.as_tensor(np.asarray(lens), device=device)


class _CompiledOps:
    """attention / attention_probs as torch.library custom ops, which torch.compile (Dynamo)
    keeps in one graph: the kernels are C++ / CUDA calls it cannot trace. Eager calls never
    come here (they skip the op dispatcher); under compilation, the eager functions forward to
    these. The kernels have no backward, so the op's autograd formula (register_autograd below)
    recomputes the torch reference and differentiates it."""

    def __init__(self):
        lib = torch.library
        # Explicit schemas: this module's annotations are strings (from __future__ import annotations).

        @lib.custom_op("sonicore::attention", mutates_args=(), schema=(
            "(Tensor q, Tensor k, Tensor v, bool causal, float? scale, Tensor? q_lens, Tensor? kv_lens, "
            "bool need_lse, str layout, str? backend) -> (Tensor, Tensor)"))
        def attention_op(q, k, v, causal, scale, q_lens, kv_lens, need_lse, layout, backend):
            out, lse = attention(q, k, v, causal=causal, scale=scale, q_lens=q_lens, kv_lens=kv_lens,
                                 return_lse=True, layout=layout, backend=backend)
            return out, (lse if need_lse else lse.new_empty(0))

        @attention_op.register_fake
        def _(q, k, v, causal, scale, q_lens, kv_lens, need_lse, layout, backend):
            B, Hq, Nq = _as_bhnd(q, layout).shape[:3]
            lse = q.new_empty((B, Hq, Nq) if need_lse else (0,), dtype=torch.float32)
            return torch.empty_like(q, memory_format=torch.contiguous_format), lse

        def setup(ctx, inputs, output):
            q, k, v, causal, scale, q_lens, kv_lens, _, layout, _ = inputs
            ctx.save_for_backward(q, k, v, q_lens, kv_lens)
            ctx.args = (causal, scale, layout)

        def backward(ctx, gout, glse):
            # The torch reference recomputed and differentiated (straight, not through attention():
            # under compilation that would come back to this op).
            q, k, v, q_lens, kv_lens = ctx.saved_tensors
            causal, scale, layout = ctx.args
            with torch.enable_grad():
                leaves = [t.detach().requires_grad_() for t in (q, k, v)]
                qb, kb, vb = (_as_bhnd(t, layout) for t in leaves)
                out, lse = _torch_attention(qb, kb, vb, _check_scale(scale, qb.shape[-1]), causal,
                                            q_lens, kv_lens)
                out = out.to(q.dtype)
                gout = _as_bhnd(gout, layout)
                pairs = [(out, gout)] + ([(lse, glse)] if glse is not None and glse.numel() else [])
                grads = torch.autograd.grad([o for o, _ in pairs], leaves, [g for _, g in pairs],
                                            allow_unused=True)
            return (*grads, None, None, None, None, None, None, None)

        attention_op.register_autograd(backward, setup_context=setup)

        @lib.custom_op("sonicore::attention_probs", mutates_args=(), schema=(
            "(Tensor q, Tensor k, int[]? heads, float? scale, Tensor? kv_lens, str layout, str? backend) -> Tensor"))
        def probs_op(q, k, heads, scale, kv_lens, layout, backend):
            return attention_probs(q, k, heads=heads, scale=scale, kv_lens=kv_lens, layout=layout,
                                   backend=backend)

        @probs_op.register_fake
        def _(q, k, heads, scale, kv_lens, layout, backend):
            B, Hq, Nq = _as_bhnd(q, layout).shape[:3]
            Nk = _as_bhnd(k, layout).shape[2]
            return q.new_empty((B, Hq if heads is None else len(heads), Nq, Nk), dtype=torch.float32)

        self._attention, self._probs = attention_op, probs_op

    def attention(self, q, k, v, causal, scale, q_lens, kv_lens, return_lse, layout, backend):
        out, lse = self._attention(q, k, v, bool(causal), None if scale is None else float(scale),
                                   _lens_arg(q_lens, q.device), _lens_arg(kv_lens, q.device),
                                   bool(return_lse), layout, backend)
        return (out, lse) if return_lse else out

    def attention_probs(self, q, k, heads, scale, kv_lens, layout, backend):
        return self._probs(q, k, None if heads is None else [int(h) for h in heads],
                           None if scale is None else float(scale), _lens_arg(kv_lens, q.device), layout, backend)


_OPS = _CompiledOps() if hasattr(getattr(torch, "library", None), "custom_op") else None


class _CallableModule(types.ModuleType):
    """Importing the submodule ``sonicore.ops.attention`` rebinds the package attribute of the
    same name from the function to this module; calling the module forwards to attention() so
    ``sonicore.ops.attention(q, k, v)`` works whichever of the two the name holds."""

    def __call__(self, *args, **kwargs):
        return attention(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
