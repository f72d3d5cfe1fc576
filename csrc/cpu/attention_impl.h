// Private to the CPU attention kernel: the tiled flash-style forward written once over a small
// SIMD trait (load / fma / exp2 ...) and instantiated per ISA in attention_cpu.cpp (portable),
// attention_avx2.cpp and attention_avx512.cpp. Everything here has internal linkage so the
// per-ISA copies can never be merged by the linker.
//
// K and V are read in their natural row layout. float32 inputs are used in place; float16 /
// bfloat16 ones (and V whose D is not a multiple of 16) are converted once by the driver into
// float32 rows (V zero-padded to Dp = D rounded up to 16 channels).
#pragma once
// GCC 12 reports false "(may be) used uninitialized" warnings inside its own AVX-512 mask and
// reduce intrinsics (avx512fintrin.h: _mm512_undefined_ps); they are not about this code.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <type_traits>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#include "sonicore/attention.h"
#include "sonicore/parallel.h"

namespace sonicore {
namespace attn {

constexpr int kQueryChunk = 32;  // query lanes per QK^T micro-tile
constexpr int kKeyBlock = 96;    // keys per online-softmax step (multiple of every MR_QK)
constexpr int kMaxQueryBlock = 64;  // query rows per task (multiple of kQueryChunk)
constexpr int64_t kDecodeRows = 8;  // calls with at most this many query rows take decode_tasks
constexpr int64_t kDecodeKeys = 64; // K / V rows per decode_tasks chunk

// What every ISA copy of the kernel needs; filled by the driver.
struct Ctx {
  const AttentionParams* p;
  int64_t Dp;              // head dim padded to 16
  int64_t Mq;              // query rows per sub-block (multiple of kQueryChunk)
  int64_t nsub = 1;        // sub-blocks per forward task (attention_probs: 1)
  int64_t nqb;             // tasks per (b, head)
  const float* kbase;      // float32 K rows: (b, h, j) at kbase + b*ks[0] + h*ks[1] + j*ks[2]
  int64_t ks[3];
  const float* vbase;      // float32 V rows with Dp readable channels (zero past D), same addressing
  int64_t vs[3];
  float qscale;            // scale * log2(e): scores live in log2 units so exp2 is the softmax exp
  int64_t key_block = kKeyBlock;  // keys per online-softmax step
  // attention_probs only
  const int32_t* heads = nullptr;
  int64_t num_heads = 0;
  float* probs = nullptr;
};

// One ISA's entry points: run tasks [t0, t1) of the forward / probs loops.
struct Kernels {
  void (*forward)(const Ctx&, int64_t, int64_t);
  void (*probs)(const Ctx&, int64_t, int64_t);
  void (*decode)(const Ctx&, int64_t, int64_t);  // q_len <= kDecodeRows: tasks (b, head)
  // One row of q/k/v to float32 (times `scale`), with this ISA's conversions (F16C where present).
  void (*load_row)(const void* base, DType dt, int64_t offset, int64_t n, float scale, float* dst);
};
const Kernels& kernels_avx2();
const Kernels& kernels_avx512();
// The AMX forward (attention_amx.cpp; only when cpu_has_amx()): packs K / V for the tiles, then
// runs (batch x heads x query blocks) tasks on the pool. Returns false, having done nothing,
// for a call it declines (non-finite inputs in a dtype it splits into parts).
bool forward_amx(const Ctx& cx);

}  // namespace attn
}  // namespace sonicore

namespace sonicore {
namespace attn {
namespace {

// ---------------------------------------------------------------- dtype conversion (scalar)

inline float half_to_float(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
  if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (man << 13);
  } else if (exp != 0) {
    bits = sign | ((exp + 112) << 23) | (man << 13);
  } else if (man == 0) {
    bits = sign;
  } else {  // subnormal half: normalise
    int e = -1;
    do {
      ++e;
      man <<= 1;
    } while (!(man & 0x400));
    bits = sign | (uint32_t(112 - e) << 23) | ((man & 0x3ff) << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

inline uint16_t float_to_half(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  uint32_t sign = (x >> 16) & 0x8000, ax = x & 0x7fffffffu;
  if (ax > 0x7f800000u) return uint16_t(sign | 0x7e00);       // NaN
  if (ax >= 0x477ff000u) return uint16_t(sign | 0x7c00);      // overflow (incl. rounding) -> inf
  if (ax < 0x38800000u) {                                       // subnormal or zero half
    if (ax < 0x33000000u) return uint16_t(sign);
    uint32_t e = ax >> 23, man = (ax & 0x7fffff) | 0x800000;
    uint32_t shift = 126 - e;  // 14..24
    uint32_t r = man >> shift, rem = man & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (r & 1))) ++r;
    return uint16_t(sign | r);
  }
  uint32_t r = ((ax >> 13) - (112u << 10));
  uint32_t rem = ax & 0x1fff;
  if (rem > 0x1000 || (rem == 0x1000 && (r & 1))) ++r;
  return uint16_t(sign | r);
}

inline float bf16_to_float(uint16_t h) {
  uint32_t bits = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

inline uint16_t float_to_bf16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  if ((x & 0x7fffffffu) > 0x7f800000u) return uint16_t((x >> 16) | 0x40);  // quiet NaN
  x += 0x7fff + ((x >> 16) & 1);  // round to nearest even
  return uint16_t(x >> 16);
}

inline void load_row(const void* base, DType dt, int64_t offset, int64_t n, float scale, float* dst) {
  switch (dt) {
    case DType::f32: {
      const float* s = static_cast<const float*>(base) + offset;
      for (int64_t i = 0; i < n; ++i) dst[i] = s[i] * scale;
      break;
    }
    case DType::f16: {
      const uint16_t* s = static_cast<const uint16_t*>(base) + offset;
      int64_t i = 0;
#if defined(__F16C__)  // the AVX2 / AVX-512 copies: hardware conversion, 8 values at a time
      const __m256 sc = _mm256_set1_ps(scale);
      for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_mul_ps(_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i))), sc));
#endif
      for (; i < n; ++i) dst[i] = half_to_float(s[i]) * scale;
      break;
    }
    default: {
      const uint16_t* s = static_cast<const uint16_t*>(base) + offset;
      int64_t i = 0;
#if defined(__AVX2__)  // bf16 is the high half of a float32: widen and shift, 8 at a time
      const __m256 sc = _mm256_set1_ps(scale);
      for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_mul_ps(_mm256_castsi256_ps(_mm256_slli_epi32(
            _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i))), 16)), sc));
#endif
      for (; i < n; ++i) dst[i] = bf16_to_float(s[i]) * scale;
      break;
    }
  }
}

// load_row, then zeros up to `width` (a padded head dim) so whole vectors can be read.
inline void load_row_padded(const void* base, DType dt, int64_t offset, int64_t n, int64_t width, float scale,
                            float* dst) {
  load_row(base, dt, offset, n, scale, dst);
  std::fill(dst + n, dst + width, 0.0f);
}

