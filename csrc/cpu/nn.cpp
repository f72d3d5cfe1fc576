// Fused nn ops: argument checks, ISA choice, threading. Row kernels live in nn_impl.h.
#define SONICORE_NN_NS generic
#include "nn_impl.h"

#include "sonicore/common.h"
#include "sonicore/cpu_features.h"
#include "sonicore/parallel.h"

namespace sonicore {

namespace {
// Calls one ISA build of a row kernel: nn_detail::<isa>::fn(args...).
#define SONICORE_NN_CALL(fn, ...)                                                        \
  do {                                                                                   \
    switch (cpu_isa()) {                                                                 \
      case Isa::avx512: nn_detail::avx512::fn(__VA_ARGS__); break;                       \
      case Isa::avx2: nn_detail::avx2::fn(__VA_ARGS__); break;                           \
      default: nn_detail::generic::fn(__VA_ARGS__); break;                               \
    }                                                                                    \
  } while (0)
// Rows per task so that each task holds some tens of thousands of elements.
int64_t grain_for(int64_t row_elems) { return row_elems >= 32768 ? 1 : 32768 / (row_elems > 0 ? row_elems : 1); }
}  // namespace

void adaln_layernorm_f32(const AdaLNArgs& a) {
  SONICORE_CHECK(a.x && a.out && a.shift && a.scale, "adaln_layernorm: null pointer");
  SONICORE_CHECK(a.B >= 0 && a.N >= 0 && a.D > 0, "adaln_layernorm: bad shape");
  SONICORE_CHECK(a.taps >= 1 && a.taps % 2 == 1, "adaln_layernorm: taps must be odd");
  parallel_for(a.B * a.N, grain_for(a.D), [&](int64_t r0, int64_t r1) { SONICORE_NN_CALL(adaln_rows, a, r0, r1); });
}

void qk_norm_rope_f32(const QKNormRopeArgs& a) {
  SONICORE_CHECK(a.qkv && a.q_weight && a.k_weight && a.out[0] && a.out[1] && a.out[2], "qk_norm_rope: null pointer");
  SONICORE_CHECK(a.hd > 0 && a.hd <= 512 && a.hd % 2 == 0, "qk_norm_rope: head dim must be even and at most 512");
  SONICORE_CHECK(a.B >= 0 && a.N >= 0 && a.H > 0, "qk_norm_rope: bad shape");
  parallel_for(a.B * a.N, grain_for(3 * a.H * a.hd), [&](int64_t r0, int64_t r1) {
    SONICORE_NN_CALL(qk_rows, a, r0, r1);
  });
}

void swiglu_f32(const float* h, float* out, int64_t B, int64_t N, int64_t F, int64_t taps) {
  SONICORE_CHECK(h && out && B >= 0 && N >= 0 && F > 0 && taps >= 1 && taps % 2 == 1, "swiglu: bad arguments");
  parallel_for(B * N, grain_for(F), [&](int64_t r0, int64_t r1) {
    SONICORE_NN_CALL(swiglu_rows, h, out, N, F, taps, r0, r1);
  });
}

void merge_heads_f32(const float* o, int64_t B, int64_t H, int64_t N, int64_t hd, int64_t sb, int64_t sh,
                     int64_t sn, float* out, int64_t taps) {
  SONICORE_CHECK(o && out && B >= 0 && N >= 0 && H > 0 && hd > 0 && taps >= 1 && taps % 2 == 1,
                 "merge_heads: bad arguments");
  // A plain copy: the generic build is as good as any.
  parallel_for(B * N, grain_for(H * hd), [&](int64_t r0, int64_t r1) {
    nn_detail::generic::merge_rows(o, H, N, hd, sb, sh, sn, out, taps, r0, r1);
  });
}

}  // namespace sonicore
