// Embedding sonicore in a C++ application, no Python: stream a signal hop by hop through
// StftStream -> (your spectral processing) -> IstftStream and check the reconstruction.
//
// Build against an installed wheel (headers and the static core ship inside the package):
//   D=$(python -c "import sonicore, os; print(os.path.dirname(sonicore.__file__))")
//   g++ -O2 -std=c++17 examples/cpp/stream_roundtrip.cpp -I$D/include $D/lib/libsonicore_core.a -lpthread
// or in this repository with -DSONICORE_NATIVE_TOOLS=ON (target stream_roundtrip).
#include <cmath>
#include <cstdio>
#include <vector>

#include "sonicore/stft.h"

int main() {
  using namespace sonicore::stft;
  const int64_t n_fft = 1024, hop = 256, sr = 48000, samples = 3 * sr;
  const double pi = 3.14159265358979323846;
  std::vector<float> window(n_fft), signal(samples);
  for (int64_t i = 0; i < n_fft; ++i) window[i] = float(0.5 - 0.5 * std::cos(2 * pi * i / n_fft));  // periodic Hann
  for (int64_t i = 0; i < samples; ++i) {  // a chirp from 100 Hz to 8 kHz
    double t = double(i) / sr;
    signal[i] = float(0.5 * std::sin(2 * pi * (100 * t + (8000 - 100) * t * t / 6.0)));
  }

  StftParams sp;
  sp.n_fft = n_fft;
  sp.hop = hop;
  IstftParams ip;
  ip.n_fft = n_fft;
  ip.hop = hop;
  StftStream<float> analysis(window.data(), sp);
  IstftStream<float> synthesis(window.data(), ip);

  const int64_t bins = analysis.num_bins(), row = analysis.row_size();
  std::vector<float> frames(row * 8), out_chunk(hop * 8 + n_fft), output;
  for (int64_t pos = 0; pos < samples; pos += hop) {  // one hop at a time, as audio callbacks do
    int64_t count = std::min<int64_t>(hop, samples - pos);
    if (analysis.frames_ready(count) * row > int64_t(frames.size())) frames.resize(analysis.frames_ready(count) * row);
    int64_t k = analysis.push(signal.data() + pos, count, frames.data());
    // ... spectral processing on `frames` (k rows of `bins` complex values) would go here ...
    out_chunk.resize(std::max<int64_t>(int64_t(out_chunk.size()), synthesis.samples_ready(k)));
    int64_t n = synthesis.push(frames.data(), k, 2, row, out_chunk.data());
    output.insert(output.end(), out_chunk.begin(), out_chunk.begin() + n);
  }
  frames.resize(std::max<int64_t>(int64_t(frames.size()), analysis.flush_frames() * row));
  int64_t k = analysis.flush(frames.data());
  out_chunk.resize(std::max<int64_t>(int64_t(out_chunk.size()), synthesis.samples_ready(k)));
  int64_t n = synthesis.push(frames.data(), k, 2, row, out_chunk.data());
  output.insert(output.end(), out_chunk.begin(), out_chunk.begin() + n);
  out_chunk.resize(std::max<int64_t>(int64_t(out_chunk.size()), synthesis.flush_samples(samples)));
  n = synthesis.flush(samples, out_chunk.data());
  output.insert(output.end(), out_chunk.begin(), out_chunk.begin() + n);

  double err = 0, ref = 0;
  for (int64_t i = 0; i < samples && i < int64_t(output.size()); ++i) {
    err += double(output[i] - signal[i]) * (output[i] - signal[i]);
    ref += double(signal[i]) * signal[i];
  }
  std::printf("streamed %lld samples in hops of %lld (%lld bins per frame): output %zu samples, "
              "relative error %.2e\n", (long long)samples, (long long)hop, (long long)bins, output.size(),
              std::sqrt(err / ref));
  return (output.size() == size_t(samples) && std::sqrt(err / ref) < 1e-5) ? 0 : 1;
}
