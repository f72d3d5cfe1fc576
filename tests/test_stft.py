"""sonicore.ops.stft / istft against torch.stft / torch.istft (float64 reference) on awkward sizes."""

import numpy as np
import pytest
import torch

from sonicore import _backend
from sonicore.ops import istft, stft

from conftest import requires_cuda

# (n_fft, hop, win_length, samples): primes, one past a frame, hop not dividing n_fft, mixed radix.
CASES = [
    (1024, 256, 1024, 44101),
    (400, 160, 400, 16001),
    (960, 240, 701, 9973),
    (64, 7, 64, 97),
    (512, 128, 300, 1 + 512),
    (1536, 384, 1536, 7919),
    (1920, 480, 1201, 4801),
    (2048, 512, 2048, 3 * 2048 + 1),
    (30, 4, 17, 61),
]


def _rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return np.abs(a - b).max() / max(np.abs(b).max(), 1e-300)


def _window(rng, win):
    return rng.random(win) + 0.1  # random positive window (keeps the inverse well-conditioned)


def _torch_ref(x, n_fft, hop, win, w, **kw):
    return torch.stft(torch.from_numpy(x), n_fft, hop, win, torch.from_numpy(w), return_complex=True, **kw).numpy()


@pytest.mark.parametrize("n_fft,hop,win,samples", CASES)
@pytest.mark.parametrize("center,pad_mode", [(True, "reflect"), (True, "constant"), (False, "reflect")])
def test_stft_complex_float64_matches_torch(rng, n_fft, hop, win, samples, center, pad_mode):
    x = rng.standard_normal((2, samples))
    w = _window(rng, win)
    got = stft(x, n_fft, hop, win, w, center=center, pad_mode=pad_mode, backend="cpu")
    ref = _torch_ref(x, n_fft, hop, win, w, center=center, pad_mode=pad_mode)
    assert got.shape == ref.shape and got.dtype == np.complex128
    assert _rel(got, ref) < 1e-12


@pytest.mark.parametrize("n_fft,hop,win,samples", CASES[:5])
def test_stft_float32_close_to_float64_reference(rng, n_fft, hop, win, samples):
    x = rng.standard_normal(samples)
    w = _window(rng, win)
    got = stft(x.astype(np.float32), n_fft, hop, win, w.astype(np.float32), backend="cpu")
    ref = _torch_ref(x.astype(np.float32).astype(np.float64), n_fft, hop, win,
                     w.astype(np.float32).astype(np.float64))
    assert got.dtype == np.complex64
    assert _rel(got, ref) < 3e-6


@pytest.mark.parametrize("shape", [(3001,), (2, 3001), (2, 3, 3001)])
def test_shapes_and_kinds(rng, shape):
    x = rng.standard_normal(shape).astype(np.float32)
    got = stft(x, 256, 100, window=np.hanning(256))
    assert isinstance(got, np.ndarray) and got.shape == shape[:-1] + (129, 31)
    t = stft(torch.from_numpy(x), 256, 100, window=torch.hann_window(256))
    assert isinstance(t, torch.Tensor) and t.shape == got.shape
    # a (..., T, F) buffer seen as (..., F, T), like torch.stft returns it
    assert t.stride(-2) == 1


def test_two_sided_normalized_and_real_output(rng):
    x = rng.standard_normal(2999)
    w = _window(rng, 200)
    got = stft(x, 200, 50, window=w, onesided=False, normalized=True, return_complex=False, backend="cpu")
    ref = torch.stft(torch.from_numpy(x), 200, 50, window=torch.from_numpy(w), onesided=False,
                     normalized=True, return_complex=True)
    ref = torch.view_as_real(ref).numpy()
    assert got.shape == ref.shape == (200, 60, 2)
    assert _rel(got, ref) < 1e-12


def test_torch_only_pad_modes_fall_back_to_torch(rng):
    x = rng.standard_normal(1001)
    w = np.hanning(128)
    for mode in ("replicate", "circular"):
        ref = torch.stft(torch.from_numpy(x), 128, 32, window=torch.from_numpy(w), pad_mode=mode,
                         return_complex=True).numpy()
        assert _rel(stft(x, 128, 32, window=w, pad_mode=mode), ref) < 1e-12
        with pytest.raises(_backend.BackendUnavailable, match="torch backend only"):
            stft(x, 128, 32, window=w, pad_mode=mode, backend="cpu")


def test_default_window_is_rectangular_like_torch(rng):
    x = rng.standard_normal(1000)
    got = stft(x, 128, 32, win_length=100, backend="cpu")
    ref = torch.stft(torch.from_numpy(x), 128, 32, 100, return_complex=True).numpy()
    assert _rel(got, ref) < 1e-12
    # hop defaults to n_fft // 4
    assert stft(x, 128).shape == torch.stft(torch.from_numpy(x), 128, return_complex=True).shape


