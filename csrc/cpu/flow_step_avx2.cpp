// AVX2 body of the fused flow-matching step: 8 floats per iteration, f16 via F16C,
// bf16 by widening the bits; the (< 8 element) tail goes through the scalar body, which
// rounds identically.
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#include "flow_step_impl.h"

namespace sonicore {
namespace detail {

#if defined(__AVX2__)
namespace {

template <DType D>
inline __m256 load8(const void* p, int64_t i) {
  if constexpr (D == DType::f32) {
    return _mm256_loadu_ps(static_cast<const float*>(p) + i);
  } else if constexpr (D == DType::f16) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(p) + i)));
  } else {
    __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(p) + i));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  }
}

struct Avx2Row : RowSpan {
  template <DType D, bool Guided, bool Prev, bool Store>
  void run() const {
    const auto [x, out, vc, vu, pv, st, dup] = row_pointers<D, Guided, Prev, Store>(a, row);
    const __m256 vw = _mm256_set1_ps(w), vwu = _mm256_set1_ps(wu);
    const __m256 vcur = _mm256_set1_ps(a.cur_weight), vpw = _mm256_set1_ps(a.prev_weight);
    const __m256 vdt = _mm256_set1_ps(a.dt);
    int64_t i = c0;
    for (; i + 8 <= c1; i += 8) {
      __m256 v = load8<D>(vc, i);
      if constexpr (Guided) v = _mm256_add_ps(_mm256_mul_ps(vw, v), _mm256_mul_ps(vwu, load8<D>(vu, i)));
      __m256 d = v;
      if constexpr (Prev) d = _mm256_add_ps(_mm256_mul_ps(vcur, v), _mm256_mul_ps(vpw, _mm256_loadu_ps(pv + i)));
      const __m256 o = _mm256_add_ps(_mm256_loadu_ps(x + i), _mm256_mul_ps(vdt, d));
      if constexpr (Store) _mm256_storeu_ps(st + i, v);
      _mm256_storeu_ps(out + i, o);
      if (dup) _mm256_storeu_ps(dup + i, o);
    }
    if (i < c1) flow_step_row_scalar(a, row, i, c1, w, wu);
  }
};

}  // namespace

void flow_step_row_avx2(const FlowStepArgs& a, int64_t row, int64_t c0, int64_t c1, float w, float wu) {
  dispatch_flow_step(a, Avx2Row{{a, row, c0, c1, w, wu}});
}
#else
// Built without AVX2 (non-x86 targets): the dispatcher never asks for this path.
void flow_step_row_avx2(const FlowStepArgs& a, int64_t row, int64_t c0, int64_t c1, float w, float wu) {
  flow_step_row_scalar(a, row, c0, c1, w, wu);
}
#endif

}  // namespace detail
}  // namespace sonicore
