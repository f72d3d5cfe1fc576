"""Flow-matching sampling engine: ``sample(velocity_fn, x0, steps=..., solver=..., cfg=...)``.

Convention (MMAudio): noise at t=0, data at t=1, velocity = dx/dt; other conventions are
converted at the edge with the helpers in ``sonicore.sampling.conversions``.
"""
from .guidance import Guidance, batch_conditions
from .sampler import SOLVERS, SamplingInterrupted, sample
from .schedules import shift_time, time_grid
from .cache import StepCache
from .progress import progress_callback
from . import conversions

__all__ = ["sample", "Guidance", "SOLVERS", "SamplingInterrupted", "time_grid", "shift_time",
           "StepCache", "progress_callback", "conversions", "batch_conditions"]
