// Sparse mel projection fused with clamp + log, on a power (or magnitude) spectrogram.
//
// A mel filterbank row is non-zero only on a short run of FFT bins, so the bank is passed
// packed: row m covers bins [bin_start[m], bin_start[m] + (offsets[m+1] - offsets[m])) with
// weights weights[offsets[m] ...]. Per frame that is ~2 * n_bins multiply-adds instead of
// n_mels * n_bins for a dense matmul, and the log is taken while the value is in registers.
#pragma once
#include <cstdint>

namespace sonicore {

enum class MelLog : int { none = 0, ln = 1, log10 = 2 };

// spec:  (batch, n_bins, n_frames) real, element strides (spec_sb, spec_sf, spec_st); either
//        bins or frames may be the unit-stride axis (both layouts are fast).
// out:   (batch, n_mels, n_frames) contiguous.
// out[b, m, t] = L(max(sum_k w[m, k] * spec[b, k, t], floor)) with L the chosen log (none:
// identity, and the clamp is skipped when floor <= 0 and log is none). NaN propagates.
// Throws ArgumentError on inconsistent sizes. Threaded with sonicore::parallel_for.
template <typename T>
void mel_project(const T* spec, int64_t batch, int64_t n_bins, int64_t n_frames,
                 int64_t spec_sb, int64_t spec_sf, int64_t spec_st,
                 const T* weights, const int64_t* offsets, const int32_t* bin_start, int64_t n_mels,
                 T* out, MelLog log, T floor);

// Whisper's dynamic-range step, in place on x (batch, n) contiguous:
// x = (max(x, max_item(x) - range) + offset) * scale, max taken per item (NaN-ignoring; an
// item with NaN keeps its NaN elements). Single pass per item, no threads: the data is small.
template <typename T>
void clamp_to_max_range(T* x, int64_t batch, int64_t n, T range, T offset, T scale);

// Framing of the fused log-mel spectrogram (torch.stft conventions).
struct MelFraming {
  int64_t n_fft = 0;        // even, >= 2
  int64_t hop = 0;          // >= 1
  bool center = true;       // pad n_fft / 2 on both sides
  bool reflect = true;      // centre padding: reflect (torch's default) or zeros
  int64_t zero_pad = 0;     // zeros appended to each item before framing (Whisper's padding=)
  int64_t n_frames = 0;     // frames produced, 1 <= n_frames <= the STFT's count (Whisper drops the last)
  bool magnitude = false;   // |X| instead of |X|^2
};

// Whisper's last step, done on the fused result when `enabled`:
// x = (max(x, max_item(x) - range) + offset) * scale, max per item, NaN-ignoring.
struct MelDynamicRange {
  bool enabled = false;
  double range = 8.0, offset = 4.0, scale = 0.25;
};

// Signal to (log-)mel spectrogram in one pass, with no (frames, bins) spectrogram in memory:
// per block of frames, each frame's FFT power goes into a cache-resident bins-by-frames tile,
// the sparse bank (packed as for mel_project) projects it and the clamp + log follow, writing
// out's columns directly; the dynamic-range step, if any, is a second light pass.
// x:      (batch, samples), item b at x + b * x_stride, samples >= 1.
// window: (n_fft,).
// out:    (batch, n_mels, framing.n_frames) contiguous.
// Throws ArgumentError on inconsistent sizes. Threaded with sonicore::parallel_for.
template <typename T>
void log_mel_spectrogram(const T* x, int64_t batch, int64_t samples, int64_t x_stride, const T* window,
                         const MelFraming& framing, const T* weights, const int64_t* offsets,
                         const int32_t* bin_start, int64_t n_mels, T* out, MelLog log, T floor,
                         const MelDynamicRange& range);

}  // namespace sonicore
