"""The Triton flash forward against the float64 reference: on a GPU when there is one, else in
the interpreter (TRITON_INTERPRET=1, set by conftest) at small sizes with tiles of 16.

Every test runs each kernel variant (kernels/attention.py VARIANTS): the single masked loop,
the split loop, the split loop reading K / V through tensor descriptors (TMA on sm_90+; the
interpreter emulates the descriptors, so the CPU run covers that code path too), and the
warp-specialised loop over per-head descriptors (Hopper; in the interpreter, its plain loop)."""
import pytest
import torch

import _optin
from attention_reference import assert_close_to_reference, random_qkv, reference
from sonicore import _backend
from sonicore.ops import attention

pytestmark = pytest.mark.skipif(not _backend.triton_usable()[0], reason="triton is not usable here")
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


# On a GPU the plain "split" form also runs where a call rules out descriptors (head dim 40, bnhd).
VARIANTS = ["loop", "split-tma", "ws"] if DEVICE == "cuda" else ["loop", "split", "split-tma", "ws"]


@pytest.fixture(params=VARIANTS, autouse=True)
def variant(request, monkeypatch):
    _optin.select(request.param == "ws" and DEVICE == "cuda")
    tri = _backend.triton_kernels("attention")
    monkeypatch.setattr(tri, "DEFAULT_VARIANT", request.param)
    if request.param == "split-tma" and DEVICE == "cpu":
        monkeypatch.setattr(tri, "_tma_ok", tri._rows_layout)
    if request.param == "ws" and DEVICE == "cpu":
        monkeypatch.setattr(tri, "_ws_ok", lambda q, k, v: all(tri._desc_rows_ok(t) for t in (q, k, v)))
    return request.param


class FailingKernel:
    """Stands in for a @triton.jit kernel: records each launch's keyword arguments and raises `exc`
    where fails(kwargs) says so (a compiler failure), else launches the real kernel."""

    def __init__(self, real, fails, exc):
        self.real, self.fails, self.exc, self.launches = real, fails, exc, []

    def __getitem__(self, grid):
        def launch(*args, **kw):
            self.launches.append(kw)
            if self.fails(kw):
                raise self.exc
            return self.real[grid](*args, **kw)
        return launch


