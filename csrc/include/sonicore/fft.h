// Real FFT of even size n (any factors; 2, 3, 5 are the fast ones), our own code.
//
// Algorithm: the n real samples are read as n/2 complex values z[j] = x[2j] + i x[2j+1]; a
// complex FFT of size M = n/2 runs as a "four-step" split M = N1 * N2 (N2-point Stockham
// FFTs batched over N1 lanes, twiddle, transpose, N1-point FFTs batched over N2), so every
// butterfly loop runs along a contiguous batch axis and vectorises inside ONE frame; a
// final pass turns the half-size spectrum into the n/2 + 1 bins of the real spectrum.
//
// Plans (twiddle tables) are cached per size and shared (thread-safe, immutable). Kernels
// exist for AVX-512, AVX2 and portable C++ and are picked at run time (sonicore::cpu_isa()).
// All paths do the same IEEE operations in the same order (no FMA contraction), so results
// are bitwise identical across ISAs, across frame batching and between batch and streaming.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

namespace sonicore {
namespace fft {

template <class T>
struct RealPlan;  // defined in csrc/cpu/fft_plan.h; immutable once built

// The cached plan for real size n (even, >= 2). Throws ArgumentError for odd n.
template <class T>
std::shared_ptr<const RealPlan<T>> real_plan(int64_t n);

// T elements of scratch one frame needs (forward or inverse).
template <class T>
int64_t work_size(const RealPlan<T>& plan);

// Output of the forward frame kernel.
enum class Output : int { complex = 0, magnitude = 1, power = 2, log_magnitude = 3 };

struct ForwardOptions {
  Output output = Output::complex;
  bool onesided = true;      // n/2 + 1 bins, or all n (the upper half mirrored, conjugated)
  double scale = 1.0;        // multiplies the spectrum (1/sqrt(n) for "normalized")
  double magnitude_eps = 0;  // magnitude = sqrt(re^2 + im^2 + eps)
  double log_floor = 1e-10;  // log_magnitude = ln(max(magnitude, floor))
};

// One frame, forward. x: n real samples. window_even / window_odd: the window's even and odd
// samples (n/2 each; both nullptr for no window). out: bins * 2 (interleaved re, im) for
// Output::complex, else bins reals. work: work_size() elements.
template <class T>
void forward_frame(const RealPlan<T>& plan, const T* x, const T* window_even, const T* window_odd,
                   const ForwardOptions& opt, T* out, T* work);

// One frame, inverse. re / im: n/2 + 1 bins (contiguous). im[0] and im[n/2] must be 0:
// callers holding user data zero them, which is what numpy.fft.irfft's "ignored" means. out: n real samples of scale * irfft(bins),
// multiplied by the window when window_even / window_odd are given (irfft includes 1/n).
template <class T>
void inverse_frame(const RealPlan<T>& plan, const T* re, const T* im, T scale, const T* window_even,
                   const T* window_odd, T* out, T* work);

// Convenience for C++ users: rfft / irfft of `count` contiguous rows (threaded).
// rfft: in (count, n) -> out (count, n/2 + 1, 2). irfft: in (count, n/2 + 1, 2) -> out (count, n).
template <class T>
void rfft(const T* in, int64_t count, int64_t n, T* out);
template <class T>
void irfft(const T* in, int64_t count, int64_t n, T* out);

// The name of the kernel set in use ("avx512", "avx2", "scalar").
const char* kernel_isa();

}  // namespace fft
}  // namespace sonicore
