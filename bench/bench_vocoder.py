"""BigVGAN vocoder speed on CPU, always as a ratio against the `bigvgan` package measured in the same run.

    PYTHONPATH=python python -m pytest bench/bench_vocoder.py -q -s --benchmark-disable-gc --benchmark-min-rounds=3

Peer: NVIDIA's `bigvgan` package (2.4.1), torch path (use_cuda_kernel=False), weight norm removed as
MMAudio does before inference, same random weights (loaded into ours through load_vocoder), same
mel, 2 threads for torch and for sonicore's pool (VOCODER_BENCH_THREADS overrides). Each case times
ours and the peer alternately and reports median(ours) / median(peer) of wall time and of process CPU
time. VOCODER_BENCH_SECONDS (default 0.25) sets the audio length of the whole-generator cases.
"""
import os
import statistics
import time

import numpy as np
import pytest
import torch

import sonicore

THREADS = int(os.environ.get("VOCODER_BENCH_THREADS", "2"))
SECONDS = float(os.environ.get("VOCODER_BENCH_SECONDS", "0.25"))

bigvgan = pytest.importorskip("bigvgan", reason="the peer package `bigvgan` is not installed")


@pytest.fixture(autouse=True)
def _threads():
    sonicore.set_num_threads(THREADS)
    torch.set_num_threads(THREADS)


def _ratio(ours, peer, rounds):
    """Medians of wall time and of process CPU time (all threads; less sensitive to other jobs on a
    shared machine than wall time) for ours and the peer, timed alternately."""
    ours(), peer()  # warm caches and allocators
    a, b, ca, cb = [], [], [], []
    for _ in range(rounds):
        for fn, wall, cpu in ((ours, a, ca), (peer, b, cb)):
            c0, t0 = time.process_time(), time.perf_counter()
            fn()
            wall.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
    _ratio.cpu = (statistics.median(ca), statistics.median(cb))
    return statistics.median(a), statistics.median(b)


def _report(benchmark, name, t_ours, t_peer):
    ratio = t_ours / t_peer
    c_ours, c_peer = _ratio.cpu
    benchmark.extra_info.update(ours_ms=t_ours * 1e3, peer_ms=t_peer * 1e3, ratio=ratio, threads=THREADS,
                                ours_cpu_ms=c_ours * 1e3, peer_cpu_ms=c_peer * 1e3, cpu_ratio=c_ours / c_peer)
    print(f"\n{name}: ours {t_ours * 1e3:.1f} ms, peer {t_peer * 1e3:.1f} ms, ratio {ratio:.3f} "
          f"(CPU time: ours {c_ours * 1e3:.1f} ms, peer {c_peer * 1e3:.1f} ms, ratio {c_ours / c_peer:.3f})")


# Activation shapes of the 44.1 kHz generator for 1 s of audio (87 mel frames): first, middle, last stage.
@pytest.mark.parametrize("C,T", [(768, 696), (96, 11136), (24, 44544)])
def test_anti_aliased_snake(benchmark, C, T):
    from bigvgan.activations import SnakeBeta
    from bigvgan.alias_free_activation.torch.act import Activation1d
    from sonicore.ops.vocoder import anti_aliased_snake
    rng = np.random.default_rng(0)
    act = SnakeBeta(C, alpha_logscale=True)
    with torch.no_grad():
        act.alpha.copy_(torch.from_numpy(rng.standard_normal(C) * 0.3))
        act.beta.copy_(torch.from_numpy(rng.standard_normal(C) * 0.3))
    peer_mod = Activation1d(activation=act)
    x = torch.from_numpy(rng.standard_normal((1, C, T)).astype(np.float32))
    a = torch.exp(act.alpha.detach())
    ib = 1.0 / (torch.exp(act.beta.detach()) + 1e-9)
    f_up, f_down = peer_mod.upsample.filter.reshape(-1), peer_mod.downsample.lowpass.filter.reshape(-1)

    def ours():
        return anti_aliased_snake(x, a, ib, f_up, f_down)

    def peer():
        with torch.no_grad():
            return peer_mod(x)

    t_ours, t_peer = _ratio(ours, peer, rounds=15)
    _report(benchmark, f"anti-aliased SnakeBeta (1, {C}, {T}) vs bigvgan Activation1d", t_ours, t_peer)
    benchmark(ours)


@pytest.mark.parametrize("preset", ["bigvgan_v2_44khz_128band_512x", "maa2_bigvgan_16k"])
def test_generator(benchmark, preset):
    from test_vocoder import _ref_model  # random-weight bigvgan model for a config (tests/)
    from sonicore.models.mmaudio.vocoder import PRESETS, load_vocoder
    cfg = PRESETS[preset]
    rng = np.random.default_rng(1)
    peer_mod, _ = _ref_model(cfg, rng)
    ours_mod = load_vocoder({"generator": peer_mod.state_dict()}, preset)
    peer_mod.remove_weight_norm()
    frames = max(1, round(SECONDS * cfg.sampling_rate / cfg.hop_size))
    mel = torch.from_numpy(rng.standard_normal((1, cfg.num_mels, frames)).astype(np.float32)) - 3

    def peer():
        with torch.no_grad():
            return peer_mod(mel)

    t_ours, t_peer = _ratio(lambda: ours_mod(mel), peer, rounds=3)
    _report(benchmark, f"{preset}, {frames} frames ({frames * cfg.hop_size / cfg.sampling_rate:.2f} s) vs bigvgan",
            t_ours, t_peer)
    benchmark.pedantic(lambda: ours_mod(mel), rounds=1, iterations=1)
