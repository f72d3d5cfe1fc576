"""Short-time Fourier transforms: batch STFT / iSTFT, streaming STFT / iSTFT, real FFT.

Semantics follow torch.stft / torch.istft (same frames, same bins, same scaling). Backends:

- ``"cpu"``: sonicore's C++ kernels (our own mixed-radix real FFT, window applied on load,
  fused magnitude / power / log-magnitude outputs, fused overlap-add + envelope division).
- ``"cuda"`` / ``"triton"``: the GPU kernels in :mod:`sonicore.ops._stft_gpu`.
- ``"torch"``: plain torch.stft / torch.istft, the reference every other backend is tested against.

Input policy (every backend): float32 or float64 signals; non-contiguous tensors and
negative-stride numpy arrays are copied to a contiguous buffer first (never an error);
NaN / Inf in the signal propagate into the frames that contain them, like torch.stft
(never a crash, never a check that would cost a pass over the data).
"""
from __future__ import annotations

import functools
import importlib
import importlib.util
from typing import Optional, Tuple, TypeVar

import numpy as np
import torch

from .._backend import BackendUnavailable, device_reasons, select_backend
from .._ext import C
from ._arrays import cpu_view, from_torch, to_torch

__all__ = ["stft", "istft", "StreamingSTFT", "StreamingISTFT", "rfft", "irfft"]

OUTPUTS = ("complex", "magnitude", "power", "log_magnitude")
PAD_MODES = ("reflect", "constant")
_TORCH_PAD_MODES = ("replicate", "circular")  # torch.stft's other modes: torch backend only
_OUTPUT_CODE = {name: i for i, name in enumerate(OUTPUTS)}
_PAD_CODE = {name: i for i, name in enumerate(PAD_MODES)}
_FLOAT = (torch.float32, torch.float64)


# ----------------------------------------------------------------------------- validation

def _check_int(value, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _signal(x, name: str = "x") -> Tuple[torch.Tensor, bool, Tuple[int, ...]]:
    """(contiguous (B, S) tensor, came_from_numpy, leading shape) for a signal of shape
    (S,), (C, S) or (B, C, S)."""
    t, was_numpy = to_torch(x, name)
    if t.is_complex():
        raise TypeError(f"{name} must be a real float32 or float64 signal, got {t.dtype}; "
                        "complex signals are supported by torch.stft directly")
    if t.dtype not in _FLOAT:
        raise TypeError(f"{name} must be float32 or float64, got {t.dtype}")
    if t.dim() not in (1, 2, 3):
        raise ValueError(f"{name} must have shape (samples,), (channels, samples) or "
                         f"(batch, channels, samples), got {tuple(t.shape)}")
    if t.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(t.shape)}); expected at least one sample")
    lead = tuple(t.shape[:-1])
    return t.reshape(-1, t.shape[-1]).contiguous(), was_numpy, lead


def _window(window, n_fft: int, win_length: int, like: torch.Tensor) -> torch.Tensor:
    """The (n_fft,) window in the signal's dtype, zero-padded centred like torch.stft."""
    if window is None:
        # torch.stft's default: a rectangular window of win_length ones.
        w = torch.ones(win_length, dtype=like.dtype, device=like.device)
    else:
        w, _ = to_torch(window, "window")
        if w.dim() != 1:
            raise ValueError(f"window must be 1-D of length win_length={win_length}, "
                             f"got shape {tuple(w.shape)}")
        if w.shape[0] != win_length:
            raise ValueError(f"window has {w.shape[0]} samples but win_length is {win_length}; "
                             "expected len(window) == win_length (win_length defaults to n_fft)")
        if not w.is_floating_point() or w.is_complex():
            raise TypeError(f"window must be a real floating-point array, got {w.dtype}")
        if w.device != like.device:
            raise ValueError(f"window is on {w.device} but the signal is on {like.device}; "
                             "expected both on the same device")
        w = w.to(like.dtype).contiguous()
    if win_length < n_fft:
        left = (n_fft - win_length) // 2
        w = torch.nn.functional.pad(w, (left, n_fft - win_length - left))
    return w.contiguous()


