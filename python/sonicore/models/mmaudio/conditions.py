"""Conditions a user gives the MMAudio network, checked against the frame rates the network expects.

- CLIP image features: 8 frames/s, clip_dim channels (1024 for DFN5B ViT-H-14-384).
- Synchformer features: 25 frames/s analysed in windows of 16 frames with stride 8, 8 features per
  window: 192 for 8 s; sync_dim channels (768).
- CLIP text features: text_seq_len tokens (77) x text_dim (1024), all token states after the final
  layer norm, each L2-normalised.
Any of them may be missing: the learned empty feature stands in, as in the original.
Text may also be given as strings: text_features() then computes the CLIP text condition in-process
from local open_clip weights (sonicore.models.clip_text; the weights path is an argument or
$SONICORE_CLIP_WEIGHTS, the open_clip config $SONICORE_CLIP_MODEL or ViT-H-14-378-quickgelu).
Arrays may be numpy or torch, with or without the batch axis; files may be .npy, .npz or .safetensors.
"""
from __future__ import annotations

import math
import os
from typing import Optional, Tuple, Union

import numpy as np
import torch

from .config import CLIP_FPS, SYNC_FPS, MMAudioConfig

ArrayLike = Union[np.ndarray, torch.Tensor, str, os.PathLike]
_KEYS = {"clip": ("clip_f", "clip", "clip_features", "image_features"),
         "sync": ("sync_f", "sync", "sync_features", "synchformer"),
         "text": ("text_f", "text", "text_features")}


def load_features(source: ArrayLike, kind: str) -> torch.Tensor:
    """Reads one feature array. source: numpy/torch array or a .npy / .npz / .safetensors path.
    kind ("clip", "sync", "text") picks the entry of a multi-array file (keys such as 'clip_f',
    'clip_features'); a file with a single array needs no key. Returns a float32 CPU tensor."""
    if kind not in _KEYS:
        raise ValueError(f"kind must be one of {sorted(_KEYS)}, got {kind!r}")
    if isinstance(source, torch.Tensor):
        return source
    if isinstance(source, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(source))
    path = os.fspath(source)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no {kind} feature file at {path!r}")
    if path.endswith(".npy"):
        return torch.from_numpy(np.load(path, allow_pickle=False))
    if path.endswith(".npz"):
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    elif path.endswith(".safetensors"):
        from safetensors.numpy import load_file
        arrays = load_file(path)
    else:
        raise ValueError(f"{path!r}: feature files must be .npy, .npz or .safetensors")
    if len(arrays) == 1:
        return torch.from_numpy(next(iter(arrays.values())))
    for k in _KEYS[kind]:
        if k in arrays:
            return torch.from_numpy(arrays[k])
    raise ValueError(f"{path!r} holds {sorted(arrays)}; none is named like {kind} features "
                     f"(expected one of {list(_KEYS[kind])})")


CLIP_WEIGHTS_ENV = "SONICORE_CLIP_WEIGHTS"
CLIP_MODEL_ENV = "SONICORE_CLIP_MODEL"


def text_features(cfg: MMAudioConfig, text, clip_text=None) -> torch.Tensor:
    """Text prompts -> MMAudio's text condition (B, text_seq_len, text_dim) float32, computed in-process.

    text: one string or a list of B strings. clip_text: a loaded sonicore.models.clip_text.ClipTextEncoder,
    or a local open_clip checkpoint (file or hub folder, e.g. DFN5B-CLIP-ViT-H-14-384); default: the path
    in $SONICORE_CLIP_WEIGHTS (open_clip config from $SONICORE_CLIP_MODEL, default ViT-H-14-378-quickgelu).
    Loaded encoders are cached per process. Nothing is downloaded.
    """
    from ..clip_text import ClipTextEncoder, cached_clip_text
    if isinstance(text, str):
        text = [text]
    if not isinstance(text, (list, tuple)) or not text or not all(isinstance(t, str) for t in text):
        raise TypeError(f"text must be a string or a non-empty list of strings, got {text!r}")
    enc = clip_text
    if enc is None:
        enc = os.environ.get(CLIP_WEIGHTS_ENV) or None
        if enc is None:
            raise ValueError("text prompts need CLIP text weights to compute MMAudio's text features in-process: "
                             "pass clip_text='<folder or file of open_clip weights, e.g. DFN5B-CLIP-ViT-H-14-384>' "
                             f"or set ${CLIP_WEIGHTS_ENV} (needs `pip install open_clip_torch`), or pass "
                             "precomputed text_f features instead")
    if not isinstance(enc, ClipTextEncoder):
        enc = cached_clip_text(enc, os.environ.get(CLIP_MODEL_ENV) or None)
    if enc.cfg.width != cfg.text_dim or enc.cfg.context_length != cfg.text_seq_len:
        raise ValueError(f"the CLIP text encoder gives {enc.cfg.context_length} x {enc.cfg.width} features; this "
                         f"network expects {cfg.text_seq_len} x {cfg.text_dim} (MMAudio uses DFN5B ViT-H-14-384)")
    return enc.encode(list(text)).cpu()


