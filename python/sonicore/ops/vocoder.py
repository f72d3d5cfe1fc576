"""The anti-aliased periodic activation of BigVGAN (arXiv 2206.04658), fused, with its torch reference.

BigVGAN applies its Snake nonlinearity at twice the sample rate to keep the harmonics it creates from
aliasing: upsample x2 (zero-stuffing + a Kaiser-windowed sinc low-pass, 12 taps, replicate-padded
edges), Snake, then the same low-pass and keep every second sample. Done as separate torch ops this
is five full passes over a signal twice as long as the input, two of them depthwise convolutions that
PyTorch's CPU backend runs slowly; the fused kernels do it in one pass and skip the zero taps.

Backends: "cpu" (C++ kernel, float32), "triton" (CUDA tensors; CPU tensors only under
TRITON_INTERPRET=1 when asked for), "torch" (the reference, any dtype/device).
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F

from .._backend import device_reasons, select_backend
from .._ext import C
from ._arrays import from_torch, to_torch

__all__ = ["anti_aliased_snake", "kaiser_sinc_filter", "AA_TAPS"]

AA_TAPS = 12  # filter length of BigVGAN's up- and down-sampling low-pass (both ratio 2)


def kaiser_sinc_filter(cutoff: float = 0.25, half_width: float = 0.3, taps: int = AA_TAPS) -> torch.Tensor:
    """Kaiser-windowed sinc low-pass, normalised to unit DC gain: (taps,) float32.

    cutoff and half_width (the transition half-band) are in cycles per sample; BigVGAN uses
    0.5/ratio and 0.6/ratio for ratio 2. The Kaiser beta follows Kaiser's empirical rule for the
    stop-band attenuation A = 2.285 * (taps/2 - 1) * pi * 4*half_width + 7.95 dB. An even length is
    centred between samples (taps at k - taps/2 + 0.5).
    """
    if taps < 2 or not 0 < cutoff <= 0.5:
        raise ValueError(f"need taps >= 2 and 0 < cutoff <= 0.5, got taps={taps}, cutoff={cutoff}")
    half = taps // 2
    atten = 2.285 * (half - 1) * math.pi * 4 * half_width + 7.95
    if atten > 50:
        beta = 0.1102 * (atten - 8.7)
    elif atten >= 21:
        beta = 0.5842 * (atten - 21) ** 0.4 + 0.07886 * (atten - 21)
    else:
        beta = 0.0
    n = torch.arange(taps, dtype=torch.float64)
    t = n - half + 0.5 if taps % 2 == 0 else n - half
    # Kaiser window from its definition: I0(beta * sqrt(1 - (2n/(N-1) - 1)^2)) / I0(beta).
    u = 2 * n / (taps - 1) - 1
    window = torch.special.i0(beta * torch.sqrt((1 - u * u).clamp_min(0))) / torch.special.i0(torch.tensor(beta, dtype=torch.float64))
    h = 2 * cutoff * window * torch.sinc(2 * cutoff * t)
    return (h / h.sum()).float()


def _reference(x, alpha, inv_beta, up_filter, down_filter):
    """Plain torch: pad, transposed depthwise conv, crop, Snake, pad, strided depthwise conv."""
    B, Cc, T = x.shape
    K = up_filter.shape[-1]
    pad = K // 2 - 1
    crop = 2 * pad + (K - 2) // 2
    up = F.conv_transpose1d(F.pad(x, (pad, pad), mode="replicate"),
                            up_filter.to(x.dtype).view(1, 1, K).expand(Cc, 1, K), stride=2, groups=Cc)
    up = 2 * up[..., crop:crop + 2 * T]
    a = alpha.to(x.dtype).view(1, Cc, 1)
    s = up + inv_beta.to(x.dtype).view(1, Cc, 1) * torch.sin(up * a) ** 2
    s = F.pad(s, (K // 2 - 1, K // 2), mode="replicate")
    return F.conv1d(s, down_filter.to(x.dtype).view(1, 1, K).expand(Cc, 1, K), stride=2, groups=Cc)


def anti_aliased_snake(x, alpha, inv_beta, up_filter, down_filter, *, backend: Optional[str] = None):
    """BigVGAN's anti-aliased Snake: upsample x2, y = u + inv_beta * sin(alpha * u)^2, low-pass, downsample x2.

    x: (B, C, T) signal (float32 for the C++ kernel; any float dtype for torch/Triton), numpy or torch.
    alpha: (C,) frequency of each channel (linear scale: exp() of a log-scale parameter already taken).
    inv_beta: (C,) magnitude, 1 / (beta + 1e-9) as BigVGAN computes it (Snake: beta = alpha).
    up_filter, down_filter: (12,) low-pass taps (kaiser_sinc_filter() or a checkpoint's buffers).
    Returns (B, C, T), the kind of x (numpy in, numpy out).
    """
    x, as_np = to_torch(x, "x")
    alpha, _ = to_torch(alpha, "alpha")
    inv_beta, _ = to_torch(inv_beta, "inv_beta")
    up_filter, _ = to_torch(up_filter, "up_filter")
    down_filter, _ = to_torch(down_filter, "down_filter")
    if x.dim() != 3 or x.shape[1] < 1 or x.shape[2] < 1:
        raise ValueError(f"anti_aliased_snake expects x of shape (B, C, T) with C, T >= 1, got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"anti_aliased_snake expects a floating-point signal, got {x.dtype}")
    Cc = x.shape[1]
    for name, t in (("alpha", alpha), ("inv_beta", inv_beta)):
        if t.reshape(-1).shape != (Cc,):
            raise ValueError(f"anti_aliased_snake: {name} must have one entry per channel ({Cc}), got {tuple(t.shape)}")
    for name, t in (("up_filter", up_filter), ("down_filter", down_filter)):
        if t.reshape(-1).shape != (AA_TAPS,):
            raise ValueError(f"anti_aliased_snake: {name} must have {AA_TAPS} taps, got {tuple(t.shape)}")
    alpha, inv_beta = alpha.reshape(-1), inv_beta.reshape(-1)
    up_filter, down_filter = up_filter.reshape(-1), down_filter.reshape(-1)
    params = (alpha, inv_beta, up_filter, down_filter)

    reasons = device_reasons(x.device.type, ("cpu", "triton", "torch"))
    if reasons["cpu"] is None:
        if not hasattr(C, "nn_aa_snake"):
            reasons["cpu"] = "this sonicore build has no fused vocoder kernel"
        elif x.dtype != torch.float32:
            reasons["cpu"] = f"the C++ kernel takes float32, got {x.dtype}"
    if reasons["triton"] is None:
        if x.dtype not in (torch.float32, torch.float16, torch.bfloat16):
            reasons["triton"] = f"the Triton kernel takes float32/16/bfloat16, got {x.dtype}"
    order = ("triton", "torch") if x.device.type == "cuda" else ("cpu", "torch")
    which = select_backend("anti_aliased_snake", x.device.type, backend, reasons, order=order,
                           inputs=(x,) + params)

    if which == "torch":
        return from_torch(_reference(x, *params), as_np)
    x = x.contiguous()
    out = torch.empty_like(x)
    f32 = [t.detach().to(x.device, torch.float32).contiguous() for t in params]
    if which == "triton":
        from .._backend import triton_kernels
        triton_kernels("vocoder").anti_aliased_snake(x, *f32, out)
    else:
        C.nn_aa_snake(x.detach().numpy(), *[t.numpy() for t in f32], out.numpy())
    return from_torch(out, as_np)