def _frame_params(n_fft, hop_length, win_length):
    n_fft = _check_int(n_fft, "n_fft", 1)
    hop = n_fft // 4 if hop_length is None else _check_int(hop_length, "hop_length", 1)
    if hop < 1:
        raise ValueError(f"hop_length must be >= 1 (n_fft // 4 = 0 for n_fft={n_fft}); pass hop_length")
    win = n_fft if win_length is None else _check_int(win_length, "win_length", 1)
    if win > n_fft:
        raise ValueError(f"win_length ({win}) must be <= n_fft ({n_fft})")
    return n_fft, hop, win


def _num_frames(samples: int, n_fft: int, hop: int, center: bool, pad_mode: str) -> int:
    if center:
        pad = n_fft // 2
        if pad_mode == "reflect" and samples <= pad:
            raise ValueError(f"reflect padding needs more than n_fft // 2 = {pad} samples, got "
                             f"{samples}; pass a longer signal or pad_mode='constant'")
        samples += 2 * pad
    elif samples < n_fft:
        raise ValueError(f"with center=False the signal must have at least n_fft = {n_fft} "
                         f"samples, got {samples}")
    return 1 + (samples - n_fft) // hop


def _gpu_module():
    try:
        return importlib.import_module("sonicore.ops._stft_gpu")
    except ModuleNotFoundError as exc:
        if exc.name != "sonicore.ops._stft_gpu":
            raise
        raise BackendUnavailable("the GPU STFT module sonicore.ops._stft_gpu is not part of "
                                 "this build (the cuda/triton STFT backends are missing)") from exc


@functools.lru_cache(maxsize=None)
def _gpu_missing() -> Optional[str]:
    if importlib.util.find_spec("sonicore.ops._stft_gpu") is None:
        return "the GPU STFT module sonicore.ops._stft_gpu is not part of this build"
    return None


def _reasons(device_type: str, n_fft: int) -> dict:
    """Which backend can take an STFT call on data of this device (None) and why not (text)."""
    reasons = device_reasons(device_type)
    reasons["cpu"] = _cpu_reason(device_type, n_fft)
    missing = _gpu_missing()
    for name in ("cuda", "triton"):
        if reasons[name] is None and missing:
            reasons[name] = missing
    return reasons


def _cpu_reason(device_type: str, n_fft: int) -> Optional[str]:
    if device_type != "cpu":
        return f"the data is on {device_type}, the C++ kernel needs CPU memory"
    if not hasattr(C, "stft_forward"):
        return "this build of sonicore._C has no STFT kernels"
    if n_fft % 2:
        return f"the C++ real FFT needs an even size, got {n_fft}"
    why = C.fft_size_error(n_fft)
    return why or None


# ----------------------------------------------------------------------------- stft

