// Private to the mel kernels: a real FFT that transforms several frames at once, one frame per
// vector lane, and leaves each frame's power spectrum as a column of a bins-by-frames tile.
//
// Why: the mel projection wants frames as the unit-stride axis, and a short FFT (Whisper's 400
// points) vectorises poorly inside one frame. With frames in lanes every butterfly is a full
// vector operation and the spectrum comes out already transposed, so nothing is scattered.
// Each lane still holds exactly one frame, so a frame's rounding depends on that frame alone
// (pairing two real frames in one complex FFT would leak a loud frame's error into a quiet one).
//
// Algorithm: the n real samples x (windowed) are read as M = n/2 complex values
// z[j] = x[2j] + i x[2j+1]; a Stockham (self-sorting) decimation-in-frequency FFT of size M
// with radix-4/2/3/5 stages transforms them; X[k] = E[k] + exp(-2 pi i k / n) O[k] with
// E[k] = (Z[k] + conj Z[M-k]) / 2 and O[k] = (Z[k] - conj Z[M-k]) / 2i gives the n/2 + 1 bins.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

namespace sonicore {
namespace mel_lanes {

// Frames per pass: one per lane of a 32-byte vector.
template <class T>
constexpr int64_t lanes() { return 32 / int64_t(sizeof(T)); }

template <class T>
struct Plan {
  int64_t n = 0, half = 0;                   // real size n, complex size M = n / 2
  std::vector<int> radix;                    // stage radices, product M
  std::vector<std::vector<T>> tw_re, tw_im;  // stage s: [p * (r - 1) + k - 1] = exp(-2 pi i p k / len_s)
  std::vector<T> post_re, post_im;           // exp(-2 pi i k / n), k <= M
};

// The cached plan for real size n, or nullptr when n is odd, below 4, or n / 2 has a prime
// factor above 5 (callers then use the per-frame FFT).
template <class T>
std::shared_ptr<const Plan<T>> plan_for(int64_t n);

// Scratch elements one power_pass needs.
template <class T>
int64_t work_size(const Plan<T>& plan);

// Spectra of `count` <= lanes<T>() frames: frames[j] holds n samples, multiplied by window.
// Bin k < n_bins of frame j goes to out[k * ld + j] as |X|^2 (or |X| when magnitude); columns
// count..lanes-1 receive values of no meaning.
template <class T>
void power_pass(const Plan<T>& plan, const T* const* frames, int64_t count, const T* window, bool magnitude,
                int64_t n_bins, T* out, int64_t ld, T* work);

}  // namespace mel_lanes
}  // namespace sonicore
