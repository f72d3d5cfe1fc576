"""Winograd convolutions (sonicore.ops.winograd) vs torch's conv1d and the im2col GEMM, CPU float32.

    PYTHONPATH=python python -m pytest bench/bench_winograd.py -q -s --benchmark-disable-gc
    PYTHONPATH=python python bench/bench_winograd.py [--rounds 15]          # interleaved ratio table

Cases: the kernel-3 / kernel-7 "same" convolutions of MMAudio small_16k at 8 s and the guided batch of
2 (B=2, N=250 latent frames): the attention output projection (448 -> 448), the FFN's fused first
layer (448 -> 2 x 1280) and second layer (1280 -> 448), and the kernel-7 input FFN (F(2, 7)).
Activations are channel-last (B, N, C) as in the network. Peers, same run, 2 threads:
torch.nn.functional.conv1d (oneDNN; the input transposed to channel-first and back, as a channel-last
model has to) and the im2col GEMM (what sonicore ran before: one torch.mm on the (B*N, k*Cin) taps).
Ours: input transform (C++), one batched torch GEMM over the alpha transformed points, output
transform (C++), weights transformed once beforehand.
"""
from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F

import sonicore
from sonicore.ops import nn as nnops
from sonicore.ops import winograd as wg

from _interleave import interleaved_medians, start_table

THREADS = int(os.environ.get("WINOGRAD_BENCH_THREADS", "2"))
CASES = {  # name: (k, Cin, Cout, m)
    "proj_448x448_k3": (3, 448, 448, 4),
    "ffn1_448x2560_k3": (3, 448, 2560, 4),
    "ffn2_1280x448_k3": (3, 1280, 448, 4),
    "input_ffn1_448x2560_k7": (7, 448, 2560, 2),
}


def make_case(name, B=2, N=250, seed=0):
    k, cin, cout, m = CASES[name]
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, N, cin, generator=g)
    w = torch.randn(k, cin, cout, generator=g) / (k * cin) ** 0.5      # taps (k, Cin, Cout)
    plan = wg.winograd_plan(k, m)
    v = wg.winograd_weight(w, plan)
    w_conv = w.permute(2, 1, 0).contiguous()                            # torch (Cout, Cin, k)
    w_mat = w.reshape(k * cin, cout).contiguous()

    def ours():
        return wg.winograd_conv1d(x, v, plan)

    def torch_conv():
        return F.conv1d(x.transpose(1, 2), w_conv, padding=k // 2).transpose(1, 2).contiguous()

    def im2col():
        return torch.mm(nnops.taps_layout(x, k).reshape(B * N, k * cin), w_mat).view(B, N, cout)

    ref = torch_conv()
    err = max((ours() - ref).abs().max().item(), (im2col() - ref).abs().max().item())
    assert err < 1e-4 * ref.abs().max().item(), f"{name}: paths disagree by {err}"
    return ours, torch_conv, im2col


@pytest.fixture(autouse=True)
def _threads():
    sonicore.set_num_threads(THREADS)
    torch.set_num_threads(THREADS)


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("which", [0, 1], ids=["winograd", "torch_conv1d"])
@pytest.mark.benchmark(group="winograd-conv")
def test_conv(benchmark, name, which):
    fn = make_case(name)[which]
    with torch.no_grad():
        benchmark(fn)


@pytest.mark.parametrize("name", list(CASES))
def test_winograd_ratio(name):
    """Prints median(ours) / median(peer) from interleaved rounds (no assertion on time)."""
    with torch.no_grad():
        a, b, c = interleaved_medians(make_case(name), 15)
    print(f"\n{name}: winograd {a * 1e3:.2f} ms, torch conv1d {b * 1e3:.2f} ms ({a / b:.2f}), "
          f"im2col GEMM {c * 1e3:.2f} ms ({a / c:.2f})")


if __name__ == "__main__":
    rounds = start_table(THREADS, 15)
    print("| case | winograd | torch conv1d | im2col GEMM | winograd / conv1d | winograd / im2col |")
    print("| --- | --- | --- | --- | --- | --- |")
    with torch.no_grad():
        for name in CASES:
            a, b, c = interleaved_medians(make_case(name), rounds)
            print(f"| {name} | {a * 1e3:.2f} ms | {b * 1e3:.2f} ms | {c * 1e3:.2f} ms | {a / b:.2f} | {a / c:.2f} |")
