// Dynamic time warping with backtrace and a sliding median filter: the two kernels of
// Whisper-style word alignment (cross-attention weights -> monotone token/frame path).
//
// DTW convention (the one openai-whisper's timing code uses): for a cost matrix x (n, m),
//   C[0][0] = 0, C[i][0] = C[0][j] = +inf,
//   C[i][j] = x[i-1][j-1] + min(C[i-1][j-1], C[i-1][j], C[i][j-1]),
// ties resolved as: diagonal only if strictly smallest, then the vertical step (next token,
// same frame) if strictly smallest, else the horizontal step (same token, next frame) --
// except when the diagonal and vertical costs tie below the horizontal one, where the
// diagonal is taken (openai's rule would take the larger horizontal cost there; the case
// never arises with distinct costs, and always on the free first row of open_begin).
// The path runs from (0, 0) to (n-1, m-1); its length L lies in [max(n, m), n + m - 1].
// open_end: the path may stop at any row r of the last column (the r with the smallest
// C[r+1][m], the first one on ties) and ends at (r, m-1): text-side subsequence alignment,
// used when a window may hold only the first part of the text it is given.
// open_begin: C[0][j] = 0 for every j, so the path may start at any frame of the first row
// (leading frames without text cost nothing): time-side subsequence alignment.
#pragma once
#include <cstdint>

namespace sonicore {

// x: n rows (tokens) x m columns (frames), element (i, j) at x[i * row_stride + j].
// text_idx / time_idx: room for n + m - 1 entries each. Returns the path length L.
// Accumulates in double whatever the input type. Throws ArgumentError on bad sizes.
template <typename T>
int64_t dtw_path(const T* x, int64_t n, int64_t m, int64_t row_stride, int32_t* text_idx, int32_t* time_idx,
                 bool open_end = false, bool open_begin = false);

// Batched: b independent matrices (each n x m, batch stride batch_stride elements) in
// parallel on sonicore's pool; path b lands at text_idx + b * (n + m - 1), its length in lengths[b].
template <typename T>
void dtw_path_batched(const T* x, int64_t b, int64_t n, int64_t m, int64_t batch_stride, int64_t row_stride,
                      int32_t* text_idx, int32_t* time_idx, int64_t* lengths, bool open_end = false,
                      bool open_begin = false);

// Median over a window of `width` (odd, >= 1) along the last axis of `rows` rows of `len`
// contiguous values, with reflect padding (x[-k] = x[k]), as torch's F.pad(mode="reflect")
// followed by unfold + median. len <= width / 2 copies the input (reflect needs len > pad).
// Rows are processed in parallel. x and y may not alias.
template <typename T>
void median_filter(const T* x, T* y, int64_t rows, int64_t len, int width);

#ifdef SONICORE_WITH_CUDA
// CUDA versions on device pointers, enqueued on `stream` (a cudaStream_t passed as void*).
// dtw: cost_ws has (n+1)*(m+1) floats and trace_ws (n+1)*(m+1) bytes of device scratch per
// batch item; the path of item k lands at text_idx/time_idx + k*(n+m-1), its length at lengths[k].
void dtw_path_cuda(const float* x, int64_t b, int64_t n, int64_t m, float* cost_ws, uint8_t* trace_ws,
                   int32_t* text_idx, int32_t* time_idx, int64_t* lengths, bool open_end, bool open_begin,
                   void* stream);
void median_filter_cuda(const float* x, float* y, int64_t rows, int64_t len, int width, void* stream);
#endif

}  // namespace sonicore
