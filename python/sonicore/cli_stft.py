"""`sonicore stft-roundtrip IN [-o OUT]`: STFT -> iSTFT of a real audio file with sonicore,
the reconstruction error, and timings against torch.stft / torch.istft on the same audio."""
from __future__ import annotations

import os
import statistics
import time


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "stft-roundtrip",
        help="STFT -> iSTFT of an audio file; prints reconstruction error and timings vs torch")
    p.add_argument("input", help="audio file to read (wav, flac, ogg, mp3...)")
    p.add_argument("-o", "--output", default=None,
                   help="where to write the reconstruction (default: <input stem>.roundtrip.wav "
                        "beside the input); never the input itself")
    p.add_argument("--n-fft", type=int, default=1024, help="FFT size in samples (default 1024)")
    p.add_argument("--hop", type=int, default=256, help="hop in samples (default 256)")
    p.add_argument("--backend", default=None, choices=("cpu", "cuda", "triton", "torch"),
                   help="force a backend (default: picked by device)")
    p.add_argument("--device", default="cpu", help="torch device for the audio (cpu, cuda)")
    p.add_argument("--repeats", type=int, default=5, help="timing repeats, median reported")
    p.set_defaults(func=run)


def _default_output(path: str) -> str:
    stem, _ = os.path.splitext(path)
    return stem + ".roundtrip.wav"


def _same_file(a: str, b: str) -> bool:
    if os.path.exists(a) and os.path.exists(b):
        return os.path.samefile(a, b)
    return os.path.realpath(a) == os.path.realpath(b)


def _median_ms(fn, repeats: int, sync) -> float:
    fn()
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def run(args) -> int:
    import torch

    from . import ops
    from .io.audio import load_audio, save_audio

    out_path = args.output or _default_output(args.input)
    if _same_file(args.input, out_path):
        raise ValueError(f"the output {out_path} is the input file; pass a different -o path "
                         "(the input is never overwritten)")
    if args.repeats < 1:
        raise ValueError(f"--repeats must be >= 1, got {args.repeats}")
    import sonicore
    # Same thread count for both sides of the comparison.
    torch.set_num_threads(sonicore.get_num_threads())
    audio, sr = load_audio(args.input)
    n_fft, hop = args.n_fft, args.hop
    if n_fft < 2 or not 1 <= hop <= n_fft // 2:
        raise ValueError(f"expected n_fft >= 2 and 1 <= hop <= n_fft / 2 (Hann overlap-add), "
                         f"got n_fft={n_fft}, hop={hop}")
    device = torch.device(args.device)
    x = torch.from_numpy(audio).to(device)
    w = torch.hann_window(n_fft, device=device)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)

    def ours():
        spec = ops.stft(x, n_fft, hop, window=w, backend=args.backend)
        return ops.istft(spec, n_fft, hop, window=w, length=x.shape[-1], backend=args.backend)

    def reference():
        spec = torch.stft(x, n_fft, hop, window=w, return_complex=True)
        return torch.istft(spec, n_fft, hop, window=w, length=x.shape[-1])

    y = ours()
    y_ref = reference()
    t_ours = _median_ms(ours, args.repeats, sync)
    t_ref = _median_ms(reference, args.repeats, sync)
    t_stft = _median_ms(lambda: ops.stft(x, n_fft, hop, window=w, backend=args.backend), args.repeats, sync)
    t_stft_ref = _median_ms(lambda: torch.stft(x, n_fft, hop, window=w, return_complex=True), args.repeats, sync)

    def rel(a, b):
        return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()

    seconds = audio.shape[1] / sr
    print(f"input      {args.input}: {audio.shape[0]} channel(s), {audio.shape[1]} samples, "
          f"{sr} Hz ({seconds:.2f} s)")
    print(f"stft       n_fft {n_fft}, hop {hop}, periodic Hann, centred reflect padding, device {device}, "
          f"{sonicore.get_num_threads()} thread(s) for sonicore and torch")
    print(f"error      sonicore: max abs {(y - x).abs().max().item():.3e}, relative L2 {rel(y, x):.3e}; "
          f"torch: relative L2 {rel(y_ref, x):.3e}")
    print(f"timing     stft+istft: sonicore {t_ours:.2f} ms, torch {t_ref:.2f} ms, ratio {t_ours / t_ref:.2f}")
    print(f"           stft only:  sonicore {t_stft:.2f} ms, torch {t_stft_ref:.2f} ms, ratio {t_stft / t_stft_ref:.2f}")
    save_audio(out_path, y.detach().cpu().numpy(), sr, subtype="FLOAT")
    print(f"wrote      {out_path} (32-bit float)")
    return 0
