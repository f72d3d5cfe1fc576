"""Winograd minimal filtering F(m, r) for "same" 1-D convolutions of channel-last activations.

A kernel-r convolution over time of (B, N, Cin) activations, y[b, n] = sum_j W_j^T x[b, n + j - r//2],
costs r GEMM multiplies per output frame as one im2col GEMM. Winograd's algorithm computes m outputs
at once from alpha = m + r - 1 inputs with alpha elementwise products, which for channel-mixing
convolutions become alpha independent GEMMs over tiles:

    U_p = sum_q BT[p, q] x[t*m - r//2 + q]      input transform, (alpha, B*T, Cin), T = ceil(N / m)
    V_p = sum_j G[p, j] W_j                     weight transform, (alpha, Cin, Cout), once per weight
    M_p = U_p @ V_p                             alpha GEMMs (one batched matmul)
    y[t*m + i] = sum_p AT[i, p] M_p             output transform

so a kernel-3 convolution needs alpha / m GEMM multiplies per output: 1.5 with F(4, 3) instead of 3
(the GEMMs take about half the time of the im2col GEMM on the CPU; bench/results/mmaudio.md).

The matrices are the Toom-Cook construction: the convolution of the filter with a tile is a
polynomial product evaluated at alpha - 1 finite points plus infinity and interpolated back; the
correlation a network layer computes is its transpose. They are derived here in float64 for any
(m, r) and point set. The points chosen for F(4, 3), (0, 1, -1, 2, -1/2), gave the smallest float32
error of the sets we tried: max |error| ~1.3e-6 relative to the output scale for unit-variance
inputs, against ~3.5e-7 for the im2col GEMM (the MMAudio goldens allow 1e-4; tests/test_winograd.py
bounds it against float64). Winograd is used for float32 only: half precision would lose too much in
the transforms.

The transforms have fused C++ kernels (frames past per-row valid lengths read as zero, for padded
batches; output epilogues: + bias, gated residual res + gate * y, SwiGLU) and torch references
beside them (backend="torch").
"""
from __future__ import annotations

from fractions import Fraction
from functools import lru_cache
from typing import Optional, Sequence

import numpy as np
import torch

from .._backend import device_reasons, select_backend
from .._ext import C

__all__ = ["WinogradPlan", "winograd_plan", "winograd_weight", "winograd_input", "winograd_output",
           "winograd_conv1d"]

# Interpolation points in the order they are taken (the first alpha - 1; infinity is always added).
_POINTS = (Fraction(0), Fraction(1), Fraction(-1), Fraction(2), Fraction(-1, 2), Fraction(-2), Fraction(1, 2),
           Fraction(3), Fraction(-1, 3), Fraction(-3), Fraction(1, 3), Fraction(4), Fraction(-1, 4),
           Fraction(-4), Fraction(1, 4))


