"""Reference and comparison shared by the GPU STFT tests (test_stft_gpu.py, test_stft_triton.py).
The reference is written from torch.stft's definition, independently of sonicore.ops.stft."""
import torch


def assert_close(ours, ref, output, dtype):
    """Tolerance from the dtype, relative to the spectrum's scale. A log-magnitude is only as
    well conditioned as its magnitude: two float32 FFTs (ours vs torch.stft's, e.g. cuFFT
    plans of different layouts) can differ by ~1e-7 of the frame's scale, which is a large
    relative error in a near-zero bin; so logs are compared through their magnitudes."""
    tol = 2e-5 if dtype == torch.float32 else 1e-11
    assert ours.shape == ref.shape
    if output == "log_magnitude":
        ours, ref = torch.exp(ours), torch.exp(ref)
    scale = max(1.0, ref.abs().max().item())
    err = (ours - ref).abs().max().item() / scale
    assert err <= tol, err


def ref_out(spec, output, eps, floor):
    """The requested output of a complex spectrum: complex, power, magnitude or log_magnitude."""
    if output == "complex":
        return spec
    p = spec.real.square() + spec.imag.square()
    if output == "power":
        return p
    m = torch.sqrt(p + eps)
    return m if output == "magnitude" else torch.log(torch.clamp(m, min=floor))
