"""Triton kernels for the fused MMAudio block pieces (see sonicore.ops.nn for the math and shapes).

Every kernel computes in float32 and stores in the output's dtype. "taps" outputs are the im2col layout
of a following kernel-k convolution: row n, tap j holds y[n + j - k//2] (zero outside the sequence).
"""
import triton
import triton.language as tl

from sonicore._backend import TRITON_OPTIONS


@triton.jit
def _store_taps(out_ptr, y, b, n, N, C, offs, mask, TAPS: tl.constexpr):
    # y[n] lands in row n - (j - TAPS//2) at tap j; tap j of row n is zero when it reads outside 0..N-1.
    for j in tl.static_range(TAPS):
        # Per-element conditions (a scalar and a block mask do not combine in every Triton version).
        dst = tl.zeros_like(offs) + (n - (j - TAPS // 2))
        ok = mask & (dst >= 0) & (dst < N)
        dst = tl.where(ok, dst, 0)
        ptrs = out_ptr + ((b * N + dst) * TAPS + j).to(tl.int64) * C + offs
        tl.store(ptrs, y.to(out_ptr.dtype.element_ty), mask=ok)
        read = tl.zeros_like(offs) + (n + j - TAPS // 2)
        zero = mask & ((read < 0) | (read >= N))
        zptrs = out_ptr + ((b * N + n) * TAPS + j).to(tl.int64) * C + offs
        tl.store(zptrs, tl.zeros_like(y).to(out_ptr.dtype.element_ty), mask=zero)


@triton.jit
def _adaln_kernel(x_ptr, shift_ptr, scale_ptr, out_ptr, N, D, sh_b, sh_n, sc_b, sc_n, eps,
                  TAPS: tl.constexpr, BLOCK_D: tl.constexpr):
    r = tl.program_id(0)
    b = r // N
    n = r % N
    offs = tl.arange(0, BLOCK_D)
    mask = offs < D
    x = tl.load(x_ptr + r.to(tl.int64) * D + offs, mask=mask, other=0.0).to(tl.float32)
    mean = tl.sum(x, axis=0) / D
    c = tl.where(mask, x - mean, 0.0)
    var = tl.sum(c * c, axis=0) / D
    rstd = 1.0 / tl.sqrt(var + eps)
    sh = tl.load(shift_ptr + b * sh_b + n * sh_n + offs, mask=mask, other=0.0).to(tl.float32)
    sc = tl.load(scale_ptr + b * sc_b + n * sc_n + offs, mask=mask, other=0.0).to(tl.float32)
    y = c * rstd * (1.0 + sc) + sh
    _store_taps(out_ptr, y, b, n, N, D, offs, mask, TAPS)


@triton.jit
def _swiglu_kernel(h_ptr, out_ptr, N, F, TAPS: tl.constexpr, BLOCK: tl.constexpr):
    r = tl.program_id(0)
    pid = tl.program_id(1)
    b = r // N
    n = r % N
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    mask = offs < F
    row = h_ptr + r.to(tl.int64) * 2 * F
    a = tl.load(row + offs, mask=mask, other=0.0).to(tl.float32)
    g = tl.load(row + F + offs, mask=mask, other=0.0).to(tl.float32)
    y = a / (1.0 + tl.exp(-a)) * g
    _store_taps(out_ptr, y, b, n, N, F, offs, mask, TAPS)


@triton.jit
def _one_of_qkv(src, j, w_ptr, rot_ptr, dst, n, eps, HD: tl.constexpr, NORM: tl.constexpr, ROPE: tl.constexpr):
    # Channel d*3 + j of the head; even dims 2i and odd dims 2i+1 are loaded apart to form the pairs.
    i = tl.arange(0, HD // 2)
    x0 = tl.load(src + (2 * i) * 3 + j).to(tl.float32)
    x1 = tl.load(src + (2 * i + 1) * 3 + j).to(tl.float32)
    if NORM:
        inv = 1.0 / tl.sqrt((tl.sum(x0 * x0, axis=0) + tl.sum(x1 * x1, axis=0)) / HD + eps)
        x0 = x0 * inv * tl.load(w_ptr + 2 * i).to(tl.float32)
        x1 = x1 * inv * tl.load(w_ptr + 2 * i + 1).to(tl.float32)
    if ROPE:
        rot = rot_ptr + n * HD * 2 + 4 * i
        c00 = tl.load(rot)
        c01 = tl.load(rot + 1)
        c10 = tl.load(rot + 2)
        c11 = tl.load(rot + 3)
        y0 = c00 * x0 + c01 * x1
        y1 = c10 * x0 + c11 * x1
        x0 = y0
        x1 = y1
    tl.store(dst + 2 * i, x0.to(dst.dtype.element_ty))
    tl.store(dst + 2 * i + 1, x1.to(dst.dtype.element_ty))


@triton.jit
def _qk_norm_rope_kernel(qkv_ptr, qw_ptr, kw_ptr, rot_ptr, q_ptr, k_ptr, v_ptr,
                         N, H, qs_b, qs_h, qs_n, ks_b, ks_h, ks_n, vs_b, vs_h, vs_n, eps,
                         HD: tl.constexpr, ROPE: tl.constexpr):
    pid = tl.program_id(0)  # one (b, n, h)
    h = pid % H
    r = pid // H
    b = r // N
    n = r % N
    src = qkv_ptr + r.to(tl.int64) * 3 * H * HD + h * 3 * HD
    _one_of_qkv(src, 0, qw_ptr, rot_ptr, q_ptr + b * qs_b + h * qs_h + n * qs_n, n, eps, HD, True, ROPE)
    _one_of_qkv(src, 1, kw_ptr, rot_ptr, k_ptr + b * ks_b + h * ks_h + n * ks_n, n, eps, HD, True, ROPE)
    _one_of_qkv(src, 2, qw_ptr, rot_ptr, v_ptr + b * vs_b + h * vs_h + n * vs_n, n, eps, HD, False, False)


def adaln_layernorm(x, shift, scale, out, eps, taps):
    B, N, D = x.shape
    block = max(16, triton.next_power_of_2(D))
    sh_n = shift.stride(1) if shift.shape[1] != 1 else 0
    sc_n = scale.stride(1) if scale.shape[1] != 1 else 0
    _adaln_kernel[(B * N,)](x, shift, scale, out, N, D, shift.stride(0), sh_n, scale.stride(0), sc_n,
                            float(eps), TAPS=taps, BLOCK_D=block, **TRITON_OPTIONS)
    return out


def swiglu(h, out, taps):
    B, N, F2 = h.shape
    F = F2 // 2
    block = min(1024, max(16, triton.next_power_of_2(F)))
    _swiglu_kernel[(B * N, triton.cdiv(F, block))](h, out, N, F, TAPS=taps, BLOCK=block, **TRITON_OPTIONS)
    return out


def qk_norm_rope(qkv, num_heads, q_weight, k_weight, rot, q, k, v, eps):
    B, N, _ = qkv.shape
    hd = q.shape[-1]
    rot_t = rot.reshape(N, hd // 2, 2, 2).contiguous() if rot is not None else qkv
    _qk_norm_rope_kernel[(B * N * num_heads,)](
        qkv, q_weight, k_weight, rot_t, q, k, v, N, num_heads,
        q.stride(0), q.stride(1), q.stride(2), k.stride(0), k.stride(1), k.stride(2),
        v.stride(0), v.stride(1), v.stride(2), float(eps), HD=hd, ROPE=rot is not None, **TRITON_OPTIONS)
    return q, k, v