def stft(x, n_fft: int, hop_length: Optional[int] = None, win_length: Optional[int] = None,
         window=None, *, center: bool = True, pad_mode: str = "reflect", normalized: bool = False,
         onesided: Optional[bool] = None, return_complex: bool = True, output: str = "complex",
         magnitude_eps: float = 0.0, log_floor: float = 1e-10, backend: Optional[str] = None):
    """Short-time Fourier transform with torch.stft semantics.

    Args:
        x: real signal, shape (S,), (C, S) or (B, C, S), float32 or float64, samples.
        n_fft: FFT size in samples (frame length).
        hop_length: samples between frame starts; default n_fft // 4.
        win_length: window length in samples (<= n_fft); default n_fft. Shorter windows are
            zero-padded on both sides to n_fft (centred), like torch.stft.
        window: (win_length,) real array; None means rectangular (all ones), torch's default.
        center: pad n_fft // 2 samples on both sides so frame t is centred on sample t * hop.
        pad_mode: "reflect" or "constant" (zeros) padding when center is True ("replicate" and
            "circular" are passed to torch.stft: torch backend only).
        normalized: scale the spectrum by 1 / sqrt(n_fft).
        onesided: return n_fft // 2 + 1 bins (default True for real input) or all n_fft bins.
        return_complex: complex (..., F, T) output, or real (..., F, T, 2) (re, im) when False.
        output: "complex" (the spectrum), or fused without a complex intermediate:
            "magnitude" sqrt(re^2 + im^2 + magnitude_eps), "power" re^2 + im^2,
            "log_magnitude" ln(max(magnitude, log_floor)). Non-complex outputs are real (..., F, T).
        magnitude_eps: added under the square root of "magnitude" / "log_magnitude".
        log_floor: lower clamp of the magnitude before the log in "log_magnitude".
        backend: "cpu", "cuda", "triton" or "torch"; None picks by device.

    Returns:
        Same kind as x (numpy or torch), shape (..., F, T) with F = n_fft // 2 + 1 (onesided)
        or n_fft and T = 1 + (S + 2 * (n_fft // 2) * center - n_fft) // hop frames. The result
        is a transposed view of a (..., T, F) buffer, as torch.stft returns it.
    """
    n_fft, hop, win = _frame_params(n_fft, hop_length, win_length)
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
    if pad_mode not in PAD_MODES + _TORCH_PAD_MODES:
        raise ValueError(f"pad_mode must be one of {PAD_MODES + _TORCH_PAD_MODES}, got {pad_mode!r}")
    if not return_complex and output != "complex":
        raise ValueError("return_complex=False only applies to output='complex'")
    magnitude_eps = float(magnitude_eps)
    log_floor = float(log_floor)
    if not magnitude_eps >= 0.0:
        raise ValueError(f"magnitude_eps must be >= 0, got {magnitude_eps}")
    if not log_floor > 0.0:
        raise ValueError(f"log_floor must be > 0, got {log_floor}")
    onesided = True if onesided is None else bool(onesided)
    x2, was_numpy, lead = _signal(x)
    w = _window(window, n_fft, win, x2)
    n_frames = _num_frames(x2.shape[-1], n_fft, hop, center, pad_mode)
    n_bins = n_fft // 2 + 1 if onesided else n_fft

    reasons = _reasons(x2.device.type, n_fft)
    if center and pad_mode in _TORCH_PAD_MODES:
        for k in ("cpu", "cuda", "triton"):
            if reasons[k] is None:
                reasons[k] = f"pad_mode={pad_mode!r} is computed by the torch backend only"
    name = select_backend("stft", x2.device.type, backend, reasons, inputs=(x2, w))
    if name == "torch":
        out = _stft_torch(x2, w, n_fft, hop, center, pad_mode, normalized, onesided, output,
                          magnitude_eps, log_floor)
    elif name == "cpu":
        out = _stft_cpu(x2, w, n_fft, hop, n_frames, n_bins, center, pad_mode, normalized,
                        onesided, output, magnitude_eps, log_floor)
    else:
        out = _gpu_module().stft(x2, w, n_fft, hop, center, pad_mode, normalized, onesided,
                                 output, magnitude_eps, log_floor, name)
    if output == "complex" and not return_complex:
        out = torch.view_as_real(out)
        out = out.reshape(*lead, *out.shape[1:])
    else:
        out = out.reshape(*lead, *out.shape[1:])
    return from_torch(out, was_numpy)


def _stft_torch(x2, w, n_fft, hop, center, pad_mode, normalized, onesided, output, eps, floor):
    spec = torch.stft(x2, n_fft, hop, n_fft, w, center=center, pad_mode=pad_mode,
                      normalized=normalized, onesided=onesided, return_complex=True)
    if output == "complex":
        return spec
    power = spec.real.square() + spec.imag.square()
    if output == "power":
        return power
    mag = torch.sqrt(power + eps)
    if output == "magnitude":
        return mag
    return torch.log(torch.clamp(mag, min=floor))


