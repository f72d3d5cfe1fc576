// Mel projection (CPU) and the fused STFT framing / spectrum / overlap-add kernels (CUDA).
#include <pybind11/numpy.h>

#include <algorithm>
#include <cstdint>

#include "bindings.h"
#include "sonicore/mel.h"
#ifdef SONICORE_WITH_CUDA
#include "sonicore/stft_cuda.h"
#endif

namespace sonicore_py {
namespace {

// Packed bank arrays as mel_project and log_mel_spectrogram take them.
void check_packed_bank(const char* who, py::array weights, py::array offsets, py::array bin_start,
                       const py::dtype& dt) {
  const std::string w(who);
  require(offsets.dtype().is(py::dtype::of<int64_t>()), w + ": offsets must be int64");
  require(bin_start.dtype().is(py::dtype::of<int32_t>()) && bin_start.ndim() == 1 &&
              (bin_start.flags() & py::array::c_style) && bin_start.shape(0) > 0,
          w + ": bin_start must be a non-empty contiguous int32 array");
  const int64_t M = bin_start.shape(0);
  require(offsets.ndim() == 1 && offsets.shape(0) == M + 1 && (offsets.flags() & py::array::c_style),
          w + ": offsets must be a contiguous int64 array of n_mels + 1 entries");
  require(weights.dtype().is(dt) && weights.ndim() == 1 && (weights.flags() & py::array::c_style),
          w + ": weights must be a contiguous 1-D array of the signal's dtype");
  const int64_t* off = static_cast<const int64_t*>(offsets.data());
  require(off[0] == 0 && off[M] == weights.shape(0), w + ": offsets must start at 0 and end at len(weights)");
  for (int64_t m = 0; m < M; ++m) require(off[m + 1] >= off[m], w + ": offsets must be non-decreasing");
}

template <typename T>
void mel_project_typed(py::array spec, py::array weights, py::array offsets, py::array bin_start,
                       py::array out, int log, double floor) {
  const ssize_t isz = sizeof(T);
  int64_t st[3];
  for (int d = 0; d < 3; ++d) {
    require(spec.strides(d) >= 0 && spec.strides(d) % isz == 0,
            "mel_project: spec strides must be non-negative multiples of the item size");
    st[d] = spec.strides(d) / isz;
  }
  const int64_t B = spec.shape(0), F = spec.shape(1), T_ = spec.shape(2), M = bin_start.shape(0);
  require(out.ndim() == 3 && out.shape(0) == B && out.shape(1) == M && out.shape(2) == T_,
          "mel_project: out must have shape (batch, n_mels, n_frames)");
  require(out.flags() & py::array::c_style, "mel_project: out must be C-contiguous");
  require(out.writeable(), "mel_project: out must be writeable");
  const int64_t* off = static_cast<const int64_t*>(offsets.data());
  require(log >= 0 && log <= 2, "mel_project: log must be 0 (none), 1 (ln) or 2 (log10)");
  const T* s = static_cast<const T*>(spec.data());
  const T* w = static_cast<const T*>(weights.data());
  const int32_t* bs = static_cast<const int32_t*>(bin_start.data());
  T* o = static_cast<T*>(out.mutable_data());
  py::gil_scoped_release nogil;
  sonicore::mel_project<T>(s, B, F, T_, st[0], st[1], st[2], w, off, bs, M, o,
                           static_cast<sonicore::MelLog>(log), static_cast<T>(floor));
}

void mel_project(py::array spec, py::array weights, py::array offsets, py::array bin_start,
                 py::array out, int log, double floor) {
  require(spec.ndim() == 3, "mel_project: spec must have shape (batch, n_bins, n_frames)");
  require(spec.shape(1) > 0 && spec.shape(1) < (int64_t(1) << 31), "mel_project: n_bins out of range");
  auto dt = spec.dtype();
  require(weights.dtype().is(dt) && out.dtype().is(dt),
          "mel_project: spec, weights and out must share one dtype");
  check_packed_bank("mel_project", weights, offsets, bin_start, dt);
  if (dt.is(py::dtype::of<float>()))
    mel_project_typed<float>(spec, weights, offsets, bin_start, out, log, floor);
  else if (dt.is(py::dtype::of<double>()))
    mel_project_typed<double>(spec, weights, offsets, bin_start, out, log, floor);
  else
    throw py::type_error("mel_project: expected float32 or float64 arrays");
}

template <typename T>
void log_mel_spectrogram_typed(py::array x, py::array window, const sonicore::MelFraming& f, py::array weights,
                               py::array offsets, py::array bin_start, py::array out, int log, double floor,
                               const sonicore::MelDynamicRange& range) {
  const int64_t B = x.shape(0), S = x.shape(1), M = bin_start.shape(0);
  require(x.strides(1) == sizeof(T) && x.strides(0) >= 0 && x.strides(0) % sizeof(T) == 0,
          "log_mel_spectrogram: x must have contiguous rows (samples unit-stride)");
  require(window.ndim() == 1 && window.shape(0) == f.n_fft && (window.flags() & py::array::c_style) &&
              window.dtype().is(x.dtype()),
          "log_mel_spectrogram: window must be a contiguous (n_fft,) array of x's dtype");
  require(out.ndim() == 3 && out.shape(0) == B && out.shape(1) == M && out.shape(2) == f.n_frames &&
              (out.flags() & py::array::c_style) && out.writeable() && out.dtype().is(x.dtype()),
          "log_mel_spectrogram: out must be a writeable C-contiguous (batch, n_mels, n_frames) array of x's dtype");
  const T* xp = static_cast<const T*>(x.data());
  const T* wp = static_cast<const T*>(window.data());
  const T* wt = static_cast<const T*>(weights.data());
  const int64_t* off = static_cast<const int64_t*>(offsets.data());
  const int32_t* bs = static_cast<const int32_t*>(bin_start.data());
  T* o = static_cast<T*>(out.mutable_data());
  py::gil_scoped_release nogil;
  sonicore::log_mel_spectrogram<T>(xp, B, S, x.strides(0) / int64_t(sizeof(T)), wp, f, wt, off, bs, M, o,
                                   static_cast<sonicore::MelLog>(log), static_cast<T>(floor), range);
}

void log_mel_spectrogram(py::array x, py::array window, int64_t n_fft, int64_t hop, bool center, bool reflect,
                         int64_t zero_pad, int64_t n_frames, bool magnitude, py::array weights, py::array offsets,
                         py::array bin_start, py::array out, int log, double floor, py::object dynamic_range) {
  require(x.ndim() == 2 && x.shape(0) > 0 && x.shape(1) > 0,
          "log_mel_spectrogram: x must have shape (batch, samples) with batch, samples >= 1");
  require(n_fft >= 2 && n_fft % 2 == 0 && n_fft < (int64_t(1) << 31), "log_mel_spectrogram: n_fft must be even and >= 2");
  require(hop >= 1 && zero_pad >= 0 && n_frames >= 1,
          "log_mel_spectrogram: expected hop >= 1, zero_pad >= 0, n_frames >= 1");
  require(log >= 0 && log <= 2, "log_mel_spectrogram: log must be 0 (none), 1 (ln) or 2 (log10)");
  check_packed_bank("log_mel_spectrogram", weights, offsets, bin_start, x.dtype());
  sonicore::MelFraming f;
  f.n_fft = n_fft;
  f.hop = hop;
  f.center = center;
  f.reflect = reflect;
  f.zero_pad = zero_pad;
  f.n_frames = n_frames;
  f.magnitude = magnitude;
  sonicore::MelDynamicRange range;
  if (!dynamic_range.is_none()) {
    auto t = dynamic_range.cast<py::tuple>();
    require(t.size() == 3, "log_mel_spectrogram: dynamic_range must be None or (range, offset, scale)");
    range.enabled = true;
    range.range = t[0].cast<double>();
    range.offset = t[1].cast<double>();
    range.scale = t[2].cast<double>();
  }
  if (x.dtype().is(py::dtype::of<float>()))
    log_mel_spectrogram_typed<float>(x, window, f, weights, offsets, bin_start, out, log, floor, range);
  else if (x.dtype().is(py::dtype::of<double>()))
    log_mel_spectrogram_typed<double>(x, window, f, weights, offsets, bin_start, out, log, floor, range);
  else
    throw py::type_error("log_mel_spectrogram: expected float32 or float64 arrays");
}

template <typename T>
void clamp_range_typed(py::array x, double range, double offset, double scale) {
  T* p = static_cast<T*>(x.mutable_data());
  const int64_t batch = x.shape(0), n = x.size() / std::max<int64_t>(1, x.shape(0));
  py::gil_scoped_release nogil;
  sonicore::clamp_to_max_range<T>(p, batch, n, T(range), T(offset), T(scale));
}

void clamp_to_max_range(py::array x, double range, double offset, double scale) {
  require(x.ndim() >= 1 && (x.flags() & py::array::c_style) && x.writeable(),
          "clamp_to_max_range: x must be a writeable C-contiguous array of shape (batch, ...)");
  if (x.dtype().is(py::dtype::of<float>()))
    clamp_range_typed<float>(x, range, offset, scale);
  else if (x.dtype().is(py::dtype::of<double>()))
    clamp_range_typed<double>(x, range, offset, scale);
  else
    throw py::type_error("clamp_to_max_range: expected float32 or float64");
}

#ifdef SONICORE_WITH_CUDA
sonicore::DType cuda_dtype(int d) {
  require(d == 0 || d == 1, "cuda stft kernels: dtype must be 0 (float32) or 1 (float64)");
  return static_cast<sonicore::DType>(d);
}
void* ptr(uintptr_t p, const char* what) {
  require(p != 0, std::string("cuda stft kernels: null device pointer for ") + what);
  return reinterpret_cast<void*>(p);
}
#endif

}  // namespace

void bind_mel(py::module_& m) {
  m.def("mel_project", &mel_project, py::arg("spec"), py::arg("weights"), py::arg("offsets"),
        py::arg("bin_start"), py::arg("out"), py::arg("log"), py::arg("floor"),
        "Sparse mel projection + clamp + log: spec (B, F, T) -> out (B, n_mels, T).");
  m.def("log_mel_spectrogram", &log_mel_spectrogram, py::arg("x"), py::arg("window"), py::arg("n_fft"),
        py::arg("hop"), py::arg("center"), py::arg("reflect"), py::arg("zero_pad"), py::arg("n_frames"),
        py::arg("magnitude"), py::arg("weights"), py::arg("offsets"), py::arg("bin_start"), py::arg("out"),
        py::arg("log"), py::arg("floor"), py::arg("dynamic_range"),
        "Fused STFT power -> sparse mel -> clamp + log (-> Whisper's dynamic range): x (B, S) -> out (B, n_mels, T).");
  m.def("clamp_to_max_range", &clamp_to_max_range, py::arg("x"), py::arg("range"), py::arg("offset"),
        py::arg("scale"), "In place: x = (max(x, max_item(x) - range) + offset) * scale per item.");
#ifdef SONICORE_WITH_CUDA
  m.def(
      "cuda_stft_frame",
      [](int dtype, uintptr_t x, int64_t batch, int64_t n_samples, int64_t x_batch_stride,
         uintptr_t window, double scale, uintptr_t frames, int64_t n_frames, int64_t n_fft, int64_t hop,
         int64_t pad, int pad_mode, int device, uintptr_t stream) {
        require(batch > 0 && n_samples > 0 && n_frames > 0 && n_fft > 0 && hop > 0 && pad >= 0,
                "cuda_stft_frame: sizes must be positive");
        require(pad_mode >= 0 && pad_mode <= 3, "cuda_stft_frame: pad_mode must be 0..3");
        py::gil_scoped_release nogil;
        sonicore::cuda::stft_frame(cuda_dtype(dtype), ptr(x, "x"), batch, n_samples, x_batch_stride,
                                   ptr(window, "window"), scale, ptr(frames, "frames"), n_frames, n_fft,
                                   hop, pad, static_cast<sonicore::cuda::PadMode>(pad_mode),
                                   device, reinterpret_cast<void*>(stream));
      },
      py::arg("dtype"), py::arg("x"), py::arg("batch"), py::arg("n_samples"), py::arg("x_batch_stride"),
      py::arg("window"), py::arg("scale"), py::arg("frames"), py::arg("n_frames"), py::arg("n_fft"),
      py::arg("hop"), py::arg("pad"), py::arg("pad_mode"), py::arg("device"), py::arg("stream"));
  m.def(
      "cuda_stft_spectrum_out",
      [](int dtype, uintptr_t spec, int64_t batch, int64_t n_frames, int64_t n_bins, uintptr_t out,
         int kind, double eps, double floor, int device, uintptr_t stream) {
        require(batch > 0 && n_frames > 0 && n_bins > 0, "cuda_stft_spectrum_out: sizes must be positive");
        require(kind >= 0 && kind <= 2, "cuda_stft_spectrum_out: kind must be 0..2");
        py::gil_scoped_release nogil;
        sonicore::cuda::stft_spectrum_out(cuda_dtype(dtype), ptr(spec, "spec"), batch, n_frames, n_bins,
                                          ptr(out, "out"), static_cast<sonicore::cuda::SpectrumKind>(kind),
                                          eps, floor, device, reinterpret_cast<void*>(stream));
      },
      py::arg("dtype"), py::arg("spec"), py::arg("batch"), py::arg("n_frames"), py::arg("n_bins"),
      py::arg("out"), py::arg("kind"), py::arg("eps"), py::arg("floor"), py::arg("device"), py::arg("stream"));
  m.def(
      "cuda_istft_overlap_add",
      [](int dtype, uintptr_t frames, uintptr_t window, int64_t batch, int64_t n_frames, int64_t n_fft,
         int64_t hop, int64_t start, int64_t length, double scale, uintptr_t out, uintptr_t bad_flag,
         int device, uintptr_t stream) {
        require(batch > 0 && n_frames > 0 && n_fft > 0 && hop > 0 && start >= 0 && length > 0,
                "cuda_istft_overlap_add: sizes must be positive");
        py::gil_scoped_release nogil;
        sonicore::cuda::istft_overlap_add(cuda_dtype(dtype), ptr(frames, "frames"), ptr(window, "window"),
                                          batch, n_frames, n_fft, hop, start, length, scale, ptr(out, "out"),
                                          static_cast<int*>(ptr(bad_flag, "bad_flag")), device,
                                          reinterpret_cast<void*>(stream));
      },
      py::arg("dtype"), py::arg("frames"), py::arg("window"), py::arg("batch"), py::arg("n_frames"),
      py::arg("n_fft"), py::arg("hop"), py::arg("start"), py::arg("length"), py::arg("scale"), py::arg("out"),
      py::arg("bad_flag"), py::arg("device"), py::arg("stream"));
#endif
}

}  // namespace sonicore_py
