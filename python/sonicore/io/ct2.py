"""Reader for CTranslate2 ``model.bin`` files (the format of faster-whisper / CTranslate2 models).

Layout (little-endian, no padding), as read by CTranslate2's own loader:

    u32 version | string spec_name | u32 spec_revision | u32 n_variables
    n_variables x ( string name | u8 rank | rank x u32 dims | u8 dtype | u32 nbytes | nbytes raw )
    u32 n_aliases | n_aliases x ( string alias | string target )

A string is a u16 length that counts a trailing NUL, then the bytes, then the NUL.
dtype tags: 0 f32, 1 i8, 2 i16, 3 i32, 4 f16, 5 bf16. Quantised (int8/int16) weights come with a
per-row ``<name>_scale`` and are dequantised here as ``q / scale``.

The file is untrusted input: every length, offset and size is checked against the bytes that
are really there before it is used, and any inconsistency raises ValueError naming the problem.
Nothing is executed and nothing is unpickled.
"""
from __future__ import annotations

import mmap
import os
import struct
from dataclasses import dataclass, field
from typing import Dict, Optional, Union

import numpy as np
import torch

__all__ = ["CT2Model", "read_model_bin", "CT2_DTYPES"]

# tag -> (name, numpy dtype, bytes per element)
CT2_DTYPES = {
    0: ("float32", np.dtype("<f4")),
    1: ("int8", np.dtype("i1")),
    2: ("int16", np.dtype("<i2")),
    3: ("int32", np.dtype("<i4")),
    4: ("float16", np.dtype("<f2")),
    5: ("bfloat16", np.dtype("<u2")),  # raw bits; widened to float32 below
}

_MAX_RANK = 8            # CTranslate2 never stores more than 4 dims; 8 leaves room without trusting the file
_MAX_NAME = 4096         # longer names are a corrupt length field, not a real variable name


@dataclass
class CT2Model:
    """A parsed model.bin: the spec name and revision, format version, variables and aliases.

    variables: name -> torch.Tensor (float weights widened to float32 when read with
    ``dtype=torch.float32``, quantised weights dequantised with their ``_scale``; int32
    and scalar flags kept as they are). aliases: alias name -> target name; alias lookups
    go through :meth:`get`.
    """
    path: str
    version: int
    spec_name: str
    spec_revision: int
    variables: Dict[str, torch.Tensor] = field(default_factory=dict)
    aliases: Dict[str, str] = field(default_factory=dict)
    source_dtypes: Dict[str, str] = field(default_factory=dict)

    def get(self, name: str) -> torch.Tensor:
        """The variable `name`, following an alias; KeyError with the file named if absent."""
        seen = 0
        while name in self.aliases and name not in self.variables:
            name = self.aliases[name]
            seen += 1
            if seen > len(self.aliases):
                raise ValueError(f"{self.path}: alias cycle through {name!r}")
        try:
            return self.variables[name]
        except KeyError:
            raise KeyError(f"{self.path} has no variable {name!r}") from None

    def __contains__(self, name: str) -> bool:
        return name in self.variables or name in self.aliases


class _Cursor:
    """Bounds-checked little-endian reads over a byte buffer."""

    def __init__(self, buf, path: str):
        self.buf = buf
        self.n = len(buf)
        self.pos = 0
        self.path = path

    def fail(self, what: str) -> ValueError:
        return ValueError(f"{self.path} is not a valid CTranslate2 model.bin: {what} (at byte {self.pos} of {self.n})")

    def take(self, nbytes: int, what: str):
        if nbytes < 0 or self.pos + nbytes > self.n:
            raise self.fail(f"file ends inside {what}: {nbytes} bytes needed, {self.n - self.pos} left"
                            " (the file is truncated or corrupt)")
        start = self.pos
        self.pos += nbytes
        return start

    def u8(self, what: str) -> int:
        return self.buf[self.take(1, what)]

    def u16(self, what: str) -> int:
        return struct.unpack_from("<H", self.buf, self.take(2, what))[0]

    def u32(self, what: str) -> int:
        return struct.unpack_from("<I", self.buf, self.take(4, what))[0]

    def string(self, what: str) -> str:
        n = self.u16(f"the length of {what}")
        if n == 0 or n > _MAX_NAME:
            raise self.fail(f"{what} has an impossible length {n}")
        start = self.take(n, what)
        raw = bytes(self.buf[start:start + n])
        if raw[-1] != 0:
            raise self.fail(f"{what} is not NUL-terminated")
        try:
            return raw[:-1].decode("utf-8")
        except UnicodeDecodeError:
            raise self.fail(f"{what} is not valid UTF-8") from None