def _empty(shape, dtype: torch.dtype) -> torch.Tensor:
    """An uninitialised CPU tensor; large ones come huge-page advised from the C++ side (their
    first-touch page faults would otherwise cost as much as the transform)."""
    count = 1
    for s in shape:
        count *= int(s)
    nbytes = count * torch.empty(0, dtype=dtype).element_size()
    if nbytes < (4 << 20):
        return torch.empty(*shape, dtype=dtype)
    raw = torch.from_numpy(C.alloc_output(nbytes))
    return raw.view(dtype).reshape(shape)


def _stft_cpu(x2, w, n_fft, hop, n_frames, n_bins, center, pad_mode, normalized, onesided,
              output, eps, floor):
    batch = x2.shape[0]
    if output == "complex":
        buf = _empty((batch, n_frames, n_bins), torch.complex64 if x2.dtype == torch.float32
                     else torch.complex128)
        target = torch.view_as_real(buf)
    else:
        buf = _empty((batch, n_frames, n_bins), x2.dtype)
        target = buf
    C.stft_forward(cpu_view(x2), cpu_view(w), n_fft, hop, bool(center), _PAD_CODE[pad_mode],
                   bool(normalized), bool(onesided), _OUTPUT_CODE[output], eps, floor,
                   cpu_view(target))
    return buf.transpose(1, 2)


# ----------------------------------------------------------------------------- istft

def _spectrum(spec, name: str = "spec"):
    t, was_numpy = to_torch(spec, name)
    if not t.is_complex():
        raise TypeError(f"{name} must be a complex array of shape (..., F, T), got {t.dtype}; "
                        "for a (..., F, T, 2) real array use torch.view_as_complex first")
    if t.dtype not in (torch.complex64, torch.complex128):
        raise TypeError(f"{name} must be complex64 or complex128, got {t.dtype}")
    if t.dim() not in (2, 3, 4):
        raise ValueError(f"{name} must have shape (F, T), (C, F, T) or (B, C, F, T), "
                         f"got {tuple(t.shape)}")
    if t.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(t.shape)}); expected at least one frame")
    lead = tuple(t.shape[:-2])
    # a lazily conjugated tensor (x.conj()) has no real view until resolved
    return t.resolve_conj().reshape(-1, *t.shape[-2:]), was_numpy, lead


