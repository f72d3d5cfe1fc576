"""The one place the MMAudio network calls attention: sonicore.ops.attention (C++ / CUDA / Triton
kernels), joint over the concatenated [latent, clip, text] tokens in one call."""
from __future__ import annotations

import torch

from ...ops import attention as _attention


def joint_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, kv_lens=None) -> torch.Tensor:
    """Full (unmasked) scaled-dot-product attention, scale 1/sqrt(hd).

    q (B, H, Lq, hd); k, v (B, H, L, hd) with L = the concatenated [latent, clip, text] tokens (Lq <= L:
    queries of streams whose output is discarded are left out). kv_lens: optional (B,) valid key counts.
    Returns (B, H, Lq, hd).
    """
    return _attention(q, k, v, kv_lens=kv_lens)
