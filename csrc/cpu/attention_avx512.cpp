// AVX-512 instantiation of the CPU attention kernel (compiled with -mavx512f ... by CMake).
// Only x86 builds compile this copy; pick() never asks for it elsewhere.
#if defined(__x86_64__) || defined(__i386__)
// GCC 12 reports false "may be used uninitialized" warnings inside its own AVX-512 mask
// intrinsics (avx512fintrin.h); they are not about this file's code.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include "attention_impl.h"

namespace sonicore {
namespace attn {
namespace {

struct Avx512 {
  static constexpr int W = 16;
  static constexpr int MR_QK = 12;  // 12 keys x 32 queries = 24 zmm accumulators
  static constexpr bool WIDE_QK = true;  // 6 keys x 64 queries tiles when 64 queries remain
  static constexpr int MR_PV = 6;   // 6 queries x 64 channels = 24 zmm accumulators
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
  // s where j < lim, else -inf.
  static reg mask_ge(reg s, reg j, reg lim) {
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(j, lim, _CMP_LT_OQ), _mm512_set1_ps(kNegInf), s);
  }
  static reg neginf_to_zero(reg m) {
    return _mm512_mask_mov_ps(m, _mm512_cmp_ps_mask(m, _mm512_set1_ps(kNegInf), _CMP_EQ_OQ), _mm512_setzero_ps());
  }
  // 2^x: round to the nearest integer n, a degree-5 polynomial of 2^f on [-1/2, 1/2], fitted
  // for relative error (1.4e-7), then scalef by n. The lower clamp keeps -inf from turning into
  // NaN (2^-150 rounds to exactly 0); max(c, x) returns x when x is NaN, so NaN survives.
  static reg exp2(reg x) { return exp2_finite(_mm512_max_ps(_mm512_set1_ps(-150.0f), x)); }
  // 2^x for x that is not -inf (blocks without masked scores): scalef takes any finite n.
  static reg exp2_finite(reg x) {
    reg n = _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    reg f = _mm512_sub_ps(x, n);
    reg y = _mm512_set1_ps(1.3266970636323094e-03f);
    y = _mm512_fmadd_ps(y, f, _mm512_set1_ps(9.6754599362611771e-03f));
    y = _mm512_fmadd_ps(y, f, _mm512_set1_ps(5.5507425218820572e-02f));
    y = _mm512_fmadd_ps(y, f, _mm512_set1_ps(2.4022121727466583e-01f));
    y = _mm512_fmadd_ps(y, f, _mm512_set1_ps(6.9314694404602051e-01f));
    y = _mm512_fmadd_ps(y, f, _mm512_set1_ps(1.0000001192092896f));
    return _mm512_scalef_ps(y, n);
  }
};

}  // namespace

const Kernels& kernels_avx512() { return make_kernels<Avx512>(); }

}  // namespace attn
}  // namespace sonicore

#endif  // x86
