"""Mel front ends: filterbanks (librosa's definition), mel / log-mel spectrograms, and the
exact feature extractors of Whisper and MMAudio.

Everything is built on sonicore.ops.stft (power / magnitude output, so the complex spectrum
is never materialised) followed by a sparse mel projection: each mel triangle touches only
the few FFT bins under it, so the fused C++ kernel (csrc/cpu/mel.cpp) projects, clamps and
takes the log in one pass instead of a dense matmul plus two elementwise passes.
"""
from __future__ import annotations

import functools
import math
import numbers
from typing import Optional

import numpy as np
import torch

from .._backend import records_grad
from ._arrays import from_torch, to_torch

__all__ = ["mel_filterbank", "mel", "log_mel", "whisper_log_mel", "mmaudio_mel"]

# ----------------------------------------------------------------------------------------
# Mel scales. Slaney's (the librosa default) is linear below 1 kHz and logarithmic above;
# HTK's is 2595 * log10(1 + f / 700) everywhere.
_SLANEY_F_SP = 200.0 / 3.0                 # Hz per mel in the linear part
_SLANEY_MIN_LOG_HZ = 1000.0
_SLANEY_MIN_LOG_MEL = _SLANEY_MIN_LOG_HZ / _SLANEY_F_SP
_SLANEY_LOGSTEP = math.log(6.4) / 27.0     # ln(6.4) spread over 27 mels


def _hz_to_mel(f: np.ndarray, htk: bool) -> np.ndarray:
    f = np.asarray(f, dtype=np.float64)
    if htk:
        return 2595.0 * np.log10(1.0 + f / 700.0)
    above = f >= _SLANEY_MIN_LOG_HZ
    safe = np.where(above, f, _SLANEY_MIN_LOG_HZ)
    return np.where(above, _SLANEY_MIN_LOG_MEL + np.log(safe / _SLANEY_MIN_LOG_HZ) / _SLANEY_LOGSTEP,
                    f / _SLANEY_F_SP)


def _mel_to_hz(m: np.ndarray, htk: bool) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    if htk:
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)
    return np.where(m >= _SLANEY_MIN_LOG_MEL,
                    _SLANEY_MIN_LOG_HZ * np.exp(_SLANEY_LOGSTEP * (m - _SLANEY_MIN_LOG_MEL)),
                    _SLANEY_F_SP * m)


def _check_positive_int(name: str, v) -> int:
    if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v <= 0:
        raise ValueError(f"{name} must be a positive integer, got {v!r}")
    return int(v)


def _check_norm(norm):
    if norm is None or norm == "slaney":
        return norm
    if isinstance(norm, str) or isinstance(norm, bool) or not isinstance(norm, numbers.Real):
        raise ValueError(f"norm must be None, 'slaney' or a number (p-norm: p > 0, 0, inf, -inf), got {norm!r}")
    if not (norm > 0 or norm == 0 or norm == -np.inf):
        raise ValueError(f"norm as a number must be > 0, 0, inf or -inf, got {norm!r}")
    return float(norm)


@functools.lru_cache(maxsize=64)
def _filterbank_f64(sr: float, n_fft: int, n_mels: int, fmin: float, fmax: float, htk: bool,
                    norm, dtype_name: str) -> np.ndarray:
    dtype = np.dtype(dtype_name)
    n_bins = n_fft // 2 + 1
    bin_hz = np.arange(n_bins, dtype=np.float64) * (sr / n_fft)
    # n_mels + 2 edges equally spaced in mel between fmin and fmax; filter i rises from
    # edge i to edge i+1 and falls to edge i+2.
    edges = _mel_to_hz(np.linspace(_hz_to_mel(fmin, htk), _hz_to_mel(fmax, htk), n_mels + 2), htk)
    width = np.diff(edges)
    dist = edges[:, None] - bin_hz[None, :]
    rise = -dist[:-2] / width[:-1, None]
    fall = dist[2:] / width[1:, None]
    # Stored in the requested dtype before normalising, as librosa does, so that float32
    # banks round the same way.
    w = np.maximum(0.0, np.minimum(rise, fall)).astype(dtype)
    if norm == "slaney":
        # Constant energy per channel: divide each triangle by its width in Hz (times 2).
        w = (w * (2.0 / (edges[2:] - edges[:-2]))[:, None]).astype(dtype)
    elif norm is not None:
        mag = np.abs(w).astype(np.float64)
        if norm == np.inf:
            length = mag.max(axis=1, keepdims=True)
        elif norm == -np.inf:
            length = mag.min(axis=1, keepdims=True)
        elif norm == 0:
            length = (mag > 0).sum(axis=1, keepdims=True).astype(np.float64)
        else:
            length = (mag ** norm).sum(axis=1, keepdims=True) ** (1.0 / norm)
        # Rows whose norm is below the dtype's smallest normal number (empty triangles)
        # stay as they are instead of turning into inf/nan.
        length[length < np.finfo(dtype).tiny] = 1.0
        w = (w / length).astype(dtype)
    return w


