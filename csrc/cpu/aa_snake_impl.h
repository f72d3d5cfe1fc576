// Row-block kernel of the fused anti-aliased Snake activation (see sonicore/vocoder.h), written so the
// compiler vectorises it; included once per ISA with SONICORE_VOC_NS naming the namespace.
//
// Polyphase form: with e[j] = s[2j] and o[j] = s[2j+1],
//   up[2j]   = sum_q 2*f[2q+1] * x[clamp(j + 2 - q)],   up[2j+1] = sum_q 2*f[2q] * x[clamp(j + 3 - q)],
//   out[p]   = sum_i g[2i+1] * E[p + i - 2] + g[2i] * O[p + i - 3]   (q, i = 0..5),
// where E/O replicate the edge samples of s: s[0] = e[0] to the left, s[2T-1] = o[T-1] to the right.
// Only the taps that exist are multiplied (half of the zero-stuffed transposed conv is skipped).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "sonicore/vocoder.h"

namespace sonicore {
namespace vocoder_detail {
namespace SONICORE_VOC_NS {

// sin(v)^2: v reduced by the nearest multiple of pi (sin^2 has period pi) in three parts (Cody-Waite),
// then the odd Taylor polynomial to degree 11 on [-pi/2, pi/2] (truncation < 6e-8). Branch-free so
// the loop vectorises; accurate to a few ulp for |v| < 2e5.
static inline float sin_sq(float v) {
  const float k = std::nearbyint(v * 0.318309886183790672f);
  float r = v - k * 3.140625f;
  r = r - k * 9.67502593994140625e-4f;
  r = r - k * 1.509957990978376432e-7f;
  const float r2 = r * r;
  float p = -2.50521083854417188e-8f;
  p = p * r2 + 2.75573192239858907e-6f;
  p = p * r2 - 1.98412698412698413e-4f;
  p = p * r2 + 8.33333333333333333e-3f;
  p = p * r2 - 1.66666666666666667e-1f;
  const float s = r + r * r2 * p;
  return s * s;
}

// Tasks t in [t0, t1): row t / nb, output block t % nb of `block` samples.
void aa_snake_tasks(const AASnakeArgs& A, int64_t block, int64_t t0, int64_t t1) {
  const int64_t T = A.T, nb = (T + block - 1) / block;
  float F0[6], F1[6], G0[6], G1[6];
  for (int q = 0; q < 6; ++q) {
    F0[q] = 2.0f * A.up_filter[2 * q];
    F1[q] = 2.0f * A.up_filter[2 * q + 1];
    G0[q] = A.down_filter[2 * q];
    G1[q] = A.down_filter[2 * q + 1];
  }
  std::vector<float> xbuf(block + 12), ebuf(block + 6), obuf(block + 6);
  float* xb = xbuf.data();
  float* e = ebuf.data();
  float* o = obuf.data();
  for (int64_t t = t0; t < t1; ++t) {
    const int64_t r = t / nb, p0 = (t % nb) * block, p1 = std::min(T, p0 + block), n = p1 - p0;
    const float* x = A.x + r * T;
    float* out = A.out + r * T;
    const float a = A.alpha[r % A.C], ib = A.inv_beta[r % A.C];
    // xb[i] = x[clamp(p0 - 6 + i)], i < n + 12
    for (int64_t i = 0; i < n + 12; ++i) {
      const int64_t j = p0 - 6 + i;
      xb[i] = x[j < 0 ? 0 : (j >= T ? T - 1 : j)];
    }
    // up-sampled pair at j = p0 - 3 + i, then the Snake.
    for (int64_t i = 0; i < n + 6; ++i) {
      const float ue = F1[0] * xb[i + 5] + F1[1] * xb[i + 4] + F1[2] * xb[i + 3] + F1[3] * xb[i + 2] +
                       F1[4] * xb[i + 1] + F1[5] * xb[i];
      const float uo = F0[0] * xb[i + 6] + F0[1] * xb[i + 5] + F0[2] * xb[i + 4] + F0[3] * xb[i + 3] +
                       F0[4] * xb[i + 2] + F0[5] * xb[i + 1];
      e[i] = ue + ib * sin_sq(a * ue);
      o[i] = uo + ib * sin_sq(a * uo);
    }
    // Replicate padding of s at the signal edges (positions outside [0, T) of this block).
    if (p0 - 3 < 0) {
      const float s0 = e[3 - p0];
      for (int64_t i = 0; i < 3 - p0; ++i) e[i] = o[i] = s0;
    }
    if (p1 + 3 > T) {
      const int64_t last = T - 1 - (p0 - 3);
      const float s1 = o[last];
      for (int64_t i = last + 1; i < n + 6; ++i) e[i] = o[i] = s1;
    }
    for (int64_t i = 0; i < n; ++i) {
      out[p0 + i] = G1[0] * e[i + 1] + G0[0] * o[i] + G1[1] * e[i + 2] + G0[1] * o[i + 1] +
                    G1[2] * e[i + 3] + G0[2] * o[i + 2] + G1[3] * e[i + 4] + G0[3] * o[i + 3] +
                    G1[4] * e[i + 5] + G0[4] * o[i + 4] + G1[5] * e[i + 6] + G0[5] * o[i + 5];
    }
  }
}

}  // namespace SONICORE_VOC_NS
}  // namespace vocoder_detail
}  // namespace sonicore
