"""BigVGAN mel -> waveform vocoders for MMAudio: BigVGAN-v2 44.1 kHz 128-band 512x and Make-An-Audio 2's 16 kHz BigVGAN.

Independent implementation from the BigVGAN paper (arXiv 2206.04658) and the facts of the public
checkpoints (key names, config fields). The generator: conv_pre (k7) -> for each upsampling stage a
transposed conv (stride u, kernel k, padding (k-u)/2) and the mean of len(resblock_kernel_sizes)
anti-aliased multi-periodicity (AMP) residual blocks -> anti-aliased Snake -> conv_post (k7) -> tanh
(or a clamp to [-1, 1] where the config says use_tanh_at_final = false).

Inference-only choices that keep the numbers and save time: weight norm is folded into plain weights
once at load; log-scale Snake parameters are exponentiated once; the anti-aliased activation runs
as one fused kernel (sonicore.ops.anti_aliased_snake: C++ on CPU, Triton on CUDA).

    from sonicore.models.mmaudio.vocoder import load_vocoder
    voc = load_vocoder("bigvgan_v2_44khz_128band_512x/")      # folder with config.json + bigvgan_generator.pt
    wav = voc(mel)                                            # (B, 128, T) log-mel -> (B, 1, 512*T)
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from typing import Mapping, Optional, Tuple, Union

import torch
from torch import nn

from ...ops.vocoder import AA_TAPS, anti_aliased_snake, kaiser_sinc_filter

__all__ = ["BigVGANConfig", "PRESETS", "BigVGAN", "load_vocoder", "VocoderCheckpointError"]

_SNAKE_EPS = 1e-9  # BigVGAN's guard in 1 / (beta + eps)
# BigVGAN's up- and down-sampling low-pass (ratio 2: cutoff 0.25, half-width 0.3 cycles/sample), made
# once on the CPU (modules built under torch.device("meta") then copy real numbers, not meta ones).
_DEFAULT_FILTER = kaiser_sinc_filter(0.25, 0.3, AA_TAPS)


class VocoderCheckpointError(ValueError):
    """The file or state dict is not a BigVGAN generator, or does not match the given config."""


@dataclass(frozen=True)
class BigVGANConfig:
    """BigVGAN generator hyper-parameters (the fields of the official config.json)."""
    num_mels: int
    upsample_rates: Tuple[int, ...]
    upsample_kernel_sizes: Tuple[int, ...]
    upsample_initial_channel: int
    resblock_kernel_sizes: Tuple[int, ...] = (3, 7, 11)
    resblock_dilation_sizes: Tuple[Tuple[int, ...], ...] = ((1, 3, 5), (1, 3, 5), (1, 3, 5))
    resblock: str = "1"                 # "1": dilated conv + conv per dilation; "2": dilated conv only
    activation: str = "snakebeta"       # or "snake"
    snake_logscale: bool = True         # parameters stored as logs (BigVGAN-v2 and Make-An-Audio 2)
    use_tanh_at_final: bool = True      # False: clamp to [-1, 1]
    use_bias_at_final: bool = True
    sampling_rate: Optional[int] = None  # Hz
    name: str = "custom"

    @property
    def hop_size(self) -> int:
        """Output samples per mel frame (the product of the upsampling rates)."""
        return math.prod(self.upsample_rates)

    def __post_init__(self):
        if len(self.upsample_rates) != len(self.upsample_kernel_sizes) or not self.upsample_rates:
            raise ValueError("upsample_rates and upsample_kernel_sizes must be non-empty and of equal length")
        if len(self.resblock_kernel_sizes) != len(self.resblock_dilation_sizes) or not self.resblock_kernel_sizes:
            raise ValueError("resblock_kernel_sizes and resblock_dilation_sizes must be non-empty and of equal length")
        if any(len(d) == 0 or min(d) < 1 for d in self.resblock_dilation_sizes):
            raise ValueError("every residual block needs at least one dilation, each >= 1")
        if self.resblock not in ("1", "2"):
            raise ValueError(f"resblock must be '1' or '2', got {self.resblock!r}")
        if self.activation not in ("snake", "snakebeta"):
            raise ValueError(f"activation must be 'snake' or 'snakebeta', got {self.activation!r}")
        if self.upsample_initial_channel % (2 ** len(self.upsample_rates)):
            raise ValueError("upsample_initial_channel must halve cleanly at every upsampling stage")
        for u, k in zip(self.upsample_rates, self.upsample_kernel_sizes):
            if u < 1 or k < u or (k - u) % 2:
                raise ValueError(f"an upsampling stage needs kernel >= rate with an even difference, got rate {u}, kernel {k}")

    @classmethod
    def from_dict(cls, d: Mapping, name: str = "custom") -> "BigVGANConfig":
        """From the official config.json / bigvgan_vocoder.yml fields (training-only fields ignored)."""
        try:
            return cls(num_mels=int(d["num_mels"]),
                       upsample_rates=tuple(int(v) for v in d["upsample_rates"]),
                       upsample_kernel_sizes=tuple(int(v) for v in d["upsample_kernel_sizes"]),
                       upsample_initial_channel=int(d["upsample_initial_channel"]),
                       resblock_kernel_sizes=tuple(int(v) for v in d["resblock_kernel_sizes"]),
                       resblock_dilation_sizes=tuple(tuple(int(x) for x in v) for v in d["resblock_dilation_sizes"]),
                       resblock=str(d.get("resblock", "1")), activation=str(d["activation"]),
                       snake_logscale=bool(d.get("snake_logscale", False)),
                       use_tanh_at_final=bool(d.get("use_tanh_at_final", True)),
                       use_bias_at_final=bool(d.get("use_bias_at_final", True)),
                       sampling_rate=None if d.get("sampling_rate") is None else int(d["sampling_rate"]),
                       name=name)
        except KeyError as e:
            raise ValueError(f"the BigVGAN config lacks the field {e.args[0]!r}") from None


PRESETS = {
    # nvidia/bigvgan_v2_44khz_128band_512x (config.json of the release): ~122M parameters.
    "bigvgan_v2_44khz_128band_512x": BigVGANConfig(
        num_mels=128, upsample_rates=(8, 4, 2, 2, 2, 2), upsample_kernel_sizes=(16, 8, 4, 4, 4, 4),
        upsample_initial_channel=1536, use_tanh_at_final=False, use_bias_at_final=False,
        sampling_rate=44100, name="bigvgan_v2_44khz_128band_512x"),
    # Make-An-Audio 2's BigVGAN (MMAudio's 16 kHz vocoder, bigvgan_vocoder.yml): 80 bins, hop 256,
    # the original (v1) generator, so tanh and a bias at the end.
    "maa2_bigvgan_16k": BigVGANConfig(
        num_mels=80, upsample_rates=(4, 4, 2, 2, 2, 2), upsample_kernel_sizes=(8, 8, 4, 4, 4, 4),
        upsample_initial_channel=1536, sampling_rate=16000, name="maa2_bigvgan_16k"),
}


# --------------------------------------------------------------------------------------------- modules
class AntiAliasedSnake(nn.Module):
    """Snake / SnakeBeta evaluated at twice the rate: (B, C, T) -> (B, C, T).

    alpha: (C,) frequency, inv_beta: (C,) magnitude 1/(beta + 1e-9), both on a linear scale
    (log-scale checkpoint parameters are exponentiated at load)."""

    def __init__(self, channels: int):
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(channels), requires_grad=False)
        self.inv_beta = nn.Parameter(torch.ones(channels), requires_grad=False)
        self.register_buffer("up_filter", _DEFAULT_FILTER.clone())
        self.register_buffer("down_filter", _DEFAULT_FILTER.clone())

    def forward(self, x):
        return anti_aliased_snake(x, self.alpha, self.inv_beta, self.up_filter, self.down_filter)


def _conv(cin, cout, k, dilation=1, bias=True):
    return nn.Conv1d(cin, cout, k, dilation=dilation, padding=dilation * (k - 1) // 2, bias=bias)


class AMPBlock(nn.Module):
    """Anti-aliased multi-periodicity residual block: for each dilation d,
    x += conv2(act(conv1_d(act(x)))) (type "1") or x += conv1_d(act(x)) (type "2")."""

    def __init__(self, channels: int, kernel: int, dilations, kind: str):
        super().__init__()
        self.convs1 = nn.ModuleList(_conv(channels, channels, kernel, d) for d in dilations)
        self.convs2 = nn.ModuleList(_conv(channels, channels, kernel) for _ in dilations) if kind == "1" else None
        n_acts = len(dilations) * (2 if kind == "1" else 1)
        self.acts = nn.ModuleList(AntiAliasedSnake(channels) for _ in range(n_acts))

    def forward(self, x):
        for i, c1 in enumerate(self.convs1):
            if self.convs2 is None:
                h = c1(self.acts[i](x))
            else:
                h = self.convs2[i](self.acts[2 * i + 1](c1(self.acts[2 * i](x))))
            x = h.add_(x)
        return x


class BigVGAN(nn.Module):
    """BigVGAN generator: log-mel (B, num_mels, T) -> waveform (B, 1, T * hop_size) in [-1, 1].

    Build with load_vocoder() (official checkpoints) or BigVGAN(config) (random weights)."""

    def __init__(self, cfg: BigVGANConfig):
        super().__init__()
        self.cfg = cfg
        ch = cfg.upsample_initial_channel
        self.conv_pre = _conv(cfg.num_mels, ch, 7)
        self.ups = nn.ModuleList()
        self.blocks = nn.ModuleList()
        for u, k in zip(cfg.upsample_rates, cfg.upsample_kernel_sizes):
            self.ups.append(nn.ConvTranspose1d(ch, ch // 2, k, u, padding=(k - u) // 2))
            ch //= 2
            self.blocks.append(nn.ModuleList(AMPBlock(ch, kk, d, cfg.resblock)
                                             for kk, d in zip(cfg.resblock_kernel_sizes, cfg.resblock_dilation_sizes)))
        self.act_post = AntiAliasedSnake(ch)
        self.conv_post = _conv(ch, 1, 7, bias=cfg.use_bias_at_final)
        for p in self.parameters():
            p.requires_grad_(False)

    @property
    def sample_rate(self) -> Optional[int]:
        return self.cfg.sampling_rate

    @property
    def num_mels(self) -> int:
        return self.cfg.num_mels

    @property
    def hop_size(self) -> int:
        return self.cfg.hop_size

    @torch.no_grad()
    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """mel: (B, num_mels, T) log-mel (natural log for BigVGAN-v2, as the VAE decodes it) ->
        waveform (B, 1, T * hop_size), float in [-1, 1] at cfg.sampling_rate Hz."""
        if not isinstance(mel, torch.Tensor) or mel.dim() != 3 or mel.shape[1] != self.cfg.num_mels or mel.shape[2] < 1:
            raise ValueError(f"the vocoder expects a mel of shape (B, {self.cfg.num_mels}, frames), "
                             f"got {tuple(getattr(mel, 'shape', ()))}")
        if not torch.isfinite(mel).all():
            raise ValueError("the mel spectrogram contains NaN or infinite values")
        w = self.conv_pre.weight
        x = self.conv_pre(mel.to(w.device, w.dtype))
        for up, blocks in zip(self.ups, self.blocks):
            x = up(x)
            acc = blocks[0](x)
            for blk in blocks[1:]:
                acc = acc.add_(blk(x))
            x = acc.div_(len(blocks))
        x = self.conv_post(self.act_post(x))
        return torch.tanh(x) if self.cfg.use_tanh_at_final else x.clamp_(-1.0, 1.0)


# --------------------------------------------------------------------------------------------- loading
def _read_config(path: str) -> dict:
    with open(path) as f:
        text = f.read()
    if path.endswith((".yml", ".yaml")):
        try:
            import yaml
        except ImportError:
            raise ValueError(f"{path!r} is YAML; install pyyaml or pass the config as a dict") from None
        return yaml.safe_load(text)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path!r} is not a JSON config ({e})") from None


def _read_state(path: str) -> Mapping[str, torch.Tensor]:
    with open(path, "rb") as f:
        head = f.read(8)
    if head[:2] == b"PK" or head[:1] == b"\x80":
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except Exception as e:
            raise VocoderCheckpointError(f"{path!r} could not be read as a torch checkpoint "
                                         f"({type(e).__name__}: {e}); is it truncated?") from e
    else:
        try:
            from safetensors.torch import load_file
            obj = load_file(path)
        except Exception as e:
            raise VocoderCheckpointError(f"{path!r} is neither a torch checkpoint nor a safetensors file ({e})") from e
    return obj


def _unwrap(obj) -> Mapping[str, torch.Tensor]:
    """{'generator': sd} (bigvgan_generator.pt / Make-An-Audio 2's best_netG.pt) or a bare state dict;
    a common key prefix before conv_pre (e.g. 'vocoder.') is removed."""
    if not isinstance(obj, Mapping):
        raise VocoderCheckpointError(f"expected a state dict, got {type(obj).__name__}")
    if "generator" in obj and isinstance(obj["generator"], Mapping):
        obj = obj["generator"]
    pre = [k[: k.index("conv_pre.")] for k in obj if isinstance(k, str) and "conv_pre." in k]
    if not pre:
        hint = " (this looks like a discriminator / optimizer file)" if any("mpd" in str(k) or "discriminator" in str(k)
                                                                             for k in obj) else ""
        raise VocoderCheckpointError("this is not a BigVGAN generator checkpoint: no conv_pre.* tensors" + hint)
    p = min(pre, key=len)
    return {k[len(p):]: v for k, v in obj.items() if isinstance(k, str) and k.startswith(p)}


class _Reader:
    """Pulls tensors out of an official state dict, folding weight norm, and remembers what it used."""

    def __init__(self, sd: Mapping[str, torch.Tensor]):
        self.sd, self.used = sd, set()

    def tensor(self, key: str, shape) -> torch.Tensor:
        if key not in self.sd:
            raise VocoderCheckpointError(f"the checkpoint lacks {key!r} (truncated, or another model?)")
        t = self.sd[key]
        if not isinstance(t, torch.Tensor) or tuple(t.shape) != tuple(shape):
            raise VocoderCheckpointError(f"{key} has shape {tuple(getattr(t, 'shape', ()))}, expected {tuple(shape)}: "
                                         "the checkpoint does not match this config")
        self.used.add(key)
        return t

    def weight(self, prefix: str, shape) -> torch.Tensor:
        """Plain 'weight', or weight norm as weight_g/weight_v (torch.nn.utils.weight_norm) or
        parametrizations.weight.original0/1 (torch.nn.utils.parametrizations.weight_norm), folded
        w = v * (g / ||v||) with the norm over every axis but the first, in float32 as torch does."""
        sd = self.sd
        if prefix + "weight" in sd:
            return self.tensor(prefix + "weight", shape)
        for gk, vk in (("weight_g", "weight_v"), ("parametrizations.weight.original0", "parametrizations.weight.original1")):
            if prefix + vk in sd:
                v = self.tensor(prefix + vk, shape).float()
                g = self.tensor(prefix + gk, (shape[0],) + (1,) * (len(shape) - 1)).float()
                return v * (g / v.flatten(1).norm(dim=1).view_as(g))
        raise VocoderCheckpointError(f"the checkpoint lacks {prefix}weight (nor weight_g/weight_v): "
                                     "truncated, or another model?")


def _shape_signature(sd: Mapping[str, torch.Tensor]):
    def wshape(prefix):
        for k in ("weight", "weight_v", "parametrizations.weight.original1"):
            if prefix + k in sd:
                return tuple(sd[prefix + k].shape)
        return None
    pre = wshape("conv_pre.")
    ups = []
    while wshape(f"ups.{len(ups)}.0.") is not None:
        ups.append(wshape(f"ups.{len(ups)}.0.")[2])
    kernels = []
    while wshape(f"resblocks.{len(kernels)}.convs1.0.") is not None and len(kernels) < 64:
        kernels.append(wshape(f"resblocks.{len(kernels)}.convs1.0.")[2])
    return pre, tuple(ups), kernels


def _infer_config(sd) -> BigVGANConfig:
    pre, ups, kernels = _shape_signature(sd)
    for cfg in PRESETS.values():
        if (pre == (cfg.upsample_initial_channel, cfg.num_mels, 7) and ups == cfg.upsample_kernel_sizes
                and tuple(kernels[:len(cfg.resblock_kernel_sizes)]) == cfg.resblock_kernel_sizes
                and ("conv_post.bias" in sd) == cfg.use_bias_at_final):
            return cfg
    raise VocoderCheckpointError(
        f"the checkpoint (conv_pre {pre}, upsampling kernels {ups}) matches no known BigVGAN preset "
        f"({', '.join(PRESETS)}); pass config= (its config.json, a dict or a BigVGANConfig)")


def _resolve_config(config, source, sd) -> BigVGANConfig:
    if isinstance(config, BigVGANConfig):
        return config
    if isinstance(config, str) and config in PRESETS:
        return PRESETS[config]
    if isinstance(config, Mapping):
        return BigVGANConfig.from_dict(config)
    if isinstance(config, (str, os.PathLike)):
        if not os.path.isfile(config):
            raise ValueError(f"config {config!r} is neither a preset ({', '.join(PRESETS)}) nor a config file")
        return BigVGANConfig.from_dict(_read_config(os.fspath(config)), name=os.path.basename(os.path.dirname(os.fspath(config))) or "custom")
    if config is not None:
        raise TypeError(f"config must be a preset name, a config file, a dict or a BigVGANConfig, got {type(config).__name__}")
    # The Hugging Face layout keeps config.json next to bigvgan_generator.pt.
    if isinstance(source, (str, os.PathLike)):
        folder = os.fspath(source) if os.path.isdir(source) else os.path.dirname(os.fspath(source))
        cj = os.path.join(folder, "config.json")
        if os.path.isfile(cj):
            d = _read_config(cj)
            if "upsample_rates" in d:
                return BigVGANConfig.from_dict(d, name=os.path.basename(os.path.abspath(folder)))
    return _infer_config(sd)


def load_vocoder(source, config: Union[None, str, Mapping, BigVGANConfig] = None, *,
                 dtype: torch.dtype = torch.float32, device=None) -> BigVGAN:
    """Loads a BigVGAN generator from the official checkpoint layout.

    source: a folder holding config.json + bigvgan_generator.pt (the nvidia/bigvgan_v2_* releases),
    a checkpoint file (.pt/.pth with {'generator': state_dict} or a bare state dict, read with
    weights_only=True; or .safetensors), or a state dict. Weight norm in any of its stored forms
    (weight_g/weight_v, parametrizations.weight.original0/1) or already removed is folded at load.
    config: None (config.json beside the file, else recognised from the tensor shapes among PRESETS),
    a preset name ('bigvgan_v2_44khz_128band_512x', 'maa2_bigvgan_16k'), a config file, a dict of the
    config.json fields, or a BigVGANConfig. A checkpoint that is not a BigVGAN generator, is truncated
    or does not match the config raises VocoderCheckpointError (a ValueError) naming the tensor.
    dtype: of the convolution weights (float32, or float16/bfloat16 for a GPU); device: where to put it.
    """
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if os.path.isdir(path):
            path = os.path.join(path, "bigvgan_generator.pt")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"no vocoder checkpoint at {path!r}")
        obj = _read_state(path)
    else:
        obj = source
    sd = _unwrap(obj)
    cfg = _resolve_config(config, source, sd)
    r = _Reader(sd)
    # Built on the meta device and only then allocated: no time spent on a random init that the
    # checkpoint overwrites (every tensor is loaded below, or the load fails).
    with torch.device("meta"):
        model = BigVGAN(cfg)
    model = model.to_empty(device="cpu")
    default_filter = _DEFAULT_FILTER
    logscale = cfg.snake_logscale

    def load_conv(mod, prefix):
        mod.weight.copy_(r.weight(prefix, mod.weight.shape))
        if mod.bias is not None:
            mod.bias.copy_(r.tensor(prefix + "bias", mod.bias.shape))

    def load_act(act, prefix):
        c = act.alpha.shape[0]
        alpha = r.tensor(prefix + "act.alpha", (c,)).float()
        beta = r.tensor(prefix + "act.beta", (c,)).float() if cfg.activation == "snakebeta" else alpha
        if logscale:
            alpha, beta = torch.exp(alpha), torch.exp(beta)
        act.alpha.copy_(alpha)
        act.inv_beta.copy_(1.0 / (beta + _SNAKE_EPS))
        act.up_filter.copy_(default_filter)
        act.down_filter.copy_(default_filter)
        for key, buf in (("upsample.filter", act.up_filter), ("downsample.lowpass.filter", act.down_filter)):
            if prefix + key in sd:  # the filters are buffers of the official modules
                buf.copy_(r.tensor(prefix + key, (1, 1, AA_TAPS)).reshape(-1))

    with torch.no_grad():
        load_conv(model.conv_pre, "conv_pre.")
        nk = len(cfg.resblock_kernel_sizes)
        for i, up in enumerate(model.ups):
            load_conv(up, f"ups.{i}.0.")
            for j, blk in enumerate(model.blocks[i]):
                p = f"resblocks.{i * nk + j}."
                for n, c in enumerate(blk.convs1):
                    load_conv(c, f"{p}convs{'1' if blk.convs2 is not None else ''}.{n}.")
                if blk.convs2 is not None:
                    for n, c in enumerate(blk.convs2):
                        load_conv(c, f"{p}convs2.{n}.")
                for n, act in enumerate(blk.acts):
                    load_act(act, f"{p}activations.{n}.")
        load_act(model.act_post, "activation_post.")
        load_conv(model.conv_post, "conv_post.")
    extra = sorted(set(sd) - r.used)
    if extra:
        raise VocoderCheckpointError(f"the checkpoint has {len(extra)} tensors this config does not use "
                                     f"(first: {extra[0]!r}): it does not match config {cfg.name!r}")
    # min/max propagate NaN and show inf, in one pass without a boolean copy of 120M weights
    bad = [n for n, t in model.state_dict().items() if not all(math.isfinite(v) for v in torch.aminmax(t))]
    if bad:
        raise VocoderCheckpointError(f"the checkpoint holds NaN or infinite values (first: {bad[0]})")
    # Only the convolutions take `dtype`: the Snake parameters and the 12-tap filters stay float32
    # (the fused kernels compute in float32 whatever the signal's dtype).
    for m in model.modules():
        if isinstance(m, (nn.Conv1d, nn.ConvTranspose1d)):
            m.to(dtype)
    return model.to(device=device).eval()
