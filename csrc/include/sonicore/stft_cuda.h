// Fused CUDA kernels around the FFT of an STFT / iSTFT. The FFT itself is cuFFT (through
// torch.fft on the caller's side); these kernels do the memory-bound parts in one pass each:
//   stft_frame:        padding + framing + window (and normalisation scale) on load
//   stft_spectrum_out: |X|, |X|^2 or log|X| on store, transposed to (batch, bins, frames)
//   istft_overlap_add: window, overlap-add and division by the window envelope, each output
//                      sample gathered by one thread (no atomics)
// All pointers are device pointers on `device` (made current first: torch's runtime and ours
// keep separate current-device state); `stream` is a cudaStream_t passed as void* so that
// this header needs no CUDA include. dtype is DType::f32 or DType::f64. Only built with CUDA.
#pragma once
#include <cstdint>

#include "sonicore/common.h"

namespace sonicore {
namespace cuda {

enum class PadMode : int { constant = 0, reflect = 1, replicate = 2, circular = 3 };
enum class SpectrumKind : int { magnitude = 0, power = 1, log_magnitude = 2 };

// x: (batch, n_samples) with row stride x_batch_stride (unit stride inside a row).
// frames: (batch, n_frames, n_fft) contiguous; frames[b, t, j] = scale * window[j] *
// xpad[b, t * hop + j] where xpad is x padded by `pad` samples on both sides per pad_mode
// (constant pads with zeros). reflect needs pad < n_samples (the caller checks).
void stft_frame(DType dtype, const void* x, int64_t batch, int64_t n_samples, int64_t x_batch_stride,
                const void* window, double scale, void* frames, int64_t n_frames, int64_t n_fft,
                int64_t hop, int64_t pad, PadMode pad_mode, int device, void* stream);

// spec: (batch, n_frames, n_bins) complex, interleaved (re, im) contiguous.
// out: (batch, n_bins, n_frames) real contiguous:
//   magnitude: sqrt(re^2 + im^2 + eps); power: re^2 + im^2; log_magnitude: log(max(sqrt(re^2 + im^2 + eps), floor)).
void stft_spectrum_out(DType dtype, const void* spec, int64_t batch, int64_t n_frames, int64_t n_bins,
                       void* out, SpectrumKind kind, double eps, double floor, int device, void* stream);

// frames: (batch, n_frames, n_fft) contiguous (inverse FFT of each frame, un-windowed).
// out: (batch, length) contiguous; out[b, n] for p = start + n < (n_frames - 1) * hop + n_fft:
//   scale * sum_t frames[b, t, p - t*hop] * window[p - t*hop] / sum_t window[p - t*hop]^2
// (sums over the frames covering p), and 0 for p beyond the signal. Where the envelope is
// below 1e-11 the kernel writes 1 to *bad_flag (device int, zeroed by the caller).
void istft_overlap_add(DType dtype, const void* frames, const void* window, int64_t batch,
                       int64_t n_frames, int64_t n_fft, int64_t hop, int64_t start, int64_t length,
                       double scale, void* out, int* bad_flag, int device, void* stream);

}  // namespace cuda
}  // namespace sonicore
