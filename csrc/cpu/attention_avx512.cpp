// AVX-512 instantiation of the CPU attention kernel (compiled with -mavx512f ... by CMake).
#include <immintrin.h>

#include "attention_impl.h"

namespace sonicore {
namespace attn {
namespace {

struct Avx512 {
  static constexpr int W = 16;
  static constexpr int MR_QK = 12;  // 12 rows x 32 keys = 24 zmm accumulators
  static constexpr int MR_PV = 6;   // 6 rows x 64 channels = 24 zmm accumulators
  using reg = __m512;
  static reg load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, reg v) { _mm512_storeu_ps(p, v); }
  static reg set1(float x) { return _mm512_set1_ps(x); }
  static reg zero() { return _mm512_setzero_ps(); }
  static reg fma(reg a, reg b, reg c) { return _mm512_fmadd_ps(a, b, c); }
  static reg mul(reg a, reg b) { return _mm512_mul_ps(a, b); }
  static reg add(reg a, reg b) { return _mm512_add_ps(a, b); }
  static reg sub(reg a, reg b) { return _mm512_sub_ps(a, b); }
  static reg max(reg a, reg b) { return _mm512_max_ps(a, b); }
  static float hmax(reg v) { return _mm512_reduce_max_ps(v); }
  static float hadd(reg v) { return _mm512_reduce_add_ps(v); }
  // 2^x: round to the nearest integer n, a degree-7 Taylor polynomial of 2^f on [-1/2, 1/2]
  // (relative error ~1e-8), then scalef by n. The lower clamp keeps -inf from turning into
  // NaN (2^-150 rounds to exactly 0); max(c, x) returns x when x is NaN, so NaN survives.
  static reg exp2(reg x) {
    x = _mm512_max_ps(_mm512_set1_ps(-150.0f), x);
    reg n = _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    reg f = _mm512_sub_ps(x, n);
    reg y = _mm512_set1_ps(1.5252733804059841e-05f);
    y = _mm512_fmadd_ps(y, f, _mm512_set1_ps(1.5403530393381606e-04f));
    y = _mm512_fmadd_ps(y, f, _mm512_set1_ps(1.3333558146428443e-03f));
    y = _mm512_fmadd_ps(y, f, _mm512_set1_ps(9.6181291076284772e-03f));
    y = _mm512_fmadd_ps(y, f, _mm512_set1_ps(5.5504108664821580e-02f));
    y = _mm512_fmadd_ps(y, f, _mm512_set1_ps(2.4022650695910071e-01f));
    y = _mm512_fmadd_ps(y, f, _mm512_set1_ps(6.9314718055994531e-01f));
    y = _mm512_fmadd_ps(y, f, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(y, n);
  }
};

}  // namespace

const Kernels& kernels_avx512() { return make_kernels<Avx512>(); }

}  // namespace attn
}  // namespace sonicore
