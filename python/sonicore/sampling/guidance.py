"""Classifier-free guidance settings: v = w * v_cond + (1 - w) * v_uncond."""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Tuple, Union

import torch


@dataclass
class Guidance:
    """How `sample` combines the conditional and unconditional velocities.

    Attributes:
        scale: w, a float or a (B,) sequence/tensor of per-sample strengths (MMAudio uses 4.5).
        uncond: the conditions of the unconditional (or negative) branch, a mapping of the same
            keyword arguments velocity_fn takes. Keys left out are shared with the conditional
            branch (MMAudioSep keeps its mixture latent in both). Required: guidance without an
            unconditional branch is an error.
        batched: evaluate both branches in ONE call of velocity_fn on the doubled batch
            [conditional rows; unconditional rows] (default), or in two calls (less memory).
        interval: (t_lo, t_hi): guidance only for t_lo <= t <= t_hi; elsewhere only the
            conditional branch is evaluated. None: every step.
    """

    scale: Union[float, Any] = 4.5
    uncond: Optional[Mapping[str, Any]] = None
    batched: bool = True
    interval: Optional[Tuple[float, float]] = None

    def validate(self, batch: int, device) -> Tuple[Optional[float], Optional[torch.Tensor]]:
        """Returns (scalar w or None, (B,) float32 tensor of w or None); raises on bad settings."""
        if self.uncond is None:
            raise ValueError("classifier-free guidance needs an unconditional branch: pass "
                             "Guidance(scale, uncond={...}) with the empty or negative conditions")
        if not isinstance(self.uncond, Mapping):
            raise TypeError(f"Guidance.uncond must be a mapping of velocity_fn keyword arguments, "
                            f"got {type(self.uncond).__name__}")
        if self.interval is not None:
            lo, hi = self.interval
            if not (0.0 <= lo <= hi <= 1.0):
                raise ValueError(f"Guidance.interval must be (lo, hi) with 0 <= lo <= hi <= 1, got {self.interval}")
        w = self.scale
        if isinstance(w, numbers.Real) and not isinstance(w, bool):
            return self.validate_scalar(float(w))
        t = torch.as_tensor(w, dtype=torch.float32).to(device)
        if t.dim() == 0:  # one strength for every sample
            return self.validate_scalar(float(t))
        if t.dim() != 1 or t.shape[0] != batch:
            raise ValueError(f"per-sample guidance must have shape ({batch},), got {tuple(t.shape)}")
        if not bool(torch.isfinite(t).all()):
            raise ValueError("per-sample guidance strengths must be finite")
        return None, t.contiguous()

    @staticmethod
    def validate_scalar(w: float) -> Tuple[float, None]:
        if not math.isfinite(w):
            raise ValueError(f"guidance scale must be finite, got {w}")
        return w, None

    def active(self, t: float) -> bool:
        return self.interval is None or (self.interval[0] <= t <= self.interval[1])


def batch_conditions(cond: Mapping[str, Any], uncond: Mapping[str, Any], batch: int) -> dict:
    """Keyword arguments for one call on the doubled batch: each tensor condition becomes
    cat([cond, uncond]) along dim 0 (an uncond of batch 1 is broadcast to B)."""
    out = {}
    for k in set(cond) | set(uncond):
        if k not in cond:
            raise ValueError(f"unconditional condition {k!r} has no conditional counterpart; "
                             "pass it in conditions too")
        c = cond[k]
        u = uncond.get(k, c)
        if isinstance(c, torch.Tensor):
            if not isinstance(u, torch.Tensor):
                raise TypeError(f"condition {k!r} is a tensor in one branch and not in the other")
            if c.dim() == 0 or c.shape[0] != batch:
                raise ValueError(f"condition {k!r} must have the batch size {batch} first to be batched, "
                                 f"got shape {tuple(c.shape)}; use Guidance(batched=False) otherwise")
            if u.dim() == 0 or u.shape[0] not in (1, batch) or u.shape[1:] != c.shape[1:]:
                raise ValueError(f"unconditional {k!r} has shape {tuple(u.shape)}; expected "
                                 f"{(batch,) + tuple(c.shape[1:])} or batch 1")
            out[k] = torch.cat([c, u.expand_as(c).to(c.dtype)], 0)
        else:
            if u is not c and u != c:
                raise ValueError(f"condition {k!r} is not a tensor and differs between the branches, so "
                                 "they cannot share one call; use Guidance(batched=False)")
            out[k] = c
    return out