@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 2e-5)])
def test_fused_outputs_match_torch_composition(rng, dtype, tol):
    x = rng.standard_normal((2, 20011))
    w = _window(rng, 1024)
    ref = _torch_ref(x, 1024, 256, 1024, w)
    power = np.abs(ref) ** 2
    xs, ws = x.astype(dtype), w.astype(dtype)
    got = stft(xs, 1024, 256, window=ws, output="power", backend="cpu")
    assert got.dtype == dtype and _rel(got, power) < tol
    got = stft(xs, 1024, 256, window=ws, output="magnitude", magnitude_eps=1e-9, backend="cpu")
    assert _rel(got, np.sqrt(power + 1e-9)) < tol
    got = stft(xs, 1024, 256, window=ws, output="log_magnitude", log_floor=1e-3, backend="cpu")
    want = np.maximum(np.sqrt(power), 1e-3)
    if dtype == np.float64:
        assert np.abs(got - np.log(want)).max() < tol * 10
    else:
        # In float32 a bin just above the floor carries an absolute error of ~eps * the frame's
        # scale, which the log divides by the bin's own magnitude: judge the magnitude that the
        # log encodes against the spectrum's scale instead (as the power/magnitude checks do).
        assert np.abs(np.exp(got.astype(np.float64)) - want).max() < tol * np.sqrt(power).max()
    # the torch reference backend computes the same definitions
    got = stft(xs, 1024, 256, window=ws, output="power", backend="torch")
    assert _rel(got, power) < tol


