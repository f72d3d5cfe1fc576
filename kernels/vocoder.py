"""Triton kernel of BigVGAN's anti-aliased Snake (see sonicore.ops.vocoder for the math and shapes).

One program computes BLOCK output samples of one (batch, channel) row. Each output needs 12 samples of
the Snake-activated, 2x-upsampled signal s around position 2p; each of those is recomputed from the 6
input samples its polyphase branch reads (loads hit L1/L2), so no intermediate touches global memory.
Computes in float32, stores in the output's dtype.
"""
import triton
import triton.language as tl

from sonicore._backend import TRITON_OPTIONS


@triton.jit
def _aa_snake_kernel(x_ptr, out_ptr, alpha_ptr, ib_ptr, up_ptr, down_ptr, T, C, BLOCK: tl.constexpr):
    r = tl.program_id(0)
    pid = tl.program_id(1)
    c = r % C
    a = tl.load(alpha_ptr + c).to(tl.float32)
    ib = tl.load(ib_ptr + c).to(tl.float32)
    p = pid * BLOCK + tl.arange(0, BLOCK)
    mask = p < T
    row = x_ptr + r.to(tl.int64) * T
    acc = tl.zeros([BLOCK], dtype=tl.float32)
    for k in tl.static_range(12):
        g = tl.load(down_ptr + k).to(tl.float32)
        # position of s read by tap k, replicate-padded at both ends
        m = tl.minimum(tl.maximum(2 * p + (k - 5), 0), 2 * T - 1)
        h = m // 2
        par = m - 2 * h
        u = tl.zeros([BLOCK], dtype=tl.float32)
        for q in tl.static_range(6):
            f_even = tl.load(up_ptr + 2 * q + 1).to(tl.float32)
            f_odd = tl.load(up_ptr + 2 * q).to(tl.float32)
            idx = tl.minimum(tl.maximum(h + 2 + par - q, 0), T - 1)
            xv = tl.load(row + idx, mask=mask, other=0.0).to(tl.float32)
            u += tl.where(par == 1, f_odd, f_even) * xv
        u = 2.0 * u
        sv = tl.sin(a * u)
        acc += g * (u + ib * sv * sv)
    tl.store(out_ptr + r.to(tl.int64) * T + p, acc.to(out_ptr.dtype.element_ty), mask=mask)


def anti_aliased_snake(x, alpha, inv_beta, up_filter, down_filter, out, block=256):
    """x, out: contiguous (B, C, T); alpha, inv_beta: (C,) float32; filters: (12,) float32."""
    B, C, T = x.shape
    if B * C == 0:
        return out
    grid = (B * C, triton.cdiv(T, block))
    _aa_snake_kernel[grid](x, out, alpha, inv_beta, up_filter, down_filter, T, C, BLOCK=block, **TRITON_OPTIONS)
    return out
