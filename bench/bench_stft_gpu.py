"""GPU STFT speed (issue 2): sonicore's CUDA and Triton STFT vs torch.stft on the same GPU,
1 hour of stereo audio at 44.1 kHz, n_fft 4096, hop 1024, Hann; and the achieved bandwidth
as a fraction of the measured device-to-device copy bandwidth. Skips without a GPU.

    PYTHONPATH=python python -m pytest bench/bench_stft_gpu.py -q -s

Bytes counted for the fused path (the minimum a framed FFT pipeline moves): the signal read
once, the windowed frames written and read by the FFT, the FFT output written, and for real
outputs the spectrum read back and the (B, F, T) result written.
"""
import importlib

import pytest
import torch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

SR, SECONDS, N_FFT, HOP = 44100, 3600, 4096, 1024


def _time_ms(fn, reps=10):
    fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(reps):
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    times.sort()
    return times[len(times) // 2]


def _copy_bandwidth(nbytes):
    a = torch.empty(nbytes // 4, dtype=torch.float32, device="cuda")
    b = torch.empty_like(a)
    ms = _time_ms(lambda: b.copy_(a))
    return 2 * a.numel() * 4 / (ms * 1e-3)  # read + write, bytes/s


@pytest.mark.parametrize("output", ["complex", "power"])
def test_gpu_stft_one_hour_stereo(benchmark, output):
    gpu = importlib.import_module("sonicore.ops._stft_gpu")
    from sonicore._backend import cuda_kernels_usable, triton_usable
    x = torch.randn(2, SR * SECONDS, device="cuda")
    w = torch.hann_window(N_FFT, device="cuda")

    def peer():
        s = torch.stft(x, N_FFT, HOP, window=w, return_complex=True)
        return s if output == "complex" else s.abs().square()

    t_peer = _time_ms(peer)
    n_frames = 1 + x.shape[1] // HOP
    n_bins = N_FFT // 2 + 1
    frames_bytes = 2 * n_frames * N_FFT * 4
    spec_bytes = 2 * n_frames * n_bins * 8
    moved = x.numel() * 4 + 2 * frames_bytes + spec_bytes
    if output != "complex":
        moved += spec_bytes + 2 * n_frames * n_bins * 4
    copy_bw = _copy_bandwidth(1 << 30)
    lines = [f"torch.stft{'' if output == 'complex' else ' + abs().square()'}: {t_peer:.2f} ms"]
    for backend, usable in (("cuda", cuda_kernels_usable()[0]), ("triton", triton_usable()[0])):
        if not usable:
            lines.append(f"{backend}: not usable here")
            continue
        ours = lambda: gpu.stft(x, w, N_FFT, HOP, True, "reflect", False, True, output, 0.0, 1e-10, backend)  # noqa: E731
        t = _time_ms(ours)
        bw = moved / (t * 1e-3)
        benchmark.extra_info[f"{backend}_ms"] = t
        benchmark.extra_info[f"{backend}_speedup"] = t_peer / t
        benchmark.extra_info[f"{backend}_bandwidth_fraction"] = bw / copy_bw
        lines.append(f"{backend}: {t:.2f} ms, speed-up {t_peer / t:.2f}x (target >= 1.5), "
                     f"{bw / 1e9:.0f} GB/s = {bw / copy_bw:.2f} of copy bandwidth ({copy_bw / 1e9:.0f} GB/s)")
    benchmark.extra_info["torch_ms"] = t_peer
    print(f"\n{torch.cuda.get_device_name()} | 1 h stereo 44.1 kHz, n_fft {N_FFT}, hop {HOP}, {output}")
    print("\n".join("  " + line for line in lines))
    benchmark.pedantic(peer, rounds=1, iterations=1)