def run_and_check(q, k, v, **kw):
    dev = [t.to(DEVICE) for t in (q, k, v)]
    out, lse = attention(*dev, backend="triton", return_lse=True, **kw)
    assert_close_to_reference(out.cpu(), lse.cpu(), q, k, v, **kw)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("shape", [(1, 1, 1, 1, 1, 16), (2, 4, 2, 7, 33, 64), (1, 2, 1, 37, 7, 40)],
                         ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("causal", [False, True])
def test_triton_matches_reference(rng, dtype, shape, causal):
    q, k, v = random_qkv(rng, *shape, dtype)
    run_and_check(q, k, v, causal=causal)


def test_triton_lens_gqa_and_empty_rows(rng):
    q, k, v = random_qkv(rng, 3, 4, 2, 21, 29, 32, torch.float32)
    ql = torch.tensor([21, 0, 9], dtype=torch.int32)
    kl = torch.tensor([29, 7, 0], dtype=torch.int32)
    run_and_check(q, k, v, causal=True, q_lens=ql, kv_lens=kl)


def test_triton_bnhd_layout(rng):
    q, k, v = random_qkv(rng, 1, 2, 2, 17, 19, 64, torch.float32)
    qn, kn, vn = (t.transpose(1, 2).contiguous().to(DEVICE) for t in (q, k, v))
    out = attention(qn, kn, vn, layout="bnhd", backend="triton").cpu()
    ref, _ = reference(q, k, v)
    assert (out.transpose(1, 2).double() - ref).abs().max().item() <= 2e-5


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_triton_padding_is_never_read(rng, causal, dtype):
    # kv_lens / q_lens padding full of NaN, head dim 32 (descriptor-eligible): the boundary blocks
    # read past a batch's valid keys (and, through descriptors, into the next head's rows).
    q, k, v = random_qkv(rng, 3, 4, 2, 45, 53, 32, dtype)
    ql = torch.tensor([45, 17, 30], dtype=torch.int32)
    kl = torch.tensor([53, 20, 1], dtype=torch.int32)
    for b in range(3):
        k[b, :, int(kl[b]):] = float("nan")
        v[b, :, int(kl[b]):] = float("nan")
        q[b, :, int(ql[b]):] = float("nan")
    run_and_check(q, k, v, causal=causal, q_lens=ql, kv_lens=kl)


def test_triton_negative_scale_takes_the_masked_loop(rng):
    # The split variants' unmasked blocks assume scale > 0; a negative scale must still be exact.
    q, k, v = random_qkv(rng, 1, 2, 2, 33, 40, 16, torch.float32)
    run_and_check(q, k, v, scale=-0.3)


def test_triton_descriptor_compile_failure_falls_back(rng, monkeypatch):
    # Triton 3.6's ptxas crashed on one descriptor-kernel specialisation on an H100: the call must
    # still be answered (pointer loads), with a warning, and later calls of that shape skip TMA.
    tri = _backend.triton_kernels("attention")
    monkeypatch.setattr(tri, "DEFAULT_VARIANT", "split-tma")
    monkeypatch.setattr(tri, "_tma_ok", tri._rows_layout)
    monkeypatch.setattr(tri, "_TMA_BROKEN", set())
    crash = FailingKernel(tri._attention_fwd_split, lambda kw: kw["TMA"],
                          tri.PTXASError("PTXAS error: `ptxas` failed with error code -11"))
    monkeypatch.setattr(tri, "_attention_fwd_split", crash)
    q, k, v = random_qkv(rng, 1, 2, 1, 19, 23, 16, torch.float32)
    with pytest.warns(RuntimeWarning, match="PTX assembler failed"):
        run_and_check(q, k, v, causal=True)
    run_and_check(q, k, v, causal=True)
    assert [kw["TMA"] for kw in crash.launches] == [True, False, False]


def test_triton_ws_compile_failure_falls_back(rng, monkeypatch):
    # A Triton whose warp-specialisation pass cannot build the kernel (older releases, or a pass
    # failure on some shape) must still answer the call: split kernel, a warning, remembered.
    tri = _backend.triton_kernels("attention")
    monkeypatch.setattr(tri, "DEFAULT_VARIANT", "ws")
    monkeypatch.setattr(tri, "_ws_ok", lambda q, k, v: True)
    monkeypatch.setattr(tri, "_WS_BROKEN", set())
    fail = FailingKernel(tri._attention_fwd_ws, lambda kw: True, RuntimeError("PassManager::run failed"))
    monkeypatch.setattr(tri, "_attention_fwd_ws", fail)
    q, k, v = random_qkv(rng, 1, 2, 1, 19, 23, 16, torch.float32)
    with pytest.warns(RuntimeWarning, match="warp-specialised kernel"):
        run_and_check(q, k, v, causal=True)
    run_and_check(q, k, v, causal=True)
    assert len(fail.launches) == 1  # the shape is remembered: the second call goes straight to split


@pytest.mark.parametrize("causal", [False, True])
def test_triton_nan_padding_head_dim_40(rng, causal):
    # The ws kernel's descriptors end at each head's valid rows and D columns: NaN in the padding
    # past q_lens / kv_lens (which the next head's rows follow) must not reach the result, and the
    # columns past D (head dim 40 in 64-wide tiles) are zero-filled. Every variant must hold this.
    B, H, N, D = 2, 3, 45, 40
    q, k, v = random_qkv(rng, B, H, H, N, N, D, torch.float32)
    ql = torch.tensor([45, 17], dtype=torch.int32)
    kl = torch.tensor([30, 45], dtype=torch.int32)
    for t, lens in ((q, ql), (k, kl), (v, kl)):
        for b in range(B):
            t[b, :, int(lens[b]):] = float("nan")
    run_and_check(q, k, v, causal=causal, q_lens=ql, kv_lens=kl)


def test_triton_variant_from_environment(monkeypatch):
    tri = _backend.triton_kernels("attention")
    q = torch.zeros(1, 1, 8, 64)
    monkeypatch.setenv(tri.VARIANT_ENV, "split")
    assert tri.default_config(q, 64)[4] == "split"
    monkeypatch.setenv(tri.VARIANT_ENV, "flash3")
    with pytest.raises(ValueError, match="SONICORE_TRITON_ATTENTION='flash3': expected one of loop, split"):
        tri.default_config(q, 64)
    monkeypatch.delenv(tri.VARIANT_ENV)
    assert tri.default_config(q, 64)[4] == tri.DEFAULT_VARIANT


@pytest.mark.skipif(DEVICE != "cuda", reason="needs a CUDA GPU (long sequences are too slow in the interpreter)")
@pytest.mark.parametrize("D", [64, 128])
@pytest.mark.parametrize("causal", [False, True])
def test_triton_long_sequences_on_gpu(rng, D, causal):
    # Many key blocks per tile (the warp-specialised kernel's producer / consumer ring turns over
    # many times), Nq != Nk, ragged ends, GQA, one kv_lens entry cutting a block in two.
    q, k, v = random_qkv(rng, 2, 2, 1, 1531, 2085, D, torch.bfloat16)
    kl = torch.tensor([2085, 1100], dtype=torch.int32)
    run_and_check(q, k, v, causal=causal, kv_lens=kl)
    q, k, v = random_qkv(rng, 1, 2, 2, 2048, 2048, D, torch.bfloat16)  # even: every block unmasked
    run_and_check(q, k, v, causal=causal)
