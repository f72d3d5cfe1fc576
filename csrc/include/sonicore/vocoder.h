// Anti-aliased periodic activation of the BigVGAN vocoder, fused into one pass:
// upsample x2 with a 12-tap FIR (replicate-padded input), Snake, low-pass 12-tap FIR + keep every
// second sample (replicate-padded). float32, raw pointers.
#pragma once
#include <cstdint>

namespace sonicore {

// x, out: contiguous (rows, T); row r uses channel c = r % C of alpha / inv_beta (each (C,)).
// up[m], m in [0, 2T): 2 * sum_k up_filter[k] * x_pad[(m + 15 - k) / 2] over k with (m + 15 - k) even,
//   x_pad[j] = x[clamp(j - 5, 0, T - 1)]  (transposed conv, stride 2, replicate pad 5, crop 15);
// s[m] = up[m] + inv_beta[c] * sin(alpha[c] * up[m])^2;
// out[p] = sum_k down_filter[k] * s[clamp(2p + k - 5, 0, 2T - 1)].
struct AASnakeArgs {
  const float* x; float* out; int64_t rows, T, C;
  const float* alpha; const float* inv_beta;
  const float* up_filter; const float* down_filter;  // 12 taps each
};
constexpr int kAASnakeTaps = 12;
void aa_snake_f32(const AASnakeArgs& a);

namespace vocoder_detail {
#define SONICORE_VOC_DECL(ns)                                                    \
  namespace ns {                                                                 \
  void aa_snake_tasks(const AASnakeArgs& a, int64_t block, int64_t t0, int64_t t1); \
  }
SONICORE_VOC_DECL(generic)
SONICORE_VOC_DECL(avx2)
#undef SONICORE_VOC_DECL
}  // namespace vocoder_detail

}  // namespace sonicore