def mel_filterbank(sr: float, n_fft: int, n_mels: int = 128, fmin: float = 0.0,
                   fmax: Optional[float] = None, htk: bool = False, norm="slaney",
                   dtype=np.float32):
    """Mel filterbank, the same matrix as ``librosa.filters.mel``.

    Args:
        sr: sample rate in Hz.
        n_fft: FFT size in samples; the bank covers its n_fft // 2 + 1 one-sided bins.
        n_mels: number of mel bands.
        fmin, fmax: lowest / highest edge in Hz (fmax None: sr / 2).
        htk: HTK mel scale instead of Slaney's.
        norm: None (peak 1), "slaney" (divide each triangle by its bandwidth, constant
            energy per band) or a number p: each row divided by its p-norm (inf, -inf, 0 too).
        dtype: numpy dtype (returns a numpy array) or torch dtype (returns a CPU tensor).

    Returns:
        weights of shape (n_mels, n_fft // 2 + 1).
    """
    if isinstance(sr, bool) or not isinstance(sr, numbers.Real) or not sr > 0 or not math.isfinite(sr):
        raise ValueError(f"sr must be a positive sample rate in Hz, got {sr!r}")
    n_fft = _check_positive_int("n_fft", n_fft)
    n_mels = _check_positive_int("n_mels", n_mels)
    fmax = float(sr) / 2 if fmax is None else float(fmax)
    fmin = float(fmin)
    if not (0.0 <= fmin < fmax) or not math.isfinite(fmax):
        raise ValueError(f"expected 0 <= fmin < fmax, got fmin={fmin}, fmax={fmax}")
    norm = _check_norm(norm)
    torch_dtype = dtype if isinstance(dtype, torch.dtype) else None
    if torch_dtype is not None:
        if torch_dtype not in (torch.float32, torch.float64):
            raise TypeError(f"dtype must be float32 or float64, got {torch_dtype}")
        np_dtype = np.float32 if torch_dtype == torch.float32 else np.float64
    else:
        np_dtype = np.dtype(dtype)
        if np_dtype not in (np.float32, np.float64):
            raise TypeError(f"dtype must be float32 or float64, got {np_dtype}")
    w = _filterbank_f64(float(sr), n_fft, n_mels, fmin, fmax, bool(htk), norm, np.dtype(np_dtype).name)
    w = w.copy()  # the cache must not be mutated by callers
    return torch.from_numpy(w) if torch_dtype is not None else w


# ----------------------------------------------------------------------------------------
# Sparse projection

