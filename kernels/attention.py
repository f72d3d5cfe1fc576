"""Triton flash-attention forward (sonicore.kernels.attention).

Same semantics as sonicore.ops.attention (see docs/attention.md): grouped-query heads,
per-batch q_lens / kv_lens, bottom-right causal mask, rows without a visible key -> zeros
and lse -inf, float32 accumulation, log-sum-exp output. Imported lazily through
sonicore._backend.triton_kernels("attention") only.
"""
from __future__ import annotations

import functools
import os
import warnings

import torch
import triton
import triton.language as tl

try:
    from triton.runtime.errors import PTXASError
except ImportError:  # another Triton: nothing to catch by that name
    class PTXASError(Exception):
        pass

from sonicore._backend import TRITON_OPTIONS

_LOG2E = 1.4426950408889634
_LN2 = 0.6931471805599453


@triton.jit
def _head_and_lens(QLENS, KVLENS, Hq, Nq, Nk, GROUP: tl.constexpr, HAS_QLENS: tl.constexpr,
                   HAS_KVLENS: tl.constexpr):
    """This program's (batch x head) index, batch entry, query head, key/value head, and the
    entry's valid query / key lengths."""
    bh = tl.program_id(1)
    b = bh // Hq
    h = bh % Hq
    ql = Nq
    kl = Nk
    if HAS_QLENS:
        ql = tl.load(QLENS + b)
    if HAS_KVLENS:
        kl = tl.load(KVLENS + b)
    return bh, b, h, h // GROUP, ql, kl


@triton.jit
def _key_range(pid_m, ql, kl, offs_m, row_ok, CAUSAL: tl.constexpr, BLOCK_M: tl.constexpr):
    """Per-row key limits (keys [0, limit) visible), the end of the keys any row of the tile sees
    (0 for a tile of padding rows only) and the first row's limit, the smallest (causal limits
    grow by row)."""
    row_lim = tl.where(row_ok, kl, 0)
    kend = kl
    kfirst = kl
    if CAUSAL:
        row_lim = tl.where(row_ok, tl.minimum(kl, tl.maximum(offs_m + (kl - ql) + 1, 0)), 0)
        last = tl.minimum(pid_m * BLOCK_M + BLOCK_M, ql) - 1
        kend = tl.minimum(kl, tl.maximum(last + (kl - ql) + 1, 0))
        kfirst = tl.minimum(kl, tl.maximum(pid_m * BLOCK_M + (kl - ql) + 1, 0))
    kend = tl.where(pid_m * BLOCK_M >= ql, 0, kend)
    return row_lim, kend, kfirst


