"""sonicore.ops.flow_step against the plain torch formula, on every backend this machine has."""
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from sonicore import _backend
from sonicore._ext import C
from sonicore.ops import flow_step

HAS_CUDA = torch.cuda.is_available()
requires_cuda = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")

SHAPES = [(1, 7), (3, 97, 5), (2, 345, 40), (5, 1025), (1, 1)]


def cpu_backends():
    names = ["cpu", "torch"]
    ok, _ = _backend.triton_usable()
    if ok and os.environ.get("TRITON_INTERPRET") == "1":
        names.append("triton")
    return names


def expected(x, vc, vu, w, prev, pw, cw, dt, dtype=torch.float32):
    """The update as eager torch evaluates it in `dtype` (the test's own transcription)."""
    x, vc = x.to(dtype), vc.to(dtype)
    if vu is not None:
        vu = vu.to(dtype)
        if isinstance(w, torch.Tensor):
            wr = w.to(dtype).view((-1,) + (1,) * (x.dim() - 1))
            v = wr * vc + (1 - wr) * vu
        else:
            v = w * vc + (1 - w) * vu
    else:
        v = vc
    d = v if prev is None else cw * v + pw * prev.to(dtype)
    return x + torch.tensor(dt, dtype=dtype) * d, v


# the Triton interpreter is slow: it gets the small shapes only
CASES = [(b, s) for b in cpu_backends() for s in SHAPES if b != "triton" or int(np.prod(s)) <= 20000]


