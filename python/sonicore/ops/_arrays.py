"""numpy <-> torch at the ops boundary: output type follows input, without copies."""
from __future__ import annotations

from typing import Any, Tuple

import numpy as np
import torch


def to_torch(x: Any, name: str = "input") -> Tuple[torch.Tensor, bool]:
    """Returns (tensor, came_from_numpy). numpy arrays are wrapped without a copy
    (a negative-stride or read-only array is copied, since torch cannot view it)."""
    if isinstance(x, torch.Tensor):
        return x, False
    if isinstance(x, np.ndarray):
        if any(s < 0 for s in x.strides) or not x.flags.writeable:
            x = np.array(x, copy=True)
        return torch.from_numpy(x), True
    raise TypeError(f"{name} must be a numpy array or a torch tensor, got {type(x).__name__}")


def from_torch(t: torch.Tensor, as_numpy: bool):
    """Returns t as the kind the caller gave us."""
    if as_numpy:
        return t.detach().cpu().numpy()
    return t


def cpu_view(t: torch.Tensor) -> np.ndarray:
    """Zero-copy numpy view of a CPU tensor for the C++ kernels (buffer protocol)."""
    return t.detach().numpy()
