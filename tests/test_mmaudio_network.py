"""sonicore's MMAudio network against the plain-torch reference (tests/mmaudio_reference.py) at sizes
the goldens do not cover, reduced precision, the checkpoint loader and the condition checks."""
import dataclasses

import numpy as np
import pytest
import torch

from mmaudio_reference import ReferenceMMAudio
from sonicore.models import mmaudio
from sonicore.models.mmaudio import CheckpointError, MMAudioConfig, MMAudioNetwork, variant_config
from sonicore.models.mmaudio.loader import infer_config

SMALL = dict(latent_dim=20, clip_dim=24, sync_dim=40, text_dim=36, hidden_dim=128, depth=3, fused_depth=1,
             num_heads=2, text_seq_len=5)


def random_state_dict(cfg: MMAudioConfig, gen: torch.Generator):
    """Every parameter random (as the goldens do) so that no path hides behind a zero init."""
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in MMAudioNetwork(cfg).state_dict().items()}
    sd = {}
    for k, s in shapes.items():
        if k.endswith("norm.weight"):
            sd[k] = 1 + 0.1 * torch.randn(s, generator=gen)
        elif len(s) >= 2 and not k.startswith(("empty_", "latent_", "sync_pos")):
            sd[k] = torch.randn(s, generator=gen) / np.sqrt(np.prod(s[1:]))
        elif k == "latent_std":
            sd[k] = 0.5 + torch.rand(s, generator=gen)
        else:
            sd[k] = 0.3 * torch.randn(s, generator=gen)
    return sd


def _inputs(cfg, gen, B, N, Nc, Ns):
    r = lambda *s: torch.randn(*s, generator=gen)
    return dict(x=r(B, N, cfg.latent_dim), clip=r(B, Nc, cfg.clip_dim), sync=r(B, Ns, cfg.sync_dim),
                text=r(B, cfg.text_seq_len, cfg.text_dim), mix=r(B, N, cfg.latent_dim), t=torch.rand(B, generator=gen))


def _call(net, inp, sep):
    args = [inp["x"], inp["clip"], inp["sync"], inp["text"]] + ([inp["mix"]] if sep else []) + [inp["t"]]
    with torch.no_grad():
        return net(*args)


@pytest.mark.parametrize("v2,sep,N,Nc,Ns", [(False, False, 37, 7, 16), (True, False, 97, 13, 104),
                                             (False, True, 1, 1, 8), (True, False, 37, 7, 16),
                                             (False, True, 97, 13, 104)])
def test_network_matches_reference(rng, v2, sep, N, Nc, Ns):
    cfg = MMAudioConfig(**SMALL, v2=v2, separation=sep)
    gen = torch.Generator().manual_seed(int(rng.integers(1 << 31)))
    sd = random_state_dict(cfg, gen)
    net = mmaudio.load(sd)
    ref = ReferenceMMAudio(**dataclasses.asdict(cfg)).eval()
    ref.load_state_dict(sd)
    inp = _inputs(cfg, gen, 3, N, Nc, Ns)
    ours, want = _call(net, inp, sep), _call(ref, inp, sep)
    if Ns < N:  # upsampled sync rows repeat: the adaLN GEMM ran on the distinct rows only
        assert net._rows_cache[1] is not None
    ref64 = ref.double()
    exact = _call(ref64, {k: v.double() for k, v in inp.items()}, sep)
    ref_err = (want.double() - exact).abs().max().item()
    err = (ours.double() - exact).abs().max().item()
    scale = exact.abs().max().item()
    assert err <= max(2 * ref_err, 2e-5 * scale), (err, ref_err, scale)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_reduced_precision_within_twice_reference_error(rng, dtype):
    cfg = MMAudioConfig(**SMALL)
    gen = torch.Generator().manual_seed(int(rng.integers(1 << 31)))
    sd = random_state_dict(cfg, gen)
    net = mmaudio.load(sd, dtype=dtype)
    assert net.dtype == dtype
    ref = ReferenceMMAudio(**dataclasses.asdict(cfg)).eval()
    ref.load_state_dict(sd)
    inp = _inputs(cfg, gen, 2, 29, 5, 16)
    exact = _call(ref.double(), {k: v.double() for k, v in inp.items()}, False)
    low = _call(ref.to(dtype), {k: (v.to(dtype) if k != "t" else v) for k, v in inp.items()}, False)
    ours = _call(net, inp, False)
    assert ours.dtype == dtype
    ref_err = (low.double() - exact).abs().max().item()
    err = (ours.double() - exact).abs().max().item()
    assert err <= 2 * ref_err + 1e-3 * exact.abs().max().item(), (err, ref_err)


