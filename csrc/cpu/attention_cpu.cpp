// CPU attention driver: validates the call, then runs on sonicore's pool with the best ISA of
// this CPU either the decoder path (at most kDecodeRows query rows; K / V read in place) or the
// AMX forward (bfloat16 on CPUs with tiles) or the tiled forward over (batch x heads x query
// blocks), which first converts K and V to float32 rows when they are not float32 already.
#include <algorithm>
#include <initializer_list>
#include <string>
#include <vector>

#include "attention_impl.h"
#include "sonicore/cpu_features.h"
#include "sonicore/parallel.h"

namespace sonicore {
namespace attn {
namespace {

constexpr int64_t kMaxSubBlocks = 4;  // query sub-blocks sharing each K/V block (forward)

// Portable copy (non-x86 CPUs, or SONICORE_ISA=scalar): 16-float vectors written with the
// GCC/Clang vector extension, which the compiler lowers to the baseline SIMD (SSE2, NEON);
// other compilers get plain arrays.
struct Portable {
#if defined(__GNUC__) || defined(__clang__)
  // 4-float vectors map one-to-one onto SSE2 / NEON registers, so the accumulators stay in them.
  static constexpr int W = 4;
  static constexpr int MR_QK = 1;  // 1 key x 32 queries = 8 vector accumulators
  static constexpr int QK_NV = 8;
  static constexpr bool WIDE_QK = false;
  static constexpr int MR_PV = 2;  // 2 queries x 16 channels = 8 vector accumulators
  static constexpr int PV_NV = 4;
  static constexpr bool TRANSPOSE16 = false;  // Q is transposed by the scalar path
  static constexpr int DEC_ROWS = 2;
  typedef float reg __attribute__((vector_size(16)));
  static reg load(const float* p) {
    reg r;
    std::memcpy(&r, p, sizeof(r));
    return r;
  }
  static void store(float* p, reg r) { std::memcpy(p, &r, sizeof(r)); }
  static reg set1(float x) { return reg{} + x; }
  static reg zero() { return reg{}; }
  static reg fma(reg a, reg b, reg c) { return a * b + c; }
  static reg mul(reg a, reg b) { return a * b; }
  static reg add(reg a, reg b) { return a + b; }
  static reg sub(reg a, reg b) { return a - b; }
  static reg max(reg a, reg b) { return a < b ? b : a; }
  static float hsum(reg a) { return (a[0] + a[1]) + (a[2] + a[3]); }
  static reg load_bf16(const uint16_t* p) {
    return reg{bf16_to_float(p[0]), bf16_to_float(p[1]), bf16_to_float(p[2]), bf16_to_float(p[3])};
  }
  static reg load_f16(const uint16_t* p) {
    return reg{half_to_float(p[0]), half_to_float(p[1]), half_to_float(p[2]), half_to_float(p[3])};
  }
  static reg mask_ge(reg s, reg j, reg lim) { return j < lim ? s : set1(kNegInf); }
  static reg neginf_to_zero(reg m) { return m == set1(kNegInf) ? zero() : m; }
  static reg exp2(reg a) {
    for (int i = 0; i < W; ++i) a[i] = std::exp2(a[i]);
    return a;
  }
#else
  static constexpr int W = 16;
  static constexpr int MR_QK = 2;
  static constexpr int QK_NV = 2;
  static constexpr bool WIDE_QK = false;
  static constexpr int MR_PV = 2;
  static constexpr int PV_NV = 4;
  static constexpr bool TRANSPOSE16 = false;
  static constexpr int DEC_ROWS = 2;
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
  template <class F>
  static reg map2(const reg& a, const reg& b, F f) {
    reg r;
    for (int i = 0; i < W; ++i) r.v[i] = f(a.v[i], b.v[i]);
    return r;
  }
  static reg fma(const reg& a, const reg& b, const reg& c) {
    reg r;
    for (int i = 0; i < W; ++i) r.v[i] = a.v[i] * b.v[i] + c.v[i];
    return r;
  }
  static reg mul(const reg& a, const reg& b) { return map2(a, b, [](float x, float y) { return x * y; }); }
  static reg add(const reg& a, const reg& b) { return map2(a, b, [](float x, float y) { return x + y; }); }
  static reg sub(const reg& a, const reg& b) { return map2(a, b, [](float x, float y) { return x - y; }); }
  static reg max(const reg& a, const reg& b) { return map2(a, b, [](float x, float y) { return x < y ? y : x; }); }
  static float hsum(const reg& a) {
    float s = 0.0f;
    for (float e : a.v) s += e;
    return s;
  }
  static reg load_bf16(const uint16_t* p) {
    reg r;
    for (int i = 0; i < W; ++i) r.v[i] = bf16_to_float(p[i]);
    return r;
  }
  static reg load_f16(const uint16_t* p) {
    reg r;
    for (int i = 0; i < W; ++i) r.v[i] = half_to_float(p[i]);
    return r;
  }
  static reg mask_ge(const reg& s, const reg& j, const reg& lim) {
    reg r;
    for (int i = 0; i < W; ++i) r.v[i] = j.v[i] < lim.v[i] ? s.v[i] : kNegInf;
    return r;
  }
  static reg neginf_to_zero(const reg& m) {
    reg r;
    for (int i = 0; i < W; ++i) r.v[i] = m.v[i] == kNegInf ? 0.0f : m.v[i];
    return r;
  }
  static reg exp2(const reg& a) {
    reg r;
    for (int i = 0; i < W; ++i) r.v[i] = std::exp2(a.v[i]);
    return r;
  }
#endif
  static reg exp2_finite(const reg& a) { return exp2(a); }
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

// float32 copies of K and V where the kernel cannot read the caller's memory directly go to
// buffers the calling thread keeps from call to call (fresh pages of a new allocation cost a
// fault each, more than a decoder step's whole attention); copies above kKeepBytes are freed
// after their call instead (their faults are noise next to such a call).
constexpr size_t kKeepBytes = size_t(64) << 20;
thread_local std::vector<float> k_copy, v_copy;

float* reuse(std::vector<float>& buf, int64_t n) {
  if (buf.size() < size_t(n)) buf.resize(size_t(n));
  return buf.data();
}

// Frees the copies of a call that needed large ones (run when the call is done).
struct TrimCopies {
  ~TrimCopies() {
    for (auto* b : {&k_copy, &v_copy})
      if (b->size() * sizeof(float) > kKeepBytes) std::vector<float>().swap(*b);
  }
};

void prepare_kv(const AttentionParams& p, Ctx& cx, bool need_v, const Kernels& kern) {
  const int64_t D = p.head_dim, Dp = cx.Dp, heads = p.batch * p.kv_heads, N = p.kv_len;
  const bool k_direct = p.dtype == DType::f32;
  const bool v_direct = p.dtype == DType::f32 && D % 16 == 0;
  float *kout = nullptr, *vout = nullptr;  // the copies, where made
  if (k_direct) {
    cx.kbase = static_cast<const float*>(p.k);
    for (int i = 0; i < 3; ++i) cx.ks[i] = p.k_stride[i];
  } else {
    cx.kbase = kout = reuse(k_copy, heads * N * D);
    cx.ks[0] = p.kv_heads * N * D, cx.ks[1] = N * D, cx.ks[2] = D;
  }
  if (need_v && v_direct) {
    cx.vbase = static_cast<const float*>(p.v);
    for (int i = 0; i < 3; ++i) cx.vs[i] = p.v_stride[i];
  } else if (need_v) {
    cx.vbase = vout = reuse(v_copy, heads * N * Dp);
    cx.vs[0] = p.kv_heads * N * Dp, cx.vs[1] = N * Dp, cx.vs[2] = Dp;
  }
  const bool conv_k = !k_direct, conv_v = need_v && !v_direct;
  if (!conv_k && !conv_v) return;
  constexpr int64_t kRows = 64;
  const int64_t chunks = (N + kRows - 1) / kRows;
  parallel_for(heads * chunks, std::max<int64_t>(1, 4096 / (kRows * std::max<int64_t>(1, D))), [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t bh = i / chunks, c = i % chunks, b = bh / p.kv_heads, h = bh % p.kv_heads;
      const int64_t kl = p.kv_lens ? p.kv_lens[b] : N;
      for (int64_t j = c * kRows; j < std::min(kl, (c + 1) * kRows); ++j) {
        if (conv_k)
          kern.load_row(p.k, p.dtype, b * p.k_stride[0] + h * p.k_stride[1] + j * p.k_stride[2], D, 1.0f,
                   kout + (bh * N + j) * D);
        if (conv_v) {
          float* dst = vout + (bh * N + j) * Dp;
          kern.load_row(p.v, p.dtype, b * p.v_stride[0] + h * p.v_stride[1] + j * p.v_stride[2], D, 1.0f, dst);
          std::fill(dst + D, dst + Dp, 0.0f);
        }
      }
    }
  });
}

// The AMX kernel (attention_amx.cpp) when the CPU has it: by default for bfloat16, where its
// one-product QK^T and PV beat the AVX-512 kernel 1.5-2x (and reading bf16 K/V straight into
// tiles beats converting them, even for one query); for every dtype when asked with isa = 3.
// float32 and float16 need 6 / 4-5 part products for their precision and measured slower than
// AVX-512 on a Sapphire Rapids core at head dim 64 (docs/attention.md).
bool use_amx(const AttentionParams& p) {
  if (!cpu_has_amx()) return false;
  return p.isa >= 3 || (p.isa < 0 && p.dtype == DType::bf16);
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
  cx.qscale = p.scale * 1.4426950408889634f;
  // Sub-blocks of up to kMaxQueryBlock rows, up to kMaxSubBlocks of them per task (task_rows).
  const int64_t bh = p.batch * p.q_heads;
  cx.Mq = task_rows(bh, p.q_len, kMaxQueryBlock, kQueryChunk);
  cx.nsub = task_rows(bh, p.q_len, cx.Mq * kMaxSubBlocks, cx.Mq) / cx.Mq;
  cx.nqb = (p.q_len + cx.Mq * cx.nsub - 1) / (cx.Mq * cx.nsub);
  const Kernels& kern = pick(p.isa);
  // Decoder steps: channels in lanes, K / V read in place. Their scores are kept whole (a row of
  // kv_len floats per query and thread), so key counts past 16M per query stay on the tiled path.
  if (p.q_len <= kDecodeRows && p.q_len * p.kv_len <= (int64_t(16) << 20)) {
    parallel_for(bh, task_grain(p.q_len, p), [&](int64_t t0, int64_t t1) { kern.decode(cx, t0, t1); });
    return;
  }
  if (use_amx(p) && forward_amx(cx)) return;  // reads q / k / v in their own dtype
  TrimCopies trim;
  prepare_kv(p, cx, true, kern);
  parallel_for(bh * cx.nqb, task_grain(std::min(cx.Mq * cx.nsub, p.q_len), p),
               [&](int64_t t0, int64_t t1) { kern.forward(cx, t0, t1); });
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
  cx.qscale = p.scale * 1.4426950408889634f;
  cx.Mq = kQueryChunk;
  cx.nqb = (p.q_len + kQueryChunk - 1) / kQueryChunk;
  cx.heads = heads;
  cx.num_heads = num_heads;
  cx.probs = probs;
  const Kernels& kern = pick(p.isa);
  TrimCopies trim;
  prepare_kv(p, cx, false, kern);
  parallel_for(p.batch * num_heads * cx.nqb, task_grain(std::min(cx.Mq, p.q_len), p),
               [&](int64_t t0, int64_t t1) { kern.probs(cx, t0, t1); });
}

}  // namespace sonicore
