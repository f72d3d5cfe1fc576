// CPU attention driver: validates the call, packs K and V once into float32 panels, then runs
// the tiled forward over (batch x heads x query blocks) on sonicore's pool with the best ISA.
#include <algorithm>
#include <string>

#include "attention_impl.h"
#include "sonicore/cpu_features.h"
#include "sonicore/parallel.h"

namespace sonicore {
namespace attn {
namespace {

// Portable copy: 16 floats in plain arrays, which the compiler vectorises with the baseline ISA.
struct Portable {
  static constexpr int W = 16;
  static constexpr int MR_QK = 2;
  static constexpr int MR_PV = 2;
  struct reg {
    float v[16];
  };
  static reg load(const float* p) {
    reg r;
    std::memcpy(r.v, p, sizeof(r.v));
    return r;
  }
  static void store(float* p, const reg& r) { std::memcpy(p, r.v, sizeof(r.v)); }
  static reg set1(float x) {
    reg r;
    for (float& e : r.v) e = x;
    return r;
  }
  static reg zero() { return set1(0.0f); }
  static reg fma(const reg& a, const reg& b, const reg& c) {
    reg r;
    for (int i = 0; i < W; ++i) r.v[i] = a.v[i] * b.v[i] + c.v[i];
    return r;
  }
  static reg mul(const reg& a, const reg& b) {
    reg r;
    for (int i = 0; i < W; ++i) r.v[i] = a.v[i] * b.v[i];
    return r;
  }
  static reg add(const reg& a, const reg& b) {
    reg r;
    for (int i = 0; i < W; ++i) r.v[i] = a.v[i] + b.v[i];
    return r;
  }
  static reg sub(const reg& a, const reg& b) {
    reg r;
    for (int i = 0; i < W; ++i) r.v[i] = a.v[i] - b.v[i];
    return r;
  }
  static reg max(const reg& a, const reg& b) {
    reg r;
    for (int i = 0; i < W; ++i) r.v[i] = a.v[i] < b.v[i] ? b.v[i] : a.v[i];
    return r;
  }
  static float hmax(const reg& a) {
    float m = a.v[0];
    for (int i = 1; i < W; ++i) m = m < a.v[i] ? a.v[i] : m;
    return m;
  }
  static float hadd(const reg& a) {
    float s = 0.0f;
    for (int i = 0; i < W; ++i) s += a.v[i];
    return s;
  }
  static reg exp2(const reg& a) {
    reg r;
    for (int i = 0; i < W; ++i) r.v[i] = std::exp2(a.v[i]);
    return r;
  }
};

const Kernels& pick(int cap) {
  Isa isa = cpu_isa();
  if (cap >= 0 && cap < static_cast<int>(isa)) isa = static_cast<Isa>(cap);
#if defined(__x86_64__) || defined(__i386__)
  if (isa == Isa::avx512) return kernels_avx512();
  if (isa == Isa::avx2) return kernels_avx2();
#endif
  return make_kernels<Portable>();
}

void check_common(const AttentionParams& p, bool need_v) {
  SONICORE_CHECK(p.dtype == DType::f32 || p.dtype == DType::f16 || p.dtype == DType::bf16,
                 std::string("attention: dtype must be float32, float16 or bfloat16, got ") + dtype_name(p.dtype));
  SONICORE_CHECK(p.batch >= 0 && p.q_len >= 0 && p.kv_len >= 0, "attention: sizes must be non-negative");
  SONICORE_CHECK(p.head_dim >= 1 && p.head_dim <= 512,
                 "attention: cpu backend: head dim " + std::to_string(p.head_dim) + " not supported (1..512)");
  SONICORE_CHECK(p.q_heads >= 1 && p.kv_heads >= 1 && p.q_heads % p.kv_heads == 0,
                 "attention: the query heads must be a positive multiple of the key/value heads");
  SONICORE_CHECK(p.q && p.k && (!need_v || p.v), "attention: null input pointer");
  for (int i = 0; i < 3; ++i)
    SONICORE_CHECK(p.q_stride[i] >= 0 && p.k_stride[i] >= 0 && (!need_v || p.v_stride[i] >= 0),
                   "attention: strides must be non-negative");
  for (int b = 0; p.kv_lens && b < p.batch; ++b)
    SONICORE_CHECK(p.kv_lens[b] >= 0 && p.kv_lens[b] <= p.kv_len, "attention: kv_lens out of range [0, Nk]");
  for (int b = 0; p.q_lens && b < p.batch; ++b)
    SONICORE_CHECK(p.q_lens[b] >= 0 && p.q_lens[b] <= p.q_len, "attention: q_lens out of range [0, Nq]");
}

// K as [b*Hkv][strip][d][32] and V as [b*Hkv][key][Dp], float32, zero past kv_len and D.
struct Packed {
  std::unique_ptr<float[]> k, v;
};

Packed pack_kv(const AttentionParams& p, int64_t Dp, int64_t Nkp, bool need_v) {
  Packed pk;
  const int64_t heads = p.batch * p.kv_heads, per = Nkp * Dp, strips = Nkp / kStrip, D = p.head_dim;
  pk.k.reset(new float[heads * per]);
  if (need_v) pk.v.reset(new float[heads * per]);
  float* kbase = pk.k.get();
  float* vbase = pk.v.get();
  parallel_for(heads * strips, 4, [&](int64_t i0, int64_t i1) {
    float row[512];
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t bh = i / strips, s = i % strips, b = bh / p.kv_heads, h = bh % p.kv_heads;
      const int64_t kl = p.kv_lens ? p.kv_lens[b] : p.kv_len;
      float* kp = kbase + bh * per + s * Dp * kStrip;
      float* vp = need_v ? vbase + bh * per + s * kStrip * Dp : nullptr;
      for (int jj = 0; jj < kStrip; ++jj) {
        const int64_t j = s * kStrip + jj;
        if (j < kl) {
          load_row(p.k, p.dtype, b * p.k_stride[0] + h * p.k_stride[1] + j * p.k_stride[2], D, 1.0f, row);
          std::fill(row + D, row + Dp, 0.0f);
        } else {
          std::fill(row, row + Dp, 0.0f);
        }
        for (int64_t d = 0; d < Dp; ++d) kp[d * kStrip + jj] = row[d];
        if (vp) {
          float* dst = vp + jj * Dp;
          if (j < kl) {
            load_row(p.v, p.dtype, b * p.v_stride[0] + h * p.v_stride[1] + j * p.v_stride[2], D, 1.0f, dst);
            std::fill(dst + D, dst + Dp, 0.0f);
          } else {
            std::fill(dst, dst + Dp, 0.0f);
          }
        }
      }
    }
  });
  return pk;
}

}  // namespace
}  // namespace attn

