"""Fused nn kernels (sonicore.ops.nn) against plain-torch references on awkward sizes."""
import pytest
import torch
import torch.nn.functional as F

from sonicore.ops import nn as nnops
from sonicore.models.mmaudio.rope import rope_table


def _t(rng, *shape, dtype=torch.float32):
    return torch.from_numpy(rng.standard_normal(shape)).to(dtype)


def _taps64(y, taps):
    """Independent im2col in float64: out[b, n, j*C + c] = y[b, n + j - taps//2, c], zero outside."""
    B, N, C = y.shape
    out = torch.zeros(B, N, taps * C, dtype=torch.float64)
    for j in range(taps):
        for n in range(N):
            m = n + j - taps // 2
            if 0 <= m < N:
                out[:, n, j * C:(j + 1) * C] = y[:, m].double()
    return out


@pytest.mark.parametrize("taps", [1, 3, 7])
@pytest.mark.parametrize("B,N,D,per_token", [(1, 1, 7, False), (2, 97, 448, True), (3, 13, 64, False)])
def test_adaln_layernorm(rng, B, N, D, per_token, taps):
    x = _t(rng, B, N, D) * 3 + 1
    mod = _t(rng, B, N if per_token else 1, 6 * D)
    shift, scale = mod.chunk(6, -1)[3:5]  # strided views, as the blocks pass them
    want = _taps64(F.layer_norm(x.double(), (D,), eps=1e-5) * (1 + scale.double()) + shift.double(), taps)
    got = nnops.adaln_layernorm(x, shift, scale, taps=taps, backend="cpu")
    ref = nnops.adaln_layernorm(x, shift, scale, taps=taps, backend="torch")
    assert got.shape == ref.shape == want.shape
    ref_err = (ref.double() - want).abs().max().item()
    assert (got.double() - want).abs().max().item() <= max(2 * ref_err, 1e-5)


@pytest.mark.parametrize("B,N,H,hd,rope", [(1, 1, 1, 2, True), (2, 37, 7, 64, True), (2, 19, 3, 16, False)])
def test_qk_norm_rope(rng, B, N, H, hd, rope):
    qkv = _t(rng, B, N, 3 * H * hd) * 2
    qw, kw = 1 + 0.1 * _t(rng, hd), 1 + 0.1 * _t(rng, hd)
    rot = rope_table(N, hd, scale=1.7) if rope else None
    # Independent reference in float64: explicit index arithmetic for the interleaved layout.
    ch = torch.arange(3 * H * hd).view(H, hd, 3)
    q, k, v = (qkv.double()[..., ch[..., j]].permute(0, 2, 1, 3) for j in range(3))
    eps = torch.finfo(torch.float32).eps

    def rms(x, w):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w.double()

    def rot_pairs(x):
        if rot is None:
            return x
        ang = rot.double()[0]  # (N, hd/2, 2, 2)
        x0, x1 = x[..., 0::2], x[..., 1::2]
        return torch.stack([ang[..., 0, 0] * x0 + ang[..., 0, 1] * x1, ang[..., 1, 0] * x0 + ang[..., 1, 1] * x1],
                           -1).flatten(-2)
    want = (rot_pairs(rms(q, qw)), rot_pairs(rms(k, kw)), v)
    # Outputs written into a slice of a larger joint buffer, as the network does.
    buf = torch.full((3, B, H, N + 5, hd), float("nan"))
    out = tuple(buf[j, :, :, 2:2 + N] for j in range(3))
    got = nnops.qk_norm_rope(qkv, H, qw, kw, rot, out=out, backend="cpu")
    ref = nnops.qk_norm_rope(qkv, H, qw, kw, rot, backend="torch")
    for g, r, w in zip(got, ref, want):
        ref_err = (r.double() - w).abs().max().item()
        assert (g.double() - w).abs().max().item() <= max(2 * ref_err, 2e-6)
    assert torch.isnan(buf[:, :, :, :2]).all() and torch.isnan(buf[:, :, :, 2 + N:]).all()


@pytest.mark.parametrize("taps", [1, 3])
@pytest.mark.parametrize("B,M,F_", [(1, 1, 1), (2, 97, 1280), (3, 5, 13)])
def test_swiglu(rng, B, M, F_, taps):
    h = _t(rng, B, M, 2 * F_) * 4
    h[0, 0, 0] = -100.0  # saturating tails
    if F_ > 1:
        h[0, 0, 1] = 90.0
    a, b = h.double().chunk(2, -1)
    want = _taps64(a * torch.sigmoid(a) * b, taps)
    got = nnops.swiglu(h, taps=taps, backend="cpu").double()
    ref = nnops.swiglu(h, taps=taps, backend="torch").double()
    ref_err = (ref - want).abs().max().item()
    assert (got - want).abs().max().item() <= max(2 * ref_err, 1e-6 * max(want.abs().max().item(), 1.0))


