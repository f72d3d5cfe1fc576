"""GPU tuning probes for the proof run (bench/gpu/run.sh runs the tests and benchmarks; this
answers the questions the first run raised). Prints a table and writes OUT/tune.txt.

    python3 bench/gpu/tune.py OUT_DIR [--skip-mmaudio]

1. Triton attention tiles: TFLOP/s of kernels/attention.py for a few (BLOCK_M, BLOCK_N, warps,
   stages) at head dim 64/128, N 4096/16384, causal or not, next to SDPA flash / cuDNN and our CUDA
   kernel in the same process (bf16, batch x N = 16k tokens, CUDA-event timing).
2. MMAudio large_44k bf16, 8 s, 25 CFG steps: the first call (graph capture included) and the
   steady state of sonicore's sampler with CUDA graphs, with the attention on the CUDA or the
   Triton kernel, next to the plain-torch reference; plus the top CUDA kernels of one network
   evaluation from torch.profiler.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # bench/ (the _gpu_timing and bench_mmaudio helpers)
from _gpu_timing import cuda_time  # noqa: E402

LINES = []


def say(s=""):
    print(s, flush=True)
    LINES.append(s)


def attention_tiles(quick=False):
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from sonicore import _backend
    from sonicore.ops import attention
    tri = _backend.triton_kernels("attention")
    configs = [(128, 64, 4, 3), (128, 64, 8, 3), (128, 128, 8, 3), (128, 128, 8, 2), (64, 64, 4, 3),
               (128, 32, 4, 4), (64, 128, 4, 3)]
    if quick:
        configs = [(128, 64, 4, 3), (128, 64, 8, 3), (64, 64, 4, 3), (64, 128, 4, 3), (128, 128, 8, 3)]
    say("## Triton attention tiles (bf16, TFLOP/s; config = BLOCK_M, BLOCK_N, warps, stages)")
    say("| hd | N | causal | cuda | default triton | " + " | ".join(str(c) for c in configs)
        + " | sdpa flash | sdpa cudnn |")
    say("|" + " --- |" * (len(configs) + 7))
    for hd in (64, 128):
        for n in ((16384,) if quick else (4096, 16384)):
            for causal in (False, True):
                B, H = max(1, 16384 // n), 2048 // hd
                q, k, v = (torch.randn(B, H, n, hd, device="cuda", dtype=torch.bfloat16) for _ in range(3))
                fl = 4.0 * B * H * n * n * hd / (2 if causal else 1)
                out = torch.empty_like(q)
                lse = torch.empty(B, H, n, device="cuda", dtype=torch.float32)
                row = []

                def tf(fn):
                    try:
                        return f"{fl / cuda_time(fn, reps=10) / 1e12:.0f}"
                    except Exception as exc:  # noqa: BLE001 - a config that fails must not stop the sweep
                        return f"fail ({type(exc).__name__})"
                row.append(tf(lambda: attention(q, k, v, causal=causal, backend="cuda")))
                row.append(tf(lambda: attention(q, k, v, causal=causal, backend="triton")))
                ref = attention(q, k, v, causal=causal, backend="torch").float()
                for c in configs:
                    res = tf(lambda: tri.forward(q, k, v, out, lse, hd ** -0.5, causal, None, None, config=c))
                    if not res.startswith("fail"):
                        err = (out.float() - ref).abs().max().item()
                        if not err < 2e-2:
                            res += f" (WRONG: max err {err:.3g})"
                    row.append(res)
                for kind in (SDPBackend.FLASH_ATTENTION, SDPBackend.CUDNN_ATTENTION):
                    with sdpa_kernel([kind]):
                        row.append(tf(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal)))
                say(f"| {hd} | {n} | {causal} | " + " | ".join(row) + " |")
                del q, k, v, out, lse, ref
                torch.cuda.empty_cache()


def mmaudio_loop():
    import bench_mmaudio as bm

    import sonicore.models.mmaudio.attention as mma
    from sonicore.ops import attention
    say("\n## MMAudio large_44k bf16, 8 s, 25 steps, CFG 4.5 (batch 1 -> 2 rows)")
    t0 = time.perf_counter()
    ours, ref = bm.gpu_sampling_pair()
    say(f"models built in {time.perf_counter() - t0:.1f} s")

    def wall(fn, n=3):
        best = float("inf")
        for _ in range(n):
            t = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t)
        return best * 1e3
    original = mma._attention
    for name in ("cuda", "triton", "torch"):
        mma._attention = lambda q, k, v, kv_lens=None, _b=name: attention(q, k, v, kv_lens=kv_lens, backend=_b)
        from sonicore.sampling.graphs import clear_graphs
        clear_graphs()
        t = time.perf_counter()
        ours()
        first = (time.perf_counter() - t) * 1e3
        say(f"sonicore (attention on {name}): first call {first:.0f} ms (includes capture), steady {wall(ours):.1f} ms")
    mma._attention = original
    say(f"plain-torch reference (eager): {wall(ref):.1f} ms")
    # Where one network evaluation spends its time (eager, default backends).
    net_eval = ours.eval_once
    net_eval()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        for _ in range(3):
            net_eval()
        torch.cuda.synchronize()
    say("\ntop CUDA kernels, 3 network evaluations (eager):")
    say(prof.key_averages().table(sort_by="cuda_time_total", row_limit=14))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--skip-mmaudio", action="store_true")
    ap.add_argument("--quick", action="store_true", help="N=16384 and five tile configs only")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    say(f"# GPU tuning probes on {torch.cuda.get_device_name()}, torch {torch.__version__}")
    import functools
    for step in ([functools.partial(attention_tiles, a.quick)] + ([] if a.skip_mmaudio else [mmaudio_loop])):
        try:
            step()
        except Exception as exc:  # noqa: BLE001 - keep what the other probes found
            import traceback
            say(f"{getattr(step, '__name__', 'attention_tiles')} failed: {type(exc).__name__}: {exc}")
            say(traceback.format_exc()[-1500:])
        with open(os.path.join(a.out, "tune.txt"), "w") as f:
            f.write("\n".join(LINES) + "\n")


if __name__ == "__main__":
    main()
