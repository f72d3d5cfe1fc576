"""Mel front ends vs their real peers: librosa (filterbank, melspectrogram), openai-whisper
(log_mel_spectrogram, mel_filters.npz) and an independent torch re-derivation of MMAudio's
mel converter. Fresh random signals of awkward lengths every run."""
import importlib
import os

import librosa
import numpy as np
import pytest
import torch

import sonicore.ops as ops
from sonicore._ext import C

mel_mod = importlib.import_module("sonicore.ops.mel")


def _rel(a, b):
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return np.abs(a - b).max() / max(np.abs(b).max(), 1e-30)


# ------------------------------------------------------------------ filterbank

@pytest.mark.parametrize("htk", [False, True])
@pytest.mark.parametrize("norm", [None, "slaney", 1, 2, np.inf])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_filterbank_equals_librosa(rng, htk, norm, dtype):
    sr = int(rng.choice([8000, 16000, 22050, 44100, 48000]))
    n_fft = int(rng.choice([97, 400, 512, 1023, 2048]))
    n_mels = int(rng.integers(7, 129))
    fmin = float(rng.uniform(0, 200))
    fmax = float(rng.uniform(sr / 4, sr / 2))
    ours = ops.mel_filterbank(sr, n_fft, n_mels, fmin, fmax, htk=htk, norm=norm, dtype=dtype)
    with np.errstate(all="ignore"):
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # librosa warns about empty filters at small n_fft
            ref = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax,
                                      htk=htk, norm=norm, dtype=dtype)
    assert ours.dtype == ref.dtype and ours.shape == ref.shape == (n_mels, n_fft // 2 + 1)
    tol = 1e-6 if dtype == np.float32 else 1e-12
    assert _rel(ours, ref) <= tol


def test_filterbank_equals_whisper_assets():
    import whisper
    path = os.path.join(os.path.dirname(whisper.__file__), "assets", "mel_filters.npz")
    with np.load(path) as f:
        for n in (80, 128):
            ours = ops.mel_filterbank(16000, 400, n)
            assert _rel(ours, f[f"mel_{n}"]) <= 1e-6


def test_filterbank_torch_dtype_and_defaults():
    w = ops.mel_filterbank(22050, 1024, dtype=torch.float64)
    assert isinstance(w, torch.Tensor) and w.dtype == torch.float64 and w.shape == (128, 513)
    np.testing.assert_allclose(w.numpy(), librosa.filters.mel(sr=22050, n_fft=1024, dtype=np.float64),
                               rtol=1e-12, atol=1e-15)


def test_filterbank_bad_arguments():
    with pytest.raises(ValueError, match="sr"):
        ops.mel_filterbank(0, 400)
    with pytest.raises(ValueError, match="n_fft"):
        ops.mel_filterbank(16000, 0)
    with pytest.raises(ValueError, match="fmin < fmax"):
        ops.mel_filterbank(16000, 400, fmin=9000)
    with pytest.raises(ValueError, match="norm"):
        ops.mel_filterbank(16000, 400, norm="l2")
    with pytest.raises(TypeError, match="float32 or float64"):
        ops.mel_filterbank(16000, 400, dtype=np.int32)


# ------------------------------------------------------------------ mel / log_mel

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("power", [2.0, 1.0, 1.5])
def test_mel_equals_librosa(rng, dtype, power):
    n_fft = int(rng.choice([256, 400, 512, 1024]))
    hop = int(rng.choice([n_fft // 4, n_fft // 2, 97]))
    n = int(rng.choice([n_fft + 1, 4099, 16001, 7919]))  # one past a frame, primes
    x = (rng.standard_normal((2, n)) * 0.3).astype(dtype)
    sr = 22050
    ours = ops.mel(x, sr, n_fft, hop, power=power, n_mels=64, fmax=9000.0)
    if dtype == np.float32:
        ref = librosa.feature.melspectrogram(y=x, sr=sr, n_fft=n_fft, hop_length=hop, power=power,
                                             n_mels=64, fmax=9000.0)
    else:  # librosa's melspectrogram always builds a float32 bank; take its float64 one
        basis = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=64, fmax=9000.0, dtype=np.float64)
        ref = basis @ (np.abs(librosa.stft(x, n_fft=n_fft, hop_length=hop)) ** power)
    assert isinstance(ours, np.ndarray) and ours.dtype == dtype and ours.shape == ref.shape
    assert _rel(ours, ref) <= (2e-5 if dtype == np.float32 else 1e-10)


def test_mel_shapes_center_false_and_torch_io(rng):
    x = torch.from_numpy(rng.standard_normal((2, 3, 2003))).to(torch.float64)
    ours = ops.mel(x, 16000, 512, 128, center=False, n_mels=40, htk=True, norm=None)
    assert isinstance(ours, torch.Tensor) and ours.shape[:3] == (2, 3, 40)
    basis = librosa.filters.mel(sr=16000, n_fft=512, n_mels=40, htk=True, norm=None, dtype=np.float64)
    ref = basis @ np.abs(librosa.stft(x.numpy(), n_fft=512, hop_length=128, center=False)) ** 2
    assert _rel(ours.numpy(), ref) <= 1e-10
    # The forced torch reference and the fused C++ projection agree.
    ref_torch = ops.mel(x, 16000, 512, 128, center=False, n_mels=40, htk=True, norm=None, backend="torch")
    assert _rel(ours, ref_torch) <= 1e-12


@pytest.mark.parametrize("log", ["ln", "log10"])
def test_log_mel(rng, log):
    x = (rng.standard_normal(10007) * 0.1).astype(np.float32)
    x[:3000] = 0.0  # silent region: exercises the floor
    ours = ops.log_mel(x, 16000, 1024, 256, n_mels=80, log=log, floor=1e-5)
    m = librosa.feature.melspectrogram(y=x.astype(np.float64), sr=16000, n_fft=1024, hop_length=256, n_mels=80)
    ref = np.log(np.maximum(m, 1e-5)) / (np.log(10.0) if log == "log10" else 1.0)
    assert np.abs(ours - ref).max() <= 1e-4


def test_mel_bad_input():
    with pytest.raises(TypeError, match="float32 or float64"):
        ops.mel(np.zeros(1000, np.int16), 16000, 400, 160)
    with pytest.raises(ValueError, match="empty"):
        ops.mel(np.zeros(0, np.float32), 16000, 400, 160)
    with pytest.raises(ValueError, match="power"):
        ops.mel(np.zeros(1000, np.float32), 16000, 400, 160, power=0)
    with pytest.raises(ValueError, match="log"):
        ops.log_mel(np.zeros(1000, np.float32), 16000, 400, 160, log="log2")
    with pytest.raises(ValueError, match="floor"):
        ops.log_mel(np.zeros(1000, np.float32), 16000, 400, 160, floor=0)
    with pytest.raises(ValueError, match="window"):
        ops.mel(np.zeros(1000, np.float32), 16000, 400, 160, window="hamming")


# ------------------------------------------------------------------ fused projection kernel

@pytest.mark.parametrize("layout", ["frames_inner", "bins_inner", "strided"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_mel_project_layouts(rng, layout, dtype):
    B, F, T, M = 2, 201, 131, 80
    base = torch.from_numpy(rng.random((B, F, T)) * 10).to(dtype)
    if layout == "frames_inner":
        spec = base.contiguous()
    elif layout == "bins_inner":
        spec = base.transpose(1, 2).contiguous().transpose(1, 2)
    else:
        spec = torch.from_numpy(rng.random((B, F * 2, T * 3)) * 10).to(dtype)[:, ::2, ::3]
    key = (16000.0, 400, M, 0.0, 8000.0, False, "slaney", "float32" if dtype == torch.float32 else "float64")
    dense = torch.from_numpy(librosa.filters.mel(sr=16000, n_fft=400, n_mels=M,
                                                 dtype=np.float64)).to(dtype)
    for log, fn in ((None, lambda v: v), ("ln", torch.log), ("log10", torch.log10)):
        floor = 0.0 if log is None else 1e-3
        spec_np = spec.numpy()
        ours = mel_mod._project(torch.from_numpy(spec_np) if spec_np.flags.c_contiguous else spec,
                                key, log, floor, True)
        ref = fn(torch.clamp(dense @ spec, min=floor)) if log else dense @ spec
        assert (ours - ref).abs().max() <= (2e-5 if dtype == torch.float32 else 1e-12) * ref.abs().max()


def test_mel_project_nan_and_bad_arguments():
    spec = np.ones((1, 5, 4), np.float32)
    spec[0, 2, 1] = np.nan
    out = np.empty((1, 2, 4), np.float32)
    w = np.array([1.0, 1.0, 1.0, 1.0], np.float32)
    C.mel_project(spec, w, np.array([0, 2, 4], np.int64), np.array([0, 2], np.int32), out, 1, 1e-10)
    assert np.isnan(out[0, 1, 1]) and np.isfinite(out[0, 0]).all()  # NaN stays in its frame
    with pytest.raises(ValueError, match="outside"):
        C.mel_project(spec, w, np.array([0, 2, 4], np.int64), np.array([0, 4], np.int32), out, 1, 0.0)
    with pytest.raises(ValueError, match="shape"):
        C.mel_project(spec, w, np.array([0, 2, 4], np.int64), np.array([0, 2], np.int32),
                      np.empty((1, 3, 4), np.float32), 1, 0.0)
    with pytest.raises(ValueError, match="dtype"):
        C.mel_project(spec, w.astype(np.float64), np.array([0, 2, 4], np.int64), np.array([0, 2], np.int32),
                      out, 1, 0.0)
    with pytest.raises(ValueError, match="offsets"):
        C.mel_project(spec, w, np.array([0, 3, 2], np.int64), np.array([0, 2], np.int32), out, 1, 0.0)


# ------------------------------------------------------------------ fused signal -> log-mel kernel

def _fused_reference(x, window, n_fft, hop, center, pad_mode, zero_pad, n_frames, magnitude, dense,
                     log, floor, dynamic_range):
    """torch.stft + dense bank + clamp/log (+ Whisper's range step), float64, per item."""
    t = torch.nn.functional.pad(torch.from_numpy(x).double(), (0, zero_pad))
    s = torch.stft(t, n_fft, hop, window=torch.from_numpy(window).double(), center=center,
                   pad_mode=pad_mode, return_complex=True)[..., :n_frames].abs()
    m = torch.from_numpy(dense).double() @ (s if magnitude else s ** 2)
    if log is not None:
        m = torch.clamp(m, min=floor)
        m = m.log() if log == "ln" else m.log10()
    if dynamic_range is not None:
        r, off, sc = dynamic_range
        m = (torch.maximum(m, m.amax(dim=(-2, -1), keepdim=True) - r) + off) * sc
    return m


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fused_log_mel_kernel_options(rng, dtype):
    """C.log_mel_spectrogram over its options (padding modes, magnitude, logs, zero padding,
    strided batch, the dynamic-range step) against torch.stft + a dense bank in float64."""
    # n_fft / 2 of 48, 180 and 200 take the frames-in-lanes FFT through radix 4, 2, 3 and 5
    # stages; 255 = 3 * 5 * 17 the per-frame FFT.
    for n_fft in (96, 360, 400, 510, int(rng.choice([64, 256, 1024]))):
        hop = int(rng.choice([n_fft // 4, 97, n_fft]))
        center = bool(rng.integers(2))
        pad_mode = str(rng.choice(["reflect", "constant"]))
        S = int(rng.choice([n_fft + 1, 1009, 4099]))
        zero_pad = int(rng.choice([0, 1, 333]))
        if not center and S + zero_pad < n_fft:  # uncentred framing needs one whole frame
            S = n_fft + 1
        L = S + zero_pad
        total = (L // hop + 1) if center else (L - n_fft) // hop + 1
        n_frames = int(rng.integers(max(1, total - 2), total + 1))
        magnitude = bool(rng.integers(2))
        log = [None, "ln", "log10"][int(rng.integers(3))]
        floor = 1e-3 if log else 0.0
        dr = (8.0, 4.0, 0.25) if (log and rng.integers(2)) else None
        M = int(rng.integers(1, 60))
        key = (16000.0, n_fft, M, 0.0, 8000.0, False, "slaney", np.dtype(dtype).name)
        dense, packed, offsets, bin_start = mel_mod._packed_bank(*key)
        big = (rng.standard_normal((3, S + 5)) * 0.5).astype(dtype)
        x = big[:, 2:S + 2]  # rows of stride S + 5: a strided batch
        window = (0.5 + rng.random(n_fft)).astype(dtype)
        out = np.empty((3, M, n_frames), dtype)
        C.log_mel_spectrogram(x, window, n_fft, hop, center, pad_mode == "reflect", zero_pad, n_frames,
                              magnitude, packed, offsets, bin_start, out, mel_mod._LOG_CODE[log], floor, dr)
        for b in range(3):
            ref = _fused_reference(x[b], window, n_fft, hop, center, pad_mode, zero_pad, n_frames, magnitude,
                                   dense.numpy(), log, floor, dr)
            tol = (3e-5 if dtype == np.float32 else 1e-10) * max(1.0, ref.abs().max().item())
            assert (torch.from_numpy(out[b]).double() - ref).abs().max().item() <= tol


def test_fused_log_mel_kernel_bad_arguments():
    x = np.zeros((1, 1000), np.float32)
    w = np.ones(400, np.float32)
    _, packed, offsets, bin_start = mel_mod._packed_bank(16000.0, 400, 80, 0.0, 8000.0, False, "slaney", "float32")
    out = np.empty((1, 80, 6), np.float32)
    args = dict(x=x, window=w, n_fft=400, hop=160, center=True, reflect=True, zero_pad=0, n_frames=6,
                magnitude=False, weights=packed, offsets=offsets, bin_start=bin_start, out=out, log=2,
                floor=1e-10, dynamic_range=None)
    C.log_mel_spectrogram(**args)
    for change, match in (({"n_frames": 8}, "n_frames"), ({"n_fft": 401}, "even"),
                          ({"window": np.ones(399, np.float32)}, "window"),
                          ({"x": np.zeros((1, 1000), np.float64)}, "dtype"),
                          ({"out": np.empty((1, 80, 5), np.float32)}, "out"),
                          ({"x": np.zeros((1, 150), np.float32), "n_frames": 1,
                            "out": np.empty((1, 80, 1), np.float32)}, "reflect"),
                          ({"x": np.zeros((1, 2000), np.float32)[:, ::2]}, "contiguous rows"),
                          ({"bin_start": bin_start + 100}, "outside"),
                          ({"dynamic_range": (8.0, 4.0)}, "dynamic_range"),
                          ({"log": 3}, "log")):
        with pytest.raises((ValueError, TypeError), match=match):
            C.log_mel_spectrogram(**{**args, **change})


# ------------------------------------------------------------------ Whisper

_U32 = 2.0 ** -24  # float32 unit roundoff


def _whisper_truth(x: np.ndarray, n_mels: int, padding: int = 0):
    """Whisper's recipe in float64 (torch.stft + librosa's float64 Slaney bank) on Whisper's
    actual inputs (the float32 audio and torch's float32 Hann window, both widened), and kappa: the float32 error each output element can carry, predicted from the float64
    spectrum. A float32 FFT puts an error of about u * sqrt(frame power) on every bin; through
    the band's weights that is 2 * u * sqrt(frame power) * sqrt(sum_k w_k^2 P_k) on the mel
    value, and the log10 / 4 divides it by 4 ln(10) * mel. Elements clamped to (max - 8) carry none.
    Returns (truth (n_mels, T), kappa (n_mels, T)), float64."""
    t = torch.nn.functional.pad(torch.from_numpy(x.astype(np.float64)), (0, padding))
    s = torch.stft(t, 400, 160, window=torch.hann_window(400).double(), return_complex=True)
    p = s[..., :-1].abs() ** 2
    basis = torch.from_numpy(librosa.filters.mel(sr=16000, n_fft=400, n_mels=n_mels, dtype=np.float64))
    mel = basis @ p
    lg = torch.clamp(mel, min=1e-10).log10()
    top = lg.max()
    truth = (torch.maximum(lg, top - 8.0) + 4.0) / 4.0
    dmel = 2.0 * _U32 * torch.sqrt(p.sum(0, keepdim=True)) * torch.sqrt((basis ** 2) @ p)
    kappa = dmel / (4.0 * np.log(10.0) * torch.clamp(mel, min=1e-10))
    return truth, torch.where(lg > top - 8.0, kappa, torch.zeros_like(kappa))


def _check_whisper(ours, ref, x, n_mels, padding=0):
    """The issue's bar, 1e-5 against openai-whisper, where float32 arithmetic can meet it.

    openai-whisper and our default path both compute in float32 with different FFTs. On the
    elements whose predicted float32 error kappa is <= 2e-6 (99.7 % of them for 128 bins on
    white noise, 99.96 % for 80) |ours - whisper| <= 1e-5 is asserted (measured: <= 8e-7). The
    rest are mel bands holding one or two FFT bins of near-zero power: float32 cannot resolve
    them, openai-whisper itself is up to ~7e-5 off the float64 truth there, and no FFT other
    than torch's own would land on its rounding. There both results must obey the same float32
    error bound, 1e-6 + 2 * kappa from the float64 truth (measured: <= 0.5 * kappa for whisper,
    0.36 * kappa for ours over 20 clips of 30 s). Asserting it for openai-whisper too checks
    the error model rather than trusting it. Returns (well-conditioned elements, elements):
    callers check over all their clips that the 1e-5 comparison covered >= 99 % of the output."""
    truth, kappa = _whisper_truth(x, n_mels, padding)
    ours, ref = ours.double(), ref.double()
    bound = 1e-6 + 2.0 * kappa
    assert ((ref - truth).abs() <= bound).all(), "openai-whisper outside the float32 error model"
    assert ((ours - truth).abs() <= bound).all(), ((ours - truth).abs() - bound).max().item()
    well = kappa <= 2e-6
    if well.any():
        assert (ours - ref).abs()[well].max().item() <= 1e-5
    return int(well.sum()), well.numel()


def _check_float64(ours, ref, x, n_mels, padding=0):
    """precision="float64" is the float64 truth rounded: within 1e-6 of it everywhere, so within
    1e-5 of openai-whisper plus openai-whisper's own distance from the truth."""
    truth, _ = _whisper_truth(x, n_mels, padding)
    ours, ref = ours.double(), ref.double()
    assert (ours - truth).abs().max().item() <= 1e-6
    assert ((ours - ref).abs() <= 1e-5 + (ref - truth).abs()).all()


@pytest.mark.parametrize("n_mels", [80, 128])
def test_whisper_log_mel_equals_openai_whisper(rng, n_mels):
    import whisper
    short = int(rng.integers(16000, 100000))
    cases = [(int(rng.integers(201, 2000)), 0), (16001, 0), (48017, 0),
             (short, 480000 - short)]  # a short clip padded to Whisper's 30 s
    covered = np.zeros(2)
    for n, padding in cases:
        x = (rng.standard_normal(n) * 0.1).astype(np.float32)
        ref = whisper.audio.log_mel_spectrogram(torch.from_numpy(x), n_mels, padding=padding)
        ours = ops.whisper_log_mel(torch.from_numpy(x), n_mels, padding=padding)
        assert ours.shape == ref.shape and ours.dtype == torch.float32
        covered += _check_whisper(ours, ref, x, n_mels, padding)
        ours64 = ops.whisper_log_mel(torch.from_numpy(x), n_mels, padding=padding, precision="float64")
        assert ours64.dtype == torch.float32
        _check_float64(ours64, ref, x, n_mels, padding)
        ours_np = ops.whisper_log_mel(x, n_mels, padding=padding)  # numpy in, numpy out
        assert isinstance(ours_np, np.ndarray)
        np.testing.assert_array_equal(ours_np, ours.numpy())
        # The torch reference path uses torch.stft like whisper: same rounding, 1e-5 always.
        ours_ref = ops.whisper_log_mel(torch.from_numpy(x), n_mels, padding=padding, backend="torch")
        assert (ours_ref - ref).abs().max().item() <= 1e-5
    assert covered[0] >= 0.99 * covered[1]


def test_whisper_log_mel_padding_and_batch(rng):
    import whisper
    xs = (rng.standard_normal((3, 8011)) * 0.1).astype(np.float32)
    xs[1] *= 30.0  # a loud item: the (max - 8) clamp must stay per item
    ours = ops.whisper_log_mel(torch.from_numpy(xs), 80, padding=1607)
    ours64 = ops.whisper_log_mel(torch.from_numpy(xs.astype(np.float64)), 80, padding=1607,
                                 precision="float64")
    assert ours64.dtype == torch.float64
    # float64 audio computes in float64 unless told otherwise (openai-whisper rejects it).
    assert torch.equal(ops.whisper_log_mel(torch.from_numpy(xs.astype(np.float64)), 80, padding=1607), ours64)
    covered = np.zeros(2)
    for i in range(3):
        ref = whisper.audio.log_mel_spectrogram(torch.from_numpy(xs[i]), 80, padding=1607)
        covered += _check_whisper(ours[i], ref, xs[i], 80, padding=1607)
        _check_float64(ours64[i], ref, xs[i], 80, padding=1607)
    assert covered[0] >= 0.99 * covered[1]
    # A non-contiguous batch (every other sample) gives the same as its contiguous copy.
    wide = (rng.standard_normal((2, 2 * 5003)) * 0.1).astype(np.float32)
    np.testing.assert_array_equal(ops.whisper_log_mel(wide[:, ::2], 128),
                                  ops.whisper_log_mel(np.ascontiguousarray(wide[:, ::2]), 128))


def test_whisper_log_mel_nan_stays_local(rng):
    """NaN in the audio reaches only the frames whose window covers it; the (max - 8) step
    ignores it (docs/mel.md: NaN / Inf policy)."""
    x = (rng.standard_normal(16033) * 0.1).astype(np.float32)
    x[8000] = np.nan
    ours = ops.whisper_log_mel(x, 80)
    bad = np.isnan(ours).any(axis=0)
    # Frame t covers samples [160 t - 200, 160 t + 200): frames 49, 50 and 51 hold sample 8000.
    assert bad[49:52].all() and bad.sum() == 3
    assert np.isfinite(np.delete(ours, [49, 50, 51], axis=1)).all()


def test_whisper_log_mel_bad_input():
    with pytest.raises(ValueError, match="80 or 128"):
        ops.whisper_log_mel(np.zeros(1000, np.float32), 64)
    with pytest.raises(ValueError, match="padding"):
        ops.whisper_log_mel(np.zeros(1000, np.float32), 80, padding=-1)
    with pytest.raises(ValueError, match="shape"):
        ops.whisper_log_mel(np.zeros((2, 2, 1000), np.float32))
    with pytest.raises(ValueError, match="more than 200"):
        ops.whisper_log_mel(np.zeros(150, np.float32))
    with pytest.raises(ValueError, match="precision"):
        ops.whisper_log_mel(np.zeros(1000, np.float32), precision="float16")


# ------------------------------------------------------------------ MMAudio

def _mmaudio_reference(x: torch.Tensor, mode: str) -> torch.Tensor:
    """Written from MMAudio's published recipe (docs/mel.md), not from sonicore code."""
    sr, n_fft, hop, n_mels, fmax, logf = {
        "16k": (16000, 1024, 256, 80, 8000.0, torch.log10),
        "44k": (44100, 2048, 512, 128, 22050.0, torch.log)}[mode]
    x = x.clamp(-1, 1)
    p = (n_fft - hop) // 2
    x = torch.nn.functional.pad(x.unsqueeze(1), (p, p), mode="reflect").squeeze(1)
    s = torch.stft(x, n_fft, hop, n_fft, torch.hann_window(n_fft, dtype=x.dtype), center=False,
                   return_complex=True)
    s = torch.view_as_real(s)
    mag = torch.sqrt(s.pow(2).sum(-1) + 1e-9)
    basis = torch.from_numpy(librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=0, fmax=fmax,
                                                 dtype=np.float64)).to(x.dtype)
    return logf(torch.clamp(basis @ mag, min=1e-5))


@pytest.mark.parametrize("mode", ["16k", "44k"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_mmaudio_mel(rng, mode, dtype):
    n = int(rng.choice([7919, 20011, 16384 + 1]))
    x = torch.from_numpy(rng.standard_normal((2, n)) * 0.4).to(dtype)  # some samples beyond +-1
    ours = ops.mmaudio_mel(x, mode)
    ref = _mmaudio_reference(x, mode)
    assert ours.shape == ref.shape and ours.dtype == dtype
    tol = 2e-5 if dtype == torch.float32 else 1e-10
    assert (ours - ref).abs().max().item() <= tol * max(1.0, ref.abs().max().item())
    with pytest.raises(ValueError, match="mode"):
        ops.mmaudio_mel(x, "22k")


def test_mel_through_triton_stft(rng):
    """The mel front end on the Triton STFT (interpreter here, GPU elsewhere) equals librosa."""
    pytest.importorskip("triton")
    if not torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("triton needs a GPU or TRITON_INTERPRET=1")
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    x = torch.from_numpy(rng.standard_normal(2999) * 0.2).to(torch.float64)
    ours = ops.mel(x.to(dev), 16000, 256, 64, n_mels=40, backend="triton").cpu()
    basis = librosa.filters.mel(sr=16000, n_fft=256, n_mels=40, dtype=np.float64)
    ref = basis @ np.abs(librosa.stft(x.numpy(), n_fft=256, hop_length=64)) ** 2
    assert _rel(ours.numpy(), ref) <= 1e-10
