// Fused flow-matching step on the CPU: argument checks, the portable scalar body, and the
// threaded driver that picks the widest instruction set at run time.
#include <algorithm>
#include <string>

#include "flow_step_impl.h"
#include "sonicore/cpu_features.h"
#include "sonicore/parallel.h"

namespace sonicore {

void flow_step_check(const FlowStepArgs& a) {
  SONICORE_CHECK(a.rows >= 0 && a.cols >= 0, "flow_step: rows and cols must be >= 0");
  SONICORE_CHECK(a.out && a.x && a.v_cond, "flow_step: out, x and the velocity are required");
  SONICORE_CHECK(a.v_dtype == DType::f32 || a.v_dtype == DType::f16 || a.v_dtype == DType::bf16,
                 std::string("flow_step: the velocity must be float32, float16 or bfloat16, got ") +
                     dtype_name(a.v_dtype));
  auto stride_ok = [&](int64_t s) { return a.rows <= 1 || s >= a.cols; };
  SONICORE_CHECK(stride_ok(a.out_stride) && stride_ok(a.x_stride) && stride_ok(a.v_cond_stride),
                 "flow_step: a row stride is smaller than the row length");
  SONICORE_CHECK(!a.v_uncond || stride_ok(a.v_uncond_stride),
                 "flow_step: the unconditional velocity's row stride is smaller than the row length");
  SONICORE_CHECK(!a.prev || stride_ok(a.prev_stride),
                 "flow_step: the previous velocity's row stride is smaller than the row length");
  SONICORE_CHECK(!a.store || stride_ok(a.store_stride),
                 "flow_step: the store buffer's row stride is smaller than the row length");
  SONICORE_CHECK(!a.out_copy || stride_ok(a.out_copy_stride),
                 "flow_step: the out_copy buffer's row stride is smaller than the row length");
}

namespace detail {

namespace {
struct ScalarRow : RowSpan {
  template <DType D, bool Guided, bool Prev, bool Store>
  void run() const {
    const auto [x, out, vc, vu, pv, st, dup] = row_pointers<D, Guided, Prev, Store>(a, row);
    const float cur = a.cur_weight, pw = a.prev_weight, dt = a.dt;
    for (int64_t i = c0; i < c1; ++i) {
      float v = load_v<D>(vc, i);
      if constexpr (Guided) v = w * v + wu * load_v<D>(vu, i);
      float d = v;
      if constexpr (Prev) d = cur * v + pw * pv[i];
      const float o = x[i] + dt * d;
      if constexpr (Store) st[i] = v;
      out[i] = o;
      if (dup) dup[i] = o;
    }
  }
};
}  // namespace

void flow_step_row_scalar(const FlowStepArgs& a, int64_t row, int64_t c0, int64_t c1, float w, float wu) {
  dispatch_flow_step(a, ScalarRow{{a, row, c0, c1, w, wu}});
}

}  // namespace detail

void flow_step_cpu(const FlowStepArgs& a) {
  flow_step_check(a);
  if (a.rows == 0 || a.cols == 0) return;
  auto row_fn = cpu_isa() == Isa::scalar ? &detail::flow_step_row_scalar : &detail::flow_step_row_avx2;
  // Rows are cut into chunks so that one long row still spreads over the pool; small
  // latents (under ~64k elements) stay on the calling thread, where a step costs ~µs.
  const int64_t chunk = 16384;
  const int64_t per_row = (a.cols + chunk - 1) / chunk;
  parallel_for(a.rows * per_row, 4, [&](int64_t b, int64_t e) {
    for (int64_t it = b; it < e; ++it) {
      const int64_t row = it / per_row, c0 = (it % per_row) * chunk;
      const float w = a.guidance_rows ? a.guidance_rows[row] : a.guidance;
      const float wu = a.guidance_rows ? 1.0f - w : a.guidance_uncond;
      row_fn(a, row, c0, std::min(a.cols, c0 + chunk), w, wu);
    }
  });
}

}  // namespace sonicore