inline void store_row(void* base, DType dt, int64_t offset, int64_t n, const float* src, float mul) {
  switch (dt) {
    case DType::f32: {
      float* d = static_cast<float*>(base) + offset;
      for (int64_t i = 0; i < n; ++i) d[i] = src ? src[i] * mul : 0.0f;
      break;
    }
    case DType::f16: {
      uint16_t* d = static_cast<uint16_t*>(base) + offset;
      int64_t i = 0;
#if defined(__F16C__)
      if (src) {
        const __m256 m = _mm256_set1_ps(mul);
        for (; i + 8 <= n; i += 8)
          _mm_storeu_si128(reinterpret_cast<__m128i*>(d + i),
                           _mm256_cvtps_ph(_mm256_mul_ps(_mm256_loadu_ps(src + i), m), _MM_FROUND_TO_NEAREST_INT));
      }
#endif
      for (; i < n; ++i) d[i] = float_to_half(src ? src[i] * mul : 0.0f);
      break;
    }
    default: {
      uint16_t* d = static_cast<uint16_t*>(base) + offset;
      for (int64_t i = 0; i < n; ++i) d[i] = float_to_bf16(src ? src[i] * mul : 0.0f);
      break;
    }
  }
}

inline int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

// Query rows per task: the largest multiple of `step`, up to `most`, whose tasks still number at
// least 4 per pool thread over the bh (batch x heads) task rows; never below `step`. Large
// blocks reuse each K/V block across more rows; smaller ones keep every thread busy on short
// calls (Whisper decoding, cross attention with few tokens).
inline int64_t task_rows(int64_t bh, int64_t q_len, int64_t most, int64_t step) {
  int64_t rows = most;
  while (rows > step && bh * ((q_len + rows - 1) / rows) < 4 * num_threads()) rows -= step;
  return rows;
}

// Tasks per pool chunk: tiny calls (decoder steps, a few keys) stay on the calling thread,
// where waking the pool would cost more than the work (about 256K multiply-adds per chunk).
inline int64_t task_grain(int64_t rows, const AttentionParams& p) {
  const int64_t macs = std::max<int64_t>(1, rows * std::max<int64_t>(1, p.kv_len) * p.head_dim);
  return std::max<int64_t>(1, (int64_t(1) << 18) / macs);
}

#if defined(__AVX512F__)
// 2^x = 2^floor(x) * 2^f with f = x - floor(x) in [0, 1): vreduceps gives f in one instruction
// (AVX512DQ), a degree-5 polynomial fitted for relative error (1.5e-7) gives 2^f, and vscalefps
// multiplies by 2^floor(x) itself (it floors its second operand), so no separate rounding or
// subtraction is needed. Large negative x underflows to exactly 0 (FTZ is on while the kernels
// run); NaN stays NaN.
inline __m512 exp2_avx512(__m512 x) {
  const __m512 f = _mm512_reduce_ps(x, 0x01);  // x - floor(x): 0 fraction bits kept, round down
  __m512 y = _mm512_set1_ps(0.0018775766948238015f);
  y = _mm512_fmadd_ps(y, f, _mm512_set1_ps(0.008989340625703335f));
  y = _mm512_fmadd_ps(y, f, _mm512_set1_ps(0.05582631751894951f));
  y = _mm512_fmadd_ps(y, f, _mm512_set1_ps(0.24015361070632935f));
  y = _mm512_fmadd_ps(y, f, _mm512_set1_ps(0.6931530833244324f));
  y = _mm512_fmadd_ps(y, f, _mm512_set1_ps(0.9999999403953552f));
  return _mm512_scalef_ps(y, x);
}

// The same for x = -inf too (masked scores): clamped to -200 first, whose 2^x rounds to exactly
// 0. max(c, x) returns x when x is NaN, so NaN survives.
inline __m512 exp2_avx512_clamped(__m512 x) { return exp2_avx512(_mm512_max_ps(_mm512_set1_ps(-200.0f), x)); }