@pytest.mark.parametrize("n_fft,hop,win,samples", CASES)
@pytest.mark.parametrize("center", [True, False])
def test_istft_float64_matches_torch(rng, n_fft, hop, win, samples, center):
    w = _window(rng, win)
    frames = 1 + (samples - (0 if center else n_fft)) // hop
    spec = rng.standard_normal((2, n_fft // 2 + 1, frames)) + 1j * rng.standard_normal((2, n_fft // 2 + 1, frames))
    for length in (None, samples - 3, samples + 5):
        try:
            ref = torch.istft(torch.from_numpy(spec), n_fft, hop, win, torch.from_numpy(w),
                              center=center, length=length).numpy()
        except RuntimeError as exc:  # a zero-padded window leaves the uncentred edges uncovered
            assert "overlap add" in str(exc)
            with pytest.raises(ValueError, match="overlap-add"):
                istft(spec, n_fft, hop, win, w, center=center, length=length, backend="cpu")
            continue
        got = istft(spec, n_fft, hop, win, w, center=center, length=length, backend="cpu")
        assert got.shape == ref.shape and got.dtype == np.float64
        assert _rel(got, ref) < 1e-11


def test_istft_accepts_lazy_conjugates_and_strided_spectra(rng):
    spec = torch.from_numpy(rng.standard_normal((129, 40)) + 1j * rng.standard_normal((129, 40)))
    w = torch.hann_window(256, dtype=torch.float64)
    for s in (spec.conj(), spec.t().contiguous().t(), spec[:, ::2]):
        ref = torch.istft(s.resolve_conj(), 256, 64, window=w)
        assert _rel(istft(s, 256, 64, window=w, backend="cpu").numpy(), ref.numpy()) < 1e-11


def test_istft_two_sided_and_normalized(rng):
    x = rng.standard_normal(4001)
    w = np.hanning(400 + 1)[:-1]
    spec = stft(x, 400, 100, window=w, onesided=False, normalized=True, backend="torch")
    got = istft(spec, 400, 100, window=w, onesided=False, normalized=True, length=4001, backend="cpu")
    ref = torch.istft(torch.from_numpy(spec), 400, 100, window=torch.from_numpy(w), onesided=False,
                      normalized=True, length=4001).numpy()
    assert _rel(got, ref) < 1e-11


@pytest.mark.parametrize("n_fft,hop,samples", [(1024, 256, 44101), (400, 160, 16001), (960, 240, 9973)])
def test_round_trip_float32(rng, n_fft, hop, samples):
    x = rng.standard_normal((2, samples)).astype(np.float32)
    w = np.hanning(n_fft + 1)[:-1].astype(np.float32)
    spec = stft(x, n_fft, hop, window=w, backend="cpu")
    y = istft(spec, n_fft, hop, window=w, length=samples, backend="cpu")
    assert y.dtype == np.float32
    assert np.linalg.norm(y - x) / np.linalg.norm(x) <= 1e-6


def test_non_contiguous_and_negative_strides_are_copied(rng):
    base = rng.standard_normal((2, 6000)).astype(np.float32)
    w = np.hanning(256).astype(np.float32)
    ref = stft(np.ascontiguousarray(base[:, ::2]), 256, 64, window=w)
    assert np.array_equal(stft(base[:, ::2], 256, 64, window=w), ref)
    assert np.array_equal(stft(torch.from_numpy(base)[:, ::2], 256, 64, window=torch.from_numpy(w)).numpy(), ref)
    rev = base[:, ::-1]
    assert np.array_equal(stft(rev, 256, 64, window=w), stft(rev.copy(), 256, 64, window=w))


def test_nan_and_inf_propagate_to_their_frames_only(rng):
    x = rng.standard_normal(4096)
    x[2000] = np.nan
    x[3000] = np.inf
    got = stft(x, 256, 64, window=np.hanning(256), backend="cpu")
    ref = _torch_ref(x, 256, 64, 256, np.hanning(256))
    bad = ~np.isfinite(ref).all(axis=0)
    assert np.array_equal(~np.isfinite(got).all(axis=0), bad)
    assert bad.any() and not bad.all()
    assert _rel(got[:, ~bad], ref[:, ~bad]) < 1e-12


class TestBadInput:
    def test_dtype(self):
        with pytest.raises(TypeError, match="float32 or float64"):
            stft(np.arange(1000), 64)
        with pytest.raises(TypeError, match="float32 or float64"):
            stft(torch.zeros(1000, dtype=torch.float16), 64)
        with pytest.raises(TypeError, match="real"):
            stft(np.zeros(1000, np.complex64), 64)
        with pytest.raises(TypeError, match="numpy array or a torch tensor"):
            stft([0.0] * 100, 64)
        with pytest.raises(TypeError, match="complex"):
            istft(np.zeros((33, 10)), 64)
        with pytest.raises(TypeError, match="integer"):
            stft(np.zeros(1000), 64.0)

    def test_rank_and_empty(self):
        with pytest.raises(ValueError, match="samples"):
            stft(np.zeros((1, 1, 1, 1000)), 64)
        with pytest.raises(ValueError, match="empty"):
            stft(np.zeros(0), 64)
        with pytest.raises(ValueError, match="empty"):
            stft(np.zeros((0, 100)), 64)
        with pytest.raises(ValueError, match=r"\(F, T\)"):
            istft(np.zeros(33, np.complex64), 64)

    def test_sizes(self):
        x = np.zeros(1000)
        with pytest.raises(ValueError, match="win_length"):
            stft(x, 64, 16, window=np.ones(50))
        with pytest.raises(ValueError, match="<= n_fft"):
            stft(x, 64, 16, win_length=65)
        with pytest.raises(ValueError, match="hop_length"):
            stft(x, 64, 0)
        with pytest.raises(ValueError, match="n_fft"):
            stft(x, 0)
        with pytest.raises(ValueError, match="1-D"):
            stft(x, 64, window=np.ones((8, 8)))
        with pytest.raises(ValueError, match="bins"):
            istft(np.zeros((30, 10), np.complex128), 64)
        with pytest.raises(ValueError, match="output"):
            stft(x, 64, output="phase")
        with pytest.raises(ValueError, match="pad_mode"):
            stft(x, 64, pad_mode="wrap")

    def test_signal_too_short(self):
        with pytest.raises(ValueError, match="at least n_fft"):
            stft(np.zeros(63), 64, center=False)
        with pytest.raises(ValueError, match="reflect padding"):
            stft(np.zeros(32), 64)
        assert stft(np.zeros(32), 64, pad_mode="constant").shape == (33, 3)

    def test_device_mismatch(self):
        with pytest.raises(ValueError, match="same device"):
            stft(torch.zeros(1000), 64, window=torch.ones(64, device="meta"))

    def test_nola(self):
        spec = np.ones((33, 20), np.complex128)
        w = np.hanning(66)[1:-1]  # zero-free but tiny at the edges is fine
        istft(spec, 64, 16, window=w)
        bad = np.zeros(64)
        bad[:8] = 1.0  # frames of 64 with hop 32 leave samples 8..31 uncovered
        for backend in ("cpu", "torch"):
            with pytest.raises(ValueError, match="overlap-add"):
                istft(spec, 64, 32, window=bad, backend=backend)
        with pytest.raises(ValueError, match="hop_length"):
            istft(spec, 64, 65)

    def test_backends(self):
        x = np.zeros(1000, np.float32)
        with pytest.raises(_backend.BackendUnavailable, match="unknown backend"):
            stft(x, 64, backend="mkl")
        with pytest.raises(_backend.BackendUnavailable, match="cuda"):
            stft(x, 64, backend="cuda")
        with pytest.raises(_backend.BackendUnavailable, match="torch"):
            istft(np.ones((33, 20), np.complex64), 64, return_complex=True, backend="cpu")
        # odd n_fft: the C++ kernel declines, the automatic choice falls back to torch
        got = stft(np.ones(1000), 63)
        assert got.shape == torch.stft(torch.ones(1000, dtype=torch.float64), 63, return_complex=True).shape
        with pytest.raises(_backend.BackendUnavailable, match="even"):
            stft(np.ones(1000), 63, backend="cpu")


@requires_cuda
@pytest.mark.parametrize("backend", ["cuda", "triton"])
def test_gpu_stft_and_istft_match_torch(rng, backend):
    x = torch.from_numpy(rng.standard_normal((2, 48001)).astype(np.float32)).cuda()
    w = torch.hann_window(1024, device="cuda")
    got = stft(x, 1024, 256, window=w, backend=backend)
    ref = torch.stft(x, 1024, 256, window=w, return_complex=True)
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-3)
    y = istft(got, 1024, 256, window=w, length=48001, backend=backend)
    torch.testing.assert_close(y, x, rtol=1e-4, atol=1e-4)
