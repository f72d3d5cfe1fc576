#include "sonicore/mel.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "sonicore/common.h"
#include "sonicore/fft.h"
#include "sonicore/parallel.h"
#include "sonicore/stft.h"
#include "mel_lanes.h"

// The projection + log loops are written to vectorise; on x86-64 GCC/Clang compile them once
// per ISA (AVX-512, AVX2, baseline) and pick at load time, so the wheel stays portable.
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(__SANITIZE_ADDRESS__)
#define SONICORE_MEL_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define SONICORE_MEL_CLONES
#endif

namespace sonicore {
namespace {

// Natural log written so that a loop over it vectorises (libm's scalar log is ~10x slower
// than the projection itself). x = 2^e * m with m in [sqrt(1/2), sqrt(2)); ln m =
// 2 atanh(s), s = (m - 1) / (m + 1), |s| < 0.172, summed as an odd series: 5 terms give
// float precision, 10 double. Inputs that are not finite positive normals (NaN, inf, 0,
// negatives, subnormals) take std::log, so the special values are exactly libm's.
template <typename T> struct LogBits;
template <> struct LogBits<float> {
  using I = int32_t;
  static constexpr int mant = 23, bias = 127, terms = 5;
  static constexpr I one = 0x3f800000, sqrt_half = 0x3f3504f3;  // bit patterns of 1 and sqrt(1/2)
};
template <> struct LogBits<double> {
  using I = int64_t;
  static constexpr int mant = 52, bias = 1023, terms = 10;
  static constexpr I one = 0x3ff0000000000000LL, sqrt_half = 0x3fe6a09e667f3bcdLL;
};

template <typename T>
inline T fast_log(T x) {
  using B = LogBits<T>;
  using I = typename B::I;
  I bits;
  std::memcpy(&bits, &x, sizeof(T));
  // Offsetting by (1 - sqrt(1/2)) makes the exponent step exactly where the mantissa passes
  // sqrt(2), so m lands in [sqrt(1/2), sqrt(2)) without a branch.
  bits += B::one - B::sqrt_half;
  const I e = (bits >> B::mant) - B::bias;
  bits = (bits & ((I(1) << B::mant) - 1)) + B::sqrt_half;
  T m;
  std::memcpy(&m, &bits, sizeof(T));
  const T s = (m - T(1)) / (m + T(1));
  const T s2 = s * s;
  T poly = T(1) / T(2 * B::terms - 1);
#pragma GCC unroll 16
  for (int k = B::terms - 2; k >= 0; --k) poly = poly * s2 + T(1) / T(2 * k + 1);
  return T(e) * T(0.6931471805599453) + T(2) * s * poly;
}

// Applies clamp + log to v[0..n), keeping a copy of the inputs so that any special value
// (NaN, inf, zero, subnormal) gets libm's exact answer.
template <typename T>
inline __attribute__((always_inline)) void finish_values(T* v, int64_t n, MelLog log, T floor, bool clamp) {
  if (clamp)
    for (int64_t i = 0; i < n; ++i) v[i] = v[i] < floor ? floor : v[i];
  if (log == MelLog::none) return;
  const T scale = log == MelLog::log10 ? T(0.43429448190325176) : T(1);
  int64_t i = 0;
  while (i < n) {
    // Vector-friendly chunk; a special value inside it sends just that chunk to libm.
    const int64_t e = std::min<int64_t>(n, i + 64);
    int bad = 0;
    for (int64_t j = i; j < e; ++j)
      bad += !((v[j] >= std::numeric_limits<T>::min()) & (v[j] <= std::numeric_limits<T>::max()));
    if (bad == 0) {
      for (int64_t j = i; j < e; ++j) v[j] = fast_log(v[j]) * scale;
    } else {
      for (int64_t j = i; j < e; ++j) v[j] = log == MelLog::log10 ? std::log10(v[j]) : std::log(v[j]);
    }
    i = e;
  }
}

// One block of frames with frames as the unit-stride axis: accumulate a run of frames per
// (mel, bin) pair, so the inner loop is a contiguous axpy the compiler vectorises. spec points
// at the block's first frame of bin 0 (bin k at spec + k * sf); out at the block's first frame
// of mel 0 (mel m at out + m * so).
// top (optional): receives the largest finished value (NaN ignored), taken while it is in L1:
// a running maximum per frame (vectorised along frames), reduced once at the end.
template <typename T>
SONICORE_MEL_CLONES void project_rows(const T* spec, int64_t sf, T* out, int64_t so, int64_t n,
                                      const T* weights, const int64_t* offsets, const int32_t* bin_start,
                                      int64_t n_mels, MelLog log, T floor, bool clamp, T* top = nullptr) {
  constexpr int64_t kMaxN = 64;
  T acc[kMaxN];
  if (top) {
    SONICORE_CHECK(n <= kMaxN, "mel: block of frames too large for the running maximum");
    for (int64_t t = 0; t < n; ++t) acc[t] = -std::numeric_limits<T>::infinity();
  }
  for (int64_t m = 0; m < n_mels; ++m) {
    T* __restrict o = out + m * so;
    std::fill(o, o + n, T(0));
    for (int64_t i = offsets[m]; i < offsets[m + 1]; ++i) {
      const T w = weights[i];
      const T* __restrict s = spec + (bin_start[m] + (i - offsets[m])) * sf;
      for (int64_t t = 0; t < n; ++t) o[t] += w * s[t];
    }
    finish_values(o, n, log, floor, clamp);
    if (top)
      for (int64_t t = 0; t < n; ++t) acc[t] = o[t] > acc[t] ? o[t] : acc[t];
  }
  if (top)
    for (int64_t t = 0; t < n; ++t) *top = acc[t] > *top ? acc[t] : *top;
}

// Whisper's dynamic-range map on rows x n values (row stride so): (max(v, lo) + offset) * scale.
// `v < lo ? lo : v` leaves a NaN element NaN (as torch.maximum does).
template <typename T>
SONICORE_MEL_CLONES void apply_range(T* out, int64_t so, int64_t rows, int64_t n, T lo, T offset, T scale) {
  for (int64_t m = 0; m < rows; ++m) {
    T* __restrict v = out + m * so;
    for (int64_t t = 0; t < n; ++t) v[t] = ((v[t] < lo ? lo : v[t]) + offset) * scale;
  }
}

// Bins are the unit-stride axis (spectrogram stored frame by frame, as the STFT writes it):
// transpose the block into a bin-major tile first, so the projection is the same vectorised
// axpy as above instead of one short dot product per (frame, mel).
template <typename T>
void project_via_tile(const T* spec, int64_t sf, int64_t st, T* out, int64_t so, int64_t n,
                      const T* weights, const int64_t* offsets, const int32_t* bin_start,
                      int64_t n_mels, MelLog log, T floor, bool clamp) {
  int64_t n_used = 0;  // bins any filter reads
  for (int64_t m = 0; m < n_mels; ++m)
    n_used = std::max<int64_t>(n_used, bin_start[m] + (offsets[m + 1] - offsets[m]));
  std::vector<T> tile(size_t(n_used) * size_t(n));
  for (int64_t t = 0; t < n; ++t) {
    const T* s = spec + t * st;
    for (int64_t k = 0; k < n_used; ++k) tile[size_t(k * n + t)] = s[k * sf];
  }
  project_rows(tile.data(), n, out, so, n, weights, offsets, bin_start, n_mels, log, floor, clamp);
}

// Every packed row must stay inside the spectrum; returns the number of bins any row reads.
int64_t check_bank(const int64_t* offsets, const int32_t* bin_start, int64_t n_mels, int64_t n_bins,
                   const char* who) {
  SONICORE_CHECK(offsets[0] == 0, std::string(who) + ": offsets[0] must be 0");
  int64_t used = 0;
  for (int64_t m = 0; m < n_mels; ++m) {
    const int64_t len = offsets[m + 1] - offsets[m];
    SONICORE_CHECK(len >= 0 && bin_start[m] >= 0 && bin_start[m] + len <= n_bins,
                   std::string(who) + ": a filterbank row reaches outside the spectrum's bins");
    if (len > 0) used = std::max<int64_t>(used, bin_start[m] + len);
  }
  return used;
}

// Frame starting at `start` (may reach outside the item) of one item: samples [0, S) followed by
// zeros up to L, centre-padded by reflection about the ends of [0, L) or by zeros. Interior
// frames are read in place; edge frames are assembled in tmp.
template <typename T>
const T* item_frame(const T* x, int64_t S, int64_t L, int64_t start, int64_t n, bool reflect, T* tmp) {
  if (start >= 0 && start + n <= S) return x + start;
  for (int64_t i = 0; i < n; ++i) {
    int64_t j = start + i;
    bool inside = true;
    if (j < 0) {
      if (reflect) j = -j;
      else inside = false;
    } else if (j >= L) {
      if (reflect) j = 2 * (L - 1) - j;
      else inside = false;
    }
    tmp[i] = inside && j < S ? x[j] : T(0);
  }
  return tmp;
}

}  // namespace

template <typename T>
void mel_project(const T* spec, int64_t batch, int64_t n_bins, int64_t n_frames,
                 int64_t spec_sb, int64_t spec_sf, int64_t spec_st,
                 const T* weights, const int64_t* offsets, const int32_t* bin_start, int64_t n_mels,
                 T* out, MelLog log, T floor) {
  SONICORE_CHECK(batch >= 0 && n_bins > 0 && n_frames >= 0 && n_mels > 0,
                 "mel_project: expected batch >= 0, n_bins > 0, n_frames >= 0, n_mels > 0");
  check_bank(offsets, bin_start, n_mels, n_bins, "mel_project");
  if (batch == 0 || n_frames == 0) return;
  const bool clamp = !(log == MelLog::none && floor <= T(0));
  // Work items are (batch, block of frames); blocks of 64 frames keep a mel row's
  // accumulators in L1 for the frames-inner layout.
  const int64_t block = 64;
  const int64_t blocks = (n_frames + block - 1) / block;
  const int64_t work_per_block = std::max<int64_t>(1, offsets[n_mels] * block);
  const int64_t grain = std::max<int64_t>(1, 32768 / work_per_block);
  parallel_for(batch * blocks, grain, [&](int64_t begin, int64_t end) {
    for (int64_t w = begin; w < end; ++w) {
      const int64_t b = w / blocks, t0 = (w % blocks) * block, t1 = std::min(n_frames, t0 + block);
      const T* s = spec + b * spec_sb;
      T* o = out + b * n_mels * n_frames;
      if (spec_st == 1)
        project_rows(s + t0, spec_sf, o + t0, n_frames, t1 - t0, weights, offsets, bin_start, n_mels, log, floor, clamp);
      else
        project_via_tile(s + t0 * spec_st, spec_sf, spec_st, o + t0, n_frames, t1 - t0, weights, offsets, bin_start,
                         n_mels, log, floor, clamp);
    }
  });
}

template <typename T>
void clamp_to_max_range(T* x, int64_t batch, int64_t n, T range, T offset, T scale) {
  SONICORE_CHECK(batch >= 0 && n >= 0, "clamp_to_max_range: sizes must be >= 0");
  for (int64_t b = 0; b < batch; ++b) {
    T* v = x + b * n;
    T top = -std::numeric_limits<T>::infinity();
    for (int64_t i = 0; i < n; ++i) top = v[i] > top ? v[i] : top;
    const T lo = top - range;
    // `v < lo ? lo : v` leaves a NaN element NaN (as torch.maximum does).
    for (int64_t i = 0; i < n; ++i) v[i] = ((v[i] < lo ? lo : v[i]) + offset) * scale;
  }
}

template <typename T>
void log_mel_spectrogram(const T* x, int64_t batch, int64_t samples, int64_t x_stride, const T* window,
                         const MelFraming& framing, const T* weights, const int64_t* offsets,
                         const int32_t* bin_start, int64_t n_mels, T* out, MelLog log, T floor,
                         const MelDynamicRange& range) {
  SONICORE_CHECK(batch >= 1 && samples >= 1 && n_mels >= 1 && framing.zero_pad >= 0,
                 "log_mel_spectrogram: expected batch >= 1, samples >= 1, n_mels >= 1, zero_pad >= 0");
  stft::StftParams p;
  p.n_fft = framing.n_fft;
  p.hop = framing.hop;
  p.center = framing.center;
  p.pad_mode = framing.reflect ? stft::PadMode::reflect : stft::PadMode::constant;
  stft::check_params(p);
  const int64_t L = samples + framing.zero_pad;
  const int64_t n_frames = framing.n_frames;
  SONICORE_CHECK(n_frames >= 1 && n_frames <= stft::num_frames(L, p),
                 "log_mel_spectrogram: n_frames must be between 1 and the STFT's frame count");
  const int64_t n = p.n_fft, bins = n / 2 + 1, pad = p.center ? n / 2 : 0;
  const int64_t n_used = check_bank(offsets, bin_start, n_mels, bins, "log_mel_spectrogram");
  auto plan = fft::real_plan<T>(n);
  std::vector<T> we(size_t(n / 2)), wo(size_t(n / 2));
  for (int64_t j = 0; j < n / 2; ++j) {
    we[size_t(j)] = window[2 * j];
    wo[size_t(j)] = window[2 * j + 1];
  }
  fft::ForwardOptions opt;
  opt.output = framing.magnitude ? fft::Output::magnitude : fft::Output::power;
  const bool clamp = !(log == MelLog::none && floor <= T(0));
  // 128 bytes of frames per bin: the (bins x block) tile is 25 KB for Whisper's 201 bins, so
  // the spectrum never leaves L1 between the FFT and the projection.
  constexpr int64_t block = 128 / int64_t(sizeof(T));
  const int64_t blocks = (n_frames + block - 1) / block;
  std::vector<T> tops(size_t(batch * blocks), -std::numeric_limits<T>::infinity());
  // Sizes whose n / 2 factors into 2, 3 and 5 take the frames-in-lanes FFT, which writes the
  // tile's columns directly; others the per-frame FFT plus a scatter into the tile.
  auto lane_plan = mel_lanes::plan_for<T>(n);
  constexpr int64_t lanes = mel_lanes::lanes<T>();
  static_assert(block % lanes == 0, "a tile holds whole lane passes");
  static_assert(block <= 64, "project_rows keeps a running maximum for at most 64 frames");
  parallel_for(batch * blocks, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> work, tmp, row;
    if (lane_plan) {
      work.resize(size_t(mel_lanes::work_size(*lane_plan)));
      tmp.resize(size_t(lanes * n));
    } else {
      work.resize(size_t(fft::work_size(*plan)));
      tmp.resize(size_t(n));
      row.resize(size_t(bins));
    }
    std::vector<T> tile(size_t(std::max<int64_t>(1, n_used) * block));
    for (int64_t w = begin; w < end; ++w) {
      const int64_t b = w / blocks, t0 = (w % blocks) * block, nb = std::min(block, n_frames - t0);
      const T* xb = x + b * x_stride;
      if (lane_plan) {
        for (int64_t j0 = 0; j0 < nb; j0 += lanes) {
          const int64_t count = std::min(lanes, nb - j0);
          const T* frames[lanes];
          for (int64_t j = 0; j < count; ++j)
            frames[j] = item_frame(xb, samples, L, (t0 + j0 + j) * p.hop - pad, n, framing.reflect,
                                   tmp.data() + j * n);
          mel_lanes::power_pass(*lane_plan, frames, count, window, framing.magnitude, n_used, tile.data() + j0,
                                block, work.data());
        }
      } else {
        for (int64_t j = 0; j < nb; ++j) {
          const T* f = item_frame(xb, samples, L, (t0 + j) * p.hop - pad, n, framing.reflect, tmp.data());
          fft::forward_frame(*plan, f, we.data(), wo.data(), opt, row.data(), work.data());
          // Frame j becomes column j of the bins-major tile, so the projection below runs
          // along frames (contiguous, vectorised) instead of short dot products along bins.
          for (int64_t k = 0; k < n_used; ++k) tile[size_t(k * block + j)] = row[size_t(k)];
        }
      }
      T* o = out + b * n_mels * n_frames + t0;
      project_rows(tile.data(), block, o, n_frames, nb, weights, offsets, bin_start, n_mels, log, floor, clamp,
                   range.enabled ? &tops[size_t(w)] : nullptr);
    }
  });
  if (!range.enabled) return;
  // Second light pass: the item's maximum is known only now.
  parallel_for(batch * blocks, 4, [&](int64_t begin, int64_t end) {
    for (int64_t w = begin; w < end; ++w) {
      const int64_t b = w / blocks, t0 = (w % blocks) * block, nb = std::min(block, n_frames - t0);
      T top = -std::numeric_limits<T>::infinity();
      for (int64_t i = b * blocks; i < (b + 1) * blocks; ++i) top = tops[size_t(i)] > top ? tops[size_t(i)] : top;
      const T lo = top - T(range.range), off = T(range.offset), sc = T(range.scale);
      T* o = out + b * n_mels * n_frames + t0;
      apply_range(o, n_frames, n_mels, nb, lo, off, sc);
    }
  });
}

template void log_mel_spectrogram<float>(const float*, int64_t, int64_t, int64_t, const float*, const MelFraming&,
                                         const float*, const int64_t*, const int32_t*, int64_t, float*, MelLog,
                                         float, const MelDynamicRange&);
template void log_mel_spectrogram<double>(const double*, int64_t, int64_t, int64_t, const double*,
                                          const MelFraming&, const double*, const int64_t*, const int32_t*,
                                          int64_t, double*, MelLog, double, const MelDynamicRange&);

template void clamp_to_max_range<float>(float*, int64_t, int64_t, float, float, float);
template void clamp_to_max_range<double>(double*, int64_t, int64_t, double, double, double);

template void mel_project<float>(const float*, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
                                 const float*, const int64_t*, const int32_t*, int64_t, float*, MelLog, float);
template void mel_project<double>(const double*, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
                                  const double*, const int64_t*, const int32_t*, int64_t, double*, MelLog, double);

}  // namespace sonicore
