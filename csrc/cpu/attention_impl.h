// Private to the CPU attention kernel: the tiled flash-style forward written once over a small
// SIMD trait (load / fma / exp2 ...) and instantiated per ISA in attention_cpu.cpp (portable),
// attention_avx2.cpp and attention_avx512.cpp. Everything here has internal linkage so the
// per-ISA copies can never be merged by the linker.
//
// Data the driver prepares before the threaded loop (one pass, in float32):
//   K panels: per (b, kv head), strips of 32 keys laid out [strip][d][32] so that the QK^T
//             micro-kernel loads 32 consecutive keys of one channel as whole vectors;
//   V rows:   per (b, kv head), [key][Dp];
// both zero past kv_len and past D (Dp = D rounded up to 16), so padded keys contribute 0.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>

#include "sonicore/attention.h"

namespace sonicore {
namespace attn {

constexpr int kStrip = 32;      // keys per packed K strip
constexpr int kRowGroup = 12;   // query rows that share one S tile
constexpr int kKeyBlock = 256;  // keys per online-softmax step (multiple of kStrip)

// What every ISA copy of the kernel needs; filled by the driver.
struct Ctx {
  const AttentionParams* p;
  int64_t Dp;              // head dim padded to 16
  int64_t Nkp;             // kv_len padded to kStrip
  int64_t Mq;              // query rows per task (multiple of kRowGroup)
  int64_t nqb;             // query blocks per (b, head)
  const float* kpanels;    // (B*Hkv) x Nkp x Dp
  const float* vrows;      // (B*Hkv) x Nkp x Dp
  float qscale;            // scale * log2(e): scores live in log2 units so exp2 is the softmax exp
  // attention_probs only
  const int32_t* heads = nullptr;
  int64_t num_heads = 0;
  float* probs = nullptr;
};

// One ISA's entry points: run tasks [t0, t1) of the forward / probs loops.
struct Kernels {
  void (*forward)(const Ctx&, int64_t, int64_t);
  void (*probs)(const Ctx&, int64_t, int64_t);
};
const Kernels& kernels_avx2();
const Kernels& kernels_avx512();

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
      for (int64_t i = 0; i < n; ++i) dst[i] = half_to_float(s[i]) * scale;
      break;
    }
    default: {
      const uint16_t* s = static_cast<const uint16_t*>(base) + offset;
      for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_float(s[i]) * scale;
      break;
    }
  }
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
      for (int64_t i = 0; i < n; ++i) d[i] = float_to_half(src ? src[i] * mul : 0.0f);
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

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// ---------------------------------------------------------------- micro-kernels

// S[r][0..32) = sum_d Q[r][d] * Kstrip[d][0..32) for MR rows: MR x (32 / W) accumulators
// stay in registers for the whole reduction over d.
template <class V, int MR>
inline void qk_strip(const float* q, int64_t ldq, const float* kstrip, int64_t Dp, float* s, int64_t lds) {
  constexpr int NV = kStrip / V::W;
  typename V::reg acc[MR][NV];
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v) acc[r][v] = V::zero();
  for (int64_t d = 0; d < Dp; ++d) {
    typename V::reg b[NV];
    for (int v = 0; v < NV; ++v) b[v] = V::load(kstrip + d * kStrip + v * V::W);
    for (int r = 0; r < MR; ++r) {
      typename V::reg a = V::set1(q[r * ldq + d]);
      for (int v = 0; v < NV; ++v) acc[r][v] = V::fma(a, b[v], acc[r][v]);
    }
  }
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v) V::store(s + r * lds + v * V::W, acc[r][v]);
}