// In-register transpose of a 16 x 16 block of 32-bit lanes (lane j of r[i] moves to lane i of
// r[j]): 32-bit then 64-bit interleaves inside 128-bit lanes, then two rounds of 128-bit lane
// shuffles. Pure data movement, so it serves float32 values and packed bf16 pairs alike.
inline void transpose16x16(__m512 r[16]) {
  __m512 a[16], b[16];
  for (int i = 0; i < 16; i += 2) {
    a[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);      // lane L: x[4L], y[4L], x[4L+1], y[4L+1]
    a[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);  // lane L: x[4L+2], y[4L+2], x[4L+3], y[4L+3]
  }
  // b[4g + c], lane L: column 4L + c of rows 4g .. 4g+3.
  for (int g = 0; g < 4; ++g) {
    const __m512d a0 = _mm512_castps_pd(a[4 * g]), a1 = _mm512_castps_pd(a[4 * g + 1]);
    const __m512d a2 = _mm512_castps_pd(a[4 * g + 2]), a3 = _mm512_castps_pd(a[4 * g + 3]);
    b[4 * g + 0] = _mm512_castpd_ps(_mm512_unpacklo_pd(a0, a2));
    b[4 * g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a0, a2));
    b[4 * g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(a1, a3));
    b[4 * g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(a1, a3));
  }
  for (int c = 0; c < 4; ++c) {
    const __m512 u0 = _mm512_shuffle_f32x4(b[c], b[4 + c], 0x44), u1 = _mm512_shuffle_f32x4(b[c], b[4 + c], 0xEE);
    const __m512 v0 = _mm512_shuffle_f32x4(b[8 + c], b[12 + c], 0x44);
    const __m512 v1 = _mm512_shuffle_f32x4(b[8 + c], b[12 + c], 0xEE);
    r[0 + c] = _mm512_shuffle_f32x4(u0, v0, 0x88);
    r[4 + c] = _mm512_shuffle_f32x4(u0, v0, 0xDD);
    r[8 + c] = _mm512_shuffle_f32x4(u1, v1, 0x88);
    r[12 + c] = _mm512_shuffle_f32x4(u1, v1, 0xDD);
  }
}
#endif

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Output row `o` (element offset) of query row `row` from its accumulated sum `acc` (D floats,
// divided by l here) and softmax statistics: l = sum of the weights, m = the max they are
// relative to (log2 units). A row with l = 0 saw no key (or is padding): zeros and lse -inf.
inline void write_row(const AttentionParams& p, int64_t o, float* lse, int64_t row, const float* acc, float l,
                      float m) {
  if (l == 0.0f) {
    store_row(p.out, p.dtype, o, p.head_dim, nullptr, 0.0f);
    if (lse) lse[row] = kNegInf;
  } else {
    store_row(p.out, p.dtype, o, p.head_dim, acc, 1.0f / l);
    if (lse) lse[row] = (m + std::log2(l)) * 0.69314718055994531f;
  }
}

// Full unrolling of the short loops over a micro-tile's rows and vectors, so its accumulators
// are read and written straight from registers: rolled, GCC copies all of them through the
// stack before and after the FMA loop (~3% of the kernel).
#if defined(__GNUC__) || defined(__clang__)
#define SONICORE_ATTN_UNROLL _Pragma("GCC unroll 16")
#else
#define SONICORE_ATTN_UNROLL
#endif

// ---------------------------------------------------------------- micro-kernels
//
// Queries live in vector lanes. S^T tile: St[j][i] = sum_d K[j][d] * Qt[d][i], so the softmax
// over keys is an element-wise reduction down the rows (no horizontal sums), K is read in its
// natural row layout (no transposed packing) and Q is transposed once per task.

// St[r][0..NV*W) for MR keys against NV*W queries: MR x NV accumulators stay in registers for
// the whole reduction over d.
//
// kExp (the lazy-rescaling path, see forward_tasks): the accumulators start at -m (m = the
// queries' running max, so they end at S - m without a separate subtraction), the tile is
// written as P = exp2(S - m) straight from registers and the first `nvalid` rows are added to
// the per-query block sums `bsum`. That saves the max pass and the load / subtract / store of
// the separate exp pass over St.
template <class V, int MR, int NV, bool kExp = false>
inline void qk_tile(const float* k, int64_t ldk, const float* qt, int64_t ldq, int64_t D, float* st,
                    int64_t lds, const float* negm = nullptr, float* bsum = nullptr, int nvalid = MR) {
  typename V::reg acc[MR][NV];
  SONICORE_ATTN_UNROLL
  for (int r = 0; r < MR; ++r)
    SONICORE_ATTN_UNROLL
    for (int v = 0; v < NV; ++v) acc[r][v] = kExp ? V::load(negm + v * V::W) : V::zero();
  for (int64_t d = 0; d < D; ++d) {
    typename V::reg b[NV];
    for (int v = 0; v < NV; ++v) b[v] = V::load(qt + d * ldq + v * V::W);
    for (int r = 0; r < MR; ++r) {
      typename V::reg a = V::set1(k[r * ldk + d]);
      for (int v = 0; v < NV; ++v) acc[r][v] = V::fma(a, b[v], acc[r][v]);
    }
  }
  if constexpr (kExp) {
    SONICORE_ATTN_UNROLL
    for (int v = 0; v < NV; ++v) {
      typename V::reg sum = V::load(bsum + v * V::W);
      SONICORE_ATTN_UNROLL
      for (int r = 0; r < MR; ++r) {
        const typename V::reg e = V::exp2_finite(acc[r][v]);
        V::store(st + r * lds + v * V::W, e);
        if (r < nvalid) sum = V::add(sum, e);  // rows past nvalid are the zero keys of a short tail
      }
      V::store(bsum + v * V::W, sum);
    }
  } else {
    SONICORE_ATTN_UNROLL
    for (int r = 0; r < MR; ++r)
      SONICORE_ATTN_UNROLL
      for (int v = 0; v < NV; ++v) V::store(st + r * lds + v * V::W, acc[r][v]);
  }
}

// O[r][0..DV*W) = alpha[r] * O[r][..] + sum_j Pt[j][r] * V[j][..] for MR query rows
// (alpha null: no rescale, the lazy-rescaling blocks).
template <class V, int MR, int DV>
inline void pv_chunk(const float* pt, int64_t ldp, const float* vr, int64_t ldv, int64_t ncols, float* o,
                     int64_t ldo, const float* alpha) {
  typename V::reg acc[MR][DV];
  SONICORE_ATTN_UNROLL
  for (int r = 0; r < MR; ++r)
    SONICORE_ATTN_UNROLL
    for (int v = 0; v < DV; ++v) acc[r][v] = V::load(o + r * ldo + v * V::W);
  if (alpha)
    SONICORE_ATTN_UNROLL
    for (int r = 0; r < MR; ++r) {
      typename V::reg a = V::set1(alpha[r]);
      SONICORE_ATTN_UNROLL
      for (int v = 0; v < DV; ++v) acc[r][v] = V::mul(acc[r][v], a);
    }
  for (int64_t j = 0; j < ncols; ++j) {
    typename V::reg b[DV];
    for (int v = 0; v < DV; ++v) b[v] = V::load(vr + j * ldv + v * V::W);
    for (int r = 0; r < MR; ++r) {
      typename V::reg a = V::set1(pt[j * ldp + r]);
      for (int v = 0; v < DV; ++v) acc[r][v] = V::fma(a, b[v], acc[r][v]);
    }
  }
  SONICORE_ATTN_UNROLL
  for (int r = 0; r < MR; ++r)
    SONICORE_ATTN_UNROLL
    for (int v = 0; v < DV; ++v) V::store(o + r * ldo + v * V::W, acc[r][v]);
}

template <class V, int MR>
inline void pv_rows(const float* pt, int64_t ldp, const float* vr, int64_t ldv, int64_t Dp, int64_t ncols,
                    float* o, const float* alpha) {
  constexpr int NV = V::PV_NV;  // vectors of channels per chunk
  constexpr int64_t chunk = NV * V::W;
  int64_t c = 0;
  for (; c + chunk <= Dp; c += chunk) pv_chunk<V, MR, NV>(pt, ldp, vr + c, ldv, ncols, o + c, Dp, alpha);
  switch ((Dp - c) / V::W) {  // Dp is a multiple of 16, hence of W
    case 1: if constexpr (NV > 1) pv_chunk<V, MR, 1>(pt, ldp, vr + c, ldv, ncols, o + c, Dp, alpha); break;
    case 2: if constexpr (NV > 2) pv_chunk<V, MR, 2>(pt, ldp, vr + c, ldv, ncols, o + c, Dp, alpha); break;
    case 3: if constexpr (NV > 3) pv_chunk<V, MR, 3>(pt, ldp, vr + c, ldv, ncols, o + c, Dp, alpha); break;
    default: break;
  }
}

// All `rows` query rows (any count): MR_PV at a time, then the remainder.
template <class V>
inline void pv_block(const float* pt, int64_t ldp, const float* vr, int64_t ldv, int64_t Dp, int64_t ncols,
                     float* o, const float* alpha, int64_t rows) {
  constexpr int MR = V::MR_PV;
  int64_t r = 0;
  for (; r + MR <= rows; r += MR)
    pv_rows<V, MR>(pt + r, ldp, vr, ldv, Dp, ncols, o + r * Dp, alpha ? alpha + r : nullptr);
  const float* ar = alpha ? alpha + r : nullptr;
  switch (rows - r) {
    case 1: pv_rows<V, 1>(pt + r, ldp, vr, ldv, Dp, ncols, o + r * Dp, ar); break;
    case 2: if constexpr (MR > 2) pv_rows<V, 2>(pt + r, ldp, vr, ldv, Dp, ncols, o + r * Dp, ar); break;
    case 3: if constexpr (MR > 3) pv_rows<V, 3>(pt + r, ldp, vr, ldv, Dp, ncols, o + r * Dp, ar); break;
    case 4: if constexpr (MR > 4) pv_rows<V, 4>(pt + r, ldp, vr, ldv, Dp, ncols, o + r * Dp, ar); break;
    case 5: if constexpr (MR > 5) pv_rows<V, 5>(pt + r, ldp, vr, ldv, Dp, ncols, o + r * Dp, ar); break;
    default: break;
  }
}

// St rows [0, nkeys) for query chunks [0, nq) (multiple of kQueryChunk). `k` rows have stride
// ldk; a last group shorter than MR_QK is copied into `ktail` (zero rows) so nothing past the
// valid keys is read. kExp: P = exp2(S + negm) instead of S, row sums added to bsum (qk_tile).
template <class V, bool kExp = false>
inline void qk_block(const float* k, int64_t ldk, int64_t nkeys, const float* qt, int64_t ldq, int64_t D,
                     int64_t nq, float* st, int64_t lds, float* ktail, const float* negm = nullptr,
                     float* bsum = nullptr) {
  constexpr int MR = V::MR_QK;
  for (int64_t j = 0; j < nkeys; j += MR) {
    const float* kr = k + j * ldk;
    int64_t ld = ldk;
    const int n = int(std::min<int64_t>(MR, nkeys - j));
    if (n < MR) {
      for (int64_t r = 0; r < MR; ++r)
        for (int64_t d = 0; d < D; ++d) ktail[r * D + d] = r < n ? kr[r * ldk + d] : 0.0f;
      kr = ktail;
      ld = D;
    }
    int64_t c = 0;
    // Wide tiles (MR/2 keys x 2 chunks) load fewer broadcasts per FMA where two chunks remain.
    if constexpr (V::WIDE_QK)
      for (; c + 2 * kQueryChunk <= nq; c += 2 * kQueryChunk)
        for (int h = 0; h < 2 && h * (MR / 2) < n; ++h)  // a short tail may leave the second half empty
          qk_tile<V, MR / 2, 4 * kQueryChunk / (2 * V::W), kExp>(
              kr + h * (MR / 2) * ld, ld, qt + c, ldq, D, st + (j + h * (MR / 2)) * lds + c, lds, kExp ? negm + c : nullptr,
              kExp ? bsum + c : nullptr, std::min(MR / 2, n - h * (MR / 2)));
    for (; c < nq; c += V::QK_NV * V::W)  // nq is a multiple of kQueryChunk, hence of QK_NV * W
      qk_tile<V, MR, V::QK_NV, kExp>(kr, ld, qt + c, ldq, D, st + j * lds + c, lds, kExp ? negm + c : nullptr,
                                     kExp ? bsum + c : nullptr, n);
  }
}

// P = exp2(S - m) in place over `nrows` rows of one query chunk, summed per lane into two
// accumulator sets (rows alternate between them; indices are compile-time so they stay in
// registers).
template <class V, bool kClamp>
inline void exp_rows(float* st, int64_t lds, int64_t nrows, const typename V::reg* mu,
                     typename V::reg (*sum)[kQueryChunk / V::W]) {
  constexpr int NV = kQueryChunk / V::W;
  using R = typename V::reg;
  R s0[NV], s1[NV];
  for (int v = 0; v < NV; ++v) s0[v] = s1[v] = V::zero();
  int64_t j = 0;
  for (; j + 2 <= nrows; j += 2) {
    float* r0 = st + j * lds;
    float* r1 = r0 + lds;
    for (int v = 0; v < NV; ++v) {
      const R x0 = V::sub(V::load(r0 + v * V::W), mu[v]);
      const R x1 = V::sub(V::load(r1 + v * V::W), mu[v]);
      const R e0 = kClamp ? V::exp2(x0) : V::exp2_finite(x0);
      const R e1 = kClamp ? V::exp2(x1) : V::exp2_finite(x1);
      V::store(r0 + v * V::W, e0);
      V::store(r1 + v * V::W, e1);
      s0[v] = V::add(s0[v], e0);
      s1[v] = V::add(s1[v], e1);
    }
  }
  if (j < nrows) {
    float* r0 = st + j * lds;
    for (int v = 0; v < NV; ++v) {
      const R x0 = V::sub(V::load(r0 + v * V::W), mu[v]);
      const R e0 = kClamp ? V::exp2(x0) : V::exp2_finite(x0);
      V::store(r0 + v * V::W, e0);
      s0[v] = V::add(s0[v], e0);
    }
  }
  for (int v = 0; v < NV; ++v) {
    sum[0][v] = s0[v];
    sum[1][v] = s1[v];
  }
}

// Online-softmax step over St rows [0, nrows) for query lanes [0, nq): masks keys at or past
// each query's limit (limf, absolute key index as float, only when `masked`), updates m and l,
// writes P = exp2(S - m) in place and the O rescale factors alpha. The lanes of one query chunk
// are processed together and the rows two at a time, so the max / sum reductions run as
// 2 * NV independent dependency chains instead of one latency-bound chain.
template <class V>
inline void softmax_block(float* st, int64_t lds, int64_t nrows, int64_t nq, float c0, bool masked,
                          const float* limf, float* m, float* l, float* alpha) {
  constexpr int NV = kQueryChunk / V::W;
  using R = typename V::reg;
  for (int64_t c = 0; c < nq; c += kQueryChunk) {
    R mx[2][NV];
    for (int u = 0; u < 2; ++u)
      for (int v = 0; v < NV; ++v) mx[u][v] = V::set1(kNegInf);
    if (masked) {
      R lim[NV];
      for (int v = 0; v < NV; ++v) lim[v] = V::load(limf + c + v * V::W);
      // Rows two at a time with compile-time accumulator indices (a runtime j & 1 index
      // would push the accumulators to the stack).
      int64_t j = 0;
      for (; j < nrows; j += 2) {
        for (int u = 0; u < 2; ++u) {
          if (j + u >= nrows) break;
          const R jv = V::set1(c0 + float(j + u));
          float* row = st + (j + u) * lds + c;
          for (int v = 0; v < NV; ++v) {
            R x = V::mask_ge(V::load(row + v * V::W), jv, lim[v]);
            V::store(row + v * V::W, x);
            mx[u][v] = V::max(mx[u][v], x);
          }
        }
      }
    } else {
      int64_t j = 0;
      for (; j + 2 <= nrows; j += 2)
        for (int u = 0; u < 2; ++u)
          for (int v = 0; v < NV; ++v) mx[u][v] = V::max(mx[u][v], V::load(st + (j + u) * lds + c + v * V::W));
      for (; j < nrows; ++j)
        for (int v = 0; v < NV; ++v) mx[0][v] = V::max(mx[0][v], V::load(st + j * lds + c + v * V::W));
    }
    R mu[NV], sum[2][NV];
    for (int v = 0; v < NV; ++v) {
      const R m_old = V::load(m + c + v * V::W);
      const R m_new = V::max(m_old, V::max(mx[0][v], mx[1][v]));
      // A query that has seen no key yet keeps m = -inf; exp2 against 0 then gives exact zeros.
      mu[v] = V::neginf_to_zero(m_new);
      V::store(alpha + c + v * V::W, V::exp2(V::sub(m_old, mu[v])));
      V::store(m + c + v * V::W, m_new);
      sum[0][v] = sum[1][v] = V::zero();
    }
    // Only masked blocks hold -inf scores; the others skip the clamp exp2 needs for them.
    if (masked)
      exp_rows<V, true>(st + c, lds, nrows, mu, sum);
    else
      exp_rows<V, false>(st + c, lds, nrows, mu, sum);
    for (int v = 0; v < NV; ++v) {
      float* lp = l + c + v * V::W;
      V::store(lp, V::fma(V::load(lp), V::load(alpha + c + v * V::W), V::add(sum[0][v], sum[1][v])));
    }
  }
}

// Visible-key limit of query row `row`: keys [0, lim) are visible.
inline int64_t key_limit(bool causal, int64_t row, int64_t ql, int64_t kl) {
  return causal ? std::min<int64_t>(kl, std::max<int64_t>(0, row + (kl - ql) + 1)) : kl;
}

// Transposed, scaled Q block: qt[d][i] for rows [r0, r0 + vrows), zero lanes up to nq.
// float32 rows go through the ISA's 16 x 16 register transpose where it has one (the scalar
// scatter below costs ~5% of a whole N=1024 call); the edges and other dtypes use the scalar
// path.
template <class V>
inline void pack_qt(const AttentionParams& p, int64_t qoff, int64_t r0, int64_t vrows, int64_t nq, float scale,
                    float* row, float* qt) {
  const int64_t D = p.head_dim;
  int64_t i = 0, dfull = 0;
  if constexpr (V::TRANSPOSE16) {
    if (p.dtype == DType::f32) {
      const float* q = static_cast<const float*>(p.q) + qoff;
      const int64_t ld = p.q_stride[2];
      dfull = D / 16 * 16;
      for (; i + 16 <= vrows; i += 16) {
        for (int64_t d = 0; d < dfull; d += 16) V::transpose16(q + (r0 + i) * ld + d, ld, scale, qt + d * nq + i, nq);
        for (int64_t d = dfull; d < D; ++d)
          for (int64_t u = 0; u < 16; ++u) qt[d * nq + i + u] = q[(r0 + i + u) * ld + d] * scale;
      }
    }
  }
  for (; i < nq; ++i) {
    if (i < vrows) {
      load_row(p.q, p.dtype, qoff + (r0 + i) * p.q_stride[2], D, scale, row);
      for (int64_t d = 0; d < D; ++d) qt[d * nq + i] = row[d];
    } else {
      for (int64_t d = 0; d < D; ++d) qt[d * nq + i] = 0.0f;
    }
  }
}

// ---------------------------------------------------------------- forward tasks

// Flushes subnormals to zero while a kernel runs (restored on exit): softmax weights below
// 2^-126 are numerically irrelevant but would cost microcode assists in exp2 and P @ V.
struct FlushDenormals {
#if defined(__x86_64__) || defined(__i386__)
  unsigned saved = _mm_getcsr();
  FlushDenormals() { _mm_setcsr(saved | 0x8040); }  // FTZ | DAZ
  ~FlushDenormals() { _mm_setcsr(saved); }
#endif
};

// A task is (b, head, nsub sub-blocks of Mq query rows). Keys advance in blocks of key_block,
// and each block serves every sub-block while it is in cache: K and V stream from memory once
// per nsub * Mq rows (long sequences: K / V of a head no longer fit in L2) while each
// sub-block's working set stays the size that fits L1.
template <class V>
void forward_tasks(const Ctx& cx, int64_t t0, int64_t t1) {
  FlushDenormals ftz;
  const AttentionParams& p = *cx.p;
  const int64_t Dp = cx.Dp, D = p.head_dim, Mq = cx.Mq, G = p.q_heads / p.kv_heads, NS = cx.nsub;
  // Per-thread scratch: per sub-block transposed Q, O accumulators, statistics; shared S^T tile.
  std::unique_ptr<float[]> qt(new float[NS * Mq * D]), os(new float[NS * Mq * Dp]), row(new float[Dp]);
  std::unique_ptr<float[]> ms(new float[NS * Mq]), ls(new float[NS * Mq]), limf(new float[NS * Mq]);
  std::unique_ptr<float[]> alpha(new float[Mq]);
  const int64_t KB = cx.key_block;
  std::unique_ptr<float[]> st(new float[KB * Mq]), ktail(new float[16 * D]);
  std::unique_ptr<float[]> negm(new float[Mq]), bsum(new float[Mq]);
  std::unique_ptr<int64_t[]> rows_sb(new int64_t[NS]), vrows_sb(new int64_t[NS]), nq_sb(new int64_t[NS]),
      lim_min(new int64_t[NS]), kend_sb(new int64_t[NS]);

  for (int64_t t = t0; t < t1; ++t) {
    const int64_t qb = t % cx.nqb, bh = t / cx.nqb, h = bh % p.q_heads, b = bh / p.q_heads;
    const int64_t ql = p.q_lens ? p.q_lens[b] : p.q_len, kl = p.kv_lens ? p.kv_lens[b] : p.kv_len;
    const int64_t ooff = b * p.out_stride[0] + h * p.out_stride[1];
    float* lse = p.lse ? p.lse + (b * p.q_heads + h) * p.q_len : nullptr;
    const float* kb = cx.kbase + b * cx.ks[0] + (h / G) * cx.ks[1];
    const float* vb = cx.vbase + b * cx.vs[0] + (h / G) * cx.vs[1];
    const int64_t qoff = b * p.q_stride[0] + h * p.q_stride[1];
    int64_t kend = 0;
    for (int64_t sb = 0; sb < NS; ++sb) {
      const int64_t r0 = (qb * NS + sb) * Mq, rows = std::max<int64_t>(0, std::min(Mq, p.q_len - r0));
      const int64_t vrows = std::max<int64_t>(0, std::min(rows, ql - r0));
      const int64_t nq = round_up(std::max<int64_t>(vrows, 1), kQueryChunk);
      float* qt_s = qt.get() + sb * Mq * D;
      rows_sb[sb] = rows;
      vrows_sb[sb] = vrows;
      nq_sb[sb] = nq;
      if (vrows > 0) pack_qt<V>(p, qoff, r0, vrows, nq, cx.qscale, row.get(), qt_s);
      int64_t lmin = kl;
      for (int64_t i = 0; i < nq; ++i) {
        const int64_t lim = i < vrows ? key_limit(p.causal, r0 + i, ql, kl) : 0;
        if (i < vrows) lmin = std::min(lmin, lim);
        limf[sb * Mq + i] = float(lim);
        ms[sb * Mq + i] = kNegInf;
        ls[sb * Mq + i] = 0.0f;
      }
      lim_min[sb] = lmin;
      std::fill(os.get() + sb * Mq * Dp, os.get() + (sb * Mq + vrows) * Dp, 0.0f);
      // Keys past the last valid row's limit are never visible to this sub-block.
      kend_sb[sb] = vrows > 0 ? key_limit(p.causal, r0 + vrows - 1, ql, kl) : 0;
      kend = std::max(kend, kend_sb[sb]);
    }
    for (int64_t c0 = 0; c0 < kend; c0 += KB) {
      const float* kblk = kb + c0 * cx.ks[2];
      const float* vblk = vb + c0 * cx.vs[2];
      for (int64_t sb = 0; sb < NS; ++sb) {
        if (c0 >= kend_sb[sb]) continue;
        const int64_t nk = std::min<int64_t>(KB, kend_sb[sb] - c0), nq = nq_sb[sb], vrows = vrows_sb[sb];
        float* qt_s = qt.get() + sb * Mq * D;
        float* os_s = os.get() + sb * Mq * Dp;
        float *ms_s = ms.get() + sb * Mq, *ls_s = ls.get() + sb * Mq;
        // Rows past nk (the zero keys padding the last micro-tile) are never read again, so only
        // blocks that cross some query's limit need the element-wise mask.
        const bool masked = c0 + nk > lim_min[sb];
        // Lazy rescaling: once every query has a finite running max m (after the first block,
        // which masked blocks never follow unmasked ones to undo), an unmasked block is
        // exponentiated against that m as it stands, fused into the QK^T tiles, and m, l and O
        // are left unscaled (alpha = 1). This is exact: l and O share the same m and the final
        // O / l cancels it. It is taken only when every P of the block stays <= 2^16 (checked on
        // the block sums; NaN fails the check), so nothing can overflow; a block whose scores
        // outgrow m by more than that is recomputed the ordinary way, which moves m.
        if (!masked && c0 > 0) {
          for (int64_t i = 0; i < nq; ++i) {
            negm[i] = ms_s[i] == kNegInf ? 0.0f : -ms_s[i];
            bsum[i] = 0.0f;
          }
          qk_block<V, true>(kblk, cx.ks[2], nk, qt_s, nq, D, nq, st.get(), nq, ktail.get(), negm.get(), bsum.get());
          bool ok = true;
          for (int64_t i = 0; i < nq; ++i) ok &= bsum[i] <= 65536.0f;
          if (ok) {
            for (int64_t i = 0; i < nq; ++i) ls_s[i] += bsum[i];
            pv_block<V>(st.get(), nq, vblk, cx.vs[2], Dp, nk, os_s, nullptr, vrows);
            continue;
          }
        }
        qk_block<V>(kblk, cx.ks[2], nk, qt_s, nq, D, nq, st.get(), nq, ktail.get());
        softmax_block<V>(st.get(), nq, nk, nq, float(c0), masked, limf.get() + sb * Mq, ms_s, ls_s, alpha.get());
        pv_block<V>(st.get(), nq, vblk, cx.vs[2], Dp, nk, os_s, alpha.get(), vrows);
      }
    }
    for (int64_t sb = 0; sb < NS; ++sb) {
      const int64_t r0 = (qb * NS + sb) * Mq;
      for (int64_t r = 0; r < rows_sb[sb]; ++r)
        write_row(p, ooff + (r0 + r) * p.out_stride[2], lse, r0 + r, os.get() + (sb * Mq + r) * Dp,
                  r < vrows_sb[sb] ? ls[sb * Mq + r] : 0.0f, ms[sb * Mq + r]);
    }
  }
}

// ---------------------------------------------------------------- attention_probs tasks

// Task = (b, selected head, kQueryChunk query rows): scores for all valid keys, then an exact
// two-pass softmax, written straight to probs (B, num_heads, Nq, Nk).
template <class V>
void probs_tasks(const Ctx& cx, int64_t t0, int64_t t1) {
  FlushDenormals ftz;
  const AttentionParams& p = *cx.p;
  const int64_t D = p.head_dim, G = p.q_heads / p.kv_heads, Nk = p.kv_len, nq = kQueryChunk;
  std::unique_ptr<float[]> qt(new float[nq * D]), row(new float[cx.Dp]), ktail(new float[16 * D]);
  std::unique_ptr<float[]> st(new float[(Nk + 16) * nq]), mv(new float[nq]), sv(new float[nq]);
  for (int64_t t = t0; t < t1; ++t) {
    const int64_t qb = t % cx.nqb, bh = t / cx.nqb, hi = bh % cx.num_heads, b = bh / cx.num_heads;
    const int64_t h = cx.heads[hi];
    const int64_t kl = p.kv_lens ? p.kv_lens[b] : p.kv_len;
    const int64_t r0 = qb * nq, rows = std::min<int64_t>(nq, p.q_len - r0);
    float* out = cx.probs + ((b * cx.num_heads + hi) * p.q_len + r0) * Nk;
    if (kl == 0) {
      std::fill(out, out + rows * Nk, 0.0f);
      continue;
    }
    pack_qt<V>(p, b * p.q_stride[0] + h * p.q_stride[1], r0, rows, nq, cx.qscale, row.get(), qt.get());
    qk_block<V>(cx.kbase + b * cx.ks[0] + (h / G) * cx.ks[1], cx.ks[2], kl, qt.get(), nq, D, nq, st.get(), nq, ktail.get());
    for (int64_t c = 0; c < nq; c += V::W) {
      typename V::reg mx = V::set1(kNegInf);
      for (int64_t j = 0; j < kl; ++j) mx = V::max(mx, V::load(st.get() + j * nq + c));
      typename V::reg sum = V::zero();
      for (int64_t j = 0; j < kl; ++j) {
        typename V::reg e = V::exp2(V::sub(V::load(st.get() + j * nq + c), mx));
        V::store(st.get() + j * nq + c, e);
        sum = V::add(sum, e);
      }
      V::store(mv.get() + c, mx);
      V::store(sv.get() + c, sum);
    }
    for (int64_t r = 0; r < rows; ++r) {
      const float inv = 1.0f / sv[r];
      float* orow = out + r * Nk;
      for (int64_t j = 0; j < kl; ++j) orow[j] = st[j * nq + r] * inv;
      std::fill(orow + kl, orow + Nk, 0.0f);
    }
  }
}

// ---------------------------------------------------------------- decoder-sized calls
//
// A few query rows (decoder steps, q_len <= kDecodeRows): the tiled forward puts queries in
// vector lanes, so one query would leave 31 of 32 lanes idle, and converting K / V for it would
// cost more than its arithmetic. Here the head channels are in the lanes: per task (b, head)
// each row's scores against its visible keys are dot products reduced across the lanes, an exact
// two-pass softmax follows, then O = P V with each weight broadcast over a V row. K and V are
// read in place in their own dtype when the head dim is a multiple of 16; other head dims are
// converted kDecodeKeys rows at a time into zero-padded float32 buffers that stay in L1.

// Vector loads of K / V elements in their dtype (Elem: float, or uint16_t bf16 / f16 bits).
template <class V, DType DT>
struct Rows {
  static typename V::reg load(const void* base, int64_t i) {
    if constexpr (DT == DType::f32) return V::load(static_cast<const float*>(base) + i);
    else if constexpr (DT == DType::bf16) return V::load_bf16(static_cast<const uint16_t*>(base) + i);
    else return V::load_f16(static_cast<const uint16_t*>(base) + i);
  }
};

// s[r * lds + i] = q_r . k_i for RG query rows (q_r at q + r * Dp) and keys [0, n) (rows at
// element offsets i * ldk from k0), four keys at a time: each K vector is loaded (and widened)
// once for all RG rows, and 4 x RG dot products are in flight.
template <class V, class L, int RG>
void decode_scores(const float* q, const void* k, int64_t k0, int64_t ldk, int64_t n, int64_t Dp, float* s,
                   int64_t lds) {
  using R = typename V::reg;
  constexpr int W = V::W;
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    R a[4][RG];
    SONICORE_ATTN_UNROLL
    for (int u = 0; u < 4; ++u)
      SONICORE_ATTN_UNROLL
      for (int r = 0; r < RG; ++r) a[u][r] = V::zero();
    const int64_t r0 = k0 + i * ldk;
    for (int64_t c = 0; c < Dp; c += W) {
      R kv[4];
      SONICORE_ATTN_UNROLL
      for (int u = 0; u < 4; ++u) kv[u] = L::load(k, r0 + u * ldk + c);
      SONICORE_ATTN_UNROLL
      for (int r = 0; r < RG; ++r) {
        const R qv = V::load(q + r * Dp + c);
        SONICORE_ATTN_UNROLL
        for (int u = 0; u < 4; ++u) a[u][r] = V::fma(qv, kv[u], a[u][r]);
      }
    }
    SONICORE_ATTN_UNROLL
    for (int r = 0; r < RG; ++r)
      SONICORE_ATTN_UNROLL
      for (int u = 0; u < 4; ++u) s[r * lds + i + u] = V::hsum(a[u][r]);
  }
  for (; i < n; ++i) {
    R a[RG];
    SONICORE_ATTN_UNROLL
    for (int r = 0; r < RG; ++r) a[r] = V::zero();
    for (int64_t c = 0; c < Dp; c += W) {
      const R kv = L::load(k, k0 + i * ldk + c);
      SONICORE_ATTN_UNROLL
      for (int r = 0; r < RG; ++r) a[r] = V::fma(V::load(q + r * Dp + c), kv, a[r]);
    }
    SONICORE_ATTN_UNROLL
    for (int r = 0; r < RG; ++r) s[r * lds + i] = V::hsum(a[r]);
  }
}

