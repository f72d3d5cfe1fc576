"""Sizes of the MMAudio / MMAudioSep flow networks and the settings that follow from them."""
from __future__ import annotations

import dataclasses
import math
from typing import Dict, Optional

# Frame rates of the inputs (Hz). The latent rate is the VAE hop: sample_rate / mel_hop / 2.
CLIP_FPS = 8.0
SYNC_FPS = 25.0
SYNC_SEGMENT = 8          # sync features come in segments of 8 frames; a positional embedding per slot
TRAINING_DURATION = 8.0   # seconds; the length the released networks were trained on


def ffn_width(hint: int) -> int:
    """Feed-forward hidden width the original derives from a size hint: 256*ceil(int(2*hint/3)/256)."""
    return 256 * ((int(2 * hint / 3) + 255) // 256)


@dataclasses.dataclass(frozen=True)
class MMAudioConfig:
    """Constructor-level description of one network.

    latent_dim: VAE latent channels (20 for 16 kHz, 40 for 44.1 kHz); hidden_dim = 64 * num_heads for
    the released networks; depth counts joint + fused (single-stream) blocks; v2 selects the second
    generation (SiLU activations, timestep sinusoid of width hidden_dim with max period 1);
    separation=True is MMAudioSep (the audio input conv takes cat([x_t, x_mix]) on channels).
    """
    latent_dim: int = 20
    clip_dim: int = 1024
    sync_dim: int = 768
    text_dim: int = 1024
    hidden_dim: int = 448
    depth: int = 12
    fused_depth: int = 8
    num_heads: int = 7
    mlp_ratio: float = 4.0
    text_seq_len: int = 77
    v2: bool = False
    separation: bool = False
    sample_rate: int = 16000

    @property
    def head_dim(self) -> int:
        return self.hidden_dim // self.num_heads

    @property
    def joint_depth(self) -> int:
        return self.depth - self.fused_depth

    @property
    def latent_rate(self) -> float:
        """Latent frames per second (31.25 for 16 kHz, 43.07 for 44.1 kHz)."""
        hop = 256 if self.sample_rate == 16000 else 512
        return self.sample_rate / hop / 2

    def seq_lengths(self, duration: float) -> Dict[str, int]:
        """Sequence lengths for a clip of `duration` seconds, as the original computes them."""
        if not (duration > 0 and math.isfinite(duration)):
            raise ValueError(f"duration must be a positive number of seconds, got {duration!r}")
        latent = int(math.ceil(duration * self.latent_rate))
        clip = int(duration * CLIP_FPS)
        # Synchformer looks at windows of 16 frames with stride 8 and returns 8 features per window.
        frames = int(duration * SYNC_FPS)
        sync = max(0, (frames - 2 * SYNC_SEGMENT) // SYNC_SEGMENT + 1) * SYNC_SEGMENT
        return {"latent": latent, "clip": clip, "sync": sync}


VARIANTS: Dict[str, MMAudioConfig] = {
    "small_16k": MMAudioConfig(latent_dim=20, hidden_dim=448, num_heads=7, depth=12, fused_depth=8,
                               sample_rate=16000),
    "small_44k": MMAudioConfig(latent_dim=40, hidden_dim=448, num_heads=7, depth=12, fused_depth=8,
                               sample_rate=44100),
    "medium_44k": MMAudioConfig(latent_dim=40, hidden_dim=896, num_heads=14, depth=12, fused_depth=8,
                                sample_rate=44100),
    "large_44k": MMAudioConfig(latent_dim=40, hidden_dim=896, num_heads=14, depth=21, fused_depth=14,
                               sample_rate=44100),
    "large_44k_v2": MMAudioConfig(latent_dim=40, hidden_dim=896, num_heads=14, depth=21, fused_depth=14,
                                  sample_rate=44100, v2=True),
}


def variant_config(name: str, *, separation: bool = False) -> MMAudioConfig:
    """The configuration of a released size ("small_16k", ..., "large_44k_v2"); separation=True gives
    the MMAudioSep network of that size."""
    if name not in VARIANTS:
        raise ValueError(f"unknown MMAudio variant {name!r}; expected one of {sorted(VARIANTS)}")
    return dataclasses.replace(VARIANTS[name], separation=separation)


def variant_name(cfg: MMAudioConfig) -> Optional[str]:
    """The released size this configuration matches, or None for a custom size."""
    for name, ref in VARIANTS.items():
        if dataclasses.replace(cfg, separation=False) == ref:
            return name
    return None
