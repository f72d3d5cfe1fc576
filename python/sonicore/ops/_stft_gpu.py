"""GPU STFT / iSTFT: our fused memory passes around torch.fft (cuFFT on the device).

Called by sonicore.ops.stft / istft with backend "cuda" (csrc/cuda/stft_kernels.cu through
integer device pointers and torch's current stream) or "triton" (kernels/stft.py; also runs
on CPU tensors under TRITON_INTERPRET=1, which is how it is tested without a GPU).

The STFT moves the minimum bytes torch.stft does not: the signal is read once and written
once as windowed frames (padding and window applied on load), the FFT runs in place of
torch's own, and magnitude / power / log outputs are computed on store, transposed straight
into (B, F, T), without a complex (B, F, T) copy. The iSTFT gathers each output sample from
the frames covering it, applying the window and dividing by the window envelope in the same
pass (no scatter, no separate envelope tensor).
"""
from __future__ import annotations

import math
from typing import Optional

import torch

from .._backend import TRITON_OPTIONS

__all__ = ["stft", "istft"]

_PAD_CODE = {"constant": 0, "reflect": 1, "replicate": 2, "circular": 3}
_KIND_CODE = {"magnitude": 0, "power": 1, "log_magnitude": 2}
_OUTPUTS = ("complex", "magnitude", "power", "log_magnitude")
_NOLA = ("the window does not satisfy the overlap-add condition (NOLA): the summed squared "
         "window is below 1e-11 at some output sample; expected a window and hop whose "
         "overlapping squared windows are > 1e-11 everywhere (e.g. Hann with hop <= n_fft/2)")


def _check_common(t: torch.Tensor, window: torch.Tensor, n_fft: int, hop: int, what: str):
    if window.dim() != 1 or window.shape[0] != n_fft:
        raise ValueError(f"{what}: window must have shape ({n_fft},), got {tuple(window.shape)}")
    if window.device != t.device:
        raise ValueError(f"{what}: window is on {window.device} but the data is on {t.device}")
    if n_fft < 1 or hop < 1:
        raise ValueError(f"{what}: n_fft and hop must be >= 1, got n_fft={n_fft}, hop={hop}")


def _n_frames(n_samples: int, n_fft: int, hop: int, center: bool, pad_mode: str) -> int:
    pad = n_fft // 2 if center else 0
    if center and pad_mode == "reflect" and n_samples <= pad:
        raise ValueError(f"reflect padding needs more than n_fft // 2 = {pad} samples, got {n_samples}")
    if n_samples + 2 * pad < n_fft:
        raise ValueError(f"with center=False the signal must have at least n_fft = {n_fft} samples, "
                         f"got {n_samples}")
    return 1 + (n_samples + 2 * pad - n_fft) // hop


def _cuda():
    from .._ext import C
    if not getattr(C, "built_with_cuda", False) or not hasattr(C, "cuda_stft_frame"):
        raise ValueError("the cuda STFT backend needs sonicore built with CUDA (nvcc at build time)")
    return C


def _stream(t: torch.Tensor) -> int:
    return int(torch.cuda.current_stream(t.device).cuda_stream)


def _device_index(t: torch.Tensor) -> int:
    if t.device.type != "cuda":
        raise ValueError(f"the cuda backend needs CUDA tensors, got data on {t.device}")
    return t.device.index if t.device.index is not None else torch.cuda.current_device()


# Triton framing tiles (samples per program, frames per program, warps); None: the defaults.
# bench/gpu/tune.py sweeps them on a GPU.
FRAME_TILES = None


