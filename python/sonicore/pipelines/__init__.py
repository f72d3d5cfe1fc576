"""User-facing pipelines: align (Whisper lyrics/transcript alignment), separate, foley.
Imported on first use so that `import sonicore.pipelines` stays cheap."""
from __future__ import annotations

import importlib

_EXPORTS = {"Aligner": "align", "Alignment": "align"}


def __getattr__(name):
    mod = _EXPORTS.get(name)
    if mod is None:
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"{__name__}.{name}":
                raise AttributeError(f"module 'sonicore.pipelines' has no attribute {name!r}") from None
            raise
        globals()[name] = module
        return module
    value = getattr(importlib.import_module(f"{__name__}.{mod}"), name)
    globals()[name] = value
    return value
