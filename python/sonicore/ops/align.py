"""DTW with backtrace and the sliding median filter: the kernels of Whisper word alignment.

Backends: "cpu" (C++ kernel, CPU arrays), "cuda" (CUDA kernel, CUDA tensors), "torch"
(pure reference, any device). numpy in -> numpy out, torch in -> torch out.
"""
from __future__ import annotations

from typing import List, Optional, Union

import numpy as np
import torch

from .._backend import device_reasons, select_backend
from .._ext import C
from ._arrays import cpu_view, from_torch, to_torch

__all__ = ["dtw", "median_filter", "dtw_reference", "median_filter_reference"]

_CUDA_MAX_MEDIAN_WIDTH = 31


# ----------------------------------------------------------------------------- references
def dtw_reference(cost: np.ndarray, open_end: bool = False, open_begin: bool = False) -> np.ndarray:
    """Plain numpy DTW (float64), same recurrence and tie rules as :func:`dtw`; (2, L) int64."""
    x = np.asarray(cost, dtype=np.float64)
    n, m = x.shape
    acc = np.full((n + 1, m + 1), np.inf)
    acc[0, 0] = 0.0
    if open_begin:
        acc[0, :] = 0.0
    trace = np.zeros((n + 1, m + 1), np.int8)
    for j in range(1, m + 1):
        for i in range(1, n + 1):
            c0, c1, c2 = acc[i - 1, j - 1], acc[i - 1, j], acc[i, j - 1]
            if c0 < c1 and c0 < c2:
                c, t = c0, 0
            elif c1 < c0 and c1 < c2:
                c, t = c1, 1
            elif c2 <= c0 or c2 <= c1:
                c, t = c2, 2
            else:  # c0 == c1 < c2
                c, t = c0, 0
            acc[i, j] = x[i - 1, j - 1] + c
            trace[i, j] = t
    i, j, path = n, m, []
    if open_end:
        i = 1 + int(np.argmin(acc[1:, m]))
    while i > 0 and j > 0:
        path.append((i - 1, j - 1))
        t = trace[i, j]
        i, j = (i - 1, j - 1) if t == 0 else ((i - 1, j) if t == 1 else (i, j - 1))
    return np.array(path[::-1], dtype=np.int64).T.reshape(2, -1)


def median_filter_reference(x: torch.Tensor, width: int) -> torch.Tensor:
    """torch reflect-pad + unfold + median along the last axis (input returned when too short)."""
    pad = width // 2
    if x.shape[-1] <= pad:
        return x.clone()
    shape = x.shape
    y = torch.nn.functional.pad(x.reshape(-1, 1, shape[-1]), (pad, pad), mode="reflect")
    return y.unfold(-1, width, 1).sort(dim=-1).values[..., pad].reshape(shape)


# ----------------------------------------------------------------------------- dtw
def dtw(cost, open_end: bool = False, open_begin: bool = False, backend: Optional[str] = None) -> Union[np.ndarray, torch.Tensor, List]:
    """Minimum-cost monotone path through a cost matrix, with backtrace.

    cost: (N, M) tokens x frames (float32/float64; numpy or torch), or (B, N, M) for a batch.
    Returns the path as a (2, L) int64 array [token indices; frame indices] from (0, 0) to
    (N-1, M-1), each step moving one token, one frame or both; a list of those for a batch.
    open_end: the path may end at any token of the last frame (the one with the smallest
    accumulated cost), for a window that may hold only the first part of the text.
    open_begin: the path may start at any frame of the first token (leading frames are free).
    Recurrence and tie rules: see csrc/include/sonicore/dtw.h (those of openai-whisper).
    """
    t, as_np = to_torch(cost, "cost")
    if t.dim() not in (2, 3):
        raise ValueError(f"dtw expects a (tokens, frames) or (batch, tokens, frames) cost, got shape {list(t.shape)}")
    if t.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"dtw expects float32 or float64 costs, got {t.dtype}")
    if t.numel() == 0:
        raise ValueError(f"dtw needs at least one token and one frame, got shape {list(t.shape)}")
    if not bool(torch.isfinite(t).all()):
        raise ValueError("dtw: the cost matrix holds NaN or infinite values")
    batched = t.dim() == 3
    tb = t if batched else t.unsqueeze(0)
    reasons = device_reasons(t.device.type, ("cpu", "cuda", "torch"))
    if reasons.get("cuda") is None and t.dtype != torch.float32:
        reasons["cuda"] = "the CUDA kernel takes float32 costs"
    name = select_backend("dtw", t.device.type, backend, reasons)
    if name == "cpu":
        arr = cpu_view(tb.contiguous())
        fn = C.dtw_f32 if arr.dtype == np.float32 else C.dtw_f64
        text, time, lengths = fn(arr, bool(open_end), bool(open_begin))
        paths = [np.stack([text[k, :lengths[k]], time[k, :lengths[k]]]).astype(np.int64) for k in range(len(lengths))]
        paths = [torch.from_numpy(p) for p in paths] if not as_np else paths
    elif name == "cuda":
        paths = _dtw_cuda(tb.contiguous(), bool(open_end), bool(open_begin))
    else:
        arr = tb.detach().cpu().double().numpy()
        paths = [dtw_reference(a, open_end, open_begin) for a in arr]
        paths = [torch.from_numpy(p).to(t.device) for p in paths] if not as_np else paths
    return paths if batched else paths[0]


