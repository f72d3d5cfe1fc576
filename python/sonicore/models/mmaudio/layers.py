"""Channel-last building blocks: 1-D convolutions as one GEMM, gated (SwiGLU) feed-forwards.

All activations are (B, N, C). Parameters keep the original names and torch shapes ((out, in, k)
for convolutions, (out, in) for linears) so state dicts load unchanged, but their storage is
re-laid-out once ("packed") for the GEMMs: a convolution weight is stored as (k, in, out), so that
the im2col activations (B*N, k*in) multiply a contiguous (k*in, out) matrix (the "NN" GEMM, measurably
faster in MKL than multiplying by a transposed (out, k*in) weight), and the two input weights of a gated
feed-forward share one buffer (k, in, 2*hidden), so both run as one GEMM. Linear weights are stored
transposed for the same reason; F.linear sees a transposed view and calls the NN GEMM without a copy.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ...ops import nn as nnops
from ...ops import winograd as wg

# Convolution algorithm of a module: "auto" (Winograd for float32 on the CPU, the im2col GEMM
# elsewhere), "winograd" (float32 everywhere), "im2col" (never Winograd). Set per network with
# MMAudioNetwork.set_conv_algorithm, which also applies the memory budget below to "auto".
CONV_ALGORITHMS = ("auto", "winograd", "im2col")
WINOGRAD_BUDGET = 1 << 30  # bytes of transformed weights "auto" may add (see set_conv_algorithm)
# Outputs per Winograd tile for each kernel size: F(4, 3) (GEMM work 1.5/3 of im2col) and F(2, 7)
# (4/7), the largest tiles whose float32 error stays ~2e-6 of the output scale (F(4, 7): 1.2e-5).
WINOGRAD_TILE = {3: 4, 7: 2}


def _winograd_ok(module, x: torch.Tensor, k: int) -> bool:
    algo = module.conv_algorithm
    if algo == "im2col" or k not in WINOGRAD_TILE or x.dtype != torch.float32:
        return False
    # The transformed weights are a cached copy: gradients would not reach the real ones.
    if torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in module.parameters())):
        return False
    return algo == "winograd" or x.device.type == "cpu"


def _winograd_cached(module, params, build):
    """Transformed weights of `params`, rebuilt when any of them changes (storage, version, dtype, device)."""
    key = tuple((p.data_ptr(), p._version, p.dtype, p.device, tuple(p.shape)) for p in params)
    cache = module.__dict__.get("_winograd_cache")
    if cache is None or cache[0] != key:
        with torch.no_grad():
            cache = (key, build())
        module.__dict__["_winograd_cache"] = cache
    return cache[1]


def _repack_(*params: nn.Parameter) -> None:
    """Stores (out, in[, k]) parameters side by side as one contiguous ([k,] in, sum(out)) buffer."""
    nd = params[0].dim()
    perm = (2, 1, 0) if nd == 3 else (1, 0)
    base = torch.cat([p.data.permute(*perm) for p in params], dim=-1).contiguous()
    start = 0
    for p in params:
        o = p.shape[0]
        p.data = base[..., start:start + o].permute(*perm)
        start += o


def _is_packed(*params: nn.Parameter) -> bool:
    first = params[0]
    total = sum(p.shape[0] for p in params)
    start = 0
    for p in params:
        if p.dtype != first.dtype or p.device != first.device or p.dim() != first.dim():
            return False
        want = (1, total, p.shape[1] * total) if p.dim() == 3 else (1, total)
        if p.stride() != want or p.data_ptr() != first.data_ptr() + start * p.element_size():
            return False
        start += p.shape[0]
    return True


def ensure_packed(*params: nn.Parameter) -> None:
    if not _is_packed(*params):
        with torch.no_grad():
            _repack_(*params)


def ensure_packed_bias(*biases: nn.Parameter) -> torch.Tensor:
    """Stores 1-D biases back to back in one buffer; returns the concatenated view."""
    total = sum(b.shape[0] for b in biases)
    first = biases[0]
    start, ok = 0, True
    for b in biases:
        if b.stride() != (1,) or b.dtype != first.dtype or b.data_ptr() != first.data_ptr() + start * b.element_size():
            ok = False
            break
        start += b.shape[0]
    if not ok:
        with torch.no_grad():
            base = torch.cat([b.data for b in biases])
            start = 0
            for b in biases:
                b.data = base[start:start + b.shape[0]]
                start += b.shape[0]
    return biases[0].as_strided((total,), (1,))


def _matrix(params: Sequence[nn.Parameter]) -> torch.Tensor:
    """The packed ([k*]in, sum(out)) GEMM matrix behind params (a view, no copy)."""
    p = params[0]
    total = sum(q.shape[0] for q in params)
    rows = p.shape[1] * (p.shape[2] if p.dim() == 3 else 1)
    return p.as_strided((rows, total), (total, 1))


def _taps(params: Sequence[nn.Parameter], k: int) -> torch.Tensor:
    """The packed convolution weights behind params as (k, in, sum(out)) taps (a view, no copy)."""
    m = _matrix(params)
    return m.view(k, m.shape[0] // k, m.shape[1])


def _gemm(x: torch.Tensor, m: torch.Tensor, bias=None) -> torch.Tensor:
    """(B, N, K) @ m (K, out) (+ bias) as ONE 2-D GEMM (a strided 3-D input would become a batched
    GEMM that copies the weight per batch row)."""
    B, N, K = x.shape
    x2 = x.reshape(B * N, K)
    y = torch.addmm(bias, x2, m) if bias is not None else torch.mm(x2, m)
    return y.view(B, N, m.shape[1])


def im2col(x: torch.Tensor, k: int) -> torch.Tensor:
    """(B, N, C) -> (B*N, k*C) contiguous im2col matrix of a kernel-k "same" convolution."""
    B, N, C = x.shape
    return nnops.taps_layout(x, k).reshape(B * N, k * C)


class ChannelLastConv1d(nn.Module):
    """Conv1d over time on (B, N, C) activations, zero "same" padding, as one GEMM."""

    def __init__(self, in_dim: int, out_dim: int, kernel_size: int, bias: bool = True):
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError("only odd kernel sizes keep the length")
        self.kernel_size = kernel_size
        self.weight = nn.Parameter(torch.empty(kernel_size, in_dim, out_dim).permute(2, 1, 0))
        self.bias = nn.Parameter(torch.zeros(out_dim)) if bias else None

    conv_algorithm = "auto"

    def forward(self, x: torch.Tensor, tapped: bool = False) -> torch.Tensor:
        """x: (B, N, in) or, with tapped=True, already in the (B, N, k*in) im2col layout."""
        ensure_packed(self.weight)
        if not tapped:
            if self.use_winograd(x):
                return self.winograd(x)
            x = nnops.taps_layout(x, self.kernel_size)
        return _gemm(x, _matrix([self.weight]), self.bias)

    def use_winograd(self, x: torch.Tensor) -> bool:
        return _winograd_ok(self, x, self.kernel_size)

    def winograd(self, x: torch.Tensor, lens=None, residual=None, gate=None) -> torch.Tensor:
        """The convolution of (B, N, in) x by Winograd F(WINOGRAD_TILE[k], k) (see ops/winograd.py): frames past
        lens[b] read as zero; with residual and gate, returns residual + gate * conv(x)."""
        ensure_packed(self.weight)
        k = self.kernel_size
        plan = wg.winograd_plan(k, WINOGRAD_TILE[k])
        v = _winograd_cached(self, [self.weight], lambda: wg.winograd_weight(_taps([self.weight], k), plan))
        u = wg.winograd_input(x, plan, lens=lens)
        return wg.winograd_output(torch.bmm(u, v), x.shape[1], plan, bias=self.bias, residual=residual, gate=gate)


class _W(nn.Module):
    """Holds one weight under the name `<parent>.<w1|w2|w3>.weight`."""

    def __init__(self, shape):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(*reversed(shape)).t())


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

    def pack(self) -> None:
        ensure_packed(self.w1.weight, self.w3.weight)
        ensure_packed(self.w2.weight)

    conv_algorithm = "auto"

    def forward(self, x: torch.Tensor, tapped: bool = False, valid=None) -> torch.Tensor:
        """x: (B, N, dim) (or (B, dim)) or, with tapped=True, already in the (B, N, k*dim) im2col layout
        (then already masked when valid is given). valid: optional ValidFrames of a padded batch
        (convolutional FFNs only): both convolutions read zeros past each row's end, as a clip of its
        own length would."""
        if not tapped and self.kernel_size is not None and self.use_winograd(x):
            return self.winograd(x, lens=None if valid is None else valid.lens)  # packs itself
        self.pack()
        w13 = _matrix([self.w1.weight, self.w3.weight])
        w2 = _matrix([self.w2.weight])
        if self.kernel_size is None:
            squeeze = x.dim() == 2
            x3 = x[None] if squeeze else x
            y = _gemm(nnops.swiglu(_gemm(x3, w13)), w2)
            return y[0] if squeeze else y
        k = self.kernel_size
        if not tapped:
            x = nnops.taps_layout(x, k)
            if valid is not None:
                x = valid.mask_taps(x, k)
        h = nnops.swiglu(_gemm(x, w13), taps=k)
        return _gemm(h if valid is None else valid.mask_taps(h, k), w2)


    def use_winograd(self, x: torch.Tensor) -> bool:
        return self.kernel_size is not None and _winograd_ok(self, x, self.kernel_size)

    def winograd(self, x: torch.Tensor, lens=None, residual=None, gate=None) -> torch.Tensor:
        """The convolutional FFN on (B, N, dim) x by Winograd F(WINOGRAD_TILE[k], k): the SwiGLU runs in the output
        transform of the first convolution; frames past lens[b] read as zero in both convolutions;
        with residual and gate, returns residual + gate * ffn(x)."""
        self.pack()
        k = self.kernel_size
        plan = wg.winograd_plan(k, WINOGRAD_TILE[k])

        def build():
            return (wg.winograd_weight(_taps([self.w1.weight, self.w3.weight], k), plan),
                    wg.winograd_weight(_taps([self.w2.weight], k), plan))
        v13, v2 = _winograd_cached(self, [self.w1.weight, self.w3.weight, self.w2.weight], build)
        n = x.shape[1]
        s = wg.winograd_output(torch.bmm(wg.winograd_input(x, plan, lens=lens), v13), n, plan, swiglu=True)
        return wg.winograd_output(torch.bmm(wg.winograd_input(s, plan, lens=lens), v2), n, plan,
                                  residual=residual, gate=gate)


class ValidFrames:
    """Valid frames of one stream of a batch padded to its longest row (rows of different durations).

    lens: (B,) int64 CPU tensor of valid frames per row; n: the padded length; like: a tensor whose
    dtype and device the masks take. frames: (B, n, 1) mask, 1 on valid frames. mask_taps(t, k) zeroes,
    in place, every entry of a (B, n, k*C) im2col matrix that reads a frame past its row's end (and the
    padded rows themselves): a kernel-k convolution then sees exactly the zero padding a clip of that
    row's own length sees, while the fused kernels still write the im2col layout directly.
    """

    def __init__(self, lens: torch.Tensor, n: int, like: torch.Tensor):
        self.lens = lens
        self.list = [int(v) for v in lens.tolist()]
        self.n = n
        self._like = (like.dtype, like.device)
        pos = torch.arange(n)
        self.frames = (pos[None] < lens[:, None]).to(like.device, like.dtype)[..., None]
        self._taps = {}

    def taps(self, k: int) -> torch.Tensor:
        """(B, n, k, 1) mask: frame i and its tap j (frame i + j - k//2) both inside the row."""
        if k not in self._taps:
            pos = torch.arange(self.n)
            src = pos[:, None] + torch.arange(k)[None] - k // 2                      # (n, k)
            ok = (src[None] < self.lens[:, None, None]) & (pos[None, :, None] < self.lens[:, None, None])
            self._taps[k] = ok.to(self._like[1], self._like[0])[..., None]
        return self._taps[k]

    def mask_taps(self, t: torch.Tensor, k: int) -> torch.Tensor:
        B, n, kc = t.shape
        if k == 1 or not t.is_contiguous():  # taps_layout returns its input for k = 1: never modify that
            return (t.reshape(B, n, k, kc // k) * self.taps(k)).view(B, n, kc)
        return t.view(B, n, k, kc // k).mul_(self.taps(k)).view(B, n, kc)


def pack_linear(lin: nn.Linear) -> None:
    """Stores a Linear weight transposed so that F.linear runs the NN GEMM (no copy)."""
    ensure_packed(lin.weight)
