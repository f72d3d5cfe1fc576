"""User-level sampling: features in, VAE latents out; long audio by overlapping chunks; latents -> waveform."""
from __future__ import annotations

from typing import Optional

import torch

from .conditions import check_conditions
from .config import CLIP_FPS, SYNC_FPS
from .network import MMAudioNetwork
from .sampler import sample_latent


@torch.no_grad()
def generate(net: MMAudioNetwork, *, clip_f=None, sync_f=None, text_f=None, x_mix=None,
             duration: Optional[float] = None, steps: int = 25, cfg_strength: float = 4.5,
             x0: Optional[torch.Tensor] = None, batch_size: Optional[int] = None,
             generator: Optional[torch.Generator] = None, check_frame_rates: bool = True,
             normalized: bool = False) -> torch.Tensor:
    """Samples audio latents with the MMAudio (or MMAudioSep) network.

    clip_f (B, Nc, clip_dim) at 8 frames/s, sync_f (B, Ns, sync_dim) at 25 frames/s, text_f (B, 77, text_dim):
    arrays, tensors or .npy/.npz/.safetensors paths; any may be None (learned empty feature).
    x_mix (B, N, latent_dim): MMAudioSep's mixture latent (required for a Sep network), passed as is
    (the public separation code does not normalise it; pass net.normalize(z) to match training).
    duration: seconds (default: from the features, else 8). x0: starting noise (B, N, latent_dim);
    default Gaussian from `generator`. Returns (B, N, latent_dim) VAE latents (normalized=True: the
    sampler's normalised space), channel-last; transpose to (B, C, N) for the VAE decoder.
    """
    cfg = net.cfg
    latent_len = None
    for name, x in (("x0", x0), ("x_mix", x_mix)):
        if x is not None:
            if not isinstance(x, torch.Tensor) or x.dim() != 3 or x.shape[-1] != cfg.latent_dim:
                raise ValueError(f"{name} must be a (B, N, {cfg.latent_dim}) tensor, got "
                                 f"{tuple(getattr(x, 'shape', ()))}")
            if latent_len is not None and x.shape[1] != latent_len:
                raise ValueError(f"x0 and x_mix disagree on the latent length ({latent_len} vs {x.shape[1]})")
            latent_len = x.shape[1]
    if cfg.separation and x_mix is None:
        raise ValueError("an MMAudioSep network separates from a mixture: pass x_mix (B, N, latent_dim)")
    if not cfg.separation and x_mix is not None:
        raise ValueError("x_mix is for MMAudioSep networks; this checkpoint is a plain MMAudio network")
    feats, duration, L = check_conditions(cfg, clip_f, sync_f, text_f, duration=duration,
                                          latent_len=latent_len, check_frame_rates=check_frame_rates)
    B = batch_size or next((v.shape[0] for v in list(feats.values()) + [x0, x_mix] if v is not None), 1)
    dt, dev = net.dtype, net.device
    empty_clip = net.empty_clip_feat.expand(L["clip"], -1)[None]
    empty_sync = net.empty_sync_feat.expand(L["sync"], -1)[None]
    clip = feats["clip"] if feats["clip"] is not None else empty_clip.expand(B, -1, -1)
    sync = feats["sync"] if feats["sync"] is not None else empty_sync.expand(B, -1, -1)
    text = feats["text"] if feats["text"] is not None else net.empty_string_feat[None].expand(B, -1, -1)
    if clip.shape[0] != B:
        raise ValueError(f"batch_size {B} does not match the features' batch {clip.shape[0]}")
    cond = net.preprocess_conditions(clip.to(dev), sync.to(dev), text.to(dev), L["latent"])
    empty = net.empty_conditions(L["clip"], L["sync"], L["latent"])
    if x0 is None:
        x0 = torch.randn(B, L["latent"], cfg.latent_dim, generator=generator).to(dev)
    x = sample_latent(net, x0.to(dev, dt), cond, empty, steps=steps, cfg_strength=cfg_strength,
                      x_mix=None if x_mix is None else x_mix.to(dev, dt))
    return x if normalized else net.unnormalize(x)