class WinogradPlan:
    """Transform matrices of F(m, r): bt (alpha, alpha), g (alpha, r), at (m, alpha), float64 numpy
    (exact rationals rounded once), with float32 torch copies per device for the kernels."""

    def __init__(self, m: int, r: int, points: Optional[Sequence] = None):
        if not (isinstance(m, int) and isinstance(r, int) and m >= 1 and r >= 1 and r % 2 == 1):
            raise ValueError(f"Winograd F(m, r) needs integers m >= 1 and an odd r, got m={m!r}, r={r!r}")
        alpha = m + r - 1
        if alpha > 16:
            raise ValueError(f"Winograd F({m}, {r}) has alpha = {alpha} > 16 transformed points (too inaccurate)")
        pts = [Fraction(p) for p in (points if points is not None else _POINTS[:alpha - 1])]
        if len(pts) != alpha - 1 or len(set(pts)) != len(pts):
            raise ValueError(f"F({m}, {r}) needs {alpha - 1} distinct finite points, got {points!r}")
        self.m, self.r, self.alpha, self.points = m, r, alpha, tuple(pts)

        def evaluation(n: int):  # (alpha, n): polynomial of n coefficients at each point, then at infinity
            rows = [[p ** k for k in range(n)] for p in pts]
            rows.append([Fraction(0)] * (n - 1) + [Fraction(1)])
            return rows

        interp = _inverse(evaluation(alpha))                       # coefficients from values (exact)
        self.bt = np.array([[float(interp[j][i]) for j in range(alpha)] for i in range(alpha)])  # C^T
        self.g = np.array(evaluation(r), dtype=float)
        self.at = np.array(evaluation(m), dtype=float).T.copy()
        self._dev = {}

    def tensors(self, device) -> tuple:
        """(bt, at) as contiguous float32 tensors on `device` (cached)."""
        key = str(device)
        if key not in self._dev:
            self._dev[key] = tuple(torch.tensor(a, dtype=torch.float32, device=device).contiguous()
                                   for a in (self.bt, self.at))
        return self._dev[key]

    def tiles(self, n: int) -> int:
        return -(-n // self.m)

    def __repr__(self) -> str:
        return f"WinogradPlan(m={self.m}, r={self.r}, points={[str(p) for p in self.points]} + inf)"


def _inverse(a):
    """Exact inverse of a square matrix of Fractions (Gauss-Jordan)."""
    n = len(a)
    aug = [list(row) + [Fraction(int(i == j)) for j in range(n)] for i, row in enumerate(a)]
    for col in range(n):
        piv = next(r for r in range(col, n) if aug[r][col] != 0)
        aug[col], aug[piv] = aug[piv], aug[col]
        d = aug[col][col]
        aug[col] = [v / d for v in aug[col]]
        for r in range(n):
            if r != col and aug[r][col] != 0:
                f = aug[r][col]
                aug[r] = [v - f * w for v, w in zip(aug[r], aug[col])]
    return [row[n:] for row in aug]


@lru_cache(maxsize=None)
def winograd_plan(r: int = 3, m: int = 4) -> WinogradPlan:
    """The default plan for kernel size r with m outputs per tile (F(4, 3) for MMAudio's convolutions)."""
    return WinogradPlan(m, r)


def winograd_weight(w: torch.Tensor, plan: WinogradPlan) -> torch.Tensor:
    """Kernel taps (r, Cin, Cout) -> transformed weights (alpha, Cin, Cout), computed in float64 and
    returned contiguous in w's dtype. (A torch conv1d weight (Cout, Cin, r) is w.permute(2, 1, 0).)"""
    if w.dim() != 3 or w.shape[0] != plan.r:
        raise ValueError(f"weight must be (r={plan.r}, Cin, Cout) taps, got {tuple(w.shape)}")
    g = torch.tensor(plan.g, dtype=torch.float64, device=w.device)
    return torch.einsum("pj,jio->pio", g, w.to(torch.float64)).to(w.dtype).contiguous()


def _reasons(x: torch.Tensor, *tensors) -> dict:
    reasons = device_reasons(x.device.type, ("cpu", "torch"))
    if reasons["cpu"] is None:
        if not hasattr(C, "nn_winograd_input"):
            reasons["cpu"] = "this sonicore build has no Winograd kernels"
        elif any(t is not None and t.dtype != torch.float32 for t in (x,) + tensors):
            reasons["cpu"] = "the C++ Winograd kernels take float32 only"
    return reasons


def _lens(lens, B: int) -> Optional[torch.Tensor]:
    if lens is None:
        return None
    lens = torch.as_tensor(lens, dtype=torch.int64).reshape(-1).cpu().contiguous()
    if lens.numel() != B:
        raise ValueError(f"lens must give one valid length per batch row ({B}), got {lens.numel()}")
    return lens


def winograd_input(x: torch.Tensor, plan: WinogradPlan, *, lens=None, backend: Optional[str] = None) -> torch.Tensor:
    """(B, N, C) -> (alpha, B*T, C) transformed tiles; frames n >= lens[b] read as zero (padded batches).
    x may be a strided view with a unit channel stride."""
    if x.dim() != 3:
        raise ValueError(f"x must be (B, N, C), got shape {tuple(x.shape)}")
    B, N, Cin = x.shape
    lens = _lens(lens, B)
    T = plan.tiles(N)
    be = select_backend("winograd_input", x.device.type, backend, _reasons(x), order=("cpu", "torch"),
                        inputs=(x,))
    if be == "torch":
        half = plan.r // 2
        if lens is not None:
            x = x * (torch.arange(N, device=x.device)[None, :] < lens.to(x.device)[:, None])[..., None].to(x.dtype)
        xp = torch.nn.functional.pad(x, (0, 0, half, T * plan.m + plan.r - 1 - half - N))
        d = xp.unfold(1, plan.alpha, plan.m)                                  # (B, T, C, alpha)
        bt = torch.tensor(plan.bt, dtype=x.dtype, device=x.device)
        return torch.einsum("pq,btcq->pbtc", bt, d).reshape(plan.alpha, B * T, Cin)
    if x.stride(-1) != 1:
        x = x.contiguous()
    out = x.new_empty(plan.alpha, B * T, Cin)
    bt, _ = plan.tensors("cpu")
    C.nn_winograd_input(x.detach().numpy(), None if lens is None else lens.numpy(), plan.m, plan.r,
                        bt.numpy(), out.numpy())
    return out


def winograd_output(M: torch.Tensor, n: int, plan: WinogradPlan, *, bias: Optional[torch.Tensor] = None,
                    residual: Optional[torch.Tensor] = None, gate: Optional[torch.Tensor] = None,
                    swiglu: bool = False, out: Optional[torch.Tensor] = None,
                    backend: Optional[str] = None) -> torch.Tensor:
    """(alpha, B*T, C) GEMM results -> (B, n, C) frames y (+ bias), then one epilogue:
    residual and gate given: residual + gate * y (gate (B, 1 or n, C), any strides with unit channel
    stride); swiglu: silu(y[..., :C/2]) * y[..., C/2:] (B, n, C/2); else y. out: optional destination
    (may be `residual` itself)."""
    if M.dim() != 3 or M.shape[0] != plan.alpha:
        raise ValueError(f"M must be (alpha={plan.alpha}, B*T, C), got {tuple(M.shape)}")
    T = plan.tiles(n)
    if T == 0 or M.shape[1] % T:
        raise ValueError(f"M has {M.shape[1]} tile rows, not a multiple of ceil({n}/{plan.m}) = {T}")
    B, Ch = M.shape[1] // T, M.shape[2]
    gated = residual is not None or gate is not None
    if gated and (residual is None or gate is None or swiglu):
        raise ValueError("the gated epilogue needs both residual and gate, and excludes swiglu")
    if swiglu and Ch % 2:
        raise ValueError(f"swiglu needs an even channel count, got {Ch}")
    c_out = Ch // 2 if swiglu else Ch
    if gated and (tuple(residual.shape) != (B, n, Ch) or gate.dim() != 3 or gate.shape[0] != B
                  or gate.shape[1] not in (1, n) or gate.shape[2] != Ch):
        raise ValueError(f"residual must be (B, n, C) = {(B, n, Ch)} and gate (B, 1 or n, C), got "
                         f"{tuple(residual.shape)} and {tuple(gate.shape)}")
    be = select_backend("winograd_output", M.device.type, backend, _reasons(M, bias, residual, gate),
                        order=("cpu", "torch"), inputs=(M, bias, residual, gate))
    if be == "torch":
        at = torch.tensor(plan.at, dtype=M.dtype, device=M.device)
        y = torch.einsum("ip,pbtc->btic", at, M.view(plan.alpha, B, T, Ch)).reshape(B, T * plan.m, Ch)[:, :n]
        if bias is not None:
            y = y + bias
        if swiglu:
            y = torch.nn.functional.silu(y[..., :c_out]) * y[..., c_out:]
        elif gated:
            y = residual + gate * y
        if out is None:
            return y
        return out.copy_(y)
    if out is None:
        out = M.new_empty(B, n, c_out)
    elif tuple(out.shape) != (B, n, c_out) or out.stride(-1) != 1 or out.dtype != M.dtype:
        raise ValueError(f"out must be a float32 (B, n, C) = {(B, n, c_out)} tensor with a unit channel stride")
    _, at = plan.tensors("cpu")
    mode = 2 if swiglu else (1 if gated else 0)
    if gated and residual.stride(-1) != 1:
        residual = residual.contiguous()
    if gated and gate.stride(-1) != 1:
        gate = gate.contiguous()
    C.nn_winograd_output(M.contiguous().detach().numpy(), n, plan.m, at.numpy(),
                         None if bias is None else bias.detach().contiguous().numpy(), mode,
                         residual.detach().numpy() if gated else None, gate.detach().numpy() if gated else None,
                         out.detach().numpy())
    return out


def winograd_conv1d(x: torch.Tensor, v: torch.Tensor, plan: WinogradPlan, bias: Optional[torch.Tensor] = None, *,
                    lens=None, residual=None, gate=None, swiglu: bool = False,
                    backend: Optional[str] = None) -> torch.Tensor:
    """A "same" kernel-r convolution of channel-last x (B, N, Cin) with transformed weights v
    (alpha, Cin, Cout) from winograd_weight, plus winograd_output's epilogue."""
    if v.dim() != 3 or v.shape[0] != plan.alpha or v.shape[1] != x.shape[-1]:
        raise ValueError(f"v must be (alpha={plan.alpha}, Cin={x.shape[-1]}, Cout), got {tuple(v.shape)}")
    u = winograd_input(x, plan, lens=lens, backend=backend)
    return winograd_output(torch.bmm(u, v), x.shape[1], plan, bias=bias, residual=residual, gate=gate,
                           swiglu=swiglu, backend=backend)
