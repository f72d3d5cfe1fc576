"""Transformer blocks of the MMAudio network: one stream block, joint blocks, the final layer.

Shapes: B batch, N tokens of a stream, D hidden, H heads, hd = D/H.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import nn

from ...ops import nn as nnops
from .attention import joint_attention
from .layers import ChannelLastConv1d, GatedFeedForward


class SelfAttentionProj(nn.Module):
    """The fused, interleaved qkv projection with q/k RMSNorm (weights only; math in ops.qk_norm_rope)."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        hd = dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=True)
        self.q_norm = nn.RMSNorm(hd)
        self.k_norm = nn.RMSNorm(hd)

    def forward(self, x: torch.Tensor, rot: Optional[torch.Tensor], out=None):
        return nnops.qk_norm_rope(self.qkv(x), self.num_heads, self.q_norm.weight, self.k_norm.weight,
                                  rot, out=out)


class StreamBlock(nn.Module):
    """One stream of a block: adaLN-modulated attention input, then (unless pre_only) the output
    projection and gated feed-forward, each added back through its gate.

    kernel_size 3 gives convolutional proj/FFN (audio, clip, fused blocks); None gives linear (text).
    """

    def __init__(self, dim: int, num_heads: int, ffn_hidden: int, *, pre_only: bool = False,
                 kernel_size: Optional[int] = 3):
        super().__init__()
        self.pre_only = pre_only
        self.dim = dim
        self.taps = kernel_size or 1
        self.attn = SelfAttentionProj(dim, num_heads)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, (2 if pre_only else 6) * dim))
        if not pre_only:
            if kernel_size is None:
                self.linear1 = nn.Linear(dim, dim)
            else:
                self.linear1 = ChannelLastConv1d(dim, dim, kernel_size)
            self.ffn = GatedFeedForward(dim, ffn_hidden, kernel_size)

    def modulation(self, mod: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """mod = adaLN_modulation(c), (B, 1 or N, 2D or 6D) (the network computes every block's in one
        GEMM) -> shift_msa, scale_msa[, gate_msa, shift_mlp, scale_mlp, gate_mlp]."""
        return mod.chunk(2 if self.pre_only else 6, dim=-1)

    def pre_attention(self, x: torch.Tensor, mod, rot, out=None):
        h = nnops.adaln_layernorm(x, mod[0], mod[1])
        return self.attn(h, rot, out)

    def post_attention(self, x: torch.Tensor, o: torch.Tensor, mod) -> torch.Tensor:
        """o: this stream's attention output (B, H, N, hd)."""
        if self.pre_only:
            return x
        _, _, gate_msa, shift_mlp, scale_mlp, gate_mlp = mod
        # Producers write straight into the im2col layout the next (kernel-3) projection reads.
        a = nnops.merge_heads(o, taps=self.taps)
        proj = self.linear1(a, tapped=True) if self.taps > 1 else self.linear1(a)
        x = torch.addcmul(x, proj, gate_msa)
        h = nnops.adaln_layernorm(x, shift_mlp, scale_mlp, taps=self.taps)
        return torch.addcmul(x, self.ffn(h, tapped=self.taps > 1), gate_mlp)


def _run_streams(streams, xs, mods, rots):
    """Joint attention over the concatenated streams; returns the updated streams.
    mods: each stream's adaLN modulation output (B, 1 or N, 2D or 6D)."""
    mods = [s.modulation(m) for s, m in zip(streams, mods)]
    x0 = xs[0]
    B = x0.shape[0]
    H = streams[0].attn.num_heads
    hd = streams[0].dim // H
    lens = [x.shape[1] for x in xs]
    total = sum(lens)
    # q/k/v of every stream are written straight into one joint buffer: no concatenation copies.
    buf = x0.new_empty(3, B, H, total, hd)
    start = 0
    for s, x, m, r, n in zip(streams, xs, mods, rots, lens):
        dst = tuple(buf[j, :, :, start:start + n] for j in range(3))
        s.pre_attention(x, m, r, out=dst)
        start += n
    # When the clip/text streams are pre-only their queries would be thrown away: skip them.
    nq = lens[0] if len(streams) > 1 and all(s.pre_only for s in streams[1:]) else total
    o = joint_attention(buf[0, :, :, :nq], buf[1], buf[2])
    outs = []
    start = 0
    for s, x, m, n in zip(streams, xs, mods, lens):
        outs.append(s.post_attention(x, o[:, :, start:start + n], m) if not s.pre_only else x)
        start += n
    return outs


class JointBlock(nn.Module):
    """Joint attention over [latent, clip, text]; pre_only makes the clip and text streams supply
    keys and values only (the last joint block of the original)."""

    def __init__(self, dim: int, num_heads: int, ffn_hidden: int, *, pre_only: bool):
        super().__init__()
        self.latent_block = StreamBlock(dim, num_heads, ffn_hidden, kernel_size=3)
        self.clip_block = StreamBlock(dim, num_heads, ffn_hidden, pre_only=pre_only, kernel_size=3)
        self.text_block = StreamBlock(dim, num_heads, ffn_hidden, pre_only=pre_only, kernel_size=None)

    def forward(self, latent, clip_f, text_f, mods, latent_rot, clip_rot):
        """mods: the (latent, clip, text) adaLN modulation outputs."""
        return tuple(_run_streams((self.latent_block, self.clip_block, self.text_block),
                                  (latent, clip_f, text_f), mods, (latent_rot, clip_rot, None)))


class FusedBlock(StreamBlock):
    """Single-stream block on the audio latent (convolutional, modulated per token)."""

    def __init__(self, dim: int, num_heads: int, ffn_hidden: int):
        super().__init__(dim, num_heads, ffn_hidden, kernel_size=3)

    def forward(self, x, mod, rot):
        """mod: this block's adaLN modulation output (B, N, 6D)."""
        return _run_streams((self,), (x,), (mod,), (rot,))[0]


class FinalLayer(nn.Module):
    """LN -> adaLN (shift, scale from the global condition) -> conv k7 to the latent channels."""

    def __init__(self, dim: int, out_dim: int):
        super().__init__()
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))
        self.conv = ChannelLastConv1d(dim, out_dim, 7)

    def forward(self, x: torch.Tensor, mod: torch.Tensor) -> torch.Tensor:
        """mod: adaLN_modulation(global_c), (B, 1, 2D)."""
        shift, scale = mod.chunk(2, dim=-1)
        return self.conv(nnops.adaln_layernorm(x, shift, scale, taps=7), tapped=True)
