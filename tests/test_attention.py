"""sonicore.ops.attention / attention_probs on the CPU (C++ kernel, every ISA path) and the torch
reference backend, against an independent float64 reference on fresh random inputs."""
import math
import sys

import numpy as np
import pytest
import torch

from attention_isas import A, ISA_CAPS, isa  # noqa: F401  (isa: a fixture)
from attention_reference import assert_close_to_reference, random_qkv, reference
from sonicore import _backend
from sonicore.ops import attention, attention_probs

LOW = (torch.float16, torch.bfloat16)
ALL_DTYPES = (torch.float32,) + LOW
# dtype conversion is shared scalar code, so low precision runs on the best ISA (and AVX-512
# beside AMX, which packs its own tiles) and float32 on every ISA (keeps the suite fast; the
# float16 reference matmul is slow on CPU).
ISA_DTYPES = [(ISA_CAPS[0], d) for d in ALL_DTYPES] + [(c, torch.float32) for c in ISA_CAPS[1:]]
if ISA_CAPS[0] == 3:
    ISA_DTYPES += [(2, d) for d in LOW]


@pytest.fixture(params=ISA_DTYPES, ids=lambda p: f"isa{p[0]}-{str(p[1])[6:]}")
def isa_dtype(request, monkeypatch):
    monkeypatch.setattr(A, "_CPU_ISA_CAP", request.param[0])
    return request.param[1]


def lens(rng, B, N, full_first=True):
    out = rng.integers(0, N + 1, size=B).astype(np.int32)
    if full_first:
        out[0] = N
    return torch.from_numpy(out)


SHAPES = [  # B, Hq, Hkv, Nq, Nk, D
    (1, 1, 1, 1, 1, 64),
    (1, 2, 2, 7, 7, 64),
    (2, 4, 2, 97, 61, 64),
    (1, 3, 1, 7, 97, 32),
    (2, 2, 1, 97, 7, 40),
    (1, 6, 6, 64, 150, 64),
]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("causal", [False, True])
def test_cpu_matches_reference(rng, isa_dtype, shape, causal):
    dtype = isa_dtype
    q, k, v = random_qkv(rng, *shape, dtype)
    out, lse = attention(q, k, v, causal=causal, return_lse=True, backend="cpu")
    assert out.dtype == dtype and out.shape == q.shape and lse.dtype == torch.float32
    assert_close_to_reference(out, lse, q, k, v, causal=causal)


@pytest.mark.parametrize("causal", [False, True])
def test_cpu_padded_batch_with_lens(rng, isa_dtype, causal):
    dtype = isa_dtype
    B, Hq, Hkv, Nq, Nk, D = 4, 4, 2, 97, 131, 64
    q, k, v = random_qkv(rng, B, Hq, Hkv, Nq, Nk, D, dtype)
    ql, kl = lens(rng, B, Nq), lens(rng, B, Nk)
    ql[1], kl[1] = 0, 5          # an empty query batch entry
    kl[2] = 0                    # a batch entry with no keys at all
    # Padding may hold anything: NaN there must never be read.
    for b in range(B):
        k[b, :, int(kl[b]):] = float("nan")
        v[b, :, int(kl[b]):] = float("nan")
        q[b, :, int(ql[b]):] = float("nan")
    out, lse = attention(q, k, v, causal=causal, q_lens=ql, kv_lens=kl, return_lse=True)
    assert_close_to_reference(out, lse, q, k, v, causal=causal, q_lens=ql, kv_lens=kl)
    assert torch.isfinite(out).all()
    assert (out[2] == 0).all() and torch.isneginf(lse[2]).all()
    for b in range(B):
        assert (out[b, :, int(ql[b]):] == 0).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])  # bfloat16: the AMX kernel where present
def test_cpu_long_sequence_1025(rng, dtype):
    q, k, v = random_qkv(rng, 1, 2, 1, 1025, 1025, 64, dtype)
    for causal in (False, True):
        out, lse = attention(q, k, v, causal=causal, return_lse=True)
        assert_close_to_reference(out, lse, q, k, v, causal=causal)


@pytest.mark.parametrize("D", [16, 32, 40, 64, 80, 96, 128, 256])
def test_cpu_head_dims(rng, D, isa):
    q, k, v = random_qkv(rng, 2, 2, 1, 33, 70, D, torch.float32)
    kl = torch.tensor([70, 41], dtype=torch.int32)
    out, lse = attention(q, k, v, causal=True, kv_lens=kl, return_lse=True)
    assert_close_to_reference(out, lse, q, k, v, causal=True, kv_lens=kl)