// O[r][0..DV*W) = alpha[r] * O[r][..] + sum_j P[r][j] * Vrows[j][..] for MR rows.
template <class V, int MR, int DV>
inline void pv_chunk(const float* p, int64_t ldp, const float* vr, int64_t ldv, int64_t ncols, float* o,
                     int64_t ldo, const float* alpha) {
  typename V::reg acc[MR][DV];
  for (int r = 0; r < MR; ++r) {
    typename V::reg a = V::set1(alpha[r]);
    for (int v = 0; v < DV; ++v) acc[r][v] = V::mul(V::load(o + r * ldo + v * V::W), a);
  }
  for (int64_t j = 0; j < ncols; ++j) {
    typename V::reg b[DV];
    for (int v = 0; v < DV; ++v) b[v] = V::load(vr + j * ldv + v * V::W);
    for (int r = 0; r < MR; ++r) {
      typename V::reg a = V::set1(p[r * ldp + j]);
      for (int v = 0; v < DV; ++v) acc[r][v] = V::fma(a, b[v], acc[r][v]);
    }
  }
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < DV; ++v) V::store(o + r * ldo + v * V::W, acc[r][v]);
}

template <class V, int MR>
inline void pv_rows(const float* p, int64_t ldp, const float* vr, int64_t Dp, int64_t ncols, float* o,
                    const float* alpha) {
  constexpr int64_t chunk = 4 * V::W;
  int64_t c = 0;
  for (; c + chunk <= Dp; c += chunk) pv_chunk<V, MR, 4>(p, ldp, vr + c, Dp, ncols, o + c, Dp, alpha);
  switch ((Dp - c) / V::W) {  // Dp is a multiple of 16, hence of W
    case 1: pv_chunk<V, MR, 1>(p, ldp, vr + c, Dp, ncols, o + c, Dp, alpha); break;
    case 2: pv_chunk<V, MR, 2>(p, ldp, vr + c, Dp, ncols, o + c, Dp, alpha); break;
    case 3: pv_chunk<V, MR, 3>(p, ldp, vr + c, Dp, ncols, o + c, Dp, alpha); break;
    default: break;
  }
}

template <class V>
inline float row_max(const float* s, int64_t n) {
  typename V::reg m = V::set1(kNegInf);
  for (int64_t j = 0; j < n; j += V::W) m = V::max(m, V::load(s + j));
  return V::hmax(m);
}

// s[j] = exp2(s[j] - m); returns the sum. NaN in s stays NaN (and so does the sum).
template <class V>
inline float row_exp2_sum(float* s, int64_t n, float m) {
  typename V::reg mv = V::set1(m), sum = V::zero();
  for (int64_t j = 0; j < n; j += V::W) {
    typename V::reg e = V::exp2(V::sub(V::load(s + j), mv));
    V::store(s + j, e);
    sum = V::add(sum, e);
  }
  return V::hadd(sum);
}

// Scores of rows [0, kRowGroup) of a packed Q group against `ncols` keys starting at strip s0.
template <class V>
inline void qk_group(const float* q, int64_t Dp, const float* kp, int64_t s0, int64_t ncols, float* s,
                     int64_t lds) {
  for (int64_t c = 0; c < ncols; c += kStrip) {
    const float* strip = kp + (s0 + c / kStrip) * Dp * kStrip;
    for (int r = 0; r < kRowGroup; r += V::MR_QK)
      qk_strip<V, V::MR_QK>(q + r * Dp, Dp, strip, Dp, s + r * lds + c, lds);
  }
}

// Visible-key limit of query row `row`: keys [0, lim) are visible.
inline int64_t key_limit(bool causal, int64_t row, int64_t ql, int64_t kl) {
  return causal ? std::min<int64_t>(kl, std::max<int64_t>(0, row + (kl - ql) + 1)) : kl;
}

// ---------------------------------------------------------------- forward tasks

