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
    """(B, N, C) -> (B, N, k*C): the k zero-padded neighbours of every frame ("same" padding)."""
    if k == 1:
        return x
    B, N, C = x.shape
    xp = F.pad(x, (0, 0, k // 2, k // 2))
    return xp.as_strided((B, N, k * C), (xp.stride(0), C, 1))


class ChannelLastConv1d(nn.Module):
    """Conv1d over time on (B, N, C) activations, zero "same" padding, as one GEMM."""

    def __init__(self, in_dim: int, out_dim: int, kernel_size: int, bias: bool = True):
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError("only odd kernel sizes keep the length")
        self.kernel_size = kernel_size
        self.weight = nn.Parameter(torch.empty(out_dim, kernel_size, in_dim).permute(0, 2, 1))
        self.bias = nn.Parameter(torch.zeros(out_dim)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not _is_packed(self.weight):
            _repack_(self.weight)
        return F.linear(im2col(x, self.kernel_size), _packed(self.weight), self.bias)


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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kernel_size is None:
            w1, w3 = self.w1.weight, self.w3.weight
            if w3.data_ptr() != w1.data_ptr() + w1.numel() * w1.element_size() or not w1.is_contiguous() \
                    or not w3.is_contiguous() or w1.dtype != w3.dtype:
                base = torch.cat([w1.data, w3.data], 0)
                w1.data, w3.data = base[:self.hidden], base[self.hidden:]
            w13 = w1.data.view(-1).as_strided((2 * self.hidden, w1.shape[1]), (w1.shape[1], 1))
            h = F.linear(x, w13)
            return F.linear(nnops.swiglu(h), self.w2.weight)
        k = self.kernel_size
        if not _is_packed(self.w1.weight, self.w3.weight):
            _repack_(self.w1.weight, self.w3.weight)
        if not _is_packed(self.w2.weight):
            _repack_(self.w2.weight)
        w = self.w1.weight
        o, i, _ = w.shape
        w13 = w.data.permute(0, 2, 1).as_strided((2 * o, k * i), (k * i, 1))
        h = F.linear(im2col(x, k), w13)
        return F.linear(im2col(nnops.swiglu(h), k), _packed(self.w2.weight))
