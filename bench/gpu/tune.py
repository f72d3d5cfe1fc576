"""GPU tuning probes for the proof run (bench/gpu/run.sh runs the tests and benchmarks; this
answers the questions the first run raised). Prints a table and writes OUT/tune.txt.

    python3 bench/gpu/tune.py OUT_DIR [--skip-mmaudio] [--quick] [--only stft,attention,mmaudio]

1. Triton STFT framing tiles (samples and frames per program, warps) on issue 2's case, next to
   torch.stft and the CUDA kernel.
2. Triton attention variants ("split", "split-tma", "ws") and tiles: TFLOP/s of kernels/attention.py
   at head dim 64/128, N 4096/16384, causal or not, next to SDPA (default, flash, cuDNN) and our CUDA
   kernel in the same process (bf16, batch x N = 16k tokens, CUDA-event timing).
3. MMAudio large_44k bf16, 8 s, 25 CFG steps: the first call (graph capture included) and the
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
from _gpu_timing import cuda_time, optin_kernels_enabled  # noqa: E402

LINES = []
OUT = "."
DEV = "cuda"
SMOKE = False  # --smoke: tiny sizes on the CPU (Triton interpreter), to check this script before a GPU call


def timed(fn, reps):
    if not SMOKE:
        return cuda_time(fn, reps=reps)
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def say(s=""):
    print(s, flush=True)
    LINES.append(s)


# (BLOCK_M, BLOCK_N, warps, stages, variant): the split loop with and without tensor descriptors
# (TMA) at the tiles that led the sixth session's sweeps (bench/results/gpu-2026-11-26-b/), then
# the warp-specialised kernel ("ws": warps per warpgroup, three warpgroups) at the tiles
# FlashAttention-3 uses on Hopper and its neighbours. Configs that lost everywhere there (the
# "loop" variant, 64 x 128 and 4-warp 128 x 64 descriptor tiles) are left out.
ATTENTION_CONFIGS = [(64, 64, 4, 3, "split"), (128, 64, 8, 3, "split"), (64, 64, 4, 3, "split-tma"),
                     (128, 64, 8, 3, "split-tma"), (128, 128, 4, 2, "ws"), (128, 64, 4, 2, "ws"),
                     (128, 64, 4, 3, "ws"), (128, 128, 4, 3, "ws")]


# --few: the new defaults' neighbours only (a second, shorter call).
ATTENTION_FEW = [(64, 64, 4, 3, "split"), (128, 128, 4, 2, "ws"), (128, 64, 4, 2, "ws")]


def attention_tiles(quick=False, few=False):
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from sonicore import _backend
    from sonicore.ops import attention
    tri = _backend.triton_kernels("attention")
    configs = ATTENTION_FEW if few else ATTENTION_CONFIGS
    say("## Triton attention variants and tiles (bf16, TFLOP/s; config = BLOCK_M, BLOCK_N, warps, stages, variant)")
    say("Each config's output is checked against torch's (max |err| < 2e-2, else WRONG).")
    say("| hd | N | causal | cuda | default triton | " + " | ".join("/".join(map(str, c)) for c in configs)
        + " | sdpa default | sdpa flash | sdpa cudnn | best triton / sdpa default |")
    say("|" + " --- |" * (len(configs) + 9))
    for hd in ((32,) if SMOKE else (128, 64)):
        for n in ((40,) if SMOKE else (16384,) if quick else (4096, 16384)):
            for causal in (False, True):
                B, H = (1, 2) if SMOKE else (max(1, 16384 // n), 2048 // hd)
                q, k, v = (torch.randn(B, H, n, hd, device=DEV, dtype=torch.bfloat16) for _ in range(3))
                fl = 4.0 * B * H * n * n * hd / (2 if causal else 1)
                out = torch.empty_like(q)
                lse = torch.empty(B, H, n, device=DEV, dtype=torch.float32)
                row = []

                def tf(fn):
                    try:
                        return fl / timed(fn, 10) / 1e12
                    except Exception as exc:  # noqa: BLE001 - a config that fails must not stop the sweep
                        return f"fail ({type(exc).__name__}: {str(exc)[:60]})"
                fmt = lambda x: f"{x:.0f}" if isinstance(x, float) else x  # noqa: E731
                row.append(fmt(tf(lambda: attention(q, k, v, causal=causal, backend="cuda"))))
                dflt = tf(lambda: attention(q, k, v, causal=causal, backend="triton"))
                row.append(fmt(dflt))
                ref = F.scaled_dot_product_attention(q, k, v, is_causal=causal).float()
                best = dflt if isinstance(dflt, float) else 0.0
                for c in configs:
                    if c[4] == "ws" and not SMOKE and not tri._ws_ok(q, k, v):
                        row.append("n/a (not Hopper)")  # forward() would run its split-tma fallback
                        continue
                    if c[4] == "ws" and not optin_kernels_enabled():
                        row.append("left out (tests failed)")
                        continue
                    out.fill_(float("nan"))
                    res = tf(lambda: tri.forward(q, k, v, out, lse, hd ** -0.5, causal, None, None, config=c))
                    if isinstance(res, float):
                        err = (out.float() - ref).abs().max().item()
                        if not err < 2e-2:
                            res = f"{res:.0f} (WRONG: max err {err:.3g})"
                        else:
                            best = max(best, res)
                    row.append(fmt(res))
                sd = tf(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal))
                row.append(fmt(sd))
                for kind in (SDPBackend.FLASH_ATTENTION, SDPBackend.CUDNN_ATTENTION):
                    with sdpa_kernel([kind]):
                        row.append(fmt(tf(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal))))
                row.append(f"{best / sd:.2f}" if isinstance(sd, float) and best else "-")
                say(f"| {hd} | {n} | {causal} | " + " | ".join(row) + " |")
                with open(os.path.join(OUT, "tune.txt"), "w") as f:  # keep what was measured if cut off
                    f.write("\n".join(LINES) + "\n")
                del q, k, v, out, lse, ref
                torch.cuda.empty_cache()


# (samples per program, frames per program, warps) for the Triton framing kernel; first = default.
STFT_TILES = [(1024, 1, 4), (1024, 2, 4), (1024, 4, 8), (2048, 1, 8), (2048, 2, 8), (4096, 1, 8),
              (512, 4, 4), (4096, 2, 16)]


def stft_tiles():
    """1 h of stereo at 44.1 kHz, n_fft 4096, hop 1024 (issue 2's GPU case): the Triton framing
    kernel's tiles against torch.stft and the CUDA kernel, complex and power outputs."""
    import importlib
    gpu = importlib.import_module("sonicore.ops._stft_gpu")
    n_fft, hop = (256, 64) if SMOKE else (4096, 1024)
    x = torch.randn(2, 3001 if SMOKE else 44100 * 3600, device=DEV)
    w = torch.hann_window(n_fft, device=DEV)
    say("\n## Triton STFT framing tiles, 1 h stereo 44.1 kHz, n_fft 4096, hop 1024 (ms; speed-up vs torch.stft)")
    say("Outputs checked against torch.stft (max |err| <= 1e-3 x max |X|).")
    say("| output | torch | cuda | " + " | ".join("/".join(map(str, t)) for t in STFT_TILES) + " |")
    say("|" + " --- |" * (len(STFT_TILES) + 3))
    for output in ("complex", "power"):
        def peer():
            s = torch.stft(x, n_fft, hop, window=w, return_complex=True)
            return s if output == "complex" else s.abs().square()
        t_peer = timed(peer, 5)
        ref = peer()
        scale = ref.abs().max().item()
        row = [f"{t_peer * 1e3:.2f}"]

        def ours(backend):
            return gpu.stft(x, w, n_fft, hop, True, "reflect", False, True, output, 0.0, 1e-10, backend)
        try:
            t = timed(lambda: ours("cuda"), 5)
            row.append(f"{t * 1e3:.2f} ({t_peer / t:.2f}x)")
        except Exception as exc:  # noqa: BLE001
            row.append(f"fail ({type(exc).__name__})")
        for tiles in STFT_TILES:
            gpu.FRAME_TILES = tiles
            try:
                t = timed(lambda: ours("triton"), 5)
                err = (ours("triton") - ref).abs().max().item()
                cell = f"{t * 1e3:.2f} ({t_peer / t:.2f}x)"
                if not err <= 1e-3 * scale:
                    cell += f" WRONG ({err:.3g})"
            except Exception as exc:  # noqa: BLE001
                cell = f"fail ({type(exc).__name__}: {str(exc)[:60]})"
            row.append(cell)
        gpu.FRAME_TILES = None
        say(f"| {output} | " + " | ".join(row) + " |")
        del ref
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
    global OUT, DEV, SMOKE
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--skip-mmaudio", action="store_true")
    ap.add_argument("--quick", action="store_true", help="attention at N=16384 only")
    ap.add_argument("--only", default="stft,attention,mmaudio", help="comma list of probes to run")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU (TRITON_INTERPRET=1)")
    ap.add_argument("--few", action="store_true", help="three attention configs next to the default")
    a = ap.parse_args()
    OUT = a.out
    if a.smoke:
        DEV, SMOKE = "cpu", True
    os.makedirs(a.out, exist_ok=True)
    say(f"# GPU tuning probes on {'CPU (smoke)' if SMOKE else torch.cuda.get_device_name()}, torch {torch.__version__}")
    import functools
    probes = {"stft": stft_tiles, "attention": functools.partial(attention_tiles, a.quick, a.few), "mmaudio": mmaudio_loop}
    for name in a.only.split(","):
        if name == "mmaudio" and a.skip_mmaudio:
            continue
        t0 = time.perf_counter()
        try:
            probes[name]()
        except Exception as exc:  # noqa: BLE001 - keep what the other probes found
            import traceback
            say(f"{name} failed: {type(exc).__name__}: {exc}")
            say(traceback.format_exc()[-1500:])
        say(f"({name}: {time.perf_counter() - t0:.0f} s)")
        with open(os.path.join(a.out, "tune.txt"), "w") as f:
            f.write("\n".join(LINES) + "\n")


if __name__ == "__main__":
    main()
