"""Converters between other diffusion / flow parameterisations and this package's one.

Here: x_t = (1 - t) * noise + t * data, noise at t=0, data at t=1, velocity v = dx/dt =
data - noise (MMAudio). Each wrapper returns a ``velocity_fn(x, t, **conditions)`` for
``sample``; the point-wise helpers work on tensors of any shape, t broadcast per batch row.

| other convention | time mapping | wrapper |
| --- | --- | --- |
| rectified flow with noise at 1 (Stable Audio, SD3: x_s = (1-s) data + s noise, u = dx/ds) | s = 1 - t | ``noise_at_one`` |
| data (x0 / "sample") prediction | same t | ``velocity_from_data`` |
| noise (epsilon) prediction | same t | ``velocity_from_noise`` |
| EDM / VE: x_sigma = data + sigma * noise, denoiser D(x_sigma, sigma) | sigma = (1 - t) / t, x_sigma = x / t | ``edm_denoiser``, ``edm_epsilon`` |
| VP v-prediction: x = alpha data + sigma noise, alpha^2 + sigma^2 = 1, v = alpha noise - sigma data | alpha / sigma = t / (1 - t), x_vp = x / sqrt(t^2 + (1-t)^2) | ``vp_vprediction`` |
"""
from __future__ import annotations

import torch


def _rows(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """t (B,) shaped to broadcast over x (B, ...)."""
    t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
    return t.reshape((-1,) + (1,) * (x.dim() - 1)) if t.dim() == 1 else t


def time_from_sigma(sigma):
    """Flow time t for a noise-at-one time s (t = 1 - s)."""
    return 1 - sigma


def sigma_from_time(t):
    """Noise-at-one time s for a flow time t (s = 1 - t)."""
    return 1 - t


def time_from_edm_sigma(sigma):
    """Flow time t for an EDM noise level sigma (t = 1 / (1 + sigma)); sigma = inf -> t = 0."""
    return 1 / (1 + sigma)


def edm_sigma_from_time(t):
    """EDM noise level sigma for a flow time t (sigma = (1 - t) / t); t = 0 -> inf."""
    return (1 - t) / t


def data_from_velocity(x, t, v):
    """Data estimate x1 = x + (1 - t) v (what the ping-pong sampler jumps to)."""
    return x + (1 - _rows(t, x)) * v


def velocity_from_data(x, t, data):
    """Velocity from a data prediction: v = (data - x) / (1 - t); undefined at t = 1."""
    return (data - x) / (1 - _rows(t, x))


def velocity_from_noise(x, t, noise):
    """Velocity from a noise (epsilon) prediction: v = (x - noise) / t; undefined at t = 0."""
    return (x - noise) / _rows(t, x)


def noise_at_one(fn):
    """Wraps ``fn(x, s, **c) -> dx/ds`` of a model with noise at s=1 (Stable Audio, SD3)."""
    def velocity_fn(x, t, **conditions):
        return -fn(x, 1 - t, **conditions)
    return velocity_fn


def edm_denoiser(fn):
    """Wraps an EDM denoiser ``fn(x_sigma, sigma, **c) -> data estimate`` (sigma a (B,) tensor).

    Run the sampler from t_start = 1 / (1 + sigma_max) > 0 (sigma is infinite at t = 0) and
    to t_end < 1 (the velocity divides by 1 - t).
    """
    def velocity_fn(x, t, **conditions):
        tr = _rows(t, x)
        data = fn(x / tr, (1 - t) / t, **conditions)
        return (data - x) / (1 - tr)
    return velocity_fn


def edm_epsilon(fn):
    """Wraps an EDM epsilon model ``fn(x_sigma, sigma, **c) -> noise estimate``."""
    def velocity_fn(x, t, **conditions):
        tr = _rows(t, x)
        noise = fn(x / tr, (1 - t) / t, **conditions)
        return (x - noise) / tr
    return velocity_fn


def vp_vprediction(fn):
    """Wraps a VP v-prediction model ``fn(x_vp, alpha, sigma, **c) -> alpha*noise - sigma*data``.

    alpha and sigma are (B,) tensors with alpha^2 + sigma^2 = 1; map them to the model's own
    time input (e.g. angle atan2(sigma, alpha) or log-SNR 2 log(alpha / sigma)) inside fn.
    """
    def velocity_fn(x, t, **conditions):
        norm = torch.sqrt(t * t + (1 - t) * (1 - t))
        alpha, sigma = t / norm, (1 - t) / norm
        a, s, n = _rows(alpha, x), _rows(sigma, x), _rows(norm, x)
        xvp = x / n
        vp = fn(xvp, alpha, sigma, **conditions)
        data = a * xvp - s * vp
        noise = s * xvp + a * vp
        return data - noise
    return velocity_fn
