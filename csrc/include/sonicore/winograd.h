// Winograd minimal filtering F(m, r) for the "same" 1-D convolutions of channel-last activations
// (B, N, C): the convolution becomes alpha = m + r - 1 independent GEMMs over tiles of m outputs, which
// cuts the multiply count of a kernel-3 convolution from 3 to alpha/m per output (1.5 for F(4, 3)).
//
//   y[b, n] = sum_j W_j^T x[b, n + j - r/2]                      (zero outside the valid frames)
//   U_p[b*T + t] = sum_q BT[p, q] x[b, t*m - r/2 + q]            input transform  (this file)
//   M_p = U_p @ V_p,  V_p = sum_j G[p, j] W_j                    GEMMs / weights  (the caller)
//   y[b, t*m + i] = sum_p AT[i, p] M_p[b*T + t]                  output transform (this file)
//
// The transform matrices come from the caller (float32, row-major): BT (alpha, alpha), AT (m, alpha),
// so one kernel serves any tile size and point set. float32, raw pointers, strides in elements, unit
// stride on channels.
#pragma once
#include <cstdint>

namespace sonicore {

// x: element (b, n, c) at b*x_sb + n*x_sn + c. lens: nullptr, or (B,) valid frames per batch row:
// frames n >= lens[b] read as zero (a padded batch: each row sees the zero padding of a clip of its own
// length). out: contiguous (alpha, B*T, C), T = ceil(N / m).
struct WinogradInputArgs {
  const float* x; int64_t B, N, C, x_sb, x_sn;
  const int64_t* lens;
  int64_t m, r;
  const float* bt;
  float* out;
};
void winograd_input_f32(const WinogradInputArgs& a);

// M: contiguous (alpha, B*T, C). Output frame n of row b, channel c, y = sum_p AT[i, p] M_p + bias[c]:
//   mode plain:    out = y                                            (out channels C)
//   mode gated:    out = res + gate * y  (res/gate strided like x; gate_sn = 0 broadcasts over frames)
//   mode swiglu:   out[c'] = silu(y[c']) * y[C/2 + c'], c' < C/2        (out channels C/2)
// out: element (b, n, c) at b*out_sb + n*out_sn + c; it may alias res (each element is read once,
// before it is written).
enum class WinogradEpilogue : int { plain = 0, gated = 1, swiglu = 2 };
struct WinogradOutputArgs {
  const float* M; int64_t B, N, C, m, alpha;
  const float* at;
  const float* bias;  // nullptr: none; else C entries
  WinogradEpilogue mode;
  const float* res; int64_t res_sb, res_sn;
  const float* gate; int64_t gate_sb, gate_sn;
  float* out; int64_t out_sb, out_sn;
};
void winograd_output_f32(const WinogradOutputArgs& a);

namespace winograd_detail {
#define SONICORE_WINO_DECL(ns)                                                   \
  namespace ns {                                                                 \
  void input_tiles(const WinogradInputArgs& a, int64_t i0, int64_t i1);          \
  void output_tiles(const WinogradOutputArgs& a, int64_t i0, int64_t i1);        \
  }
SONICORE_WINO_DECL(generic)
SONICORE_WINO_DECL(avx2)
SONICORE_WINO_DECL(avx512)
#undef SONICORE_WINO_DECL
}  // namespace winograd_detail

}  // namespace sonicore
