// AVX2/FMA instantiation of the CPU attention kernel (compiled with -mavx2 -mfma by CMake).
#include <immintrin.h>

#include "attention_impl.h"

namespace sonicore {
namespace attn {
namespace {

struct Avx2 {
  static constexpr int W = 8;
  static constexpr int MR_QK = 3;  // 3 rows x 32 keys = 12 ymm accumulators (16 registers in all)
  static constexpr int MR_PV = 3;  // 3 rows x 32 channels = 12 ymm accumulators
  using reg = __m256;
  static reg load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, reg v) { _mm256_storeu_ps(p, v); }
  static reg set1(float x) { return _mm256_set1_ps(x); }
  static reg zero() { return _mm256_setzero_ps(); }
  static reg fma(reg a, reg b, reg c) { return _mm256_fmadd_ps(a, b, c); }
  static reg mul(reg a, reg b) { return _mm256_mul_ps(a, b); }
  static reg add(reg a, reg b) { return _mm256_add_ps(a, b); }
  static reg sub(reg a, reg b) { return _mm256_sub_ps(a, b); }
  static reg max(reg a, reg b) { return _mm256_max_ps(a, b); }
  static float hmax(reg v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
    return _mm_cvtss_f32(m);
  }
  static float hadd(reg v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
  }
  // 2^x as in the AVX-512 copy, with 2^n built in the exponent bits. Inputs below -126.5
  // (masked scores are -inf) give n = -127, whose exponent field is 0: an exact zero.
  // max(c, x) returns x when x is NaN, so NaN survives.
  static reg exp2(reg x) {
    x = _mm256_max_ps(_mm256_set1_ps(-127.0f), x);
    reg n = _mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    reg f = _mm256_sub_ps(x, n);
    reg y = _mm256_set1_ps(1.5252733804059841e-05f);
    y = _mm256_fmadd_ps(y, f, _mm256_set1_ps(1.5403530393381606e-04f));
    y = _mm256_fmadd_ps(y, f, _mm256_set1_ps(1.3333558146428443e-03f));
    y = _mm256_fmadd_ps(y, f, _mm256_set1_ps(9.6181291076284772e-03f));
    y = _mm256_fmadd_ps(y, f, _mm256_set1_ps(5.5504108664821580e-02f));
    y = _mm256_fmadd_ps(y, f, _mm256_set1_ps(2.4022650695910071e-01f));
    y = _mm256_fmadd_ps(y, f, _mm256_set1_ps(6.9314718055994531e-01f));
    y = _mm256_fmadd_ps(y, f, _mm256_set1_ps(1.0f));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
  }
};

}  // namespace

const Kernels& kernels_avx2() { return make_kernels<Avx2>(); }

}  // namespace attn
}  // namespace sonicore
