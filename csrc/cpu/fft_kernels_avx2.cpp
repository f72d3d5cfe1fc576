// AVX2 FFT kernels: the templates of fft_kernels.h on 256-bit vectors (built with -mavx2).
#include "fft_kernels.h"

#if defined(__x86_64__) && defined(__AVX2__)
#include <immintrin.h>

namespace sonicore {
namespace fft {
namespace {

struct Avx2F {
  using Scalar = float;
  using V = __m256;
  static constexpr int W = 8;
  static V load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, V v) { _mm256_storeu_ps(p, v); }
  static V set1(float a) { return _mm256_set1_ps(a); }
  static V add(V a, V b) { return _mm256_add_ps(a, b); }
  static V sub(V a, V b) { return _mm256_sub_ps(a, b); }
  static V mul(V a, V b) { return _mm256_mul_ps(a, b); }
  static V sqrt(V a) { return _mm256_sqrt_ps(a); }
  static V rev_load(const float* p) {
    return _mm256_permutevar8x32_ps(_mm256_loadu_ps(p), _mm256_setr_epi32(7, 6, 5, 4, 3, 2, 1, 0));
  }
  static void load_deint(const float* p, V& even, V& odd) {
    V a = _mm256_loadu_ps(p), b = _mm256_loadu_ps(p + 8);
    // shuffle gives [a0 a2 b0 b2 | a4 a6 b4 b6]; the 64-bit permute puts the halves in order.
    even = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, 0x88)), 0xD8));
    odd = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, 0xDD)), 0xD8));
  }
  static void store_int(float* p, V a, V b) {
    V lo = _mm256_unpacklo_ps(a, b), hi = _mm256_unpackhi_ps(a, b);
    _mm256_storeu_ps(p, _mm256_permute2f128_ps(lo, hi, 0x20));
    _mm256_storeu_ps(p + 8, _mm256_permute2f128_ps(lo, hi, 0x31));
  }
};

struct Avx2D {
  using Scalar = double;
  using V = __m256d;
  static constexpr int W = 4;
  static V load(const double* p) { return _mm256_loadu_pd(p); }
  static void store(double* p, V v) { _mm256_storeu_pd(p, v); }
  static V set1(double a) { return _mm256_set1_pd(a); }
  static V add(V a, V b) { return _mm256_add_pd(a, b); }
  static V sub(V a, V b) { return _mm256_sub_pd(a, b); }
  static V mul(V a, V b) { return _mm256_mul_pd(a, b); }
  static V sqrt(V a) { return _mm256_sqrt_pd(a); }
  static V rev_load(const double* p) { return _mm256_permute4x64_pd(_mm256_loadu_pd(p), 0x1B); }
  static void load_deint(const double* p, V& even, V& odd) {
    V a = _mm256_loadu_pd(p), b = _mm256_loadu_pd(p + 4);
    even = _mm256_permute4x64_pd(_mm256_unpacklo_pd(a, b), 0xD8);
    odd = _mm256_permute4x64_pd(_mm256_unpackhi_pd(a, b), 0xD8);
  }
  static void store_int(double* p, V a, V b) {
    V lo = _mm256_unpacklo_pd(a, b), hi = _mm256_unpackhi_pd(a, b);
    _mm256_storeu_pd(p, _mm256_permute2f128_pd(lo, hi, 0x20));
    _mm256_storeu_pd(p + 4, _mm256_permute2f128_pd(lo, hi, 0x31));
  }
};

}  // namespace

template <> Kernels<float> kernels_avx2<float>() { return make_kernels<Avx2F, float>(); }
template <> Kernels<double> kernels_avx2<double>() { return make_kernels<Avx2D, double>(); }

}  // namespace fft
}  // namespace sonicore

#else
namespace sonicore {
namespace fft {
template <> Kernels<float> kernels_avx2<float>() { return kernels_scalar<float>(); }
template <> Kernels<double> kernels_avx2<double>() { return kernels_scalar<double>(); }
}  // namespace fft
}  // namespace sonicore
#endif
