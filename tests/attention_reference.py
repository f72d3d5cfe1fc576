"""Independent attention reference for the tests: plain torch math, one batch entry at a time,
and the comparison every CPU attention test makes against it.

Written apart from sonicore's own torch backend on purpose (slicing to the valid lengths and
an explicit bottom-right causal mask instead of padded masks), so both are checked.
"""
import math

import numpy as np
import torch


def reference(q, k, v, *, causal=False, scale=None, q_lens=None, kv_lens=None, dtype=torch.float64):
    """q (B, Hq, Nq, D), k/v (B, Hkv, Nk, D) -> (out (B, Hq, Nq, D), lse (B, Hq, Nq)) in `dtype`.

    With dtype float16/bfloat16 every step runs in that dtype (the "framework in low precision"
    error the FlashAttention test rule compares against).
    """
    B, Hq, Nq, D = q.shape
    Hkv, Nk = k.shape[1], k.shape[2]
    scale = 1.0 / math.sqrt(D) if scale is None else scale
    dev = q.device
    out = torch.zeros(B, Hq, Nq, D, dtype=dtype, device=dev)
    lse = torch.full((B, Hq, Nq), float("-inf"), dtype=torch.float64, device=dev)
    for b in range(B):
        ql = Nq if q_lens is None else int(q_lens[b])
        kl = Nk if kv_lens is None else int(kv_lens[b])
        if ql == 0 or kl == 0:
            continue
        qq = q[b, :, :ql].to(dtype)
        kk = k[b, :, :kl].to(dtype).repeat_interleave(Hq // Hkv, dim=0)
        vv = v[b, :, :kl].to(dtype).repeat_interleave(Hq // Hkv, dim=0)
        s = (qq @ kk.transpose(-1, -2)) * scale
        vis = torch.ones(ql, kl, dtype=torch.bool, device=dev)
        if causal:
            vis = vis.tril(kl - ql)
        s = s.masked_fill(~vis, float("-inf"))
        has = vis.any(dim=1)  # rows with at least one visible key
        p = torch.softmax(s, dim=-1).masked_fill(~has[:, None], 0.0)
        out[b, :, :ql] = (p @ vv).to(dtype)
        l64 = torch.logsumexp(s.double(), dim=-1)
        lse[b, :, :ql] = torch.where(has, l64, torch.full_like(l64, float("-inf")))
    return out, lse


def random_qkv(rng, B, Hq, Hkv, Nq, Nk, D, dtype=torch.float32):
    """Fresh standard-normal q (B, Hq, Nq, D), k and v (B, Hkv, Nk, D) from a numpy Generator."""
    t = lambda *s: torch.from_numpy(rng.standard_normal(s).astype(np.float32)).to(dtype)
    return t(B, Hq, Nq, D), t(B, Hkv, Nk, D), t(B, Hkv, Nk, D)


def assert_close_to_reference(out, lse, q, k, v, **kw):
    """out (and lse, unless None) against the float64 reference of q, k, v with the reference's
    keyword arguments. float32: max error <= 2e-5 x max(1, max |ref|); float16 / bfloat16: at most
    2x the error of torch computing in that dtype, + 1e-6 (the FlashAttention test rule). lse:
    -inf exactly where the reference's is, else within 1e-4. Returns the max error of out."""
    ref, ref_lse = reference(q, k, v, **kw)
    err = (out.double() - ref).abs().max().item()
    if q.dtype == torch.float32:
        assert err <= 2e-5 * max(1.0, ref.abs().max().item()), err
    else:
        low, _ = reference(q, k, v, dtype=q.dtype, **kw)
        err_torch = (low.double() - ref).abs().max().item()
        assert err <= 2 * err_torch + 1e-6, (err, err_torch)
    if lse is not None:
        assert torch.equal(torch.isneginf(lse), torch.isneginf(ref_lse))
        fin = torch.isfinite(ref_lse)
        if fin.any():
            assert (lse.double()[fin] - ref_lse[fin]).abs().max().item() <= 1e-4
    return err
