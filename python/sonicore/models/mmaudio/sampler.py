"""Flow-matching sampling for the MMAudio network through sonicore.sampling.sample.

Convention (DESIGN.md, the original's generate()/separate()): t = 0 is noise, t = 1 is data; 25 uniform
Euler steps by default, never evaluated at t = 1; v = s*v_cond + (1-s)*v_uncond (only v_cond when s < 1);
the conditional and unconditional branches run as one batch of 2B; conditions are preprocessed once per
call and passed to every step as tensors; on CUDA the loop is captured once in a CUDA graph.
"""
from __future__ import annotations

import dataclasses
from typing import List, Optional

import torch

from ...sampling import Guidance, sample
from .network import MMAudioNetwork, PaddedConditions, PreprocessedConditions

_FIELDS = [f.name for f in dataclasses.fields(PreprocessedConditions)]


def velocity_fn(net: MMAudioNetwork):
    """velocity_fn(x, t, **conditions) for sonicore.sampling.sample: the conditions are the fields of
    PreprocessedConditions (clip_f, sync_f, text_f, clip_f_c, text_f_c) plus x_mix for MMAudioSep, and
    latent_lens / clip_lens for padded batches (PaddedConditions).

    One function object per network (kept on the network): the CUDA-graph cache is keyed on the
    function, so a fresh closure per call would re-capture the whole loop on every call."""
    cached = net.__dict__.get("_sonicore_velocity_fn")
    if cached is not None:
        return cached

    def fn(x, t, clip_f, sync_f, text_f, clip_f_c, text_f_c, x_mix=None, latent_lens=None, clip_lens=None):
        cond = PreprocessedConditions(clip_f, sync_f, text_f, clip_f_c, text_f_c) if latent_lens is None else \
            PaddedConditions(clip_f, sync_f, text_f, clip_f_c, text_f_c, latent_lens, clip_lens)
        dt = net.dtype
        return net.predict_flow(x.to(dt), t.to(dt), cond, None if x_mix is None else x_mix.to(dt))
    net.__dict__["_sonicore_velocity_fn"] = fn
    return fn


@torch.no_grad()
def sample_latent(net: MMAudioNetwork, x0: torch.Tensor, cond: PreprocessedConditions,
                  empty: Optional[PreprocessedConditions], *, steps: int = 25, cfg_strength: float = 4.5,
                  x_mix: Optional[torch.Tensor] = None, trajectory: Optional[List[torch.Tensor]] = None,
                  solver: str = "euler", cuda_graph: Optional[bool] = None) -> torch.Tensor:
    """Runs the sampler from noise x0 (B, N, C) (normalised latent space) and returns the final state
    (B, N, C) float32 in the same normalised space; `net.unnormalize` maps it to VAE latents.

    cond: conditions at batch B; empty: the unconditional ones (batch 1 or B), unused when
    cfg_strength <= 1 (below 1 the original uses v_cond only; at 1 guidance equals v_cond); x_mix (B, N, C): MMAudioSep's mixture, kept in both branches.
    Rows of different durations: cond is then net.preprocess_conditions(..., latent_lens=..., ...) (a
    PaddedConditions) and empty must be built with the same lengths; x0 is padded to the longest row.
    trajectory, when a list, receives x_0 ... x_steps. cuda_graph (default: on for CUDA tensors).
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    # Valid lengths (batches of different durations) are shared by both guidance branches.
    conditions = {k: getattr(cond, k) for k in _FIELDS}
    if cond.latent_lens is not None:
        conditions.update(latent_lens=cond.latent_lens, clip_lens=cond.clip_lens)
    if cfg_strength > 1.0 and empty is not None and (empty.latent_lens is None) != (cond.latent_lens is None):
        raise ValueError("cond and empty must both be padded with the same valid lengths (or neither): build "
                         "empty with net.empty_conditions(..., latent_lens=..., clip_lens=..., sync_lens=...)")
    if x_mix is not None:
        conditions["x_mix"] = x_mix
    guidance = None
    # s = 1 gives v_cond exactly (1*v_cond + 0*v_uncond): the unconditional half is skipped.
    if cfg_strength > 1.0:
        if empty is None:
            raise ValueError("classifier-free guidance (cfg_strength > 1) needs the empty conditions")
        guidance = Guidance(float(cfg_strength), uncond={k: getattr(empty, k) for k in _FIELDS})
    if cuda_graph is None:
        # Padded batches read their lengths on the host every step: no CUDA graph for them.
        cuda_graph = x0.is_cuda and cond.latent_lens is None
    fn = velocity_fn(net)
    x0 = x0.float()
    warmed = net.__dict__.setdefault("_sonicore_warmed", set())
    warm_key = (tuple(x0.shape), x0.device, guidance is not None,
                tuple((k, tuple(getattr(v, "shape", ()))) for k, v in sorted(conditions.items())))
    if cuda_graph and warm_key not in warmed:
        # One eager evaluation first (once per shape): packs weights and builds the RoPE tables
        # outside the capture.
        warmed.add(warm_key)
        rows = 2 * x0.shape[0] if guidance is not None else x0.shape[0]
        warm = {k: (torch.cat([v, guidance.uncond[k].expand_as(v)]) if guidance is not None
                    and k in guidance.uncond else (torch.cat([v, v]) if guidance is not None else v))
                for k, v in conditions.items()}
        fn(torch.cat([x0] * (rows // x0.shape[0])), torch.zeros(rows, device=x0.device), **warm)
    callback = None
    if trajectory is not None:
        trajectory.append(x0.clone())
        callback = lambda step, n, t, x: trajectory.append(x.clone())  # noqa: E731
    return sample(fn, x0, steps=steps, solver=solver, cfg=guidance, conditions=conditions,
                  callback=callback, cuda_graph=bool(cuda_graph) and callback is None)
