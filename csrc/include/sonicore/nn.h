// Fused pieces of DiT-style transformer blocks (MMAudio): adaLN LayerNorm, q/k RMSNorm + RoPE while
// splitting an interleaved qkv projection, SwiGLU. float32, raw pointers, strides in elements.
#pragma once
#include <cstdint>

namespace sonicore {

// "taps" outputs: a producer may write its (B, N, C) result y straight in the im2col layout a kernel-k
// "same" convolution reads as one GEMM: out (B, N, taps*C) with out[b, n, j*C + c] = y[b, n + j - taps/2, c]
// (zero outside 0..N-1). taps = 1 is the plain layout.
//
// out[b,n,:] = LayerNorm(x[b,n,:]) * (1 + scale[b,n',:]) + shift[b,n',:], no affine, over D.
// x: contiguous (B, N, D); out: contiguous (B, N, taps*D). shift/scale: element (b, n, d) at
// b*s_b + n*s_n + d (s_n = 0 broadcasts one vector over the tokens of a batch row).
struct AdaLNArgs {
  const float* x; float* out; int64_t B, N, D;
  const float* shift; int64_t shift_sb, shift_sn;
  const float* scale; int64_t scale_sb, scale_sn;
  float eps; int64_t taps;
};
void adaln_layernorm_f32(const AdaLNArgs& a);

// qkv: contiguous (B, N, 3*H*hd); channel h*3*hd + d*3 + j is head h, dim d, j = 0/1/2 for q/k/v.
// q and k: RMSNorm over hd (x * rsqrt(mean(x^2) + eps) * w), then, when rot != nullptr, each adjacent pair
// (2i, 2i+1) of position n rotated by rot[n, i] = [[c, -s], [s, c]] (float32, (N, hd/2, 2, 2)).
// Outputs: element (b, h, n, d) of q/k/v at b*s_b + h*s_h + n*s_n + d (separate strides per output).
struct QKNormRopeArgs {
  const float* qkv; int64_t B, N, H, hd;
  const float* q_weight; const float* k_weight; const float* rot; float eps;
  float* out[3]; int64_t out_sb[3], out_sh[3], out_sn[3];
};
void qk_norm_rope_f32(const QKNormRopeArgs& a);

// y[b, n, f] = silu(h[b, n, f]) * h[b, n, F + f]; h contiguous (B, N, 2F), out contiguous (B, N, taps*F).
void swiglu_f32(const float* h, float* out, int64_t B, int64_t N, int64_t F, int64_t taps);

// y[b, n, h*hd + d] = o[b, h, n, d]: attention heads merged back; o element at b*sb + h*sh + n*sn + d,
// out contiguous (B, N, taps*H*hd).
void merge_heads_f32(const float* o, int64_t B, int64_t H, int64_t N, int64_t hd, int64_t sb, int64_t sh,
                     int64_t sn, float* out, int64_t taps);

namespace nn_detail {
// Per-ISA row kernels (nn_impl.h compiled once per instruction set).
#define SONICORE_NN_DECL(ns)                                                                   \
  namespace ns {                                                                               \
  void adaln_rows(const AdaLNArgs& a, int64_t r0, int64_t r1);                                 \
  void qk_rows(const QKNormRopeArgs& a, int64_t r0, int64_t r1);                               \
  void swiglu_rows(const float* h, float* out, int64_t N, int64_t F, int64_t taps, int64_t r0, int64_t r1); \
  void merge_rows(const float* o, int64_t H, int64_t N, int64_t hd, int64_t sb, int64_t sh, int64_t sn,     \
                  float* out, int64_t taps, int64_t r0, int64_t r1);                                       \
  }
SONICORE_NN_DECL(generic)
SONICORE_NN_DECL(avx2)
SONICORE_NN_DECL(avx512)
#undef SONICORE_NN_DECL
}  // namespace nn_detail

}  // namespace sonicore
