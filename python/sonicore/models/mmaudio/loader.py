"""Reads MMAudio / MMAudioSep checkpoints: official .pth state dicts, safetensors, or a state dict.

Nothing is unpickled beyond plain tensors (torch.load(weights_only=True)); .pth files are memory-mapped
and safetensors files are read tensor by tensor, and each tensor is copied straight into the network's
parameter, so a checkpoint is never held twice in memory.
"""
from __future__ import annotations

import os
import re
from typing import Mapping, Optional, Union

import torch

from .config import MMAudioConfig, variant_name
from .network import MMAudioNetwork

# Non-persistent buffers that some older checkpoints carry; the original drops them before loading.
_DROPPED_KEYS = ("t_embed.freqs", "latent_rot", "clip_rot")
# Wrappers a training script may put around the state dict.
_WRAPPER_KEYS = ("weights", "state_dict", "model", "net", "ema", "module")
_REQUIRED = ("audio_input_proj.0.weight", "final_layer.conv.weight", "clip_input_proj.0.weight",
             "sync_input_proj.0.weight", "text_input_proj.0.weight", "t_embed.mlp.0.weight",
             "empty_string_feat", "latent_mean", "joint_blocks.0.latent_block.attn.q_norm.weight")


class CheckpointError(ValueError):
    """The file or dict is not a (complete) MMAudio / MMAudioSep checkpoint."""


def _open_state_dict(source) -> Mapping[str, torch.Tensor]:
    if isinstance(source, Mapping):
        return source
    path = os.fspath(source)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no checkpoint at {path!r}")
    with open(path, "rb") as f:
        head = f.read(8)
    if not head.startswith((b"PK", b"\x80")):
        return _LazySafetensors(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:  # torch reports truncated zips and foreign pickles in many ways
        raise CheckpointError(f"{path!r} could not be read as a torch checkpoint ({type(e).__name__}: {e}); "
                              "expected an MMAudio .pth state dict or a .safetensors file") from e


_ST_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64,
              "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
              "BOOL": torch.bool}


class _LazySafetensors(Mapping):
    """Read-only mapping over a safetensors file. Tensors are read with plain file reads, one at a time,
    straight into the destination when asked (read_into), so no mapping of the whole file stays resident.
    Every offset and size in the header is checked against the file size first."""

    def __init__(self, path: str):
        import json
        self.path = path
        size = os.path.getsize(path)
        try:
            with open(path, "rb") as f:
                n = int.from_bytes(f.read(8), "little")
                if not 2 <= n <= min(size - 8, 100 << 20):
                    raise ValueError(f"header length {n} does not fit a {size}-byte file")
                header = json.loads(f.read(n))
            header.pop("__metadata__", None)
            self._base = 8 + n
            self._entries = {}
            for k, e in header.items():
                dt = _ST_DTYPES[e["dtype"]]
                shape = tuple(int(d) for d in e["shape"])
                b0, b1 = (int(o) for o in e["data_offsets"])
                numel = 1
                for d in shape:
                    numel *= d
                if b1 - b0 != numel * torch.empty((), dtype=dt).element_size() or b0 < 0:
                    raise ValueError(f"tensor {k!r}: {b1 - b0} bytes for shape {shape} {e['dtype']}")
                if self._base + b1 > size:
                    raise ValueError(f"tensor {k!r} ends at byte {self._base + b1} of a {size}-byte file (truncated)")
                self._entries[k] = (dt, shape, b0, b1)
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
            raise CheckpointError(f"{path!r} is neither a torch checkpoint nor a valid safetensors file ({e})") from e

    def __getitem__(self, k):
        return self.get_tensor(k)

    def __iter__(self):
        return iter(self._entries)

    def __len__(self):
        return len(self._entries)

    def __contains__(self, k):
        return k in self._entries

    def keys(self):
        return list(self._entries)

    def shape_of(self, k):
        return self._entries[k][1]

    def get_tensor(self, k):
        dt, shape, b0, b1 = self._entries[k]
        out = torch.empty(shape, dtype=dt)
        self._read(out, b0, b1)
        return out

    def _read(self, out: torch.Tensor, b0: int, b1: int):
        buf = out.view(-1).view(torch.uint8).numpy() if out.numel() else None
        if buf is None:
            return
        with open(self.path, "rb") as f:
            f.seek(self._base + b0)
            if f.readinto(memoryview(buf)) != b1 - b0:
                raise CheckpointError(f"{self.path!r} ended early (truncated)")

    def copy_into(self, k, dst: torch.Tensor):
        """Copies tensor k into dst (any dtype/layout), reading directly into it when dtype and layout allow."""
        dt, shape, b0, b1 = self._entries[k]
        if dst.dtype == dt and dst.is_contiguous() and dst.device.type == "cpu":
            self._read(dst, b0, b1)
        else:
            dst.copy_(self.get_tensor(k))


