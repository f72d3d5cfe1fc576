// AVX-512 FFT kernels: the templates of fft_kernels.h on 512-bit vectors (built with -mavx512f...).
#include "fft_kernels.h"

#if defined(__x86_64__) && defined(__AVX512F__)
#include <immintrin.h>

namespace sonicore {
namespace fft {
namespace {

struct Avx512F {
  using Scalar = float;
  using V = __m512;
  static constexpr int W = 16;
  static V load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, V v) { _mm512_storeu_ps(p, v); }
  static V set1(float a) { return _mm512_set1_ps(a); }
  static V add(V a, V b) { return _mm512_add_ps(a, b); }
  static V sub(V a, V b) { return _mm512_sub_ps(a, b); }
  static V mul(V a, V b) { return _mm512_mul_ps(a, b); }
  static V sqrt(V a) { return _mm512_sqrt_ps(a); }
  static V rev_load(const float* p) {
    return _mm512_permutexvar_ps(_mm512_setr_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                 _mm512_loadu_ps(p));
  }
  static void load_deint(const float* p, V& even, V& odd) {
    V a = _mm512_loadu_ps(p), b = _mm512_loadu_ps(p + 16);
    even = _mm512_permutex2var_ps(
        a, _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30), b);
    odd = _mm512_permutex2var_ps(
        a, _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31), b);
  }
  static void store_int(float* p, V a, V b) {
    _mm512_storeu_ps(p, _mm512_permutex2var_ps(
        a, _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23), b));
    _mm512_storeu_ps(p + 16, _mm512_permutex2var_ps(
        a, _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31), b));
  }
};

struct Avx512D {
  using Scalar = double;
  using V = __m512d;
  static constexpr int W = 8;
  static V load(const double* p) { return _mm512_loadu_pd(p); }
  static void store(double* p, V v) { _mm512_storeu_pd(p, v); }
  static V set1(double a) { return _mm512_set1_pd(a); }
  static V add(V a, V b) { return _mm512_add_pd(a, b); }
  static V sub(V a, V b) { return _mm512_sub_pd(a, b); }
  static V mul(V a, V b) { return _mm512_mul_pd(a, b); }
  static V sqrt(V a) { return _mm512_sqrt_pd(a); }
  static V rev_load(const double* p) {
    return _mm512_permutexvar_pd(_mm512_setr_epi64(7, 6, 5, 4, 3, 2, 1, 0), _mm512_loadu_pd(p));
  }
  static void load_deint(const double* p, V& even, V& odd) {
    V a = _mm512_loadu_pd(p), b = _mm512_loadu_pd(p + 8);
    even = _mm512_permutex2var_pd(a, _mm512_setr_epi64(0, 2, 4, 6, 8, 10, 12, 14), b);
    odd = _mm512_permutex2var_pd(a, _mm512_setr_epi64(1, 3, 5, 7, 9, 11, 13, 15), b);
  }
  static void store_int(double* p, V a, V b) {
    _mm512_storeu_pd(p, _mm512_permutex2var_pd(a, _mm512_setr_epi64(0, 8, 1, 9, 2, 10, 3, 11), b));
    _mm512_storeu_pd(p + 8, _mm512_permutex2var_pd(a, _mm512_setr_epi64(4, 12, 5, 13, 6, 14, 7, 15), b));
  }
};

}  // namespace

template <> Kernels<float> kernels_avx512<float>() { return make_kernels<Avx512F, float>(); }
template <> Kernels<double> kernels_avx512<double>() { return make_kernels<Avx512D, double>(); }

}  // namespace fft
}  // namespace sonicore

#else
namespace sonicore {
namespace fft {
template <> Kernels<float> kernels_avx512<float>() { return kernels_scalar<float>(); }
template <> Kernels<double> kernels_avx512<double>() { return kernels_scalar<double>(); }
}  // namespace fft
}  // namespace sonicore
#endif
