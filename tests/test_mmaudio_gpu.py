"""MMAudio network and sampler on a CUDA GPU (skipped without one): golden parity in float32 with the
CUDA-graph sampler, and bfloat16 within twice the reference's own bf16 error."""
import dataclasses
import os

import pytest
import torch

from sonicore.models import mmaudio
from sonicore.models.mmaudio.sampler import sample_latent

from _goldens import GOLDENS, require_goldens

pytestmark = [pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"), require_goldens()]


def _g(name):
    from safetensors.torch import load_file
    return {k: v.cuda() for k, v in load_file(os.path.join(GOLDENS, name + ".safetensors")).items()}


@pytest.mark.parametrize("name", ["mmaudio_tiny_v1", "mmaudiosep_tiny"])
def test_cuda_golden_flow_and_graph_sampler(name):
    torch.backends.cuda.matmul.allow_tf32 = False
    g = _g(name)
    net = mmaudio.load(os.path.join(GOLDENS, name + ".safetensors"), device="cuda")
    I = lambda n: g["inputs." + n]  # noqa: E731
    x_mix = I("x_cond") if net.cfg.separation else None
    with torch.no_grad():
        cond = net.preprocess_conditions(I("clip_f"), I("sync_f"), I("text_f"), 25)
        empty = net.empty_conditions(8, 24, 25)
        flow = net.predict_flow(I("x_t"), I("t"), cond, x_mix)
    assert (flow - g["outputs.flow"]).abs().max().item() <= 1e-4
    x = sample_latent(net, I("x0"), cond, empty, steps=4, cfg_strength=4.5, x_mix=x_mix, cuda_graph=True)
    assert (net.unnormalize(x) - g["outputs.sample"]).abs().max().item() <= 2e-4
    # A second call replays the captured graph.
    x2 = sample_latent(net, I("x0"), cond, empty, steps=4, cfg_strength=4.5, x_mix=x_mix, cuda_graph=True)
    assert torch.equal(x, x2)


def test_cuda_bf16_within_twice_reference_error():
    import sys
    sys.path.insert(0, os.path.dirname(__file__))
    from mmaudio_reference import ReferenceMMAudio
    from test_mmaudio_network import SMALL, _call, _inputs, random_state_dict
    cfg = mmaudio.MMAudioConfig(**SMALL)
    gen = torch.Generator().manual_seed(11)
    sd = random_state_dict(cfg, gen)
    net = mmaudio.load(sd, dtype=torch.bfloat16, device="cuda")
    ref = ReferenceMMAudio(**dataclasses.asdict(cfg)).eval()
    ref.load_state_dict(sd)
    inp = {k: v.cuda() for k, v in _inputs(cfg, gen, 2, 250, 64, 192).items()}
    exact = _call(ref.double().cuda(), {k: v.double() for k, v in inp.items()}, False)
    low = _call(ref.to(torch.bfloat16), {k: (v.bfloat16() if k != "t" else v) for k, v in inp.items()}, False)
    ours = _call(net, inp, False)
    ref_err = (low.double() - exact).abs().max().item()
    err = (ours.double() - exact).abs().max().item()
    assert err <= 2 * ref_err + 1e-3 * exact.abs().max().item(), (err, ref_err)
