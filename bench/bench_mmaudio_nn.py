"""The fused MMAudio block ops (sonicore.ops.nn) against their torch references, same run.

    PYTHONPATH=python python -m pytest bench/bench_mmaudio_nn.py -q -s --benchmark-disable-gc
    PYTHONPATH=python python bench/bench_mmaudio_nn.py [--rounds 31]            # ratio table

Shapes: MMAudio small_16k (D 448, 7 heads of 64) and large_44k (D 1024, 16 heads of 64) at 8 s and the
guided batch of 2, latent stream (N 250) — the sizes one network evaluation runs them at. Each op is timed
against what the plain-torch reference network does for the same result (backend="torch" of the same op:
LayerNorm + modulation; the interleaved qkv split + two RMSNorms + RoPE; silu * gate; plus, for the
taps=3 forms, the pad + im2col copy a kernel-3 convolution then needs). CPU: float32, 2 threads (C++
kernels). GPU (skipped without CUDA): the Triton kernels against the same torch code in bfloat16.
"""
from __future__ import annotations

import os

import pytest
import torch

import sonicore
from sonicore.models.mmaudio.rope import rope_table
from sonicore.ops import nn as nnops

from _interleave import interleaved_medians, start_table

THREADS = int(os.environ.get("NN_BENCH_THREADS", "2"))
SHAPES = {"small_16k": (2, 250, 448, 7), "large_44k": (2, 250, 1024, 16)}  # B, N, D, heads
OPS = ("adaln_layernorm", "adaln_layernorm_taps3", "qk_norm_rope", "swiglu_taps3")


def make_op(op, shape, device="cpu", dtype=torch.float32, seed=0):
    """(ours(), reference()) closures for one op at one shape."""
    B, N, D, H = shape
    hd = D // H
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g).to(device=device, dtype=dtype)  # noqa: E731
    ours_be = "cpu" if device == "cpu" else "triton"
    if op.startswith("adaln_layernorm"):
        taps = 3 if op.endswith("taps3") else 1
        x, mod = r(B, N, D), r(B, N, 6 * D)         # per-token modulation, strided chunks as in the network
        shift, scale = mod[..., :D], mod[..., D:2 * D]
        return (lambda: nnops.adaln_layernorm(x, shift, scale, taps=taps, backend=ours_be),
                lambda: nnops.adaln_layernorm(x, shift, scale, taps=taps, backend="torch"))
    if op == "qk_norm_rope":
        qkv, wq, wk = r(B, N, 3 * D), 1 + 0.1 * r(hd), 1 + 0.1 * r(hd)
        rot = rope_table(N, hd).to(device)
        return (lambda: nnops.qk_norm_rope(qkv, H, wq, wk, rot, backend=ours_be),
                lambda: nnops.qk_norm_rope(qkv, H, wq, wk, rot, backend="torch"))
    if op == "swiglu_taps3":
        F = {448: 1280, 1024: 2816}[D]
        h = r(B, N, 2 * F)
        return (lambda: nnops.swiglu(h, taps=3, backend=ours_be), lambda: nnops.swiglu(h, taps=3, backend="torch"))
    raise KeyError(op)


@pytest.fixture(autouse=True)
def _threads():
    sonicore.set_num_threads(THREADS)
    torch.set_num_threads(THREADS)


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("op", OPS)
def test_cpu_fused_op_ratio(op, shape):
    """Prints median(ours) / median(torch reference); checks the two agree (no assertion on time)."""
    ours, ref = make_op(op, SHAPES[shape])
    with torch.no_grad():
        a, b = ours(), ref()
        for x, y in zip(a if isinstance(a, tuple) else (a,), b if isinstance(b, tuple) else (b,)):
            torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-4)
        ta, tb = interleaved_medians((ours, ref), 31)
    print(f"\n{op} {shape}: ours {ta * 1e3:.3f} ms, torch {tb * 1e3:.3f} ms, ratio {ta / tb:.2f}")


@pytest.mark.parametrize("op", OPS)
@pytest.mark.benchmark(group="mmaudio-nn-cpu")
def test_cpu_fused_op(benchmark, op):
    ours, _ = make_op(op, SHAPES["small_16k"])
    with torch.no_grad():
        benchmark(ours)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("op", OPS)
def test_gpu_fused_op_ratio(op):
    ours, ref = make_op(op, SHAPES["large_44k"], device="cuda", dtype=torch.bfloat16)
    with torch.no_grad():
        ta, tb = interleaved_medians((ours, ref), 31, sync=torch.cuda.synchronize)
    print(f"\n{op} large_44k bf16 {torch.cuda.get_device_name()}: triton {ta * 1e6:.1f} us, "
          f"torch {tb * 1e6:.1f} us, ratio {ta / tb:.2f}")


if __name__ == "__main__":
    rounds = start_table(THREADS, 31, "float32")
    print("| op | shape (B, N, D, heads) | sonicore C++ | torch reference | ratio |")
    print("| --- | --- | --- | --- | --- |")
    with torch.no_grad():
        for op in OPS:
            for name, shape in SHAPES.items():
                a, b = interleaved_medians(make_op(op, shape), rounds)
                print(f"| {op} | {name} {shape} | {a * 1e3:.3f} ms | {b * 1e3:.3f} ms | {a / b:.2f} |")
