// Tile kernels of the Winograd transforms, written so the compiler vectorises the channel loops;
// included once per ISA (winograd.cpp: baseline, winograd_avx2.cpp, winograd_avx512.cpp) with
// SONICORE_WINO_NS naming the namespace.
#include <cmath>
#include <cstdint>
#include <cstring>

#include "exp_approx.h"
#include "sonicore/winograd.h"

namespace sonicore {
namespace winograd_detail {
namespace SONICORE_WINO_NS {

namespace {
constexpr int64_t kMaxAlpha = 16;
constexpr int64_t kBlock = 64;  // channels per register-resident block

inline float silu(float v) { return v / (1.0f + kernel_math::exp_approx(-v)); }
}  // namespace

// Tiles i = b*T + t for i in [i0, i1).
void input_tiles(const WinogradInputArgs& a, int64_t i0, int64_t i1) {
  const int64_t alpha = a.m + a.r - 1, T = (a.N + a.m - 1) / a.m, rows = a.B * T, half = a.r / 2;
  const float* src[kMaxAlpha];
  float d[kMaxAlpha][kBlock];
  for (int64_t i = i0; i < i1; ++i) {
    const int64_t b = i / T, t = i % T;
    int64_t limit = a.N;
    if (a.lens && a.lens[b] < limit) limit = a.lens[b] < 0 ? 0 : a.lens[b];
    for (int64_t q = 0; q < alpha; ++q) {
      const int64_t n = t * a.m - half + q;
      src[q] = (n >= 0 && n < limit) ? a.x + b * a.x_sb + n * a.x_sn : nullptr;
    }
    for (int64_t c0 = 0; c0 < a.C; c0 += kBlock) {
      const int64_t cb = a.C - c0 < kBlock ? a.C - c0 : kBlock;
      for (int64_t q = 0; q < alpha; ++q) {
        if (src[q]) std::memcpy(d[q], src[q] + c0, cb * sizeof(float));
        else std::memset(d[q], 0, cb * sizeof(float));
      }
      for (int64_t p = 0; p < alpha; ++p) {
        float acc[kBlock] = {};
        const float* row = a.bt + p * alpha;
        for (int64_t q = 0; q < alpha; ++q) {
          const float w = row[q];
          if (w == 0.0f) continue;
          for (int64_t c = 0; c < cb; ++c) acc[c] += w * d[q][c];
        }
        std::memcpy(a.out + (p * rows + i) * a.C + c0, acc, cb * sizeof(float));
      }
    }
  }
}

void output_tiles(const WinogradOutputArgs& a, int64_t i0, int64_t i1) {
  const int64_t T = (a.N + a.m - 1) / a.m, rows = a.B * T;
  const bool swiglu = a.mode == WinogradEpilogue::swiglu;
  const int64_t Cout = swiglu ? a.C / 2 : a.C;
  float mt[kMaxAlpha][kBlock], mg[kMaxAlpha][kBlock];
  for (int64_t i = i0; i < i1; ++i) {
    const int64_t b = i / T, t = i % T;
    for (int64_t c0 = 0; c0 < Cout; c0 += kBlock) {
      const int64_t cb = Cout - c0 < kBlock ? Cout - c0 : kBlock;
      for (int64_t p = 0; p < a.alpha; ++p) {
        std::memcpy(mt[p], a.M + (p * rows + i) * a.C + c0, cb * sizeof(float));
        if (swiglu) std::memcpy(mg[p], a.M + (p * rows + i) * a.C + Cout + c0, cb * sizeof(float));
      }
      for (int64_t j = 0; j < a.m; ++j) {
        const int64_t n = t * a.m + j;
        if (n >= a.N) break;
        const float* row = a.at + j * a.alpha;
        float y[kBlock] = {};
        for (int64_t p = 0; p < a.alpha; ++p) {
          const float w = row[p];
          if (w == 0.0f) continue;
          for (int64_t c = 0; c < cb; ++c) y[c] += w * mt[p][c];
        }
        if (a.bias)
          for (int64_t c = 0; c < cb; ++c) y[c] += a.bias[c0 + c];
        float* o = a.out + b * a.out_sb + n * a.out_sn + c0;
        if (a.mode == WinogradEpilogue::plain) {
          std::memcpy(o, y, cb * sizeof(float));
        } else if (a.mode == WinogradEpilogue::gated) {
          const float* r = a.res + b * a.res_sb + n * a.res_sn + c0;
          const float* g = a.gate + b * a.gate_sb + n * a.gate_sn + c0;
          for (int64_t c = 0; c < cb; ++c) o[c] = r[c] + g[c] * y[c];
        } else {
          float z[kBlock] = {};
          for (int64_t p = 0; p < a.alpha; ++p) {
            const float w = row[p];
            if (w == 0.0f) continue;
            for (int64_t c = 0; c < cb; ++c) z[c] += w * mg[p][c];
          }
          if (a.bias)
            for (int64_t c = 0; c < cb; ++c) z[c] += a.bias[Cout + c0 + c];
          for (int64_t c = 0; c < cb; ++c) o[c] = silu(y[c]) * z[c];
        }
      }
    }
  }
}

}  // namespace SONICORE_WINO_NS
}  // namespace winograd_detail
}  // namespace sonicore
