"""BigVGAN vocoders (sonicore.models.mmaudio.vocoder) and the fused anti-aliased Snake (sonicore.ops.vocoder).

References: the PyPI package `bigvgan` (NVIDIA's implementation, torch path, use_cuda_kernel=False) for
the generator, its Activation1d and its Kaiser filter; a float64 run of the plain-torch composition for
the fused kernel. Random weights, fresh random inputs of awkward lengths.
"""
import json
import math
import os
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from sonicore.ops.vocoder import AA_TAPS, _reference, anti_aliased_snake, kaiser_sinc_filter
from sonicore.models.mmaudio.vocoder import (PRESETS, BigVGAN, BigVGANConfig, VocoderCheckpointError,
                                             load_vocoder)

try:
    import bigvgan as _bigvgan_pkg  # noqa: F401
    from bigvgan.bigvgan import BigVGAN as RefBigVGAN
    from bigvgan.env import AttrDict
    from bigvgan import activations as ref_acts
    from bigvgan.alias_free_activation.torch.act import Activation1d as RefActivation1d
    from bigvgan.alias_free_activation.torch.filter import kaiser_sinc_filter1d
    HAVE_BIGVGAN = True
except ImportError:  # pragma: no cover - CI installs it
    HAVE_BIGVGAN = False
needs_bigvgan = pytest.mark.skipif(not HAVE_BIGVGAN, reason="the reference package `bigvgan` is not installed "
                                   "(pip install --no-deps bigvgan==2.4.1)")


def _t(rng, *shape, scale=1.0):
    return torch.from_numpy(np.asarray(rng.standard_normal(shape) * scale)).float()


def _snake_params(rng, C):
    alpha = torch.from_numpy(np.exp(rng.uniform(-1.5, 1.5, C))).float()
    beta = torch.from_numpy(np.exp(rng.uniform(-1.5, 1.5, C))).float()
    return alpha, 1.0 / (beta + 1e-9)


# ------------------------------------------------------------------------------------------- the filter
@needs_bigvgan
def test_kaiser_filter_matches_bigvgan():
    ours = kaiser_sinc_filter(0.25, 0.3, AA_TAPS)
    ref = kaiser_sinc_filter1d(0.25, 0.3, AA_TAPS).reshape(-1)
    assert torch.allclose(ours, ref, rtol=1e-6, atol=1e-7)


def test_kaiser_filter_window_matches_scipy():
    from scipy.signal import firwin
    # firwin's Kaiser design with the same beta: cutoff 0.25 cycles/sample = 0.5 of Nyquist. firwin
    # normalises to unit DC gain too, and centres an even length between samples.
    half = AA_TAPS // 2
    atten = 2.285 * (half - 1) * math.pi * 4 * 0.3 + 7.95
    beta = 0.5842 * (atten - 21) ** 0.4 + 0.07886 * (atten - 21) if atten <= 50 else 0.1102 * (atten - 8.7)
    ref = firwin(AA_TAPS, 0.5, window=("kaiser", beta), scale=True)
    assert np.allclose(kaiser_sinc_filter().numpy(), ref, rtol=1e-5, atol=1e-7)


# ------------------------------------------------------------------------------------------- fused op
@pytest.mark.parametrize("B,C,T", [(1, 1, 1), (1, 3, 2), (2, 7, 5), (1, 5, 97), (2, 3, 4097), (1, 2, 4098),
                                   (1, 1, 10007)])
def test_aa_snake_cpu_matches_float64_reference(rng, B, C, T):
    x = _t(rng, B, C, T, scale=2.0)
    alpha, inv_beta = _snake_params(rng, C)
    up = kaiser_sinc_filter() * torch.from_numpy(1 + 0.1 * rng.standard_normal(AA_TAPS)).float()  # asymmetric taps
    down = kaiser_sinc_filter()
    want = _reference(x.double(), alpha.double(), inv_beta.double(), up.double(), down.double())
    got = anti_aliased_snake(x, alpha, inv_beta, up, down, backend="cpu")
    ref32 = anti_aliased_snake(x, alpha, inv_beta, up, down, backend="torch")
    assert got.shape == (B, C, T) and got.dtype == torch.float32
    err = (got.double() - want).abs().max().item()
    ref_err = (ref32.double() - want).abs().max().item()
    assert err <= max(2 * ref_err, 2e-6 * want.abs().max().item()), (err, ref_err)