template <class V>
void forward_tasks(const Ctx& cx, int64_t t0, int64_t t1) {
  const AttentionParams& p = *cx.p;
  const int64_t Dp = cx.Dp, D = p.head_dim, Mq = cx.Mq, G = p.q_heads / p.kv_heads;
  // Per-thread scratch: packed Q, O accumulators, row statistics, one S tile.
  std::unique_ptr<float[]> qs(new float[Mq * Dp]), os(new float[Mq * Dp]);
  std::unique_ptr<float[]> ms(new float[Mq]), ls(new float[Mq]), alpha(new float[kRowGroup]);
  std::unique_ptr<float[]> st(new float[kRowGroup * kKeyBlock]);

  for (int64_t t = t0; t < t1; ++t) {
    const int64_t qb = t % cx.nqb, bh = t / cx.nqb, h = bh % p.q_heads, b = bh / p.q_heads;
    const int64_t ql = p.q_lens ? p.q_lens[b] : p.q_len, kl = p.kv_lens ? p.kv_lens[b] : p.kv_len;
    const int64_t r0 = qb * Mq, rows = std::min(Mq, p.q_len - r0);
    const int64_t vrows = std::max<int64_t>(0, std::min(rows, ql - r0));
    const int64_t qoff = b * p.q_stride[0] + h * p.q_stride[1];
    const int64_t ooff = b * p.out_stride[0] + h * p.out_stride[1];
    float* lse = p.lse ? p.lse + (b * p.q_heads + h) * p.q_len : nullptr;
    const int64_t kvh = b * p.kv_heads + h / G;
    const float* kp = cx.kpanels + kvh * cx.Nkp * Dp;
    const float* vp = cx.vrows + kvh * cx.Nkp * Dp;

    const int64_t groups = (vrows + kRowGroup - 1) / kRowGroup;
    const int64_t prow = groups * kRowGroup;
    for (int64_t r = 0; r < prow; ++r) {
      float* dst = qs.get() + r * Dp;
      if (r < vrows) {
        load_row(p.q, p.dtype, qoff + (r0 + r) * p.q_stride[2], D, cx.qscale, dst);
        std::fill(dst + D, dst + Dp, 0.0f);
      } else {
        std::fill(dst, dst + Dp, 0.0f);
      }
      std::fill(os.get() + r * Dp, os.get() + (r + 1) * Dp, 0.0f);
      ms[r] = kNegInf;
      ls[r] = 0.0f;
    }
    // Keys past the last valid row's limit are never visible to this block.
    const int64_t kend = vrows > 0 ? key_limit(p.causal, r0 + vrows - 1, ql, kl) : 0;
    for (int64_t c0 = 0; c0 < kend; c0 += kKeyBlock) {
      const int64_t ncols = std::min<int64_t>(kKeyBlock, round_up(kend - c0, kStrip));
      for (int64_t g = 0; g < groups; ++g) {
        const int64_t gr0 = g * kRowGroup, glast = std::min(vrows, gr0 + kRowGroup) - 1;
        if (key_limit(p.causal, r0 + glast, ql, kl) <= c0) continue;  // whole group masked here
        float* s = st.get();
        qk_group<V>(qs.get() + gr0 * Dp, Dp, kp, c0 / kStrip, ncols, s, kKeyBlock);
        for (int r = 0; r < kRowGroup; ++r) {
          float* srow = s + r * kKeyBlock;
          const int64_t row = gr0 + r;
          const int64_t lim = row < vrows ? key_limit(p.causal, r0 + row, ql, kl) : 0;
          const int64_t nvis = std::min(ncols, std::max<int64_t>(0, lim - c0));
          for (int64_t j = nvis; j < ncols; ++j) srow[j] = kNegInf;
          const float m_old = ms[row];
          const float m_new = std::max(m_old, row_max<V>(srow, ncols));
          // A row that has seen no key yet keeps m = -inf; exp2 against 0 then gives exact zeros.
          const float m_use = m_new == kNegInf ? 0.0f : m_new;
          const float a = std::exp2(m_old - m_use);
          alpha[r] = a;
          ls[row] = ls[row] * a + row_exp2_sum<V>(srow, ncols, m_use);
          ms[row] = m_new;
        }
        for (int r = 0; r < kRowGroup; r += V::MR_PV)
          pv_rows<V, V::MR_PV>(s + r * kKeyBlock, kKeyBlock, vp + c0 * Dp, Dp, ncols,
                               os.get() + (gr0 + r) * Dp, alpha.get() + r);
      }
    }
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t o = ooff + (r0 + r) * p.out_stride[2];
      const float l = r < vrows ? ls[r] : 0.0f;
      if (l == 0.0f) {  // no visible key (or a padded query row)
        store_row(p.out, p.dtype, o, D, nullptr, 0.0f);
        if (lse) lse[r0 + r] = kNegInf;
      } else {
        store_row(p.out, p.dtype, o, D, os.get() + r * Dp, 1.0f / l);
        if (lse) lse[r0 + r] = (ms[r] + std::log2(l)) * 0.69314718055994531f;
      }
    }
  }
}

