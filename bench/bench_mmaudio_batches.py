"""Batches of different durations: one padded MMAudio call vs one call per duration, same run.

small_16k shapes, random weights, float32, CPU, 2 threads. Rows of 3.1 s, 8 s and 5.55 s (latent 97 / 250 /
174 frames), each guided (cond + uncond), so the padded call is ONE predict_flow on 6 rows padded to 250
frames; the peer is three predict_flow calls of 2 rows at each row's own length (what a caller without
valid lengths has to do). A second ratio compares the padded call with an unpadded batch of 6 rows all at
8 s (the cost of the masking itself: the padded call does the same GEMM work plus masks and key packing).

    PYTHONPATH=python:bench python -m pytest bench/bench_mmaudio_batches.py --benchmark-only
    PYTHONPATH=python:bench python bench/bench_mmaudio_batches.py [--rounds 5]     # interleaved ratio table
"""
from __future__ import annotations

import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(__file__))
from bench_mmaudio import random_weights  # noqa: E402

from sonicore.models import mmaudio  # noqa: E402

THREADS = 2
DURATIONS = (3.1, 8.0, 5.55)


def build(seed=0):
    cfg = mmaudio.variant_config("small_16k")
    net = mmaudio.load(random_weights(cfg, seed)).prepare()
    g = torch.Generator().manual_seed(seed + 1)
    L = [cfg.seq_lengths(d) for d in DURATIONS]
    rows = []
    for l in L:
        rows.append(dict(clip=torch.randn(1, l["clip"], cfg.clip_dim, generator=g),
                         sync=torch.randn(1, l["sync"], cfg.sync_dim, generator=g),
                         text=torch.randn(1, cfg.text_seq_len, cfg.text_dim, generator=g),
                         x=torch.randn(1, l["latent"], cfg.latent_dim, generator=g), n=l["latent"]))
    N, Nc, Ns = (max(l[k] for l in L) for k in ("latent", "clip", "sync"))
    lens = {f"{k}_lens": torch.tensor([l[k] for l in L]) for k in ("latent", "clip", "sync")}

    def pad(key, n):
        out = torch.zeros(len(rows), n, rows[0][key].shape[-1])
        for b, r in enumerate(rows):
            out[b, :r[key].shape[1]] = r[key][0]
        return out

    with torch.no_grad():
        cond = net.preprocess_conditions(pad("clip", Nc), pad("sync", Ns), pad("text", cfg.text_seq_len), N, **lens)
        empty = net.empty_conditions(Nc, Ns, N, **lens)
        padded = (torch.cat([pad("x", N)] * 2), cond.cat(empty))
        alone = []
        for r in rows:
            c = net.preprocess_conditions(r["clip"], r["sync"], r["text"], r["n"])
            e = net.empty_conditions(r["clip"].shape[1], r["sync"].shape[1], r["n"])
            alone.append((torch.cat([r["x"]] * 2), c.cat(e)))
        full = net.preprocess_conditions(torch.randn(3, Nc, cfg.clip_dim, generator=g),
                                         torch.randn(3, Ns, cfg.sync_dim, generator=g),
                                         torch.randn(3, cfg.text_seq_len, cfg.text_dim, generator=g), N)
        unpadded = (torch.randn(6, N, cfg.latent_dim, generator=g),
                    full.cat(net.empty_conditions(Nc, Ns, N).expand(3)))
    t = torch.full((6,), 0.4)
    t2 = torch.full((2,), 0.4)

    @torch.no_grad()
    def run_padded():
        return net.predict_flow(padded[0], t, padded[1])

    @torch.no_grad()
    def run_alone():
        return [net.predict_flow(x, t2, c) for x, c in alone]

    @torch.no_grad()
    def run_unpadded():
        return net.predict_flow(unpadded[0], t, unpadded[1])

    return run_padded, run_alone, run_unpadded


def _time(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def test_padded_batch(benchmark):
    torch.set_num_threads(THREADS)
    run_padded, _, _ = build()
    benchmark.pedantic(run_padded, rounds=3, warmup_rounds=1)


def test_one_call_per_duration(benchmark):
    torch.set_num_threads(THREADS)
    _, run_alone, _ = build()
    benchmark.pedantic(run_alone, rounds=3, warmup_rounds=1)


def test_unpadded_longest(benchmark):
    torch.set_num_threads(THREADS)
    _, _, run_unpadded = build()
    benchmark.pedantic(run_unpadded, rounds=3, warmup_rounds=1)


def main(rounds: int = 5):
    torch.set_num_threads(THREADS)
    fns = build()
    for f in fns:
        f()  # warm-up: packs weights, builds RoPE tables
    times = {k: [] for k in ("padded", "alone", "unpadded")}
    for _ in range(rounds):  # interleaved, so load changes hit all three alike
        for k, f in zip(times, fns):
            times[k].append(_time(f))
    med = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
    print(f"threads {THREADS}, rounds {rounds}, durations {DURATIONS} (x2 for guidance)")
    for k, v in med.items():
        print(f"  {k:9s} median {v * 1e3:8.1f} ms   min {min(times[k]) * 1e3:8.1f} ms")
    print(f"  padded / one-call-per-duration = {med['padded'] / med['alone']:.2f}")
    print(f"  padded / unpadded-at-longest   = {med['padded'] / med['unpadded']:.2f}")


if __name__ == "__main__":
    n = int(sys.argv[sys.argv.index("--rounds") + 1]) if "--rounds" in sys.argv else 5
    main(n)