def test_aa_snake_numpy_in_numpy_out(rng):
    x = rng.standard_normal((1, 4, 33)).astype(np.float32)
    alpha, inv_beta = _snake_params(rng, 4)
    f = kaiser_sinc_filter()
    out = anti_aliased_snake(x, alpha.numpy(), inv_beta.numpy(), f.numpy(), f.numpy())
    assert isinstance(out, np.ndarray) and out.shape == x.shape
    want = _reference(torch.from_numpy(x).double(), alpha.double(), inv_beta.double(), f.double(), f.double())
    assert np.allclose(out, want.numpy(), rtol=1e-5, atol=1e-5)


@needs_bigvgan
@pytest.mark.parametrize("kind", ["snakebeta", "snake"])
def test_aa_snake_matches_bigvgan_activation1d(rng, kind):
    C, T = 6, 211
    act = (ref_acts.SnakeBeta if kind == "snakebeta" else ref_acts.Snake)(C, alpha_logscale=True)
    with torch.no_grad():
        act.alpha.copy_(_t(rng, C, scale=0.5))
        if kind == "snakebeta":
            act.beta.copy_(_t(rng, C, scale=0.5))
    ref = RefActivation1d(activation=act)
    x = _t(rng, 2, C, T, scale=3.0)
    with torch.no_grad():
        want = ref(x)
        a = torch.exp(act.alpha)
        b = torch.exp(act.beta) if kind == "snakebeta" else a
        got = anti_aliased_snake(x, a, 1.0 / (b + 1e-9), ref.upsample.filter, ref.downsample.lowpass.filter)
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-5 * want.abs().max().item())


def test_aa_snake_bad_input(rng):
    f = kaiser_sinc_filter()
    one = torch.ones(3)
    with pytest.raises(ValueError, match=r"\(B, C, T\)"):
        anti_aliased_snake(torch.zeros(3, 5), one, one, f, f)
    with pytest.raises(ValueError, match="one entry per channel"):
        anti_aliased_snake(torch.zeros(1, 3, 5), torch.ones(2), one, f, f)
    with pytest.raises(ValueError, match="12 taps"):
        anti_aliased_snake(torch.zeros(1, 3, 5), one, one, torch.ones(11), f)
    with pytest.raises(TypeError, match="floating-point"):
        anti_aliased_snake(torch.zeros(1, 3, 5, dtype=torch.int32), one, one, f, f)
    with pytest.raises(ValueError, match="float32"):
        anti_aliased_snake(torch.zeros(1, 3, 5, dtype=torch.float64), one, one, f, f, backend="cpu")
    # the binding checks again when called directly
    from sonicore._ext import C
    x = np.zeros((1, 3, 5), np.float32)
    with pytest.raises(ValueError, match="12 taps"):
        C.nn_aa_snake(x, np.ones(3, np.float32), np.ones(3, np.float32), np.ones(5, np.float32),
                      np.ones(12, np.float32), np.zeros_like(x))
    with pytest.raises(ValueError, match="shape of x"):
        C.nn_aa_snake(x, np.ones(3, np.float32), np.ones(3, np.float32), np.ones(12, np.float32),
                      np.ones(12, np.float32), np.zeros((1, 3, 4), np.float32))


@pytest.mark.skipif(not torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") != "1",
                    reason="needs a CUDA GPU or TRITON_INTERPRET=1")
@pytest.mark.parametrize("B,C,T", [(1, 1, 1), (2, 3, 37), (1, 2, 300)])
def test_aa_snake_triton_matches_reference(rng, B, C, T):
    pytest.importorskip("triton")
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    x = _t(rng, B, C, T, scale=2.0)
    alpha, inv_beta = _snake_params(rng, C)
    f = kaiser_sinc_filter()
    want = _reference(x.double(), alpha.double(), inv_beta.double(), f.double(), f.double())
    got = anti_aliased_snake(x.to(dev), alpha.to(dev), inv_beta.to(dev), f.to(dev), f.to(dev), backend="triton")
    assert torch.allclose(got.cpu().double(), want, rtol=1e-5, atol=2e-6 * want.abs().max().item())


