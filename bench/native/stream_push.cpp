// Streaming STFT from C++ (no Python): median time of one push of a 256-sample hop at n_fft 1024.
// Build and run (docs/stft.md):
//   cmake -S . -B build/native -G Ninja -DSONICORE_PYTHON=OFF -DSONICORE_CUDA=OFF -DSONICORE_NATIVE_TOOLS=ON
//   cmake --build build/native --target stream_push && build/native/stream_push [n_fft] [hop] [pushes]
// Target (issue 2): median <= 5 us per push.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "sonicore/fft.h"
#include "sonicore/stft.h"

int main(int argc, char** argv) {
  const int64_t n_fft = argc > 1 ? std::atoll(argv[1]) : 1024;
  const int64_t hop = argc > 2 ? std::atoll(argv[2]) : 256;
  const int pushes = argc > 3 ? std::atoi(argv[3]) : 20000;

  std::vector<float> window(static_cast<size_t>(n_fft));
  for (int64_t i = 0; i < n_fft; ++i)
    window[static_cast<size_t>(i)] = float(0.5 - 0.5 * std::cos(2.0 * 3.14159265358979323846 * double(i) / double(n_fft)));
  sonicore::stft::StftParams p;
  p.n_fft = n_fft;
  p.hop = hop;
  sonicore::stft::StftStream<float> stream(window.data(), p);

  std::mt19937 rng(1);
  std::normal_distribution<float> noise;
  std::vector<float> signal(static_cast<size_t>(hop * 4096));
  for (auto& v : signal) v = noise(rng);
  std::vector<float> out(static_cast<size_t>(stream.row_size() * (n_fft / hop + 2)));

  // Fill the stream so that every timed push completes exactly one frame.
  for (int64_t i = 0; i < n_fft / hop + 1; ++i) stream.push(signal.data() + i * hop, hop, out.data());

  std::vector<double> ns(static_cast<size_t>(pushes));
  int64_t frames = 0;
  for (int i = 0; i < pushes; ++i) {
    const float* chunk = signal.data() + (i % 4096) * hop;
    auto t0 = std::chrono::steady_clock::now();
    frames += stream.push(chunk, hop, out.data());
    auto t1 = std::chrono::steady_clock::now();
    ns[static_cast<size_t>(i)] = std::chrono::duration<double, std::nano>(t1 - t0).count();
  }
  std::sort(ns.begin(), ns.end());
  std::printf("stream_push: n_fft %lld hop %lld kernels %s: %d pushes, %lld frames, median %.2f us, p10 %.2f us, p99 %.2f us\n",
              (long long)n_fft, (long long)hop, sonicore::fft::kernel_isa(), pushes, (long long)frames,
              ns[ns.size() / 2] / 1e3, ns[ns.size() / 10] / 1e3, ns[ns.size() * 99 / 100] / 1e3);
  return 0;
}
