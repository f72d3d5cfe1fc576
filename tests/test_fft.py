"""sonicore.ops.rfft / irfft (our C++ real FFT) against numpy.fft, in float64 and float32."""
import os
import subprocess
import sys
import threading

import numpy as np
import pytest
import torch

from sonicore import _backend
from sonicore.ops import irfft, rfft

POW2 = [64, 128, 256, 512, 1024, 2048, 4096, 8192]
MIXED = [400, 960, 1536, 1920, 480, 1200, 6, 10, 30, 90, 2 * 3 * 5 * 7]
AWKWARD = [2, 4, 14, 22, 2 * 61, 2 * 3 * 59]


def _rel(a, b):
    return np.abs(a - b).max() / max(np.abs(b).max(), 1e-300)


@pytest.mark.parametrize("n", POW2 + MIXED + AWKWARD)
def test_rfft_matches_numpy_float64(rng, n):
    x = rng.standard_normal((3, n))
    got = rfft(x, backend="cpu")
    ref = np.fft.rfft(x)
    assert got.dtype == np.complex128 and got.shape == ref.shape
    assert _rel(got, ref) < 1e-13
    back = irfft(got, n, backend="cpu")
    assert back.dtype == np.float64
    assert _rel(back, np.fft.irfft(ref, n)) < 1e-13


@pytest.mark.parametrize("n", [64, 400, 1024, 1920, 8192, 22])
def test_rfft_float32_close_to_float64_reference(rng, n):
    x = rng.standard_normal((2, 5, n)).astype(np.float32)
    got = rfft(x, backend="cpu")
    assert got.dtype == np.complex64 and got.shape == (2, 5, n // 2 + 1)
    ref = np.fft.rfft(x.astype(np.float64))
    assert _rel(got, ref) < 2e-6
    back = irfft(got, n, backend="cpu")
    assert _rel(back, x) < 2e-6


def test_irfft_ignores_imaginary_dc_and_nyquist_like_numpy(rng):
    spec = rng.standard_normal((4, 257)) + 1j * rng.standard_normal((4, 257))
    got = irfft(spec, 512, backend="cpu")
    np.testing.assert_allclose(got, np.fft.irfft(spec, 512), rtol=0, atol=1e-13)


def test_irfft_length_pads_or_crops_bins_like_numpy(rng):
    spec = rng.standard_normal(100) + 1j * rng.standard_normal(100)
    for n in (64, 300):
        np.testing.assert_allclose(irfft(spec, n, backend="cpu"), np.fft.irfft(spec, n), atol=1e-12)


def test_torch_in_torch_out(rng):
    x = torch.from_numpy(rng.standard_normal((2, 960)).astype(np.float32))
    got = rfft(x)
    assert isinstance(got, torch.Tensor) and got.dtype == torch.complex64
    torch.testing.assert_close(got, torch.fft.rfft(x.double()).to(torch.complex64), rtol=2e-5, atol=2e-5)


def test_sizes_the_cpu_kernel_refuses_fall_back_to_torch(rng):
    # odd size, and an even size with a prime factor above the largest radix
    for n in (63, 2 * 67):
        x = rng.standard_normal(n)
        np.testing.assert_allclose(rfft(x), np.fft.rfft(x), atol=1e-12)
        with pytest.raises(_backend.BackendUnavailable, match="cpu"):
            rfft(x, backend="cpu")


def test_bad_input():
    with pytest.raises(TypeError, match="float32 or float64"):
        rfft(np.arange(8))
    with pytest.raises(ValueError, match="at least one sample"):
        rfft(np.zeros((3, 0)))
    with pytest.raises(TypeError, match="complex"):
        irfft(np.zeros(5))
    with pytest.raises(TypeError, match="numpy array or a torch tensor"):
        rfft([1.0, 2.0])


def test_plan_cache_is_thread_safe(rng):
    """Many threads asking for new sizes at once get correct results."""
    sizes = [2 * 3 * 5 * k for k in (7, 11, 13, 17, 19, 23)] * 3
    xs = [rng.standard_normal((2, n)) for n in sizes]
    results = [None] * len(xs)

    def work(i):
        results[i] = rfft(xs[i], backend="cpu")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(xs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for x, r in zip(xs, results):
        assert _rel(r, np.fft.rfft(x)) < 1e-13


_ISA_SCRIPT = """
import hashlib, numpy as np, sonicore
from sonicore.ops import stft, rfft
rng = np.random.default_rng(7)
x = rng.standard_normal(20011).astype(np.float32)
w = rng.random(1024).astype(np.float32)
a = stft(x, 1024, 256, window=w, backend="cpu")
b = rfft(rng.standard_normal((4, 960)), backend="cpu")
c = stft(x, 400, 160, window=w[:400], output="power", backend="cpu")
print(sonicore._C.fft_kernel_isa(), hashlib.sha256(a.tobytes() + b.tobytes() + c.tobytes()).hexdigest())
"""


def test_every_isa_path_gives_bitwise_identical_results():
    """AVX-512, AVX2 and portable kernels do the same IEEE operations in the same order."""
    out = {}
    for isa in ("scalar", "avx2", "avx512"):
        env = dict(os.environ, SONICORE_ISA=isa)
        res = subprocess.run([sys.executable, "-c", _ISA_SCRIPT], env=env, check=True,
                             capture_output=True, text=True)
        used, digest = res.stdout.split()
        out[used] = digest
    assert "scalar" in out
    assert len(set(out.values())) == 1, out