@pytest.mark.parametrize("taps", [1, 3])
def test_merge_heads(rng, taps):
    o_full = _t(rng, 2, 7, 41, 64)
    o = o_full[:, :, 3:3 + 29]  # a stream's slice of the joint attention output
    want = _taps64(o.double().transpose(1, 2).reshape(2, 29, 7 * 64), taps)
    got = nnops.merge_heads(o, taps=taps, backend="cpu")
    assert torch.equal(got.double(), want)
    assert torch.equal(nnops.merge_heads(o, taps=taps, backend="torch").double(), want)


def test_bad_inputs_are_value_errors(rng):
    x = _t(rng, 2, 5, 8)
    with pytest.raises(ValueError, match=r"shift must be \(2, 1 or 5, 8\)"):
        nnops.adaln_layernorm(x, _t(rng, 2, 3, 8), _t(rng, 2, 1, 8))
    with pytest.raises(ValueError, match="qkv"):
        nnops.qk_norm_rope(_t(rng, 2, 5, 10), 2, _t(rng, 2), _t(rng, 2))
    with pytest.raises(ValueError, match=r"\(B, N, 2F\)"):
        nnops.swiglu(_t(rng, 1, 3, 5))
    with pytest.raises(ValueError, match="taps"):
        nnops.swiglu(_t(rng, 1, 3, 4), taps=2)
    from sonicore._backend import BackendUnavailable
    with pytest.raises(BackendUnavailable, match="float32"):
        nnops.swiglu(_t(rng, 1, 3, 4, dtype=torch.float64), backend="cpu")
    from sonicore._ext import C
    with pytest.raises(ValueError, match="float32"):
        C.nn_swiglu(_t(rng, 1, 3, 4, dtype=torch.float64).numpy(), torch.zeros(1, 3, 2).numpy(), 1)
    with pytest.raises(ValueError, match=r"\(B, N, 2F\)"):
        C.nn_swiglu(torch.zeros(1, 3, 4).numpy(), torch.zeros(1, 3, 3).numpy(), 1)


# ---------------------------------------------------------------- Triton (interpreter here, GPU in the proof run)
def _triton_or_skip():
    from sonicore._backend import triton_usable
    ok, why = triton_usable()
    if not ok:
        pytest.skip(why)


@pytest.mark.parametrize("taps", [1, 3])
def test_triton_adaln_and_swiglu(rng, taps):
    _triton_or_skip()
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    x = _t(rng, 2, 7, 48).to(dev)
    mod = _t(rng, 2, 7, 6 * 48).to(dev)
    shift, scale = mod.chunk(6, -1)[:2]
    want = _taps64(F.layer_norm(x.double(), (48,), eps=1e-5) * (1 + scale.double()) + shift.double(), taps)
    got = nnops.adaln_layernorm(x, shift, scale, taps=taps, backend="triton")
    assert (got.double().cpu() - want.cpu()).abs().max().item() <= 1e-5
    h = _t(rng, 2, 5, 2 * 40).to(dev)
    a, b = h.double().chunk(2, -1)
    want = _taps64(a * torch.sigmoid(a) * b, taps)
    got = nnops.swiglu(h, taps=taps, backend="triton")
    assert (got.double().cpu() - want.cpu()).abs().max().item() <= 1e-5


@pytest.mark.parametrize("rope", [True, False])
def test_triton_qk_norm_rope(rng, rope):
    _triton_or_skip()
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    B, N, H, hd = 2, 5, 2, 16
    qkv = _t(rng, B, N, 3 * H * hd).to(dev)
    qw, kw = (1 + 0.1 * _t(rng, hd)).to(dev), (1 + 0.1 * _t(rng, hd)).to(dev)
    rot = rope_table(N, hd, scale=1.3).to(dev) if rope else None
    want = nnops.qk_norm_rope(qkv.double(), H, qw.double(), kw.double(), rot, backend="torch")
    buf = torch.zeros(3, B, H, N + 3, hd, device=dev)
    out = tuple(buf[j, :, :, 1:1 + N] for j in range(3))
    got = nnops.qk_norm_rope(qkv, H, qw, kw, rot, out=out, backend="triton")
    for g, w in zip(got, want):
        assert (g.double() - w).abs().max().item() <= 2e-5
