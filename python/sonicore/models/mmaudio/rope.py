"""Rotary position tables of the MMAudio network (adjacent channel pairs, float32)."""
from __future__ import annotations

import torch


def rope_table(length: int, head_dim: int, *, scale: float = 1.0, theta: float = 10000.0,
               device=None) -> torch.Tensor:
    """RoPE table for positions 0..length-1, shape (1, length, head_dim/2, 2, 2), float32.

    Pair i of a position p is rotated by angle p*scale*theta^(-2i/head_dim); the table holds
    [[cos, -sin], [sin, cos]]. The clip stream uses scale = latent_len / clip_len so that clip
    frames land on the latent time axis ("aligned RoPE").
    """
    if head_dim % 2:
        raise ValueError(f"RoPE needs an even head dim, got {head_dim}")
    # float32 throughout, in the order the original rounds: reciprocal of theta^(2i/hd), then scale.
    freqs = 1.0 / (theta ** (torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim))
    freqs = freqs * scale
    pos = torch.arange(length, device=device, dtype=torch.float32)
    ang = torch.outer(pos, freqs)
    cos, sin = torch.cos(ang), torch.sin(ang)
    return torch.stack([cos, -sin, sin, cos], dim=-1).view(1, length, head_dim // 2, 2, 2)