def _frame(x2: torch.Tensor, window: torch.Tensor, n_fft: int, hop: int, pad: int, pad_mode: str,
           scale: float, n_frames: int, backend: str) -> torch.Tensor:
    """(B, S) -> windowed frames (B, T, n_fft), padding and window applied on load."""
    batch, n_samples = x2.shape
    frames = torch.empty(batch, n_frames, n_fft, dtype=x2.dtype, device=x2.device)
    if backend == "cuda":
        C = _cuda()
        C.cuda_stft_frame(0 if x2.dtype == torch.float32 else 1, x2.data_ptr(), batch, n_samples,
                          x2.stride(0), window.data_ptr(), scale, frames.data_ptr(), n_frames, n_fft,
                          hop, pad, _PAD_CODE[pad_mode], _device_index(x2), _stream(x2))
    else:
        k = _triton()
        frame_pow2 = max(16, 1 << (n_fft - 1).bit_length())
        if FRAME_TILES:
            block, rows_per, warps = FRAME_TILES
            block = min(block, frame_pow2)
        else:
            # About 8192 samples per program, 16 per thread: at n_fft 4096 two whole frames on 16
            # warps, the fastest of eight tilings swept on an H100 (bench/gpu/tune.py): 1.44x
            # torch.stft against 1.18x for 1024-sample, one-frame programs.
            block = min(4096, frame_pow2)
            rows_per = max(1, min(8, 8192 // block))
            warps = max(4, min(16, block * rows_per // 512))
        grid = ((batch * n_frames + rows_per - 1) // rows_per, (n_fft + block - 1) // block)
        k.frame_kernel[grid](x2, window, frames, n_samples, x2.stride(0), batch * n_frames, n_frames, n_fft, hop,
                             pad, _scalars(x2, scale), PAD_MODE=_PAD_CODE[pad_mode], BLOCK=block,
                             FRAMES=rows_per, num_warps=warps, **TRITON_OPTIONS)
    return frames


def _scalars(like: torch.Tensor, *values: float) -> torch.Tensor:
    """Kernel scalars in the data's dtype (Triton would pass Python floats as float32)."""
    return torch.tensor(values, dtype=like.dtype, device=like.device)


def _triton():
    from .._backend import triton_kernels
    return triton_kernels("stft")


def stft(x2: torch.Tensor, window: torch.Tensor, n_fft: int, hop: int, center: bool, pad_mode: str,
         normalized: bool, onesided: bool, output: str, magnitude_eps: float, log_floor: float,
         backend: str) -> torch.Tensor:
    """STFT on the device, torch.stft semantics.

    Args:
        x2: (B, S) real float32/float64 signal (rows need unit stride; copied otherwise).
        window: (n_fft,) same dtype and device.
        n_fft, hop: frame size and hop in samples.
        center, pad_mode: pad n_fft // 2 on both sides with "reflect", "constant", "replicate"
            or "circular" padding (like torch.stft).
        normalized: scale by 1 / sqrt(n_fft) (folded into the window on load).
        onesided: n_fft // 2 + 1 bins, else n_fft.
        output: "complex" | "magnitude" | "power" | "log_magnitude" (ln).
        magnitude_eps: added under the square root; log_floor: magnitude clamp before the log.
        backend: "cuda" or "triton".

    Returns:
        (B, F, T): complex (a transposed view of a (B, T, F) buffer, as torch.stft returns it)
        or real, contiguous (B, F, T) for the fused outputs.
    """
    if backend not in ("cuda", "triton"):
        raise ValueError(f"backend must be 'cuda' or 'triton', got {backend!r}")
    if output not in _OUTPUTS:
        raise ValueError(f"output must be one of {_OUTPUTS}, got {output!r}")
    if pad_mode not in _PAD_CODE:
        raise ValueError(f"pad_mode must be one of {tuple(_PAD_CODE)}, got {pad_mode!r}")
    if x2.dim() != 2 or x2.dtype not in (torch.float32, torch.float64) or x2.numel() == 0:
        raise ValueError(f"x must be a non-empty (B, S) float32/float64 tensor, got {tuple(x2.shape)} {x2.dtype}")
    if window.dtype != x2.dtype:
        raise TypeError(f"window dtype {window.dtype} differs from the signal's {x2.dtype}")
    _check_common(x2, window, n_fft, hop, "stft")
    if x2.stride(1) != 1:
        x2 = x2.contiguous()
    window = window.contiguous()
    n_frames = _n_frames(x2.shape[1], n_fft, hop, center, pad_mode)
    pad = n_fft // 2 if center else 0
    scale = 1.0 / math.sqrt(n_fft) if normalized else 1.0
    frames = _frame(x2, window, n_fft, hop, pad, pad_mode, scale, n_frames, backend)
    spec = torch.fft.rfft(frames, dim=-1) if onesided else torch.fft.fft(frames, dim=-1)
    del frames
    if output == "complex":
        return spec.transpose(1, 2)
    batch, _, n_bins = spec.shape
    out = torch.empty(batch, n_bins, n_frames, dtype=x2.dtype, device=x2.device)
    sv = torch.view_as_real(spec)  # (B, T, F, 2), contiguous
    if backend == "cuda":
        C = _cuda()
        C.cuda_stft_spectrum_out(0 if x2.dtype == torch.float32 else 1, sv.data_ptr(), batch, n_frames,
                                 n_bins, out.data_ptr(), _KIND_CODE[output], float(magnitude_eps),
                                 float(log_floor), _device_index(x2), _stream(x2))
    else:
        k = _triton()
        bt, bf = 32, 32
        grid = ((n_frames + bt - 1) // bt, (n_bins + bf - 1) // bf, batch)
        k.spectrum_kernel[grid](sv, out, n_frames, n_bins, _scalars(out, magnitude_eps, log_floor),
                                KIND=_KIND_CODE[output], BLOCK_T=bt, BLOCK_F=bf, **TRITON_OPTIONS)
    return out


def istft(spec: torch.Tensor, window: torch.Tensor, n_fft: int, hop: int, center: bool,
          normalized: bool, onesided: bool, length: Optional[int], backend: str) -> torch.Tensor:
    """Inverse STFT on the device, torch.istft semantics (real output).

    Args:
        spec: (B, F, T) complex64/complex128; F = n_fft // 2 + 1 (onesided) or n_fft (then only
            the first n_fft // 2 + 1 bins are used, as torch.istft does for a real output).
        window: (n_fft,) real, the spec's real dtype, same device.
        n_fft, hop, center, normalized: as for :func:`stft`.
        length: output samples (trimmed or zero-padded); None: n_fft + hop * (T - 1) - 2 * (n_fft // 2) * center.
        backend: "cuda" or "triton".

    Returns:
        (B, L) real signal.

    Raises:
        ValueError when the summed squared window is below 1e-11 at an output sample (NOLA).
    """
    if backend not in ("cuda", "triton"):
        raise ValueError(f"backend must be 'cuda' or 'triton', got {backend!r}")
    if spec.dim() != 3 or spec.dtype not in (torch.complex64, torch.complex128) or spec.numel() == 0:
        raise ValueError(f"spec must be a non-empty (B, F, T) complex64/complex128 tensor, got "
                         f"{tuple(spec.shape)} {spec.dtype}")
    real = torch.float32 if spec.dtype == torch.complex64 else torch.float64
    if window.dtype != real:
        raise TypeError(f"window dtype {window.dtype} differs from the spectrum's real dtype {real}")
    _check_common(spec, window, n_fft, hop, "istft")
    n_half = n_fft // 2 + 1
    expected = n_half if onesided else n_fft
    if spec.shape[1] != expected:
        raise ValueError(f"spec has {spec.shape[1]} bins; expected {expected} for n_fft={n_fft}, onesided={onesided}")
    if hop > n_fft:
        raise ValueError(f"hop ({hop}) must be <= n_fft ({n_fft}) for the inverse")
    batch, _, n_frames = spec.shape
    start = n_fft // 2 if center else 0
    total = n_fft + hop * (n_frames - 1)
    n_out = length if length is not None else total - 2 * start
    if n_out <= 0:
        raise ValueError(f"{n_frames} frame(s) give no output samples after removing the centre padding")
    # irfft uses the first n_fft // 2 + 1 bins of a two-sided spectrum, as torch.istft does.
    frames = torch.fft.irfft(spec[:, :n_half].transpose(1, 2), n=n_fft, dim=-1).contiguous()
    scale = math.sqrt(n_fft) if normalized else 1.0
    window = window.contiguous()
    out = torch.empty(batch, n_out, dtype=real, device=spec.device)
    flag = torch.zeros(1, dtype=torch.int32, device=spec.device)
    if backend == "cuda":
        C = _cuda()
        C.cuda_istft_overlap_add(0 if real == torch.float32 else 1, frames.data_ptr(), window.data_ptr(),
                                 batch, n_frames, n_fft, hop, start, n_out, scale, out.data_ptr(),
                                 flag.data_ptr(), _device_index(spec), _stream(spec))
    else:
        k = _triton()
        block = 256
        grid = ((n_out + block - 1) // block, batch)
        k.overlap_add_kernel[grid](frames, window, out, flag, n_frames, n_fft, hop, start, n_out,
                                   _scalars(out, scale), BLOCK=block, **TRITON_OPTIONS)
    # One device->host sync, as torch.istft does for the same check.
    if int(flag.item()) != 0:
        raise ValueError(_NOLA)
    return out