void attention_forward_cpu(const AttentionParams& p) {
  using namespace attn;
  check_common(p, true);
  SONICORE_CHECK(p.out != nullptr, "attention: null output pointer");
  for (int i = 0; i < 3; ++i) SONICORE_CHECK(p.out_stride[i] >= 0, "attention: strides must be non-negative");
  if (p.batch == 0 || p.q_len == 0) return;
  Ctx cx{};
  cx.p = &p;
  cx.Dp = round_up(p.head_dim, 16);
  cx.Nkp = std::max<int64_t>(kStrip, round_up(p.kv_len, kStrip));
  cx.qscale = p.scale * 1.4426950408889634f;
  // Large query blocks reuse each K/V block across more rows; smaller ones keep both threads
  // busy on short calls (Whisper decoding, cross attention with few tokens).
  const int64_t bh = p.batch * p.q_heads;
  int64_t mq = 96;
  while (mq > kRowGroup && bh * ((p.q_len + mq - 1) / mq) < 8 * num_threads()) mq -= 2 * kRowGroup;
  cx.Mq = std::max<int64_t>(kRowGroup, mq);
  cx.nqb = (p.q_len + cx.Mq - 1) / cx.Mq;
  Packed pk = pack_kv(p, cx.Dp, cx.Nkp, true);
  cx.kpanels = pk.k.get();
  cx.vrows = pk.v.get();
  const Kernels& kern = pick(p.isa);
  parallel_for(bh * cx.nqb, 1, [&](int64_t t0, int64_t t1) { kern.forward(cx, t0, t1); });
}

void attention_probs_cpu(const AttentionParams& p, const int32_t* heads, int64_t num_heads, float* probs) {
  using namespace attn;
  check_common(p, false);
  SONICORE_CHECK(probs != nullptr && (num_heads == 0 || heads != nullptr), "attention_probs: null pointer");
  for (int64_t i = 0; i < num_heads; ++i)
    SONICORE_CHECK(heads[i] >= 0 && heads[i] < p.q_heads, "attention_probs: head index out of range");
  if (p.batch == 0 || p.q_len == 0 || num_heads == 0 || p.kv_len == 0) return;
  Ctx cx{};
  cx.p = &p;
  cx.Dp = round_up(p.head_dim, 16);
  cx.Nkp = std::max<int64_t>(kStrip, round_up(p.kv_len, kStrip));
  cx.qscale = p.scale * 1.4426950408889634f;
  cx.Mq = kRowGroup;
  cx.nqb = (p.q_len + kRowGroup - 1) / kRowGroup;
  cx.heads = heads;
  cx.num_heads = num_heads;
  cx.probs = probs;
  Packed pk = pack_kv(p, cx.Dp, cx.Nkp, false);
  cx.kpanels = pk.k.get();
  const Kernels& kern = pick(p.isa);
  parallel_for(p.batch * num_heads * cx.nqb, 1, [&](int64_t t0, int64_t t1) { kern.probs(cx, t0, t1); });
}

}  // namespace sonicore
