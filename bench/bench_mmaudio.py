"""MMAudio network speed: sonicore vs the plain-torch reference (tests/mmaudio_reference.py), same run.

CPU (the issue's target): small_16k shapes, random weights, 8 s (N=250, 64 clip, 192 sync, 77 text tokens),
batch 2 (cond + uncond: the same latent twice, random conditions and the learned empty ones), float32,
2 threads: one network evaluation (predict_flow, conditions preprocessed once as both samplers do).
GPU (skipped without one): large_44k shapes, bf16, 8 s, the whole 25-step CFG sampling loop.

    PYTHONPATH=python:tests python -m pytest bench/bench_mmaudio.py --benchmark-only   # pytest-benchmark
    PYTHONPATH=python:tests python bench/bench_mmaudio.py [--rounds 5] [--conv im2col]  # interleaved ratio table
"""
from __future__ import annotations

import dataclasses
import os
import sys
import time

import pytest
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
from mmaudio_reference import ReferenceMMAudio  # noqa: E402

from sonicore.models import mmaudio  # noqa: E402
from sonicore.models.mmaudio.sampler import sample_latent  # noqa: E402

THREADS = 2


def random_weights(cfg, seed=0):
    """Random state dict with the shapes of `cfg` (every path live, unit-scale activations)."""
    g = torch.Generator().manual_seed(seed)
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in mmaudio.MMAudioNetwork(cfg).state_dict().items()}
    sd = {}
    for k, s in shapes.items():
        if k.endswith("norm.weight"):
            sd[k] = torch.ones(s)
        elif len(s) >= 2 and not k.startswith(("empty_", "latent_", "sync_pos")):
            sd[k] = torch.randn(s, generator=g) / float(torch.tensor(s[1:]).prod()) ** 0.5
        elif k == "latent_std":
            sd[k] = torch.ones(s)
        else:
            sd[k] = 0.1 * torch.randn(s, generator=g)
    return sd


def build(variant, dtype, device, seconds=8.0, batch=2):
    cfg = mmaudio.variant_config(variant)
    sd = random_weights(cfg)
    ours = mmaudio.load(sd, dtype=dtype, device=device)
    ref = ReferenceMMAudio(**dataclasses.asdict(cfg)).eval().requires_grad_(False)
    ref.load_state_dict(sd)
    ref = ref.to(device=device, dtype=dtype)
    L = cfg.seq_lengths(seconds)
    g = torch.Generator().manual_seed(1)
    r = lambda *s: torch.randn(*s, generator=g).to(device=device, dtype=dtype)
    inp = dict(x=r(batch, L["latent"], cfg.latent_dim), clip=r(batch, L["clip"], cfg.clip_dim),
               sync=r(batch, L["sync"], cfg.sync_dim), text=r(batch, cfg.text_seq_len, cfg.text_dim),
               t=torch.rand(batch, generator=g).to(device))
    return cfg, L, ours, ref, inp


def cpu_eval_pair(variant="small_16k", threads=THREADS, conv="auto"):
    """(ours(), reference()) closures for one network evaluation each, conditions preprocessed.
    conv: sonicore's convolution algorithm ("auto" = Winograd on the CPU in float32, or "im2col")."""
    torch.set_num_threads(threads)
    try:
        from sonicore._ext import C
        C.set_num_threads(threads)
    except Exception:
        pass
    cfg, L, ours, ref, inp = build(variant, torch.float32, "cpu", batch=1)
    ours.set_conv_algorithm(conv)
    # The batch of 2 a guided sampler step evaluates: the same latent twice, [conditions; empty features].
    x = torch.cat([inp["x"], inp["x"]])
    t = torch.cat([inp["t"], inp["t"]])
    clip = torch.cat([inp["clip"], ours.empty_clip_feat.expand_as(inp["clip"])])
    sync = torch.cat([inp["sync"], ours.empty_sync_feat.expand_as(inp["sync"])])
    text = torch.cat([inp["text"], ours.empty_string_feat[None]])
    inp = dict(x=x, t=t)
    with torch.no_grad():
        cond = ours.preprocess_conditions(clip, sync, text, L["latent"])
        rcond = ref.preprocess(clip, sync, text, L["latent"])

    def run_ours():
        with torch.no_grad():
            return ours.predict_flow(inp["x"], inp["t"], cond)

    def run_ref():
        with torch.no_grad():
            return ref.predict_flow(inp["x"], inp["t"], *rcond)
    err = (run_ours() - run_ref()).abs().max().item()
    assert err < 1e-3, f"ours and the reference disagree by {err}"
    return run_ours, run_ref


