"""STFT / iSTFT / streaming speed, always as a ratio against the peer measured in the same run.

Run:  PYTHONPATH=python python -m pytest -q bench/bench_stft.py --benchmark-columns=median,min,rounds
Each test times the peer (torch) by hand right before sonicore is measured by pytest-benchmark,
both on 2 threads, and prints / stores  ratio = median(sonicore) / median(torch).
Targets (issue 2): complex STFT <= 0.7, power <= 0.5, iSTFT <= 0.6 of torch; streaming push of
one 256-sample hop at n_fft 1024 <= 15 us from Python (<= 5 us from C++: bench/native/stream_push.cpp).
"""
import time

import numpy as np
import pytest
import torch

import sonicore
from sonicore.ops import StreamingSTFT, istft, stft

THREADS = 2
SR, SECONDS, N_FFT, HOP = 44100, 60, 1024, 256


@pytest.fixture(scope="module", autouse=True)
def two_threads():
    old_t, old_s = torch.get_num_threads(), sonicore.get_num_threads()
    torch.set_num_threads(THREADS)
    sonicore.set_num_threads(THREADS)
    yield
    torch.set_num_threads(old_t)
    sonicore.set_num_threads(old_s)


@pytest.fixture(scope="module")
def signal():
    g = torch.Generator().manual_seed(0)
    return torch.randn(SR * SECONDS, generator=g), torch.hann_window(N_FFT)


def _median_ms(fn, rounds=9):
    fn()
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times)) * 1e3


def _ratio(benchmark, name, ours, peer, target):
    peer_ms = _median_ms(peer)
    benchmark.pedantic(ours, rounds=9, iterations=1, warmup_rounds=1)
    ours_ms = benchmark.stats.stats.median * 1e3
    ratio = ours_ms / peer_ms
    benchmark.extra_info.update(peer_ms=peer_ms, ours_ms=ours_ms, ratio=ratio, target=target)
    print(f"\n{name}: sonicore {ours_ms:.1f} ms, torch {peer_ms:.1f} ms, ratio {ratio:.2f} (target <= {target})")


def test_stft_complex(benchmark, signal):
    x, w = signal
    _ratio(benchmark, "stft complex",
           lambda: stft(x, N_FFT, HOP, window=w),
           lambda: torch.stft(x, N_FFT, HOP, window=w, return_complex=True), 0.7)


def test_stft_power(benchmark, signal):
    x, w = signal
    _ratio(benchmark, "stft power",
           lambda: stft(x, N_FFT, HOP, window=w, output="power"),
           lambda: torch.stft(x, N_FFT, HOP, window=w, return_complex=True).abs() ** 2, 0.5)


def test_istft(benchmark, signal):
    x, w = signal
    spec = torch.stft(x, N_FFT, HOP, window=w, return_complex=True)
    _ratio(benchmark, "istft",
           lambda: istft(spec, N_FFT, HOP, window=w),
           lambda: torch.istft(spec, N_FFT, HOP, window=w), 0.6)


def test_streaming_push_python(benchmark, signal):
    """One 256-sample hop per push at n_fft 1024 (each push returns one frame)."""
    x, w = signal
    xs = x.numpy()
    s = StreamingSTFT(N_FFT, HOP, window=w.numpy())
    s.push(xs[:N_FFT])
    hops = [np.ascontiguousarray(xs[N_FFT + i * HOP:N_FFT + (i + 1) * HOP]) for i in range(4096)]
    it = iter(range(10**9))

    def push():
        return s.push(hops[next(it) % len(hops)])

    benchmark.pedantic(push, rounds=2000, iterations=1, warmup_rounds=50)
    us = benchmark.stats.stats.median * 1e6
    benchmark.extra_info.update(median_us=us, target_us=15)
    print(f"\nstreaming push (Python): median {us:.2f} us per 256-sample hop (target <= 15 us)")
