"""Networks (torch.nn) built from sonicore ops. Subpackages are imported on first use so that
`import sonicore.models` stays cheap: ``sonicore.models.whisper``, ``sonicore.models.mmaudio``."""
from __future__ import annotations

from .._lazy import submodule


def __getattr__(name):
    return submodule(__name__, globals(), name)