def istft(spec, n_fft: int, hop_length: Optional[int] = None, win_length: Optional[int] = None,
          window=None, *, center: bool = True, normalized: bool = False,
          onesided: Optional[bool] = None, length: Optional[int] = None,
          return_complex: bool = False, backend: Optional[str] = None):
    """Inverse STFT with torch.istft semantics: inverse FFT per frame, window, overlap-add,
    division by the summed squared window (fused in one pass on the cpu backend).

    Args:
        spec: complex spectrum (F, T), (C, F, T) or (B, C, F, T); F = n_fft // 2 + 1 when
            onesided, n_fft otherwise (then only the first n_fft // 2 + 1 bins are used, as
            torch.istft does for a real output).
        n_fft, hop_length, win_length, window, center, normalized: as for :func:`stft`.
        onesided: default: True when F == n_fft // 2 + 1.
        length: trim or zero-pad the output to this many samples.
        return_complex: a complex signal (only the torch backend computes that).
        backend: "cpu", "cuda", "triton" or "torch"; None picks by device.

    Returns:
        Real signal (..., L) of the spec's real dtype, same kind (numpy/torch) as spec;
        L = length or n_fft + hop * (T - 1) - 2 * (n_fft // 2) * center.

    Raises:
        ValueError when the window does not satisfy the overlap-add (NOLA) condition: the
        summed squared window must be > 1e-11 over every output sample.
    """
    n_fft, hop, win = _frame_params(n_fft, hop_length, win_length)
    s3, was_numpy, lead = _spectrum(spec)
    n_bins, n_frames = s3.shape[-2], s3.shape[-1]
    if onesided is None:
        onesided = n_bins != n_fft
    expected = n_fft // 2 + 1 if onesided else n_fft
    if n_bins != expected:
        raise ValueError(f"spec has {n_bins} frequency bins; expected {expected} for n_fft={n_fft} "
                         f"with onesided={onesided}")
    if length is not None:
        length = _check_int(length, "length", 1)
    real_dtype = torch.float32 if s3.dtype == torch.complex64 else torch.float64
    w = _window(window, n_fft, win, torch.empty(0, dtype=real_dtype, device=s3.device))
    full = n_fft + hop * (n_frames - 1)
    trim = n_fft // 2 if center else 0
    if length is None and full - 2 * trim <= 0:
        raise ValueError(f"{n_frames} frame(s) of n_fft={n_fft} with hop {hop} give no samples "
                         "after removing the centre padding; expected more frames")
    if hop > n_fft:
        raise ValueError(f"hop_length ({hop}) must be <= n_fft ({n_fft}) for the inverse: "
                         "samples between frames could not be reconstructed")

    reasons = _reasons(s3.device.type, n_fft)
    if return_complex:
        for k in ("cpu", "cuda", "triton"):
            if reasons[k] is None:
                reasons[k] = "a complex output (return_complex=True) is computed by torch only"
    name = select_backend("istft", s3.device.type, backend, reasons, inputs=(s3, w))
    if name == "torch":
        try:
            out = torch.istft(s3, n_fft, hop, n_fft, w, center=center, normalized=normalized,
                              onesided=onesided, length=length, return_complex=return_complex)
        except RuntimeError as exc:
            if "overlap" in str(exc).lower() or "nola" in str(exc).lower():
                raise ValueError(_NOLA_MESSAGE) from exc
            raise
    elif name == "cpu":
        out = _istft_cpu(s3, w, n_fft, hop, center, normalized, length, trim, full)
    else:
        out = _gpu_module().istft(s3, w, n_fft, hop, center, normalized, onesided, length, name)
    out = out.reshape(*lead, out.shape[-1])
    return from_torch(out, was_numpy)


_NOLA_MESSAGE = ("the window does not satisfy the overlap-add condition (NOLA): the summed "
                 "squared window is ~0 at some output sample; expected a window and hop whose "
                 "overlapping squared windows are > 1e-11 everywhere (e.g. Hann with hop <= n_fft/2)")


def _istft_cpu(s3, w, n_fft, hop, center, normalized, length, trim, full):
    batch = s3.shape[0]
    n_out = length if length is not None else full - 2 * trim
    real_dtype = torch.float32 if s3.dtype == torch.complex64 else torch.float64
    out = _empty((batch, n_out), real_dtype)
    # (B, F, T, 2) real view with any strides; the kernel reads bins with their stride.
    C.istft_forward(cpu_view(torch.view_as_real(s3)), cpu_view(w), n_fft, hop, bool(center),
                    bool(normalized), cpu_view(out))
    return out


# ----------------------------------------------------------------------------- rfft

