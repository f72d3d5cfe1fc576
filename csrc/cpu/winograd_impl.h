// Tile kernels of the Winograd transforms; included once per ISA (winograd.cpp: baseline,
// winograd_avx2.cpp, winograd_avx512.cpp) with SONICORE_WINO_NS naming the namespace.
//
// Each tile is a handful of small linear combinations of channel vectors. The kernels run them on
// blocks of one SIMD register of channels (simd_math.h: 16 in AVX-512 builds, 8 otherwise) with the
// tile size a template parameter, so the compiler unrolls every loop except the channel-block one and
// keeps a block's rows in registers; the channel tail takes the same code one float at a time.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "simd_math.h"
#include "sonicore/winograd.h"

namespace sonicore {
namespace winograd_detail {
namespace SONICORE_WINO_NS {

namespace {
constexpr int64_t kLanes = kernel_math::kVecLanes;
constexpr int kMaxAlpha = 16;

using kernel_math::silu;

const float* zeros(int64_t n) {
  thread_local std::vector<float> z;
  if (static_cast<int64_t>(z.size()) < n) z.assign(n, 0.0f);
  return z.data();
}

// A block of kLanes channels as one GCC/Clang vector (lowered to zmm, ymm or xmm per ISA build).
using vec = kernel_math::vecf;
using kernel_math::loadv;
using kernel_math::storev;

// dst[p][c] = sum_q bt[p][q] * src[q][c] on the channel block at c0 (full vectors).
template <int A>
SONICORE_VEC_INLINE void combine_in(const float* const* src, const float (&bt)[kMaxAlpha][kMaxAlpha], float* const* dst,
                       int64_t c0) {
  vec d[A];
  for (int q = 0; q < A; ++q) d[q] = loadv(src[q] + c0);
  for (int p = 0; p < A; ++p) {
    vec acc = bt[p][0] * d[0];
    for (int q = 1; q < A; ++q) acc += bt[p][q] * d[q];
    storev(dst[p] + c0, acc);
  }
}

// The channel tail (fewer than kLanes), one channel at a time.
template <int A>
inline void combine_in_tail(const float* const* src, const float (&bt)[kMaxAlpha][kMaxAlpha], float* const* dst,
                            int64_t c0, int64_t c1) {
  for (int64_t c = c0; c < c1; ++c)
    for (int p = 0; p < A; ++p) {
      float acc = 0.0f;
      for (int q = 0; q < A; ++q) acc += bt[p][q] * src[q][c];
      dst[p][c] = acc;
    }
}

template <int A>
void input_impl(const WinogradInputArgs& a, int64_t i0, int64_t i1) {
  const int64_t T = (a.N + a.m - 1) / a.m, rows = a.B * T, half = a.r / 2;
  float bt[kMaxAlpha][kMaxAlpha];
  for (int p = 0; p < A; ++p)
    for (int q = 0; q < A; ++q) bt[p][q] = a.bt[p * A + q];
  const float* zero = zeros(a.C);
  const float* src[A];
  float* dst[A];
  for (int64_t i = i0; i < i1; ++i) {
    const int64_t b = i / T, t = i % T;
    int64_t limit = a.N;
    if (a.lens && a.lens[b] < limit) limit = a.lens[b] < 0 ? 0 : a.lens[b];
    for (int q = 0; q < A; ++q) {
      const int64_t n = t * a.m - half + q;
      src[q] = (n >= 0 && n < limit) ? a.x + b * a.x_sb + n * a.x_sn : zero;
      dst[q] = a.out + (q * rows + i) * a.C;
    }
    int64_t c0 = 0;
    for (; c0 + kLanes <= a.C; c0 += kLanes) combine_in<A>(src, bt, dst, c0);
    combine_in_tail<A>(src, bt, dst, c0, a.C);
  }
}


template <typename V>
SONICORE_VEC_INLINE V ld(const float* p) {
  if constexpr (sizeof(V) == sizeof(float)) return *p; else return loadv(p);
}
template <typename V>
SONICORE_VEC_INLINE void st(float* p, V v) {
  if constexpr (sizeof(V) == sizeof(float)) *p = v; else storev(p, v);
}

// One output frame's channels at c0 (V = vec: a full block; V = float: one tail channel):
// y = sum_p at[j][p] * M_p + bias, then the epilogue E. For swiglu the gate half sits `half` channels
// further in M and in the bias.
template <int A, WinogradEpilogue E, typename V>
SONICORE_VEC_INLINE void combine_out(const float* const* mrow, const float* atj, const float* bias, int64_t half,
                        float* o, const float* r, const float* g, int64_t c0) {
  V y = atj[0] * ld<V>(mrow[0] + c0);
  for (int p = 1; p < A; ++p) y += atj[p] * ld<V>(mrow[p] + c0);
  y += ld<V>(bias + c0);
  if constexpr (E == WinogradEpilogue::plain) {
    st(o + c0, y);
  } else if constexpr (E == WinogradEpilogue::gated) {
    st(o + c0, ld<V>(r + c0) + ld<V>(g + c0) * y);
  } else {
    V z = atj[0] * ld<V>(mrow[0] + half + c0);
    for (int p = 1; p < A; ++p) z += atj[p] * ld<V>(mrow[p] + half + c0);
    z += ld<V>(bias + half + c0);
    st(o + c0, silu(y) * z);
  }
}

template <int A, WinogradEpilogue E>
void output_impl(const WinogradOutputArgs& a, int64_t i0, int64_t i1) {
  const int64_t T = (a.N + a.m - 1) / a.m, rows = a.B * T;
  const int64_t Cout = E == WinogradEpilogue::swiglu ? a.C / 2 : a.C;
  const float* bias = a.bias ? a.bias : zeros(a.C);
  const float* mrow[A];
  for (int64_t i = i0; i < i1; ++i) {
    const int64_t b = i / T, t = i % T;
    for (int p = 0; p < A; ++p) mrow[p] = a.M + (p * rows + i) * a.C;
    for (int64_t j = 0; j < a.m; ++j) {
      const int64_t n = t * a.m + j;
      if (n >= a.N) break;
      const float* atj = a.at + j * A;
      float* o = a.out + b * a.out_sb + n * a.out_sn;
      const float* r = a.res ? a.res + b * a.res_sb + n * a.res_sn : nullptr;
      const float* g = a.gate ? a.gate + b * a.gate_sb + n * a.gate_sn : nullptr;
      int64_t c0 = 0;
      for (; c0 + kLanes <= Cout; c0 += kLanes) combine_out<A, E, vec>(mrow, atj, bias, Cout, o, r, g, c0);
      for (; c0 < Cout; ++c0) combine_out<A, E, float>(mrow, atj, bias, Cout, o, r, g, c0);
    }
  }
}

template <int A>
void output_mode(const WinogradOutputArgs& a, int64_t i0, int64_t i1) {
  switch (a.mode) {
    case WinogradEpilogue::plain: return output_impl<A, WinogradEpilogue::plain>(a, i0, i1);
    case WinogradEpilogue::gated: return output_impl<A, WinogradEpilogue::gated>(a, i0, i1);
    case WinogradEpilogue::swiglu: return output_impl<A, WinogradEpilogue::swiglu>(a, i0, i1);
  }
}

template <int A>
void dispatch_input(const WinogradInputArgs& a, int64_t i0, int64_t i1) {
  if constexpr (A <= kMaxAlpha) {
    if (a.m + a.r - 1 == A) return input_impl<A>(a, i0, i1);
    dispatch_input<A + 1>(a, i0, i1);
  }
}

template <int A>
void dispatch_output(const WinogradOutputArgs& a, int64_t i0, int64_t i1) {
  if constexpr (A <= kMaxAlpha) {
    if (a.alpha == A) return output_mode<A>(a, i0, i1);
    dispatch_output<A + 1>(a, i0, i1);
  }
}
}  // namespace

// Tiles i = b*T + t for i in [i0, i1).
void input_tiles(const WinogradInputArgs& a, int64_t i0, int64_t i1) { dispatch_input<1>(a, i0, i1); }
void output_tiles(const WinogradOutputArgs& a, int64_t i0, int64_t i1) { dispatch_output<1>(a, i0, i1); }

}  // namespace SONICORE_WINO_NS
}  // namespace winograd_detail
}  // namespace sonicore
