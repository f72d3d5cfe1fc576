"""Channel-last building blocks: 1-D convolutions as one GEMM, gated (SwiGLU) feed-forwards.

All activations are (B, N, C). Parameters keep the original names and torch shapes ((out, in, k)
for convolutions, (out, in) for linears) so state dicts load unchanged; the convolution weights are
*stored* in the GEMM-friendly order (out, k, in) (the parameter is a permuted view of it), and the two
input weights of a gated feed-forward share one buffer, so a forward pass is one GEMM per projection
with no transposes and no weight copies.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...ops import nn as nnops


def _packed(w: torch.Tensor) -> torch.Tensor:
    """(out, in, k) weight -> (out, k*in) GEMM matrix, a view when w is stored as (out, k, in)."""
    o, i, k = w.shape
    p = w.permute(0, 2, 1)
    if not p.is_contiguous():
        raise RuntimeError("weight is not packed")
    return p.reshape(o, k * i)


def _repack_(*params: nn.Parameter) -> None:
    """Stores the (out, in, k) parameters as (out, k, in), back to back in one buffer."""
    base = torch.cat([p.data.permute(0, 2, 1) for p in params], dim=0).contiguous()
    start = 0
    for p in params:
        o = p.shape[0]
        p.data = base[start:start + o].permute(0, 2, 1)
        start += o


def _is_packed(*params: nn.Parameter) -> bool:
    first = params[0]
    step = 0
    for p in params:
        o, i, k = p.shape
        if p.stride() != (k * i, 1, i) or p.dtype != first.dtype or p.device != first.device:
            return False
        if p.data_ptr() != first.data_ptr() + step * p.element_size():
            return False
        step += o * k * i
    return True


def im2col(x: torch.Tensor, k: int) -> torch.Tensor:
    """(B, N, C) -> (B*N, k*C) contiguous im2col matrix of a kernel-k "same" convolution."""
    B, N, C = x.shape
    return nnops.taps_layout(x, k).reshape(B * N, k * C)


def _gemm(x: torch.Tensor, w: torch.Tensor, bias) -> torch.Tensor:
    """(B, N, K) @ w.T (+ bias) as ONE 2-D GEMM (a strided 3-D input would become a batched GEMM
    that copies the weight per batch row)."""
    B, N, K = x.shape
    return F.linear(x.reshape(B * N, K), w, bias).view(B, N, w.shape[0])


class ChannelLastConv1d(nn.Module):
    """Conv1d over time on (B, N, C) activations, zero "same" padding, as one GEMM."""

    def __init__(self, in_dim: int, out_dim: int, kernel_size: int, bias: bool = True):
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError("only odd kernel sizes keep the length")
        self.kernel_size = kernel_size
        self.weight = nn.Parameter(torch.empty(out_dim, kernel_size, in_dim).permute(0, 2, 1))
        self.bias = nn.Parameter(torch.zeros(out_dim)) if bias else None

    def forward(self, x: torch.Tensor, tapped: bool = False) -> torch.Tensor:
        """x: (B, N, in) or, with tapped=True, already in the (B, N, k*in) im2col layout."""
        if not _is_packed(self.weight):
            _repack_(self.weight)
        if not tapped:
            x = nnops.taps_layout(x, self.kernel_size)
        return _gemm(x, _packed(self.weight), self.bias)


class _W(nn.Module):
    """Holds one weight under the name `<parent>.<w1|w2|w3>.weight`."""

    def __init__(self, shape):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(*shape))


class GatedFeedForward(nn.Module):
    """w2(silu(w1 x) * w3 x), no biases; kernel_size None -> linear layers, else convolutions."""

    def __init__(self, dim: int, hidden: int, kernel_size=None):
        super().__init__()
        self.kernel_size = kernel_size
        self.hidden = hidden
        if kernel_size is None:
            self.w1, self.w2, self.w3 = _W((hidden, dim)), _W((dim, hidden)), _W((hidden, dim))
        else:
            k = kernel_size
            self.w1 = ChannelLastConv1d(dim, hidden, k, bias=False)
            self.w2 = ChannelLastConv1d(hidden, dim, k, bias=False)
            self.w3 = ChannelLastConv1d(dim, hidden, k, bias=False)

    def forward(self, x: torch.Tensor, tapped: bool = False) -> torch.Tensor:
        """x: (B, N, dim) or, with tapped=True, already in the (B, N, k*dim) im2col layout."""
        if self.kernel_size is None:
            w1, w3 = self.w1.weight, self.w3.weight
            if w3.data_ptr() != w1.data_ptr() + w1.numel() * w1.element_size() or not w1.is_contiguous() \
                    or not w3.is_contiguous() or w1.dtype != w3.dtype:
                base = torch.cat([w1.data, w3.data], 0)
                w1.data, w3.data = base[:self.hidden], base[self.hidden:]
            w13 = w1.data.view(-1).as_strided((2 * self.hidden, w1.shape[1]), (w1.shape[1], 1))
            squeeze = x.dim() == 2
            x3 = x[None] if squeeze else x
            y = _gemm(nnops.swiglu(_gemm(x3, w13, None)), self.w2.weight, None)
            return y[0] if squeeze else y
        k = self.kernel_size
        if not _is_packed(self.w1.weight, self.w3.weight):
            _repack_(self.w1.weight, self.w3.weight)
        if not _is_packed(self.w2.weight):
            _repack_(self.w2.weight)
        w = self.w1.weight
        o, i, _ = w.shape
        w13 = w.data.permute(0, 2, 1).as_strided((2 * o, k * i), (k * i, 1))
        if not tapped:
            x = nnops.taps_layout(x, k)
        h = _gemm(x, w13, None)
        return _gemm(nnops.swiglu(h, taps=k), _packed(self.w2.weight), None)
