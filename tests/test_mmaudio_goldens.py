"""Parity of sonicore's MMAudio / MMAudioSep network with tensors the original code produced
(../shared/goldens, README there). Weights go through the public loader."""
import dataclasses
import os

import pytest
import torch

from sonicore.models import mmaudio
from sonicore.models.mmaudio.embeddings import timestep_frequencies, TimestepEmbedder
from sonicore.models.mmaudio.rope import rope_table
from sonicore.models.mmaudio.sampler import sample_latent
from sonicore.ops.nn import rope_apply

from _goldens import GOLDENS, require_goldens

pytestmark = require_goldens()

NETS = ["mmaudio_tiny_v1", "mmaudio_tiny_v2", "mmaudiosep_tiny"]
# README tolerances: v1/Sep flow 1e-4, samples 2e-4; v2 1e-3 (float32 sinusoid reaches t*1e4 rad).
FLOW_TOL = {"mmaudio_tiny_v1": 1e-4, "mmaudio_tiny_v2": 1e-3, "mmaudiosep_tiny": 1e-4}
SAMPLE_TOL = {"mmaudio_tiny_v1": 2e-4, "mmaudio_tiny_v2": 1e-3, "mmaudiosep_tiny": 2e-4}


def _golden(name):
    from safetensors.torch import load_file
    return load_file(os.path.join(GOLDENS, name + ".safetensors"))


@pytest.fixture(scope="module", params=NETS)
def golden_net(request):
    path = os.path.join(GOLDENS, request.param + ".safetensors")
    return request.param, _golden(request.param), mmaudio.load(path)


def _close(a, b, tol, what):
    err = (a - b).abs().max().item()
    assert a.shape == b.shape, f"{what}: shape {tuple(a.shape)} vs {tuple(b.shape)}"
    assert err <= tol, f"{what}: max abs error {err:.3g} > {tol}"


def _inputs(g, pre):
    return (lambda n: g[f"inputs.{pre}{n}"]), (lambda n: g[f"outputs.{pre}{n}"])


@pytest.mark.parametrize("pre", ["", "seq2."])
def test_flow_conditions_and_intermediates(golden_net, pre):
    name, g, net = golden_net
    I, O = _inputs(g, pre)
    tol = FLOW_TOL[name]
    x_mix = I("x_cond") if net.cfg.separation else None
    assert net.cfg.separation == ("sep" in name) and net.cfg.v2 == name.endswith("v2")
    args = [I("x_t"), I("clip_f"), I("sync_f"), I("text_f")] + ([x_mix] if x_mix is not None else []) + [I("t")]
    net.record = {}
    try:
        with torch.no_grad():
            flow = net(*args)
        rec = net.record
    finally:
        net.record = None
    _close(flow, O("flow"), tol, "flow")
    for k, v in rec.items():
        v = v.squeeze(1) if v.dim() == 3 and v.shape[1] == 1 else v
        _close(v, O(f"inter.{k}"), tol, f"inter.{k}")
    assert {f"joint_blocks.{i}.{s}" for i in range(2) for s in ("latent", "clip_f", "text_f")} <= set(rec)
    assert "fused_blocks.0" in rec

    N = I("x_t").shape[1]
    with torch.no_grad():
        cond = net.preprocess_conditions(I("clip_f"), I("sync_f"), I("text_f"), N)
        empty = net.empty_conditions(I("clip_f").shape[1], I("sync_f").shape[1], N)
        for k, v in dataclasses.asdict(cond).items():
            _close(v, O(f"cond.{k}"), 1e-5 * 10, f"cond.{k}")
        for k, v in dataclasses.asdict(empty).items():
            _close(v, O(f"empty_cond.{k}"), 1e-5 * 10, f"empty_cond.{k}")
        flow_u = net.predict_flow(I("x_t"), I("t"), empty.expand(N and I("x_t").shape[0]), x_mix)
    _close(flow_u, O("flow_uncond"), tol, "flow_uncond")
    latent_rot, clip_rot = net.rope_tables(N, I("clip_f").shape[1])
    _close(latent_rot, O("latent_rot"), 1e-6, "latent_rot")
    _close(clip_rot, O("clip_rot"), 1e-6, "clip_rot")


@pytest.mark.parametrize("pre", ["", "seq2."])
def test_sampler_trajectory(golden_net, pre):
    name, g, net = golden_net
    I, O = _inputs(g, pre)
    x_mix = I("x_cond") if net.cfg.separation else None
    N = I("x_t").shape[1]
    traj = []
    with torch.no_grad():
        cond = net.preprocess_conditions(I("clip_f"), I("sync_f"), I("text_f"), N)
        empty = net.empty_conditions(I("clip_f").shape[1], I("sync_f").shape[1], N)
        x = sample_latent(net, I("x0"), cond, empty, steps=4, cfg_strength=4.5, x_mix=x_mix, trajectory=traj)
    _close(torch.stack(traj), O("sample_trajectory"), SAMPLE_TOL[name], "sample_trajectory")
    _close(x, O("sample_normalized"), SAMPLE_TOL[name], "sample_normalized")
    _close(net.unnormalize(x), O("sample"), SAMPLE_TOL[name], "sample")


def test_generate_api_reproduces_sample():
    """The user-facing generate() (features in, un-normalised latent out) gives the golden sample."""
    g = _golden("mmaudio_tiny_v1")
    net = mmaudio.load(os.path.join(GOLDENS, "mmaudio_tiny_v1.safetensors"))
    z = mmaudio.generate(net, clip_f=g["inputs.clip_f"], sync_f=g["inputs.sync_f"], text_f=g["inputs.text_f"],
                         x0=g["inputs.x0"], steps=4, cfg_strength=4.5, check_frame_rates=False)
    _close(z, g["outputs.sample"], 2e-4, "generate")


# ---------------------------------------------------------------- components at head dim 64
@pytest.fixture(scope="module")
def comp():
    return _golden("mmaudio_components_hd64")


@pytest.mark.parametrize("n", [250, 345])
def test_rope_tables_hd64(comp, n):
    _close(rope_table(n, 64), comp[f"rope.latent_rot_{n}"], 1e-6, "latent rope")
    _close(rope_table(64, 64, scale=n / 64), comp[f"rope.clip_rot_64_for_{n}"], 1e-6, "clip rope")


def test_rope_apply_hd64(comp):
    out = rope_apply(comp["rope.apply.x"], rope_table(64, 64, scale=345 / 64))
    _close(out, comp["rope.apply.out"], 1e-5, "rope apply")


def test_timestep_sinusoids(comp):
    _close(timestep_frequencies(256, 10000), comp["temb.v1_freqs"], 0, "v1 freqs")
    _close(timestep_frequencies(896, 1), comp["temb.v2_freqs"], 0, "v2 freqs")
    _close(TimestepEmbedder(8, 256, 10000).sinusoid(comp["temb.t"]), comp["temb.v1_sinusoid"], 1e-6, "v1 sinusoid")
    _close(TimestepEmbedder(8, 896, 1).sinusoid(comp["temb.t"]), comp["temb.v2_sinusoid"], 1e-6, "v2 sinusoid")


@pytest.mark.parametrize("src,dst", [(192, 250), (192, 345), (24, 25), (32, 31)])
def test_sync_resampling_index_maps(comp, src, dst):
    from sonicore.models.mmaudio.network import resample_sync
    x = torch.arange(src, dtype=torch.float32).view(1, src, 1).expand(2, src, 3)
    got = resample_sync(x, dst)[0, :, 0].long()
    assert torch.equal(got, comp[f"interp.nearest_exact_{src}_to_{dst}"])
