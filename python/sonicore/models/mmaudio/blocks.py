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
        """rot: None, one (1, N, hd/2, 2, 2) table, or a list of B such tables (one per batch row:
        padded batches whose rows have their own clip/latent length ratio)."""
        if isinstance(rot, (list, tuple)):
            for b, r in enumerate(rot):
                self.pre_attention(x[b:b + 1], tuple(m[b:b + 1] for m in mod), r,
                                   out=tuple(d[b:b + 1] for d in out))
            return out
        h = nnops.adaln_layernorm(x, mod[0], mod[1])
        return self.attn(h, rot, out)

    def post_attention(self, x: torch.Tensor, o: torch.Tensor, mod, valid=None) -> torch.Tensor:
        """o: this stream's attention output (B, H, N, hd). valid: None or the ValidFrames of a padded
        batch: the convolutions read zeros past each row's end, so no padded frame leaks into a valid one."""
        if self.pre_only:
            return x
        _, _, gate_msa, shift_mlp, scale_mlp, gate_mlp = mod
        if self.taps > 1 and self.linear1.use_winograd(x):
            # Winograd convolutions (float32 CPU): producers write plain (B, N, C) frames, the input
            # transforms read zeros past each row's end, the gated residuals run in the output transforms.
            lens = None if valid is None else valid.lens
            x = self.linear1.winograd(nnops.merge_heads(o), lens=lens, residual=x, gate=gate_msa)
            h = nnops.adaln_layernorm(x, shift_mlp, scale_mlp)
            return self.ffn.winograd(h, lens=lens, residual=x, gate=gate_mlp)
        if valid is not None and self.taps > 1:
            k = self.taps
            x = torch.addcmul(x, self.linear1(valid.mask_taps(nnops.merge_heads(o, taps=k), k), tapped=True),
                              gate_msa)
            h = valid.mask_taps(nnops.adaln_layernorm(x, shift_mlp, scale_mlp, taps=k), k)
            return torch.addcmul(x, self.ffn(h, tapped=True, valid=valid), gate_mlp)
        # Producers write straight into the im2col layout the next (kernel-3) projection reads.
        a = nnops.merge_heads(o, taps=self.taps)
        proj = self.linear1(a, tapped=True) if self.taps > 1 else self.linear1(a)
        x = torch.addcmul(x, proj, gate_msa)
        h = nnops.adaln_layernorm(x, shift_mlp, scale_mlp, taps=self.taps)
        return torch.addcmul(x, self.ffn(h, tapped=self.taps > 1), gate_mlp)


def _run_streams(streams, xs, mods, rots, valids=None):
    """Joint attention over the concatenated streams; returns the updated streams.
    mods: each stream's adaLN modulation output (B, 1 or N, 2D or 6D).
    valids: for a padded batch, each stream's ValidFrames (None: a stream without padding)."""
    mods = [s.modulation(m) for s, m in zip(streams, mods)]
    x0 = xs[0]
    B = x0.shape[0]
    H = streams[0].attn.num_heads
    hd = streams[0].dim // H
    n_streams = [x.shape[1] for x in xs]
    total = sum(n_streams)
    # q/k/v of every stream are written straight into one joint buffer: no concatenation copies.
    buf = x0.new_empty(3, B, H, total, hd)
    start = 0
    for s, x, m, r, n in zip(streams, xs, mods, rots, n_streams):
        dst = tuple(buf[j, :, :, start:start + n] for j in range(3))
        s.pre_attention(x, m, r, out=dst)
        start += n
    # When the clip/text streams are pre-only their queries would be thrown away: skip them.
    nq = n_streams[0] if len(streams) > 1 and all(s.pre_only for s in streams[1:]) else total
    k, v, kv_lens = buf[1], buf[2], None
    valids = valids or [None] * len(streams)
    if any(vf is not None for vf in valids):
        lens = [vf.list if vf is not None else [n] * B for vf, n in zip(valids, n_streams)]
        k, v, kv_lens = _pack_valid_keys(buf, n_streams, lens)
    o = joint_attention(buf[0, :, :, :nq], k, v, kv_lens)
    outs = []
    start = 0
    for s, x, m, n, vf in zip(streams, xs, mods, n_streams, valids):
        outs.append(s.post_attention(x, o[:, :, start:start + n], m, vf) if not s.pre_only else x)
        start += n
    return outs


