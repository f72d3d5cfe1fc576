"""Timestep embedding of the MMAudio network."""
from __future__ import annotations

import torch
from torch import nn


def timestep_frequencies(dim: int, max_period: float) -> torch.Tensor:
    """(dim/2,) float32 frequencies: (10000/max_period) * 1/10000^(2i/dim), rounded like the original."""
    base = 1.0 / (10000 ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
    return (10000 / max_period) * base


class TimestepEmbedder(nn.Module):
    """t (B,) in [0, 1] -> (B, D): [cos(t*f), sin(t*f)] -> Linear -> SiLU -> Linear.

    v1: frequency width 256, max period 10000. v2: width = hidden_dim, max period 1 (frequencies reach
    10000, so the float32 arithmetic is kept exactly as the original does it).
    """

    def __init__(self, dim: int, frequency_dim: int, max_period: float):
        super().__init__()
        self.frequency_dim = frequency_dim
        self.max_period = max_period
        self.mlp = nn.Sequential(nn.Linear(frequency_dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.register_buffer("freqs", timestep_frequencies(frequency_dim, max_period), persistent=False)

    def _apply(self, fn, recurse=True):
        # The frequency table stays float32 whatever dtype the weights move to.
        out = super()._apply(fn, recurse)
        self.freqs = timestep_frequencies(self.frequency_dim, self.max_period).to(self.mlp[0].weight.device)
        return out

    def sinusoid(self, t: torch.Tensor) -> torch.Tensor:
        args = t.float()[:, None] * self.freqs[None]
        return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.sinusoid(t).to(self.mlp[0].weight.dtype))