def _release_pages(t: torch.Tensor) -> None:
    """Drops the resident pages behind a memory-mapped source tensor once it has been copied, so that a
    memory-mapped checkpoint is not held in memory next to the network's own weights."""
    import ctypes
    import mmap
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        page = mmap.PAGESIZE
        if not t.is_contiguous():
            return
        start = t.data_ptr()
        nbytes = t.numel() * t.element_size()
        a = start - start % page
        libc.madvise(ctypes.c_void_p(a), ctypes.c_size_t(start + nbytes - a), 4)  # MADV_DONTNEED
    except Exception:  # best effort: only a memory optimisation
        pass


def _unwrap(sd: Mapping) -> Mapping:
    for _ in range(3):
        if any(k in sd for k in _REQUIRED):
            break
        inner = [sd[k] for k in _WRAPPER_KEYS if k in sd and isinstance(sd[k], Mapping)]
        if len(inner) != 1:
            break
        sd = inner[0]
    return sd


def _strip_prefix(keys):
    """Maps model key -> stored key. Files that hold 'weights.<key>' entries next to other data (the
    parity goldens) contribute only those; a 'module.' prefix (DataParallel) is removed."""
    keys = list(keys)
    for p in ("weights.", "module."):
        if any(k.startswith(p) for k in keys):
            return {k[len(p):]: k for k in keys if k.startswith(p)}
    return {k: k for k in keys}


def infer_config(shapes: Mapping[str, tuple], *, sample_rate: Optional[int] = None) -> MMAudioConfig:
    """Recognises variant and version from tensor shapes. shapes: model key -> shape tuple."""
    missing = [k for k in _REQUIRED if k not in shapes]
    if missing:
        raise CheckpointError("this is not an MMAudio / MMAudioSep checkpoint: missing "
                              + ", ".join(missing[:4]) + (" ..." if len(missing) > 4 else ""))
    D, in_ch, k = shapes["audio_input_proj.0.weight"]
    latent_dim = shapes["final_layer.conv.weight"][0]
    if in_ch == latent_dim:
        separation = False
    elif in_ch == 2 * latent_dim:
        separation = True
    else:
        raise CheckpointError(f"audio_input_proj.0 takes {in_ch} channels; an MMAudio network takes latent_dim "
                              f"({latent_dim}) and MMAudioSep 2*latent_dim")
    v2 = "clip_input_proj.2.w1.weight" in shapes
    if not v2 and "clip_input_proj.1.w1.weight" not in shapes:
        raise CheckpointError("clip_input_proj has neither '.1' (v1) nor '.2' (v2) feed-forward weights")
    hd = shapes["joint_blocks.0.latent_block.attn.q_norm.weight"][0]
    joint = 1 + max(int(m.group(1)) for k in shapes for m in [re.match(r"joint_blocks\.(\d+)\.", k)] if m)
    fused = [int(m.group(1)) for k in shapes for m in [re.match(r"fused_blocks\.(\d+)\.", k)] if m]
    fused = 1 + max(fused) if fused else 0
    ffn_hidden = shapes["joint_blocks.0.latent_block.ffn.w1.weight"][0] if \
        "joint_blocks.0.latent_block.ffn.w1.weight" in shapes else None
    mlp_ratio = 4.0
    if ffn_hidden is not None:
        from .config import ffn_width
        if ffn_width(int(4.0 * D)) != ffn_hidden:
            # Find a ratio that reproduces the stored width (the released networks all use 4).
            for r in (1.0, 2.0, 3.0, 6.0, 8.0):
                if ffn_width(int(r * D)) == ffn_hidden:
                    mlp_ratio = r
                    break
    if sample_rate is None:
        sample_rate = 16000 if latent_dim == 20 else 44100
    return MMAudioConfig(
        latent_dim=latent_dim, clip_dim=shapes["clip_input_proj.0.weight"][1],
        sync_dim=shapes["sync_input_proj.0.weight"][1], text_dim=shapes["text_input_proj.0.weight"][1],
        hidden_dim=D, depth=joint + fused, fused_depth=fused, num_heads=D // hd, mlp_ratio=mlp_ratio,
        text_seq_len=shapes["empty_string_feat"][0], v2=v2, separation=separation, sample_rate=sample_rate)


