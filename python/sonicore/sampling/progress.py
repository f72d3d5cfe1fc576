"""Progress reporting for ``sample(..., callback=...)``."""
from __future__ import annotations

from typing import Optional


def progress_callback(desc: str = "sampling", *, leave: bool = False, disable: Optional[bool] = None,
                      stop=None):
    """A callback that drives a tqdm bar (total = steps, set on the first call).

    stop: optional object with ``is_set()`` (a threading.Event): when set, the sampler stops
    at the end of the current step and raises SamplingInterrupted.
    """
    from tqdm.auto import tqdm

    state = {"bar": None}

    def callback(step: int, steps: int, t: float, x) -> bool:
        bar = state["bar"]
        if bar is None:
            bar = state["bar"] = tqdm(total=steps, desc=desc, leave=leave, disable=disable)
        bar.update(1)
        bar.set_postfix_str(f"t={t:.3f}", refresh=False)
        if step >= steps:
            bar.close()
        if stop is not None and stop.is_set():
            bar.close()
            return False
        return True

    return callback
