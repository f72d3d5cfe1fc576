// C++ checks of the FFT / STFT core without Python, meant to run under AddressSanitizer +
// UndefinedBehaviorSanitizer (see docs/stft.md):
//   cmake -S . -B build/asan -G Ninja -DSONICORE_PYTHON=OFF -DSONICORE_CUDA=OFF \
//         -DSONICORE_NATIVE_TOOLS=ON -DSONICORE_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug
//   cmake --build build/asan --target stft_native_test && build/asan/stft_native_test
// Exit status 0 means every check passed.
#include <cmath>
#include <cstring>
#include <complex>
#include <cstdio>
#include <random>
#include <vector>

#include "sonicore/common.h"
#include "sonicore/fft.h"
#include "sonicore/stft.h"

#include "native_check.h"

using namespace sonicore;

static std::mt19937_64 rng(12345);

template <class T>
std::vector<T> randn(int64_t n) {
  std::normal_distribution<double> d;
  std::vector<T> v(static_cast<size_t>(n));
  for (auto& x : v) x = T(d(rng));
  return v;
}

// The real FFT against a plain O(n^2) DFT in long double.
static void test_rfft() {
  for (int64_t n : {2, 6, 10, 64, 128, 200, 400, 480, 960, 1024, 1536, 1920, 2 * 7 * 11, 2 * 61}) {
    auto x = randn<double>(n);
    std::vector<double> out(static_cast<size_t>(n + 2));
    fft::rfft<double>(x.data(), 1, n, out.data());
    double maxerr = 0, maxref = 0;
    for (int64_t k = 0; k <= n / 2; ++k) {
      std::complex<long double> acc = 0;
      for (int64_t j = 0; j < n; ++j) {
        long double a = -2.0L * 3.14159265358979323846L * (long double)((j * k) % n) / (long double)n;
        acc += (long double)x[size_t(j)] * std::complex<long double>(std::cos(a), std::sin(a));
      }
      maxerr = std::max(maxerr, (double)std::abs(std::complex<long double>(out[size_t(2 * k)], out[size_t(2 * k + 1)]) - acc));
      maxref = std::max(maxref, (double)std::abs(acc));
    }
    CHECK(maxerr <= 1e-13 * maxref, "rfft n=%lld rel err %g", (long long)n, maxerr / maxref);
    std::vector<double> back(static_cast<size_t>(n));
    fft::irfft<double>(out.data(), 1, n, back.data());
    double e2 = 0;
    for (int64_t j = 0; j < n; ++j) e2 = std::max(e2, std::abs(back[size_t(j)] - x[size_t(j)]));
    CHECK(e2 <= 1e-13, "irfft n=%lld err %g", (long long)n, e2);
  }
}

template <class T>
static void test_stream(int64_t n, int64_t hop, int64_t samples, bool center, stft::PadMode pad,
                        fft::Output output) {
  auto x = randn<T>(samples);
  std::vector<T> w(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) w[size_t(i)] = T(0.5 - 0.5 * std::cos(2 * 3.141592653589793 * i / n));
  stft::StftParams p;
  p.n_fft = n;
  p.hop = hop;
  p.center = center;
  p.pad_mode = pad;
  p.output = output;
  const int64_t frames = stft::num_frames(samples, p), row = stft::row_size(p);
  std::vector<T> batch(static_cast<size_t>(frames * row));
  stft::stft<T>(x.data(), 1, samples, w.data(), p, batch.data());

  stft::StftStream<T> s(w.data(), p);
  std::vector<T> streamed;
  std::uniform_int_distribution<int64_t> chunk(0, 3 * hop);
  for (int64_t i = 0; i < samples;) {
    int64_t c = std::min(chunk(rng), samples - i);
    std::vector<T> out(static_cast<size_t>(s.frames_ready(c) * row));
    int64_t k = s.push(x.data() + i, c, out.data());
    CHECK(k * row == int64_t(out.size()), "push returned %lld frames, expected %lld", (long long)k,
          (long long)(out.size() / row));
    streamed.insert(streamed.end(), out.begin(), out.end());
    i += c;
    if (i == samples / 2) {
      stft::StftStream<T> twin = s;  // a copy continues independently
      (void)twin;
    }
  }
  std::vector<T> tail(static_cast<size_t>(s.flush_frames() * row));
  s.flush(tail.data());
  streamed.insert(streamed.end(), tail.begin(), tail.end());
  CHECK(streamed.size() == batch.size(), "stream gave %zu values, batch %zu", streamed.size(), batch.size());
  bool same = streamed.size() == batch.size();
  for (size_t i = 0; same && i < batch.size(); ++i) same = std::memcmp(&streamed[i], &batch[i], sizeof(T)) == 0;
  CHECK(same, "stream != batch bitwise (n=%lld hop=%lld samples=%lld)", (long long)n, (long long)hop, (long long)samples);

  if (output != fft::Output::complex || !p.onesided) return;
  // Inverse: batch vs streaming, and the round trip.
  stft::IstftParams ip;
  ip.n_fft = n;
  ip.hop = hop;
  ip.center = center;
  const int64_t bins = n / 2 + 1;
  int64_t length = stft::istft_length(frames, ip);
  if (length <= 0) return;
  std::vector<T> y(static_cast<size_t>(length));
  try {
    // batch layout (frames, bins, 2): bin stride 2, frame stride 2 * bins
    stft::istft<T>(batch.data(), 1, bins, frames, 0, 2, 2 * bins, w.data(), ip, y.data(), length);
  } catch (const ArgumentError&) {
    return;  // a window that fails NOLA at the edges (center=False with Hann): covered elsewhere
  }
  stft::IstftStream<T> is(w.data(), ip);
  std::vector<T> ys;
  std::uniform_int_distribution<int64_t> fchunk(0, 3);
  for (int64_t t = 0; t < frames;) {
    int64_t c = std::min(fchunk(rng), frames - t);
    std::vector<T> out(static_cast<size_t>(is.samples_ready(c)));
    int64_t got = is.push(batch.data() + t * 2 * bins, c, 2, 2 * bins, out.data());
    CHECK(got == int64_t(out.size()), "istft push returned %lld samples, expected %zu", (long long)got, out.size());
    ys.insert(ys.end(), out.begin(), out.end());
    t += c;
  }
  std::vector<T> rest(static_cast<size_t>(is.flush_samples(-1)));
  is.flush(-1, rest.data());
  ys.insert(ys.end(), rest.begin(), rest.end());
  CHECK(ys.size() == y.size(), "istft stream gave %zu samples, batch %zu", ys.size(), y.size());
  same = ys.size() == y.size();
  for (size_t i = 0; same && i < y.size(); ++i) same = std::memcmp(&ys[i], &y[i], sizeof(T)) == 0;
  CHECK(same, "istft stream != batch bitwise (n=%lld hop=%lld)", (long long)n, (long long)hop);
  double err = 0;
  const int64_t off = center ? 0 : 0;
  for (int64_t i = 0; i < std::min<int64_t>(length, samples); ++i) err = std::max(err, double(std::abs(y[size_t(i)] - x[size_t(i + off)])));
  CHECK(err < (sizeof(T) == 4 ? 1e-4 : 1e-10), "round trip err %g", err);
}