def load(source: Union[str, os.PathLike, Mapping[str, torch.Tensor]], *, dtype: torch.dtype = torch.float32,
         device: Union[str, torch.device] = "cpu", sample_rate: Optional[int] = None) -> MMAudioNetwork:
    """Builds the MMAudio / MMAudioSep network a checkpoint holds and loads its weights.

    source: path to an official .pth state dict (read with weights_only=True, memory-mapped), a
    .safetensors file (keys may carry a 'weights.' prefix), or a state dict. The variant (size, v1/v2,
    MMAudio vs MMAudioSep) is recognised from the tensor shapes; old keys the original drops
    (t_embed.freqs, latent_rot, clip_rot) are ignored. dtype: float32, float16 or bfloat16 execution.
    Returns the network in eval mode; `net.cfg` describes it and `net.variant` names the released size
    (None for a custom size).
    """
    if dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise ValueError(f"dtype must be torch.float32, float16 or bfloat16, got {dtype}")
    sd = _unwrap(_open_state_dict(source))
    if not isinstance(sd, Mapping):
        raise CheckpointError(f"expected a state dict (name -> tensor), got {type(sd).__name__}")
    names = _strip_prefix(list(sd.keys()))
    shapes = {}
    for m, k in names.items():
        if m in _DROPPED_KEYS:
            continue
        shape = sd.shape_of(k) if hasattr(sd, "shape_of") else getattr(sd[k], "shape", None)
        if shape is None:
            continue
        shapes[m] = tuple(shape)
    cfg = infer_config(shapes, sample_rate=sample_rate)
    with torch.device("meta"):
        net = MMAudioNetwork(cfg)
    expected = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    ours = set(shapes)
    missing = sorted(set(expected) - ours)
    if missing:
        raise CheckpointError(f"the checkpoint is truncated or of another model: {len(missing)} tensors missing "
                              f"(first: {', '.join(missing[:3])})")
    unexpected = sorted(ours - set(expected))
    if unexpected:
        raise CheckpointError(f"the checkpoint has tensors this {cfg_desc(cfg)} network does not: "
                              f"{', '.join(unexpected[:3])}")
    bad = [k for k in expected if shapes[k] != expected[k]]
    if bad:
        k = bad[0]
        raise CheckpointError(f"tensor {k} has shape {shapes[k]}, expected {expected[k]} for a {cfg_desc(cfg)}")
    # Convert on the meta device first so that only the target-dtype weights are ever allocated.
    net = net.to(dtype).to_empty(device=device)
    params = dict(net.named_parameters())
    mapped = isinstance(source, (str, os.PathLike)) and not isinstance(sd, _LazySafetensors)
    with torch.no_grad():
        for m in expected:
            dst = params[m]
            if isinstance(sd, _LazySafetensors):
                sd.copy_into(names[m], dst)
            else:
                src = sd[names[m]]
                dst.copy_(src)
                if mapped and src.device.type == "cpu":
                    _release_pages(src)
                del src
            if not torch.isfinite(dst).all():
                raise CheckpointError(f"tensor {m} holds NaN or infinite values: the file is damaged")
    net.eval()
    net.requires_grad_(False)
    net.variant = variant_name(cfg)
    return net.prepare()


def cfg_desc(cfg: MMAudioConfig) -> str:
    name = variant_name(cfg) or f"hidden {cfg.hidden_dim}, depth {cfg.depth}"
    return f"{'MMAudioSep' if cfg.separation else 'MMAudio'} {name}{' v2' if cfg.v2 else ''}"