def _widen(raw: np.ndarray, tag: int) -> torch.Tensor:
    if tag == 5:  # bfloat16: the high half of a float32
        return torch.from_numpy((raw.astype(np.uint32) << 16).view(np.float32))
    if tag == 4:
        return torch.from_numpy(raw.astype(np.float32))
    return torch.from_numpy(np.array(raw))


def read_model_bin(path: Union[str, os.PathLike], dtype: Optional[torch.dtype] = torch.float32,
                   dequantize: bool = True) -> CT2Model:
    """Parses a CTranslate2 model.bin.

    path: the model.bin file (or a model directory containing it).
    dtype: float variables are returned in this dtype (default float32); None keeps the
        stored float dtype (float16 and bfloat16 tensors as torch.float16 / torch.bfloat16).
    dequantize: int8/int16 variables that have a ``<name>_scale`` are returned as float
        ``q / scale`` (per output row); the scales are then dropped from the result.
    Raises FileNotFoundError when the file is missing and ValueError, naming the problem and
    the byte offset, for anything truncated, inconsistent or corrupt.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, "model.bin")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"CTranslate2 model file not found: {path}")
    size = os.path.getsize(path)
    if size == 0:
        raise ValueError(f"{path} is empty; expected a CTranslate2 model.bin")
    with open(path, "rb") as fh:
        buf = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    view = memoryview(buf)
    try:
        return _parse(view, path, dtype, dequantize)
    finally:
        # Every tensor returned is a copy, so the mapping can go now; a view still held by a
        # traceback frame makes close() refuse, and the OS unmaps it when that frame dies.
        try:
            view.release()
            buf.close()
        except BufferError:
            pass


def _parse(buf, path, dtype, dequantize) -> CT2Model:
    cur = _Cursor(buf, path)
    version = cur.u32("the format version")
    if not 1 <= version <= 6:
        raise cur.fail(f"unsupported format version {version} (this reader knows versions 1 to 6)")
    spec_name = cur.string("the spec name") if version >= 2 else ""
    spec_revision = cur.u32("the spec revision") if version >= 2 else 1
    count = cur.u32("the variable count")
    # Each variable takes at least 9 bytes; a count that cannot fit is corruption, and
    # checking it up front keeps a flipped bit from turning into a long useless loop.
    if count * 9 > cur.n - cur.pos:
        raise cur.fail(f"variable count {count} cannot fit in the remaining {cur.n - cur.pos} bytes")
    model = CT2Model(path=path, version=version, spec_name=spec_name, spec_revision=spec_revision)
    raw_vars: Dict[str, tuple] = {}
    for i in range(count):
        name = cur.string(f"the name of variable {i}")
        if name in raw_vars:
            raise cur.fail(f"variable {name!r} appears twice")
        rank = cur.u8(f"the rank of {name!r}")
        if rank > _MAX_RANK:
            raise cur.fail(f"variable {name!r} has rank {rank}; at most {_MAX_RANK} is supported")
        dims = tuple(cur.u32(f"dimension {d} of {name!r}") for d in range(rank))
        tag = cur.u8(f"the dtype of {name!r}")
        if tag not in CT2_DTYPES:
            raise cur.fail(f"variable {name!r} has unknown dtype tag {tag}; expected 0-5")
        dname, npdt = CT2_DTYPES[tag]
        if version >= 4:
            nbytes = cur.u32(f"the byte count of {name!r}")
        else:  # old files store the element count only
            nbytes = int(np.prod(dims, dtype=np.int64)) * npdt.itemsize
        numel = 1
        for d in dims:
            numel *= d
        if numel * npdt.itemsize != nbytes:
            raise cur.fail(f"variable {name!r}: shape {list(dims)} of {dname} needs "
                           f"{numel * npdt.itemsize} bytes but the file says {nbytes}")
        start = cur.take(nbytes, f"the data of {name!r}")
        raw_vars[name] = (dims, tag, start, nbytes)
    if version >= 3:
        n_alias = cur.u32("the alias count")
        if n_alias * 4 > cur.n - cur.pos:
            raise cur.fail(f"alias count {n_alias} cannot fit in the remaining {cur.n - cur.pos} bytes")
        for i in range(n_alias):
            alias = cur.string(f"alias {i}")
            target = cur.string(f"the target of alias {alias!r}")
            model.aliases[alias] = target
    if cur.pos != cur.n:
        raise cur.fail(f"{cur.n - cur.pos} unexpected bytes after the last alias")
    for alias, target in model.aliases.items():
        if target not in raw_vars and target not in model.aliases:
            raise ValueError(f"{path}: alias {alias!r} points to {target!r}, which is not in the file")

    # Decode after the whole structure has been validated, so a corrupt tail costs no copies.
    for name, (dims, tag, start, nbytes) in raw_vars.items():
        dname, npdt = CT2_DTYPES[tag]
        raw = np.frombuffer(buf, dtype=npdt, count=nbytes // npdt.itemsize, offset=start).reshape(dims)
        if tag in (4, 5) and dtype is None:
            t = torch.from_numpy(np.array(raw))
            t = t.view(torch.bfloat16) if tag == 5 else t
        elif tag in (0, 4, 5):
            t = _widen(raw, tag)
            if dtype is not None:
                t = t.to(dtype)
        else:
            t = torch.from_numpy(np.array(raw))
        model.variables[name] = t
        model.source_dtypes[name] = dname

    if dequantize:
        for name in list(model.variables):
            if model.source_dtypes[name] not in ("int8", "int16") or name.endswith("_scale"):
                continue
            scale_name = name + "_scale"
            if scale_name not in model.variables:
                continue  # an integer variable that is not a quantised weight (e.g. a flag)
            q = model.variables[name]
            scale = model.variables[scale_name].to(torch.float32)
            if q.dim() < 1 or scale.numel() not in (1, q.shape[0]):
                raise ValueError(f"{path}: {scale_name!r} has {scale.numel()} values; expected 1 or one "
                                 f"per row of {name!r} ({q.shape[0] if q.dim() else 0})")
            if not bool(torch.all(torch.isfinite(scale))) or bool(torch.any(scale == 0)):
                raise ValueError(f"{path}: {scale_name!r} holds zero or non-finite scales")
            shape = (-1,) + (1,) * (q.dim() - 1)
            w = q.to(torch.float32) / scale.reshape(shape if scale.numel() > 1 else (1,) * q.dim())
            model.variables[name] = w.to(dtype) if dtype is not None else w
            del model.variables[scale_name]
    return model


def scalar(model: CT2Model, name: str, default=None):
    """A scalar flag/int of the model (e.g. ``decoder/num_heads``) as a Python number."""
    if name not in model:
        if default is None:
            raise ValueError(f"{model.path} has no variable {name!r}")
        return default
    t = model.get(name)
    if t.numel() != 1:
        raise ValueError(f"{model.path}: {name!r} should be a scalar, has shape {list(t.shape)}")
    return t.reshape(()).item()
