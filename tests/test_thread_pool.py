"""sonicore's thread pool under concurrent use: several Python threads run pooled kernels
(attention, STFT) at once while another resizes the pool; every result must equal the one the
same call gives alone, and nothing may hang or crash (the pool hands each job to workers that
may still be finishing the previous one, see csrc/cpu/parallel.cpp)."""
import threading

import numpy as np
import torch

import sonicore
from sonicore.ops import attention, stft


def test_concurrent_callers_and_resizes_give_the_same_results(rng):
    cases = []
    for i in range(6):
        nq = int(rng.integers(1, 80))  # both attention paths: decoder-sized and tiled
        nk = int(rng.integers(1, 300))
        q, k, v = (torch.from_numpy(rng.standard_normal(s).astype(np.float32))
                   for s in ((2, 3, nq, 64), (2, 3, nk, 64), (2, 3, nk, 64)))
        x = torch.from_numpy(rng.standard_normal((2, int(rng.integers(3000, 9000)))).astype(np.float32))
        cases.append((q, k, v, x))
    window = torch.hann_window(512)
    run = lambda c: (attention(c[0], c[1], c[2]), stft(c[3], 512, 128, window=window))
    sonicore.set_num_threads(2)
    expected = [run(c) for c in cases]

    errors, stop = [], threading.Event()

    def caller(seed):
        order = np.random.default_rng(seed)
        try:
            for _ in range(40):
                i = int(order.integers(len(cases)))
                out, spec = run(cases[i])
                if not (torch.equal(out, expected[i][0]) and torch.equal(spec, expected[i][1])):
                    errors.append(f"case {i}: result differs")
        except Exception as e:  # pragma: no cover - reported below
            errors.append(repr(e))

    def resizer():
        n = 1
        while not stop.is_set():
            sonicore.set_num_threads(n)
            n = n % 3 + 1

    try:
        threads = [threading.Thread(target=caller, args=(s,)) for s in range(4)]
        rs = threading.Thread(target=resizer)
        rs.start()
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        stop.set()
        rs.join(timeout=30)
        assert not any(t.is_alive() for t in threads) and not rs.is_alive(), "a thread hung"
    finally:
        sonicore.set_num_threads(0)
    assert not errors, errors[:5]