def test_causal_more_queries_than_keys(rng, isa_dtype):
    dtype = isa_dtype
    # Bottom-right alignment: the first Nq - Nk rows see no key -> zeros and lse -inf.
    q, k, v = random_qkv(rng, 1, 2, 2, 50, 13, 64, dtype)
    out, lse = attention(q, k, v, causal=True, return_lse=True)
    assert_close_to_reference(out, lse, q, k, v, causal=True)
    assert (out[:, :, :37] == 0).all() and torch.isneginf(lse[:, :, :37]).all()
    assert torch.isfinite(lse[:, :, 37:]).all()


@pytest.mark.parametrize("backend", ["cpu", "torch"])
def test_bnhd_layout_without_copy(rng, backend):
    q, k, v = random_qkv(rng, 2, 4, 2, 37, 53, 64, torch.float32)
    qn, kn, vn = (t.transpose(1, 2).contiguous() for t in (q, k, v))  # (B, N, H, D) in memory
    out = attention(qn, kn, vn, layout="bnhd", causal=True, backend=backend)
    assert out.shape == qn.shape
    assert_close_to_reference(out.transpose(1, 2), None, q, k, v, causal=True)


def test_scale_and_numpy_in_numpy_out(rng):
    q, k, v = random_qkv(rng, 1, 2, 2, 19, 23, 32, torch.float32)
    out, lse = attention(q.numpy(), k.numpy(), v.numpy(), scale=0.37, return_lse=True)
    assert isinstance(out, np.ndarray) and isinstance(lse, np.ndarray) and out.dtype == np.float32
    assert_close_to_reference(torch.from_numpy(out), torch.from_numpy(lse), q, k, v, scale=0.37)


@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=str)
def test_torch_backend_matches_reference(rng, dtype):
    q, k, v = random_qkv(rng, 3, 4, 2, 29, 41, 40, dtype)
    ql, kl = lens(rng, 3, 29), lens(rng, 3, 41)
    out, lse = attention(q, k, v, causal=True, q_lens=ql, kv_lens=kl, return_lse=True, backend="torch")
    assert_close_to_reference(out, lse, q, k, v, causal=True, q_lens=ql, kv_lens=kl)


def _sdpa_grads(q, k, v, causal, kv_lens, gout):
    """Gradients of (gout * out).sum() w.r.t. q, k, v through torch's SDPA in float64."""
    q64, k64, v64 = (t.detach().double().requires_grad_() for t in (q, k, v))
    B, H, Nq, _ = q.shape
    Nk = k.shape[2]
    kl = [Nk] * B if kv_lens is None else list(kv_lens)
    mask = torch.zeros(B, 1, Nq, Nk, dtype=torch.bool)
    for b in range(B):  # keys past kv_lens[b] hidden; causal aligned to (Nq, kv_lens[b])
        mask[b, 0, :, :kl[b]] = torch.ones(Nq, kl[b], dtype=torch.bool).tril(kl[b] - Nq) if causal else True
    out = torch.nn.functional.scaled_dot_product_attention(q64, k64, v64, attn_mask=mask,
                                                         enable_gqa=k.shape[1] != H)
    return torch.autograd.grad((out * gout.double()).sum(), (q64, k64, v64))


@pytest.mark.parametrize("layout", ["bhnd", "bnhd"])
@pytest.mark.parametrize("causal", [False, True])
def test_autograd_takes_the_torch_backend_with_sdpa_gradients(rng, layout, causal):
    # The kernels are forward-only: an input that requires grad must not be silently detached.
    B, H, Nq, Nk, D = 2, 3, 7, 13, 24
    q, k, v = random_qkv(rng, B, H, H, Nq, Nk, D, torch.float32)
    kl = [int(rng.integers(Nk - Nq + 1, Nk + 1)), Nk]  # causal rows all keep a visible key
    gout = torch.from_numpy(rng.standard_normal((B, H, Nq, D)).astype(np.float32))
    leaves = [t.clone().requires_grad_() for t in (q, k, v)]
    args = [t.transpose(1, 2) if layout == "bnhd" else t for t in leaves]
    out = attention(*args, causal=causal, kv_lens=kl, layout=layout)
    out = out.transpose(1, 2) if layout == "bnhd" else out
    assert out.requires_grad
    grads = torch.autograd.grad((out * gout).sum(), leaves)
    want = _sdpa_grads(q, k, v, causal, kl, gout)
    for name, got, ref in zip("qkv", grads, want):
        err = (got.double() - ref).abs().max().item()
        assert err <= 1e-5 * (1 + ref.abs().max().item()), f"d{name}: max error {err}"