# ------------------------------------------------------------------------------------------- generator
def _ref_model(cfg: BigVGANConfig, rng):
    """The bigvgan package's generator for cfg, random weights (its own init), random Snake parameters."""
    torch.manual_seed(int(rng.integers(2**31)))
    h = AttrDict({"num_mels": cfg.num_mels, "upsample_rates": list(cfg.upsample_rates),
                  "upsample_kernel_sizes": list(cfg.upsample_kernel_sizes),
                  "upsample_initial_channel": cfg.upsample_initial_channel,
                  "resblock": cfg.resblock, "resblock_kernel_sizes": list(cfg.resblock_kernel_sizes),
                  "resblock_dilation_sizes": [list(d) for d in cfg.resblock_dilation_sizes],
                  "activation": cfg.activation, "snake_logscale": cfg.snake_logscale,
                  "use_tanh_at_final": cfg.use_tanh_at_final, "use_bias_at_final": cfg.use_bias_at_final,
                  "sampling_rate": cfg.sampling_rate})
    # Built on the meta device and filled here (its own random init of ~120M weights is slow):
    # weights N(0, 0.01) as its init_weights, weight-norm magnitudes around the direction norms,
    # non-trivial Snake parameters, and the low-pass filters from the package's own function.
    with torch.device("meta"):
        ref = RefBigVGAN(h, use_cuda_kernel=False)
    ref = ref.to_empty(device="cpu").eval()
    filt = kaiser_sinc_filter1d(0.25, 0.3, AA_TAPS)
    with torch.no_grad():
        params = dict(ref.named_parameters())
        for name, p in params.items():
            if name.endswith(("alpha", "beta")):
                p.copy_(torch.randn(p.shape) * 0.3 if cfg.snake_logscale else 1 + 0.3 * torch.rand(p.shape))
            elif name.endswith(("bias", "weight_v")):
                p.normal_(0, 0.01)
        for name, p in params.items():
            if name.endswith("weight_g"):
                v = params[name[:-1] + "v"]
                p.copy_(v.flatten(1).norm(dim=1).view_as(p) * (0.8 + 0.4 * torch.rand(p.shape)))
        for name, b in ref.named_buffers():
            assert name.endswith("filter"), name
            b.copy_(filt)
    return ref, h


@needs_bigvgan
@pytest.mark.parametrize("preset,frames", [("bigvgan_v2_44khz_128band_512x", 17), ("maa2_bigvgan_16k", 13)])
def test_generator_matches_bigvgan_package(rng, preset, frames):
    """~0.2 s of mel through the full-size generators: ours loaded from the package's state dict."""
    cfg = PRESETS[preset]
    ref, _ = _ref_model(cfg, rng)
    sd = {"generator": ref.state_dict()}  # the bigvgan_generator.pt layout, weight_g / weight_v
    ours = load_vocoder(sd)               # config recognised from the shapes
    assert ours.cfg == cfg
    mel = _t(rng, 1, cfg.num_mels, frames) - 3
    ref.remove_weight_norm()  # the same weights, computed once instead of on every call
    with torch.no_grad():
        want = ref(mel)
    got = ours(mel)
    assert got.shape == want.shape == (1, 1, frames * cfg.hop_size)
    scale = want.abs().max().item()
    assert scale > 1e-6  # the random network does produce a signal (its level varies with the seed)
    assert torch.allclose(got, want, rtol=1e-4, atol=1e-5 * scale), (got - want).abs().max().item()


def _small_cfg(**kw):
    base = dict(num_mels=11, upsample_rates=(4, 2), upsample_kernel_sizes=(8, 4), upsample_initial_channel=32,
                resblock_kernel_sizes=(3, 5), resblock_dilation_sizes=((1, 3), (1, 2)), sampling_rate=8000)
    base.update(kw)
    return BigVGANConfig(**base)


@needs_bigvgan
@pytest.mark.parametrize("kw", [dict(), dict(resblock="2", activation="snake"),
                                dict(snake_logscale=False, use_tanh_at_final=False, use_bias_at_final=False)])
def test_small_configs_from_folder_layout(rng, tmp_path, kw):
    """config.json + bigvgan_generator.pt in a folder, every weight-norm storage form, both block types."""
    cfg = _small_cfg(**kw)
    ref, h = _ref_model(cfg, rng)
    (tmp_path / "config.json").write_text(json.dumps(dict(h, use_cuda_kernel=False)))
    torch.save({"generator": ref.state_dict()}, tmp_path / "bigvgan_generator.pt")
    ours = load_vocoder(tmp_path)
    mel = _t(rng, 2, cfg.num_mels, 23)
    with torch.no_grad():
        want = ref(mel)
    got = ours(mel)
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-6 * want.abs().max().item())
    # the same weights stored with torch.nn.utils.parametrizations, and with weight norm removed
    sd = ref.state_dict()
    param = {k.replace("weight_g", "parametrizations.weight.original0")
              .replace("weight_v", "parametrizations.weight.original1"): v for k, v in sd.items()}
    ref.remove_weight_norm()
    plain = ref.state_dict()
    for other in (param, {"vocoder." + k: v for k, v in plain.items()}):
        m = load_vocoder(other, cfg)
        for (n1, a), (n2, b) in zip(ours.state_dict().items(), m.state_dict().items()):
            assert n1 == n2 and torch.allclose(a, b, rtol=1e-6, atol=1e-7), n1


