// Winograd transforms: argument checks, ISA choice, threading. Tile kernels live in winograd_impl.h.
#define SONICORE_WINO_NS generic
#include "winograd_impl.h"

#include "sonicore/common.h"
#include "sonicore/cpu_features.h"
#include "sonicore/parallel.h"

namespace sonicore {

namespace {
// Tiles per task: a few tens of thousands of elements each.
int64_t grain_for(int64_t tile_elems) {
  return tile_elems >= 32768 ? 1 : 32768 / (tile_elems > 0 ? tile_elems : 1);
}
}  // namespace

void winograd_input_f32(const WinogradInputArgs& a) {
  SONICORE_CHECK(a.x && a.out && a.bt, "winograd_input: null pointer");
  SONICORE_CHECK(a.B >= 0 && a.N >= 0 && a.C > 0, "winograd_input: bad shape");
  SONICORE_CHECK(a.m >= 1 && a.r >= 1 && a.r % 2 == 1 && a.m + a.r - 1 <= 16,
                 "winograd_input: need m >= 1, odd r and m + r - 1 <= 16");
  const int64_t alpha = a.m + a.r - 1, T = (a.N + a.m - 1) / a.m;
  const Isa isa = cpu_isa();
  parallel_for(a.B * T, grain_for(alpha * a.C), [&](int64_t i0, int64_t i1) {
    if (isa == Isa::avx512) winograd_detail::avx512::input_tiles(a, i0, i1);
    else if (isa == Isa::avx2) winograd_detail::avx2::input_tiles(a, i0, i1);
    else winograd_detail::generic::input_tiles(a, i0, i1);
  });
}

void winograd_output_f32(const WinogradOutputArgs& a) {
  SONICORE_CHECK(a.M && a.out && a.at, "winograd_output: null pointer");
  SONICORE_CHECK(a.B >= 0 && a.N >= 0 && a.C > 0 && a.m >= 1 && a.alpha >= a.m && a.alpha <= 16,
                 "winograd_output: bad shape");
  SONICORE_CHECK(a.mode != WinogradEpilogue::gated || (a.res && a.gate), "winograd_output: gated needs res and gate");
  SONICORE_CHECK(a.mode != WinogradEpilogue::swiglu || a.C % 2 == 0, "winograd_output: swiglu needs an even C");
  const int64_t T = (a.N + a.m - 1) / a.m;
  const Isa isa = cpu_isa();
  parallel_for(a.B * T, grain_for(a.alpha * a.C), [&](int64_t i0, int64_t i1) {
    if (isa == Isa::avx512) winograd_detail::avx512::output_tiles(a, i0, i1);
    else if (isa == Isa::avx2) winograd_detail::avx2::output_tiles(a, i0, i1);
    else winograd_detail::generic::output_tiles(a, i0, i1);
  });
}

}  // namespace sonicore
