"""The one place the MMAudio network calls attention (switches to sonicore.ops.attention when present)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def joint_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Full (unmasked) scaled-dot-product attention, scale 1/sqrt(hd).

    q, k, v: (B, H, L, hd) with L = the concatenated [latent, clip, text] tokens. Returns (B, H, L, hd).
    """
    return F.scaled_dot_product_attention(q, k, v)