def gpu_sampling_pair(variant="large_44k", steps=25, cfg_strength=4.5, cuda_graph=True, device="cuda"):
    """(ours(), reference()) closures for the whole 25-step CFG sampling loop of an 8 s clip in bf16.
    ours.eval_once() runs one eager network evaluation at the guided batch of 2 (for profiling)."""
    cfg, L, ours, ref, inp = build(variant, torch.bfloat16, device, batch=1)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    x0 = inp["x"]

    def run_ours():
        with torch.no_grad():
            cond = ours.preprocess_conditions(inp["clip"], inp["sync"], inp["text"], L["latent"])
            empty = ours.empty_conditions(L["clip"], L["sync"], L["latent"])
            z = sample_latent(ours, x0, cond, empty, steps=steps, cfg_strength=cfg_strength, cuda_graph=cuda_graph)
            sync()
            return z

    def run_ref():
        with torch.no_grad():
            c = ref.preprocess(inp["clip"], inp["sync"], inp["text"], L["latent"])
            e = ref.preprocess(ref.empty_clip_feat.expand(L["clip"], -1)[None],
                               ref.empty_sync_feat.expand(L["sync"], -1)[None], ref.empty_string_feat[None],
                               L["latent"])
            both = [torch.cat([a, b.expand_as(a)], 0) for a, b in zip(c, e)]
            x = x0
            ts = torch.linspace(0, 1, steps + 1)
            for k in range(steps):
                t = ts[k].to(device, x.dtype).expand(2)
                v = ref.predict_flow(torch.cat([x, x]), t, *both)
                vc, vu = v.chunk(2)
                x = x + (ts[k + 1] - ts[k]).item() * (cfg_strength * vc + (1 - cfg_strength) * vu)
            sync()
            return x

    def eval_once():  # one eager network evaluation at the guided batch of 2 (for profiling)
        with torch.no_grad():
            cond = ours.preprocess_conditions(inp["clip"], inp["sync"], inp["text"], L["latent"])
            both = type(cond)(*[torch.cat([a, a]) for a in (cond.clip_f, cond.sync_f, cond.text_f,
                                                              cond.clip_f_c, cond.text_f_c)])
            return ours.predict_flow(torch.cat([x0, x0]), inp["t"].expand(2).to(x0.dtype), both)
    run_ours.eval_once = eval_once
    return run_ours, run_ref


def interleaved(fa, fb, rounds=5, warmup=1, clock=time.perf_counter):
    """Best-of-`rounds` times for fa and fb, alternating so that machine noise hits both.
    clock: time.perf_counter (wall) or time.process_time (CPU time of this process, all threads)."""
    for _ in range(warmup):
        fa(), fb()
    ta, tb = [], []
    for _ in range(rounds):
        t0 = clock(); fa(); ta.append(clock() - t0)
        t0 = clock(); fb(); tb.append(clock() - t0)
    return min(ta), min(tb), ta, tb


# ------------------------------------------------------------------ pytest-benchmark entry points
@pytest.fixture(scope="module")
def cpu_pair():
    return cpu_eval_pair()


@pytest.mark.benchmark(group="mmaudio-small_16k-cpu-fp32-eval")
def test_cpu_eval_sonicore(benchmark, cpu_pair):
    benchmark.pedantic(cpu_pair[0], rounds=3, warmup_rounds=1)


@pytest.mark.benchmark(group="mmaudio-small_16k-cpu-fp32-eval")
def test_cpu_eval_reference(benchmark, cpu_pair):
    benchmark.pedantic(cpu_pair[1], rounds=3, warmup_rounds=1)


def test_cpu_eval_ratio(cpu_pair):
    """Prints the interleaved ratio (no assertion on time: machines are noisy)."""
    a, b, _, _ = interleaved(*cpu_pair, rounds=3)
    print(f"\nsmall_16k fp32 CPU eval: sonicore {a * 1e3:.0f} ms, reference {b * 1e3:.0f} ms, ratio {a / b:.2f}")


requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(scope="module")
def gpu_pair():
    return gpu_sampling_pair()  # built once: a large_44k model pair takes seconds to make


@requires_cuda
@pytest.mark.benchmark(group="mmaudio-large_44k-gpu-bf16-sampling")
def test_gpu_sampling_sonicore(benchmark, gpu_pair):
    benchmark.pedantic(gpu_pair[0], rounds=5, warmup_rounds=1)


@requires_cuda
@pytest.mark.benchmark(group="mmaudio-large_44k-gpu-bf16-sampling")
def test_gpu_sampling_reference(benchmark, gpu_pair):
    benchmark.pedantic(gpu_pair[1], rounds=5, warmup_rounds=1)


@requires_cuda
def test_gpu_sampling_ratio(gpu_pair):
    a, b, _, _ = interleaved(*gpu_pair, rounds=5)
    print(f"\nlarge_44k bf16 GPU 25-step CFG sampling: sonicore {a * 1e3:.1f} ms, reference {b * 1e3:.1f} ms, "
          f"ratio {a / b:.2f} ({torch.cuda.get_device_name()})")


if __name__ == "__main__":
    import argparse
    import platform
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--gpu", action="store_true")
    ap.add_argument("--threads", type=int, default=THREADS)
    ap.add_argument("--cpu-time", action="store_true", help="measure process CPU time instead of wall time")
    ap.add_argument("--conv", default="auto", choices=("auto", "winograd", "im2col"),
                    help="sonicore's convolution algorithm (auto: Winograd for float32 on the CPU)")
    args = ap.parse_args()
    clock = time.process_time if args.cpu_time else time.perf_counter
    a, b, ta, tb = interleaved(*cpu_eval_pair(threads=args.threads, conv=args.conv), rounds=args.rounds, clock=clock)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, load {os.getloadavg()}, "
          f"torch {torch.__version__}, {args.threads} threads, {'CPU time' if args.cpu_time else 'wall time'}")
    print(f"small_16k fp32 CPU, 8 s, batch 2, one network evaluation (sonicore convolutions: {args.conv}):")
    print(f"  sonicore  best {a * 1e3:8.1f} ms  all {[round(t * 1e3) for t in ta]}")
    print(f"  reference best {b * 1e3:8.1f} ms  all {[round(t * 1e3) for t in tb]}")
    srt = lambda v: sorted(v)[len(v) // 2]  # noqa: E731
    print(f"  ratio of best {a / b:.3f}, ratio of medians {srt(ta) / srt(tb):.3f}")
    if args.gpu and torch.cuda.is_available():
        a, b, _, _ = interleaved(*gpu_sampling_pair(), rounds=args.rounds)
        print(f"large_44k bf16 GPU 25-step CFG: sonicore {a * 1e3:.1f} ms, reference {b * 1e3:.1f} ms, ratio {a / b:.3f}")
