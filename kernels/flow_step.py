"""Triton kernel for the fused flow-matching step (see sonicore.ops.flow_step for the math).

One program handles BLOCK elements of one row; the flags are compile-time constants so each
variant is a branch-free load/compute/store. FMA contraction is disabled at launch so the
result rounds like eager PyTorch (one rounding per product and per sum).
"""
import torch
import triton
import triton.language as tl


@triton.jit
def _flow_step_kernel(out_ptr, x_ptr, vc_ptr, vu_ptr, w_ptr, prev_ptr, store_ptr, dup_ptr,
                      cols, blocks_per_row, out_s, x_s, vc_s, vu_s, prev_s, store_s, dup_s,
                      w, wu, cw, pw, dt,
                      GUIDED: tl.constexpr, W_ROWS: tl.constexpr, PREV: tl.constexpr,
                      STORE: tl.constexpr, COPY: tl.constexpr, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    row = (pid // blocks_per_row).to(tl.int64)
    offs = (pid % blocks_per_row) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < cols
    v = tl.load(vc_ptr + row * vc_s + offs, mask=mask, other=0.0).to(tl.float32)
    if GUIDED:
        u = tl.load(vu_ptr + row * vu_s + offs, mask=mask, other=0.0).to(tl.float32)
        if W_ROWS:
            wr = tl.load(w_ptr + row)
            v = wr * v + (1.0 - wr) * u
        else:
            v = w * v + wu * u
    d = v
    if PREV:
        p = tl.load(prev_ptr + row * prev_s + offs, mask=mask, other=0.0)
        d = cw * v + pw * p
    x = tl.load(x_ptr + row * x_s + offs, mask=mask, other=0.0)
    o = x + dt * d
    if STORE:
        tl.store(store_ptr + row * store_s + offs, v, mask=mask)
    tl.store(out_ptr + row * out_s + offs, o, mask=mask)
    if COPY:
        tl.store(dup_ptr + row * dup_s + offs, o, mask=mask)


def flow_step(out, x, vc, vu, w, wu, w_rows, prev, cw, pw, store, dt, copy_to=None, block=None):
    """out/x/prev/store/copy_to: (B, N) float32; vc/vu: (B, N) float32/16/bf16 with unit column stride."""
    rows, cols = x.shape
    if block is None:
        block = 256 if x.device.type != "cuda" else 2048
    blocks_per_row = triton.cdiv(cols, block)
    grid = (rows * blocks_per_row,)
    guided = vu is not None
    extra = {} if x.device.type != "cuda" else {"enable_fp_fusion": False, "num_warps": 8}
    _flow_step_kernel[grid](
        out, x, vc, vu if guided else vc, w_rows if w_rows is not None else x,
        prev if prev is not None else x, store if store is not None else out,
        copy_to if copy_to is not None else out,
        cols, blocks_per_row, out.stride(0), x.stride(0), vc.stride(0),
        vu.stride(0) if guided else 0, prev.stride(0) if prev is not None else 0,
        store.stride(0) if store is not None else 0, copy_to.stride(0) if copy_to is not None else 0,
        float(w) if w is not None else 1.0, float(wu) if wu is not None else 0.0, float(cw), float(pw), float(dt),
        GUIDED=guided, W_ROWS=w_rows is not None, PREV=prev is not None, STORE=store is not None, COPY=copy_to is not None,
        BLOCK=block, **extra)
    return out
