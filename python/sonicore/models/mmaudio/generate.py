"""User-level sampling: features in, VAE latents out; long audio by overlapping chunks; latents -> waveform."""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch

from .conditions import check_conditions, text_features
from .config import CLIP_FPS, SYNC_FPS
from .network import MMAudioNetwork
from .sampler import sample_latent


@torch.no_grad()
def generate(net: MMAudioNetwork, *, clip_f=None, sync_f=None, text_f=None, x_mix=None,
             duration: Optional[float] = None, steps: int = 25, cfg_strength: float = 4.5,
             x0: Optional[torch.Tensor] = None, batch_size: Optional[int] = None,
             generator: Optional[torch.Generator] = None, check_frame_rates: bool = True,
             normalized: bool = False, durations: Optional[Sequence[float]] = None, text=None, clip_text=None):
    """Samples audio latents with the MMAudio (or MMAudioSep) network.

    clip_f (B, Nc, clip_dim) at 8 frames/s, sync_f (B, Ns, sync_dim) at 25 frames/s, text_f (B, 77, text_dim):
    arrays, tensors or .npy/.npz/.safetensors paths; any may be None (learned empty feature).
    x_mix (B, N, latent_dim): MMAudioSep's mixture latent (required for a Sep network), passed as is
    (the public separation code does not normalise it; pass net.normalize(z) to match training).
    duration: seconds (default: from the features, else 8). x0: starting noise (B, N, latent_dim);
    default Gaussian from `generator`. Returns (B, N, latent_dim) VAE latents (normalized=True: the
    sampler's normalised space), channel-last; transpose to (B, C, N) for the VAE decoder.

    text: prompt string(s) instead of text_f: the CLIP text features are computed in-process from local
    open_clip weights (clip_text: a path or a loaded encoder; default $SONICORE_CLIP_WEIGHTS), see
    conditions.text_features; a clear error says what to configure when none is.
    durations: a list of B durations in seconds (instead of duration) samples clips of different
    lengths as ONE padded batch; clip_f, sync_f (and x_mix) are then lists of B per-row arrays (or
    None), text_f (B, 77, text_dim) or a list; x0 (B, N_max, latent_dim) padded. Returns a list of B
    (1, N_b, latent_dim) latents, each equal to what that row gives alone at its own duration.
    """
    if text is not None:
        if text_f is not None:
            raise ValueError("pass either text (prompt strings) or text_f (precomputed features), not both")
        text_f = text_features(net.cfg, text, clip_text)
        if durations is not None and isinstance(text, str):
            text_f = text_f.expand(len(durations), -1, -1)  # one prompt for every row
    if durations is not None:
        if duration is not None:
            raise ValueError("pass one of duration or durations (a list: one duration per batch row)")
        return _generate_padded(net, durations, clip_f=clip_f, sync_f=sync_f, text_f=text_f, x_mix=x_mix,
                                steps=steps, cfg_strength=cfg_strength, x0=x0, generator=generator,
                                check_frame_rates=check_frame_rates, normalized=normalized)
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


def _rows(x, B: int, name: str) -> list:
    """A per-row condition: None, a list/tuple of B rows, or a batched (B, ...) array -> list of B rows."""
    if x is None:
        return [None] * B
    if isinstance(x, (list, tuple)):
        rows = list(x)
    elif hasattr(x, "shape") and len(x.shape) == 3:
        rows = list(torch.as_tensor(x))
    else:
        raise ValueError(f"with durations, {name} must be a list of {B} per-row arrays (or a batched "
                         f"(B, frames, dim) array), got {type(x).__name__}")
    if len(rows) != B:
        raise ValueError(f"{name} has {len(rows)} rows; durations asks for {B} rows")
    return rows


