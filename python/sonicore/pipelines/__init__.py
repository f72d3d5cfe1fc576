"""User-facing pipelines: align (Whisper lyrics/transcript alignment), separate, foley.
Imported on first use so that `import sonicore.pipelines` stays cheap."""
from __future__ import annotations

import importlib

from .._lazy import submodule

_EXPORTS = {"Aligner": "align", "Alignment": "align"}


def __getattr__(name):
    mod = _EXPORTS.get(name)
    if mod is None:
        return submodule(__name__, globals(), name)
    value = getattr(importlib.import_module(f"{__name__}.{mod}"), name)
    globals()[name] = value
    return value
