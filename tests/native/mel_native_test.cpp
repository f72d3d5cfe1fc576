// C++ checks of the fused mel projection without Python, meant to run under AddressSanitizer +
// UndefinedBehaviorSanitizer (docs/mel.md):
//   cmake -S . -B build/asan-native -G Ninja -DSONICORE_PYTHON=OFF -DSONICORE_CUDA=OFF \
//         -DSONICORE_NATIVE_TOOLS=ON -DSONICORE_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug
//   cmake --build build/asan-native --target mel_native_test && build/asan-native/mel_native_test
// Exit status 0 means every check passed. The reference is a naive dense projection in long
// double with libm's log, written here.
#include <cmath>
#include <cstdio>
#include <limits>
#include <random>
#include <vector>

#include "sonicore/common.h"
#include "sonicore/mel.h"

#include "native_check.h"

using namespace sonicore;

static std::mt19937_64 rng(2024);

struct Bank {
  std::vector<double> dense;  // (M, F)
  std::vector<int64_t> offsets;
  std::vector<int32_t> start;
};

// Random contiguous runs of positive weights (some rows empty), like mel triangles.
static Bank random_bank(int64_t M, int64_t F) {
  Bank b;
  b.dense.assign(size_t(M * F), 0.0);
  b.offsets.push_back(0);
  std::uniform_int_distribution<int64_t> pos(0, F - 1);
  std::uniform_real_distribution<double> w(0.01, 1.0);
  for (int64_t m = 0; m < M; ++m) {
    int64_t s = pos(rng), len = (m % 7 == 3) ? 0 : 1 + pos(rng) % std::min<int64_t>(9, F - s);
    for (int64_t k = 0; k < len; ++k) b.dense[size_t(m * F + s + k)] = w(rng);
    b.start.push_back(int32_t(len ? s : 0));
    b.offsets.push_back(b.offsets.back() + len);
  }
  return b;
}

// The bank's nonzero weights, band after band, in the kernel's packed layout.
template <typename T>
static std::vector<T> pack_bank(const Bank& bank, int64_t M, int64_t F) {
  std::vector<T> packed;
  for (int64_t m = 0; m < M; ++m)
    for (int64_t i = bank.offsets[m]; i < bank.offsets[m + 1]; ++i)
      packed.push_back(T(bank.dense[size_t(m * F + bank.start[m] + (i - bank.offsets[m]))]));
  return packed;
}

template <typename T>
static void check_layouts(int64_t B, int64_t F, int64_t Tn, int64_t M, MelLog log, double floor) {
  Bank bank = random_bank(M, F);
  const std::vector<T> packed = pack_bank<T>(bank, M, F);
  std::uniform_real_distribution<double> u(0.0, 4.0);
  std::vector<double> spec(size_t(B * F * Tn));
  for (auto& v : spec) v = u(rng);
  // Three layouts of the same (B, F, T) values: frames unit-stride, bins unit-stride, strided.
  for (int layout = 0; layout < 3; ++layout) {
    const int64_t pad = layout == 2 ? 2 : 1;
    std::vector<T> buf(size_t(B * F * Tn * pad * pad));
    int64_t sb, sf, st;
    if (layout == 0) { sb = F * Tn; sf = Tn; st = 1; }
    else if (layout == 1) { sb = F * Tn; sf = 1; st = F; }
    else { sb = F * Tn * 4; sf = Tn * 2 * 2; st = 2; }
    for (int64_t b = 0; b < B; ++b)
      for (int64_t f = 0; f < F; ++f)
        for (int64_t t = 0; t < Tn; ++t) buf[size_t(b * sb + f * sf + t * st)] = T(spec[size_t((b * F + f) * Tn + t)]);
    std::vector<T> out(size_t(B * M * Tn), T(-7));
    mel_project<T>(buf.data(), B, F, Tn, sb, sf, st, packed.data(), bank.offsets.data(), bank.start.data(), M,
                   out.data(), log, T(floor));
    double worst = 0;
    for (int64_t b = 0; b < B; ++b)
      for (int64_t m = 0; m < M; ++m)
        for (int64_t t = 0; t < Tn; ++t) {
          long double acc = 0;
          for (int64_t f = 0; f < F; ++f) acc += (long double)bank.dense[size_t(m * F + f)] * (long double)T(spec[size_t((b * F + f) * Tn + t)]);
          if (!(log == MelLog::none && floor <= 0)) acc = acc < floor ? floor : acc;
          if (log == MelLog::ln) acc = std::log(acc);
          if (log == MelLog::log10) acc = std::log10(acc);
          const double got = double(out[size_t((b * M + m) * Tn + t)]);
          worst = std::max(worst, std::fabs(got - double(acc)) / std::max(1.0, std::fabs(double(acc))));
        }
    const double tol = sizeof(T) == 4 ? 2e-6 : 1e-13;
    CHECK(worst <= tol, "layout %d log %d %s: error %g", layout, int(log), sizeof(T) == 4 ? "f32" : "f64", worst);
  }
}

