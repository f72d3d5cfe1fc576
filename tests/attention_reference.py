"""Independent attention reference for the tests: plain torch math, one batch entry at a time.

Written apart from sonicore's own torch backend on purpose (slicing to the valid lengths and
an explicit bottom-right causal mask instead of padded masks), so both are checked.
"""
import math

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