@torch.no_grad()
def generate_long(net: MMAudioNetwork, *, duration: float, clip_f=None, sync_f=None, text_f=None, x_mix=None,
                  chunk_seconds: float = 8.0, overlap_seconds: float = 1.0, steps: int = 25,
                  cfg_strength: float = 4.5, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Latents for audio longer than the training length, by overlapping chunks and a crossfade.

    The timeline is cut into chunks of chunk_seconds that overlap by overlap_seconds; each chunk is
    sampled on its own slice of the clip (8 frames/s) and sync (25 frames/s) features, the mixture latent
    (Sep) and of ONE noise tensor drawn for the whole duration (so overlaps start from the same noise);
    the text condition is shared. Overlapping latent frames are blended with a linear crossfade. Returns
    (B, N_total, latent_dim) VAE latents, N_total = ceil(duration * latent_rate).
    """
    cfg = net.cfg
    if overlap_seconds < 0 or overlap_seconds >= chunk_seconds:
        raise ValueError("overlap_seconds must be in [0, chunk_seconds)")
    feats, duration, L = check_conditions(cfg, clip_f, sync_f, text_f, duration=duration,
                                          check_frame_rates=False)
    rate = cfg.latent_rate
    total = L["latent"]
    if duration <= chunk_seconds:
        return generate(net, clip_f=clip_f, sync_f=sync_f, text_f=text_f, x_mix=x_mix, duration=duration,
                        steps=steps, cfg_strength=cfg_strength, generator=generator, check_frame_rates=False)
    B = next((v.shape[0] for v in feats.values() if v is not None), 1 if x_mix is None else x_mix.shape[0])
    noise = torch.randn(B, total, cfg.latent_dim, generator=generator)
    out = torch.zeros(B, total, cfg.latent_dim)
    weight = torch.zeros(1, total, 1)
    hop = chunk_seconds - overlap_seconds
    starts = []
    s = 0.0
    while True:
        starts.append(min(s, duration - chunk_seconds))
        if s + chunk_seconds >= duration:
            break
        s += hop
    ov = max(1, int(round(overlap_seconds * rate)))
    for k, s in enumerate(starts):
        a = int(round(s * rate))
        n = int(round(chunk_seconds * rate))
        n = min(n, total - a)
        piece = {}
        for kind, fps in (("clip", CLIP_FPS), ("sync", SYNC_FPS)):
            f = feats[kind]
            if f is not None:
                need = cfg.seq_lengths(chunk_seconds)[kind]
                i0 = min(int(round(s * fps)), f.shape[1] - need)
                if i0 < 0:
                    raise ValueError(f"{kind} features are shorter than one chunk of {chunk_seconds} s")
                piece[kind] = f[:, i0:i0 + need]
            else:
                piece[kind] = None
        z = generate(net, clip_f=piece["clip"], sync_f=piece["sync"], text_f=feats["text"],
                     x_mix=None if x_mix is None else x_mix[:, a:a + n], x0=noise[:, a:a + n],
                     duration=chunk_seconds, steps=steps, cfg_strength=cfg_strength, check_frame_rates=False)
        w = torch.ones(1, n, 1)
        if k > 0:  # fade in over the overlap with the previous chunk
            m = min(ov, n)
            w[:, :m, 0] = torch.linspace(0, 1, m + 2)[1:-1]
        if k < len(starts) - 1:  # fade out towards the next chunk
            nxt = int(round(starts[k + 1] * rate))
            m = max(0, a + n - nxt)
            if m:
                w[:, n - m:, 0] = torch.minimum(w[:, n - m:, 0], torch.linspace(1, 0, m + 2)[1:-1])
        out[:, a:a + n] += z.float().cpu() * w
        weight[:, a:a + n] += w
    return out / weight.clamp_min(1e-6)


def check_vocoder(net: MMAudioNetwork, vae, vocoder) -> None:
    """Raises ValueError unless the network, the VAE and the vocoder work at one sample rate and the
    vocoder reads the VAE's mel bins (16 kHz: v1-16.pth + Make-An-Audio 2's BigVGAN, 80 bins;
    44.1 kHz: v1-44.pth + BigVGAN-v2 44 kHz 128-band 512x)."""
    from .vae import check_compatible
    check_compatible(net, vae)
    sr = vocoder.sample_rate
    if sr is None:
        raise ValueError("the vocoder's sample rate is unknown: load it with a config that has sampling_rate")
    if sr != net.cfg.sample_rate:
        raise ValueError(f"the network and VAE make {net.cfg.sample_rate} Hz audio but the vocoder renders "
                         f"{sr} Hz: use maa2_bigvgan_16k with the 16k networks and "
                         "bigvgan_v2_44khz_128band_512x with the 44k ones")
    if vocoder.num_mels != vae.data_dim:
        raise ValueError(f"the VAE decodes {vae.data_dim}-bin mels but the vocoder reads {vocoder.num_mels} mel bins")


@torch.no_grad()
def latents_to_waveform(net: MMAudioNetwork, vae, vocoder, z: torch.Tensor) -> torch.Tensor:
    """Sampler output (B, N, latent_dim), un-normalised (what generate() returns) -> waveform (B, S).

    The VAE decodes the mel (B, n_mels, 2N); the BigVGAN vocoder (models.mmaudio.vocoder.load_vocoder)
    renders S = 2N * hop samples at net.cfg.sample_rate Hz (hop 256 at 16 kHz, 512 at 44.1 kHz),
    float32 in [-1, 1]. Sample rates and mel bins of the three parts are checked first."""
    check_vocoder(net, vae, vocoder)
    mel = vae.decode(z.transpose(1, 2))
    return vocoder(mel)[:, 0].float()
