// C++ checks of the fused anti-aliased Snake (BigVGAN) without Python, meant to run under
// AddressSanitizer + UndefinedBehaviorSanitizer:
//   cmake -S . -B build/asan-native -G Ninja -DSONICORE_PYTHON=OFF -DSONICORE_CUDA=OFF \
//         -DSONICORE_NATIVE_TOOLS=ON -DSONICORE_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug
//   cmake --build build/asan-native --target vocoder_native_test && build/asan-native/vocoder_native_test
// Exit status 0 means every check passed. The reference follows the definition literally in long
// double: replicate-pad by 5, zero-stuffed transposed convolution (stride 2), crop 15, times 2, Snake,
// replicate-pad (5, 6), strided convolution.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "sonicore/common.h"
#include "sonicore/vocoder.h"

#include "native_check.h"

using namespace sonicore;

static std::mt19937_64 rng(7);

static std::vector<long double> reference_row(const float* x, int64_t T, const float* up, const float* down,
                                              long double a, long double ib) {
  const int K = kAASnakeTaps;
  std::vector<long double> xp(T + 10);
  for (int64_t i = 0; i < T + 10; ++i) xp[i] = x[std::min<int64_t>(std::max<int64_t>(i - 5, 0), T - 1)];
  std::vector<long double> y((T + 10 - 1) * 2 + K, 0.0L);
  for (int64_t i = 0; i < T + 10; ++i)
    for (int k = 0; k < K; ++k) y[2 * i + k] += xp[i] * up[k];
  std::vector<long double> s(2 * T);
  for (int64_t m = 0; m < 2 * T; ++m) {
    const long double u = 2.0L * y[m + 15];
    const long double sn = std::sin(a * u);
    s[m] = u + ib * sn * sn;
  }
  std::vector<long double> out(T, 0.0L);
  for (int64_t p = 0; p < T; ++p)
    for (int k = 0; k < K; ++k) out[p] += down[k] * s[std::min<int64_t>(std::max<int64_t>(2 * p + k - 5, 0), 2 * T - 1)];
  return out;
}

static void check_shape(int64_t B, int64_t C, int64_t T) {
  std::normal_distribution<float> nd(0.0f, 2.0f);
  std::uniform_real_distribution<float> ud(0.3f, 3.0f);
  std::vector<float> x(B * C * T), out(B * C * T, NAN), a(C), ib(C), up(kAASnakeTaps), down(kAASnakeTaps);
  for (auto& v : x) v = nd(rng);
  for (int64_t c = 0; c < C; ++c) { a[c] = ud(rng); ib[c] = 1.0f / ud(rng); }
  for (int k = 0; k < kAASnakeTaps; ++k) { up[k] = 0.02f * ud(rng); down[k] = 0.02f * ud(rng); }
  aa_snake_f32({x.data(), out.data(), B * C, T, C, a.data(), ib.data(), up.data(), down.data()});
  double worst = 0.0;
  for (int64_t r = 0; r < B * C; ++r) {
    const auto ref = reference_row(x.data() + r * T, T, up.data(), down.data(), a[r % C], ib[r % C]);
    for (int64_t p = 0; p < T; ++p) {
      const double err = std::fabs(static_cast<double>(out[r * T + p] - ref[p])) / (1.0 + std::fabs(static_cast<double>(ref[p])));
      worst = std::max(worst, err);
    }
  }
  CHECK(worst < 2e-5, "B=%ld C=%ld T=%ld: worst relative error %.3g", (long)B, (long)C, (long)T, worst);
}

int main() {
  // 1, 2: shorter than the filter halo; 4096 / 4097 / 4098 / 6146: output blocks of 2048 with 0, 1, 2
  // samples past a block edge (the right-edge replicate falls inside a non-final block at 4098, 6146).
  const int64_t shapes[][3] = {{1, 1, 1}, {1, 1, 2}, {2, 3, 3}, {1, 2, 97}, {1, 2, 4095}, {1, 2, 4096},
                               {1, 1, 4097}, {1, 3, 4098}, {1, 1, 6146}, {3, 2, 9001}};
  for (const auto& s : shapes) check_shape(s[0], s[1], s[2]);

  float v[4] = {0, 0, 0, 0}, f[kAASnakeTaps] = {};
  bool threw = false;
  try { aa_snake_f32({v, v + 2, 2, 1, 1, nullptr, v, f, f}); } catch (const ArgumentError&) { threw = true; }
  CHECK(threw, "a null alpha must be rejected");
  threw = false;
  try { aa_snake_f32({v, v + 2, 3, 1, 2, v, v, f, f}); } catch (const ArgumentError&) { threw = true; }
  CHECK(threw, "rows not a multiple of the channel count must be rejected");
  threw = false;
  try { aa_snake_f32({v, v + 2, 1, 0, 1, v, v, f, f}); } catch (const ArgumentError&) { threw = true; }
  CHECK(threw, "an empty signal must be rejected");

  std::printf("%s (%d failures)\n", failures ? "FAILED" : "all checks passed", failures);
  return failures ? 1 : 0;
}
