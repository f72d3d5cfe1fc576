"""The MMAudio 1-D mel VAE (EDM2-style magnitude-preserving, bias-free), encoder and decoder.

Independent implementation from the published description. Checkpoint layout: the official
v1-16.pth (80 mel bins, 20 latent channels) / v1-44.pth (128 bins, 40 channels) with keys
encoder.* / decoder.* / data_mean / data_std (the per-bin mel normalisation statistics). Raw weights are
magnitude-normalised once at load time (what the original's remove_weight_norm does), so inference is
plain convolutions.

Shapes are channel-first: mel (B, n_mels, T) with T = 2 * N; latent (B, latent_dim, N).
"""
from __future__ import annotations

import math
import os
import re
from typing import Mapping, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

CLAMP = 256.0
_EPS = 1e-4


def mp_silu(x: torch.Tensor) -> torch.Tensor:
    """SiLU scaled back to unit magnitude."""
    return F.silu(x) / 0.596


def mp_sum(a: torch.Tensor, b: torch.Tensor, t: float = 0.3) -> torch.Tensor:
    """Magnitude-preserving blend; a is the skip path."""
    return torch.lerp(a, b, t) / math.sqrt((1 - t) ** 2 + t ** 2)


def pixel_norm(x: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """x / (eps + RMS over `dim`), the norm taken in float32."""
    n = torch.linalg.vector_norm(x.float(), dim=dim, keepdim=True)
    n = _EPS + n * (1.0 / math.sqrt(x.shape[dim]))
    return x / n.to(x.dtype)


def normalized_weight(w: torch.Tensor, gain: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Raw MPConv weight (out, in, k) -> the weight inference uses: each output channel scaled to unit
    norm per input element, then divided by sqrt(fan_in); times gain when given. float32 arithmetic."""
    wf = w.float()
    fan_in = wf[0].numel()
    n = torch.linalg.vector_norm(wf.flatten(1), dim=1).view(-1, *([1] * (wf.dim() - 1)))
    wf = wf / (_EPS + n / math.sqrt(fan_in))
    wf = wf / math.sqrt(fan_in)
    if gain is not None:
        wf = wf * gain.float()
    return wf.to(w.dtype)


class MPConv(nn.Module):
    """Bias-free conv1d, padding k//2, holding the normalised weight."""

    def __init__(self, cin: int, cout: int, k: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(cout, cin, k), requires_grad=False)

    def forward(self, x):
        return F.conv1d(x, self.weight, padding=self.weight.shape[-1] // 2)


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, k: int = 3):
        super().__init__()
        self.conv1 = MPConv(cin, cout, k)
        self.conv2 = MPConv(cout, cout, k)
        self.nin_shortcut = MPConv(cin, cout, 1) if cin != cout else None

    def forward(self, x):
        x = pixel_norm(x)
        h = self.conv2(mp_silu(self.conv1(mp_silu(x))))
        skip = x if self.nin_shortcut is None else self.nin_shortcut(x)
        return mp_sum(skip, h)


class Attention(nn.Module):
    """Single-head self-attention over time; qkv channels interleaved as (C, 3)."""

    def __init__(self, c: int):
        super().__init__()
        self.qkv = MPConv(c, 3 * c, 1)
        self.proj_out = MPConv(c, c, 1)

    def forward(self, x):
        B, C, T = x.shape
        q, k, v = self.qkv(x).view(B, C, 3, T).unbind(2)
        q, k, v = (pixel_norm(t).transpose(1, 2)[:, None] for t in (q, k, v))  # (B, 1, T, C)
        y = F.scaled_dot_product_attention(q, k, v)[:, 0].transpose(1, 2)
        return mp_sum(x, self.proj_out(y))


class Mid(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.block_1 = ResBlock(c, c)
        self.attn_1 = Attention(c)
        self.block_2 = ResBlock(c, c)

    def forward(self, x):
        return self.block_2(self.attn_1(self.block_1(x)))


class _Down(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv1 = MPConv(c, c, 1)
        self.conv2 = MPConv(c, c, 1)

    def forward(self, x):
        return self.conv2(F.avg_pool1d(self.conv1(x), 2))


class _Up(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = MPConv(c, c, 3)

    def forward(self, x):
        return self.conv(torch.repeat_interleave(x, 2, dim=-1))


class _Level(nn.Module):
    def __init__(self, blocks, resample=None, name=None):
        super().__init__()
        self.block = nn.ModuleList(blocks)
        if resample is not None:
            setattr(self, name, resample)
        self._resample = name if resample is not None else None

    def forward(self, x):
        for b in self.block:
            x = b(x).clamp(-CLAMP, CLAMP)
        if self._resample is not None:
            x = getattr(self, self._resample)(x)
        return x


class Encoder(nn.Module):
    def __init__(self, data_dim, embed_dim, hidden, ch_mult, num_res_blocks, down_layers):
        super().__init__()
        self.conv_in = MPConv(data_dim, hidden, 3)
        levels, c = [], hidden
        for i, m in enumerate(ch_mult):
            blocks = []
            for _ in range(num_res_blocks):
                blocks.append(ResBlock(c, hidden * m))
                c = hidden * m
            levels.append(_Level(blocks, _Down(c) if i in down_layers else None, "downsample"))
        self.down = nn.ModuleList(levels)
        self.mid = Mid(c)
        self.conv_out = MPConv(c, 2 * embed_dim, 3)
        self.learnable_gain = nn.Parameter(torch.zeros([]), requires_grad=False)

    def forward(self, x):
        x = self.conv_in(x)
        for lvl in self.down:
            x = lvl(x)
        x = self.mid(x).clamp(-CLAMP, CLAMP)
        return self.conv_out(mp_silu(x))


class Decoder(nn.Module):
    def __init__(self, data_dim, embed_dim, hidden, ch_mult, num_res_blocks, down_layers):
        super().__init__()
        c = hidden * ch_mult[-1]
        self.conv_in = MPConv(embed_dim, c, 3)
        self.mid = Mid(c)
        levels = [None] * len(ch_mult)
        for i in reversed(range(len(ch_mult))):
            blocks = []
            for _ in range(num_res_blocks + 1):
                blocks.append(ResBlock(c, hidden * ch_mult[i]))
                c = hidden * ch_mult[i]
            # The encoder downsamples after level i; the decoder upsamples after level i+1.
            levels[i] = _Level(blocks, _Up(c) if (i - 1) in down_layers else None, "upsample")
        self.up = nn.ModuleList(levels)
        self.conv_out = MPConv(c, data_dim, 3)
        self.learnable_gain = nn.Parameter(torch.zeros([]), requires_grad=False)

    def forward(self, z):
        x = self.mid(self.conv_in(z)).clamp(-CLAMP, CLAMP)
        for lvl in reversed(self.up):
            x = lvl(x)
        return self.conv_out(mp_silu(x))


class MelVAE(nn.Module):
    """MMAudio's mel VAE. encode(mel) -> (mean, std); decode(z) -> mel. Both channel-first.

    data_dim: mel bins (80 for the 16 kHz model, 128 for 44.1 kHz); embed_dim: latent channels (20 / 40);
    hidden_dim: base width (512 in the released VAEs). ch_mult (1, 2, 4), 2 res blocks per level,
    one x2 time resampling (after encoder level 0).
    """

    def __init__(self, data_dim: int = 80, embed_dim: int = 20, hidden_dim: int = 512,
                 ch_mult=(1, 2, 4), num_res_blocks: int = 2, down_layers=(0,), *, encoder: bool = True,
                 decoder: bool = True):
        super().__init__()
        self.data_dim, self.embed_dim = data_dim, embed_dim
        args = (data_dim, embed_dim, hidden_dim, tuple(ch_mult), num_res_blocks, tuple(down_layers))
        self.encoder = Encoder(*args) if encoder else None
        self.decoder = Decoder(*args) if decoder else None
        self.register_buffer("data_mean", torch.zeros(1, data_dim, 1))
        self.register_buffer("data_std", torch.ones(1, data_dim, 1))

    @property
    def sample_rate(self) -> int:
        return 16000 if self.data_dim == 80 else 44100

    def _check(self, x, name, c):
        if not isinstance(x, torch.Tensor) or x.dim() != 3 or x.shape[1] != c:
            raise ValueError(f"{name} must be a (B, {c}, frames) tensor, got {tuple(getattr(x, 'shape', ()))}")
        if not torch.isfinite(x).all():
            raise ValueError(f"{name} contains NaN or infinite values")

    @torch.no_grad()
    def encode_moments(self, mel: torch.Tensor) -> torch.Tensor:
        """mel (B, n_mels, T), T even -> moments (B, 2*latent_dim, T/2) (mean | logvar)."""
        if self.encoder is None:
            raise ValueError("this VAE was loaded without its encoder")
        self._check(mel, "mel", self.data_dim)
        if mel.shape[-1] % 2:
            raise ValueError(f"mel needs an even number of frames (the encoder halves time), got {mel.shape[-1]}")
        w = self.data_mean.dtype
        x = (mel.to(w) - self.data_mean) / self.data_std
        return self.encoder(x)

    @torch.no_grad()
    def encode(self, mel: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """mel (B, n_mels, T) -> (mean, std), each (B, latent_dim, T/2); logvar clamped to [-30, 20]."""
        mean, logvar = self.encode_moments(mel).chunk(2, dim=1)
        return mean, torch.exp(0.5 * logvar.clamp(-30.0, 20.0))

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, latent_dim, N) -> mel (B, n_mels, 2N), de-normalised with the mel statistics.
        (The flow network's samples are (B, N, C): pass z.transpose(1, 2).)"""
        if self.decoder is None:
            raise ValueError("this VAE was loaded without its decoder")
        self._check(z, "z", self.embed_dim)
        x = self.decoder(z.to(self.data_mean.dtype))
        return x * self.data_std + self.data_mean


def _open(source) -> Mapping[str, torch.Tensor]:
    if isinstance(source, Mapping):
        return source
    path = os.fspath(source)
    with open(path, "rb") as f:
        head = f.read(2)
    if head in (b"PK",) or head[:1] == b"\x80":
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except Exception as e:
            raise ValueError(f"{path!r} could not be read as a torch checkpoint ({type(e).__name__}: {e})") from e
    from safetensors.torch import load_file
    try:
        return load_file(path)
    except Exception as e:
        raise ValueError(f"{path!r} is neither a torch checkpoint nor a safetensors file ({e})") from e


def load_vae(source, *, dtype: torch.dtype = torch.float32, encoder: Optional[bool] = None,
             decoder: Optional[bool] = None, prefix: Optional[str] = None) -> MelVAE:
    """Loads the MMAudio mel VAE from an official v1-16.pth / v1-44.pth, a safetensors file or a dict.

    The size is read from the tensor shapes (mel bins, latent channels, base width, levels); raw weights are
    normalised as the original does before inference. encoder/decoder: None loads whichever the file holds.
    prefix: key prefix to strip (default: 'weights.' when present, for the parity goldens).
    """
    sd = _open(source)
    if prefix is None:
        prefix = "weights." if any(k.startswith("weights.") for k in sd) else ""
    sd = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    has_enc = "encoder.conv_in.weight" in sd
    has_dec = "decoder.conv_in.weight" in sd
    if not (has_enc or has_dec) or "data_mean" not in sd:
        raise ValueError("this is not an MMAudio VAE checkpoint (expected encoder.* / decoder.* and data_mean)")
    encoder = has_enc if encoder is None else encoder
    decoder = has_dec if decoder is None else decoder
    if (encoder and not has_enc) or (decoder and not has_dec):
        raise ValueError("the checkpoint lacks the " + ("encoder" if encoder and not has_enc else "decoder"))
    data_dim = sd["data_mean"].shape[1]
    if has_dec:
        w = sd["decoder.conv_in.weight"]
        embed_dim, top = w.shape[1], w.shape[0]
        hidden = sd["decoder.conv_out.weight"].shape[1]
        nlev = 1 + max(int(m.group(1)) for k in sd for m in [re.match(r"decoder\.up\.(\d+)\.", k)] if m)
        nres = 1 + max(int(m.group(1)) for k in sd for m in [re.match(r"decoder\.up\.0\.block\.(\d+)\.", k)] if m) - 1
        downs = [int(m.group(1)) - 1 for k in sd for m in [re.match(r"decoder\.up\.(\d+)\.upsample\.", k)] if m]
    else:
        embed_dim = sd["encoder.conv_out.weight"].shape[0] // 2
        hidden = sd["encoder.conv_in.weight"].shape[0]
        top = sd["encoder.conv_out.weight"].shape[1]
        nlev = 1 + max(int(m.group(1)) for k in sd for m in [re.match(r"encoder\.down\.(\d+)\.", k)] if m)
        nres = 1 + max(int(m.group(1)) for k in sd for m in [re.match(r"encoder\.down\.0\.block\.(\d+)\.", k)] if m)
        downs = [int(m.group(1)) for k in sd for m in [re.match(r"encoder\.down\.(\d+)\.downsample\.conv1", k)] if m]
    ch_mult = []
    for i in range(nlev):
        key = f"decoder.up.{i}.block.0.conv2.weight" if has_dec else f"encoder.down.{i}.block.0.conv2.weight"
        ch_mult.append(sd[key].shape[0] // hidden)
    if hidden * ch_mult[-1] != top:
        raise ValueError("inconsistent VAE checkpoint: level widths do not match the middle block")
    vae = MelVAE(data_dim, embed_dim, hidden, ch_mult, nres, sorted(set(downs)), encoder=encoder, decoder=decoder)
    expected = vae.state_dict()
    keep = {k: v for k, v in sd.items() if k in expected}
    missing = sorted(set(expected) - set(keep))
    if missing:
        raise ValueError(f"the VAE checkpoint is truncated: {len(missing)} tensors missing (first: {missing[0]})")
    with torch.no_grad():
        for part in ("encoder", "decoder"):
            mod = getattr(vae, part)
            if mod is None:
                continue
            gain = 1 + keep[f"{part}.learnable_gain"].float()
            mod.learnable_gain.copy_(keep[f"{part}.learnable_gain"])
            for name, m in mod.named_modules():
                if isinstance(m, MPConv):
                    key = f"{part}.{name}.weight"
                    src = keep[key]
                    if src.shape != m.weight.shape:
                        raise ValueError(f"{key} has shape {tuple(src.shape)}, expected {tuple(m.weight.shape)}")
                    m.weight.copy_(normalized_weight(src.float(), gain if name == "conv_out" else None))
        vae.data_mean.copy_(keep["data_mean"])
        vae.data_std.copy_(keep["data_std"])
    return vae.to(dtype).eval()


def check_compatible(net, vae: MelVAE) -> None:
    """Raises ValueError when a flow network and a VAE do not belong together (latent channels or
    sample rate differ: e.g. a 16 kHz VAE with a 44.1 kHz network)."""
    cfg = net.cfg
    if cfg.latent_dim != vae.embed_dim or cfg.sample_rate != vae.sample_rate:
        raise ValueError(f"the network works on {cfg.latent_dim}-channel latents at {cfg.sample_rate} Hz but the VAE "
                         f"has {vae.embed_dim} channels / {vae.data_dim} mel bins ({vae.sample_rate} Hz): "
                         "use v1-16.pth with the 16k networks and v1-44.pth with the 44k ones")


def decode_latents(net, vae: MelVAE, z: torch.Tensor) -> torch.Tensor:
    """Sampler output (B, N, latent_dim), already un-normalised -> mel (B, n_mels, 2N)."""
    check_compatible(net, vae)
    return vae.decode(z.transpose(1, 2))
