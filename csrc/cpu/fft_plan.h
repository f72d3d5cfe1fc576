// Private: the real-FFT plan (twiddle tables) and the per-ISA kernel table.
#pragma once
#include <cstdint>
#include <vector>

#include "sonicore/fft.h"

namespace sonicore {
namespace fft {

// One Stockham stage: m groups of `radix` points, `q` contiguous lanes per point
// (q = earlier radices * batch). Twiddles w^(p*k), p < m, k = 1..radix-1, at [p*(radix-1) + k-1].
template <class T>
struct Stage {
  int radix = 1;
  int64_t m = 1, q = 1;
  std::vector<T> tw_re, tw_im;
  std::vector<T> root_re, root_im;  // exp(-2 pi i j / radix), j < radix: generic-radix stages only
};

// A complex Stockham FFT of `size` points over `batch` contiguous lanes.
template <class T>
struct ComplexPlan {
  int64_t size = 1, batch = 1;
  std::vector<Stage<T>> stages;
};

template <class T>
struct RealPlan {
  int64_t n = 0, half = 0;   // real size, complex size M = n/2
  int64_t n1 = 1, n2 = 1;    // four-step split M = n1 * n2 (n1 == 1: one plain Stockham)
  ComplexPlan<T> rows;       // n2 points over n1 lanes (or M points, 1 lane)
  ComplexPlan<T> cols;       // n1 points over n2 lanes (unused when n1 == 1)
  std::vector<T> tw4_re, tw4_im;  // exp(-2 pi i n1 k2 / M) at [k2 * n1 + n1]
  std::vector<T> rw_re, rw_im;    // exp(-2 pi i k / n), k <= M: the real-spectrum pass
};

template <class T>
struct Kernels {
  void (*forward)(const RealPlan<T>&, const T*, const T*, const T*, const ForwardOptions&, T*, T*);
  void (*inverse)(const RealPlan<T>&, const T*, const T*, T, const T*, const T*, T*, T*);
};

// Per-ISA kernel tables (fft_kernels_*.cpp); avx2/avx512 ones exist only on x86-64.
template <class T> Kernels<T> kernels_scalar();
template <class T> Kernels<T> kernels_avx2();
template <class T> Kernels<T> kernels_avx512();

}  // namespace fft
}  // namespace sonicore