@functools.lru_cache(maxsize=64)
def _packed_bank(sr, n_fft, n_mels, fmin, fmax, htk, norm, dtype_name):
    """The bank as (dense (M, F) tensor, packed weights, offsets int64 (M+1,), bin_start int32 (M,)).

    Each row keeps its run from the first to the last non-zero bin (triangles are
    contiguous, so nothing inside the run is dropped)."""
    w = _filterbank_f64(sr, n_fft, n_mels, fmin, fmax, htk, norm, dtype_name)
    nz = w != 0
    any_nz = nz.any(axis=1)
    first = np.where(any_nz, nz.argmax(axis=1), 0)
    last = np.where(any_nz, w.shape[1] - 1 - nz[:, ::-1].argmax(axis=1), -1)
    lengths = np.where(any_nz, last - first + 1, 0)
    offsets = np.zeros(n_mels + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    packed = np.concatenate([w[m, first[m]:first[m] + lengths[m]] for m in range(n_mels)]) \
        if offsets[-1] > 0 else np.zeros(0, dtype=w.dtype)
    for a in (w, packed, offsets):
        a.setflags(write=False)
    return (torch.from_numpy(w.copy()), np.ascontiguousarray(packed, dtype=w.dtype), offsets,
            first.astype(np.int32))


_LOG_CODE = {None: 0, "ln": 1, "log10": 2}


def _project(spec: torch.Tensor, bank_key: tuple, log: Optional[str], floor: float,
             use_cpu_kernel: bool) -> torch.Tensor:
    """spec (B, F, T) real -> log(max(bank @ spec, floor)) of shape (B, M, T)."""
    dense, packed, offsets, bin_start = _packed_bank(*bank_key)
    if use_cpu_kernel:
        out = torch.empty(spec.shape[0], dense.shape[0], spec.shape[2], dtype=spec.dtype)
        from .._ext import C
        C.mel_project(spec.detach().numpy(), packed, offsets, bin_start, out.numpy(),
                      _LOG_CODE[log], float(floor))
        return out
    m = torch.matmul(dense.to(device=spec.device, dtype=spec.dtype), spec)
    if log is None:
        return m if floor <= 0 else torch.clamp(m, min=floor)
    m = torch.clamp(m, min=floor)
    return torch.log(m) if log == "ln" else torch.log10(m)


def _signal(x, name="audio"):
    t, was_numpy = to_torch(x, name)
    if t.is_complex() or t.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"{name} must be a real float32 or float64 signal, got {t.dtype}")
    if t.dim() not in (1, 2, 3):
        raise ValueError(f"{name} must have shape (samples,), (channels, samples) or "
                         f"(batch, channels, samples), got {tuple(t.shape)}")
    if t.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(t.shape)}); expected at least one sample")
    return t, was_numpy


def _projection_on_cpu(t: torch.Tensor, backend: Optional[str]) -> bool:
    """The fused C++ projection serves CPU data unless the torch reference is forced or autograd
    records the call (the kernel has no backward)."""
    return t.device.type == "cpu" and backend != "torch" and not records_grad(t)


