#include "sonicore/mel.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "sonicore/common.h"
#include "sonicore/parallel.h"

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
template <typename T>
SONICORE_MEL_CLONES void project_rows(const T* spec, int64_t sf, T* out, int64_t so, int64_t n,
                                      const T* weights, const int64_t* offsets, const int32_t* bin_start,
                                      int64_t n_mels, MelLog log, T floor, bool clamp) {
  for (int64_t m = 0; m < n_mels; ++m) {
    T* __restrict o = out + m * so;
    std::fill(o, o + n, T(0));
    for (int64_t i = offsets[m]; i < offsets[m + 1]; ++i) {
      const T w = weights[i];
      const T* __restrict s = spec + (bin_start[m] + (i - offsets[m])) * sf;
      for (int64_t t = 0; t < n; ++t) o[t] += w * s[t];
    }
    finish_values(o, n, log, floor, clamp);
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

}  // namespace

template <typename T>
void mel_project(const T* spec, int64_t batch, int64_t n_bins, int64_t n_frames,
                 int64_t spec_sb, int64_t spec_sf, int64_t spec_st,
                 const T* weights, const int64_t* offsets, const int32_t* bin_start, int64_t n_mels,
                 T* out, MelLog log, T floor) {
  SONICORE_CHECK(batch >= 0 && n_bins > 0 && n_frames >= 0 && n_mels > 0,
                 "mel_project: expected batch >= 0, n_bins > 0, n_frames >= 0, n_mels > 0");
  SONICORE_CHECK(offsets[0] == 0, "mel_project: offsets[0] must be 0");
  for (int64_t m = 0; m < n_mels; ++m) {
    const int64_t len = offsets[m + 1] - offsets[m];
    SONICORE_CHECK(len >= 0 && bin_start[m] >= 0 && bin_start[m] + len <= n_bins,
                   "mel_project: a filterbank row reaches outside the spectrum's bins");
  }
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

template void clamp_to_max_range<float>(float*, int64_t, int64_t, float, float, float);
template void clamp_to_max_range<double>(double*, int64_t, int64_t, double, double, double);

template void mel_project<float>(const float*, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
                                 const float*, const int64_t*, const int32_t*, int64_t, float*, MelLog, float);
template void mel_project<double>(const double*, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
                                  const double*, const int64_t*, const int32_t*, int64_t, double*, MelLog, double);

}  // namespace sonicore
