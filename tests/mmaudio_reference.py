"""Plain-PyTorch reference of the MMAudio flow network, written the straightforward way.

It shares no code with sonicore.models.mmaudio: nn.Conv1d on transposed activations, separate gate
projections, the qkv layout undone with view/permute, RMSNorm/LayerNorm modules, RoPE from a table,
torch SDPA on concatenated tokens. The tests check our network against it at sizes the goldens do not
cover, and bench/bench_mmaudio.py times our network against it. It loads the same state dicts.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def _width(hint):
    return 256 * math.ceil(int(2 * hint / 3) / 256)


class RefConv(nn.Conv1d):
    """Conv1d taking and returning (B, N, C)."""

    def forward(self, x):
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


class RefGatedConv(nn.Module):
    def __init__(self, d, h, k):
        super().__init__()
        self.w1 = RefConv(d, h, k, padding=k // 2, bias=False)
        self.w2 = RefConv(h, d, k, padding=k // 2, bias=False)
        self.w3 = RefConv(d, h, k, padding=k // 2, bias=False)

    def forward(self, x):
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class RefGated(nn.Module):
    def __init__(self, d, h):
        super().__init__()
        self.w1 = nn.Linear(d, h, bias=False)
        self.w2 = nn.Linear(h, d, bias=False)
        self.w3 = nn.Linear(d, h, bias=False)

    def forward(self, x):
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


def ref_rope(n, hd, scale=1.0):
    inv = 1.0 / (10000 ** (torch.arange(0, hd, 2).float() / hd)) * scale
    ang = torch.arange(n).float()[:, None] * inv[None]
    return torch.cos(ang), torch.sin(ang)  # (n, hd/2) each


def ref_apply_rope(x, cs):
    cos, sin = cs
    xf = x.float()
    x0, x1 = xf[..., 0::2], xf[..., 1::2]
    out = torch.stack([cos * x0 - sin * x1, sin * x0 + cos * x1], dim=-1).flatten(-2)
    return out.to(x.dtype)


class RefAttn(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(d, 3 * d)
        self.q_norm = nn.RMSNorm(d // heads)
        self.k_norm = nn.RMSNorm(d // heads)

    def forward(self, x, cs):
        B, N, D = x.shape
        qkv = self.qkv(x).view(B, N, self.heads, D // self.heads, 3)
        q, k, v = [qkv[..., j].transpose(1, 2) for j in range(3)]
        q, k = self.q_norm(q), self.k_norm(k)
        if cs is not None:
            q, k = ref_apply_rope(q, cs), ref_apply_rope(k, cs)
        return q, k, v


class RefStream(nn.Module):
    def __init__(self, d, heads, h, pre_only=False, conv=True):
        super().__init__()
        self.pre_only = pre_only
        self.norm = nn.LayerNorm(d, elementwise_affine=False)
        self.attn = RefAttn(d, heads)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(d, (2 if pre_only else 6) * d))
        if not pre_only:
            self.linear1 = RefConv(d, d, 3, padding=1) if conv else nn.Linear(d, d)
            self.ffn = RefGatedConv(d, h, 3) if conv else RefGated(d, h)

    def pre(self, x, c, cs):
        m = self.adaLN_modulation(c).chunk(2 if self.pre_only else 6, dim=-1)
        return self.attn(self.norm(x) * (1 + m[1]) + m[0], cs), m

    def post(self, x, o, m):
        if self.pre_only:
            return x
        x = x + self.linear1(o) * m[2]
        return x + self.ffn(self.norm(x) * (1 + m[4]) + m[3]) * m[5]


def ref_joint(streams, xs, cs, ropes):
    qkvs, mods = zip(*[s.pre(x, c, r) for s, x, c, r in zip(streams, xs, cs, ropes)])
    q, k, v = [torch.cat([t[j] for t in qkvs], dim=2) for j in range(3)]
    o = F.scaled_dot_product_attention(q, k, v)
    o = o.transpose(1, 2).flatten(2)
    out, start = [], 0
    for s, x, m in zip(streams, xs, mods):
        n = x.shape[1]
        out.append(s.post(x, o[:, start:start + n], m))
        start += n
    return out


class RefJoint(nn.Module):
    def __init__(self, d, heads, h, pre_only):
        super().__init__()
        self.latent_block = RefStream(d, heads, h)
        self.clip_block = RefStream(d, heads, h, pre_only)
        self.text_block = RefStream(d, heads, h, pre_only, conv=False)


class RefFused(RefStream):
    pass


class RefFinal(nn.Module):
    def __init__(self, d, out):
        super().__init__()
        self.norm = nn.LayerNorm(d, elementwise_affine=False)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(d, 2 * d))
        self.conv = RefConv(d, out, 7, padding=3)

    def forward(self, x, c):
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=-1)
        return self.conv(self.norm(x) * (1 + scale) + shift)


class RefTEmbed(nn.Module):
    def __init__(self, d, f, max_period):
        super().__init__()
        self.f, self.max_period = f, max_period
        self.mlp = nn.Sequential(nn.Linear(f, d), nn.SiLU(), nn.Linear(d, d))

    def forward(self, t):
        freqs = (10000 / self.max_period) * (1.0 / (10000 ** (torch.arange(0, self.f, 2).float() / self.f)))
        a = t.float()[:, None] * freqs.to(t.device)[None]
        return self.mlp(torch.cat([torch.cos(a), torch.sin(a)], -1).to(self.mlp[0].weight.dtype))


class ReferenceMMAudio(nn.Module):
    """Same constructor arguments as MMAudioConfig's fields; forward(x_t, clip, sync, text[, x_mix], t)."""

    def __init__(self, latent_dim=20, clip_dim=1024, sync_dim=768, text_dim=1024, hidden_dim=448, depth=12,
                 fused_depth=8, num_heads=7, mlp_ratio=4.0, text_seq_len=77, v2=False, separation=False, **_):
        super().__init__()
        d = hidden_dim
        self.sep, self.heads, self.d = separation, num_heads, d
        hin = _width(4 * d)
        act = nn.SiLU if v2 else nn.SELU
        self.audio_input_proj = nn.Sequential(RefConv(latent_dim * (2 if separation else 1), d, 7, padding=3),
                                              act(), RefGatedConv(d, hin, 7))
        mid = [nn.SiLU()] if v2 else []
        self.clip_input_proj = nn.Sequential(nn.Linear(clip_dim, d), *mid, RefGatedConv(d, hin, 3))
        self.text_input_proj = nn.Sequential(nn.Linear(text_dim, d), *mid, RefGated(d, hin))
        self.sync_input_proj = nn.Sequential(RefConv(sync_dim, d, 7, padding=3), act(), RefGatedConv(d, hin, 3))
        self.clip_cond_proj = nn.Linear(d, d)
        self.text_cond_proj = nn.Linear(d, d)
        self.global_cond_mlp = RefGated(d, hin)
        self.t_embed = RefTEmbed(d, d, 1) if v2 else RefTEmbed(d, 256, 10000)
        h = _width(int(mlp_ratio * d))
        nj = depth - fused_depth
        self.joint_blocks = nn.ModuleList(RefJoint(d, num_heads, h, i == nj - 1) for i in range(nj))
        self.fused_blocks = nn.ModuleList(RefFused(d, num_heads, h) for _ in range(fused_depth))
        self.final_layer = RefFinal(d, latent_dim)
        self.sync_pos_emb = nn.Parameter(torch.zeros(1, 1, 8, sync_dim))
        self.empty_string_feat = nn.Parameter(torch.zeros(text_seq_len, text_dim))
        self.empty_clip_feat = nn.Parameter(torch.zeros(1, clip_dim))
        self.empty_sync_feat = nn.Parameter(torch.zeros(1, sync_dim))
        self.latent_mean = nn.Parameter(torch.zeros(1, 1, latent_dim))
        self.latent_std = nn.Parameter(torch.ones(1, 1, latent_dim))

    def preprocess(self, clip, sync, text, n):
        B, S, _ = sync.shape
        sync = (sync.view(B, S // 8, 8, -1) + self.sync_pos_emb).flatten(1, 2)
        sync = self.sync_input_proj(sync)
        sync = F.interpolate(sync.transpose(1, 2), size=n, mode="nearest-exact").transpose(1, 2)
        clip = self.clip_input_proj(clip)
        text = self.text_input_proj(text)
        return clip, sync, text, self.clip_cond_proj(clip.mean(1)), self.text_cond_proj(text.mean(1))

    def predict_flow(self, x, t, clip, sync, text, clip_c, text_c, x_mix=None):
        if self.sep:
            x = torch.cat([x, x_mix], -1)
        n, nc = x.shape[1], clip.shape[1]
        hd = self.d // self.heads
        lat_cs, clip_cs = ref_rope(n, hd), ref_rope(nc, hd, n / nc)
        lat_cs = tuple(a.to(x.device) for a in lat_cs)
        clip_cs = tuple(a.to(x.device) for a in clip_cs)
        latent = self.audio_input_proj(x)
        g = (self.t_embed(t) + self.global_cond_mlp(clip_c + text_c))[:, None]
        ext = g + sync
        for blk in self.joint_blocks:
            latent, clip, text = ref_joint((blk.latent_block, blk.clip_block, blk.text_block),
                                           (latent, clip, text), (ext, g, g), (lat_cs, clip_cs, None))
        for blk in self.fused_blocks:
            latent = ref_joint((blk,), (latent,), (ext,), (lat_cs,))[0]
        return self.final_layer(latent, g)

    def forward(self, x, clip, sync, text, *rest):
        x_mix, t = (rest[0], rest[1]) if self.sep else (None, rest[0])
        return self.predict_flow(x, t, *self.preprocess(clip, sync, text, x.shape[1]), x_mix=x_mix)