template <typename T>
static void check_special_values() {
  // One weight of 1 per mel: out = log(max(spec, floor)) exactly as libm for specials.
  const T vals[] = {T(0), std::numeric_limits<T>::infinity(), std::numeric_limits<T>::quiet_NaN(),
                    std::numeric_limits<T>::denorm_min(), T(1), T(-1)};
  const int64_t n = 6;
  std::vector<T> spec(vals, vals + n);
  std::vector<T> w = {T(1)};
  std::vector<int64_t> off = {0, 1};
  std::vector<int32_t> start = {0};
  std::vector<T> out(n);
  mel_project<T>(spec.data(), 1, 1, n, n, n, 1, w.data(), off.data(), start.data(), 1, out.data(), MelLog::ln, T(0));
  CHECK(std::isinf(out[0]) && out[0] < 0, "log(0) must be -inf");
  CHECK(std::isinf(out[1]) && out[1] > 0, "log(inf) must be inf");
  CHECK(std::isnan(out[2]), "log(NaN) must be NaN");
  CHECK(out[3] == std::log(std::numeric_limits<T>::denorm_min()), "log(subnormal) must equal libm");
  CHECK(out[4] == T(0), "log(1) must be 0");
  CHECK(std::isinf(out[5]) && out[5] < 0, "a negative value is clamped to the floor 0: log gives -inf, got %g",
        double(out[5]));
}

static void check_errors() {
  std::vector<float> spec(10, 1.f), w = {1.f, 1.f}, out(5);
  std::vector<int64_t> off = {0, 2};
  std::vector<int32_t> start = {1};  // the run [1, 3) reaches past F = 2
  bool thrown = false;
  try {
    mel_project<float>(spec.data(), 1, 2, 5, 10, 5, 1, w.data(), off.data(), start.data(), 1, out.data(), MelLog::none, 0.f);
  } catch (const ArgumentError&) {
    thrown = true;
  }
  CHECK(thrown, "a row reaching outside the bins must throw ArgumentError");
}

static void check_clamp_range() {
  std::vector<double> x = {-20, -3, -1, 0.5, std::nan(""), -9, 1, -30};
  clamp_to_max_range<double>(x.data(), 2, 4, 8.0, 4.0, 0.25);
  // item 0 max 0.5 -> floor -7.5; item 1 max 1 (NaN ignored) -> floor -7
  CHECK(x[0] == (-7.5 + 4) * 0.25 && x[1] == (-3 + 4) * 0.25 && x[3] == (0.5 + 4) * 0.25, "item 0");
  CHECK(std::isnan(x[4]) && x[5] == (-7 + 4) * 0.25 && x[6] == (1 + 4) * 0.25 && x[7] == (-7 + 4) * 0.25, "item 1");
}