// o_r[0, Dp) += sum over keys i < n of w[r * ldw + i] * v_i for RG rows (o_r at o + r * Dp; V
// rows at element offsets i * ldv from v0): each V vector is loaded once for all RG rows.
template <class V, class L, int RG>
void decode_pv(const float* w, int64_t ldw, int64_t n, const void* v, int64_t v0, int64_t ldv, int64_t Dp,
               float* o) {
  using R = typename V::reg;
  constexpr int W = V::W;
  int64_t c = 0;
  for (; c + 4 * W <= Dp; c += 4 * W) {
    R a[RG][4];
    SONICORE_ATTN_UNROLL
    for (int r = 0; r < RG; ++r)
      SONICORE_ATTN_UNROLL
      for (int u = 0; u < 4; ++u) a[r][u] = V::load(o + r * Dp + c + u * W);
    for (int64_t i = 0; i < n; ++i) {
      R x[4];
      const int64_t e = v0 + i * ldv + c;
      SONICORE_ATTN_UNROLL
      for (int u = 0; u < 4; ++u) x[u] = L::load(v, e + u * W);
      SONICORE_ATTN_UNROLL
      for (int r = 0; r < RG; ++r) {
        const R wr = V::set1(w[r * ldw + i]);
        SONICORE_ATTN_UNROLL
        for (int u = 0; u < 4; ++u) a[r][u] = V::fma(wr, x[u], a[r][u]);
      }
    }
    SONICORE_ATTN_UNROLL
    for (int r = 0; r < RG; ++r)
      SONICORE_ATTN_UNROLL
      for (int u = 0; u < 4; ++u) V::store(o + r * Dp + c + u * W, a[r][u]);
  }
  for (; c < Dp; c += W) {
    R a[RG];
    SONICORE_ATTN_UNROLL
    for (int r = 0; r < RG; ++r) a[r] = V::load(o + r * Dp + c);
    for (int64_t i = 0; i < n; ++i) {
      const R x = L::load(v, v0 + i * ldv + c);
      SONICORE_ATTN_UNROLL
      for (int r = 0; r < RG; ++r) a[r] = V::fma(V::set1(w[r * ldw + i]), x, a[r]);
    }
    SONICORE_ATTN_UNROLL
    for (int r = 0; r < RG; ++r) V::store(o + r * Dp + c, a[r]);
  }
}