def expected_frames(cfg: MMAudioConfig, duration: float) -> dict:
    """Frame counts the network expects for `duration` seconds: latent, clip, sync, text."""
    out = cfg.seq_lengths(duration)
    out["text"] = cfg.text_seq_len
    return out


def _as_batched(x: torch.Tensor, kind: str, dim: int) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{kind} features must be an array or tensor, got {type(x).__name__}")
    if x.dim() == 2:
        x = x[None]
    if x.dim() != 3:
        raise ValueError(f"{kind} features must have shape (frames, {dim}) or (batch, frames, {dim}), "
                         f"got {tuple(x.shape)}")
    if x.shape[-1] != dim:
        raise ValueError(f"{kind} features have {x.shape[-1]} channels; this network expects {dim}")
    if not x.is_floating_point():
        raise TypeError(f"{kind} features must be floating point, got {x.dtype}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{kind} features contain NaN or infinite values")
    return x


def check_conditions(cfg: MMAudioConfig, clip_f=None, sync_f=None, text_f=None, *,
                     duration: Optional[float] = None, latent_len: Optional[int] = None,
                     check_frame_rates: bool = True) -> Tuple[dict, float, dict]:
    """Loads and validates the given conditions.

    Returns (features, duration, lengths): features maps 'clip'/'sync'/'text' to (B, frames, dim)
    tensors or None (missing), duration in seconds (from the argument, else from the clip or sync
    frame count at 8 / 25 frames/s, else 8 s), lengths the frame counts to use.
    With check_frame_rates, frame counts must equal what the frame rates give for that duration.
    """
    dims = {"clip": cfg.clip_dim, "sync": cfg.sync_dim, "text": cfg.text_dim}
    feats = {}
    for kind, src in (("clip", clip_f), ("sync", sync_f), ("text", text_f)):
        feats[kind] = None if src is None else _as_batched(load_features(src, kind), kind, dims[kind])
    batches = {k: v.shape[0] for k, v in feats.items() if v is not None}
    if len(set(batches.values())) > 1:
        raise ValueError(f"the conditions disagree on the batch size: {batches}")
    if duration is None:
        if feats["clip"] is not None:
            duration = feats["clip"].shape[1] / CLIP_FPS
        elif feats["sync"] is not None:
            duration = (feats["sync"].shape[1] + 8) / SYNC_FPS
        elif latent_len is not None:
            duration = latent_len / cfg.latent_rate
        else:
            duration = 8.0
    if not (isinstance(duration, (int, float)) and math.isfinite(duration) and duration > 0):
        raise ValueError(f"duration must be a positive number of seconds, got {duration!r}")
    exp = expected_frames(cfg, float(duration))
    lengths = dict(exp)
    if latent_len is not None:
        lengths["latent"] = latent_len
    for kind in ("clip", "sync", "text"):
        x = feats[kind]
        if x is None:
            continue
        n = x.shape[1]
        if kind == "sync" and n % 8:
            raise ValueError(f"sync features have {n} frames; Synchformer gives whole segments of 8 "
                             f"(expected {exp['sync']} for {duration:g} s)")
        if kind == "text" and n != cfg.text_seq_len:
            raise ValueError(f"text features have {n} tokens; this network expects {cfg.text_seq_len} "
                             "(all CLIP token states, padded)")
        if check_frame_rates and n != exp[kind]:
            rate = {"clip": "8 frames/s", "sync": "25 frames/s in segments of 8"}[kind]
            raise ValueError(f"{kind} features have {n} frames; {duration:g} s at {rate} needs {exp[kind]}")
        lengths[kind] = n
    if check_frame_rates and latent_len is not None and latent_len != exp["latent"]:
        raise ValueError(f"the latent has {latent_len} frames; {duration:g} s at {cfg.latent_rate:g} frames/s "
                         f"needs {exp['latent']}")
    if lengths["clip"] < 1 or lengths["sync"] < 8 or lengths["latent"] < 1:
        raise ValueError(f"{duration:g} s is too short: it gives {lengths} frames")
    return feats, float(duration), lengths
