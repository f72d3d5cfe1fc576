"""The CUDA tensor-core kernel (and the automatic choice on CUDA tensors) against the float64
reference: the FlashAttention rule, our error <= 2x torch's own error in the same dtype. These
tests need an sm_80+ GPU and a CUDA build; they skip cleanly elsewhere."""
import numpy as np
import pytest
import torch

import _optin
from attention_reference import reference
from sonicore import _backend
from sonicore.ops import attention

needs_cuda = pytest.mark.skipif(
    not (torch.cuda.is_available() and _backend.cuda_kernels_usable()[0]
         and torch.cuda.get_device_capability()[0] >= 8),
    reason="needs an sm_80+ CUDA GPU and sonicore built with CUDA")


@pytest.fixture(params=["mma", "wgmma", "wgmma-ws"], autouse=True)
def cuda_kernel(request, monkeypatch):
    """Every test runs the sm_80 kernel (mma.sync) and, on an sm_90 GPU with an sm_90a build, the
    Hopper kernels (wgmma: one warpgroup per CTA; wgmma-ws: warp-specialised), which
    SONICORE_CUDA_ATTENTION selects."""
    _optin.select(request.param != "mma")
    if request.param != "mma":
        if not _backend.wgmma_attention_runs(request.param):
            pytest.skip(f"the {request.param} kernel needs an sm_90 GPU and an sm_90a build")
        monkeypatch.setenv("SONICORE_CUDA_ATTENTION", request.param)
    else:
        monkeypatch.delenv("SONICORE_CUDA_ATTENTION", raising=False)
    return request.param


def make(rng, B, Hq, Hkv, Nq, Nk, D, dtype):
    t = lambda *s: torch.from_numpy(rng.standard_normal(s).astype(np.float32)).to(dtype)
    return t(B, Hq, Nq, D), t(B, Hkv, Nk, D), t(B, Hkv, Nk, D)


def check(q, k, v, **kw):
    q, k, v = q.cuda(), k.cuda(), v.cuda()
    out, lse = attention(q, k, v, backend="cuda", return_lse=True, **kw)
    ref, ref_lse = reference(q, k, v, **kw)          # float64 on the GPU
    low, _ = reference(q, k, v, dtype=q.dtype, **kw)  # torch in the low dtype
    err = (out.double() - ref).abs().max().item()
    err_torch = (low.double() - ref).abs().max().item()
    assert err <= 2 * err_torch + 1e-5, (err, err_torch)
    assert torch.equal(torch.isneginf(lse), torch.isneginf(ref_lse))
    fin = torch.isfinite(ref_lse)
    if fin.any():
        assert (lse.double()[fin] - ref_lse[fin]).abs().max().item() <= 2e-2


@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("D", [64, 128])
@pytest.mark.parametrize("shape", [(1, 1, 1, 1, 1), (2, 4, 2, 7, 97), (1, 2, 2, 97, 7), (1, 2, 1, 1025, 1025),
                                   (2, 3, 3, 130, 257)], ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("causal", [False, True])
def test_cuda_matches_reference(rng, dtype, D, shape, causal):
    B, Hq, Hkv, Nq, Nk = shape
    q, k, v = make(rng, B, Hq, Hkv, Nq, Nk, D, dtype)
    check(q, k, v, causal=causal)


@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("causal", [False, True])
def test_cuda_lens_and_empty_rows(rng, dtype, causal):
    q, k, v = make(rng, 4, 4, 2, 97, 211, 64, dtype)
    ql = torch.tensor([97, 0, 40, 97], dtype=torch.int32)
    kl = torch.tensor([211, 9, 0, 65], dtype=torch.int32)
    check(q, k, v, causal=causal, q_lens=ql, kv_lens=kl)


@needs_cuda
def test_cuda_bnhd_and_automatic_choice(rng):
    q, k, v = make(rng, 2, 4, 4, 77, 130, 128, torch.bfloat16)
    q, k, v = q.cuda(), k.cuda(), v.cuda()
    qn, kn, vn = (t.transpose(1, 2).contiguous() for t in (q, k, v))
    ref, _ = reference(q, k, v, causal=True)
    low, _ = reference(q, k, v, causal=True, dtype=torch.bfloat16)
    # the cuda kernel on the bnhd layout, and the automatic choice (triton first when installed)
    for out in (attention(qn, kn, vn, layout="bnhd", causal=True, backend="cuda"),
                attention(qn, kn, vn, layout="bnhd", causal=True)):
        err = (out.transpose(1, 2).double() - ref).abs().max().item()
        assert err <= 2 * (low.double() - ref).abs().max().item() + 1e-5


@needs_cuda
def test_cuda_says_why_it_cannot_take_a_call():
    q = torch.randn(1, 2, 8, 80, device="cuda", dtype=torch.float16)
    with pytest.raises(ValueError, match="cuda backend: head dim 80 not supported"):
        attention(q, q, q, backend="cuda")
    q32 = torch.randn(1, 2, 8, 64, device="cuda")
    with pytest.raises(ValueError, match="cuda backend: float32"):
        attention(q32, q32, q32, backend="cuda")
    # ... and the automatic choice falls back with the same semantics.
    out = attention(q, q, q)
    assert out.shape == q.shape and torch.isfinite(out).all()