@pytest.mark.parametrize("layout", ["bhnd", "bnhd"])
def test_torch_compile_keeps_attention_in_one_graph(rng, layout):
    # fullgraph=True fails on any graph break: the kernels are reached through the sonicore::
    # custom ops. aot_eager runs the ops' fake (shape) functions and their autograd formula.
    B, H, Nq, Nk, D = 2, 4, 21, 37, 24
    q, k, v = random_qkv(rng, B, H, 2, Nq, Nk, D, torch.float32)
    ql, kl = [Nq, int(rng.integers(1, Nq))], [int(rng.integers(1, Nk)), Nk]
    if layout == "bnhd":
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))

    def fn(q, k, v):
        out, lse = attention(q, k, v, causal=True, q_lens=ql, kv_lens=kl, return_lse=True, layout=layout)
        return out * 2.0, lse, attention_probs(q, k, heads=[3, 0], kv_lens=kl, layout=layout)

    torch._dynamo.reset()
    got = torch.compile(fn, backend="aot_eager", fullgraph=True)(q, k, v)
    want = fn(q, k, v)
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.dtype == w.dtype
        torch.testing.assert_close(g, w, rtol=0, atol=0)
    qb = q.transpose(1, 2) if layout == "bnhd" else q
    kb, vb = (t.transpose(1, 2) if layout == "bnhd" else t for t in (k, v))
    out = got[0] / 2
    assert_close_to_reference(out.transpose(1, 2) if layout == "bnhd" else out, got[1], qb, kb, vb,
                              causal=True, q_lens=ql, kv_lens=kl)

    # Training through the compiled graph: the torch reference's gradients, checked against
    # SDPA's in float64.
    leaves = [t.detach().clone().requires_grad_() for t in (q, k, v)]
    out = torch.compile(lambda q, k, v: attention(q, k, v, kv_lens=kl, layout=layout),
                        backend="aot_eager", fullgraph=True)(*leaves)
    gout = torch.from_numpy(rng.standard_normal(tuple(out.shape)).astype(np.float32))
    grads = torch.autograd.grad((out * gout).sum(), leaves)
    to_bhnd = (lambda t: t.transpose(1, 2)) if layout == "bnhd" else (lambda t: t)
    want = _sdpa_grads(qb, kb, vb, False, kl, to_bhnd(gout))
    for name, got, ref in zip("qkv", grads, want):
        err = (to_bhnd(got).double() - ref).abs().max().item()
        assert err <= 1e-5 * (1 + ref.abs().max().item()), f"d{name}: max error {err}"


def test_kernels_refuse_inputs_that_require_grad(rng):
    q, k, v = (t.requires_grad_() for t in random_qkv(rng, 1, 2, 2, 9, 11, 32, torch.float32))
    for backend in ("cpu", "triton", "cuda"):
        with pytest.raises(_backend.BackendUnavailable, match=f"backend '{backend}' cannot take this call"):
            attention(q, k, v, backend=backend)
    with pytest.raises(_backend.BackendUnavailable, match="no backward pass.*torch.no_grad"):
        attention(q, k, v, backend="cpu")
    with pytest.raises(_backend.BackendUnavailable, match="no backward pass"):
        attention_probs(q, k, backend="cpu")
    # Without autograd recording, the kernel runs and nothing is recorded.
    with torch.no_grad():
        out = attention(q, k, v, backend="cpu")
    assert not out.requires_grad
    assert_close_to_reference(out, None, q.detach(), k.detach(), v.detach())
    probs = attention_probs(q, k, heads=[1])
    assert probs.requires_grad
    (g,) = torch.autograd.grad(probs[..., 3].sum(), [q])
    assert torch.isfinite(g).all() and g[:, 0].abs().max() == 0 and g[:, 1].abs().max() > 0


def test_nan_propagates_without_crash(rng, isa):
    q, k, v = random_qkv(rng, 1, 2, 2, 20, 30, 64, torch.float32)
    q[0, 0, 3, 5] = float("nan")
    out, lse = attention(q, k, v, return_lse=True)
    assert torch.isnan(out[0, 0, 3]).all() and torch.isnan(lse[0, 0, 3])
    mask = torch.ones_like(out, dtype=torch.bool)
    mask[0, 0, 3] = False
    assert torch.isfinite(out[mask]).all()
    # NaN in a valid key reaches every row that sees it (causal: rows >= 10 only).
    q, k, v = random_qkv(rng, 1, 1, 1, 30, 30, 64, torch.float32)
    k[0, 0, 10, 0] = float("nan")
    out = attention(q, k, v, causal=True)
    assert torch.isfinite(out[0, 0, :10]).all() and torch.isnan(out[0, 0, 10:]).all()