@triton.jit
def _tile_start(pid_m, Q, QLENS, KVLENS, sqb, sqh, sqn, Hq, Nq, Nk, D,
                GROUP: tl.constexpr, HAS_QLENS: tl.constexpr, HAS_KVLENS: tl.constexpr,
                BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    """Batch / head of this program, the valid lengths, the tile's offsets, its Q rows and the
    online-softmax state (m = -inf, l = 0, acc = 0)."""
    bh, b, h, hk, ql, kl = _head_and_lens(QLENS, KVLENS, Hq, Nq, Nk, GROUP, HAS_QLENS, HAS_KVLENS)
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
    return bh, b, h, hk, ql, kl, offs_m, offs_n, offs_d, d_ok, row_ok, q, m_i, l_i, acc


@triton.jit
def _tile_finish(O, LSE, acc, m_i, l_i, row_ok, b, h, bh, offs_m, offs_d, d_ok, sob, soh, son, Nq):
    """O = acc / l and the log-sum-exp; rows without a visible key (or past q_len): zeros, -inf."""
    has = (l_i > 0.0) & row_ok
    out = acc / tl.where(has, l_i, 1.0)[:, None]
    out = tl.where(has[:, None], out, 0.0)
    tl.store(O + b * sob + h * soh + offs_m[:, None] * son + offs_d[None, :], out.to(O.dtype.element_ty),
             mask=(offs_m[:, None] < Nq) & d_ok[None, :])
    lse = tl.where(has, (m_i + tl.log2(tl.where(has, l_i, 1.0))) * 0.6931471805599453, float("-inf"))
    tl.store(LSE + bh * Nq + offs_m, lse, mask=offs_m < Nq)


@triton.jit
def _attention_fwd(
    Q, K, V, O, LSE, QLENS, KVLENS,
    sqb, sqh, sqn, skb, skh, skn, svb, svh, svn, sob, soh, son,
    Hq, Nq, Nk, D, qk_scale,
    GROUP: tl.constexpr, CAUSAL: tl.constexpr, HAS_QLENS: tl.constexpr, HAS_KVLENS: tl.constexpr,
    IEEE: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
):
    pid_m = tl.program_id(0)
    bh, b, h, hk, ql, kl, offs_m, offs_n, offs_d, d_ok, row_ok, q, m_i, l_i, acc = _tile_start(
        pid_m, Q, QLENS, KVLENS, sqb, sqh, sqn, Hq, Nq, Nk, D,
        GROUP, HAS_QLENS, HAS_KVLENS, BLOCK_M, BLOCK_N, BLOCK_D)

    # Keys any row of this block can see: all valid ones, or up to the last row's causal limit.
    row_lim, kend, _ = _key_range(pid_m, ql, kl, offs_m, row_ok, CAUSAL, BLOCK_M)

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

    _tile_finish(O, LSE, acc, m_i, l_i, row_ok, b, h, bh, offs_m, offs_d, d_ok, sob, soh, son, Nq)


@triton.jit
def _scores(q, k, IEEE: tl.constexpr):
    if IEEE:
        return tl.dot(q, tl.trans(k), input_precision="ieee")
    return tl.dot(q, tl.trans(k))


@triton.jit
def _update(s, v, acc, m_i, l_i, qk_scale, cols, row_lim, MASKED: tl.constexpr, IEEE: tl.constexpr):
    """The online-softmax step for one key block's raw scores s = q k^T. Unmasked blocks (every
    row of the tile sees every key) skip the mask and fold the scale into one multiply-subtract;
    masked blocks keep rows that have seen no key at m = -inf with exact zeros."""
    if MASKED:
        s = tl.where(cols[None, :] < row_lim[:, None], s * qk_scale, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        m_use = tl.where(m_new == float("-inf"), 0.0, m_new)
        p = tl.exp2(s - m_use[:, None])
    else:
        m_new = tl.maximum(m_i, tl.max(s, 1) * qk_scale)  # qk_scale > 0 (forward() checks)
        m_use = m_new
        p = tl.exp2(s * qk_scale - m_new[:, None])
    alpha = tl.exp2(m_i - m_use)
    l_i = l_i * alpha + tl.sum(p, 1)
    acc = acc * alpha[:, None]
    if IEEE:
        acc = tl.dot(p, v.to(tl.float32), acc, input_precision="ieee")
    else:
        acc = tl.dot(p.to(v.dtype), v, acc)
    return acc, m_new, l_i


@triton.jit
def _load_kv(K_DESC, V_DESC, k_base, v_base, row0, cols, offs_d, ok, skn, svn, TMA: tl.constexpr):
    """K and V rows `cols` of one head (cols < kv limit and d < D where `ok` says so; TMA: the
    descriptors' rows row0 + cols[0] onwards, unmasked)."""
    if TMA:
        k = K_DESC.load([row0, 0])
        v = V_DESC.load([row0, 0])
    else:
        k = tl.load(k_base + cols[:, None] * skn + offs_d[None, :], mask=ok, other=0.0)
        v = tl.load(v_base + cols[:, None] * svn + offs_d[None, :], mask=ok, other=0.0)
    return k, v


@triton.jit
def _attention_fwd_split(
    Q, K, V, O, LSE, QLENS, KVLENS, K_DESC, V_DESC,
    sqb, sqh, sqn, skb, skh, skn, svb, svh, svn, sob, soh, son,
    Hq, Hkv, Nq, Nk, D, qk_scale,
    GROUP: tl.constexpr, CAUSAL: tl.constexpr, HAS_QLENS: tl.constexpr, HAS_KVLENS: tl.constexpr,
    IEEE: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
    TMA: tl.constexpr,
):
    """Same contract as _attention_fwd; the key loop is split in two. Blocks that every valid
    row of the tile sees in full run without masks; the few boundary blocks (causal diagonal,
    ragged end, kv_lens) run masked. TMA: K / V come through tensor descriptors over the
    (B * Hkv * Nk, D) rows (contiguous heads, D == BLOCK_D); rows past a head's end then belong
    to the next head and only ever reach masked blocks, where they are zeroed. Causal: the last
    query tiles (the most keys) start first.

    (Software-pipelining the unmasked loop by hand, block j+1's q k^T issued before block j's
    softmax, compiles to the same waits under Triton 3.9: it waits for every wgmma group at once,
    so the hand-pipelined form gave no overlap and is not kept.)"""
    pid_m = tl.program_id(0)
    if CAUSAL:
        pid_m = tl.num_programs(0) - 1 - pid_m
    bh, b, h, hk, ql, kl, offs_m, offs_n, offs_d, d_ok, row_ok, q, m_i, l_i, acc = _tile_start(
        pid_m, Q, QLENS, KVLENS, sqb, sqh, sqn, Hq, Nq, Nk, D,
        GROUP, HAS_QLENS, HAS_KVLENS, BLOCK_M, BLOCK_N, BLOCK_D)

    row_lim, kend, kfirst = _key_range(pid_m, ql, kl, offs_m, row_ok, CAUSAL, BLOCK_M)
    # Blocks below kfull are seen in full by every valid row; a tile of padding rows sees nothing.
    kfull = tl.where(pid_m * BLOCK_M >= ql, 0, (kfirst // BLOCK_N) * BLOCK_N)

    k_base = K + b * skb + hk * skh
    v_base = V + b * svb + hk * svh
    kv_row0 = (b * Hkv + hk) * Nk
    full_ok = d_ok[None, :]
    for start in range(0, kfull, BLOCK_N):
        cols = start + offs_n
        k, v = _load_kv(K_DESC, V_DESC, k_base, v_base, kv_row0 + start, cols, offs_d, full_ok, skn, svn, TMA)
        acc, m_i, l_i = _update(_scores(q, k, IEEE), v, acc, m_i, l_i, qk_scale, cols, row_lim, False, IEEE)
    for start in range(kfull, kend, BLOCK_N):
        cols = start + offs_n
        col_ok = cols < kend
        k, v = _load_kv(K_DESC, V_DESC, k_base, v_base, kv_row0 + start, cols, offs_d,
                        col_ok[:, None] & d_ok[None, :], skn, svn, TMA)
        if TMA:
            v = tl.where(col_ok[:, None], v, 0.0)  # another head's rows, or padding (maybe NaN)
        acc, m_i, l_i = _update(_scores(q, k, IEEE), v, acc, m_i, l_i, qk_scale, cols, row_lim, True, IEEE)

    _tile_finish(O, LSE, acc, m_i, l_i, row_ok, b, h, bh, offs_m, offs_d, d_ok, sob, soh, son, Nq)


@triton.jit
def _attention_fwd_ws(
    Q, K, V, O, LSE, QLENS, KVLENS,
    sqb, sqh, sqn, skb, skh, skn, svb, svh, svn, sob, soh, son,
    Hq, Nq, Nk, D, qk_scale,
    GROUP: tl.constexpr, CAUSAL: tl.constexpr, HAS_QLENS: tl.constexpr, HAS_KVLENS: tl.constexpr,
    IEEE: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
    EVEN: tl.constexpr, WS: tl.constexpr,
):
    """Same contract as _attention_fwd, for Hopper's warp specialisation: Q, K and V come through
    tensor descriptors built here, one per head, whose shapes are the valid rows (q_len, kv_len)
    and D columns, so the copy engine zero-fills whatever lies past them: padding is never read
    and nothing of another head is. One key loop, which Triton (WS) splits into a producer
    warpgroup issuing the copies and consumer warpgroups of 64 query rows each (BLOCK_M = 128:
    two). The loop stays whole (the warp-specialisation pass fails on split loops); every block
    is masked unless the call is EVEN (not causal, no kv_lens, Nk a multiple of BLOCK_N)."""
    pid_m = tl.program_id(0)
    if CAUSAL:
        pid_m = tl.num_programs(0) - 1 - pid_m
    bh, b, h, hk, ql, kl = _head_and_lens(QLENS, KVLENS, Hq, Nq, Nk, GROUP, HAS_QLENS, HAS_KVLENS)
    # A descriptor needs every extent >= 1; a batch entry with no rows reads row 0 and discards it.
    dq = tl.make_tensor_descriptor(Q + b * sqb + h * sqh, shape=[tl.maximum(ql, 1), D], strides=[sqn, 1],
                                   block_shape=[BLOCK_M, BLOCK_D])
    dk = tl.make_tensor_descriptor(K + b * skb + hk * skh, shape=[tl.maximum(kl, 1), D], strides=[skn, 1],
                                   block_shape=[BLOCK_N, BLOCK_D])
    dv = tl.make_tensor_descriptor(V + b * svb + hk * svh, shape=[tl.maximum(kl, 1), D], strides=[svn, 1],
                                   block_shape=[BLOCK_N, BLOCK_D])
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    row_ok = offs_m < ql
    row_lim, kend, _ = _key_range(pid_m, ql, kl, offs_m, row_ok, CAUSAL, BLOCK_M)
    q = dq.load([pid_m * BLOCK_M, 0])
    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
    for start in tl.range(0, kend, BLOCK_N, warp_specialize=WS):
        k = dk.load([start, 0])
        v = dv.load([start, 0])
        acc, m_i, l_i = _update(_scores(q, k, IEEE), v, acc, m_i, l_i, qk_scale, start + offs_n, row_lim,
                                not EVEN, IEEE)
    _tile_finish(O, LSE, acc, m_i, l_i, row_ok, b, h, bh, offs_m, offs_d, offs_d < D, sob, soh, son, Nq)


VARIANTS = ("loop", "split", "split-tma", "ws")


def _rows_layout(t, block_d, D):
    """Whether (B, H, N, D) t is (B * H * N, D) rows: contiguous heads, D a power of two (no
    column padding), 16-byte aligned rows and base, as a tensor descriptor needs them."""
    B, H, N, _ = t.shape
    return (D == block_d and t.stride(3) == 1 and t.stride(2) == D
            and (H == 1 or t.stride(1) == N * D) and (B == 1 or t.stride(0) == H * N * D)
            and t.data_ptr() % 16 == 0 and (D * t.element_size()) % 16 == 0)


def _tma_ok(t, block_d, D):
    """Tensor descriptors (TMA) need sm_90+ and the rows layout."""
    return (t.is_cuda and torch.cuda.get_device_capability(t.device)[0] >= 9
            and _rows_layout(t, block_d, D))


def _desc_rows_ok(t):
    """Whether a tensor descriptor can address t's (B, H, N, D) rows per head: contiguous last
    axis, 16-byte aligned base and strides (dimensions of extent 1 aside)."""
    es = t.element_size()
    return (t.stride(3) == 1 and t.data_ptr() % 16 == 0
            and all((st * es) % 16 == 0 for st, n in zip(t.stride()[:3], t.shape[:3]) if n > 1))


def _ws_triton():
    """Whether this Triton has what the "ws" kernel uses: device-side tensor descriptors and the
    context-variable allocator they take their scratch from."""
    try:
        from triton.runtime import _allocation
    except ImportError:
        return False
    return hasattr(tl, "make_tensor_descriptor") and hasattr(getattr(_allocation, "_allocator", None), "set")


def _ws_ok(q, k, v):
    """The warp-specialised kernel: Hopper (compute capability 9.x), half precision, and
    descriptor-addressable q, k and v, on a Triton that has device-side descriptors."""
    return (q.is_cuda and torch.cuda.get_device_capability(q.device)[0] == 9
            and q.dtype in (torch.float16, torch.bfloat16) and all(_desc_rows_ok(t) for t in (q, k, v))
            and _ws_triton())


def _with_allocator(device, launch):
    """Runs launch() with torch memory on `device` as the global scratch Triton asks for at launch
    (the "ws" kernel builds its descriptors there), for this context only: Triton reads its
    allocator from a context variable, and a caller's own allocator is restored afterwards
    (triton.set_allocator would replace it for the whole program)."""
    from triton.runtime import _allocation
    token = _allocation._allocator.set(lambda size, alignment, stream: torch.empty(size, dtype=torch.int8,
                                                                                   device=device))
    try:
        launch()
    finally:
        _allocation._allocator.reset(token)


# The variant default_config() picks (tests switch it); head dim 256 keeps "loop". The
# environment variable SONICORE_TRITON_ATTENTION (one of VARIANTS) overrides it per process.
DEFAULT_VARIANT = "split-tma"
VARIANT_ENV = "SONICORE_TRITON_ATTENTION"


def default_variant():
    """DEFAULT_VARIANT, or the variant SONICORE_TRITON_ATTENTION names."""
    v = os.environ.get(VARIANT_ENV, "").strip()
    if not v:
        return DEFAULT_VARIANT
    if v not in VARIANTS:
        raise ValueError(f"{VARIANT_ENV}={v!r}: expected one of {', '.join(VARIANTS)}")
    return v


def default_config(q, block_d, variant=None):
    """(BLOCK_M, BLOCK_N, warps, stages, variant) for this call (see forward); variant None: the
    default one."""
    variant = variant or default_variant()
    if not q.is_cuda:  # interpreter: small tiles keep it quick (still >= 16, which a GPU accepts)
        return 16, 16, 4, 1, variant
    if block_d > 128:  # head dim 256: half-size tiles fit the registers (not swept on a GPU yet)
        return 64, 32, 8, 2, "loop"
    if q.dtype == torch.float32:  # exact fp32 dots need twice the registers per tile
        return 64, 64, 4, 3, "split-tma" if variant == "ws" else variant
    if variant == "ws":
        # Warp specialisation: num_warps is per warpgroup of the split (one producer and two
        # consumers of 64 rows for BLOCK_M = 128); 128-key blocks as FlashAttention-3 uses on
        # Hopper. Not swept on a GPU yet (bench/gpu/tune.py lists the candidates).
        return 128, 128, 4, 2, "ws"
    # Half precision, from a sweep on an H100 (bench/gpu/tune.py; bench/RESULTS.md, 2026-11-26):
    # head dim <= 64: 64 x 64 tiles, 4 warps, descriptors: 0.92-0.94 of SDPA (cuDNN) at N 4k / 16k;
    # head dim 128: 128 x 64 tiles on two warpgroups, descriptors: 524-550 TFLOP/s.
    if block_d <= 64:
        return 64, 64, 4, 3, variant
    return 128, 64, 8, 3, variant


def _first_line(exc):
    """The first line of an exception's message (a compiler's can run to pages), or its type."""
    text = str(exc).strip()
    return text.splitlines()[0][:120] if text else type(exc).__name__


@functools.lru_cache(maxsize=None)
def _dummy(device):
    """A 1-element int32 tensor for pointer arguments a launch does not use (one per device)."""
    return torch.zeros(1, dtype=torch.int32, device=device)


# Launch keys whose descriptor (TMA) kernel the PTX assembler could not build: they use the
# pointer loads from then on (Triton 3.6's ptxas crashed on one head-dim-16 specialisation).
_TMA_BROKEN = set()
# Launch keys whose warp-specialised kernel this Triton could not compile: "split-tma" from then on.
_WS_BROKEN = set()


def forward(q, k, v, out, lse, scale, causal, q_lens, kv_lens, config=None):
    """Runs the kernel on (B, H, N, D) views (any strides with a contiguous last axis).

    q (B, Hq, Nq, D), k/v (B, Hkv, Nk, D), out like q (written), lse (B, Hq, Nq) float32
    contiguous (written); q_lens / kv_lens: None or int32 (B,) on q's device.
    config: None (the defaults) or (BLOCK_M, BLOCK_N, warps, stages[, variant]) for tile sweeps
    (bench/gpu/tune.py) and tests; variant is one of VARIANTS: "loop" (one masked loop),
    "split" (unmasked full blocks + masked boundary blocks), "split-tma" (that, with K / V
    through tensor descriptors), "ws" (Hopper warp specialisation, _attention_fwd_ws). "ws"
    falls back to "split-tma" off Hopper, in float32, where a descriptor cannot address the
    tensors or where this Triton could not build it; "split-tma" falls back to "split" where the
    layout or the device rules out descriptors (or ptxas failed on that shape before), and every
    variant but "loop" falls back to "loop" for a scale <= 0 (their unmasked blocks assume
    max(s * c) = c max(s)).
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
    cfg = tuple(config) if config is not None else default_config(q, block_d)
    variant = cfg[4] if len(cfg) > 4 else "loop"
    if variant not in VARIANTS:
        raise ValueError(f"triton backend: variant must be one of {VARIANTS}, got {variant!r}")
    if variant != "loop" and not float(scale) > 0:
        variant = "loop"
    dummy = _dummy(q.device)
    common = (q.stride(0), q.stride(1), q.stride(2), k.stride(0), k.stride(1), k.stride(2),
              v.stride(0), v.stride(1), v.stride(2), o.stride(0), o.stride(1), o.stride(2))
    lens = (q_lens if q_lens is not None else dummy, kv_lens if kv_lens is not None else dummy)
    qk_scale = float(scale) * _LOG2E

    def launch_args(c):
        """Grid, kernel flags and compile-failure key for tiles c = (BLOCK_M, BLOCK_N, warps, stages)."""
        flags = dict(GROUP=Hq // Hkv, CAUSAL=bool(causal), HAS_QLENS=q_lens is not None,
                     HAS_KVLENS=kv_lens is not None, IEEE=q.dtype == torch.float32,
                     BLOCK_M=c[0], BLOCK_N=c[1], BLOCK_D=block_d, num_warps=c[2], num_stages=c[3],
                     **TRITON_OPTIONS)
        key = (q.dtype, block_d, tuple(c[:4]), bool(causal), q_lens is None, kv_lens is None, Hq // Hkv,
               Nq == 1, Nk == 1)
        return (triton.cdiv(Nq, c[0]), B * Hq), flags, key

    done = False
    if variant == "ws":
        grid, flags, key = launch_args(cfg)
        if key not in _WS_BROKEN and _ws_ok(q, k, v):
            even = not causal and kv_lens is None and Nk % cfg[1] == 0
            try:
                _with_allocator(q.device, lambda: _attention_fwd_ws[grid](
                    q, k, v, o, lse, *lens, *common, Hq, Nq, Nk, D, qk_scale, EVEN=even, WS=q.is_cuda, **flags))
                done = True
            except (triton.CompilationError, PTXASError, RuntimeError) as exc:
                _WS_BROKEN.add(key)
                warnings.warn(f"triton attention: this Triton ({triton.__version__}) could not build the "
                              f"warp-specialised kernel ({_first_line(exc)}); this call shape uses the split "
                              f"kernel", RuntimeWarning)
        if not done:  # off Hopper, float32, a layout descriptors cannot address, or a failure
            variant = "split-tma"
            cfg = default_config(q, block_d, variant) if config is None else cfg[:4] + (variant,)
    if done:
        pass
    elif variant == "loop":
        grid, flags, key = launch_args(cfg)
        _attention_fwd[grid](q, k, v, o, lse, *lens, *common, Hq, Nq, Nk, D, qk_scale, **flags)
    else:
        grid, flags, key = launch_args(cfg)

        def split(kd, vd, tma):
            _attention_fwd_split[grid](q, k, v, o, lse, *lens, kd, vd, *common, Hq, Hkv, Nq, Nk, D,
                                       qk_scale, TMA=tma, **flags)

        if (variant == "split-tma" and key not in _TMA_BROKEN and _tma_ok(k, block_d, D)
                and _tma_ok(v, block_d, D)):
            from triton.tools.tensor_descriptor import TensorDescriptor
            rows = B * Hkv * Nk
            try:
                split(TensorDescriptor(k, [rows, D], [D, 1], [cfg[1], block_d]),
                      TensorDescriptor(v, [rows, D], [D, 1], [cfg[1], block_d]), True)
                done = True
            except PTXASError as exc:  # a compiler crash on this specialisation: pointer loads instead
                _TMA_BROKEN.add(key)
                warnings.warn(f"triton attention: the PTX assembler failed on the descriptor (TMA) kernel "
                              f"({_first_line(exc)}); this call shape uses pointer loads", RuntimeWarning)
        if not done:
            split(dummy, dummy, False)
    if not direct:
        out.copy_(o)
