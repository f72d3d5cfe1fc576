"""Flow-matching sampling for the MMAudio network: Euler steps with classifier-free guidance.

Convention (DESIGN.md, the original's generate()/separate()): t = 0 is noise, t = 1 is data; the grid is
linspace(0, 1, steps+1) in float32; x_{k+1} = x_k + (t_{k+1} - t_k) * v(t_k, x_k), never evaluated at t = 1;
v = s*v_cond + (1-s)*v_uncond (only v_cond when s < 1); the conditional and the unconditional branch
run as one batch of 2B; conditions are preprocessed once per call.
"""
from __future__ import annotations

from typing import Callable, List, Optional

import torch

from .network import MMAudioNetwork, PreprocessedConditions


def _euler(velocity: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x0: torch.Tensor, steps: int,
           trajectory: Optional[List[torch.Tensor]] = None) -> torch.Tensor:
    """Plain explicit Euler from t=0 to t=1. velocity(t_scalar, x) -> dx/dt."""
    ts = torch.linspace(0, 1, steps + 1, dtype=torch.float32)
    x = x0
    if trajectory is not None:
        trajectory.append(x)
    ts_dev = ts.to(x0.device)
    for k in range(steps):
        x = x + (ts[k + 1] - ts[k]).item() * velocity(ts_dev[k], x)
        if trajectory is not None:
            trajectory.append(x)
    return x


def cfg_velocity(net: MMAudioNetwork, cond: PreprocessedConditions, empty: Optional[PreprocessedConditions],
                 cfg_strength: float, x_mix: Optional[torch.Tensor] = None):
    """velocity(t, x) for the sampler: one network call on the batched [cond; uncond] inputs.

    cond: conditions at batch B; empty: the unconditional ones (batch 1 or B); x_mix (B, N, C) for
    MMAudioSep (the unconditional branch keeps the mixture).
    """
    use_cfg = cfg_strength >= 1.0 and empty is not None
    if use_cfg:
        B = cond.clip_f.shape[0]
        both = cond.cat(empty.expand(B) if empty.clip_f.shape[0] == 1 else empty)
        mix = None if x_mix is None else torch.cat([x_mix, x_mix], 0)
    else:
        both, mix = cond, x_mix

    def velocity(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        xb = torch.cat([x, x], 0) if use_cfg else x
        tb = t.to(x.dtype).expand(xb.shape[0])
        v = net.predict_flow(xb, tb, both, mix)
        if not use_cfg:
            return v
        v_cond, v_uncond = v.chunk(2, 0)
        return cfg_strength * v_cond + (1 - cfg_strength) * v_uncond
    return velocity


class _GraphedVelocity:
    """Captures one velocity evaluation in a CUDA graph and replays it at every step (GPU only).

    Static input buffers (x, t) are refreshed before each replay; the output buffer is cloned so the
    caller may keep it across steps."""

    def __init__(self, velocity, x_like: torch.Tensor):
        self.x = x_like.clone()
        self.t = torch.zeros((), dtype=torch.float32, device=x_like.device)
        stream = torch.cuda.Stream(device=x_like.device)
        stream.wait_stream(torch.cuda.current_stream(x_like.device))
        with torch.cuda.stream(stream):
            for _ in range(2):  # warm-up: packs weights, builds RoPE tables, picks kernels
                velocity(self.t, self.x)
        torch.cuda.current_stream(x_like.device).wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.out = velocity(self.t, self.x)

    def __call__(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        self.x.copy_(x)
        self.t.copy_(t)
        self.graph.replay()
        return self.out.clone()


@torch.no_grad()
def sample_latent(net: MMAudioNetwork, x0: torch.Tensor, cond: PreprocessedConditions,
                  empty: Optional[PreprocessedConditions], *, steps: int = 25, cfg_strength: float = 4.5,
                  x_mix: Optional[torch.Tensor] = None, trajectory: Optional[List[torch.Tensor]] = None,
                  cuda_graph: Optional[bool] = None) -> torch.Tensor:
    """Runs the sampler from noise x0 (B, N, C) (normalised latent space) and returns the final state
    in the same normalised space; `net.unnormalize` maps it to VAE latents. trajectory, when a list,
    receives x_0 ... x_steps. cuda_graph (default: on for CUDA tensors) replays one captured network
    evaluation per step."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    vel = cfg_velocity(net, cond, empty, float(cfg_strength), x_mix)
    if cuda_graph is None:
        cuda_graph = x0.is_cuda
    if cuda_graph:
        if not x0.is_cuda:
            raise ValueError("cuda_graph=True needs the network and x0 on a CUDA device")
        vel = _GraphedVelocity(vel, x0)
    return _euler(vel, x0, steps, trajectory)
