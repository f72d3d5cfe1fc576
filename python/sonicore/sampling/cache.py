"""Step caching: skip a network evaluation when the input changed little since the last one.

TeaCache-style: the relative L1 distance between the current input and the input at the
last real evaluation, ``mean|x - x_ref| / mean|x_ref|``, is compared with ``threshold``; below
it the last velocity is reused. The first and the last step are always evaluated. Off by
default; bench/bench_sampling.py measures its speed / quality trade-off.
"""
from __future__ import annotations


class StepCache:
    """Reuse policy for ``sample(..., cache=StepCache(threshold))``.

    Attributes after a run: ``evaluations`` (real velocity_fn calls, counting a batched
    guidance call once) and ``reused`` (steps that reused the cached velocity).
    """

    def __init__(self, threshold: float = 0.05):
        if not (isinstance(threshold, (int, float)) and threshold >= 0):
            raise ValueError(f"StepCache threshold must be a number >= 0, got {threshold!r}")
        self.threshold = float(threshold)
        self.reset()

    def reset(self) -> None:
        self._ref = None
        self._last = None
        self.evaluations = 0
        self.reused = 0

    def evaluate(self, ev, buf, t, xs, i, n):
        if self._last is not None and i < n - 1:
            ref = self._ref
            change = float((xs - ref).abs().mean() / ref.abs().mean().clamp_min(1e-12))
            if change < self.threshold:
                self.reused += 1
                return self._last
        out = ev(buf, t)
        if self._ref is None:
            self._ref = xs.clone()
        else:
            self._ref.copy_(xs)
        self._last = out
        self.evaluations += 1
        return out