# ---------------------------------------------------------------- variant recognition
@pytest.mark.parametrize("name,params", [("small_16k", 157e6), ("small_44k", 157e6), ("medium_44k", 622e6),
                                         ("large_44k", 1.03e9), ("large_44k_v2", 1.03e9)])
@pytest.mark.parametrize("sep", [False, True])
def test_variant_recognised_from_shapes(name, params, sep):
    cfg = variant_config(name, separation=sep)
    with torch.device("meta"):
        net = MMAudioNetwork(cfg)
    shapes = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    got = infer_config(shapes)
    assert got == cfg
    n = sum(v.numel() for v in net.parameters())
    assert abs(n - params) / params < 0.05, n


# ---------------------------------------------------------------- loader
@pytest.fixture(scope="module")
def small_sd():
    return random_state_dict(MMAudioConfig(**SMALL), torch.Generator().manual_seed(7))


def test_pth_with_old_keys_and_prefix(tmp_path, small_sd, rng):
    sd = {"module." + k: v for k, v in small_sd.items()}
    sd["module.latent_rot"] = torch.zeros(1, 5, 32, 2, 2)
    sd["module.clip_rot"] = torch.zeros(1, 5, 32, 2, 2)
    sd["module.t_embed.freqs"] = torch.zeros(128)
    path = tmp_path / "net.pth"
    torch.save(sd, path)
    net = mmaudio.load(path)
    ref = mmaudio.load(small_sd)
    cfg = net.cfg
    gen = torch.Generator().manual_seed(int(rng.integers(1 << 31)))
    inp = _inputs(cfg, gen, 1, 11, 3, 8)
    assert torch.equal(_call(net, inp, False), _call(ref, inp, False))
    assert net.variant is None and net.cfg.sample_rate == 16000


def test_safetensors_file(tmp_path, small_sd):
    from safetensors.torch import save_file
    path = tmp_path / "net.safetensors"
    save_file(small_sd, str(path))
    net = mmaudio.load(path)
    for k, v in net.state_dict().items():
        assert torch.equal(v, small_sd[k]), k


def test_truncated_pth_is_reported(tmp_path, small_sd):
    path = tmp_path / "net.pth"
    torch.save(small_sd, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="could not be read"):
        mmaudio.load(path)


def test_truncated_safetensors_is_reported(tmp_path, small_sd):
    from safetensors.torch import save_file
    path = tmp_path / "net.safetensors"
    save_file(small_sd, str(path))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 1000])
    with pytest.raises(CheckpointError):
        mmaudio.load(path)


