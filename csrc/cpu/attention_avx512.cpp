// AVX-512 instantiation of the CPU attention kernel (compiled with -mavx512f ... by CMake).
// Only x86 builds compile this copy; pick() never asks for it elsewhere.
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#include "attention_impl.h"

namespace sonicore {
namespace attn {
namespace {

struct Avx512 {
  static constexpr int W = 16;
  static constexpr int MR_QK = 12;  // 12 keys x 32 queries = 24 zmm accumulators
  static constexpr bool WIDE_QK = true;  // 6 keys x 64 queries tiles when 64 queries remain
  static constexpr int QK_NV = 2;   // query vectors per narrow QK^T tile (32 queries)
  static constexpr int MR_PV = 6;   // 6 queries x 64 channels = 24 zmm accumulators
  static constexpr int PV_NV = 4;   // channel vectors per P V tile
  static constexpr bool TRANSPOSE16 = true;
  static constexpr int DEC_ROWS = 4;  // decoder path: 4 keys x 4 rows = 16 zmm accumulators
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
  static float hsum(reg a) { return _mm512_reduce_add_ps(a); }
  // W half-precision values (bfloat16 / float16 bits) as float32.
  static reg load_bf16(const uint16_t* p) {
    const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  }
  static reg load_f16(const uint16_t* p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
  // s where j < lim, else -inf.
  static reg mask_ge(reg s, reg j, reg lim) {
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(j, lim, _CMP_LT_OQ), _mm512_set1_ps(kNegInf), s);
  }
  static reg neginf_to_zero(reg m) {
    return _mm512_mask_mov_ps(m, _mm512_cmp_ps_mask(m, _mm512_set1_ps(kNegInf), _CMP_EQ_OQ), _mm512_setzero_ps());
  }
  // dst[c * ldd + r] = src[r * lds + c] * scale for a 16 x 16 block.
  static void transpose16(const float* src, int64_t lds, float scale, float* dst, int64_t ldd) {
    const reg sc = _mm512_set1_ps(scale);
    reg r[16];
    for (int i = 0; i < 16; ++i) r[i] = _mm512_loadu_ps(src + i * lds);
    transpose16x16(r);
    for (int i = 0; i < 16; ++i) _mm512_storeu_ps(dst + i * ldd, _mm512_mul_ps(r[i], sc));
  }
  static reg exp2_finite(reg x) { return exp2_avx512(x); }
  static reg exp2(reg x) { return exp2_avx512_clamped(x); }
};

}  // namespace

const Kernels& kernels_avx512() { return make_kernels<Avx512>(); }

}  // namespace attn
}  // namespace sonicore

#endif  // x86
