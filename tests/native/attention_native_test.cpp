// C++ checks of the CPU attention forward without Python, meant to run under AddressSanitizer +
// UndefinedBehaviorSanitizer (every ISA path of this machine: AMX tiles where present, AVX-512,
// AVX2, portable):
//   cmake -S . -B build/asan-native -G Ninja -DSONICORE_PYTHON=OFF -DSONICORE_CUDA=OFF \
//         -DSONICORE_NATIVE_TOOLS=ON -DSONICORE_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug
//   cmake --build build/asan-native --target attention_native_test && build/asan-native/attention_native_test
// Exit status 0 means every check passed. The reference is the definition in double: masked
// scores, a max-subtracted softmax, the weighted sum of V, on the values the kernel was given
// (already rounded to the input dtype).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "sonicore/attention.h"
#include "sonicore/cpu_features.h"

#include "native_check.h"

using namespace sonicore;

static std::mt19937_64 rng(11);

static uint16_t to_bf16(float f) {  // round to nearest even (no NaN here)
  uint32_t x;
  std::memcpy(&x, &f, 4);
  x += 0x7fff + ((x >> 16) & 1);
  return uint16_t(x >> 16);
}
static float from_bf16(uint16_t h) {
  uint32_t x = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &x, 4);
  return f;
}

struct Case {
  int64_t B, Hq, Hkv, Nq, Nk, D;
  bool causal, lens;
  DType dt;
};

// One call at one ISA cap against the double reference; returns the max error over valid rows.
static double run(const Case& c, int isa) {
  std::normal_distribution<float> nd(0.0f, 1.0f);
  const int64_t nq = c.B * c.Hq * c.Nq * c.D, nk = c.B * c.Hkv * c.Nk * c.D;
  std::vector<float> q(nq), k(nk), v(nk);
  for (auto* a : {&q, &k, &v})
    for (float& x : *a) x = nd(rng);
  // Inputs in the call's dtype; the reference reads back exactly those values.
  std::vector<uint16_t> q16(nq), k16(nk), v16(nk);
  if (c.dt == DType::bf16) {
    for (int64_t i = 0; i < nq; ++i) q[i] = from_bf16(q16[i] = to_bf16(q[i]));
    for (int64_t i = 0; i < nk; ++i) k[i] = from_bf16(k16[i] = to_bf16(k[i]));
    for (int64_t i = 0; i < nk; ++i) v[i] = from_bf16(v16[i] = to_bf16(v[i]));
  }
  std::vector<int32_t> ql(c.B, int32_t(c.Nq)), kl(c.B, int32_t(c.Nk));
  if (c.lens)
    for (int64_t b = 1; b < c.B; ++b) {
      ql[b] = int32_t(rng() % (c.Nq + 1));
      kl[b] = int32_t(rng() % (c.Nk + 1));
    }
  std::vector<float> out(nq, 1234.0f), lse(c.B * c.Hq * c.Nq);
  std::vector<uint16_t> out16(nq);
  AttentionParams p;
  p.dtype = c.dt;
  p.batch = c.B, p.q_heads = c.Hq, p.kv_heads = c.Hkv, p.q_len = c.Nq, p.kv_len = c.Nk, p.head_dim = c.D;
  const bool f32 = c.dt == DType::f32;
  p.q = f32 ? static_cast<const void*>(q.data()) : q16.data();
  p.k = f32 ? static_cast<const void*>(k.data()) : k16.data();
  p.v = f32 ? static_cast<const void*>(v.data()) : v16.data();
  p.out = f32 ? static_cast<void*>(out.data()) : out16.data();
  const int64_t qs[3] = {c.Hq * c.Nq * c.D, c.Nq * c.D, c.D}, ks[3] = {c.Hkv * c.Nk * c.D, c.Nk * c.D, c.D};
  for (int i = 0; i < 3; ++i) p.q_stride[i] = p.out_stride[i] = qs[i], p.k_stride[i] = p.v_stride[i] = ks[i];
  p.lse = lse.data();
  if (c.lens) p.q_lens = ql.data(), p.kv_lens = kl.data();
  p.scale = float(1.0 / std::sqrt(double(c.D)));
  p.causal = c.causal;
  p.isa = isa;
  attention_forward_cpu(p);
  if (!f32)
    for (int64_t i = 0; i < nq; ++i) out[i] = from_bf16(out16[i]);

  double err = 0.0;
  std::vector<double> s(c.Nk);
  for (int64_t b = 0; b < c.B; ++b)
    for (int64_t h = 0; h < c.Hq; ++h)
      for (int64_t i = 0; i < c.Nq; ++i) {
        const float* o = &out[((b * c.Hq + h) * c.Nq + i) * c.D];
        const float l = lse[(b * c.Hq + h) * c.Nq + i];
        const int64_t lim = i >= ql[b] ? 0
                            : c.causal ? std::min<int64_t>(kl[b], std::max<int64_t>(0, i + (kl[b] - ql[b]) + 1))
                                       : kl[b];
        if (lim == 0) {  // no visible key or a padded row: zeros, lse -inf
          bool zero = std::isinf(l) && l < 0;
          for (int64_t d = 0; d < c.D; ++d) zero = zero && o[d] == 0.0f;
          CHECK(zero, "row without keys not zero (B%ld h%ld i%ld isa %d)", long(b), long(h), long(i), isa);
          continue;
        }
        const float* qr = &q[((b * c.Hq + h) * c.Nq + i) * c.D];
        const int64_t hk = h / (c.Hq / c.Hkv);
        double mx = -std::numeric_limits<double>::infinity(), sum = 0.0;
        for (int64_t j = 0; j < lim; ++j) {
          const float* kr = &k[((b * c.Hkv + hk) * c.Nk + j) * c.D];
          double d = 0.0;
          for (int64_t e = 0; e < c.D; ++e) d += double(qr[e]) * kr[e];
          s[j] = d * p.scale;
          mx = std::max(mx, s[j]);
        }
        for (int64_t j = 0; j < lim; ++j) sum += (s[j] = std::exp(s[j] - mx));
        for (int64_t d = 0; d < c.D; ++d) {
          double acc = 0.0;
          for (int64_t j = 0; j < lim; ++j) acc += s[j] * v[((b * c.Hkv + hk) * c.Nk + j) * c.D + d];
          err = std::max(err, std::fabs(acc / sum - o[d]));
        }
        CHECK(std::fabs(mx + std::log(sum) - l) <= 1e-4, "lse off by %.3g (isa %d)", std::fabs(mx + std::log(sum) - l), isa);
      }
  return err;
}