def test_other_model_is_reported(small_sd):
    with pytest.raises(CheckpointError, match="not an MMAudio"):
        mmaudio.load({"encoder.conv_in.weight": torch.zeros(4, 4, 3)})
    sd = dict(small_sd)
    del sd["fused_blocks.0.ffn.w2.weight"]
    with pytest.raises(CheckpointError, match="missing"):
        mmaudio.load(sd)
    sd = dict(small_sd)
    sd["joint_blocks.0.clip_block.linear1.weight"] = torch.zeros(128, 128, 5)
    with pytest.raises(CheckpointError, match="shape"):
        mmaudio.load(sd)
    sd = dict(small_sd)
    sd["extra.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match="does not"):
        mmaudio.load(sd)
    sd = dict(small_sd)
    sd["latent_std"] = torch.full_like(sd["latent_std"], float("nan"))
    with pytest.raises(CheckpointError, match="NaN"):
        mmaudio.load(sd)
    with pytest.raises(ValueError, match="dtype"):
        mmaudio.load(small_sd, dtype=torch.int8)


# ---------------------------------------------------------------- conditions
@pytest.fixture(scope="module")
def small_net(small_sd):
    return mmaudio.load(small_sd)


def test_condition_errors_name_what_is_wrong(small_net):
    cfg = small_net.cfg
    ok = dict(clip_f=torch.randn(1, 64, cfg.clip_dim), sync_f=torch.randn(1, 192, cfg.sync_dim),
              text_f=torch.randn(1, cfg.text_seq_len, cfg.text_dim))
    feats, dur, L = mmaudio.check_conditions(cfg, **ok)
    assert dur == 8.0 and L == {"latent": 250, "clip": 64, "sync": 192, "text": cfg.text_seq_len}
    with pytest.raises(ValueError, match="clip features have 25 channels; this network expects 24"):
        mmaudio.check_conditions(cfg, **{**ok, "clip_f": torch.randn(1, 64, 25)})
    with pytest.raises(ValueError, match="sync features have 184 frames; 8 s .* needs 192"):
        mmaudio.check_conditions(cfg, **{**ok, "sync_f": torch.randn(1, 184, cfg.sync_dim)})
    with pytest.raises(ValueError, match="clip features have 63 frames; 8 s at 8 frames/s needs 64"):
        mmaudio.check_conditions(cfg, **{**ok, "clip_f": torch.randn(1, 63, cfg.clip_dim)}, duration=8.0)
    bad = torch.randn(1, cfg.text_seq_len, cfg.text_dim)
    bad[0, 2, 3] = float("inf")
    with pytest.raises(ValueError, match="text features contain NaN or infinite"):
        mmaudio.check_conditions(cfg, **{**ok, "text_f": bad})
    with pytest.raises(ValueError, match="batch size"):
        mmaudio.check_conditions(cfg, **{**ok, "clip_f": torch.randn(2, 64, cfg.clip_dim)})


def test_features_from_files(tmp_path, small_net):
    from safetensors.numpy import save_file
    cfg = small_net.cfg
    clip = np.random.default_rng(0).standard_normal((40, cfg.clip_dim)).astype(np.float32)
    sync = np.random.default_rng(1).standard_normal((112, cfg.sync_dim)).astype(np.float32)
    np.save(tmp_path / "clip.npy", clip)
    np.savez(tmp_path / "feats.npz", clip_features=clip, sync_features=sync)
    save_file({"sync_f": sync, "clip_f": clip}, str(tmp_path / "feats.safetensors"))
    for c, s in [(tmp_path / "clip.npy", tmp_path / "feats.npz"),
                 (tmp_path / "feats.safetensors", tmp_path / "feats.safetensors")]:
        feats, dur, L = mmaudio.check_conditions(cfg, clip_f=c, sync_f=s)
        assert dur == 5.0 and L["clip"] == 40 and L["sync"] == 112 and L["latent"] == 157
        assert np.array_equal(feats["clip"][0].numpy(), clip) and np.array_equal(feats["sync"][0].numpy(), sync)
    with pytest.raises(ValueError, match="none is named like text"):
        mmaudio.check_conditions(cfg, text_f=tmp_path / "feats.npz")


def test_missing_conditions_use_learned_empty_features(small_net, rng):
    """Conditional branch with no features == the unconditional branch; a 5 s clip gets 157 frames."""
    net = small_net
    gen = torch.Generator().manual_seed(int(rng.integers(1 << 31)))
    x0 = torch.randn(1, 157, net.cfg.latent_dim, generator=gen)
    z = mmaudio.generate(net, duration=5.0, x0=x0, steps=2, cfg_strength=1.0, normalized=True)
    empty = net.empty_conditions(40, 112, 157)
    from sonicore.models.mmaudio.sampler import sample_latent
    want = sample_latent(net, x0, empty, None, steps=2, cfg_strength=1.0)
    assert torch.allclose(z, want, atol=1e-4)  # same math; GEMM blocking may differ with strides


def test_generate_long_chunks_and_crossfade(small_net, rng):
    net = small_net
    cfg = net.cfg
    gen_seed = int(rng.integers(1 << 31))
    dur, chunk, ov = 11.0, 4.0, 1.0
    text = torch.randn(1, cfg.text_seq_len, cfg.text_dim)
    clip = torch.randn(1, int(dur * 8), cfg.clip_dim)
    z = mmaudio.generate_long(net, duration=dur, clip_f=clip, text_f=text, chunk_seconds=chunk,
                              overlap_seconds=ov, steps=2, generator=torch.Generator().manual_seed(gen_seed))
    total = int(np.ceil(dur * cfg.latent_rate))
    assert z.shape == (1, total, cfg.latent_dim) and torch.isfinite(z).all()
    # Frames of the first chunk before any overlap are exactly that chunk sampled alone.
    noise = torch.randn(1, total, cfg.latent_dim, generator=torch.Generator().manual_seed(gen_seed))
    n = int(round(chunk * cfg.latent_rate))
    first = mmaudio.generate(net, clip_f=clip[:, :32], text_f=text, x0=noise[:, :n], duration=chunk, steps=2,
                             check_frame_rates=False)
    free = int(round((chunk - ov) * cfg.latent_rate))
    assert torch.allclose(z[:, :free], first[:, :free], atol=1e-5)
