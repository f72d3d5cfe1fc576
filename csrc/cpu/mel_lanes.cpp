// Frames-in-lanes real FFT for the fused mel kernel (see mel_lanes.h).
#include "mel_lanes.h"

#include <cmath>
#include <cstring>
#include <map>
#include <mutex>
#include <utility>

// Every loop below runs along the lanes of one vector; compile it once per ISA and pick at load
// time, so the wheel stays portable.
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(__SANITIZE_ADDRESS__)
#define SONICORE_LANES_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define SONICORE_LANES_CLONES
#endif

namespace sonicore {
namespace mel_lanes {
namespace {

constexpr double kPi = 3.14159265358979323846;

// The vector of one element's lanes (GCC/Clang vector extension: one SIMD register where the
// ISA has 32-byte vectors, two halves otherwise). Moved with memcpy: buffers need no alignment.
template <class T>
struct Lanes {
  typedef T type __attribute__((vector_size(32)));
};
template <class T>
using V = typename Lanes<T>::type;

#define SONICORE_LOAD(v, p) std::memcpy(&(v), (p), sizeof(v))
#define SONICORE_STORE(p, v) std::memcpy((p), &(v), sizeof(v))

// Forward DFT of R points, b[k] = sum_j a[j] exp(-2 pi i j k / R), written out per radix so
// each is the few adds it needs; U is a lane vector, T its scalar. Multiplying by -i maps
// (re, im) to (im, -re).
template <class T, int R, class U = V<T>>
struct Dft;

template <class T, class U>
struct Dft<T, 2, U> {
  static inline void run(const U* ar, const U* ai, U* br, U* bi) {
    br[0] = ar[0] + ar[1], bi[0] = ai[0] + ai[1];
    br[1] = ar[0] - ar[1], bi[1] = ai[0] - ai[1];
  }
};

template <class T, class U>
struct Dft<T, 3, U> {
  static inline void run(const U* ar, const U* ai, U* br, U* bi) {
    const T s = T(0.86602540378443864676);  // sin(2 pi / 3)
    const U ur = ar[1] + ar[2], ui = ai[1] + ai[2], vr = ar[1] - ar[2], vi = ai[1] - ai[2];
    const U rr = ar[0] - T(0.5) * ur, ri = ai[0] - T(0.5) * ui;
    br[0] = ar[0] + ur, bi[0] = ai[0] + ui;
    br[1] = rr + s * vi, bi[1] = ri - s * vr;  // r - i s v
    br[2] = rr - s * vi, bi[2] = ri + s * vr;  // r + i s v
  }
};

template <class T, class U>
struct Dft<T, 4, U> {
  static inline void run(const U* ar, const U* ai, U* br, U* bi) {
    const U t0r = ar[0] + ar[2], t0i = ai[0] + ai[2], t1r = ar[0] - ar[2], t1i = ai[0] - ai[2];
    const U t2r = ar[1] + ar[3], t2i = ai[1] + ai[3], t3r = ar[1] - ar[3], t3i = ai[1] - ai[3];
    br[0] = t0r + t2r, bi[0] = t0i + t2i;
    br[2] = t0r - t2r, bi[2] = t0i - t2i;
    br[1] = t1r + t3i, bi[1] = t1i - t3r;  // t1 - i t3
    br[3] = t1r - t3i, bi[3] = t1i + t3r;  // t1 + i t3
  }
};

template <class T, class U>
struct Dft<T, 5, U> {
  static inline void run(const U* ar, const U* ai, U* br, U* bi) {
    const T c1 = T(0.30901699437494742410), c2 = T(-0.80901699437494742410);  // cos(2 pi / 5), cos(4 pi / 5)
    const T s1 = T(0.95105651629515357212), s2 = T(0.58778525229247312917);   // sin(2 pi / 5), sin(4 pi / 5)
    const U u1r = ar[1] + ar[4], u1i = ai[1] + ai[4], v1r = ar[1] - ar[4], v1i = ai[1] - ai[4];
    const U u2r = ar[2] + ar[3], u2i = ai[2] + ai[3], v2r = ar[2] - ar[3], v2i = ai[2] - ai[3];
    const U r1r = ar[0] + c1 * u1r + c2 * u2r, r1i = ai[0] + c1 * u1i + c2 * u2i;
    const U r2r = ar[0] + c2 * u1r + c1 * u2r, r2i = ai[0] + c2 * u1i + c1 * u2i;
    const U i1r = s1 * v1r + s2 * v2r, i1i = s1 * v1i + s2 * v2i;
    const U i2r = s2 * v1r - s1 * v2r, i2i = s2 * v1i - s1 * v2i;
    br[0] = ar[0] + u1r + u2r, bi[0] = ai[0] + u1i + u2i;
    br[1] = r1r + i1i, bi[1] = r1i - i1r;  // r1 - i i1
    br[4] = r1r - i1i, bi[4] = r1i + i1r;  // r1 + i i1
    br[2] = r2r + i2i, bi[2] = r2i - i2r;  // r2 - i i2
    br[3] = r2r - i2i, bi[3] = r2i + i2r;  // r2 + i i2
  }
};

// One Stockham decimation-in-frequency stage on sub-transforms of length len with stride s:
// y[q + s (R p + k)] = w^(p k) * DFT_R(x[q + s (p + j m)], j < R)[k], m = len / R,
// w = exp(-2 pi i / len). Element e of x is the vector of lanes at x + e * L.
template <class T, int R>
inline __attribute__((always_inline)) void stage(const T* xr, const T* xi, T* yr, T* yi, int64_t len, int64_t s,
                                                 const T* twr, const T* twi) {
  constexpr int64_t L = lanes<T>();
  const int64_t m = len / R;
  for (int64_t p = 0; p < m; ++p) {
    T wr[R], wi[R];
    for (int k = 1; k < R; ++k) wr[k] = twr[p * (R - 1) + k - 1], wi[k] = twi[p * (R - 1) + k - 1];
    for (int64_t q = 0; q < s; ++q) {
      V<T> ar[R], ai[R], br[R], bi[R];
      for (int j = 0; j < R; ++j) {
        SONICORE_LOAD(ar[j], xr + (q + s * (p + j * m)) * L);
        SONICORE_LOAD(ai[j], xi + (q + s * (p + j * m)) * L);
      }
      Dft<T, R>::run(ar, ai, br, bi);
      SONICORE_STORE(yr + (q + s * R * p) * L, br[0]);
      SONICORE_STORE(yi + (q + s * R * p) * L, bi[0]);
      for (int k = 1; k < R; ++k) {
        const V<T> cr = br[k] * wr[k] - bi[k] * wi[k], ci = br[k] * wi[k] + bi[k] * wr[k];
        SONICORE_STORE(yr + (q + s * (R * p + k)) * L, cr);
        SONICORE_STORE(yi + (q + s * (R * p + k)) * L, ci);
      }
    }
  }
}

// In-register transpose of L rows of L lanes: afterwards r[p][l] is the old r[l][p].
// Interleave neighbouring rows, then pairs, then quads (log2 L shuffle rounds).
inline void transpose(V<float>* r) {
  typedef int32_t I __attribute__((vector_size(32)));
  V<float> a[8], b[8];
  for (int i = 0; i < 8; i += 2) {
    a[i] = __builtin_shuffle(r[i], r[i + 1], I{0, 8, 2, 10, 4, 12, 6, 14});
    a[i + 1] = __builtin_shuffle(r[i], r[i + 1], I{1, 9, 3, 11, 5, 13, 7, 15});
  }
  for (int i = 0; i < 8; i += 4)
    for (int k = 0; k < 2; ++k) {
      b[i + k] = __builtin_shuffle(a[i + k], a[i + k + 2], I{0, 1, 8, 9, 4, 5, 12, 13});
      b[i + k + 2] = __builtin_shuffle(a[i + k], a[i + k + 2], I{2, 3, 10, 11, 6, 7, 14, 15});
    }
  for (int k = 0; k < 4; ++k) {
    r[k] = __builtin_shuffle(b[k], b[k + 4], I{0, 1, 2, 3, 8, 9, 10, 11});
    r[k + 4] = __builtin_shuffle(b[k], b[k + 4], I{4, 5, 6, 7, 12, 13, 14, 15});
  }
}

inline void transpose(V<double>* r) {
  typedef int64_t I __attribute__((vector_size(32)));
  V<double> a[4];
  for (int i = 0; i < 4; i += 2) {
    a[i] = __builtin_shuffle(r[i], r[i + 1], I{0, 4, 2, 6});
    a[i + 1] = __builtin_shuffle(r[i], r[i + 1], I{1, 5, 3, 7});
  }
  for (int k = 0; k < 2; ++k) {
    r[k] = __builtin_shuffle(a[k], a[k + 2], I{0, 1, 4, 5});
    r[k + 2] = __builtin_shuffle(a[k], a[k + 2], I{2, 3, 6, 7});
  }
}

template <class T>
SONICORE_LANES_CLONES void pass_impl(const Plan<T>& P, const T* const* frames, int64_t count, const T* window,
                                     bool magnitude, int64_t n_bins, T* out, int64_t ld, T* work) {
  constexpr int64_t L = lanes<T>();
  const int64_t M = P.half;
  T* xr = work;
  T* xi = work + M * L;
  T* yr = work + 2 * M * L;
  T* yi = work + 3 * M * L;
  // Windowed frames into lanes, even samples as real parts and odd ones as imaginary parts:
  // L samples of each of the L frames at a time, transposed in registers.
  const int64_t n = P.n, vec_end = n / L * L;
  for (int64_t c = 0; c < vec_end; c += L) {
    V<T> w, r[L];
    SONICORE_LOAD(w, window + c);
    for (int64_t l = 0; l < L; ++l) {
      if (l < count) {
        SONICORE_LOAD(r[l], frames[l] + c);
        r[l] *= w;
      } else {
        r[l] = w - w;
      }
    }
    transpose(r);
    for (int64_t j = 0; j < L; j += 2) {  // c is even, so sample c + j is even
      SONICORE_STORE(xr + ((c + j) / 2) * L, r[j]);
      SONICORE_STORE(xi + ((c + j) / 2) * L, r[j + 1]);
    }
  }
  for (int64_t l = 0; l < L; ++l) {
    const T* f = l < count ? frames[l] : nullptr;
    for (int64_t j = vec_end / 2; j < M; ++j) {
      xr[j * L + l] = f ? f[2 * j] * window[2 * j] : T(0);
      xi[j * L + l] = f ? f[2 * j + 1] * window[2 * j + 1] : T(0);
    }
  }
  int64_t len = M, s = 1;
  for (size_t st = 0; st < P.radix.size(); ++st) {
    const T* twr = P.tw_re[st].data();
    const T* twi = P.tw_im[st].data();
    switch (P.radix[st]) {
      case 4: stage<T, 4>(xr, xi, yr, yi, len, s, twr, twi); break;
      case 2: stage<T, 2>(xr, xi, yr, yi, len, s, twr, twi); break;
      case 3: stage<T, 3>(xr, xi, yr, yi, len, s, twr, twi); break;
      default: stage<T, 5>(xr, xi, yr, yi, len, s, twr, twi); break;
    }
    std::swap(xr, yr);
    std::swap(xi, yi);
    len /= P.radix[st];
    s *= P.radix[st];
  }
  // Z (natural order) in x. X[k] = E[k] + c^k O[k] with E = (Z[k] + conj Z[M-k]) / 2,
  // O = (Z[k] - conj Z[M-k]) / 2i, c = exp(-2 pi i / n); Z[M] is Z[0].
  const T half = T(0.5);
  for (int64_t k = 0; k < n_bins; ++k) {
    const T cr = P.post_re[size_t(k)], ci = P.post_im[size_t(k)];
    const int64_t a = k == M ? 0 : k, b = k == 0 ? 0 : M - k;  // Z[k], Z[M - k] with Z[M] = Z[0]
    V<T> zr, zi, wr, wi;
    SONICORE_LOAD(zr, xr + a * L);
    SONICORE_LOAD(zi, xi + a * L);
    SONICORE_LOAD(wr, xr + b * L);
    SONICORE_LOAD(wi, xi + b * L);
    const V<T> er = half * (zr + wr), ei = half * (zi - wi);
    const V<T> odr = half * (zi + wi), odi = half * (wr - zr);
    const V<T> re = er + (cr * odr - ci * odi), im = ei + (cr * odi + ci * odr);
    V<T> pw = re * re + im * im;
    if (magnitude)
      for (int64_t l = 0; l < L; ++l) pw[l] = std::sqrt(pw[l]);
    SONICORE_STORE(out + k * ld, pw);
  }
}

#undef SONICORE_LOAD
#undef SONICORE_STORE

template <class T>
std::shared_ptr<const Plan<T>> build(int64_t n) {
  if (n < 4 || n % 2 != 0) return nullptr;
  auto P = std::make_shared<Plan<T>>();
  P->n = n;
  P->half = n / 2;
  int64_t rest = P->half;
  for (int r : {4, 2, 3, 5})
    while (rest % r == 0) P->radix.push_back(r), rest /= r;
  if (rest != 1) return nullptr;
  int64_t len = P->half;
  for (int r : P->radix) {
    const int64_t m = len / r;
    std::vector<T> re(size_t(m * (r - 1))), im(size_t(m * (r - 1)));
    for (int64_t p = 0; p < m; ++p)
      for (int k = 1; k < r; ++k) {
        // Angles reduced modulo len in integers, so large products lose no precision.
        const double a = -2.0 * kPi * double((p * k) % len) / double(len);
        re[size_t(p * (r - 1) + k - 1)] = T(std::cos(a));
        im[size_t(p * (r - 1) + k - 1)] = T(std::sin(a));
      }
    P->tw_re.push_back(std::move(re));
    P->tw_im.push_back(std::move(im));
    len = m;
  }
  P->post_re.resize(size_t(P->half + 1));
  P->post_im.resize(size_t(P->half + 1));
  for (int64_t k = 0; k <= P->half; ++k) {
    const double a = -2.0 * kPi * double(k) / double(n);
    P->post_re[size_t(k)] = T(std::cos(a));
    P->post_im[size_t(k)] = T(std::sin(a));
  }
  return P;
}

}  // namespace

template <class T>
std::shared_ptr<const Plan<T>> plan_for(int64_t n) {
  static std::mutex mu;
  static std::map<int64_t, std::shared_ptr<const Plan<T>>> cache;
  std::lock_guard<std::mutex> lock(mu);
  auto it = cache.find(n);
  if (it != cache.end()) return it->second;
  auto p = build<T>(n);
  cache.emplace(n, p);
  return p;
}

template <class T>
int64_t work_size(const Plan<T>& plan) {
  return 4 * plan.half * lanes<T>();
}

template <class T>
void power_pass(const Plan<T>& plan, const T* const* frames, int64_t count, const T* window, bool magnitude,
                int64_t n_bins, T* out, int64_t ld, T* work) {
  pass_impl(plan, frames, count, window, magnitude, n_bins, out, ld, work);
}

#define SONICORE_MEL_LANES_INSTANTIATE(T)                                                            \
  template std::shared_ptr<const Plan<T>> plan_for<T>(int64_t);                                     \
  template int64_t work_size<T>(const Plan<T>&);                                                    \
  template void power_pass<T>(const Plan<T>&, const T* const*, int64_t, const T*, bool, int64_t, T*, \
                              int64_t, T*);
SONICORE_MEL_LANES_INSTANTIATE(float)
SONICORE_MEL_LANES_INSTANTIATE(double)
#undef SONICORE_MEL_LANES_INSTANTIATE

}  // namespace mel_lanes
}  // namespace sonicore
