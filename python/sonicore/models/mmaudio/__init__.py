"""MMAudio / MMAudioSep flow network, its mel VAE, conditions and sampler.

    from sonicore.models import mmaudio
    net = mmaudio.load("mmaudio_small_16k.pth")            # or .safetensors, or a state dict
    v = net(x_t, clip_f, sync_f, text_f, t)                  # (B, N, latent_dim) velocity
    z = mmaudio.generate(net, clip_f=..., sync_f=..., text_f=..., duration=8.0)
    wav = mmaudio.latents_to_waveform(net, vae, mmaudio.load_vocoder("bigvgan_v2_44khz_128band_512x/"), z)
"""
from .config import VARIANTS, MMAudioConfig, variant_config
from .loader import CheckpointError, infer_config, load
from .network import MMAudioNetwork, PaddedConditions, PreprocessedConditions
from .conditions import check_conditions, load_features, text_features
from .generate import check_vocoder, generate, generate_long, latents_to_waveform
from .vocoder import BigVGAN, BigVGANConfig, VocoderCheckpointError, load_vocoder

__all__ = ["VARIANTS", "MMAudioConfig", "variant_config", "CheckpointError", "infer_config", "load",
           "MMAudioNetwork", "PreprocessedConditions", "PaddedConditions", "check_conditions", "load_features",
           "text_features", "generate", "generate_long", "latents_to_waveform", "check_vocoder", "BigVGAN",
           "BigVGANConfig", "VocoderCheckpointError", "load_vocoder"]
