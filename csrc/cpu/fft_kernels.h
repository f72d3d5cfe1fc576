// Private: the FFT frame kernels, written once over a small SIMD vocabulary `O` and compiled
// per ISA (fft_kernels_scalar.cpp, fft_kernels_avx2.cpp, fft_kernels_avx512.cpp).
//
// Every loop runs full vectors of O::W lanes and finishes with ScalarOps<T> lanes doing the
// same operations, and these files are built with -ffp-contract=off: so each output element
// gets the same IEEE operations in the same order whatever the ISA, vector width or batching.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <utility>

#include "fft_plan.h"

namespace sonicore {
namespace fft {

template <class T>
struct ScalarOps {
  using Scalar = T;
  using V = T;
  static constexpr int W = 1;
  static V load(const T* p) { return *p; }
  static void store(T* p, V v) { *p = v; }
  static V set1(T a) { return a; }
  static V add(V a, V b) { return a + b; }
  static V sub(V a, V b) { return a - b; }
  static V mul(V a, V b) { return a * b; }
  static V sqrt(V a) { return std::sqrt(a); }
  static V rev_load(const T* p) { return *p; }  // p[W-1], ..., p[0]
  static void load_deint(const T* p, V& even, V& odd) { even = p[0]; odd = p[1]; }
  static void store_int(T* p, V a, V b) { p[0] = a; p[1] = b; }
};

// f(ops, i) over i in [0, n): full O vectors, then scalar lanes.
template <class O, class F>
inline void vloop(int64_t n, F&& f) {
  int64_t i = 0;
  for (; i + O::W <= n; i += O::W) f(O{}, i);
  for (; i < n; ++i) f(ScalarOps<typename O::Scalar>{}, i);
}

// ---------------------------------------------------------------- butterflies
// Forward DFT of `radix` points a[] -> b[] (in place in ar/ai), w = exp(-2 pi i / radix).

template <class P, class V>
inline void dft2(V* ar, V* ai) {
  V r0 = P::add(ar[0], ar[1]), i0 = P::add(ai[0], ai[1]);
  V r1 = P::sub(ar[0], ar[1]), i1 = P::sub(ai[0], ai[1]);
  ar[0] = r0; ai[0] = i0; ar[1] = r1; ai[1] = i1;
}

template <class P, class V>
inline void dft4(V* ar, V* ai) {
  V t0r = P::add(ar[0], ar[2]), t0i = P::add(ai[0], ai[2]);
  V t1r = P::sub(ar[0], ar[2]), t1i = P::sub(ai[0], ai[2]);
  V t2r = P::add(ar[1], ar[3]), t2i = P::add(ai[1], ai[3]);
  V t3r = P::sub(ar[1], ar[3]), t3i = P::sub(ai[1], ai[3]);
  ar[0] = P::add(t0r, t2r); ai[0] = P::add(t0i, t2i);
  ar[2] = P::sub(t0r, t2r); ai[2] = P::sub(t0i, t2i);
  // t1 -/+ i t3
  ar[1] = P::add(t1r, t3i); ai[1] = P::sub(t1i, t3r);
  ar[3] = P::sub(t1r, t3i); ai[3] = P::add(t1i, t3r);
}

template <class P, class V>
inline void dft3(V* ar, V* ai) {
  using T = typename P::Scalar;
  const V half = P::set1(T(-0.5)), s = P::set1(T(0.86602540378443864676372317075294));
  V t1r = P::add(ar[1], ar[2]), t1i = P::add(ai[1], ai[2]);
  V t2r = P::sub(ar[1], ar[2]), t2i = P::sub(ai[1], ai[2]);
  V mr = P::add(ar[0], P::mul(half, t1r)), mi = P::add(ai[0], P::mul(half, t1i));
  V nr = P::mul(s, t2i), ni = P::mul(s, t2r);
  ar[0] = P::add(ar[0], t1r); ai[0] = P::add(ai[0], t1i);
  ar[1] = P::add(mr, nr); ai[1] = P::sub(mi, ni);
  ar[2] = P::sub(mr, nr); ai[2] = P::add(mi, ni);
}

template <class P, class V>
inline void dft5(V* ar, V* ai) {
  using T = typename P::Scalar;
  const V c1 = P::set1(T(0.30901699437494742410229341718282)),
          c2 = P::set1(T(-0.80901699437494742410229341718282)),
          s1 = P::set1(T(0.95105651629515357211643933337938)),
          s2 = P::set1(T(0.58778525229247312916870595463907));
  V t1r = P::add(ar[1], ar[4]), t1i = P::add(ai[1], ai[4]);
  V t2r = P::add(ar[2], ar[3]), t2i = P::add(ai[2], ai[3]);
  V t3r = P::sub(ar[1], ar[4]), t3i = P::sub(ai[1], ai[4]);
  V t4r = P::sub(ar[2], ar[3]), t4i = P::sub(ai[2], ai[3]);
  V m1r = P::add(ar[0], P::add(P::mul(c1, t1r), P::mul(c2, t2r)));
  V m1i = P::add(ai[0], P::add(P::mul(c1, t1i), P::mul(c2, t2i)));
  V m2r = P::add(ar[0], P::add(P::mul(c2, t1r), P::mul(c1, t2r)));
  V m2i = P::add(ai[0], P::add(P::mul(c2, t1i), P::mul(c1, t2i)));
  V n1r = P::add(P::mul(s1, t3r), P::mul(s2, t4r)), n1i = P::add(P::mul(s1, t3i), P::mul(s2, t4i));
  V n2r = P::sub(P::mul(s2, t3r), P::mul(s1, t4r)), n2i = P::sub(P::mul(s2, t3i), P::mul(s1, t4i));
  ar[0] = P::add(ar[0], P::add(t1r, t2r)); ai[0] = P::add(ai[0], P::add(t1i, t2i));
  // m -/+ i n
  ar[1] = P::add(m1r, n1i); ai[1] = P::sub(m1i, n1r);
  ar[4] = P::sub(m1r, n1i); ai[4] = P::add(m1i, n1r);
  ar[2] = P::add(m2r, n2i); ai[2] = P::sub(m2i, n2r);
  ar[3] = P::sub(m2r, n2i); ai[3] = P::add(m2i, n2r);
}

// Any radix: the plain DFT with the stage's roots of unity (sizes with large prime factors).
template <class P, class V, class T>
inline void dft_generic(V* ar, V* ai, int radix, const T* root_re, const T* root_im, V* br, V* bi) {
  for (int k = 0; k < radix; ++k) {
    V sr = ar[0], si = ai[0];
    for (int j = 1; j < radix; ++j) {
      int e = int((int64_t(j) * k) % radix);
      V wr = P::set1(root_re[e]), wi = P::set1(root_im[e]);
      sr = P::add(sr, P::sub(P::mul(ar[j], wr), P::mul(ai[j], wi)));
      si = P::add(si, P::add(P::mul(ar[j], wi), P::mul(ai[j], wr)));
    }
    br[k] = sr; bi[k] = si;
  }
  for (int k = 0; k < radix; ++k) { ar[k] = br[k]; ai[k] = bi[k]; }
}

constexpr int kMaxRadix = 64;  // largest radix a plan may use (prime factors above it are refused)

// One Stockham stage: y[u + q*(r*p + k)] = tw^(p k) * DFT_r(x[u + q*(p + j*m)])_k.
// R is the radix as a compile-time constant (so the butterfly lives in registers), or 0 for
// the generic path that reads it from the stage.
template <class O, class T, int R>
void run_stage_r(const Stage<T>& st, const T* xr, const T* xi, T* yr, T* yi) {
  constexpr int kSlots = R > 0 ? R : kMaxRadix;
  const int r = R > 0 ? R : st.radix;
  const int64_t m = st.m, q = st.q;
  for (int64_t p = 0; p < m; ++p) {
    const T* twr = st.tw_re.data() + p * (r - 1);
    const T* twi = st.tw_im.data() + p * (r - 1);
    const bool twiddle = m > 1 && p > 0;
    const T* inr = xr + q * p;
    const T* ini = xi + q * p;
    T* outr = yr + q * r * p;
    T* outi = yi + q * r * p;
    vloop<O>(q, [&](auto ops, int64_t u) {
      using P = decltype(ops);
      using V = typename P::V;
      V ar[kSlots], ai[kSlots];
      for (int j = 0; j < r; ++j) {
        ar[j] = P::load(inr + u + q * m * j);
        ai[j] = P::load(ini + u + q * m * j);
      }
      if constexpr (R == 2) dft2<P>(ar, ai);
      else if constexpr (R == 3) dft3<P>(ar, ai);
      else if constexpr (R == 4) dft4<P>(ar, ai);
      else if constexpr (R == 5) dft5<P>(ar, ai);
      else {
        V br[kSlots], bi[kSlots];
        dft_generic<P>(ar, ai, r, st.root_re.data(), st.root_im.data(), br, bi);
      }
      P::store(outr + u, ar[0]);
      P::store(outi + u, ai[0]);
      for (int k = 1; k < r; ++k) {
        V vr = ar[k], vi = ai[k];
        if (twiddle) {
          V wr = P::set1(twr[k - 1]), wi = P::set1(twi[k - 1]);
          V tr = P::sub(P::mul(vr, wr), P::mul(vi, wi));
          vi = P::add(P::mul(vr, wi), P::mul(vi, wr));
          vr = tr;
        }
        P::store(outr + u + q * k, vr);
        P::store(outi + u + q * k, vi);
      }
    });
  }
}

template <class O, class T>
void run_stage(const Stage<T>& st, const T* xr, const T* xi, T* yr, T* yi) {
  switch (st.radix) {
    case 2: run_stage_r<O, T, 2>(st, xr, xi, yr, yi); break;
    case 3: run_stage_r<O, T, 3>(st, xr, xi, yr, yi); break;
    case 4: run_stage_r<O, T, 4>(st, xr, xi, yr, yi); break;
    case 5: run_stage_r<O, T, 5>(st, xr, xi, yr, yi); break;
    default: run_stage_r<O, T, 0>(st, xr, xi, yr, yi); break;
  }
}

// Stockham over all stages; data starts in (ar, ai), (br, bi) is scratch. Returns which pair
// holds the result (false: a, true: b).
template <class O, class T>
bool run_complex(const ComplexPlan<T>& plan, T* ar, T* ai, T* br, T* bi) {
  bool in_b = false;
  for (const Stage<T>& st : plan.stages) {
    if (!in_b) run_stage<O>(st, ar, ai, br, bi);
    else run_stage<O>(st, br, bi, ar, ai);
    in_b = !in_b;
  }
  return in_b;
}

// The complex FFT of M points held in (ar, ai); (br, bi) scratch. Returns the result's arrays.
template <class O, class T>
std::pair<T*, T*> complex_fft(const RealPlan<T>& P_, T* ar, T* ai, T* br, T* bi) {
  bool in_b = run_complex<O>(P_.rows, ar, ai, br, bi);
  if (P_.n1 == 1) return in_b ? std::make_pair(br, bi) : std::make_pair(ar, ai);
  T* yr = in_b ? br : ar;
  T* yi = in_b ? bi : ai;
  T* zr = in_b ? ar : br;
  T* zi = in_b ? ai : bi;
  const int64_t n1 = P_.n1, n2 = P_.n2, M = P_.half;
  // Twiddle Y[k2][n1] by exp(-2 pi i n1 k2 / M), then transpose to [n1][k2].
  const T* wr = P_.tw4_re.data();
  const T* wi = P_.tw4_im.data();
  vloop<O>(M, [&](auto ops, int64_t i) {
    using P = decltype(ops);
    auto vr = P::load(yr + i), vi = P::load(yi + i), cr = P::load(wr + i), ci = P::load(wi + i);
    P::store(yr + i, P::sub(P::mul(vr, cr), P::mul(vi, ci)));
    P::store(yi + i, P::add(P::mul(vr, ci), P::mul(vi, cr)));
  });
  for (int64_t k2 = 0; k2 < n2; ++k2)
    for (int64_t j = 0; j < n1; ++j) {
      zr[j * n2 + k2] = yr[k2 * n1 + j];
      zi[j * n2 + k2] = yi[k2 * n1 + j];
    }
  bool in_y = run_complex<O>(P_.cols, zr, zi, yr, yi);
  return in_y ? std::make_pair(yr, yi) : std::make_pair(zr, zi);
}

// ---------------------------------------------------------------- real forward frame

template <class O, class T, Output MODE>
void forward_post(const RealPlan<T>& P_, const T* zr, const T* zi, T scale, T eps, T* out) {
  const int64_t M = P_.half;
  const T* wr = P_.rw_re.data();
  const T* wi = P_.rw_im.data();
  // X[k] = E + w^k O, E = (Z[k] + conj Z[M-k]) / 2, O = -i (Z[k] - conj Z[M-k]) / 2, 0 < k < M.
  auto emit = [&](auto ops, int64_t k, auto xr, auto xi) {
    using P = decltype(ops);
    xr = P::mul(xr, P::set1(scale));
    xi = P::mul(xi, P::set1(scale));
    if constexpr (MODE == Output::complex) {
      P::store_int(out + 2 * k, xr, xi);
    } else {
      auto pw = P::add(P::mul(xr, xr), P::mul(xi, xi));
      if constexpr (MODE == Output::power) P::store(out + k, pw);
      else P::store(out + k, P::sqrt(P::add(pw, P::set1(eps))));
    }
  };
  vloop<O>(M - 1, [&](auto ops, int64_t i) {
    using P = decltype(ops);
    const int64_t k = i + 1;
    const T half = T(0.5);
    auto ar = P::load(zr + k), ai = P::load(zi + k);
    auto br = P::rev_load(zr + (M - k - P::W + 1)), bi = P::rev_load(zi + (M - k - P::W + 1));
    auto er = P::mul(P::set1(half), P::add(ar, br));
    auto ei = P::mul(P::set1(half), P::sub(ai, bi));
    auto orr = P::mul(P::set1(half), P::add(ai, bi));
    auto oi = P::mul(P::set1(half), P::sub(br, ar));
    auto cr = P::load(wr + k), ci = P::load(wi + k);
    auto xr = P::add(er, P::sub(P::mul(cr, orr), P::mul(ci, oi)));
    auto xi = P::add(ei, P::add(P::mul(cr, oi), P::mul(ci, orr)));
    emit(ops, k, xr, xi);
  });
  using S = ScalarOps<T>;
  emit(S{}, 0, zr[0] + zi[0], T(0));
  emit(S{}, M, zr[0] - zi[0], T(0));
}

template <class O, class T>
void forward_frame_impl(const RealPlan<T>& P_, const T* x, const T* we, const T* wo,
                        const ForwardOptions& opt, T* out, T* work) {
  const int64_t M = P_.half;
  T* ar = work;
  T* ai = work + M;
  T* br = work + 2 * M;
  T* bi = work + 3 * M;
  if (we) {
    vloop<O>(M, [&](auto ops, int64_t j) {
      using P = decltype(ops);
      typename P::V e, o;
      P::load_deint(x + 2 * j, e, o);
      P::store(ar + j, P::mul(e, P::load(we + j)));
      P::store(ai + j, P::mul(o, P::load(wo + j)));
    });
  } else {
    vloop<O>(M, [&](auto ops, int64_t j) {
      using P = decltype(ops);
      typename P::V e, o;
      P::load_deint(x + 2 * j, e, o);
      P::store(ar + j, e);
      P::store(ai + j, o);
    });
  }
  auto z = complex_fft<O>(P_, ar, ai, br, bi);
  const T scale = T(opt.scale), eps = T(opt.magnitude_eps);
  switch (opt.output) {
    case Output::complex: forward_post<O, T, Output::complex>(P_, z.first, z.second, scale, eps, out); break;
    case Output::power: forward_post<O, T, Output::power>(P_, z.first, z.second, scale, eps, out); break;
    case Output::magnitude:
    case Output::log_magnitude:
      forward_post<O, T, Output::magnitude>(P_, z.first, z.second, scale, eps, out);
      break;
  }
  const int64_t n = P_.n;
  if (opt.output == Output::log_magnitude) {
    const T floor = T(opt.log_floor);
    for (int64_t k = 0; k <= M; ++k) out[k] = std::log(std::max(out[k], floor));
  }
  if (!opt.onesided) {
    // Real input: X[n - k] = conj(X[k]).
    if (opt.output == Output::complex) {
      for (int64_t k = M + 1; k < n; ++k) {
        out[2 * k] = out[2 * (n - k)];
        out[2 * k + 1] = -out[2 * (n - k) + 1];
      }
    } else {
      for (int64_t k = M + 1; k < n; ++k) out[k] = out[n - k];
    }
  }
}

// ---------------------------------------------------------------- real inverse frame

template <class O, class T>
void inverse_frame_impl(const RealPlan<T>& P_, const T* xr, const T* xi, T scale, const T* we,
                        const T* wo, T* out, T* work) {
  const int64_t M = P_.half;
  T* ar = work;
  T* ai = work + M;
  T* br = work + 2 * M;
  T* bi = work + 3 * M;
  const T* wr = P_.rw_re.data();
  const T* wi = P_.rw_im.data();
  // Z[k] = E + i O, E = X[k] + conj X[M-k], O = (X[k] - conj X[M-k]) conj(w^k), 0 <= k < M,
  // stored swapped (re <-> im) so that the forward FFT computes the inverse one.
  const T c = scale * T(0.5) / T(M);
  vloop<O>(M, [&](auto ops, int64_t k) {
    using P = decltype(ops);
    auto ar_ = P::load(xr + k), ai_ = P::load(xi + k);
    auto br_ = P::rev_load(xr + (M - k - P::W + 1)), bi_ = P::rev_load(xi + (M - k - P::W + 1));
    auto er = P::add(ar_, br_), ei = P::sub(ai_, bi_);
    auto dr = P::sub(ar_, br_), di = P::add(ai_, bi_);
    auto cr = P::load(wr + k), ci = P::load(wi + k);
    auto orr = P::add(P::mul(dr, cr), P::mul(di, ci));
    auto oi = P::sub(P::mul(di, cr), P::mul(dr, ci));
    auto cc = P::set1(c);
    P::store(ai + k, P::mul(P::sub(er, oi), cc));  // Re Z -> imaginary slot
    P::store(ar + k, P::mul(P::add(ei, orr), cc));  // Im Z -> real slot
  });
  auto z = complex_fft<O>(P_, ar, ai, br, bi);
  // Swapped back: x[2j] = Im(result), x[2j+1] = Re(result).
  const T* pr = z.first;
  const T* pi = z.second;
  if (we) {
    vloop<O>(M, [&](auto ops, int64_t j) {
      using P = decltype(ops);
      P::store_int(out + 2 * j, P::mul(P::load(pi + j), P::load(we + j)),
                   P::mul(P::load(pr + j), P::load(wo + j)));
    });
  } else {
    vloop<O>(M, [&](auto ops, int64_t j) {
      using P = decltype(ops);
      P::store_int(out + 2 * j, P::load(pi + j), P::load(pr + j));
    });
  }
}

template <class O, class T>
Kernels<T> make_kernels() {
  Kernels<T> k;
  k.forward = &forward_frame_impl<O, T>;
  k.inverse = &inverse_frame_impl<O, T>;
  return k;
}

}  // namespace fft
}  // namespace sonicore