def rfft(x, *, backend: Optional[str] = None):
    """Real FFT along the last axis (numpy.fft.rfft semantics, no scaling).

    Args:
        x: real (..., n) float32 or float64 array; the C++ FFT takes even n (any factors;
            2, 3, 5 are fastest), odd n goes to torch.fft.
    Returns:
        complex (..., n // 2 + 1) of the matching precision, same kind as x.
    """
    t, was_numpy = to_torch(x, "x")
    if t.dtype not in _FLOAT:
        raise TypeError(f"x must be float32 or float64, got {t.dtype}")
    if t.dim() == 0 or t.shape[-1] == 0:
        raise ValueError(f"x must have at least one sample on its last axis, got shape {tuple(t.shape)}")
    n = t.shape[-1]
    reasons = device_reasons(t.device.type, ("cpu", "torch"))
    reasons["cpu"] = _cpu_reason(t.device.type, n)
    name = select_backend("rfft", t.device.type, backend, reasons, inputs=(t,))
    if name == "torch":
        return from_torch(torch.fft.rfft(t), was_numpy)
    t2 = t.reshape(-1, n).contiguous()
    out = torch.empty(t2.shape[0], n // 2 + 1,
                      dtype=torch.complex64 if t.dtype == torch.float32 else torch.complex128)
    C.rfft(cpu_view(t2), cpu_view(torch.view_as_real(out)))
    return from_torch(out.reshape(*t.shape[:-1], n // 2 + 1), was_numpy)


def irfft(spec, n: Optional[int] = None, *, backend: Optional[str] = None):
    """Inverse real FFT along the last axis (numpy.fft.irfft semantics, scaled by 1/n).

    Args:
        spec: complex (..., n // 2 + 1) array.
        n: output length; default 2 * (F - 1). Extra bins are ignored, missing ones are zero.
    Returns:
        real (..., n) of the matching precision, same kind as spec.
    """
    t, was_numpy = to_torch(spec, "spec")
    if t.dtype not in (torch.complex64, torch.complex128):
        raise TypeError(f"spec must be complex64 or complex128, got {t.dtype}")
    if t.dim() == 0 or t.shape[-1] == 0:
        raise ValueError(f"spec must have at least one bin on its last axis, got shape {tuple(t.shape)}")
    n = 2 * (t.shape[-1] - 1) if n is None else _check_int(n, "n", 1)
    if n < 1:
        raise ValueError("spec with one bin needs an explicit output length n")
    reasons = device_reasons(t.device.type, ("cpu", "torch"))
    reasons["cpu"] = _cpu_reason(t.device.type, n)
    name = select_backend("irfft", t.device.type, backend, reasons, inputs=(t,))
    if name == "torch":
        return from_torch(torch.fft.irfft(t, n=n), was_numpy)
    bins = n // 2 + 1
    f = t.shape[-1]
    t2 = t.reshape(-1, f)
    if f >= bins:
        t2 = t2[:, :bins]
    else:
        t2 = torch.nn.functional.pad(t2, (0, bins - f))
    t2 = t2.contiguous()
    real_dtype = torch.float32 if t.dtype == torch.complex64 else torch.float64
    out = torch.empty(t2.shape[0], n, dtype=real_dtype)
    C.irfft(cpu_view(torch.view_as_real(t2)), cpu_view(out))
    return from_torch(out.reshape(*t.shape[:-1], n), was_numpy)


# ----------------------------------------------------------------------------- streaming

_Stream = TypeVar("_Stream", bound="_CppStream")


class _CppStream:
    """What StreamingSTFT and StreamingISTFT share: the C++ stream ``_s``, the sample dtype
    ``_dtype`` and whether results are torch tensors (``_as_torch``, from the window)."""

    def _set_kind(self, dtype, window) -> torch.Tensor:
        """Checks and sets the dtype and result kind; returns an empty tensor of the dtype."""
        dt = np.dtype(dtype)
        if dt not in (np.float32, np.float64):
            raise TypeError(f"dtype must be float32 or float64, got {dt}")
        self._dtype = dt
        self._as_torch = isinstance(window, torch.Tensor)
        return torch.empty(0, dtype=torch.float32 if dt == np.float32 else torch.float64)

    def reset(self):
        """Forgets everything pushed so far."""
        self._s.reset()

    def copy(self: _Stream) -> _Stream:
        """An independent stream with the same state (pushes to one do not affect the other)."""
        twin = object.__new__(type(self))
        twin.__dict__.update(self.__dict__)
        twin._s = self._s.copy()
        return twin


class StreamingSTFT(_CppStream):
    """Frames of a signal that arrives in pieces; equal to one :func:`stft` call on the whole.

    ``push(samples)`` returns every frame completed so far, ``flush()`` the frames that need
    the end of the signal (right padding). Feeding any chunking gives the batch frames
    bitwise (float32 and float64, C++ backend). The state lives in C++ (sonicore::StftStream).

    Latency: ``latency`` = n_fft // 2 samples: the frame centred on sample c (center=True;
    for center=False frame t starts at t * hop) is returned by the push that delivers sample
    c + n_fft // 2 - 1, i.e. once its last sample has arrived. (With reflect padding frame 0
    also needs sample n_fft // 2.)

    Args:
        n_fft, hop_length, window, center, pad_mode, normalized, onesided, output,
        magnitude_eps, log_floor: as for :func:`stft`; window is (win_length,) or None.
        dtype: "float32" or "float64" (numpy dtype of samples and frames).
    """

    def __init__(self, n_fft: int, hop_length: Optional[int] = None, window=None, *,
                 win_length: Optional[int] = None, center: bool = True,
                 pad_mode: str = "reflect", normalized: bool = False,
                 onesided: Optional[bool] = None, output: str = "complex",
                 magnitude_eps: float = 0.0, log_floor: float = 1e-10, dtype="float32"):
        n_fft, hop, win = _frame_params(n_fft, hop_length, win_length)
        if n_fft % 2:
            raise ValueError(f"StreamingSTFT needs an even n_fft, got {n_fft}")
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
        if pad_mode not in PAD_MODES:
            raise ValueError(f"pad_mode must be one of {PAD_MODES}, got {pad_mode!r}")
        like = self._set_kind(dtype, window)
        if isinstance(window, torch.Tensor) and window.device.type != "cpu":
            raise ValueError("StreamingSTFT runs on the CPU; expected a CPU window")
        w = _window(window, n_fft, win, like)
        onesided = True if onesided is None else bool(onesided)
        self._output = output
        self.n_fft, self.hop_length = n_fft, hop
        cls = C.StftStream32 if self._dtype == np.float32 else C.StftStream64
        self._s = cls(cpu_view(w).copy(), n_fft, hop, bool(center), _PAD_CODE[pad_mode],
                      bool(normalized), bool(onesided), _OUTPUT_CODE[output],
                      float(magnitude_eps), float(log_floor))

    @property
    def latency(self) -> int:
        """Algorithmic latency in samples (see the class docstring)."""
        return self.n_fft // 2

    @property
    def num_bins(self) -> int:
        return self._s.num_bins

    def _wrap(self, frames: np.ndarray, as_torch: bool):
        # frames come as (k, F[, 2]); the public layout is (F, k) like stft's (..., F, T).
        if self._output == "complex":
            frames = frames.view(np.complex64 if self._dtype == np.float32 else np.complex128)[..., 0]
        out = frames.T
        return torch.from_numpy(out) if as_torch else out

    def push(self, samples):
        """Appends samples (1-D, any length, numpy or torch) and returns the completed
        frames (F, k) (k may be 0), same kind as the samples."""
        as_torch = isinstance(samples, torch.Tensor)
        if as_torch:
            if samples.device.type != "cpu":
                raise ValueError(f"StreamingSTFT runs on the CPU; samples are on {samples.device}")
            arr = samples.detach().numpy()
        elif isinstance(samples, np.ndarray):
            arr = samples
        else:
            raise TypeError(f"samples must be a numpy array or torch tensor, got {type(samples).__name__}")
        if arr.ndim != 1:
            raise ValueError(f"samples must be 1-D (one channel), got shape {arr.shape}")
        if arr.dtype != self._dtype:
            raise TypeError(f"samples must be {self._dtype} like the stream, got {arr.dtype}")
        return self._wrap(self._s.push(np.ascontiguousarray(arr)), as_torch)

    def flush(self):
        """Ends the signal: returns the remaining frames (F, k), computed with the right-hand
        padding. The stream is then reset for a new signal."""
        return self._wrap(self._s.flush(), self._as_torch)


class StreamingISTFT(_CppStream):
    """Overlap-add resynthesis of frames that arrive in pieces; equal to one :func:`istft`
    call (center, no length) on all frames, bitwise on the C++ backend.

    ``push(frames)`` takes complex (F, k) frames (F = n_fft // 2 + 1) and returns the samples
    that no later frame can change; ``flush(length=None)`` returns the rest (trimmed /
    zero-padded so the total equals ``length`` when given). Latency: a sample is final once
    the last frame overlapping it has been pushed: ``latency`` = n_fft - hop samples behind
    the end of the newest frame. A StreamingSTFT -> StreamingISTFT chain (center=True) lags
    by n_fft - hop samples right after a frame completes, at most n_fft - 1.

    Args:
        n_fft, hop_length, window, win_length, center, normalized: as for :func:`istft`.
        dtype: "float32" or "float64": output samples (frames are complex64 / complex128).
    """

    def __init__(self, n_fft: int, hop_length: Optional[int] = None, window=None,
                 center: bool = True, *, win_length: Optional[int] = None,
                 normalized: bool = False, dtype="float32"):
        n_fft, hop, win = _frame_params(n_fft, hop_length, win_length)
        if n_fft % 2:
            raise ValueError(f"StreamingISTFT needs an even n_fft, got {n_fft}")
        if hop > n_fft:
            raise ValueError(f"hop_length ({hop}) must be <= n_fft ({n_fft}) for the inverse")
        like = self._set_kind(dtype, window)
        w = _window(window, n_fft, win, like)
        self.n_fft, self.hop_length = n_fft, hop
        cls = C.IstftStream32 if self._dtype == np.float32 else C.IstftStream64
        self._s = cls(cpu_view(w).copy(), n_fft, hop, bool(center), bool(normalized))

    @property
    def latency(self) -> int:
        """Samples between the end of the newest pushed frame and the last final sample."""
        return self.n_fft - self.hop_length

    def push(self, frames):
        """Appends complex frames (F, k) and returns the final samples (1-D), same kind."""
        as_torch = isinstance(frames, torch.Tensor)
        t, _ = to_torch(frames, "frames")
        if t.device.type != "cpu":
            raise ValueError(f"StreamingISTFT runs on the CPU; frames are on {t.device}")
        want = torch.complex64 if self._dtype == np.float32 else torch.complex128
        if t.dtype != want:
            raise TypeError(f"frames must be {want} for a {self._dtype} stream, got {t.dtype}")
        if t.dim() != 2 or t.shape[0] != self.n_fft // 2 + 1:
            raise ValueError(f"frames must have shape (F={self.n_fft // 2 + 1}, k), got {tuple(t.shape)}")
        if t.shape[1] == 0:
            out = np.zeros(0, self._dtype)
        else:
            out = self._s.push(cpu_view(torch.view_as_real(t.resolve_conj())))
        return torch.from_numpy(out) if as_torch else out

    def flush(self, length: Optional[int] = None):
        """Returns the remaining samples; with ``length``, the total output over the whole
        stream is trimmed or zero-padded to ``length`` samples. Then resets the stream."""
        if length is not None:
            length = _check_int(length, "length", 0)
        out = self._s.flush(-1 if length is None else length)
        return torch.from_numpy(out) if self._as_torch else out


class _CallableModule(type(importlib)):
    """`import sonicore.ops.stft` binds the package attribute ops.stft to this module (Python's
    import system does that after the module runs); calling it then still computes the STFT."""

    def __call__(self, *args, **kwargs):
        return stft(*args, **kwargs)


import sys as _sys  # noqa: E402

_sys.modules[__name__].__class__ = _CallableModule