def _dtw_cuda(t: torch.Tensor, open_end: bool, open_begin: bool) -> List[torch.Tensor]:
    b, n, m = t.shape
    dev = t.device
    cost_ws = torch.empty(b * (n + 1) * (m + 1), dtype=torch.float32, device=dev)
    trace_ws = torch.empty(b * (n + 1) * (m + 1), dtype=torch.uint8, device=dev)
    cap = n + m - 1
    text = torch.empty(b, cap, dtype=torch.int32, device=dev)
    time = torch.empty(b, cap, dtype=torch.int32, device=dev)
    lengths = torch.empty(b, dtype=torch.int64, device=dev)
    with torch.cuda.device(dev):
        stream = torch.cuda.current_stream(dev).cuda_stream
        C.dtw_cuda(t.data_ptr(), b, n, m, cost_ws.data_ptr(), trace_ws.data_ptr(), text.data_ptr(),
                   time.data_ptr(), lengths.data_ptr(), open_end, open_begin, stream)
    lens = lengths.tolist()
    return [torch.stack([text[k, :lens[k]], time[k, :lens[k]]]).long() for k in range(b)]


# ----------------------------------------------------------------------------- median filter
def median_filter(x, width: int = 7, backend: Optional[str] = None):
    """Median over a sliding window of `width` samples along the last axis.

    x: (..., T) float32/float64, numpy or torch. width: odd, >= 1. Edges use reflect padding
    (x[-k] = x[k]); when T <= width // 2 the input is returned unchanged (a copy), as
    openai-whisper does. Output: same shape, dtype and kind as x. NaN inputs are refused.
    """
    if not isinstance(width, (int, np.integer)) or isinstance(width, bool) or width < 1 or width % 2 == 0:
        raise ValueError(f"median_filter width must be an odd int >= 1, got {width!r}")
    width = int(width)
    t, as_np = to_torch(x, "x")
    if t.dim() < 1:
        raise ValueError("median_filter expects an array with a time axis, got a scalar")
    if t.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"median_filter expects float32 or float64, got {t.dtype}")
    if bool(torch.isnan(t).any()):
        raise ValueError("median_filter: the input holds NaN values")
    reasons = device_reasons(t.device.type, ("cpu", "cuda", "torch"))
    if reasons.get("cpu") is None and width > 255:
        reasons["cpu"] = "the C++ kernel takes widths up to 255"
    if reasons.get("cuda") is None:
        if t.dtype != torch.float32:
            reasons["cuda"] = "the CUDA kernel takes float32"
        elif width > _CUDA_MAX_MEDIAN_WIDTH:
            reasons["cuda"] = f"the CUDA kernel takes widths up to {_CUDA_MAX_MEDIAN_WIDTH}"
        elif t.shape[-1] <= width // 2:
            reasons["cuda"] = "the input is shorter than the half window (returned unchanged by the reference)"
    name = select_backend("median_filter", t.device.type, backend, reasons,
                          order=("cuda", "torch") if t.device.type == "cuda" else ("cpu", "torch"), inputs=(t,))
    if name == "cpu":
        arr = cpu_view(t.contiguous())
        fn = C.median_filter_f32 if arr.dtype == np.float32 else C.median_filter_f64
        out = torch.from_numpy(fn(arr, width))
    elif name == "cuda":
        src = t.contiguous()
        out = torch.empty_like(src)
        length = src.shape[-1]
        rows = src.numel() // length if length else 0
        with torch.cuda.device(src.device):
            C.median_filter_cuda(src.data_ptr(), out.data_ptr(), rows, length, width,
                                 torch.cuda.current_stream(src.device).cuda_stream)
    else:
        out = median_filter_reference(t, width)
    return from_torch(out, as_np)