// log_mel_spectrogram against a naive long-double DFT of the padded, windowed frames.
template <typename T>
static void check_fused(int64_t n, int64_t hop, int64_t S, int64_t zero_pad, bool center, bool reflect,
                        bool magnitude, MelLog log, bool range) {
  const int64_t B = 2, F = n / 2 + 1, M = 23, L = S + zero_pad, pad = center ? n / 2 : 0;
  const int64_t total = 1 + (L + 2 * pad - n) / hop, Tn = total - 1 > 0 ? total - 1 : total;
  Bank bank = random_bank(M, F);
  const std::vector<T> packed = pack_bank<T>(bank, M, F);
  std::normal_distribution<double> g(0.0, 0.3);
  std::vector<T> x(static_cast<size_t>(B * (S + 3))), window(static_cast<size_t>(n));
  for (auto& v : x) v = T(g(rng));
  for (int64_t i = 0; i < n; ++i) window[size_t(i)] = T(0.5 - 0.5 * std::cos(2 * M_PI * double(i) / double(n)));
  MelFraming f;
  f.n_fft = n, f.hop = hop, f.center = center, f.reflect = reflect, f.zero_pad = zero_pad, f.n_frames = Tn;
  f.magnitude = magnitude;
  MelDynamicRange dr;
  dr.enabled = range;
  const double floor = log == MelLog::none ? 0.0 : 1e-4;
  std::vector<T> out(size_t(B * M * Tn));
  log_mel_spectrogram<T>(x.data(), B, S, S + 3, window.data(), f, packed.data(), bank.offsets.data(),
                         bank.start.data(), M, out.data(), log, T(floor), dr);
  double worst = 0;
  for (int64_t b = 0; b < B; ++b) {
    std::vector<long double> ref(static_cast<size_t>(M * Tn));
    for (int64_t t = 0; t < Tn; ++t) {
      std::vector<long double> frame(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) {
        int64_t j = t * hop + i - pad;
        bool inside = true;
        if (j < 0) inside = reflect, j = -j;
        else if (j >= L) inside = reflect, j = 2 * (L - 1) - j;
        frame[size_t(i)] = inside && j < S ? (long double)x[size_t(b * (S + 3) + j)] * window[size_t(i)] : 0.0L;
      }
      for (int64_t m = 0; m < M; ++m) {
        long double acc = 0;
        for (int64_t k = 0; k < F; ++k) {
          const double w = bank.dense[size_t(m * F + k)];
          if (w == 0) continue;
          long double re = 0, im = 0;
          for (int64_t i = 0; i < n; ++i) {
            const long double a = -2.0L * (long double)M_PI * (long double)((i * k) % n) / (long double)n;
            re += frame[size_t(i)] * std::cos(a), im += frame[size_t(i)] * std::sin(a);
          }
          const long double p = re * re + im * im;
          acc += w * (magnitude ? std::sqrt(p) : p);
        }
        if (!(log == MelLog::none && floor <= 0)) acc = acc < floor ? floor : acc;
        if (log == MelLog::ln) acc = std::log(acc);
        if (log == MelLog::log10) acc = std::log10(acc);
        ref[size_t(m * Tn + t)] = acc;
      }
    }
    if (range) {
      long double top = -INFINITY;
      for (auto v : ref) top = v > top ? v : top;
      for (auto& v : ref) v = ((v < top - 8 ? top - 8 : v) + 4) * 0.25L;
    }
    for (int64_t i = 0; i < M * Tn; ++i)
      worst = std::max(worst, double(std::fabs(out[size_t(b * M * Tn + i)] - ref[size_t(i)]) /
                                     std::max(1.0L, std::fabs(ref[size_t(i)]))));
  }
  const double tol = sizeof(T) == 4 ? 2e-5 : 1e-11;
  CHECK(worst <= tol, "fused n_fft %lld hop %lld S %lld %s: error %g", (long long)n, (long long)hop, (long long)S,
        sizeof(T) == 4 ? "f32" : "f64", worst);
}

int main() {
  for (MelLog log : {MelLog::none, MelLog::ln, MelLog::log10}) {
    const double floor = log == MelLog::none ? 0.0 : 1e-3;
    check_layouts<float>(2, 201, 131, 80, log, floor);
    check_layouts<double>(1, 97, 67, 13, log, floor);
    check_layouts<float>(3, 5, 1, 7, log, floor);  // a single frame
  }
  check_special_values<float>();
  check_special_values<double>();
  check_errors();
  check_clamp_range();
  // Frames-in-lanes FFT (n / 2 = 200, 48, 180) and the per-frame fallback (n / 2 = 17).
  check_fused<float>(400, 160, 3001, 157, true, true, false, MelLog::log10, true);
  check_fused<double>(400, 160, 2111, 0, true, true, false, MelLog::log10, true);
  check_fused<float>(96, 37, 1000, 0, true, false, true, MelLog::ln, false);
  check_fused<double>(360, 100, 997, 3, false, true, true, MelLog::none, false);
  check_fused<float>(34, 9, 301, 0, true, true, false, MelLog::ln, false);
  if (failures) std::printf("%d check(s) failed\n", failures);
  else std::printf("mel_native_test: all checks passed\n");
  return failures ? 1 : 0;
}
