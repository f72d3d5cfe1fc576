// DTW with backtrace and the sliding median filter on CUDA.
//
// DTW: one block per matrix sweeps the anti-diagonals (cells with i + j = s depend only on
// diagonals s-1 and s-2), so all cells of a diagonal run in parallel; the cost matrix and the
// trace live in caller-provided global scratch. Costs accumulate in float here (the CPU kernel
// uses double); the trace is a byte per cell. One thread then walks the trace back twice: once
// to count the path, once to write it front to back.
#include <cuda_runtime.h>

#include <cstdint>

#include "sonicore/common.h"
#include "sonicore/dtw.h"

namespace sonicore {

namespace {

__global__ void dtw_kernel(const float* __restrict__ x, int64_t n, int64_t m, float* __restrict__ cost_all,
                           uint8_t* __restrict__ trace_all, int32_t* __restrict__ text_all,
                           int32_t* __restrict__ time_all, int64_t* __restrict__ lengths, bool open_end,
                           bool open_begin) {
  const int64_t item = blockIdx.x;
  const int64_t w = m + 1;
  const int64_t cells = (n + 1) * (m + 1);
  const float* xb = x + item * n * m;
  float* cost = cost_all + item * cells;
  uint8_t* trace = trace_all + item * cells;
  const int64_t cap = n + m - 1;
  int32_t* text_idx = text_all + item * cap;
  int32_t* time_idx = time_all + item * cap;
  const float inf = __int_as_float(0x7f800000);

  // Row 0 is 0 everywhere with open_begin (free leading frames), else only at (0, 0).
  for (int64_t k = threadIdx.x; k < cells; k += blockDim.x) cost[k] = (open_begin && k < w) ? 0.f : inf;
  __syncthreads();
  if (threadIdx.x == 0) cost[0] = 0.f;
  __syncthreads();

  for (int64_t s = 2; s <= n + m; ++s) {
    const int64_t i_lo = s - m > 1 ? s - m : 1;
    const int64_t i_hi = s - 1 < n ? s - 1 : n;
    for (int64_t i = i_lo + threadIdx.x; i <= i_hi; i += blockDim.x) {
      const int64_t j = s - i;
      const float c0 = cost[(i - 1) * w + (j - 1)];
      const float c1 = cost[(i - 1) * w + j];
      const float c2 = cost[i * w + (j - 1)];
      float c;
      uint8_t t;
      if (c0 < c1 && c0 < c2) {
        c = c0; t = 0;
      } else if (c1 < c0 && c1 < c2) {
        c = c1; t = 1;
      } else if (c2 <= c0 || c2 <= c1) {
        c = c2; t = 2;
      } else {  // c0 == c1 < c2
        c = c0; t = 0;
      }
      cost[i * w + j] = xb[(i - 1) * m + (j - 1)] + c;
      trace[i * w + j] = t;
    }
    __syncthreads();
  }

  if (threadIdx.x == 0) {
    int64_t end_row = n;
    if (open_end) {
      for (int64_t r = 1; r <= n; ++r)
        if (cost[r * w + m] < cost[end_row * w + m] || (cost[r * w + m] == cost[end_row * w + m] && r < end_row))
          end_row = r;
    }
    int64_t len = 0;
    for (int64_t i = end_row, j = m; i > 0 && j > 0 && len < cap; ++len) {
      const uint8_t t = trace[i * w + j];
      if (t == 0) { --i; --j; } else if (t == 1) { --i; } else { --j; }
    }
    int64_t k = len - 1;
    for (int64_t i = end_row, j = m; i > 0 && j > 0 && k >= 0; --k) {
      text_idx[k] = static_cast<int32_t>(i - 1);
      time_idx[k] = static_cast<int32_t>(j - 1);
      const uint8_t t = trace[i * w + j];
      if (t == 0) { --i; --j; } else if (t == 1) { --i; } else { --j; }
    }
    lengths[item] = len;
  }
}

constexpr int kMaxCudaMedianWidth = 31;

__global__ void median_kernel(const float* __restrict__ x, float* __restrict__ y, int64_t rows, int64_t len,
                              int width) {
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= rows * len) return;
  const int64_t r = idx / len, t = idx % len;
  const int64_t pad = width / 2;
  const float* xr = x + r * len;
  float win[kMaxCudaMedianWidth];
  int cnt = 0;
  for (int64_t k = t - pad; k <= t + pad; ++k) {
    const int64_t kk = k < 0 ? -k : (k >= len ? 2 * (len - 1) - k : k);
    const float v = xr[kk];
    int p = cnt++;
    while (p > 0 && win[p - 1] > v) { win[p] = win[p - 1]; --p; }
    win[p] = v;
  }
  y[idx] = win[pad];
}

}  // namespace

void dtw_path_cuda(const float* x, int64_t b, int64_t n, int64_t m, float* cost_ws, uint8_t* trace_ws,
                   int32_t* text_idx, int32_t* time_idx, int64_t* lengths, bool open_end, bool open_begin,
                   void* stream) {
  SONICORE_CHECK(n >= 1 && m >= 1, "dtw: the cost matrix must have at least one row and one column");
  SONICORE_CHECK(b >= 1 && b < (int64_t(1) << 31), "dtw: batch size out of range");
  auto s = static_cast<cudaStream_t>(stream);
  dtw_kernel<<<static_cast<unsigned>(b), 256, 0, s>>>(x, n, m, cost_ws, trace_ws, text_idx, time_idx, lengths, open_end,
                                                       open_begin);
  const cudaError_t e = cudaGetLastError();
  SONICORE_CHECK(e == cudaSuccess, std::string("dtw: CUDA launch failed: ") + cudaGetErrorString(e));
}

void median_filter_cuda(const float* x, float* y, int64_t rows, int64_t len, int width, void* stream) {
  SONICORE_CHECK(width >= 1 && width % 2 == 1 && width <= kMaxCudaMedianWidth,
                 "median_filter: the CUDA kernel takes an odd width from 1 to 31");
  SONICORE_CHECK(len > width / 2, "median_filter: the CUDA kernel needs len > width / 2 (reflect padding)");
  const int64_t total = rows * len;
  if (total == 0) return;
  const int threads = 256;
  const int64_t blocks = (total + threads - 1) / threads;
  SONICORE_CHECK(blocks < (int64_t(1) << 31), "median_filter: input too large for one launch");
  median_kernel<<<static_cast<unsigned>(blocks), threads, 0, static_cast<cudaStream_t>(stream)>>>(x, y, rows, len, width);
  const cudaError_t e = cudaGetLastError();
  SONICORE_CHECK(e == cudaSuccess, std::string("median_filter: CUDA launch failed: ") + cudaGetErrorString(e));
}

}  // namespace sonicore
