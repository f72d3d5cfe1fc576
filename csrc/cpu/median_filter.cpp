// Sliding median along the last axis with reflect padding. Windows are tiny (Whisper uses 7),
// so each output sorts its window in registers with an insertion sort, which beats a heap or
// a two-multiset running median at this size; rows spread over the pool.
#include <algorithm>
#include <cstring>
#include <vector>

#include "sonicore/common.h"
#include "sonicore/dtw.h"
#include "sonicore/parallel.h"

namespace sonicore {

namespace {
inline int64_t reflect(int64_t k, int64_t len) {
  if (k < 0) return -k;
  if (k >= len) return 2 * (len - 1) - k;
  return k;
}
}  // namespace

// Width 7 (Whisper's) on interior points: a 16-comparator sorting network on registers,
// branch-free min/max, over blocks of consecutive outputs so the compiler vectorises across
// time. The network was checked on all 0/1 inputs (0-1 principle).
template <typename T>
inline void cmpswap(T& a, T& b) {
  const T lo = std::min(a, b), hi = std::max(a, b);
  a = lo;
  b = hi;
}

template <typename T>
void median7_interior(const T* xr, T* yr, int64_t t0, int64_t t1) {
  for (int64_t t = t0; t < t1; ++t) {
    T a0 = xr[t - 3], a1 = xr[t - 2], a2 = xr[t - 1], a3 = xr[t], a4 = xr[t + 1], a5 = xr[t + 2], a6 = xr[t + 3];
    cmpswap(a0, a6); cmpswap(a2, a3); cmpswap(a4, a5);
    cmpswap(a0, a2); cmpswap(a1, a4); cmpswap(a3, a6);
    cmpswap(a0, a1); cmpswap(a2, a5); cmpswap(a3, a4);
    cmpswap(a1, a2); cmpswap(a4, a6);
    cmpswap(a2, a3); cmpswap(a4, a5);
    cmpswap(a1, a2); cmpswap(a3, a4); cmpswap(a5, a6);
    yr[t] = a3;
  }
}

template <typename T>
void median_filter(const T* x, T* y, int64_t rows, int64_t len, int width) {
  SONICORE_CHECK(width >= 1 && width % 2 == 1, "median_filter: width must be odd and >= 1");
  SONICORE_CHECK(width <= 255, "median_filter: width must be at most 255");
  SONICORE_CHECK(rows >= 0 && len >= 0, "median_filter: negative size");
  const int64_t pad = width / 2;
  if (len <= pad || width == 1) {
    if (rows * len > 0) std::memcpy(y, x, sizeof(T) * static_cast<size_t>(rows * len));
    return;
  }
  const int64_t grain = std::max<int64_t>(1, 4096 / std::max<int64_t>(len, 1));
  parallel_for(rows, grain, [&](int64_t lo, int64_t hi) {
    T win[256];
    for (int64_t r = lo; r < hi; ++r) {
      const T* xr = x + r * len;
      T* yr = y + r * len;
      const bool net = width == 7 && len > 2 * pad;
      if (net) median7_interior(xr, yr, pad, len - pad);
      for (int64_t t = 0; t < len; ++t) {
        if (net && t == pad) t = len - pad;  // the interior is done
        if (t >= len) break;
        int n = 0;
        const bool interior = t >= pad && t + pad < len;
        for (int64_t k = t - pad; k <= t + pad; ++k) {
          const T v = xr[interior ? k : reflect(k, len)];
          int p = n++;
          while (p > 0 && win[p - 1] > v) { win[p] = win[p - 1]; --p; }
          win[p] = v;
        }
        yr[t] = win[pad];
      }
    }
  });
}

template void median_filter<float>(const float*, float*, int64_t, int64_t, int);
template void median_filter<double>(const double*, double*, int64_t, int64_t, int);

}  // namespace sonicore