static void test_bad_input() {
  float w[8] = {1, 1, 1, 1, 1, 1, 1, 1};
  stft::StftParams p;
  p.n_fft = 7;
  p.hop = 2;
  bool threw = false;
  try { stft::check_params(p); } catch (const ArgumentError&) { threw = true; }
  CHECK(threw, "odd n_fft accepted");
  p.n_fft = 8;
  p.hop = 0;
  threw = false;
  try { stft::check_params(p); } catch (const ArgumentError&) { threw = true; }
  CHECK(threw, "hop 0 accepted");
  p.hop = 2;
  threw = false;
  try { stft::num_frames(4, p); } catch (const ArgumentError&) { threw = true; }
  CHECK(threw, "reflect padding longer than the signal accepted");
  p.center = false;
  threw = false;
  try { stft::num_frames(7, p); } catch (const ArgumentError&) { threw = true; }
  CHECK(threw, "signal shorter than n_fft accepted with center=False");
  // NOLA: a window of zeros.
  float z[8] = {0};
  stft::IstftParams ip;
  ip.n_fft = 8;
  ip.hop = 2;
  threw = false;
  try { stft::IstftStream<float> s(z, ip); } catch (const ArgumentError&) { threw = true; }
  CHECK(threw, "zero window accepted for the inverse");
  // Too-short stream flush.
  p.center = true;
  stft::StftStream<float> s(w, p);
  float x[3] = {1, 2, 3};
  float out[64];
  s.push(x, 3, out);
  threw = false;
  try { s.flush_frames(); } catch (const ArgumentError&) { threw = true; }
  CHECK(threw, "flush of a too-short reflect-padded stream accepted");
  // NaN propagates, never crashes.
  std::vector<float> sig(64, 1.0f);
  sig[30] = std::nanf("");
  p.n_fft = 8;
  p.hop = 4;
  std::vector<float> spec(static_cast<size_t>(stft::num_frames(64, p) * stft::row_size(p)));
  stft::stft<float>(sig.data(), 1, 64, w, p, spec.data());
  bool any_nan = false;
  for (float v : spec) any_nan |= std::isnan(v);
  CHECK(any_nan, "NaN did not propagate");
}

int main() {
  test_rfft();
  using O = fft::Output;
  using P = stft::PadMode;
  for (int rep = 0; rep < 3; ++rep) {
    test_stream<float>(1024, 256, 20011, true, P::reflect, O::complex);
    test_stream<double>(1024, 256, 5003, true, P::reflect, O::complex);
    test_stream<float>(400, 160, 3001, true, P::constant, O::power);
    test_stream<float>(960, 240, 4801, true, P::reflect, O::log_magnitude);
    test_stream<double>(64, 7, 97, false, P::reflect, O::magnitude);
    test_stream<float>(256, 100, 1000, true, P::reflect, O::complex);
    test_stream<float>(16, 16, 33, true, P::reflect, O::complex);
    test_stream<float>(2 * 67 - 2, 33, 700, true, P::reflect, O::complex);
  }
  test_bad_input();
  if (failures) {
    std::printf("%d check(s) failed\n", failures);
    return 1;
  }
  std::printf("all native STFT checks passed\n");
  return 0;
}
