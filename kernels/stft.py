"""Triton kernels for the memory-bound passes of the STFT / iSTFT (the FFT stays in torch.fft).

- frame_kernel:     padding + framing + window (+ normalisation scale) on load
- spectrum_kernel:  |X|, |X|^2 or log|X| on store, written transposed as (batch, bins, frames)
- overlap_add_kernel: window, overlap-add and division by the window envelope; every output
  sample gathers the frames that cover it (no atomics), flags envelope values < 1e-11

Imported lazily through sonicore._backend.triton_kernels("stft"); runs on CUDA tensors, or on
CPU tensors under TRITON_INTERPRET=1 (how the tests exercise it without a GPU).
"""
import triton
import triton.language as tl

# Pad modes, same codes as the CUDA kernels.
PAD_CONSTANT, PAD_REFLECT, PAD_REPLICATE, PAD_CIRCULAR = 0, 1, 2, 3
# Spectrum kinds.
KIND_MAGNITUDE, KIND_POWER, KIND_LOG_MAGNITUDE = 0, 1, 2


@triton.jit
def frame_kernel(x_ptr, w_ptr, out_ptr, n_samples, x_batch_stride, n_rows, n_frames, n_fft, hop, pad, scale_ptr,
                 PAD_MODE: tl.constexpr, BLOCK: tl.constexpr, FRAMES: tl.constexpr):
    # grid = (cdiv(n_rows, FRAMES), cdiv(n_fft, BLOCK)); one program fills BLOCK samples of FRAMES
    # consecutive frames, rows of the (n_rows = batch * n_frames, n_fft) output.
    # Scalars of the data's dtype come through a small tensor: a Python float argument would
    # be rounded to float32 on a GPU, which float64 results cannot afford.
    scale = tl.load(scale_ptr)
    rows = tl.program_id(0).to(tl.int64) * FRAMES + tl.arange(0, FRAMES)
    j = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    jmask = j < n_fft
    row_ok = rows < n_rows
    b = rows // n_frames
    t = rows - b * n_frames
    start = t * hop - pad
    w = tl.load(w_ptr + j, mask=jmask, other=0.0)[None, :]
    dst = out_ptr + rows[:, None] * n_fft + j[None, :]
    m2 = row_ok[:, None] & jmask[None, :]
    interior = tl.min((~row_ok | ((start >= 0) & (start + n_fft <= n_samples))).to(tl.int32), 0)
    if interior == 1:
        # Interior frames (all but a few per signal): contiguous addresses with no padding
        # arithmetic, which lets the compiler vectorise the loads (as the CUDA kernel's fast path does).
        v = tl.load(x_ptr + b[:, None] * x_batch_stride + start[:, None] + j[None, :], mask=m2, other=0.0)
        tl.store(dst, v * w * scale, mask=m2)
        return
    p = start[:, None] + j[None, :]
    inside = (p >= 0) & (p < n_samples)
    if PAD_MODE == 1:  # reflect about the edge samples (pad < n_samples: one bounce)
        src = tl.where(p < 0, -p, tl.where(p >= n_samples, 2 * (n_samples - 1) - p, p))
        valid = m2
    elif PAD_MODE == 2:  # replicate
        src = tl.minimum(tl.maximum(p, 0), n_samples - 1)
        valid = m2
    elif PAD_MODE == 3:  # circular
        src = ((p % n_samples) + n_samples) % n_samples
        valid = m2
    else:  # constant zeros
        src = p
        valid = m2 & inside
    v = tl.load(x_ptr + b[:, None] * x_batch_stride + src, mask=valid, other=0.0)
    tl.store(dst, v * w * scale, mask=m2)


@triton.jit
def spectrum_kernel(spec_ptr, out_ptr, n_frames, n_bins, params_ptr,
                    KIND: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_F: tl.constexpr):
    # spec: (batch, n_frames, n_bins, 2) real view of the complex FFT output.
    # out:  (batch, n_bins, n_frames). grid = (cdiv(n_frames, BLOCK_T), cdiv(n_bins, BLOCK_F), batch)
    # params_ptr: [magnitude eps, log floor] in the data's dtype.
    eps = tl.load(params_ptr)
    floor = tl.load(params_ptr + 1)
    b = tl.program_id(2).to(tl.int64)
    t = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
    f = tl.program_id(1) * BLOCK_F + tl.arange(0, BLOCK_F)
    mask = (t[:, None] < n_frames) & (f[None, :] < n_bins)
    base = spec_ptr + b * n_frames * n_bins * 2 + (t[:, None] * n_bins + f[None, :]) * 2
    re = tl.load(base, mask=mask, other=0.0)
    im = tl.load(base + 1, mask=mask, other=0.0)
    p = re * re + im * im
    if KIND == 1:
        v = p
    else:
        v = tl.sqrt(p + eps)
        if KIND == 2:
            v = tl.log(tl.maximum(v, floor))
    dst = out_ptr + b * n_bins * n_frames + f[None, :] * n_frames + t[:, None]
    tl.store(dst, v, mask=mask)


@triton.jit
def overlap_add_kernel(frames_ptr, w_ptr, out_ptr, flag_ptr, n_frames, n_fft, hop, start, length,
                       scale_ptr, BLOCK: tl.constexpr):
    # frames: (batch, n_frames, n_fft); out: (batch, length). grid = (cdiv(length, BLOCK), batch)
    scale = tl.load(scale_ptr)
    b = tl.program_id(1).to(tl.int64)
    n = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    nmask = n < length
    p = start + n
    total = (n_frames - 1) * hop + n_fft
    live = nmask & (p < total)
    # Frames covering this block: t*hop <= p < t*hop + n_fft.
    p_first = start + tl.program_id(0) * BLOCK
    p_last = tl.minimum(p_first + BLOCK - 1, total - 1)
    t_lo = tl.maximum(p_first - n_fft + hop, 0) // hop
    t_hi = tl.minimum(p_last // hop, n_frames - 1)
    acc = tl.zeros([BLOCK], dtype=frames_ptr.dtype.element_ty)
    env = tl.zeros([BLOCK], dtype=frames_ptr.dtype.element_ty)
    fb = frames_ptr + b * n_frames * n_fft
    for t in range(t_lo, t_hi + 1):
        j = p - t * hop
        m = live & (j >= 0) & (j < n_fft)
        w = tl.load(w_ptr + j, mask=m, other=0.0)
        acc += tl.load(fb + t * n_fft + j, mask=m, other=0.0) * w
        env += w * w
    bad = live & (env < 1e-11)
    safe_env = tl.where(bad | (env == 0), 1.0, env)
    y = tl.where(live & (env >= 1e-11), acc * scale / safe_env, 0.0)
    tl.store(out_ptr + b * length + n, y, mask=nmask)
    # Every flagging program stores the same 1, so plain masked stores suffice.
    tl.store(flag_ptr + n * 0, tl.full([BLOCK], 1, tl.int32), mask=bad)
