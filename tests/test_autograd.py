"""The kernels are forward-only. When autograd records a call (grad mode on, an input requires
grad), every op must either differentiate through its torch backend or say why it cannot; an
input is never silently detached. Gradients are checked against finite differences in float64
(torch.autograd.gradcheck), an independent reference."""
import numpy as np
import pytest
import torch

from sonicore import _backend
from sonicore.ops import irfft, istft, log_mel, median_filter, mel, rfft, stft
from sonicore.ops.mel import mmaudio_mel, whisper_log_mel


def _signal(rng, *shape, scale=1.0):
    return torch.from_numpy(rng.standard_normal(shape) * scale).requires_grad_()


def _spec(rng, frames, n_fft):
    bins = n_fft // 2 + 1
    s = rng.standard_normal((frames, bins)) + 1j * rng.standard_normal((frames, bins))
    return torch.from_numpy(s.T.copy()).requires_grad_()  # (bins, frames) complex128


# name -> (op taking the differentiable input, input maker); sizes are small and awkward.
CASES = {
    "stft": (lambda x, **kw: stft(x, 64, 24, **kw), lambda rng: _signal(rng, 2, 181)),
    "istft": (lambda s, **kw: istft(s, 64, 16, **kw), lambda rng: _spec(rng, 9, 64)),
    "rfft": (lambda x, **kw: rfft(x, **kw), lambda rng: _signal(rng, 3, 50)),
    "irfft": (lambda s, **kw: irfft(s, 38, **kw), lambda rng: torch.from_numpy(
        rng.standard_normal((2, 20)) + 1j * rng.standard_normal((2, 20))).requires_grad_()),
    "mel": (lambda x, **kw: mel(x, 8000, n_fft=64, hop_length=20, n_mels=10, **kw),
            lambda rng: _signal(rng, 1, 150)),
    "log_mel": (lambda x, **kw: log_mel(x, 8000, n_fft=64, hop_length=20, n_mels=10, **kw),
                lambda rng: _signal(rng, 150)),
    "whisper_log_mel": (lambda x, **kw: whisper_log_mel(x, **kw), lambda rng: _signal(rng, 420)),
    "mmaudio_mel": (lambda x, **kw: mmaudio_mel(x, **kw), lambda rng: _signal(rng, 700, scale=0.3)),
    "median_filter": (lambda x, **kw: median_filter(x, 5, **kw), lambda rng: _signal(rng, 3, 23)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_gradients_match_finite_differences(rng, name):
    op, make = CASES[name]
    x = make(rng)
    y = op(x)
    assert y.requires_grad, f"{name}: the output lost the input's autograd graph"
    # Real views of complex outputs, so gradcheck sees every real component.
    f = (lambda t: torch.view_as_real(op(t))) if y.is_complex() else op
    assert torch.autograd.gradcheck(f, (x,), eps=1e-6, atol=1e-6, rtol=1e-4, fast_mode=True)


def test_stft_window_gradient(rng):
    x = torch.from_numpy(rng.standard_normal(200))
    w = torch.from_numpy(rng.uniform(0.2, 1.0, 48)).requires_grad_()
    y = stft(x, 64, 16, win_length=48, window=w)
    assert y.requires_grad
    assert torch.autograd.gradcheck(lambda w: torch.view_as_real(stft(x, 64, 16, win_length=48, window=w)),
                                     (w,), eps=1e-6, atol=1e-6, rtol=1e-4, fast_mode=True)


@pytest.mark.parametrize("name", ["stft", "istft", "rfft", "irfft", "mel", "median_filter"])
def test_forced_kernel_says_it_has_no_backward(rng, name):
    op, make = CASES[name]
    x = make(rng)
    with pytest.raises(_backend.BackendUnavailable, match="backend 'cpu' cannot take this call: it has no backward"):
        op(x, backend="cpu")
    # Without autograd recording, the same call runs the kernel and matches the torch backend.
    with torch.no_grad():
        got, want = op(x, backend="cpu"), op(x, backend="torch")
    assert not got.requires_grad
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-9, atol=1e-9)


def test_fused_nn_kernels_say_it_too(rng):
    from sonicore.ops import nn
    x = torch.from_numpy(rng.standard_normal((2, 5, 8)).astype(np.float32)).requires_grad_()
    shift, scale = (torch.from_numpy(rng.standard_normal((2, 1, 8)).astype(np.float32)) for _ in range(2))
    with pytest.raises(_backend.BackendUnavailable, match="it has no backward"):
        nn.adaln_layernorm(x, shift, scale, backend="cpu")
    y = nn.adaln_layernorm(x, shift, scale)
    assert y.requires_grad
    want = torch.nn.functional.layer_norm(x, (8,), eps=1e-5) * (1 + scale) + shift
    (g,) = torch.autograd.grad(y.square().sum(), [x])
    (gw,) = torch.autograd.grad(want.square().sum(), [x])
    torch.testing.assert_close(g, gw, rtol=1e-4, atol=1e-5)