// ---------------------------------------------------------------- attention_probs tasks

// Task = (b, selected head, block of kRowGroup query rows): scores for all keys, then an exact
// two-pass softmax, written straight to probs (B, num_heads, Nq, Nk).
template <class V>
void probs_tasks(const Ctx& cx, int64_t t0, int64_t t1) {
  const AttentionParams& p = *cx.p;
  const int64_t Dp = cx.Dp, D = p.head_dim, G = p.q_heads / p.kv_heads, Nk = p.kv_len;
  std::unique_ptr<float[]> qs(new float[kRowGroup * Dp]);
  std::unique_ptr<float[]> st(new float[kRowGroup * cx.Nkp]);
  for (int64_t t = t0; t < t1; ++t) {
    const int64_t qb = t % cx.nqb, bh = t / cx.nqb, hi = bh % cx.num_heads, b = bh / cx.num_heads;
    const int64_t h = cx.heads[hi];
    const int64_t kl = p.kv_lens ? p.kv_lens[b] : p.kv_len;
    const int64_t r0 = qb * kRowGroup, rows = std::min<int64_t>(kRowGroup, p.q_len - r0);
    float* out = cx.probs + ((b * cx.num_heads + hi) * p.q_len + r0) * Nk;
    if (kl == 0) {
      std::fill(out, out + rows * Nk, 0.0f);
      continue;
    }
    const int64_t qoff = b * p.q_stride[0] + h * p.q_stride[1];
    for (int64_t r = 0; r < kRowGroup; ++r) {
      float* dst = qs.get() + r * Dp;
      if (r < rows) {
        load_row(p.q, p.dtype, qoff + (r0 + r) * p.q_stride[2], D, cx.qscale, dst);
        std::fill(dst + D, dst + Dp, 0.0f);
      } else {
        std::fill(dst, dst + Dp, 0.0f);
      }
    }
    const float* kp = cx.kpanels + (b * p.kv_heads + h / G) * cx.Nkp * Dp;
    const int64_t ncols = round_up(kl, kStrip);
    qk_group<V>(qs.get(), Dp, kp, 0, ncols, st.get(), cx.Nkp);
    for (int64_t r = 0; r < rows; ++r) {
      float* srow = st.get() + r * cx.Nkp;
      for (int64_t j = kl; j < ncols; ++j) srow[j] = kNegInf;
      const float m = row_max<V>(srow, ncols);
      const float sum = row_exp2_sum<V>(srow, ncols, m);
      const float inv = 1.0f / sum;
      float* orow = out + r * Nk;
      for (int64_t j = 0; j < kl; ++j) orow[j] = srow[j] * inv;
      std::fill(orow + kl, orow + Nk, 0.0f);
    }
  }
}

template <class V>
const Kernels& make_kernels() {
  static const Kernels k{&forward_tasks<V>, &probs_tasks<V>};
  return k;
}

}  // namespace
}  // namespace attn
}  // namespace sonicore