@functools.lru_cache(maxsize=16)
def _hann(n: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    # Periodic Hann, the STFT convention of librosa, torch and Whisper; cached because a
    # fresh one per call costs a torch thread-pool round trip.
    return torch.hann_window(n, periodic=True, dtype=dtype, device=device)


def _window_for(window, win_length: int, t: torch.Tensor):
    if isinstance(window, str):
        if window != "hann":
            raise ValueError(f"window must be 'hann' or an array of win_length samples, got {window!r}")
        return _hann(win_length, t.dtype, t.device)
    return window


def _spectrogram(t, n_fft, hop_length, win_length, window, center, pad_mode, power, backend,
                 magnitude_eps=0.0):
    from .stft import stft as _stft
    if isinstance(power, bool) or not isinstance(power, numbers.Real) or not power > 0:
        raise ValueError(f"power must be a positive number (1: magnitude, 2: power), got {power!r}")
    win_length = n_fft if win_length is None else win_length
    w = _window_for(window, win_length if isinstance(win_length, int) else n_fft, t)
    output = "power" if power == 2 else "magnitude"
    s = _stft(t, n_fft, hop_length, win_length, w, center=center, pad_mode=pad_mode,
              output=output, magnitude_eps=magnitude_eps, backend=backend)
    if power not in (1, 2):
        s = s ** float(power)
    return s


def mel(x, sr: float, n_fft: int = 2048, hop_length: Optional[int] = 512,
        win_length: Optional[int] = None, window="hann", *, center: bool = True,
        pad_mode: str = "constant", power: float = 2.0, n_mels: int = 128, fmin: float = 0.0,
        fmax: Optional[float] = None, htk: bool = False, norm="slaney",
        backend: Optional[str] = None):
    """Mel spectrogram, the same numbers as ``librosa.feature.melspectrogram``.

    Args:
        x: real signal (S,), (C, S) or (B, C, S), float32 or float64 (numpy or torch).
        sr: sample rate in Hz.
        n_fft, hop_length, win_length: frame size, hop and window length in samples.
        window: "hann" (periodic) or a (win_length,) array.
        center, pad_mode: as for :func:`sonicore.ops.stft` (librosa pads with zeros).
        power: exponent of the magnitude (2: power spectrogram, 1: magnitude).
        n_mels, fmin, fmax, htk, norm: the filterbank, see :func:`mel_filterbank`.
        backend: forces the STFT backend ("cpu", "cuda", "triton", "torch"); "torch" also
            uses the dense torch projection (the reference).

    Returns:
        (..., n_mels, T) of x's dtype and kind; T frames as in :func:`sonicore.ops.stft`.
    """
    return _mel_impl(x, sr, n_fft, hop_length, win_length, window, center, pad_mode, power,
                     n_mels, fmin, fmax, htk, norm, backend, log=None, floor=0.0)


def log_mel(x, sr: float, n_fft: int = 2048, hop_length: Optional[int] = 512,
            win_length: Optional[int] = None, window="hann", *, center: bool = True,
            pad_mode: str = "constant", power: float = 2.0, n_mels: int = 128,
            fmin: float = 0.0, fmax: Optional[float] = None, htk: bool = False, norm="slaney",
            log: str = "ln", floor: float = 1e-10, backend: Optional[str] = None):
    """Log mel spectrogram: ``log(max(mel(x, ...), floor))`` in one fused pass.

    Args:
        as for :func:`mel`, plus
        log: "ln" (natural) or "log10".
        floor: lower clamp before the log (> 0).

    Returns:
        (..., n_mels, T) of x's dtype and kind.
    """
    if log not in ("ln", "log10"):
        raise ValueError(f"log must be 'ln' or 'log10', got {log!r}")
    floor = float(floor)
    if not floor > 0 or not math.isfinite(floor):
        raise ValueError(f"floor must be a positive finite number, got {floor}")
    return _mel_impl(x, sr, n_fft, hop_length, win_length, window, center, pad_mode, power,
                     n_mels, fmin, fmax, htk, norm, backend, log=log, floor=floor)


def _mel_impl(x, sr, n_fft, hop_length, win_length, window, center, pad_mode, power, n_mels,
              fmin, fmax, htk, norm, backend, log, floor, drop_last=False, magnitude_eps=0.0):
    t, was_numpy = _signal(x, "x")
    n_fft = _check_positive_int("n_fft", n_fft)
    n_mels = _check_positive_int("n_mels", n_mels)
    # Validates sr/fmin/fmax/norm with user-facing messages before any work.
    mel_filterbank(sr, n_fft, n_mels, fmin, fmax, htk, norm, dtype=np.float64)
    fmax_v = float(sr) / 2 if fmax is None else float(fmax)
    lead = tuple(t.shape[:-1])
    s = _spectrogram(t.reshape(-1, t.shape[-1]), n_fft, hop_length, win_length, window, center,
                     pad_mode, power, backend, magnitude_eps)
    if drop_last:
        s = s[..., :-1]
    key = (float(sr), n_fft, n_mels, float(fmin), fmax_v, bool(htk), _check_norm(norm),
           "float32" if t.dtype == torch.float32 else "float64")
    out = _project(s, key, log, floor, _projection_on_cpu(s, backend))
    out = out.reshape(*lead, *out.shape[-2:])
    return from_torch(out, was_numpy)


# ----------------------------------------------------------------------------------------
# Model front ends

_WHISPER_SR, _WHISPER_N_FFT, _WHISPER_HOP = 16000, 400, 160


def whisper_log_mel(audio, n_mels: int = 80, padding: int = 0, *, precision: Optional[str] = None,
                    backend: Optional[str] = None):
    """Whisper's log-mel features, equal to ``whisper.audio.log_mel_spectrogram``.

    16 kHz audio; n_fft 400, hop 160, periodic Hann, centred reflect padding, the last frame
    dropped, power spectrum, Slaney mel bank (ours, identical to Whisper's mel_filters.npz),
    log10 of max(mel, 1e-10), then clamped to (max - 8) and mapped by (x + 4) / 4.

    On CPU one fused C++ pass (csrc/cpu/mel.cpp, log_mel_spectrogram) frames, transforms,
    projects and takes the log per block of frames without a spectrogram in memory.
    precision="float32" (the default for float32 audio) computes as openai-whisper does
    (within 1e-5 of it wherever float32 can resolve the value, see docs/mel.md);
    precision="float64" computes in float64 and rounds the result, which makes it the float64
    truth (openai-whisper's own float32 result can be ~7e-5 off it on mel bands that hold one
    or two near-zero FFT bins). backend="torch" reproduces openai-whisper's torch.stft rounding.

    Args:
        audio: (S,) or (B, S) samples at 16 kHz, float32 or float64.
        n_mels: 80 or 128 (large-v3 / turbo).
        padding: zeros appended to the right of each item, in samples.
        precision: "float32" or "float64", the CPU path's arithmetic; None (default): audio's
            dtype. The result has audio's dtype either way. GPU and torch backends compute
            in audio's dtype.
        backend: forces the STFT backend ("cpu", "cuda", "triton", "torch").

    Returns:
        (n_mels, T) or (B, n_mels, T) with T = (S + padding) // 160, same kind as audio.
        With a batch the (max - 8) clamp is taken per item (Whisper called on each item).
    """
    if n_mels not in (80, 128):
        raise ValueError(f"n_mels must be 80 or 128 (Whisper's two front ends), got {n_mels!r}")
    if isinstance(padding, bool) or not isinstance(padding, numbers.Integral) or padding < 0:
        raise ValueError(f"padding must be a non-negative integer number of samples, got {padding!r}")
    if precision not in (None, "float32", "float64"):
        raise ValueError(f"precision must be None, 'float32' or 'float64', got {precision!r}")
    t, was_numpy = _signal(audio, "audio")
    if precision is None:
        precision = "float32" if t.dtype == torch.float32 else "float64"
    if t.dim() not in (1, 2):
        raise ValueError(f"audio must have shape (samples,) or (batch, samples), got {tuple(t.shape)}")
    if t.shape[-1] + padding <= _WHISPER_N_FFT // 2:
        raise ValueError(f"audio must have more than {_WHISPER_N_FFT // 2} samples (reflect padding), "
                         f"got {t.shape[-1] + padding}")
    if t.device.type == "cpu" and backend in (None, "cpu") and not records_grad(t):
        return from_torch(_whisper_log_mel_cpu(t, n_mels, int(padding), precision), was_numpy)
    if padding:
        t = torch.nn.functional.pad(t, (0, int(padding)))
    m = _mel_impl(t, _WHISPER_SR, _WHISPER_N_FFT, _WHISPER_HOP, None, "hann", True, "reflect", 2.0,
                  n_mels, 0.0, None, False, "slaney", backend, log="log10", floor=1e-10,
                  drop_last=True)
    m3 = m if m.dim() == 3 else m.unsqueeze(0)
    m3 = (torch.maximum(m3, m3.amax(dim=(-2, -1), keepdim=True) - 8.0) + 4.0) / 4.0
    out = m3 if m.dim() == 3 else m3[0]
    return from_torch(out, was_numpy)


@functools.lru_cache(maxsize=1)
def _whisper_window_f64() -> np.ndarray:
    return torch.hann_window(_WHISPER_N_FFT, periodic=True, dtype=torch.float32).numpy().astype(np.float64)


def _whisper_log_mel_cpu(t: torch.Tensor, n_mels: int, padding: int, precision: str) -> torch.Tensor:
    """The fused C++ path: (S,) or (B, S) CPU tensor -> (n_mels, T) or (B, n_mels, T), t's dtype.

    Only numpy views and one C++ call: each small torch op would cost a thread-pool round trip
    that is a sizeable part of a 30 s clip's few milliseconds."""
    from .._ext import C
    x = t.detach().numpy()
    x2 = x.reshape(1, -1) if x.ndim == 1 else x
    x2 = np.ascontiguousarray(x2, dtype=np.dtype(precision))  # no copy when it already is
    _, packed, offsets, bin_start = _packed_bank(float(_WHISPER_SR), _WHISPER_N_FFT, n_mels, 0.0,
                                                 _WHISPER_SR / 2.0, False, "slaney", precision)
    # Whisper's window is torch's float32 Hann; the float64 path takes exactly those values,
    # so that it computes Whisper's function of its actual inputs (near the window's ends a
    # float64 Hann differs from it by up to ~1e-4 relative, which shows on frames that hold
    # only the last few samples of a clip).
    window = _hann(_WHISPER_N_FFT, torch.float32, torch.device("cpu")).numpy()
    if precision == "float64":
        window = _whisper_window_f64()
    n_frames = (x2.shape[1] + padding) // _WHISPER_HOP  # torch.stft's count minus Whisper's dropped frame
    out = np.empty((x2.shape[0], n_mels, n_frames), dtype=x2.dtype)
    C.log_mel_spectrogram(x2, window, _WHISPER_N_FFT, _WHISPER_HOP, True, True, padding, n_frames, False,
                          packed, offsets, bin_start, out, _LOG_CODE["log10"], 1e-10, (8.0, 4.0, 0.25))
    if out.dtype != x.dtype:
        out = out.astype(x.dtype)
    out_t = torch.from_numpy(out)
    return out_t if t.dim() == 2 else out_t[0]


# mode -> (sample rate Hz, n_fft, hop, n_mels, fmax Hz, log); facts from MMAudio's mel
# converter (docs/mel.md): Slaney bank with Slaney norm, fmin 0, periodic Hann of n_fft.
_MMAUDIO = {
    "16k": (16000, 1024, 256, 80, 8000.0, "log10"),
    "44k": (44100, 2048, 512, 128, 22050.0, "ln"),
}


def mmaudio_mel(audio, mode: str = "16k", *, backend: Optional[str] = None):
    """MMAudio's mel front end (the VAE's input), mode "16k" or "44k".

    audio is clamped to [-1, 1], reflect-padded by (n_fft - hop) // 2 on both sides, framed
    with center=False and a periodic Hann window; magnitude sqrt(re^2 + im^2 + 1e-9); Slaney
    mel bank (fmin 0, fmax 8 kHz for 16k, 22.05 kHz for 44k); clamp at 1e-5; log10 (16k) or
    ln (44k).

    Args:
        audio: (S,), (C, S) or (B, C, S) samples at 16 kHz / 44.1 kHz, float32 or float64.
        mode: "16k" (n_fft 1024, hop 256, 80 bins) or "44k" (n_fft 2048, hop 512, 128 bins).
        backend: forces the STFT backend ("cpu", "cuda", "triton", "torch").

    Returns:
        (..., n_mels, T), T = 1 + (S + 2 * ((n_fft - hop) // 2) - n_fft) // hop, same kind as audio.
    """
    if mode not in _MMAUDIO:
        raise ValueError(f"mode must be '16k' or '44k', got {mode!r}")
    sr, n_fft, hop, n_mels, fmax, log = _MMAUDIO[mode]
    t, was_numpy = _signal(audio, "audio")
    pad = (n_fft - hop) // 2
    if t.shape[-1] <= pad:
        raise ValueError(f"audio must have more than {pad} samples for mode {mode!r} (reflect padding), "
                         f"got {t.shape[-1]}")
    lead = tuple(t.shape[:-1])
    t2 = torch.nn.functional.pad(t.reshape(-1, 1, t.shape[-1]).clamp(-1.0, 1.0), (pad, pad),
                                 mode="reflect")[:, 0]
    m = _mel_impl(t2, sr, n_fft, hop, None, "hann", False, "reflect", 1.0, n_mels, 0.0, fmax,
                  False, "slaney", backend, log=log, floor=1e-5, magnitude_eps=1e-9)
    return from_torch(m.reshape(*lead, *m.shape[-2:]), was_numpy)
