"""One Python entry point per kernel. Each picks a backend (cpu / cuda / triton / torch
reference), validates its input, and returns the same kind of array it was given."""
from __future__ import annotations

import importlib
import sys
import types

# name -> submodule that defines it; imported on first use so that `import sonicore.ops`
# stays cheap and never needs triton or a GPU.
_EXPORTS = {
    "stft": "stft", "istft": "stft", "StreamingSTFT": "stft", "StreamingISTFT": "stft",
    "rfft": "stft", "irfft": "stft",
    "mel_filterbank": "mel", "mel": "mel", "log_mel": "mel", "whisper_log_mel": "mel",
    "mmaudio_mel": "mel",
    "attention": "attention", "attention_probs": "attention",
    "flow_step": "flow_step",
    "dtw": "align", "median_filter": "align",
    "adaln_layernorm": "nn", "qk_norm_rope": "nn", "swiglu": "nn", "merge_heads": "nn",
    "anti_aliased_snake": "vocoder", "kaiser_sinc_filter": "vocoder",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    mod = _EXPORTS.get(name)
    if mod is None:
        raise AttributeError(f"module 'sonicore.ops' has no attribute {name!r}")
    module = importlib.import_module(f"{__name__}.{mod}")
    # Importing a submodule named like one of its functions (ops.stft) binds the package
    # attribute to the module; bind every export of that module to its object instead.
    for export, owner in _EXPORTS.items():
        if owner == mod and hasattr(module, export):
            globals()[export] = getattr(module, export)
    return getattr(module, name)


class _OpsModule(types.ModuleType):
    """Importing a submodule makes Python set it as an attribute of this package; where a
    submodule shares its name with the function it exports (ops.stft, ops.mel), keep the
    function, so `ops.mel(...)` works whichever import ran first."""

    def __setattr__(self, name, value):
        if isinstance(value, types.ModuleType) and _EXPORTS.get(name) == name and hasattr(value, name):
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _OpsModule
