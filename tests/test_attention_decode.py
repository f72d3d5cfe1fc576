"""The CPU kernel's path for decoder-sized calls (at most 8 query rows: head channels in the
vector lanes, K / V read in place in their own dtype, or converted a chunk at a time for head
dims that are not a multiple of 16), on every ISA path, against the float64 reference: awkward
key counts, causal with fewer queries than keys, grouped-query heads, padded batches, NaN,
strided (bnhd) inputs."""
import numpy as np
import pytest
import torch

from attention_isas import isa  # noqa: F401  (a fixture: every CPU kernel path)
from attention_reference import assert_close_to_reference, random_qkv, reference
from sonicore.ops import attention

DTYPES = [torch.float32, torch.float16, torch.bfloat16]


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f16", "bf16"])
@pytest.mark.parametrize("Nq, Nk, D", [(1, 1, 64), (1, 301, 64), (3, 67, 40), (8, 1029, 64), (5, 130, 80), (2, 9, 16)])
@pytest.mark.parametrize("causal", [False, True])
def test_decode_matches_reference(rng, isa, dtype, Nq, Nk, D, causal):
    q, k, v = random_qkv(rng, 2, 4, 2, Nq, Nk, D, dtype)
    out, lse = attention(q, k, v, causal=causal, return_lse=True, backend="cpu")
    assert out.dtype == dtype and out.shape == q.shape
    assert_close_to_reference(out, lse, q, k, v, causal=causal)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f16", "bf16"])
def test_decode_padded_batch_and_nan_padding(rng, isa, dtype):
    B, Hq, Hkv, Nq, Nk, D = 4, 6, 3, 4, 200, 64
    q, k, v = random_qkv(rng, B, Hq, Hkv, Nq, Nk, D, dtype)
    ql = torch.tensor([4, 0, 2, 3], dtype=torch.int32)
    kl = torch.tensor([200, 7, 0, 133], dtype=torch.int32)
    for b in range(B):  # padding may hold anything: NaN there must never be read
        k[b, :, int(kl[b]):] = float("nan")
        v[b, :, int(kl[b]):] = float("nan")
        q[b, :, int(ql[b]):] = float("nan")
    for causal in (False, True):
        out, lse = attention(q, k, v, causal=causal, q_lens=ql, kv_lens=kl, return_lse=True, backend="cpu")
        assert_close_to_reference(out, lse, q, k, v, causal=causal, q_lens=ql, kv_lens=kl)
        assert torch.isfinite(out).all()
        assert (out[2] == 0).all() and torch.isneginf(lse[2]).all()  # no keys at all
        for b in range(B):
            assert (out[b, :, int(ql[b]):] == 0).all()


def test_decode_nan_propagates(rng, isa):
    q, k, v = random_qkv(rng, 1, 3, 3, 2, 150, 64, torch.float32)
    q[0, 0, 1, 5] = float("nan")     # head 0: one NaN query row
    k[0, 1, 120, 0] = float("nan")   # head 1: a NaN key every row sees
    v[0, 2, 3, 7] = float("nan")     # head 2: a NaN value reaches channel 7... through every row
    out = attention(q, k, v, backend="cpu")
    assert torch.isnan(out[0, 0, 1]).all() and torch.isfinite(out[0, 0, 0]).all()
    assert torch.isnan(out[0, 1]).all()
    assert torch.isnan(out[0, 2, :, 7]).all()
    ref, _ = reference(q, k, v)
    fin = torch.isfinite(ref)
    assert torch.equal(fin, torch.isfinite(out))
    assert (out.double()[fin] - ref[fin]).abs().max().item() <= 2e-5


def test_decode_bnhd_strided_views(rng, isa):
    # (B, N, H, D) tensors: the kernel reads rows with the head stride, no copy.
    B, N, Nq, H, D = 2, 77, 3, 4, 64
    q = torch.from_numpy(rng.standard_normal((B, Nq, H, D)).astype(np.float32))
    k = torch.from_numpy(rng.standard_normal((B, N, H, D)).astype(np.float32))
    v = torch.from_numpy(rng.standard_normal((B, N, H, D)).astype(np.float32))
    out = attention(q, k, v, layout="bnhd", backend="cpu")
    ref, _ = reference(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
    assert (out.transpose(1, 2).double() - ref).abs().max().item() <= 2e-5
