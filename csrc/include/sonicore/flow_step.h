// Fused flow-matching sampler step: one pass over memory per solver stage.
//
// For every element i of a (rows, cols) block, with w the guidance weight of the row:
//   v     = w * v_cond + wu * v_uncond                (v = v_cond when v_uncond is null)
//   d     = cur_weight * v + prev_weight * prev       (d = v when prev is null)
//   out   = x + dt * d
//   store = v                                         (when store is not null)
//   out_copy = out                                    (when out_copy is not null)
// Each element's inputs are read before its outputs are written, so out may be x and
// store may be prev (the same pointer and stride); any other overlap is an error the
// caller must rule out. The products and sums are rounded one at a time, in the order
// written above and without FMA contraction, so that the result is bit-identical to the
// same formula evaluated by eager PyTorch in float32 (MMAudio's sampler). With one scalar
// guidance w the caller passes wu as well (MMAudio rounds 1 - w in double, then to float);
// with per-row weights wu = 1 - w is computed in float32, as torch does for a float tensor.
#pragma once
#include <cstdint>

#include "sonicore/common.h"

namespace sonicore {

struct FlowStepArgs {
  int64_t rows = 0;  // batch rows B
  int64_t cols = 0;  // elements per row (product of the non-batch dims)

  float* out = nullptr;        // (rows, cols) float32, row stride out_stride (elements)
  int64_t out_stride = 0;
  const float* x = nullptr;    // (rows, cols) float32
  int64_t x_stride = 0;

  DType v_dtype = DType::f32;  // v_cond and v_uncond: float32, float16 or bfloat16
  const void* v_cond = nullptr;
  int64_t v_cond_stride = 0;
  const void* v_uncond = nullptr;  // null: no guidance
  int64_t v_uncond_stride = 0;

  float guidance = 1.0f;                  // w for every row ...
  float guidance_uncond = 0.0f;           // ... and its wu,
  const float* guidance_rows = nullptr;   // unless this (rows,) array of w is given (device memory on CUDA)

  const float* prev = nullptr;  // (rows, cols) float32 previous velocity; null: none
  int64_t prev_stride = 0;
  float cur_weight = 1.0f;
  float prev_weight = 0.0f;

  float* store = nullptr;       // (rows, cols) float32: receives v; null: not stored
  int64_t store_stride = 0;

  // (rows, cols) float32: a second copy of the new state, e.g. the unconditional half of the
  // doubled batch the next guided call reads; saves a separate copy pass. null: none.
  float* out_copy = nullptr;
  int64_t out_copy_stride = 0;

  float dt = 0.0f;
};

// Checks sizes and dtypes (not memory extents: the binding does that). Throws ArgumentError.
void flow_step_check(const FlowStepArgs& a);

// CPU: vectorised (ISA picked at run time), threaded over sonicore::parallel_for.
void flow_step_cpu(const FlowStepArgs& a);

#ifdef SONICORE_WITH_CUDA
// CUDA: every pointer is device memory; launched on `stream` (a cudaStream_t), asynchronous.
void flow_step_cuda(const FlowStepArgs& a, void* stream);
#endif

namespace detail {
// Per-ISA bodies over one row segment [c0, c1); w is the row's guidance weight.
void flow_step_row_scalar(const FlowStepArgs& a, int64_t row, int64_t c0, int64_t c1, float w, float wu);
void flow_step_row_avx2(const FlowStepArgs& a, int64_t row, int64_t c0, int64_t c1, float w, float wu);
}  // namespace detail

}  // namespace sonicore
