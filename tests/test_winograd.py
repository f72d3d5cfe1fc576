"""Winograd F(m, r) convolutions (sonicore.ops.winograd) against torch.nn.functional.conv1d in float64,
the C++ transforms against their torch references, and the MMAudio layers that use them."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sonicore.ops import winograd as wg


def conv_same(x, w, bias=None, lens=None):
    """Independent reference: F.conv1d in float64 on channel-first data; rows with lens are cut to
    their own length (zero padding past the end), outputs past the end are left at zero."""
    B, N, _ = x.shape
    r = w.shape[0]
    wt = w.permute(2, 1, 0).double()                           # (Cout, Cin, r)
    out = torch.zeros(B, N, w.shape[2], dtype=torch.float64)
    for b in range(B):
        n = N if lens is None else int(lens[b])
        y = F.conv1d(x[b:b + 1, :n].double().transpose(1, 2), wt, None if bias is None else bias.double(),
                     padding=r // 2)
        out[b, :n] = y[0].transpose(0, 1)
    return out


def _data(rng, B, N, Cin, Cout, r):
    g = torch.Generator().manual_seed(int(rng.integers(1 << 31)))
    x = torch.randn(B, N, Cin, generator=g)
    w = torch.randn(r, Cin, Cout, generator=g) / np.sqrt(r * Cin)
    bias = torch.randn(Cout, generator=g)
    return x, w, bias, g


@pytest.mark.parametrize("m,r", [(2, 3), (4, 3), (6, 3), (2, 5), (2, 7), (4, 7), (3, 1)])
def test_plan_is_exact_in_float64(rng, m, r):
    """The Toom-Cook matrices compute the convolution exactly (up to float64 rounding)."""
    plan = wg.WinogradPlan(m, r)
    x, w, bias, _ = _data(rng, 2, int(rng.integers(1, 40)), 5, 3, r)
    x, w, bias = x.double(), w.double(), bias.double()
    y = wg.winograd_conv1d(x, wg.winograd_weight(w, plan), plan, bias, backend="torch")
    want = conv_same(x, w, bias)
    assert (y - want).abs().max().item() < 1e-11 * max(1.0, want.abs().max().item())


@pytest.mark.parametrize("N", [1, 2, 3, 5, 97, 250, 251])
@pytest.mark.parametrize("Cin,Cout", [(1, 1), (7, 65), (130, 64), (64, 129)])
def test_float32_conv_against_conv1d(rng, N, Cin, Cout):
    """The default F(4, 3) in float32 (C++ transforms) against float64 conv1d: within a few times the
    error of a float32 direct convolution (~1e-6 of the output scale)."""
    plan = wg.winograd_plan(3, 4)
    x, w, bias, _ = _data(rng, 2, N, Cin, Cout, 3)
    y = wg.winograd_conv1d(x, wg.winograd_weight(w, plan), plan, bias, backend="cpu")
    want = conv_same(x, w, bias)
    direct = F.conv1d(x.transpose(1, 2), w.permute(2, 1, 0), bias, padding=1).transpose(1, 2)
    scale = want.abs().max().item()
    err = (y.double() - want).abs().max().item()
    direct_err = (direct.double() - want).abs().max().item()
    assert err <= max(8 * direct_err, 5e-6 * scale), (err, direct_err, scale)


@pytest.mark.parametrize("m,r", [(4, 3), (2, 7), (2, 3)])
def test_cpu_transforms_equal_torch_reference(rng, m, r):
    plan = wg.WinogradPlan(m, r)
    B, N, C = 3, int(rng.integers(1, 90)), int(rng.integers(1, 150))
    x = torch.from_numpy(rng.standard_normal((B, N + 3, C)).astype(np.float32))[:, 1:N + 1]  # strided view
    lens = torch.tensor([N, max(1, N // 2), 1])
    u_cpu = wg.winograd_input(x, plan, lens=lens, backend="cpu")
    u_ref = wg.winograd_input(x, plan, lens=lens, backend="torch")
    torch.testing.assert_close(u_cpu, u_ref, rtol=1e-6, atol=1e-6)
    T = plan.tiles(N)
    M = torch.from_numpy(rng.standard_normal((plan.alpha, B * T, 2 * C)).astype(np.float32))
    bias = torch.randn(2 * C)
    res = torch.randn(B, N, 2 * C)
    for gate in (torch.randn(B, 1, 2 * C), torch.randn(B, N, 4 * C)[..., :2 * C]):
        for kw in (dict(), dict(bias=bias), dict(bias=bias, residual=res, gate=gate), dict(swiglu=True),
                   dict(swiglu=True, bias=bias)):
            a = wg.winograd_output(M, N, plan, backend="cpu", **kw)
            b = wg.winograd_output(M, N, plan, backend="torch", **kw)
            torch.testing.assert_close(a, b, rtol=2e-6, atol=2e-5)


def test_gated_output_in_place_on_the_residual(rng):
    plan = wg.winograd_plan(3, 4)
    B, N, C = 2, 13, 70
    M = torch.from_numpy(rng.standard_normal((plan.alpha, B * plan.tiles(N), C)).astype(np.float32))
    res, gate = torch.randn(B, N, C), torch.randn(B, 1, C)
    want = wg.winograd_output(M, N, plan, residual=res, gate=gate, backend="torch")
    got = wg.winograd_output(M, N, plan, residual=res, gate=gate, out=res, backend="cpu")
    assert got.data_ptr() == res.data_ptr()
    torch.testing.assert_close(got, want, rtol=2e-6, atol=2e-5)


def test_padded_rows_match_their_own_length(rng):
    """Frames past lens[b] read as zero: each row equals the convolution of that row cut to its length."""
    plan = wg.winograd_plan(3, 4)
    x, w, bias, _ = _data(rng, 3, 41, 33, 17, 3)
    x[1, 20:] = float("nan")  # whatever sits in the padding never reaches a valid frame
    lens = [41, 20, 7]
    y = wg.winograd_conv1d(x, wg.winograd_weight(w, plan), plan, bias, lens=lens)
    want = conv_same(torch.nan_to_num(x), w, bias, lens)
    for b, n in enumerate(lens):
        assert (y[b, :n].double() - want[b, :n]).abs().max().item() < 1e-5


def test_bad_input_is_reported():
    plan = wg.winograd_plan(3, 4)
    with pytest.raises(ValueError, match="odd r"):
        wg.WinogradPlan(4, 2)
    with pytest.raises(ValueError, match="alpha"):
        wg.WinogradPlan(14, 5)
    with pytest.raises(ValueError, match="distinct"):
        wg.WinogradPlan(2, 3, points=[0, 1, 1])
    with pytest.raises(ValueError, match=r"\(r=3, Cin, Cout\)"):
        wg.winograd_weight(torch.zeros(5, 4, 4), plan)
    with pytest.raises(ValueError, match=r"\(B, N, C\)"):
        wg.winograd_input(torch.zeros(4, 4), plan)
    with pytest.raises(ValueError, match="one valid length per batch row"):
        wg.winograd_input(torch.zeros(2, 5, 3), plan, lens=[5])
    with pytest.raises(ValueError, match="tile rows"):
        wg.winograd_output(torch.zeros(6, 5, 3), 9, plan)
    with pytest.raises(ValueError, match="both residual and gate"):
        wg.winograd_output(torch.zeros(6, 3, 4), 9, plan, residual=torch.zeros(1, 9, 4))
    with pytest.raises(ValueError, match="even channel count"):
        wg.winograd_output(torch.zeros(6, 3, 5), 9, plan, swiglu=True)
    with pytest.raises(ValueError, match="float32"):
        wg.winograd_input(torch.zeros(1, 5, 3, dtype=torch.float64), plan, backend="cpu")
    with pytest.raises(ValueError, match=r"v must be"):
        wg.winograd_conv1d(torch.zeros(1, 5, 3), torch.zeros(6, 4, 2), plan)


def test_network_conv_algorithms_agree(rng):
    """The MMAudio network with Winograd convolutions (CPU float32 default) against the im2col GEMM
    path and the plain-torch reference network run in float64."""
    import dataclasses

    from mmaudio_reference import ReferenceMMAudio
    from test_mmaudio_network import SMALL, _call, _inputs, random_state_dict
    from sonicore.models import mmaudio
    from sonicore.models.mmaudio import MMAudioConfig

    cfg = MMAudioConfig(**SMALL, v2=True)
    gen = torch.Generator().manual_seed(int(rng.integers(1 << 31)))
    sd = random_state_dict(cfg, gen)
    net = mmaudio.load(sd)
    inp = _inputs(cfg, gen, 2, 53, 11, 40)
    wino = _call(net, inp, False)
    im2col = _call(net.set_conv_algorithm("im2col"), inp, False)
    ref = ReferenceMMAudio(**dataclasses.asdict(cfg)).eval()
    ref.load_state_dict(sd)
    exact = _call(ref.double(), {k: v.double() for k, v in inp.items()}, False)
    scale = exact.abs().max().item()
    assert (wino.double() - exact).abs().max().item() < 2e-5 * scale
    assert (im2col.double() - exact).abs().max().item() < 2e-5 * scale
    assert not torch.equal(wino, im2col)  # the two paths really differ
    with pytest.raises(ValueError, match="conv algorithm"):
        net.set_conv_algorithm("fft")


def test_auto_respects_the_memory_budget():
    """"auto" adds Winograd weights only within the budget: the small models yes, large_44k (5.6 GB of
    transformed float32 weights) keeps the im2col GEMM unless asked."""
    from sonicore.models.mmaudio import MMAudioNetwork, variant_config
    from sonicore.models.mmaudio.layers import ChannelLastConv1d

    def algos(net):
        return {m.conv_algorithm for m in net.modules() if isinstance(m, ChannelLastConv1d)}

    with torch.device("meta"):
        small = MMAudioNetwork(variant_config("small_16k"))
        large = MMAudioNetwork(variant_config("large_44k"))
    assert 0.5e9 < small.winograd_weight_bytes() < 1 << 30 < large.winograd_weight_bytes()
    assert algos(small) == {"auto"} and algos(large) == {"im2col"}
    assert algos(large.set_conv_algorithm("auto", winograd_budget=1 << 40)) == {"auto"}
    assert algos(large.set_conv_algorithm("winograd")) == {"winograd"}
    assert algos(small.set_conv_algorithm("auto", winograd_budget=0)) == {"im2col"}


def test_training_keeps_gradients_on_the_real_weights(rng):
    """With gradients wanted, the convolution takes the im2col GEMM (the Winograd weights are a cached
    copy that gradients would not reach): weight gradients equal those of conv1d."""
    from sonicore.models.mmaudio.layers import ChannelLastConv1d

    conv = ChannelLastConv1d(6, 5, 3)
    g = torch.Generator().manual_seed(int(rng.integers(1 << 31)))
    with torch.no_grad():
        conv.weight.copy_(torch.randn(5, 6, 3, generator=g))
        conv.bias.copy_(torch.randn(5, generator=g))
    x = torch.randn(2, 11, 6, generator=g)
    conv(x).square().sum().backward()
    w = conv.weight.detach().clone().requires_grad_(True)
    F.conv1d(x.transpose(1, 2), w, conv.bias.detach(), padding=1).transpose(1, 2).square().sum().backward()
    torch.testing.assert_close(conv.weight.grad, w.grad, rtol=1e-5, atol=1e-5)
    with torch.no_grad():  # inference takes Winograd and agrees
        torch.testing.assert_close(conv(x), F.conv1d(x.transpose(1, 2), conv.weight, conv.bias, padding=1).transpose(1, 2),
                                   rtol=1e-5, atol=1e-5)
