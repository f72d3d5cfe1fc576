"""Triton STFT kernels (kernels/stft.py) vs torch.stft / torch.istft. Here they run in the
Triton interpreter on CPU tensors (TRITON_INTERPRET=1 from conftest), at small sizes; on a
GPU machine the same tests run on CUDA tensors."""
import importlib
import os

import numpy as np
import pytest
import torch

import sonicore.ops as ops
from _stft_cases import assert_close, ref_out

pytest.importorskip("triton")
gpu = importlib.import_module("sonicore.ops._stft_gpu")
_DEV = "cuda" if torch.cuda.is_available() else "cpu"
if _DEV == "cpu" and os.environ.get("TRITON_INTERPRET") != "1":  # pragma: no cover
    pytest.skip("triton needs a GPU or TRITON_INTERPRET=1", allow_module_level=True)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("output", ["complex", "magnitude", "power", "log_magnitude"])
def test_triton_stft_matches_torch(rng, dtype, output):
    n_fft = int(rng.choice([64, 100, 128]))
    hop = int(rng.choice([16, 33, n_fft // 2]))
    n = int(rng.choice([n_fft + 1, 509, 1013]))  # one past a frame, primes
    x = torch.from_numpy(rng.standard_normal((2, n))).to(dtype).to(_DEV)
    w = torch.from_numpy(rng.random(n_fft) + 0.05).to(dtype).to(_DEV)  # random window
    for center, pad_mode in ((True, "reflect"), (True, "constant"), (False, "reflect")):
        for normalized, onesided in ((False, True), (True, False)):
            ours = gpu.stft(x, w, n_fft, hop, center, pad_mode, normalized, onesided, output, 1e-9, 1e-5, "triton")
            ref = ref_out(torch.stft(x, n_fft, hop, window=w, center=center, pad_mode=pad_mode,
                                     normalized=normalized, onesided=onesided, return_complex=True),
                          output, 1e-9, 1e-5)
            assert_close(ours, ref, output, dtype)


def test_triton_stft_through_ops_api(rng):
    x = torch.from_numpy(rng.standard_normal((3, 2, 811)).astype(np.float32)).to(_DEV)
    w = torch.hann_window(128, device=_DEV)
    ours = ops.stft(x, 128, 32, window=w, output="power", backend="triton")
    ref = torch.stft(x.reshape(6, -1), 128, 32, window=w, return_complex=True).abs().square().reshape(3, 2, 65, -1)
    assert ours.shape == ref.shape and (ours - ref).abs().max().item() <= 2e-5 * ref.abs().max().item()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_triton_istft_matches_torch(rng, dtype):
    n_fft = int(rng.choice([64, 96, 128]))
    hop = int(rng.choice([16, 31, n_fft // 4]))
    n = int(rng.choice([n_fft + 1, 701, 997]))
    x = torch.from_numpy(rng.standard_normal((2, n))).to(dtype).to(_DEV)
    w = torch.from_numpy(rng.random(n_fft) + 0.1).to(dtype).to(_DEV)  # nowhere zero: NOLA holds
    tol = 2e-5 if dtype == torch.float32 else 1e-12
    for center in (True, False):
        for normalized in (False, True):
            spec = torch.stft(x, n_fft, hop, window=w, center=center, normalized=normalized, return_complex=True)
            for length in (None, n, n + 37, max(1, n - 50)):
                ours = gpu.istft(spec, w, n_fft, hop, center, normalized, True, length, "triton")
                ref = torch.istft(spec, n_fft, hop, window=w, center=center, normalized=normalized,
                                  length=length)
                assert ours.shape == ref.shape
                assert (ours - ref).abs().max().item() <= tol * max(1.0, ref.abs().max().item())
    # Two-sided input: only the first n_fft // 2 + 1 bins count, as in torch.istft.
    spec2 = torch.stft(x, n_fft, hop, window=w, onesided=False, return_complex=True)
    ours = gpu.istft(spec2, w, n_fft, hop, True, False, False, n, "triton")
    assert (ours - x).abs().max().item() <= 10 * tol


def test_triton_roundtrip_float32(rng):
    x = torch.from_numpy(rng.standard_normal((1, 4099)).astype(np.float32)).to(_DEV)
    w = torch.hann_window(256, device=_DEV)
    spec = gpu.stft(x, w, 256, 64, True, "reflect", False, True, "complex", 0.0, 1e-10, "triton")
    y = gpu.istft(spec, w, 256, 64, True, False, True, 4099, "triton")
    assert ((y - x).norm() / x.norm()).item() <= 1e-6


def test_triton_nola_and_bad_arguments():
    x = torch.randn(1, 500, device=_DEV)
    w = torch.hann_window(64, periodic=False, device=_DEV)  # zero at both ends
    spec = torch.stft(x, 64, 16, window=w, center=False, return_complex=True)
    with pytest.raises(ValueError, match="overlap-add"):
        gpu.istft(spec, w, 64, 16, False, False, True, None, "triton")
    with pytest.raises(ValueError, match="window must have shape"):
        gpu.stft(x, w[:10], 64, 16, True, "reflect", False, True, "power", 0.0, 1e-10, "triton")
    with pytest.raises(TypeError, match="dtype"):
        gpu.stft(x, w.double(), 64, 16, True, "reflect", False, True, "power", 0.0, 1e-10, "triton")
    with pytest.raises(ValueError, match="at least n_fft"):
        gpu.stft(x[:, :50], w, 64, 16, False, "reflect", False, True, "power", 0.0, 1e-10, "triton")
    with pytest.raises(ValueError, match="reflect padding"):
        gpu.stft(x[:, :20], w, 64, 16, True, "reflect", False, True, "power", 0.0, 1e-10, "triton")
    with pytest.raises(ValueError, match="bins"):
        gpu.istft(spec[:, :10], w, 64, 16, True, False, True, None, "triton")
    with pytest.raises(ValueError, match="backend"):
        gpu.stft(x, w, 64, 16, True, "reflect", False, True, "power", 0.0, 1e-10, "metal")


def test_nan_propagates_to_its_frames_only():
    x = torch.randn(1, 640, device=_DEV)
    x[0, 320] = float("nan")
    w = torch.hann_window(64, device=_DEV)
    p = gpu.stft(x, w, 64, 64, False, "reflect", False, True, "power", 0.0, 1e-10, "triton")
    bad = torch.isnan(p).any(dim=1)[0]
    assert bad.tolist() == [t == 5 for t in range(10)]


def test_triton_istft_through_ops_api(rng):
    x = torch.from_numpy(rng.standard_normal((2, 1201))).to(_DEV)  # float64
    w = torch.from_numpy(np.hanning(130)[:-1].copy()).to(_DEV)    # 129 samples: odd n_fft on purpose
    spec = ops.stft(x, 129, 32, window=w, backend="torch")
    ours = ops.istft(spec, 129, 32, window=w, length=1201, backend="triton")
    ref = torch.istft(spec, 129, 32, window=w, length=1201)
    assert ours.shape == ref.shape and ours.device == ref.device
    assert (ours - ref).abs().max().item() <= 1e-12 * max(1.0, ref.abs().max().item())


@pytest.mark.parametrize("tiles", [(32, 2, 4), (64, 4, 4), (2048, 4, 8)], ids=str)
@pytest.mark.parametrize("pad_mode", ["reflect", "constant", "replicate", "circular"])
def test_triton_framing_tiles(rng, monkeypatch, tiles, pad_mode):
    # Several frames per program (the GPU sweep's tiles): tiles that straddle two signals of the
    # batch, a ragged last tile, edge frames with padding next to interior ones.
    monkeypatch.setattr(gpu, "FRAME_TILES", tiles)
    n_fft, hop = 128, 48
    x = torch.from_numpy(rng.standard_normal((3, 997))).to(_DEV)
    w = torch.from_numpy(rng.random(n_fft) + 0.05).to(_DEV)
    for center in (True, False):
        ours = gpu.stft(x, w, n_fft, hop, center, pad_mode, False, True, "complex", 1e-9, 1e-5, "triton")
        ref = torch.stft(x, n_fft, hop, window=w, center=center, pad_mode=pad_mode, return_complex=True)
        assert ours.shape == ref.shape
        assert_close(ours, ref, "complex", torch.float64)
