// Fused STFT / iSTFT memory passes (see sonicore/stft_cuda.h for the contract).
#include <cuda_runtime.h>

#include <algorithm>
#include <string>

#include "sonicore/stft_cuda.h"

namespace sonicore {
namespace cuda {
namespace {

void use_device(int device, const char* what) {
  cudaError_t e = cudaSetDevice(device);
  if (e != cudaSuccess)
    throw ArgumentError(std::string(what) + ": cannot use CUDA device " + std::to_string(device) + ": " +
                        cudaGetErrorString(e));
}

void check_launch(const char* what) {
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) throw ArgumentError(std::string(what) + ": CUDA launch failed: " + cudaGetErrorString(e));
}

// Index of padded position p (may be outside [0, n)) in the unpadded signal, or -1 for a zero.
__device__ __forceinline__ int64_t source_index(int64_t p, int64_t n, PadMode mode) {
  if (p >= 0 && p < n) return p;
  switch (mode) {
    case PadMode::reflect:  // mirror without repeating the edge sample; pad < n guarantees one bounce
      return p < 0 ? -p : 2 * (n - 1) - p;
    case PadMode::replicate:
      return p < 0 ? 0 : n - 1;
    case PadMode::circular: {
      int64_t r = p % n;
      return r < 0 ? r + n : r;
    }
    default:
      return -1;
  }
}

// One block per frame (blockIdx.x = b * n_frames + t, no 65535 limit on x); its threads walk
// the frame's samples, so loads of x (contiguous within a frame) and stores are coalesced,
// and the integer divisions happen once per thread rather than once per sample.
template <typename T>
__global__ void frame_kernel(const T* __restrict__ x, int64_t n_samples, int64_t x_bs,
                             const T* __restrict__ window, T scale, T* __restrict__ frames,
                             int64_t n_frames, int64_t n_fft, int64_t hop, int64_t pad, PadMode mode) {
  const int64_t row = blockIdx.x;
  const int64_t b = row / n_frames, t = row - b * n_frames;
  const T* xb = x + b * x_bs;
  T* out = frames + row * n_fft;
  const int64_t start = t * hop - pad;
  if (start >= 0 && start + n_fft <= n_samples) {  // interior frame: no padding logic
    for (int64_t j = threadIdx.x; j < n_fft; j += blockDim.x) out[j] = xb[start + j] * window[j] * scale;
    return;
  }
  for (int64_t j = threadIdx.x; j < n_fft; j += blockDim.x) {
    const int64_t src = source_index(start + j, n_samples, mode);
    const T v = src >= 0 ? xb[src] : T(0);
    out[j] = v * window[j] * scale;
  }
}

template <typename T> struct Vec2;
template <> struct Vec2<float> { using type = float2; };
template <> struct Vec2<double> { using type = double2; };

template <typename T>
__device__ __forceinline__ T apply_kind(T re, T im, SpectrumKind kind, T eps, T floor) {
  const T p = re * re + im * im;
  if (kind == SpectrumKind::power) return p;
  const T mag = sqrt(p + eps);
  if (kind == SpectrumKind::magnitude) return mag;
  return log(mag < floor ? floor : mag);
}

// 32x32 tile through shared memory: read (frames, bins) rows coalesced, write (bins, frames)
// rows coalesced. The +1 column avoids shared-memory bank conflicts on the transposed read.
constexpr int kTile = 32;
constexpr int kRows = 8;

template <typename T>
__global__ void spectrum_kernel(const typename Vec2<T>::type* __restrict__ spec, int64_t n_frames,
                                int64_t n_bins, T* __restrict__ out, SpectrumKind kind, T eps, T floor) {
  __shared__ T tile[kTile][kTile + 1];
  const int64_t b = blockIdx.z;
  const int64_t t0 = int64_t(blockIdx.x) * kTile, f0 = int64_t(blockIdx.y) * kTile;
  const auto* sb = spec + b * n_frames * n_bins;
  for (int r = threadIdx.y; r < kTile; r += kRows) {
    const int64_t t = t0 + r, f = f0 + threadIdx.x;
    if (t < n_frames && f < n_bins) {
      const auto z = sb[t * n_bins + f];
      tile[r][threadIdx.x] = apply_kind<T>(z.x, z.y, kind, eps, floor);
    }
  }
  __syncthreads();
  T* ob = out + b * n_bins * n_frames;
  for (int r = threadIdx.y; r < kTile; r += kRows) {
    const int64_t f = f0 + r, t = t0 + threadIdx.x;
    if (t < n_frames && f < n_bins) ob[f * n_frames + t] = tile[threadIdx.x][r];
  }
}

// One thread per output sample: gathers the (at most ceil(n_fft / hop)) frames covering it.
template <typename T>
__global__ void overlap_add_kernel(const T* __restrict__ frames, const T* __restrict__ window,
                                   int64_t n_frames, int64_t n_fft, int64_t hop, int64_t start,
                                   int64_t length, T scale, T* __restrict__ out, int* bad_flag) {
  const int64_t b = blockIdx.y;
  const int64_t n = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (n >= length) return;
  const int64_t p = start + n;
  const int64_t total = (n_frames - 1) * hop + n_fft;
  T* ob = out + b * length;
  if (p >= total) {
    ob[n] = T(0);
    return;
  }
  // Frames t with t*hop <= p < t*hop + n_fft.
  const int64_t t_hi = min(n_frames - 1, p / hop);
  const int64_t t_lo = p >= n_fft ? (p - n_fft) / hop + 1 : 0;
  const T* fb = frames + b * n_frames * n_fft;
  T acc = 0, env = 0;
  for (int64_t t = t_lo; t <= t_hi; ++t) {
    const int64_t j = p - t * hop;
    const T w = window[j];
    acc += fb[t * n_fft + j] * w;
    env += w * w;
  }
  if (env < T(1e-11)) {
    *bad_flag = 1;  // every writer stores the same value, so the race is benign
    ob[n] = T(0);
  } else {
    ob[n] = acc * scale / env;
  }
}

template <typename T>
void frame_typed(const void* x, int64_t batch, int64_t n_samples, int64_t x_bs, const void* window,
                 double scale, void* frames, int64_t n_frames, int64_t n_fft, int64_t hop, int64_t pad,
                 PadMode mode, cudaStream_t s) {
  // A block per frame; 128 threads cover n_fft 400 in 4 steps and 4096 in 32 (the
  // rows, up to 2^31 - 1 of them, give plenty of parallelism).
  const int threads = n_fft >= 1024 ? 256 : 128;
  SONICORE_CHECK(batch * n_frames <= 0x7fffffffLL, "stft_frame: more than 2^31 - 1 frames in one call");
  frame_kernel<T><<<unsigned(batch * n_frames), threads, 0, s>>>(
      static_cast<const T*>(x), n_samples, x_bs, static_cast<const T*>(window), T(scale),
      static_cast<T*>(frames), n_frames, n_fft, hop, pad, mode);
  check_launch("stft_frame");
}

}  // namespace

void stft_frame(DType dtype, const void* x, int64_t batch, int64_t n_samples, int64_t x_batch_stride,
                const void* window, double scale, void* frames, int64_t n_frames, int64_t n_fft,
                int64_t hop, int64_t pad, PadMode pad_mode, int device, void* stream) {
  SONICORE_CHECK(dtype == DType::f32 || dtype == DType::f64, "stft_frame: dtype must be float32 or float64");
  use_device(device, "stft_frame");
  SONICORE_CHECK(pad_mode != PadMode::reflect || pad < n_samples,
                 "stft_frame: reflect padding needs pad < n_samples");
  auto s = static_cast<cudaStream_t>(stream);
  if (dtype == DType::f32)
    frame_typed<float>(x, batch, n_samples, x_batch_stride, window, scale, frames, n_frames, n_fft, hop, pad, pad_mode, s);
  else
    frame_typed<double>(x, batch, n_samples, x_batch_stride, window, scale, frames, n_frames, n_fft, hop, pad, pad_mode, s);
}

void stft_spectrum_out(DType dtype, const void* spec, int64_t batch, int64_t n_frames, int64_t n_bins,
                       void* out, SpectrumKind kind, double eps, double floor, int device, void* stream) {
  SONICORE_CHECK(dtype == DType::f32 || dtype == DType::f64, "stft_spectrum_out: dtype must be float32 or float64");
  use_device(device, "stft_spectrum_out");
  SONICORE_CHECK(batch <= 65535 && (n_bins + kTile - 1) / kTile <= 65535,
                 "stft_spectrum_out: batch and bins/32 must be at most 65535");
  auto s = static_cast<cudaStream_t>(stream);
  dim3 grid(unsigned((n_frames + kTile - 1) / kTile), unsigned((n_bins + kTile - 1) / kTile), unsigned(batch));
  dim3 block(kTile, kRows);
  if (dtype == DType::f32)
    spectrum_kernel<float><<<grid, block, 0, s>>>(static_cast<const float2*>(spec), n_frames, n_bins,
                                                  static_cast<float*>(out), kind, float(eps), float(floor));
  else
    spectrum_kernel<double><<<grid, block, 0, s>>>(static_cast<const double2*>(spec), n_frames, n_bins,
                                                   static_cast<double*>(out), kind, eps, floor);
  check_launch("stft_spectrum_out");
}

void istft_overlap_add(DType dtype, const void* frames, const void* window, int64_t batch,
                       int64_t n_frames, int64_t n_fft, int64_t hop, int64_t start, int64_t length,
                       double scale, void* out, int* bad_flag, int device, void* stream) {
  SONICORE_CHECK(dtype == DType::f32 || dtype == DType::f64, "istft_overlap_add: dtype must be float32 or float64");
  use_device(device, "istft_overlap_add");
  SONICORE_CHECK(batch <= 65535, "istft_overlap_add: batch must be at most 65535");
  auto s = static_cast<cudaStream_t>(stream);
  const int threads = 256;
  dim3 grid(unsigned((length + threads - 1) / threads), unsigned(batch));
  if (dtype == DType::f32)
    overlap_add_kernel<float><<<grid, threads, 0, s>>>(static_cast<const float*>(frames), static_cast<const float*>(window),
                                                       n_frames, n_fft, hop, start, length, float(scale),
                                                       static_cast<float*>(out), bad_flag);
  else
    overlap_add_kernel<double><<<grid, threads, 0, s>>>(static_cast<const double*>(frames), static_cast<const double*>(window),
                                                        n_frames, n_fft, hop, start, length, scale,
                                                        static_cast<double*>(out), bad_flag);
  check_launch("istft_overlap_add");
}

}  // namespace cuda
}  // namespace sonicore