def _generate_padded(net: MMAudioNetwork, durations, *, clip_f, sync_f, text_f, x_mix, steps, cfg_strength,
                     x0, generator, check_frame_rates, normalized):
    """generate() for rows of different durations: padded to the longest, one sampler run."""
    cfg = net.cfg
    durations = list(durations)
    B = len(durations)
    if B == 0 or not all(isinstance(d, (int, float)) and math.isfinite(d) and d > 0 for d in durations):
        raise ValueError(f"durations must be a non-empty list of positive numbers of seconds, got {durations!r}")
    if cfg.separation and x_mix is None:
        raise ValueError("an MMAudioSep network separates from a mixture: pass x_mix (one latent per row)")
    if not cfg.separation and x_mix is not None:
        raise ValueError("x_mix is for MMAudioSep networks; this checkpoint is a plain MMAudio network")
    rows = {k: _rows(v, B, k) for k, v in (("clip_f", clip_f), ("sync_f", sync_f), ("text_f", text_f))}
    feats, lens = [], {"latent": [], "clip": [], "sync": []}
    for b, d in enumerate(durations):
        f, _, L = check_conditions(cfg, rows["clip_f"][b], rows["sync_f"][b], rows["text_f"][b], duration=float(d),
                                   check_frame_rates=check_frame_rates)
        for kind, x in f.items():
            if x is not None and x.shape[0] != 1:
                raise ValueError(f"row {b} of the {kind} features holds {x.shape[0]} rows; pass one per duration")
        feats.append(f)
        for k in lens:
            lens[k].append(L[k])
    N, Nc, Ns = (max(lens[k]) for k in ("latent", "clip", "sync"))
    dt, dev = net.dtype, net.device

    def padded(kind, n, empty):
        out = empty.to(dev, dt).expand(B, n, -1).clone()
        for b, f in enumerate(feats):
            if f[kind] is not None:
                out[b, :f[kind].shape[1]] = f[kind][0].to(dev, dt)
        return out

    clip = padded("clip", Nc, net.empty_clip_feat)
    sync = padded("sync", Ns, net.empty_sync_feat)
    text = padded("text", cfg.text_seq_len, net.empty_string_feat)
    kw = {f"{k}_lens": torch.tensor(v) for k, v in lens.items()}
    cond = net.preprocess_conditions(clip, sync, text, N, **kw)
    empty = net.empty_conditions(Nc, Ns, N, **kw)
    if x0 is None:
        x0 = torch.zeros(B, N, cfg.latent_dim)
        for b, n in enumerate(lens["latent"]):
            x0[b, :n] = torch.randn(n, cfg.latent_dim, generator=generator)
    elif not isinstance(x0, torch.Tensor) or tuple(x0.shape) != (B, N, cfg.latent_dim):
        raise ValueError(f"with durations, x0 must be a (B, N_max, latent_dim) = {(B, N, cfg.latent_dim)} tensor "
                         f"padded to the longest row, got {tuple(getattr(x0, 'shape', ()))}")
    mix = None
    if x_mix is not None:
        mix = torch.zeros(B, N, cfg.latent_dim, device=dev, dtype=dt)
        for b, (m, n) in enumerate(zip(_rows(x_mix, B, "x_mix"), lens["latent"])):
            m = torch.as_tensor(m)
            m = m[0] if m.dim() == 3 else m
            if m.dim() != 2 or m.shape[1] != cfg.latent_dim or m.shape[0] < n:
                raise ValueError(f"row {b} of x_mix must be ({n}, {cfg.latent_dim}) for {durations[b]:g} s, "
                                 f"got {tuple(m.shape)}")
            mix[b, :n] = m[:n].to(dev, dt)
    x = sample_latent(net, x0.to(dev, dt), cond, empty, steps=steps, cfg_strength=cfg_strength, x_mix=mix)
    x = x if normalized else net.unnormalize(x)
    return [x[b:b + 1, :n] for b, n in enumerate(lens["latent"])]


@torch.no_grad()
def generate_long(net: MMAudioNetwork, *, duration: float, clip_f=None, sync_f=None, text_f=None, x_mix=None,
                  chunk_seconds: float = 8.0, overlap_seconds: float = 1.0, steps: int = 25,
                  cfg_strength: float = 4.5, generator: Optional[torch.Generator] = None, text=None,
                  clip_text=None) -> torch.Tensor:
    """Latents for audio longer than the training length, by overlapping chunks and a crossfade.

    The timeline is cut into chunks of chunk_seconds that overlap by overlap_seconds; each chunk is
    sampled on its own slice of the clip (8 frames/s) and sync (25 frames/s) features, the mixture latent
    (Sep) and of ONE noise tensor drawn for the whole duration (so overlaps start from the same noise);
    the text condition is shared. Overlapping latent frames are blended with a linear crossfade. Returns
    (B, N_total, latent_dim) VAE latents, N_total = ceil(duration * latent_rate). text / clip_text: prompt
    strings instead of text_f, as in generate().
    """
    cfg = net.cfg
    if text is not None:
        if text_f is not None:
            raise ValueError("pass either text (prompt strings) or text_f (precomputed features), not both")
        text_f = text_features(cfg, text, clip_text)
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