@pytest.mark.parametrize("backend, shape", CASES)
@pytest.mark.parametrize("mode", ["plain", "doubled", "separate", "per_sample", "prev_store"])
def test_matches_torch_formula(backend, shape, mode, rng):
    B = shape[0]
    x = torch.from_numpy(rng.standard_normal(shape).astype(np.float32))
    vc = torch.from_numpy(rng.standard_normal(shape).astype(np.float32))
    vu = torch.from_numpy(rng.standard_normal(shape).astype(np.float32))
    prev = torch.from_numpy(rng.standard_normal(shape).astype(np.float32))
    dt = float(np.float32(rng.uniform(0.01, 0.3)))
    w = float(rng.uniform(-1, 8))
    kw, args = {}, dict(w=None, vu=None, prev=None, pw=0.0, cw=1.0)
    vel = vc
    if mode == "doubled":
        vel = torch.cat([vc, vu])
        kw = dict(guidance=w)
        args.update(w=w, vu=vu)
    elif mode == "separate":
        kw = dict(guidance=w, uncond=vu)
        args.update(w=w, vu=vu)
    elif mode == "per_sample":
        wr = torch.from_numpy(rng.uniform(-1, 8, size=B).astype(np.float32))
        vel = torch.cat([vc, vu])
        kw = dict(guidance=wr)
        args.update(w=wr, vu=vu)
    elif mode == "prev_store":
        pw = float(rng.uniform(-1, 1))
        store = torch.full(shape, np.nan)
        kw = dict(guidance=w, uncond=vu, prev=prev, prev_weight=pw, store=store)
        args.update(w=w, vu=vu, prev=prev, pw=pw, cw=1.0 - pw)
    want, want_v = expected(x, vc, args["vu"], args["w"], args["prev"], args["pw"], args["cw"], dt)
    want64, _ = expected(x, vc, args["vu"], args["w"], args["prev"], args["pw"], args["cw"], dt, torch.float64)
    got = x.clone()
    res = flow_step(got, vel, dt, backend=backend, **kw)
    assert res is got  # in place by default
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(got.double(), want64, rtol=1e-5, atol=1e-5)
    if mode == "prev_store":
        torch.testing.assert_close(kw["store"], want_v, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("backend", ["cpu", "torch"])
def test_bit_identical_to_eager_torch_mmaudio_order(backend, rng):
    """MMAudio: v = s*v_c + (1-s)*v_u, then x + dt*v with dt a float32 difference; no FMA."""
    x = torch.from_numpy(rng.standard_normal((2, 25, 20)).astype(np.float32))
    v = torch.from_numpy(rng.standard_normal((4, 25, 20)).astype(np.float32))
    grid = torch.linspace(0, 1, 26)
    dt = grid[4] - grid[3]
    s = 4.5
    want = x + dt * (s * v[:2] + (1 - s) * v[2:])
    got = flow_step(x.clone(), v, float(dt), guidance=s, backend=backend)
    assert torch.equal(got, want)


@pytest.mark.parametrize("vdtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("backend", cpu_backends())
def test_half_velocity_uses_float32_math(vdtype, backend, rng):
    shape = (3, 97, 5)
    x = torch.from_numpy(rng.standard_normal(shape).astype(np.float32))
    v = torch.from_numpy(rng.standard_normal((6,) + shape[1:]).astype(np.float32)).to(vdtype)
    want, _ = expected(x, v[:3].float(), v[3:].float(), 3.0, None, 0.0, 1.0, 0.125)
    got = flow_step(x.clone(), v, 0.125, guidance=3.0, backend=backend)
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)


def test_out_and_numpy_and_noncontiguous(rng):
    x = rng.standard_normal((4, 33)).astype(np.float32)
    v = rng.standard_normal((4, 33)).astype(np.float32)
    out = np.empty_like(x)
    res = flow_step(x, v, 0.5, out=out)
    assert isinstance(res, np.ndarray) and res is out
    np.testing.assert_allclose(out, x + np.float32(0.5) * v, rtol=1e-6, atol=1e-6)
    # a transposed (non-contiguous) state is updated in place through a scratch buffer
    xt = torch.from_numpy(rng.standard_normal((33, 4)).astype(np.float32)).t()
    vt = torch.from_numpy(rng.standard_normal((4, 33)).astype(np.float32))
    want = xt + 0.25 * vt
    flow_step(xt, vt, 0.25)
    torch.testing.assert_close(xt, want, rtol=1e-6, atol=1e-6)


def test_copy_to_receives_the_new_state(rng):
    x = torch.from_numpy(rng.standard_normal((3, 41)).astype(np.float32))
    v = torch.from_numpy(rng.standard_normal((6, 41)).astype(np.float32))
    for backend in cpu_backends():
        buf = torch.cat([x, torch.full_like(x, np.nan)])  # state in the first half, copy in the second
        flow_step(buf[:3], v, 0.2, guidance=2.0, copy_to=buf[3:], backend=backend)
        want, _ = expected(x, v[:3], v[3:], 2.0, None, 0.0, 1.0, 0.2)
        torch.testing.assert_close(buf[:3], want, rtol=1e-6, atol=1e-6)
        assert torch.equal(buf[3:], buf[:3])
    with pytest.raises(ValueError, match="must be different buffers"):
        flow_step(x, v, 0.2, guidance=2.0, copy_to=x)
    xn = np.zeros((2, 8), np.float32)
    with pytest.raises(ValueError, match="out_copy and out must be different"):
        C.flow_step_cpu(xn, xn, xn, "float32", None, 1.0, 0.0, None, 1.0, 0.0, None, 0.1, out_copy=xn)


def test_guidance_as_list_and_0d_tensor(rng):
    x = torch.from_numpy(rng.standard_normal((2, 9)).astype(np.float32))
    v = torch.from_numpy(rng.standard_normal((4, 9)).astype(np.float32))
    want, _ = expected(x, v[:2], v[2:], torch.tensor([2.0, 3.0]), None, 0.0, 1.0, 0.1)
    torch.testing.assert_close(flow_step(x.clone(), v, 0.1, guidance=[2.0, 3.0]), want, rtol=1e-6, atol=1e-6)
    want, _ = expected(x, v[:2], v[2:], 2.5, None, 0.0, 1.0, 0.1)
    torch.testing.assert_close(flow_step(x.clone(), v, 0.1, guidance=torch.tensor(2.5)), want, rtol=1e-6, atol=1e-6)


def test_store_may_alias_prev(rng):
    x = torch.from_numpy(rng.standard_normal((2, 50)).astype(np.float32))
    v = torch.from_numpy(rng.standard_normal((2, 50)).astype(np.float32))
    prev = torch.from_numpy(rng.standard_normal((2, 50)).astype(np.float32))
    want = x + 0.1 * (1.5 * v - 0.5 * prev)
    buf = prev.clone()
    flow_step(x, v, 0.1, prev=buf, prev_weight=-0.5, store=buf)
    torch.testing.assert_close(x, want, rtol=1e-6, atol=1e-6)
    assert torch.equal(buf, v)


def test_scalar_isa_path_matches(tmp_path):
    code = (
        "import numpy as np, torch\n"
        "from sonicore._ext import C\n"
        "from sonicore.ops import flow_step\n"
        "assert C.cpu_isa() == 'scalar'\n"
        "g = torch.Generator().manual_seed(5)\n"
        "x = torch.randn(3, 1031, generator=g); v = torch.randn(6, 1031, generator=g).half()\n"
        "p = torch.randn(3, 1031, generator=g)\n"
        "got = flow_step(x.clone(), v, 0.03, guidance=torch.tensor([1., 4.5, -2.]), prev=p, prev_weight=0.3)\n"
        "w = torch.tensor([1., 4.5, -2.]).view(3, 1)\n"
        "vv = w * v[:3].float() + (1 - w) * v[3:].float()\n"
        "want = x + torch.tensor(0.03) * (0.7 * vv + 0.3 * p)\n"
        "assert torch.equal(got, want), (got - want).abs().max()\n"
    )
    env = dict(os.environ, SONICORE_ISA="scalar")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]


