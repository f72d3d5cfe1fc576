"""CUDA STFT kernels (csrc/cuda/stft_kernels.cu) and the Triton ones on a real GPU, vs
torch.stft / torch.istft on the same GPU. Skipped cleanly where no CUDA device is found."""
import importlib

import pytest
import torch

from sonicore._backend import cuda_kernels_usable

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
gpu = importlib.import_module("sonicore.ops._stft_gpu")


def _backends():
    names = []
    if cuda_kernels_usable()[0]:
        names.append("cuda")
    try:
        import triton  # noqa: F401
        names.append("triton")
    except ImportError:
        pass
    return names


def _ref_out(spec, output, eps, floor):
    if output == "complex":
        return spec
    p = spec.real.square() + spec.imag.square()
    if output == "power":
        return p
    m = torch.sqrt(p + eps)
    return m if output == "magnitude" else torch.log(torch.clamp(m, min=floor))


@requires_cuda
def test_cuda_backend_is_built():
    ok, why = cuda_kernels_usable()
    assert ok, why


@requires_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("output", ["complex", "magnitude", "power", "log_magnitude"])
def test_gpu_stft_matches_torch(rng, dtype, output):
    for backend in _backends():
        for n_fft, hop in ((400, 160), (1024, 256), (4096, 1024), (97, 31)):
            n = int(rng.choice([n_fft + 1, 44101, 160001]))
            x = torch.from_numpy(rng.standard_normal((3, n))).to(dtype).cuda()
            w = torch.from_numpy(rng.random(n_fft) + 0.05).to(dtype).cuda()
            for center, pad_mode in ((True, "reflect"), (True, "constant"), (False, "reflect")):
                for normalized, onesided in ((False, True), (True, False)):
                    ours = gpu.stft(x, w, n_fft, hop, center, pad_mode, normalized, onesided, output,
                                    1e-9, 1e-5, backend)
                    ref = _ref_out(torch.stft(x, n_fft, hop, window=w, center=center, pad_mode=pad_mode,
                                              normalized=normalized, onesided=onesided, return_complex=True),
                                   output, 1e-9, 1e-5)
                    tol = 2e-5 if dtype == torch.float32 else 1e-11
                    err = (ours - ref).abs().max().item() / max(1.0, ref.abs().max().item())
                    assert ours.shape == ref.shape and err <= tol, (backend, n_fft, center, pad_mode, err)


@requires_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gpu_istft_matches_torch(rng, dtype):
    for backend in _backends():
        for n_fft, hop in ((400, 160), (1024, 256), (96, 31)):
            n = int(rng.choice([n_fft + 1, 44101]))
            x = torch.from_numpy(rng.standard_normal((2, n))).to(dtype).cuda()
            w = torch.from_numpy(rng.random(n_fft) + 0.1).to(dtype).cuda()
            for center in (True, False):
                for normalized in (False, True):
                    spec = torch.stft(x, n_fft, hop, window=w, center=center, normalized=normalized,
                                      return_complex=True)
                    for length in (None, n, n + 37):
                        ours = gpu.istft(spec, w, n_fft, hop, center, normalized, True, length, backend)
                        ref = torch.istft(spec, n_fft, hop, window=w, center=center, normalized=normalized,
                                          length=length)
                        tol = 2e-5 if dtype == torch.float32 else 1e-11
                        err = (ours - ref).abs().max().item() / max(1.0, ref.abs().max().item())
                        assert ours.shape == ref.shape and err <= tol, (backend, n_fft, center, length, err)


@requires_cuda
def test_gpu_roundtrip_and_nola(rng):
    for backend in _backends():
        x = torch.from_numpy(rng.standard_normal((2, 44100 * 3 + 7))).float().cuda()
        w = torch.hann_window(1024, device="cuda")
        spec = gpu.stft(x, w, 1024, 256, True, "reflect", False, True, "complex", 0.0, 1e-10, backend)
        y = gpu.istft(spec, w, 1024, 256, True, False, True, x.shape[1], backend)
        assert ((y - x).norm() / x.norm()).item() <= 1e-6
        wz = torch.hann_window(1024, periodic=False, device="cuda")
        s2 = torch.stft(x, 1024, 256, window=wz, center=False, return_complex=True)
        with pytest.raises(ValueError, match="overlap-add"):
            gpu.istft(s2, wz, 1024, 256, False, False, True, None, backend)


@requires_cuda
def test_gpu_mel_front_ends_match_cpu(rng):
    import sonicore.ops as ops
    x = torch.from_numpy(rng.standard_normal(16000 * 5 + 3) * 0.1).float()
    for backend in _backends():
        ours = ops.whisper_log_mel(x.cuda(), 80, backend=backend).cpu()
        ref = ops.whisper_log_mel(x, 80, backend="torch")
        assert (ours - ref).abs().max().item() <= 1e-5
