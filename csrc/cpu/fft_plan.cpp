// Real-FFT plans (twiddle tables), their cache, and the run-time choice of kernel set.
#include "fft_plan.h"

#include <cmath>
#include <map>
#include <mutex>
#include <string>

#include "fft_kernels.h"
#include "sonicore/common.h"
#include "sonicore/cpu_features.h"
#include "sonicore/parallel.h"

namespace sonicore {
namespace fft {
namespace {

// exp(-2 pi i j / n) with j reduced first, in long double, so tables are accurate to the last bit.
template <class T>
void root(int64_t j, int64_t n, T& re, T& im) {
  j %= n;
  const long double a = -2.0L * 3.14159265358979323846264338327950288L * (long double)j / (long double)n;
  re = T(std::cos(a));
  im = T(std::sin(a));
}

// Radices for a Stockham FFT of n points: 4s first (one 2 if the power of two is odd), then
// 3s, 5s and any other prime up to kMaxRadix.
std::vector<int> factor(int64_t n) {
  std::vector<int> out;
  int twos = 0;
  while (n % 2 == 0) { n /= 2; ++twos; }
  for (int i = 0; i < twos / 2; ++i) out.push_back(4);
  if (twos % 2) out.push_back(2);
  for (int p = 3; n > 1; p += 2) {
    while (n % p == 0) {
      if (p > kMaxRadix)
        throw ArgumentError("FFT size has the prime factor " + std::to_string(p) + " (> " +
                            std::to_string(kMaxRadix) + "); expected n/2 with prime factors <= " +
                            std::to_string(kMaxRadix) + " (2, 3, 5 are the fast ones)");
      out.push_back(p);
      n /= p;
    }
    if (p > kMaxRadix && n > 1)
      throw ArgumentError("FFT size has a prime factor > " + std::to_string(kMaxRadix) +
                          "; expected n/2 with prime factors <= " + std::to_string(kMaxRadix));
  }
  return out;
}

template <class T>
ComplexPlan<T> make_complex(int64_t size, int64_t batch) {
  ComplexPlan<T> plan;
  plan.size = size;
  plan.batch = batch;
  int64_t s = 1;
  for (int r : factor(size)) {
    Stage<T> st;
    st.radix = r;
    st.m = size / (s * r);
    st.q = s * batch;
    const int64_t span = int64_t(r) * st.m;  // points of the sub-transform this stage splits
    st.tw_re.resize(size_t(st.m * (r - 1)));
    st.tw_im.resize(size_t(st.m * (r - 1)));
    for (int64_t p = 0; p < st.m; ++p)
      for (int k = 1; k < r; ++k)
        root(p * k, span, st.tw_re[size_t(p * (r - 1) + k - 1)], st.tw_im[size_t(p * (r - 1) + k - 1)]);
    if (r > 5) {
      st.root_re.resize(size_t(r));
      st.root_im.resize(size_t(r));
      for (int j = 0; j < r; ++j) root(j, r, st.root_re[size_t(j)], st.root_im[size_t(j)]);
    }
    plan.stages.push_back(std::move(st));
    s *= r;
  }
  return plan;
}

template <class T>
std::shared_ptr<const RealPlan<T>> build(int64_t n) {
  auto plan = std::make_shared<RealPlan<T>>();
  const int64_t M = n / 2;
  plan->n = n;
  plan->half = M;
  // The four-step split: n1 lanes make the first pass vectorise; independent of the ISA so
  // that every ISA computes the very same arithmetic.
  int64_t n1 = 1;
  if (M % 16 == 0 && M >= 256) n1 = 16;
  else if (M % 8 == 0 && M >= 64) n1 = 8;
  else if (M % 4 == 0 && M >= 16) n1 = 4;
  plan->n1 = n1;
  plan->n2 = M / n1;
  plan->rows = make_complex<T>(plan->n2, n1);
  if (n1 > 1) {
    plan->cols = make_complex<T>(n1, plan->n2);
    plan->tw4_re.resize(size_t(M));
    plan->tw4_im.resize(size_t(M));
    for (int64_t k2 = 0; k2 < plan->n2; ++k2)
      for (int64_t j = 0; j < n1; ++j)
        root(j * k2, M, plan->tw4_re[size_t(k2 * n1 + j)], plan->tw4_im[size_t(k2 * n1 + j)]);
  }
  plan->rw_re.resize(size_t(M + 1));
  plan->rw_im.resize(size_t(M + 1));
  for (int64_t k = 0; k <= M; ++k) root(k, n, plan->rw_re[size_t(k)], plan->rw_im[size_t(k)]);
  return plan;
}

// Every ISA computes the very same arithmetic (bitwise, tested), so the choice is only about
// speed: the AVX-512 kernels pay off when the four-step split's n1 lanes fill a 512-bit
// vector; otherwise (e.g. Whisper's n_fft 400: M = 200, n1 = 8 float lanes) half-empty
// vectors make them slower than the AVX2 kernels, which are then used instead.
template <class T>
const Kernels<T>& kernels(const RealPlan<T>& plan) {
  static const Isa isa = cpu_isa();
  if (isa == Isa::avx512 && plan.n1 % (64 / int64_t(sizeof(T))) == 0) {
    static const Kernels<T> k512 = kernels_avx512<T>();
    return k512;
  }
  if (isa == Isa::avx512 || isa == Isa::avx2) {
    static const Kernels<T> k2 = kernels_avx2<T>();
    return k2;
  }
  static const Kernels<T> k1 = kernels_scalar<T>();
  return k1;
}

}  // namespace

template <class T>
std::shared_ptr<const RealPlan<T>> real_plan(int64_t n) {
  SONICORE_CHECK(n >= 2 && n % 2 == 0,
                 "the real FFT needs an even size >= 2, got " + std::to_string(n));
  SONICORE_CHECK(n <= (int64_t(1) << 26), "FFT size " + std::to_string(n) + " is too large (max 2^26)");
  static std::mutex mu;
  static std::map<int64_t, std::shared_ptr<const RealPlan<T>>> cache;
  {
    std::lock_guard<std::mutex> lk(mu);
    auto it = cache.find(n);
    if (it != cache.end()) return it->second;
  }
  auto plan = build<T>(n);  // outside the lock: building a large plan must not block others
  std::lock_guard<std::mutex> lk(mu);
  auto ins = cache.emplace(n, plan);
  return ins.first->second;
}

template <class T>
int64_t work_size(const RealPlan<T>& plan) {
  return 4 * plan.half + 16;
}

template <class T>
void forward_frame(const RealPlan<T>& plan, const T* x, const T* we, const T* wo,
                   const ForwardOptions& opt, T* out, T* work) {
  kernels<T>(plan).forward(plan, x, we, wo, opt, out, work);
}

template <class T>
void inverse_frame(const RealPlan<T>& plan, const T* re, const T* im, T scale, const T* we,
                   const T* wo, T* out, T* work) {
  kernels<T>(plan).inverse(plan, re, im, scale, we, wo, out, work);
}

template <class T>
void rfft(const T* in, int64_t count, int64_t n, T* out) {
  auto plan = real_plan<T>(n);
  const int64_t bins = n / 2 + 1;
  ForwardOptions opt;
  parallel_for(count, 8, [&](int64_t b, int64_t e) {
    std::vector<T> work(size_t(work_size(*plan)));
    for (int64_t i = b; i < e; ++i)
      forward_frame(*plan, in + i * n, (const T*)nullptr, (const T*)nullptr, opt, out + i * 2 * bins,
                    work.data());
  });
}

template <class T>
void irfft(const T* in, int64_t count, int64_t n, T* out) {
  auto plan = real_plan<T>(n);
  const int64_t bins = n / 2 + 1;
  parallel_for(count, 8, [&](int64_t b, int64_t e) {
    std::vector<T> work(size_t(work_size(*plan) + 2 * bins));
    T* re = work.data() + work_size(*plan);
    T* im = re + bins;
    for (int64_t i = b; i < e; ++i) {
      const T* row = in + i * 2 * bins;
      for (int64_t k = 0; k < bins; ++k) {
        re[k] = row[2 * k];
        im[k] = row[2 * k + 1];
      }
      im[0] = T(0);
      im[bins - 1] = T(0);
      inverse_frame(*plan, re, im, T(1), (const T*)nullptr, (const T*)nullptr, out + i * n, work.data());
    }
  });
}

const char* kernel_isa() { return isa_name(cpu_isa()); }

#define SONICORE_FFT_INSTANTIATE(T)                                                            \
  template std::shared_ptr<const RealPlan<T>> real_plan<T>(int64_t);                            \
  template int64_t work_size<T>(const RealPlan<T>&);                                            \
  template void forward_frame<T>(const RealPlan<T>&, const T*, const T*, const T*,              \
                                 const ForwardOptions&, T*, T*);                                \
  template void inverse_frame<T>(const RealPlan<T>&, const T*, const T*, T, const T*, const T*, \
                                 T*, T*);                                                       \
  template void rfft<T>(const T*, int64_t, int64_t, T*);                                        \
  template void irfft<T>(const T*, int64_t, int64_t, T*);
SONICORE_FFT_INSTANTIATE(float)
SONICORE_FFT_INSTANTIATE(double)
#undef SONICORE_FFT_INSTANTIATE

}  // namespace fft
}  // namespace sonicore
