// CUDA body of the fused flow-matching step (math in sonicore/flow_step.h).
//
// Grid-stride over (row, column group); each thread moves VEC=4 elements per stream with one
// 16-byte (float32) or 8-byte (half) load when every pointer and row stride allows it, else
// one element at a time. Products and sums use the _rn intrinsics so nvcc cannot contract
// them into FMAs: the result then rounds exactly like eager PyTorch.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "sonicore/flow_step.h"

namespace sonicore {
namespace {

template <typename T>
struct Vec4Load;

template <>
struct Vec4Load<float> {
  static __device__ __forceinline__ float4 load(const float* p) { return __ldg(reinterpret_cast<const float4*>(p)); }
  static __device__ __forceinline__ float load1(const float* p) { return __ldg(p); }
};
template <>
struct Vec4Load<__half> {
  static __device__ __forceinline__ float4 load(const __half* p) {
    uint2 raw = __ldg(reinterpret_cast<const uint2*>(p));
    __half2 a = *reinterpret_cast<__half2*>(&raw.x), b = *reinterpret_cast<__half2*>(&raw.y);
    float2 fa = __half22float2(a), fb = __half22float2(b);
    return make_float4(fa.x, fa.y, fb.x, fb.y);
  }
  static __device__ __forceinline__ float load1(const __half* p) { return __half2float(p[0]); }
};
template <>
struct Vec4Load<__nv_bfloat16> {
  static __device__ __forceinline__ float4 load(const __nv_bfloat16* p) {
    uint2 raw = __ldg(reinterpret_cast<const uint2*>(p));
    // bfloat16 -> float32 is a 16-bit shift of the bits
    return make_float4(__uint_as_float(raw.x << 16), __uint_as_float(raw.x & 0xffff0000u),
                       __uint_as_float(raw.y << 16), __uint_as_float(raw.y & 0xffff0000u));
  }
  static __device__ __forceinline__ float load1(const __nv_bfloat16* p) { return __bfloat162float(p[0]); }
};

struct Params {
  int64_t rows, cols;
  float* out;
  int64_t out_s;
  const float* x;
  int64_t x_s;
  const void* vc;
  int64_t vc_s;
  const void* vu;
  int64_t vu_s;
  float w, wu;
  const float* w_rows;
  const float* prev;
  int64_t prev_s;
  float cw, pw;
  float* store;
  int64_t store_s;
  float* dup;
  int64_t dup_s;
  float dt;
};

// One element's update, written once for the vector and the scalar path.
template <bool G, bool P>
__device__ __forceinline__ float combine(float vc, float vu, float prev, float w, float wu, float cw, float pw,
                                         float& v) {
  v = vc;
  if (G) v = __fadd_rn(__fmul_rn(w, vc), __fmul_rn(wu, vu));
  float d = v;
  if (P) d = __fadd_rn(__fmul_rn(cw, v), __fmul_rn(pw, prev));
  return d;
}

template <typename VT, bool G, bool P, bool S, int VEC>
__global__ void flow_step_kernel(Params p) {
  const int64_t groups = p.cols / VEC;
  for (int64_t row = blockIdx.y; row < p.rows; row += gridDim.y) {
    const float w = G ? (p.w_rows ? p.w_rows[row] : p.w) : 1.0f;
    const float wu = G ? (p.w_rows ? __fsub_rn(1.0f, w) : p.wu) : 0.0f;
    const VT* vc = static_cast<const VT*>(p.vc) + row * p.vc_s;
    const VT* vu = G ? static_cast<const VT*>(p.vu) + row * p.vu_s : nullptr;
    const float* x = p.x + row * p.x_s;
    const float* pv = P ? p.prev + row * p.prev_s : nullptr;
    float* out = p.out + row * p.out_s;
    float* st = S ? p.store + row * p.store_s : nullptr;
    float* dup = p.dup ? p.dup + row * p.dup_s : nullptr;
    for (int64_t g = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; g < groups;
         g += int64_t(gridDim.x) * blockDim.x) {
      const int64_t i = g * VEC;
      if (VEC == 4) {
        float4 a = Vec4Load<VT>::load(vc + i);
        float4 b = G ? Vec4Load<VT>::load(vu + i) : a;
        float4 q = P ? *reinterpret_cast<const float4*>(pv + i) : a;
        float4 xv = *reinterpret_cast<const float4*>(x + i);
        float4 v, o;
        o.x = __fadd_rn(xv.x, __fmul_rn(p.dt, combine<G, P>(a.x, b.x, q.x, w, wu, p.cw, p.pw, v.x)));
        o.y = __fadd_rn(xv.y, __fmul_rn(p.dt, combine<G, P>(a.y, b.y, q.y, w, wu, p.cw, p.pw, v.y)));
        o.z = __fadd_rn(xv.z, __fmul_rn(p.dt, combine<G, P>(a.z, b.z, q.z, w, wu, p.cw, p.pw, v.z)));
        o.w = __fadd_rn(xv.w, __fmul_rn(p.dt, combine<G, P>(a.w, b.w, q.w, w, wu, p.cw, p.pw, v.w)));
        if (S) *reinterpret_cast<float4*>(st + i) = v;
        *reinterpret_cast<float4*>(out + i) = o;
        if (dup) *reinterpret_cast<float4*>(dup + i) = o;
      } else {
        float v;
        float d = combine<G, P>(Vec4Load<VT>::load1(vc + i), G ? Vec4Load<VT>::load1(vu + i) : 0.0f,
                                P ? pv[i] : 0.0f, w, wu, p.cw, p.pw, v);
        float o = __fadd_rn(x[i], __fmul_rn(p.dt, d));
        if (S) st[i] = v;
        out[i] = o;
        if (dup) dup[i] = o;
      }
    }
  }
}

bool aligned(const void* ptr, int64_t stride_elems, int64_t elem_bytes, int64_t vec_bytes) {
  return ptr == nullptr ||
         (reinterpret_cast<uintptr_t>(ptr) % vec_bytes == 0 && (stride_elems * elem_bytes) % vec_bytes == 0);
}

template <typename VT, bool G, bool P, bool S>
void launch(const Params& p, bool vec4, cudaStream_t stream) {
  const int threads = 256;
  const int vec = vec4 ? 4 : 1;
  const int64_t groups = p.cols / vec;
  const unsigned by = static_cast<unsigned>(std::min<int64_t>(p.rows, 65535));
  // Enough blocks to fill the GPU several times over; the grid-stride loop does the rest.
  const int64_t want_x = (groups + threads - 1) / threads;
  const unsigned bx = static_cast<unsigned>(std::max<int64_t>(1, std::min<int64_t>(want_x, std::max<int64_t>(1, 8192 / by))));
  if (vec4)
    flow_step_kernel<VT, G, P, S, 4><<<dim3(bx, by), threads, 0, stream>>>(p);
  else
    flow_step_kernel<VT, G, P, S, 1><<<dim3(bx, by), threads, 0, stream>>>(p);
}

template <typename VT>
void launch_flags(const Params& p, bool vec4, cudaStream_t s) {
  const int code = (p.vu ? 4 : 0) | (p.prev ? 2 : 0) | (p.store ? 1 : 0);
  switch (code) {
    case 0: launch<VT, false, false, false>(p, vec4, s); break;
    case 1: launch<VT, false, false, true>(p, vec4, s); break;
    case 2: launch<VT, false, true, false>(p, vec4, s); break;
    case 3: launch<VT, false, true, true>(p, vec4, s); break;
    case 4: launch<VT, true, false, false>(p, vec4, s); break;
    case 5: launch<VT, true, false, true>(p, vec4, s); break;
    case 6: launch<VT, true, true, false>(p, vec4, s); break;
    default: launch<VT, true, true, true>(p, vec4, s); break;
  }
}

}  // namespace

void flow_step_cuda(const FlowStepArgs& a, void* stream) {
  flow_step_check(a);
  if (a.rows == 0 || a.cols == 0) return;
  Params p{a.rows, a.cols, a.out, a.out_stride, a.x, a.x_stride, a.v_cond, a.v_cond_stride,
           a.v_uncond, a.v_uncond_stride, a.guidance, a.guidance_uncond, a.guidance_rows, a.prev,
           a.prev_stride, a.cur_weight, a.prev_weight, a.store, a.store_stride, a.out_copy, a.out_copy_stride, a.dt};
  const int64_t vb = a.v_dtype == DType::f32 ? 4 : 2;
  const bool vec4 = a.cols % 4 == 0 && aligned(a.out, a.out_stride, 4, 16) && aligned(a.x, a.x_stride, 4, 16) &&
                    aligned(a.prev, a.prev_stride, 4, 16) && aligned(a.store, a.store_stride, 4, 16) &&
                    aligned(a.out_copy, a.out_copy_stride, 4, 16) &&
                    aligned(a.v_cond, a.v_cond_stride, vb, 4 * vb) && aligned(a.v_uncond, a.v_uncond_stride, vb, 4 * vb);
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  switch (a.v_dtype) {
    case DType::f32: launch_flags<float>(p, vec4, s); break;
    case DType::f16: launch_flags<__half>(p, vec4, s); break;
    default: launch_flags<__nv_bfloat16>(p, vec4, s); break;
  }
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) throw std::runtime_error(std::string("flow_step_cuda: launch failed: ") + cudaGetErrorString(err));
}

}  // namespace sonicore
