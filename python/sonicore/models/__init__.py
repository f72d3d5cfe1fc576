"""Networks (torch.nn) built from sonicore ops. Subpackages are imported on first use so that
`import sonicore.models` stays cheap: ``sonicore.models.whisper``, ``sonicore.models.mmaudio``."""
from __future__ import annotations

import importlib


def __getattr__(name):
    try:
        mod = importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as exc:
        if exc.name == f"{__name__}.{name}":
            raise AttributeError(f"module 'sonicore.models' has no attribute {name!r}") from None
        raise
    globals()[name] = mod
    return mod
