"""Fused pieces of the MMAudio transformer blocks, each with a plain-PyTorch reference.

- adaln_layernorm: LayerNorm (no affine) followed by the adaLN modulation x*(1+scale)+shift.
- qk_norm_rope: splits an *interleaved* fused qkv projection (channel h*3*hd + d*3 + j, j = q/k/v),
  RMS-normalises q and k over the head dim with a learned weight, rotates adjacent channel pairs
  with a RoPE table, and writes q, k, v as (B, H, N, hd) — optionally straight into a slice of a
  larger joint-attention buffer.
- swiglu: silu(a) * b for h = [a | b] on the last axis.

Backends: "cpu" (C++ kernel, float32), "triton" (CUDA tensors, float32/16/bf16; under TRITON_INTERPRET=1
also CPU tensors when asked for), "torch" (reference, any dtype/device).
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F

from .._backend import device_reasons, select_backend
from .._ext import C

__all__ = ["adaln_layernorm", "qk_norm_rope", "swiglu", "merge_heads", "rope_apply", "taps_layout"]


def taps_layout(y: torch.Tensor, taps: int) -> torch.Tensor:
    """(B, N, C) -> (B, N, taps*C) with out[b, n, j*C:(j+1)*C] = y[b, n + j - taps//2] (zeros outside):
    the im2col matrix of a kernel-`taps` "same" convolution, so that the convolution is one GEMM.
    The fused kernels write their results directly in this layout (argument taps)."""
    if taps == 1:
        return y
    B, N, C = y.shape
    yp = F.pad(y, (0, 0, taps // 2, taps // 2))
    return yp.as_strided((B, N, taps * C), (yp.stride(0), C, 1)).contiguous()


def _check_taps(taps: int):
    if not isinstance(taps, int) or taps < 1 or taps % 2 == 0:
        raise ValueError(f"taps must be a positive odd int (a convolution kernel size), got {taps!r}")


def _cpu_reason(x: torch.Tensor, *tensors) -> Optional[str]:
    if x.device.type != "cpu":
        return f"the data is on {x.device.type}, the C++ kernel needs CPU memory"
    if not hasattr(C, "nn_adaln_layernorm"):
        return "this sonicore build has no fused nn kernels"
    for t in (x,) + tensors:
        if t is not None and t.dtype != torch.float32:
            return f"the C++ kernel takes float32, got {t.dtype}"
    return None


def _triton_reason(x: torch.Tensor) -> Optional[str]:
    if x.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        return f"the Triton kernel takes float32/16/bfloat16, got {x.dtype}"
    return None


def _pick(op: str, x: torch.Tensor, backend: Optional[str], *tensors, triton_ok: Optional[str] = None) -> str:
    reasons = device_reasons(x.device.type, ("cpu", "triton", "torch"))
    if reasons["cpu"] is None:
        reasons["cpu"] = _cpu_reason(x, *tensors)
    if reasons["triton"] is None:
        reasons["triton"] = triton_ok or _triton_reason(x)
    order = ("triton", "torch") if x.device.type == "cuda" else ("cpu", "torch")
    return select_backend(op, x.device.type, backend, reasons, order=order, inputs=(x,) + tensors)


def _triton():
    from .._backend import triton_kernels
    return triton_kernels("nn")


# ---------------------------------------------------------------------------------------------
def adaln_layernorm(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor, *, eps: float = 1e-5,
                    taps: int = 1, backend: Optional[str] = None) -> torch.Tensor:
    """LayerNorm over the last axis (no affine), then x*(1+scale)+shift.

    x: (B, N, D). shift, scale: (B, 1, D) (one vector per batch row) or (B, N, D) (per token);
    they may be strided views (e.g. chunks of the adaLN projection). Returns (B, N, taps*D) in x's
    dtype: (B, N, D) for taps=1, else the im2col layout of taps_layout for a following convolution.
    """
    _check_taps(taps)
    if x.dim() != 3 or shift.dim() != 3 or scale.dim() != 3:
        raise ValueError("adaln_layernorm expects x (B, N, D) and shift/scale (B, 1 or N, D), got "
                         f"{tuple(x.shape)}, {tuple(shift.shape)}, {tuple(scale.shape)}")
    B, N, D = x.shape
    for name, t in (("shift", shift), ("scale", scale)):
        if t.shape[0] != B or t.shape[2] != D or t.shape[1] not in (1, N):
            raise ValueError(f"adaln_layernorm: {name} must be ({B}, 1 or {N}, {D}), got {tuple(t.shape)}")
    which = _pick("adaln_layernorm", x, backend, shift, scale)
    if which == "torch":
        return taps_layout(F.layer_norm(x, (D,), eps=eps) * (1 + scale) + shift, taps)
    x = x.contiguous()
    out = x.new_empty(B, N, taps * D)
    if which == "triton":
        return _triton().adaln_layernorm(x, shift, scale, out, eps, taps)
    C.nn_adaln_layernorm(x.numpy(), shift.numpy(), scale.numpy(), out.numpy(), float(eps), taps)
    return out


# ---------------------------------------------------------------------------------------------
def rope_apply(x: torch.Tensor, rot: torch.Tensor) -> torch.Tensor:
    """Rotates adjacent channel pairs of x (..., N, hd) with rot (1, N, hd/2, 2, 2) in float32."""
    xf = x.float().unflatten(-1, (-1, 1, 2))
    out = rot[..., 0] * xf[..., 0] + rot[..., 1] * xf[..., 1]
    return out.flatten(-2).to(x.dtype)


def _rms_norm(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return F.rms_norm(x, (x.shape[-1],), w, eps=None)


def qk_norm_rope(qkv: torch.Tensor, num_heads: int, q_weight: torch.Tensor, k_weight: torch.Tensor,
                 rot: Optional[torch.Tensor] = None, *, out: Optional[Tuple[torch.Tensor, ...]] = None,
                 backend: Optional[str] = None) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Un-interleaves a fused qkv projection, RMS-normalises q and k, applies RoPE.

    qkv: (B, N, 3*D) with D = num_heads*hd; channel h*3*hd + d*3 + j is head h, dim d, j = 0/1/2 for q/k/v.
    q_weight, k_weight: (hd,) RMSNorm weights (eps = machine epsilon of the dtype).
    rot: None (no RoPE) or (1, N, hd/2, 2, 2) float32 table [[cos, -sin], [sin, cos]].
    out: optional (q, k, v) destinations of shape (B, H, N, hd) (may be slices of a joint buffer).
    Returns q, k, v of shape (B, H, N, hd) in qkv's dtype.
    """
    if qkv.dim() != 3 or qkv.shape[-1] % (3 * num_heads):
        raise ValueError(f"qk_norm_rope expects qkv (B, N, 3*heads*hd) with heads={num_heads}, got {tuple(qkv.shape)}")
    B, N, _ = qkv.shape
    hd = qkv.shape[-1] // (3 * num_heads)
    if q_weight.shape != (hd,) or k_weight.shape != (hd,):
        raise ValueError(f"qk_norm_rope: q/k norm weights must be ({hd},), got {tuple(q_weight.shape)}, {tuple(k_weight.shape)}")
    if rot is not None and (rot.shape[-4:] != (N, hd // 2, 2, 2) or hd % 2):
        raise ValueError(f"qk_norm_rope: rot must be (1, {N}, {hd // 2}, 2, 2), got {tuple(rot.shape)}")
    if out is not None:
        for t in out:
            if t.shape != (B, num_heads, N, hd) or t.dtype != qkv.dtype:
                raise ValueError(f"qk_norm_rope: out tensors must be ({B}, {num_heads}, {N}, {hd}) {qkv.dtype}, got {tuple(t.shape)} {t.dtype}")
    pow2 = hd >= 2 and (hd & (hd - 1)) == 0
    which = _pick("qk_norm_rope", qkv, backend, q_weight, k_weight, rot,
                  triton_ok=None if pow2 else f"the Triton kernel needs a power-of-two head dim, got {hd}")
    if which == "torch":
        q, k, v = qkv.view(B, N, num_heads, hd, 3).permute(4, 0, 2, 1, 3).unbind(0)
        q = _rms_norm(q, q_weight)
        k = _rms_norm(k, k_weight)
        if rot is not None:
            q = rope_apply(q, rot)
            k = rope_apply(k, rot)
        if out is None:
            return q, k, v
        for dst, src in zip(out, (q, k, v)):
            dst.copy_(src)
        return out
    qkv = qkv.contiguous()
    if out is None:
        out = tuple(qkv.new_empty(B, num_heads, N, hd) for _ in range(3))
    for t in out:
        if t.stride(-1) != 1:
            raise ValueError("qk_norm_rope: out tensors need a unit stride on the head dim")
    if which == "triton":
        eps = float(torch.finfo(qkv.dtype).eps)
        return _triton().qk_norm_rope(qkv, num_heads, q_weight.contiguous(), k_weight.contiguous(),
                                      None if rot is None else rot.float(), *out, eps)
    rot_np = None if rot is None else rot.reshape(N, hd // 2, 2, 2).contiguous().numpy()
    eps = float(torch.finfo(qkv.dtype).eps)
    C.nn_qk_norm_rope(qkv.numpy(), int(num_heads), q_weight.contiguous().numpy(),
                      k_weight.contiguous().numpy(), rot_np, out[0].numpy(), out[1].numpy(),
                      out[2].numpy(), eps)
    return out


# ---------------------------------------------------------------------------------------------
def swiglu(h: torch.Tensor, *, taps: int = 1, backend: Optional[str] = None) -> torch.Tensor:
    """silu(a) * b where h = [a | b] on the last axis. h: (B, N, 2F) -> (B, N, taps*F) (taps_layout)."""
    _check_taps(taps)
    if h.dim() != 3 or h.shape[-1] % 2:
        raise ValueError(f"swiglu expects h of shape (B, N, 2F) = [a | b], got {tuple(h.shape)}")
    which = _pick("swiglu", h, backend)
    if which == "torch":
        a, b = h.chunk(2, dim=-1)
        return taps_layout(F.silu(a) * b, taps)
    h = h.contiguous()
    out = h.new_empty(h.shape[0], h.shape[1], taps * (h.shape[-1] // 2))
    if which == "triton":
        return _triton().swiglu(h, out, taps)
    C.nn_swiglu(h.numpy(), out.numpy(), taps)
    return out


def merge_heads(o: torch.Tensor, *, taps: int = 1, backend: Optional[str] = None) -> torch.Tensor:
    """Attention output (B, H, N, hd) (any strides, unit stride on hd) -> (B, N, taps*H*hd) (taps_layout)."""
    _check_taps(taps)
    if o.dim() != 4:
        raise ValueError(f"merge_heads expects (B, H, N, hd), got {tuple(o.shape)}")
    B, H, N, hd = o.shape
    which = _pick("merge_heads", o, backend, triton_ok="no Triton kernel: a strided copy, torch does it")
    if which == "torch" or o.stride(-1) != 1:
        return taps_layout(o.transpose(1, 2).reshape(B, N, H * hd), taps)
    out = o.new_empty(B, N, taps * H * hd)
    C.nn_merge_heads(o.numpy(), out.numpy(), taps)
    return out
