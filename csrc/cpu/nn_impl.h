// Row kernels of the fused nn ops, written so the compiler vectorises them; included once per ISA
// (nn.cpp: baseline, nn_avx2.cpp: AVX2+FMA) with SONICORE_NN_NS naming the namespace.
#include <cmath>
#include <cstdint>
#include <cstring>

#include "simd_math.h"
#include "sonicore/nn.h"

namespace sonicore {
namespace nn_detail {
namespace SONICORE_NN_NS {
using kernel_math::loadv;
using kernel_math::silu;
using kernel_math::storev;

// Row r = b*N + n of a taps layout: computes into the centre tap, then copies to the other taps
// (the zero rows at the sequence edges are written by the row that owns them).
static inline float* tap_row(float* out, int64_t r, int64_t C, int64_t taps) {
  return out + r * taps * C + (taps / 2) * C;
}

static inline void spread_taps(float* out, int64_t r, int64_t N, int64_t C, int64_t taps) {
  if (taps == 1) return;
  const int64_t n = r % N, half = taps / 2;
  const float* src = tap_row(out, r, C, taps);
  for (int64_t j = 0; j < taps; ++j) {
    if (j == half) continue;
    // y[n] lands in row n - (j - half) at tap j.
    const int64_t dst_n = n - (j - half);
    if (dst_n >= 0 && dst_n < N) std::memcpy(out + (r - n + dst_n) * taps * C + j * C, src, C * sizeof(float));
    // Tap j of row n reads y[n + j - half]; zero it when that is outside the sequence.
    const int64_t read = n + j - half;
    if (read < 0 || read >= N) std::memset(out + r * taps * C + j * C, 0, C * sizeof(float));
  }
}

void swiglu_rows(const float* h, float* out, int64_t N, int64_t F, int64_t taps, int64_t r0, int64_t r1) {
  for (int64_t m = r0; m < r1; ++m) {
    const float* a = h + m * 2 * F;
    const float* b = a + F;
    float* o = tap_row(out, m, F, taps);
    int64_t f = 0;
    for (; f + kernel_math::kVecLanes <= F; f += kernel_math::kVecLanes)
      storev(o + f, silu(loadv(a + f)) * loadv(b + f));
    for (; f < F; ++f) o[f] = silu(a[f]) * b[f];
    spread_taps(out, m, N, F, taps);
  }
}

void adaln_rows(const AdaLNArgs& A, int64_t r0, int64_t r1) {
  const int64_t D = A.D;
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t b = r / A.N, n = r % A.N;
    const float* x = A.x + r * D;
    float* o = tap_row(A.out, r, D, A.taps);
    const float* sh = A.shift + b * A.shift_sb + n * A.shift_sn;
    const float* sc = A.scale + b * A.scale_sb + n * A.scale_sn;
    const float mean = kernel_math::row_sum(x, D) / static_cast<float>(D);
    const float v = kernel_math::row_sum_sq_dev(x, D, mean);
    const float rstd = 1.0f / std::sqrt(v / static_cast<float>(D) + A.eps);
    for (int64_t d = 0; d < D; ++d) o[d] = (x[d] - mean) * rstd * (1.0f + sc[d]) + sh[d];
    spread_taps(A.out, r, A.N, D, A.taps);
  }
}

// One (b, n) row: every head's q, k, v.
void qk_rows(const QKNormRopeArgs& A, int64_t r0, int64_t r1) {
  const int64_t H = A.H, hd = A.hd;
  float buf[3][512];
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t b = r / A.N, n = r % A.N;
    const float* row = A.qkv + r * 3 * H * hd;
    const float* rot = A.rot ? A.rot + n * hd * 2 : nullptr;
    for (int64_t h = 0; h < H; ++h) {
      const float* src = row + h * 3 * hd;
      for (int64_t d = 0; d < hd; ++d) {
        buf[0][d] = src[3 * d];
        buf[1][d] = src[3 * d + 1];
        buf[2][d] = src[3 * d + 2];
      }
      for (int j = 0; j < 2; ++j) {
        const float* w = j == 0 ? A.q_weight : A.k_weight;
        const float ss = kernel_math::row_sum_sq_dev(buf[j], hd, 0.0f);
        const float inv = 1.0f / std::sqrt(ss / static_cast<float>(hd) + A.eps);
        for (int64_t d = 0; d < hd; ++d) buf[j][d] = buf[j][d] * inv * w[d];
      }
      for (int j = 0; j < 3; ++j) {
        float* dst = A.out[j] + b * A.out_sb[j] + h * A.out_sh[j] + n * A.out_sn[j];
        if (j < 2 && rot) {
          for (int64_t i = 0; i < hd / 2; ++i) {
            const float x0 = buf[j][2 * i], x1 = buf[j][2 * i + 1];
            const float* R = rot + 4 * i;  // [[c, -s], [s, c]]
            dst[2 * i] = R[0] * x0 + R[1] * x1;
            dst[2 * i + 1] = R[2] * x0 + R[3] * x1;
          }
        } else {
          for (int64_t d = 0; d < hd; ++d) dst[d] = buf[j][d];
        }
      }
    }
  }
}

void merge_rows(const float* o, int64_t H, int64_t N, int64_t hd, int64_t sb, int64_t sh, int64_t sn,
                float* out, int64_t taps, int64_t r0, int64_t r1) {
  const int64_t C = H * hd;
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t b = r / N, n = r % N;
    float* dst = tap_row(out, r, C, taps);
    for (int64_t h = 0; h < H; ++h) std::memcpy(dst + h * hd, o + b * sb + h * sh + n * sn, hd * sizeof(float));
    spread_taps(out, r, N, C, taps);
  }
}

}  // namespace SONICORE_NN_NS
}  // namespace nn_detail
}  // namespace sonicore
