"""One Python entry point per kernel. Each picks a backend (cpu / cuda / triton / torch
reference), validates its input, and returns the same kind of array it was given."""
from __future__ import annotations

import importlib

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
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    mod = _EXPORTS.get(name)
    if mod is None:
        raise AttributeError(f"module 'sonicore.ops' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{mod}"), name)
    globals()[name] = value
    return value