def _pack_valid_keys(buf, n_streams, lens):
    """Keys/values of a padded batch, each row's valid tokens moved to the front in stream order
    ([latent_b | clip_b | text]), so that the attention's per-row key count masks exactly the padding
    (the joint layout [latent | clip | text] has padding in the middle, which a key count cannot mask).

    buf (3, B, H, L, hd) in the padded layout (stream s occupies n_streams[s] slots); lens[s][b] the
    valid tokens of stream s in row b. Returns k, v (B, H, L, hd) and kv_lens (B,) int32. A single
    stream is already a prefix: no copy."""
    if len(n_streams) == 1:
        return buf[1], buf[2], torch.as_tensor(lens[0], dtype=torch.int32)
    B, H, L, hd = buf.shape[1:]
    src = torch.zeros(B, L, dtype=torch.long)  # slots past a row's keys read slot 0: never attended
    kv_lens = []
    for b in range(B):
        idx = torch.cat([torch.arange(start, start + ln[b])
                         for start, ln in zip(torch.tensor([0] + n_streams[:-1]).cumsum(0).tolist(), lens)])
        src[b, :len(idx)] = idx
        kv_lens.append(len(idx))
    # One gather for k and v of every row.
    index = src.to(buf.device)[None, :, None, :, None].expand(2, B, H, L, hd)
    kv = torch.gather(buf[1:], 3, index)
    return kv[0], kv[1], torch.as_tensor(kv_lens, dtype=torch.int32)


class JointBlock(nn.Module):
    """Joint attention over [latent, clip, text]; pre_only makes the clip and text streams supply
    keys and values only (the last joint block of the original)."""

    def __init__(self, dim: int, num_heads: int, ffn_hidden: int, *, pre_only: bool):
        super().__init__()
        self.latent_block = StreamBlock(dim, num_heads, ffn_hidden, kernel_size=3)
        self.clip_block = StreamBlock(dim, num_heads, ffn_hidden, pre_only=pre_only, kernel_size=3)
        self.text_block = StreamBlock(dim, num_heads, ffn_hidden, pre_only=pre_only, kernel_size=None)

    def forward(self, latent, clip_f, text_f, mods, latent_rot, clip_rot, pad=None):
        """mods: the (latent, clip, text) adaLN modulation outputs. pad: None, or for a padded batch
        the (latent, clip) ValidFrames."""
        return tuple(_run_streams((self.latent_block, self.clip_block, self.text_block),
                                  (latent, clip_f, text_f), mods, (latent_rot, clip_rot, None),
                                  None if pad is None else (pad[0], pad[1], None)))


class FusedBlock(StreamBlock):
    """Single-stream block on the audio latent (convolutional, modulated per token)."""

    def __init__(self, dim: int, num_heads: int, ffn_hidden: int):
        super().__init__(dim, num_heads, ffn_hidden, kernel_size=3)

    def forward(self, x, mod, rot, valid=None):
        """mod: this block's adaLN modulation output (B, N, 6D). valid: ValidFrames of a padded batch."""
        return _run_streams((self,), (x,), (mod,), (rot,), None if valid is None else [valid])[0]


class FinalLayer(nn.Module):
    """LN -> adaLN (shift, scale from the global condition) -> conv k7 to the latent channels."""

    def __init__(self, dim: int, out_dim: int):
        super().__init__()
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))
        self.conv = ChannelLastConv1d(dim, out_dim, 7)

    def forward(self, x: torch.Tensor, mod: torch.Tensor, valid=None) -> torch.Tensor:
        """mod: adaLN_modulation(global_c), (B, 1, 2D). valid: None or the ValidFrames of a padded
        batch (the output is zero on padding)."""
        shift, scale = mod.chunk(2, dim=-1)
        h = nnops.adaln_layernorm(x, shift, scale, taps=7)
        if valid is not None:
            return self.conv(valid.mask_taps(h, 7), tapped=True) * valid.frames
        return self.conv(h, tapped=True)