def test_loader_errors(rng, tmp_path):
    cfg = _small_cfg()
    sd = BigVGAN(cfg).state_dict()
    with pytest.raises(VocoderCheckpointError, match="not a BigVGAN generator"):
        load_vocoder({"mpd.discriminators.0.convs.0.weight": torch.zeros(3)})
    with pytest.raises(VocoderCheckpointError, match="matches no known BigVGAN preset"):
        load_vocoder({"conv_pre.weight": torch.zeros(32, 11, 7)})
    # our own module's names are not the official layout: everything past conv_pre is "missing"
    with pytest.raises(VocoderCheckpointError, match="lacks"):
        load_vocoder(sd, cfg)
    # a 16 kHz-shaped file with the 44 kHz config
    with pytest.raises(VocoderCheckpointError, match="expected"):
        load_vocoder({"conv_pre.weight": torch.zeros(1536, 80, 7)}, "bigvgan_v2_44khz_128band_512x")
    # a truncated file
    path = tmp_path / "g.pt"
    torch.save({"generator": {"conv_pre.weight": torch.zeros(32, 11, 7)}}, path)
    path.write_bytes(path.read_bytes()[:-200])
    with pytest.raises(VocoderCheckpointError, match="truncated"):
        load_vocoder(path, cfg)
    with pytest.raises(ValueError, match="preset"):
        load_vocoder({"conv_pre.weight": torch.zeros(1)}, "no_such_preset")
    with pytest.raises(ValueError, match="lacks the field"):
        load_vocoder({"conv_pre.weight": torch.zeros(1)}, {"num_mels": 80})


def test_generator_bad_mel(rng):
    voc = BigVGAN(_small_cfg())
    with pytest.raises(ValueError, match=r"\(B, 11, frames\)"):
        voc(torch.zeros(1, 12, 5))
    with pytest.raises(ValueError, match="NaN"):
        voc(torch.full((1, 11, 5), float("nan")))


# ------------------------------------------------------------------------------------------- wiring
def test_latents_to_waveform_checks_sample_rates(rng):
    from sonicore.models.mmaudio import latents_to_waveform
    from sonicore.models.mmaudio.vae import MelVAE
    vae = MelVAE(data_dim=80, embed_dim=20, hidden_dim=8, encoder=False)
    with torch.no_grad():
        for prm in vae.parameters():  # MelVAE allocates uninitialised weights (they come from a checkpoint)
            prm.copy_(_t(rng, *prm.shape, scale=0.1))
    net = SimpleNamespace(cfg=SimpleNamespace(latent_dim=20, sample_rate=16000))
    voc16 = BigVGAN(_small_cfg(num_mels=80, sampling_rate=16000))
    z = _t(rng, 1, 7, 20)
    wav = latents_to_waveform(net, vae, voc16, z)
    assert wav.shape == (1, 14 * voc16.hop_size)
    # same as running the two stages by hand
    mel = vae.decode(z.transpose(1, 2))
    assert torch.allclose(wav, voc16(mel)[:, 0])
    voc44 = BigVGAN(_small_cfg(num_mels=80, sampling_rate=44100))
    with pytest.raises(ValueError, match="44100 Hz"):
        latents_to_waveform(net, vae, voc44, z)
    voc_bins = BigVGAN(_small_cfg(num_mels=128, sampling_rate=16000))
    with pytest.raises(ValueError, match="128 mel bins"):
        latents_to_waveform(net, vae, voc_bins, z)


@needs_bigvgan
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_generator_cuda_matches_bigvgan_package(rng, dtype, monkeypatch):
    """On the GPU: cuDNN convolutions + the Triton anti-aliased Snake, against the package on the GPU in
    float32; bf16 is judged by the package's own bf16 error (ours at most 2x + a small floor).
    TF32 is off for both: torch lets cuDNN run float32 convolutions in TF32 by default, and the two
    sides pick different convolution algorithms (an H100 run differed by more than 1e-4 that way)."""
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    cfg = PRESETS["bigvgan_v2_44khz_128band_512x"]
    ref, _ = _ref_model(cfg, rng)
    ours = load_vocoder({"generator": ref.state_dict()}, dtype=dtype, device="cuda")
    ref = ref.cuda()
    mel = (_t(rng, 2, cfg.num_mels, 37) - 3).cuda()
    with torch.no_grad():
        want = ref(mel).double()
        ref_low = ref.to(dtype)(mel.to(dtype)).double() if dtype != torch.float32 else want
    got = ours(mel).double()
    scale = want.abs().max().item()
    if dtype == torch.float32:
        assert torch.allclose(got, want, rtol=1e-4, atol=1e-4 * scale)
    else:
        ref_err = (ref_low - want).abs().max().item()
        assert (got - want).abs().max().item() <= 2 * ref_err + 1e-3 * scale