int main() {
  std::vector<int> isas;
  if (cpu_has_amx()) isas.push_back(3);
  for (int i = int(cpu_isa()); i >= 0; --i) isas.push_back(i);
  const Case cases[] = {
      {1, 2, 1, 97, 130, 64, false, false, DType::f32},   // GQA, awkward lengths
      {2, 3, 3, 70, 70, 40, true, true, DType::f32},      // head dim 40, padded batch
      {1, 1, 1, 1, 1, 16, false, false, DType::f32},      // one query, one key
      {2, 8, 2, 300, 200, 64, true, true, DType::f32},    // 4 query sub-blocks per task, causal, lens
      {2, 2, 1, 150, 61, 80, true, true, DType::bf16},    // causal with Nq > Nk
      {1, 2, 2, 33, 300, 128, false, true, DType::bf16},  // one 32-row sub-block + one row
      {1, 1, 1, 260, 260, 256, true, false, DType::bf16}, // head dim 256, three sub-blocks
      {2, 2, 2, 5, 77, 64, false, true, DType::bf16},     // decoder path: few queries, K/V in place
      {2, 4, 2, 3, 150, 40, true, true, DType::f32},      // decoder path, head dim 40: converted chunks
      {1, 2, 1, 8, 131, 80, true, false, DType::bf16},    // decoder path at its row limit, head dim 80
  };
  for (const Case& c : cases)
    for (int isa : isas) {
      const double err = run(c, isa);
      // float32: 1e-5 (the kernels measure ~2e-6); bfloat16: the output's rounding (2^-8 of
      // values below 2) plus P rounded to bf16.
      const double tol = c.dt == DType::f32 ? 1e-5 : 0.02;
      CHECK(err <= tol, "case B%ld Hq%ld Nq%ld Nk%ld D%ld causal %d dtype %d isa %d: error %.3g > %.3g", long(c.B),
            long(c.Hq), long(c.Nq), long(c.Nk), long(c.D), int(c.causal), int(c.dt), isa, err, tol);
    }
  std::printf("attention_native_test: %d failure(s), ISA paths tested:", failures);
  for (int i : isas) std::printf(" %d", i);
  std::printf("\n");
  return failures ? 1 : 0;
}
