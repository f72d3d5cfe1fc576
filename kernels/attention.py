"""Triton flash-attention forward (sonicore.kernels.attention).

Same semantics as sonicore.ops.attention (see docs/attention.md): grouped-query heads,
per-batch q_lens / kv_lens, bottom-right causal mask, rows without a visible key -> zeros
and lse -inf, float32 accumulation, log-sum-exp output. Imported lazily through
sonicore._backend.triton_kernels("attention") only.
"""
from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from sonicore._backend import TRITON_OPTIONS

_LOG2E = 1.4426950408889634
_LN2 = 0.6931471805599453


@triton.jit
def _attention_fwd(
    Q, K, V, O, LSE, QLENS, KVLENS,
    sqb, sqh, sqn, skb, skh, skn, svb, svh, svn, sob, soh, son,
    Hq, Nq, Nk, D, qk_scale,
    GROUP: tl.constexpr, CAUSAL: tl.constexpr, HAS_QLENS: tl.constexpr, HAS_KVLENS: tl.constexpr,
    IEEE: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
):
    pid_m = tl.program_id(0)
    bh = tl.program_id(1)
    b = bh // Hq
    h = bh % Hq
    hk = h // GROUP
    ql = Nq
    kl = Nk
    if HAS_QLENS:
        ql = tl.load(QLENS + b)
    if HAS_KVLENS:
        kl = tl.load(KVLENS + b)

    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    d_ok = offs_d < D
    row_ok = offs_m < ql

    q = tl.load(Q + b * sqb + h * sqh + offs_m[:, None] * sqn + offs_d[None, :],
                mask=row_ok[:, None] & d_ok[None, :], other=0.0)

    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)

    # Keys any row of this block can see: all valid ones, or up to the last row's causal limit.
    kend = kl
    if CAUSAL:
        last = tl.minimum(pid_m * BLOCK_M + BLOCK_M, ql) - 1
        kend = tl.minimum(kl, tl.maximum(last + (kl - ql) + 1, 0))
    row_lim = tl.where(row_ok, kl, 0)
    if CAUSAL:
        row_lim = tl.where(row_ok, tl.minimum(kl, tl.maximum(offs_m + (kl - ql) + 1, 0)), 0)

    k_base = K + b * skb + hk * skh
    v_base = V + b * svb + hk * svh
    for start in range(0, kend, BLOCK_N):
        cols = start + offs_n
        col_ok = cols < kend
        k = tl.load(k_base + cols[:, None] * skn + offs_d[None, :], mask=col_ok[:, None] & d_ok[None, :], other=0.0)
        if IEEE:
            s = tl.dot(q, tl.trans(k), input_precision="ieee")
        else:
            s = tl.dot(q, tl.trans(k))
        s = s * qk_scale
        s = tl.where(cols[None, :] < row_lim[:, None], s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        # Rows that have seen no key keep m = -inf; exp2 against 0 then gives exact zeros.
        m_use = tl.where(m_new == float("-inf"), 0.0, m_new)
        alpha = tl.exp2(m_i - m_use)
        p = tl.exp2(s - m_use[:, None])
        l_i = l_i * alpha + tl.sum(p, 1)
        v = tl.load(v_base + cols[:, None] * svn + offs_d[None, :], mask=col_ok[:, None] & d_ok[None, :], other=0.0)
        if IEEE:
            acc = acc * alpha[:, None] + tl.dot(p, v.to(tl.float32), input_precision="ieee")
        else:
            acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
        m_i = m_new

    has = l_i > 0.0
    out = acc / tl.where(has, l_i, 1.0)[:, None]
    out = tl.where(has[:, None], out, 0.0)
    tl.store(O + b * sob + h * soh + offs_m[:, None] * son + offs_d[None, :], out.to(O.dtype.element_ty),
             mask=(offs_m[:, None] < Nq) & d_ok[None, :])
    lse = tl.where(has, (m_i + tl.log2(tl.where(has, l_i, 1.0))) * 0.6931471805599453, float("-inf"))
    tl.store(LSE + bh * Nq + offs_m, lse, mask=offs_m < Nq)


def forward(q, k, v, out, lse, scale, causal, q_lens, kv_lens, config=None):
    """Runs the kernel on (B, H, N, D) views (any strides with a contiguous last axis).

    q (B, Hq, Nq, D), k/v (B, Hkv, Nk, D), out like q (written), lse (B, Hq, Nq) float32
    contiguous (written); q_lens / kv_lens: None or int32 (B,) on q's device.
    """
    B, Hq, Nq, D = q.shape
    Hkv, Nk = k.shape[1], k.shape[2]
    if D > 256:
        raise ValueError(f"triton backend: head dim {D} not supported (at most 256)")
    q, k, v = (t if t.stride(-1) == 1 else t.contiguous() for t in (q, k, v))
    if not q.is_cuda and q.dtype == torch.bfloat16:
        # The CPU interpreter (TRITON_INTERPRET=1) mishandles bfloat16 loads: run the exact
        # bfloat16 values in float32 there and round the result once, as the GPU path does.
        tmp = torch.empty(out.shape, dtype=torch.float32)
        forward(q.float(), k.float(), v.float(), tmp, lse, scale, causal, q_lens, kv_lens, config)
        out.copy_(tmp)
        return
    direct = out.stride(-1) == 1
    o = out if direct else torch.empty(out.shape, dtype=out.dtype, device=out.device)
    block_d = max(16, triton.next_power_of_2(D))
    # Tiles in the range the Triton flash tutorial uses on A100/H100: 128 query rows, 64 keys,
    # 4 warps up to head dim 64 and 8 beyond; head dim 256 halves both tiles to fit registers.
    block_m, block_n, warps, stages = (128, 64, 4, 3) if block_d <= 64 else (128, 64, 8, 3)
    if block_d > 128:
        block_m, block_n, warps, stages = 64, 32, 8, 2
    if q.dtype == torch.float32:  # exact fp32 dots need twice the registers per tile
        block_m = min(block_m, 64)
    elif block_d <= 128:
        # Half-precision tiles from a sweep on an H200 (bench/gpu/tune.py, bench/RESULTS.md): 64 query
        # rows x 64 keys on 4 warps beat 128-row tiles by 8-37% at head dims 64 and 128, N = 16k.
        block_m, block_n, warps, stages = 64, 64, 4, 3
    if not q.is_cuda:  # interpreter: small tiles keep it quick (still >= 16, which a GPU accepts)
        block_m, block_n, warps, stages = 16, 16, 4, 1
    if config is not None:  # (block_m, block_n, warps, stages): for tile sweeps (bench/gpu/tune.py)
        block_m, block_n, warps, stages = config
    dummy = torch.zeros(1, dtype=torch.int32, device=q.device)
    grid = (triton.cdiv(Nq, block_m), B * Hq)
    _attention_fwd[grid](
        q, k, v, o, lse, q_lens if q_lens is not None else dummy, kv_lens if kv_lens is not None else dummy,
        q.stride(0), q.stride(1), q.stride(2), k.stride(0), k.stride(1), k.stride(2),
        v.stride(0), v.stride(1), v.stride(2), o.stride(0), o.stride(1), o.stride(2),
        Hq, Nq, Nk, D, float(scale) * _LOG2E,
        GROUP=Hq // Hkv, CAUSAL=bool(causal), HAS_QLENS=q_lens is not None, HAS_KVLENS=kv_lens is not None,
        IEEE=q.dtype == torch.float32, BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_D=block_d,
        num_warps=warps, num_stages=stages, **TRITON_OPTIONS,
    )
    if not direct:
        out.copy_(o)
