// AVX2/FMA instantiation of the CPU attention kernel (compiled with -mavx2 -mfma by CMake).
// Only x86 builds compile this copy; pick() never asks for it elsewhere.
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#include "attention_impl.h"

namespace sonicore {
namespace attn {
namespace {

struct Avx2 {
  static constexpr int W = 8;
  // 12 ymm accumulators + the 2 vectors loaded per step + 1 broadcast = 15 of the 16 registers:
  // wider tiles (3 keys x 32 queries, 3 rows x 32 channels) need 17 and were compiled with spills
  // or memory-operand FMAs.
  static constexpr int MR_QK = 6;  // 6 keys x 16 queries = 12 ymm accumulators
  static constexpr int QK_NV = 2;
  static constexpr bool WIDE_QK = false;
  static constexpr int MR_PV = 6;  // 6 queries x 16 channels = 12 ymm accumulators
  static constexpr int PV_NV = 2;
  static constexpr bool TRANSPOSE16 = false;  // Q is transposed by the scalar path
  static constexpr int DEC_ROWS = 2;  // decoder path: 4 keys x 2 rows = 8 ymm accumulators
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
  static float hsum(reg a) {
    __m128 x = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    x = _mm_add_ps(x, _mm_movehl_ps(x, x));
    return _mm_cvtss_f32(_mm_add_ss(x, _mm_movehdup_ps(x)));
  }
  // W half-precision values (bfloat16 / float16 bits) as float32.
  static reg load_bf16(const uint16_t* p) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  }
  static reg load_f16(const uint16_t* p) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }
  // s where j < lim, else -inf.
  static reg mask_ge(reg s, reg j, reg lim) {
    return _mm256_blendv_ps(_mm256_set1_ps(kNegInf), s, _mm256_cmp_ps(j, lim, _CMP_LT_OQ));
  }
  static reg neginf_to_zero(reg m) {
    return _mm256_blendv_ps(m, _mm256_setzero_ps(), _mm256_cmp_ps(m, _mm256_set1_ps(kNegInf), _CMP_EQ_OQ));
  }
  // 2^x as in the AVX-512 copy, with 2^n built in the exponent bits. Inputs below -126.5
  // (masked scores are -inf) give n = -127, whose exponent field is 0: an exact zero.
  // max(c, x) returns x when x is NaN, so NaN survives (its exponent field shifts out to 0, and
  // NaN * 0 is NaN). n comes from the rounding of x + (1.5 * 2^23 + 127), whose low mantissa bits
  // are then n + 127: shifted into the exponent field they are 2^n, without the two-uop
  // vroundps, a conversion and an integer add.
  static reg exp2_finite(reg x) { return exp2(x); }
  static reg exp2(reg x) {
    x = _mm256_max_ps(_mm256_set1_ps(-127.0f), x);
    const reg magic = _mm256_set1_ps(12583039.0f);  // 1.5 * 2^23 + 127
    const reg t = _mm256_add_ps(x, magic);           // round to nearest: low bits n + 127
    reg f = _mm256_sub_ps(x, _mm256_sub_ps(t, magic));
    reg y = _mm256_set1_ps(1.3266970636323094e-03f);
    y = _mm256_fmadd_ps(y, f, _mm256_set1_ps(9.6754599362611771e-03f));
    y = _mm256_fmadd_ps(y, f, _mm256_set1_ps(5.5507425218820572e-02f));
    y = _mm256_fmadd_ps(y, f, _mm256_set1_ps(2.4022121727466583e-01f));
    y = _mm256_fmadd_ps(y, f, _mm256_set1_ps(6.9314694404602051e-01f));
    y = _mm256_fmadd_ps(y, f, _mm256_set1_ps(1.0000001192092896f));
    return _mm256_mul_ps(y, _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_castps_si256(t), 23)));
  }
};

}  // namespace

const Kernels& kernels_avx2() { return make_kernels<Avx2>(); }

}  // namespace attn
}  // namespace sonicore

#endif  // x86
