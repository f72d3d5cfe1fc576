// DTW with backtrace on the CPU. The recurrence is inherently sequential along both axes,
// so one matrix runs on one thread, column by column (two columns of cost + a byte of
// trace per cell); batches of matrices spread over the pool.
#include "sonicore/dtw.h"

#include <limits>
#include <vector>

#include "sonicore/common.h"
#include "sonicore/parallel.h"

namespace sonicore {

namespace {
enum : uint8_t { kDiag = 0, kUp = 1, kLeft = 2 };
}

template <typename T>
int64_t dtw_path(const T* x, int64_t n, int64_t m, int64_t row_stride, int32_t* text_idx, int32_t* time_idx,
                 bool open_end, bool open_begin) {
  SONICORE_CHECK(n >= 1 && m >= 1, "dtw: the cost matrix must have at least one row and one column");
  SONICORE_CHECK(row_stride >= m, "dtw: row stride smaller than the row length");
  SONICORE_CHECK(n < (int64_t(1) << 31) && m < (int64_t(1) << 31), "dtw: matrix too large for int32 indices");
  const double inf = std::numeric_limits<double>::infinity();
  // prev/cur hold C[.][j-1] and C[.][j] for i = 0..n.
  std::vector<double> prev(n + 1, inf), cur(n + 1, inf);
  std::vector<uint8_t> trace(static_cast<size_t>(n) * static_cast<size_t>(m));
  prev[0] = 0.0;  // C[0][0]
  const double row0 = open_begin ? 0.0 : inf;  // C[0][j] for j >= 1
  for (int64_t j = 1; j <= m; ++j) {
    cur[0] = row0;
    for (int64_t i = 1; i <= n; ++i) {
      const double c0 = prev[i - 1], c1 = cur[i - 1], c2 = prev[i];
      double c;
      uint8_t t;
      if (c0 < c1 && c0 < c2) {
        c = c0; t = kDiag;
      } else if (c1 < c0 && c1 < c2) {
        c = c1; t = kUp;
      } else if (c2 <= c0 || c2 <= c1) {
        c = c2; t = kLeft;
      } else {  // c0 == c1 < c2: a tie openai's rule would resolve to the larger c2
        c = c0; t = kDiag;
      }
      cur[i] = static_cast<double>(x[(i - 1) * row_stride + (j - 1)]) + c;
      trace[(i - 1) * m + (j - 1)] = t;
    }
    prev.swap(cur);
  }
  // Backtrace from (n, m); reaching row or column 0 early follows the border (cannot happen
  // for finite costs, but keeps the loop bounded whatever the input holds).
  int64_t i = n, j = m, len = 0;
  if (open_end) {  // prev holds the last column C[.][m]
    for (int64_t r = 1; r <= n; ++r)
      if (prev[r] < prev[i] || (prev[r] == prev[i] && r < i)) i = r;
  }
  const int64_t cap = n + m - 1;
  while ((i > 0 || j > 0) && len < cap) {
    if (i == 0 || j == 0) break;
    text_idx[len] = static_cast<int32_t>(i - 1);
    time_idx[len] = static_cast<int32_t>(j - 1);
    ++len;
    const uint8_t t = trace[(i - 1) * m + (j - 1)];
    if (t == kDiag) { --i; --j; }
    else if (t == kUp) { --i; }
    else { --j; }
  }
  // Reverse in place: the path was collected end to start.
  for (int64_t a = 0, b = len - 1; a < b; ++a, --b) {
    std::swap(text_idx[a], text_idx[b]);
    std::swap(time_idx[a], time_idx[b]);
  }
  return len;
}

template <typename T>
void dtw_path_batched(const T* x, int64_t b, int64_t n, int64_t m, int64_t batch_stride, int64_t row_stride,
                      int32_t* text_idx, int32_t* time_idx, int64_t* lengths, bool open_end, bool open_begin) {
  SONICORE_CHECK(b >= 0, "dtw: negative batch size");
  const int64_t cap = n + m - 1;
  parallel_for(b, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t k = lo; k < hi; ++k)
      lengths[k] = dtw_path(x + k * batch_stride, n, m, row_stride, text_idx + k * cap, time_idx + k * cap,
                            open_end, open_begin);
  });
}

template int64_t dtw_path<float>(const float*, int64_t, int64_t, int64_t, int32_t*, int32_t*, bool, bool);
template int64_t dtw_path<double>(const double*, int64_t, int64_t, int64_t, int32_t*, int32_t*, bool, bool);
template void dtw_path_batched<float>(const float*, int64_t, int64_t, int64_t, int64_t, int64_t, int32_t*, int32_t*,
                                      int64_t*, bool, bool);
template void dtw_path_batched<double>(const double*, int64_t, int64_t, int64_t, int64_t, int64_t, int32_t*, int32_t*,
                                       int64_t*, bool, bool);

}  // namespace sonicore
