"""Time grids for the sampler (noise at t=0, data at t=1)."""
from __future__ import annotations

import math
import numbers
from typing import Optional, Sequence, Union

import numpy as np
import torch

Schedule = Union[str, Sequence[float], np.ndarray, torch.Tensor]


def shift_time(t, shift: float):
    """SD3/Flux timestep shift written in this package's time (t = 1 - sigma).

    sigma' = shift * sigma / (1 + (shift - 1) * sigma) with sigma = 1 - t; shift > 1 spends
    more of the steps near the noise end. Works on floats, numpy arrays and tensors.
    """
    s = 1 - t
    return 1 - shift * s / (1 + (shift - 1) * s)


def time_grid(steps: Optional[int], schedule: Schedule = "uniform", *, t_start: float = 0.0,
              t_end: float = 1.0, shift: float = 3.0) -> np.ndarray:
    """The (steps + 1,) float32 times the sampler visits, first t_start, last t_end.

    schedule: "uniform" (float32 linspace, exactly MMAudio's grid), "shifted" (uniform, then
    ``shift_time(., shift)``), or an explicit sequence of times in [0, 1], strictly monotone
    (then ``steps`` may be None or must equal len - 1, and t_start / t_end are ignored).
    """
    if isinstance(schedule, str):
        if isinstance(steps, bool) or not isinstance(steps, numbers.Integral):
            raise TypeError(f"steps must be an int >= 1, got {type(steps).__name__}")
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        for name, v in (("t_start", t_start), ("t_end", t_end)):
            if not (isinstance(v, numbers.Real) and 0.0 <= float(v) <= 1.0):
                raise ValueError(f"{name} must be a time in [0, 1] (noise 0 -> data 1), got {v!r}")
        if t_start == t_end:
            raise ValueError(f"t_start and t_end must differ, both are {t_start}")
        grid = torch.linspace(float(t_start), float(t_end), int(steps) + 1, dtype=torch.float32).numpy()
        if schedule == "uniform":
            return grid
        if schedule == "shifted":
            if not (isinstance(shift, numbers.Real) and shift > 0 and math.isfinite(shift)):
                raise ValueError(f"shift must be a finite number > 0, got {shift!r}")
            return shift_time(grid.astype(np.float64), float(shift)).astype(np.float32)
        raise ValueError(f"schedule must be 'uniform', 'shifted' or a sequence of times, got {schedule!r}")
    if isinstance(schedule, torch.Tensor):
        times = schedule.detach().cpu().to(torch.float64).numpy()
    else:
        try:
            times = np.asarray(schedule, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"schedule must be a name or a sequence of times, got {schedule!r}") from exc
    if times.ndim != 1 or times.size < 2:
        raise ValueError(f"a time list needs at least 2 times in a 1-D sequence, got shape {times.shape}")
    if steps is not None and steps != times.size - 1:
        raise ValueError(f"steps={steps} does not match the {times.size} given times ({times.size - 1} steps)")
    if not np.all(np.isfinite(times)) or times.min() < 0.0 or times.max() > 1.0:
        raise ValueError(f"every time must be in [0, 1] (noise 0 -> data 1), got {times.tolist()}")
    diff = np.diff(times.astype(np.float32))
    if not (np.all(diff > 0) or np.all(diff < 0)):
        raise ValueError(f"times must be strictly monotone, got {times.tolist()}")
    return times.astype(np.float32)
