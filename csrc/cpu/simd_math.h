// Small SIMD helpers (row sums, exp, SiLU) for kernel files compiled once per ISA. exp and SiLU: a scalar version, and a version on one SIMD
// register of floats written with GCC/Clang vector extensions (kVecLanes lanes per the file's ISA flags). Everything is static / in an unnamed namespace: each translation unit keeps its own
// copy built with its own flags (no ODR clash that could let a baseline file call an AVX-512 copy).
//
// Why explicit vectors: GCC does not vectorise a loop calling the scalar exp_approx (nearbyint, and
// compares it may not if-convert under -ftrapping-math); with if-conversion allowed it specialised the
// clamp into constant branches, whose SiLU computed a/(1+exp(88)) in every lane: a denormal, and a
// microcode assist per vector (swiglu ran 3x slower than scalar code).
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

// The vector type is wider than the baseline and AVX2 builds' registers; GCC warns that passing it by
// value would change the ABI. Every such function is internal and inlined: no ABI is crossed (the
// warning stays off for the kernel file that includes this header).

#pragma GCC diagnostic ignored "-Wpsabi"

// Forced inlining: a 64-byte vector returned from an out-of-line call goes through memory (AVX2 and
// baseline builds), which cost more than the arithmetic.
#define SONICORE_VEC_INLINE inline __attribute__((always_inline))

namespace sonicore {
namespace kernel_math {
namespace {

// One native register: 16 lanes (zmm) in AVX-512 builds, 8 (ymm, or two xmm in the baseline build)
// otherwise; wider vectors made GCC spill to the stack around the integer conversion.
#ifdef __AVX512F__
constexpr int64_t kVecLanes = 16;
#else
constexpr int64_t kVecLanes = 8;
#endif
typedef float vecf __attribute__((vector_size(kVecLanes * sizeof(float))));
typedef int32_t ivecf __attribute__((vector_size(kVecLanes * sizeof(int32_t))));

SONICORE_VEC_INLINE vecf loadv(const float* p) { vecf v; std::memcpy(&v, p, sizeof v); return v; }
SONICORE_VEC_INLINE void storev(float* p, vecf v) { std::memcpy(p, &v, sizeof v); }

// exp(x): range reduction by ln2 and a degree-6 polynomial; relative error ~2e-7 on [-87, 88],
// saturating outside.
SONICORE_VEC_INLINE float exp_approx(float x) {
  x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
  const float k = std::nearbyint(x * 1.44269504088896341f);
  const float r = (x - k * 0.693359375f) + k * 2.12194440e-4f;
  float p = 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  int32_t bits = (static_cast<int32_t>(k) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

// The same on kVecLanes lanes (same polynomial; k rounded by adding and removing 1.5 * 2^23, which equals
// nearbyint in the default rounding mode for |x log2 e| < 2^22).
SONICORE_VEC_INLINE vecf exp_approx(vecf x) {
  const vecf zero = x * 0.0f;
  const vecf lo = zero - 87.0f, hi = zero + 88.0f;
  x = x < lo ? lo : (x > hi ? hi : x);
  const vecf shifter = zero + 12582912.0f;
  const vecf k = (x * 1.44269504088896341f + shifter) - shifter;
  const vecf r = (x - k * 0.693359375f) + k * 2.12194440e-4f;
  vecf p = r * 1.3981999507e-3f + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const ivecf bits = (__builtin_convertvector(k, ivecf) + 127) << 23;
  vecf scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

// sum_i x[i] and sum_i (x[i] - c)^2 over n floats: two vector accumulators, then the lanes.
// (Auto-vectorisation would need reassociation, which GCC only does under -ffast-math.)
SONICORE_VEC_INLINE float hsum(vecf v) {
  float s = 0.0f;
  for (int64_t l = 0; l < kVecLanes; ++l) s += v[l];
  return s;
}
SONICORE_VEC_INLINE float row_sum(const float* x, int64_t n) {
  vecf a = {}, b = {};
  int64_t i = 0;
  for (; i + 2 * kVecLanes <= n; i += 2 * kVecLanes) {
    a += loadv(x + i);
    b += loadv(x + i + kVecLanes);
  }
  float s = hsum(a + b);
  for (; i < n; ++i) s += x[i];
  return s;
}
SONICORE_VEC_INLINE float row_sum_sq_dev(const float* x, int64_t n, float c) {
  vecf a = {}, b = {};
  int64_t i = 0;
  for (; i + 2 * kVecLanes <= n; i += 2 * kVecLanes) {
    const vecf u = loadv(x + i) - c, v = loadv(x + i + kVecLanes) - c;
    a += u * u;
    b += v * v;
  }
  float s = hsum(a + b);
  for (; i < n; ++i) s += (x[i] - c) * (x[i] - c);
  return s;
}

SONICORE_VEC_INLINE float silu(float v) { return v / (1.0f + exp_approx(-v)); }
SONICORE_VEC_INLINE vecf silu(vecf v) { return v / (1.0f + exp_approx(-v)); }

}  // namespace
}  // namespace kernel_math
}  // namespace sonicore