// f(std::integral_constant<int, g>) for a group of g (1 .. RGM) rows.
template <int RGM, class F>
inline void with_rows(int g, F&& f) {
  if (g == 1) f(std::integral_constant<int, 1>{});
  if constexpr (RGM >= 2) if (g == 2) f(std::integral_constant<int, 2>{});
  if constexpr (RGM >= 3) if (g == 3) f(std::integral_constant<int, 3>{});
  if constexpr (RGM >= 4) if (g == 4) f(std::integral_constant<int, 4>{});
}

template <class V, class L>
void decode_tasks_as(const Ctx& cx, int64_t t0, int64_t t1) {
  FlushDenormals ftz;
  using R = typename V::reg;
  using F32 = Rows<V, DType::f32>;
  constexpr int W = V::W;
  constexpr int RGM = V::DEC_ROWS;  // query rows that share each K / V load
  constexpr int64_t KC = kDecodeKeys;
  const AttentionParams& p = *cx.p;
  const int64_t D = p.head_dim, Dp = cx.Dp, G = p.q_heads / p.kv_heads, NQ = p.q_len;
  const bool direct = D == Dp;  // else rows go through the padded float32 buffers
  const int64_t lds = round_up(std::max<int64_t>(p.kv_len, 1), W);
  std::unique_ptr<float[]> qb(new float[NQ * Dp]), ob(new float[NQ * Dp]), sc(new float[NQ * lds]);
  std::unique_ptr<float[]> buf(direct ? nullptr : new float[KC * Dp]);
  float m[kDecodeRows], l[kDecodeRows];
  int64_t lim[kDecodeRows];
  // Rows [j0, j0 + n) of K or V of one (b, kv head) into buf as zero-padded float32.
  auto convert = [&](const void* base, int64_t off, int64_t ld, int64_t j0, int64_t n) {
    for (int64_t i = 0; i < n; ++i)
      load_row_padded(base, p.dtype, off + (j0 + i) * ld, D, Dp, 1.0f, buf.get() + i * Dp);
  };
  for (int64_t t = t0; t < t1; ++t) {
    const int64_t h = t % p.q_heads, b = t / p.q_heads;
    const int64_t ql = p.q_lens ? p.q_lens[b] : NQ, kl = p.kv_lens ? p.kv_lens[b] : p.kv_len;
    const int64_t vrows = std::min(NQ, ql);
    const int64_t koff = b * p.k_stride[0] + (h / G) * p.k_stride[1], ldk = p.k_stride[2];
    const int64_t voff = b * p.v_stride[0] + (h / G) * p.v_stride[1], ldv = p.v_stride[2];
    int64_t nmax = 0;
    for (int64_t r = 0; r < vrows; ++r) {
      const int64_t qoff = b * p.q_stride[0] + h * p.q_stride[1] + r * p.q_stride[2];
      load_row_padded(p.q, p.dtype, qoff, D, Dp, cx.qscale, qb.get() + r * Dp);
      std::fill(ob.get() + r * Dp, ob.get() + (r + 1) * Dp, 0.0f);
      lim[r] = key_limit(p.causal, r, ql, kl);
      nmax = std::max(nmax, lim[r]);
    }
    // Scores in log2 units (the scale is in q).
    for (int64_t j0 = 0; j0 < nmax; j0 += KC) {
      const int64_t n = std::min(KC, nmax - j0);
      if (!direct) convert(p.k, koff, ldk, j0, n);
      for (int64_t r0 = 0; r0 < vrows; r0 += RGM)
        with_rows<RGM>(int(std::min<int64_t>(RGM, vrows - r0)), [&](auto rg) {
          constexpr int RG = decltype(rg)::value;
          const float* q = qb.get() + r0 * Dp;
          float* s = sc.get() + r0 * lds + j0;
          if (direct)
            decode_scores<V, L, RG>(q, p.k, koff + j0 * ldk, ldk, n, Dp, s, lds);
          else
            decode_scores<V, F32, RG>(q, buf.get(), 0, Dp, n, Dp, s, lds);
        });
    }
    // Exact softmax per row over its visible keys (the tail of the last vector masked to -inf).
    for (int64_t r = 0; r < vrows; ++r) {
      float* s = sc.get() + r * lds;
      const int64_t n = lim[r], nv = round_up(n, W);
      for (int64_t i = n; i < nv; ++i) s[i] = kNegInf;
      R mx = V::set1(kNegInf);
      for (int64_t c = 0; c < nv; c += W) mx = V::max(mx, V::load(s + c));
      alignas(64) float lanes[W];
      V::store(lanes, mx);
      float mm = kNegInf;
      for (int u = 0; u < W; ++u) mm = std::max(mm, lanes[u]);
      m[r] = mm;
      const R mu = V::set1(mm == kNegInf ? 0.0f : mm);  // no visible key: exp2(-inf - 0) = 0
      R sum = V::zero();
      for (int64_t c = 0; c < nv; c += W) {
        const R e = V::exp2(V::sub(V::load(s + c), mu));  // NaN scores stay NaN and reach O and l
        V::store(s + c, e);
        sum = V::add(sum, e);
      }
      l[r] = V::hsum(sum);
    }
    // O = P V.
    for (int64_t j0 = 0; j0 < nmax; j0 += KC) {
      const int64_t n = std::min(KC, nmax - j0);
      if (!direct) convert(p.v, voff, ldv, j0, n);
      // The keys every row of a group sees go through the group at once; each row's remaining
      // visible keys (causal rows see different counts) one row at a time. A row never touches a
      // key past its limit, so NaN there cannot reach it.
      auto pv = [&](auto rg, int64_t r0, int64_t i0, int64_t cnt) {
        constexpr int RG = decltype(rg)::value;
        const float* w = sc.get() + r0 * lds + j0 + i0;
        float* o = ob.get() + r0 * Dp;
        if (direct)
          decode_pv<V, L, RG>(w, lds, cnt, p.v, voff + (j0 + i0) * ldv, ldv, Dp, o);
        else
          decode_pv<V, F32, RG>(w, lds, cnt, buf.get(), i0 * Dp, Dp, Dp, o);
      };
      for (int64_t r0 = 0; r0 < vrows; r0 += RGM) {
        const int g = int(std::min<int64_t>(RGM, vrows - r0));
        int64_t common = n;
        for (int u = 0; u < g; ++u) common = std::min(common, std::max<int64_t>(0, lim[r0 + u] - j0));
        if (common > 0) with_rows<RGM>(g, [&](auto rg) { pv(rg, r0, 0, common); });
        for (int u = 0; u < g; ++u) {
          const int64_t nr = std::min(n, lim[r0 + u] - j0);
          if (nr > common) pv(std::integral_constant<int, 1>{}, r0 + u, common, nr - common);
        }
      }
    }
    const int64_t ooff = b * p.out_stride[0] + h * p.out_stride[1];
    float* lse = p.lse ? p.lse + (b * p.q_heads + h) * p.q_len : nullptr;
    for (int64_t r = 0; r < NQ; ++r)
      write_row(p, ooff + r * p.out_stride[2], lse, r, ob.get() + r * Dp, r < vrows ? l[r] : 0.0f,
                r < vrows ? m[r] : 0.0f);
  }
}

template <class V>
void decode_tasks(const Ctx& cx, int64_t t0, int64_t t1) {
  switch (cx.p->dtype) {
    case DType::f32: decode_tasks_as<V, Rows<V, DType::f32>>(cx, t0, t1); break;
    case DType::bf16: decode_tasks_as<V, Rows<V, DType::bf16>>(cx, t0, t1); break;
    default: decode_tasks_as<V, Rows<V, DType::f16>>(cx, t0, t1); break;
  }
}

template <class V>
const Kernels& make_kernels() {
  static const Kernels k{&forward_tasks<V>, &probs_tasks<V>, &decode_tasks<V>, &load_row};
  return k;
}

}  // namespace
}  // namespace attn
}  // namespace sonicore