def test_zero_length_inputs():
    q = torch.randn(2, 2, 0, 16)
    assert attention(q, torch.randn(2, 2, 5, 16), torch.randn(2, 2, 5, 16)).shape == (2, 2, 0, 16)
    out, lse = attention(torch.randn(2, 2, 3, 16), torch.randn(2, 2, 0, 16), torch.randn(2, 2, 0, 16),
                         return_lse=True)
    assert (out == 0).all() and torch.isneginf(lse).all()


# ----------------------------------------------------------------------------- attention_probs

def probs_reference(q, k, heads, scale=None, kv_lens=None):
    B, Hq, Nq, D = q.shape
    Hkv, Nk = k.shape[1], k.shape[2]
    scale = 1.0 / math.sqrt(D) if scale is None else scale
    out = torch.zeros(B, len(heads), Nq, Nk, dtype=torch.float64)
    for b in range(B):
        kl = Nk if kv_lens is None else int(kv_lens[b])
        for i, h in enumerate(heads):
            if kl:
                s = q[b, h].double() @ k[b, h // (Hq // Hkv), :kl].double().T * scale
                out[b, i, :, :kl] = torch.softmax(s, dim=-1)
    return out


@pytest.mark.parametrize("backend", ["cpu", "torch"])
def test_probs_selected_heads(rng, isa_dtype, backend):
    dtype = isa_dtype
    q, k, _ = random_qkv(rng, 3, 6, 3, 37, 150, 64, dtype)
    kl = lens(rng, 3, 150)
    kl[2] = 0
    heads = [5, 0, 3]
    p = attention_probs(q, k, heads=heads, kv_lens=kl, backend=backend)
    assert p.shape == (3, 3, 37, 150) and p.dtype == torch.float32
    ref = probs_reference(q, k, heads, kv_lens=kl)
    tol = 1e-6 if dtype == torch.float32 else 1e-3
    assert (p.double() - ref).abs().max().item() <= tol
    assert (p[2] == 0).all()


def test_probs_bnhd_numpy_all_heads(rng):
    q, k, _ = random_qkv(rng, 1, 4, 4, 7, 1500, 64, torch.float32)
    qn, kn = (t.transpose(1, 2).contiguous().numpy() for t in (q, k))
    p = attention_probs(qn, kn, layout="bnhd", scale=0.2)
    assert isinstance(p, np.ndarray) and p.shape == (1, 4, 7, 1500)
    assert np.abs(p - probs_reference(q, k, [0, 1, 2, 3], scale=0.2).numpy()).max() <= 1e-6


# ----------------------------------------------------------------------------- bad input

def _qkv(B=1, H=2, N=5, D=16, dtype=torch.float32):
    return torch.randn(B, H, N, D).to(dtype), torch.randn(B, H, N, D).to(dtype), torch.randn(B, H, N, D).to(dtype)


@pytest.mark.parametrize("case, exc, words", [
    (lambda q, k, v: attention(q[0], k, v), ValueError, "4-D"),
    (lambda q, k, v: attention(q, k.half(), v), TypeError, "one dtype"),
    (lambda q, k, v: attention(q.double(), k.double(), v.double()), TypeError, "float32, float16 or bfloat16"),
    (lambda q, k, v: attention(q.int(), k.int(), v.int()), TypeError, "float32"),
    (lambda q, k, v: attention(q, k, v[:, :, :3]), ValueError, "same shape"),
    (lambda q, k, v: attention(q, k[..., :8], v[..., :8]), ValueError, "head dim"),
    (lambda q, k, v: attention(q, torch.randn(2, 2, 5, 16), torch.randn(2, 2, 5, 16)), ValueError, "batch"),
    (lambda q, k, v: attention(torch.randn(1, 3, 5, 16), k, v), ValueError, "multiple"),
    (lambda q, k, v: attention(torch.randn(1, 2, 5, 600), torch.randn(1, 2, 5, 600), torch.randn(1, 2, 5, 600)),
     ValueError, "head dim"),
    (lambda q, k, v: attention(q, k, v, q_lens=[6]), ValueError, "q_lens must lie in [0, 5]"),
    (lambda q, k, v: attention(q, k, v, kv_lens=[-1]), ValueError, "kv_lens must lie"),
    (lambda q, k, v: attention(q, k, v, kv_lens=[1, 2]), ValueError, "shape (1,)"),
    (lambda q, k, v: attention(q, k, v, kv_lens=[1.5]), TypeError, "integers"),
    (lambda q, k, v: attention(q, k, v, scale=float("nan")), ValueError, "finite"),
    (lambda q, k, v: attention(q, k, v, scale="x"), TypeError, "scale"),
    (lambda q, k, v: attention(q, k, v, layout="bhdn"), ValueError, "layout"),
    (lambda q, k, v: attention(q, k, v, backend="nope"), ValueError, "unknown backend"),
    (lambda q, k, v: attention(q, k, v, backend="cuda"), ValueError, "cuda"),
    (lambda q, k, v: attention([1, 2], k, v), TypeError, "numpy array or a torch tensor"),
    (lambda q, k, v: attention_probs(q, k, heads=[2]), ValueError, "out of range"),
    (lambda q, k, v: attention_probs(q, k, heads=["a"]), TypeError, "integers"),
    (lambda q, k, v: attention_probs(q, k, heads=[0], backend="triton"), ValueError, "unknown backend"),
])
def test_bad_input_says_what_is_expected(case, exc, words):
    q, k, v = _qkv()
    with pytest.raises(exc) as info:
        case(q, k, v)
    assert words in str(info.value)


def test_binding_rejects_inconsistent_buffers():
    # The binding re-checks what the Python layer already did: a direct caller cannot crash it.
    C = _backend.C
    q = np.zeros((1, 2, 5, 16), np.float32)
    with pytest.raises(ValueError, match="out must have q's shape"):
        C.attention_forward(q, q, q, np.zeros((1, 2, 4, 16), np.float32), None, "float32", 1.0, False)
    with pytest.raises(ValueError, match="does not hold float16"):
        C.attention_forward(q, q, q, q.copy(), None, "float16", 1.0, False)
    with pytest.raises(ValueError, match="kv_lens values must lie"):
        C.attention_forward(q, q, q, q.copy(), None, "float32", 1.0, False, None, np.array([9], np.int32))
    with pytest.raises(ValueError, match="contiguous last axis"):
        C.attention_forward(q[..., ::2], q[..., ::2], q[..., ::2], q[..., ::2].copy(), None, "float32", 1.0, False)


def test_sonicore_isa_caps_turn_amx_off():
    """SONICORE_ISA=scalar|avx2|avx512 turns the AMX kernel off; "amx", empty or unknown values
    leave the machine's best (read once per process, hence subprocesses)."""
    import os
    import subprocess
    script = "from sonicore import _backend; print(_backend.C.cpu_has_amx())"
    has = {}
    for value in ("avx512", "avx2", "amx", "", "bogus"):
        env = dict(os.environ, SONICORE_ISA=value)
        res = subprocess.run([sys.executable, "-c", script], env=env, check=True, capture_output=True, text=True)
        has[value] = res.stdout.strip() == "True"
    best = bool(_backend.C.cpu_has_amx()) if not os.environ.get("SONICORE_ISA") else has["amx"]
    assert not has["avx512"] and not has["avx2"]
    assert has["amx"] == has[""] == has["bogus"] == best


@pytest.mark.skipif(not hasattr(_backend.C, "attention_cuda_choice"), reason="needs sonicore built with CUDA")
def test_cuda_kernel_choice_from_environment(monkeypatch):
    # SONICORE_CUDA_ATTENTION picks the CUDA kernel; a value naming none is an error, not a silent
    # fall-back to the default kernel. The rule the CUDA call applies (C++), which needs no GPU.
    monkeypatch.delenv("SONICORE_CUDA_ATTENTION", raising=False)
    assert _backend.C.attention_cuda_choice() == "mma"
    for name in ("mma", "wgmma", "wgmma-ws"):
        monkeypatch.setenv("SONICORE_CUDA_ATTENTION", name)
        assert _backend.C.attention_cuda_choice() == name
    monkeypatch.setenv("SONICORE_CUDA_ATTENTION", "wgma")
    with pytest.raises(ValueError, match="SONICORE_CUDA_ATTENTION='wgma': expected one of mma, wgmma, wgmma-ws"):
        _backend.C.attention_cuda_choice()