def test_threaded_large_step_matches(rng):
    # several 16k-element chunks per row, several rows: exercises the pool split
    shape = (3, 70001)
    x = torch.from_numpy(rng.standard_normal(shape).astype(np.float32))
    v = torch.from_numpy(rng.standard_normal((6, 70001)).astype(np.float32))
    want, _ = expected(x, v[:3], v[3:], 2.5, None, 0.0, 1.0, 0.02)
    torch.testing.assert_close(flow_step(x, v, 0.02, guidance=2.5, backend="cpu"), want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("bad, err, msg", [
    (dict(x=torch.zeros(2, 3, dtype=torch.float16)), TypeError, "x must be float32"),
    (dict(velocity=torch.zeros(2, 4)), ValueError, "expected \\(2, 3\\)"),
    (dict(velocity=torch.zeros(2, 3, dtype=torch.int32)), TypeError, "float32, float16 or bfloat16"),
    (dict(guidance=2.0), ValueError, "doubled batch"),
    (dict(uncond=torch.zeros(2, 3)), ValueError, "without guidance"),
    (dict(guidance=torch.ones(3), velocity=torch.zeros(4, 3)), ValueError, "per-sample"),
    (dict(prev=torch.zeros(2, 3, dtype=torch.float64)), TypeError, "prev must be float32"),
    (dict(store=torch.zeros(3, 3)), ValueError, "store has shape"),
    (dict(dt="0.1"), TypeError, "dt must be a real number"),
    (dict(backend="gpu"), ValueError, "unknown backend"),
])
def test_bad_input_is_a_clear_error(bad, err, msg):
    args = dict(x=torch.zeros(2, 3), velocity=torch.zeros(2, 3), dt=0.1)
    args.update(bad)
    x, v, dt = args.pop("x"), args.pop("velocity"), args.pop("dt")
    with pytest.raises(err, match=msg):
        flow_step(x, v, dt, **args)


def test_binding_checks_buffers():
    x = np.zeros((2, 8), np.float32)
    with pytest.raises(ValueError, match="expected \\(2, 8\\)"):
        C.flow_step_cpu(x, x, np.zeros((3, 8), np.float32), "float32", None, 1.0, 0.0, None, 1.0, 0.0, None, 0.1)
    with pytest.raises(ValueError, match="partially overlaps"):
        big = np.zeros(24, np.float32)
        C.flow_step_cpu(big[4:20].reshape(2, 8), big[:16].reshape(2, 8), x, "float32", None, 1.0, 0.0,
                        None, 1.0, 0.0, None, 0.1)
    with pytest.raises(ValueError, match="contiguous along each row"):
        C.flow_step_cpu(x, x, np.zeros((2, 16), np.float32)[:, ::2], "float32", None, 1.0, 0.0, None, 1.0, 0.0,
                        None, 0.1)
    with pytest.raises(ValueError, match="float32, float16 or bfloat16"):
        C.flow_step_cpu(x, x, x, "float64", None, 1.0, 0.0, None, 1.0, 0.0, None, 0.1)
    with pytest.raises(ValueError, match="row stride"):
        C.flow_step_cpu_ptr(2, 8, x.ctypes.data, 4, x.ctypes.data, 8, "float32", x.ctypes.data, 8, 0, 0,
                            1.0, 0.0, 0, 0, 0, 1.0, 0.0, 0, 0, 0, 0, 0.1)


@requires_cuda
@pytest.mark.parametrize("backend", ["cuda", "triton"])
@pytest.mark.parametrize("vdtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("shape", [(1, 7), (3, 97, 5), (2, 345, 40), (16, 1024, 128)])
def test_gpu_backends_match_torch(backend, vdtype, shape):
    g = torch.Generator(device="cuda").manual_seed(1234)
    B = shape[0]
    x = torch.randn(shape, device="cuda", generator=g)
    v = torch.randn((2 * B,) + shape[1:], device="cuda", generator=g).to(vdtype)
    prev = torch.randn(shape, device="cuda", generator=g)
    w = torch.rand(B, device="cuda", generator=g) * 6 - 1
    store = torch.empty(shape, device="cuda")
    wr = w.view((-1,) + (1,) * (len(shape) - 1))
    vv = wr * v[:B].float() + (1 - wr) * v[B:].float()
    want = x + torch.tensor(0.04, device="cuda") * (1.25 * vv + (-0.25) * prev)
    got = flow_step(x.clone(), v, 0.04, guidance=w, prev=prev, prev_weight=-0.25, store=store, backend=backend)
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(store, vv, rtol=1e-6, atol=1e-6)
    # scalar guidance, no prev, separate uncond, odd-sized out-of-place
    got2 = flow_step(x, v[:B], 0.5, guidance=4.5, uncond=v[B:], out=torch.empty_like(x), backend=backend)
    torch.testing.assert_close(got2, x + 0.5 * (4.5 * v[:B].float() + (1 - 4.5) * v[B:].float()),
                               rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("vdtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("guided", [False, True])
def test_default_backend_fast_path(vdtype, guided, rng):
    """The sampler's common call (no backend named, in place, contiguous) takes a shorter path."""
    shape = (3, 61, 7)
    x = torch.from_numpy(rng.standard_normal(shape).astype(np.float32))
    rows = 6 if guided else 3
    v = torch.from_numpy(rng.standard_normal((rows,) + shape[1:]).astype(np.float32)).to(vdtype)
    w = float(rng.uniform(1, 6))
    if guided:
        want, _ = expected(x, v[:3].float(), v[3:].float(), w, None, 0.0, 1.0, 0.07)
    else:
        want, _ = expected(x, v.float(), None, None, None, 0.0, 1.0, 0.07)
    got = x.clone()
    assert flow_step(got, v, 0.07, guidance=w if guided else None) is got
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
    # a velocity that partially overlaps the state is refused, not silently used
    big = torch.zeros(2 * 3 * 61 * 7 + 5)
    with pytest.raises(ValueError, match="partially overlaps"):
        flow_step(big[5:5 + x.numel()].view(shape), big[:x.numel()].view(shape), 0.1)
