"""Single-thread CPU-time ratios (time.thread_time) of sonicore vs torch, same calls as
bench_stft.py. On a shared, oversubscribed machine CPU time is steadier than wall time.

Run: PYTHONPATH=python python bench/stft_thread_time.py
"""
import time

import numpy as np
import torch

import sonicore
from sonicore.ops import istft, stft


def median_cpu_ms(fn, rounds=9):
    fn()
    times = []
    for _ in range(rounds):
        t = time.thread_time()
        fn()
        times.append(time.thread_time() - t)
    return float(np.median(times)) * 1e3


def main():
    torch.set_num_threads(1)
    sonicore.set_num_threads(1)
    x = torch.randn(44100 * 60)
    w = torch.hann_window(1024)
    spec = torch.stft(x, 1024, 256, window=w, return_complex=True)
    cases = [
        ("stft complex", lambda: stft(x, 1024, 256, window=w),
         lambda: torch.stft(x, 1024, 256, window=w, return_complex=True)),
        ("stft power", lambda: stft(x, 1024, 256, window=w, output="power"),
         lambda: torch.stft(x, 1024, 256, window=w, return_complex=True).abs() ** 2),
        ("istft", lambda: istft(spec, 1024, 256, window=w), lambda: torch.istft(spec, 1024, 256, window=w)),
    ]
    for name, ours, peer in cases:
        p = median_cpu_ms(peer)
        o = median_cpu_ms(ours)
        print(f"1 thread {name}: sonicore {o:.1f} ms, torch {p:.1f} ms, ratio {o / p:.2f}")


if __name__ == "__main__":
    main()
