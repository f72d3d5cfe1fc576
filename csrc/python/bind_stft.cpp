// sonicore._C: real FFT, batch STFT / iSTFT, streaming STFT / iSTFT.
// Checks every buffer (dtype, rank, shape, strides, writability) so that no call can make the
// C++ core read or write out of bounds; then releases the GIL and calls the core.
#include <pybind11/numpy.h>

#include <mutex>
#include <string>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "bindings.h"
#include "sonicore/stft.h"

namespace sonicore_py {
namespace {

using sonicore::fft::Output;
using sonicore::stft::IstftParams;
using sonicore::stft::IstftStream;
using sonicore::stft::PadMode;
using sonicore::stft::StftParams;
using sonicore::stft::StftStream;

template <class T>
const char* type_name() { return sizeof(T) == 4 ? "float32" : "float64"; }

template <class T>
void check_dtype(const py::array& a, const char* name) {
  if (!a.dtype().is(py::dtype::of<T>()))
    throw py::type_error(std::string(name) + " must be " + type_name<T>() + ", got " +
                         std::string(py::str(a.dtype())));
}

// A C-contiguous array of T with the given rank.
template <class T>
void check_contig(const py::array& a, const char* name, int ndim, bool writable = false) {
  check_dtype<T>(a, name);
  require(a.ndim() == ndim, std::string(name) + " must have " + std::to_string(ndim) + " dimensions, got " +
                                std::to_string(a.ndim()));
  require((a.flags() & py::array::c_style) != 0, std::string(name) + " must be C-contiguous");
  if (writable) require(a.writeable(), std::string(name) + " must be writable");
}

// Element strides of an array of T; rejects negative or unaligned strides.
template <class T>
std::vector<int64_t> element_strides(const py::array& a, const char* name) {
  std::vector<int64_t> out;
  for (py::ssize_t d = 0; d < a.ndim(); ++d) {
    py::ssize_t s = a.strides(d);
    require(s >= 0 && s % py::ssize_t(sizeof(T)) == 0,
            std::string(name) + " must have non-negative strides that are whole elements");
    out.push_back(int64_t(s / py::ssize_t(sizeof(T))));
  }
  return out;
}

StftParams stft_params(int64_t n_fft, int64_t hop, bool center, int pad, bool normalized, bool onesided,
                       int output, double eps, double floor) {
  StftParams p;
  p.n_fft = n_fft;
  p.hop = hop;
  p.center = center;
  require(pad == 0 || pad == 1, "pad_mode code must be 0 (reflect) or 1 (constant)");
  p.pad_mode = PadMode(pad);
  p.normalized = normalized;
  p.onesided = onesided;
  require(output >= 0 && output <= 3, "output code must be 0..3 (complex, magnitude, power, log_magnitude)");
  p.output = Output(output);
  p.magnitude_eps = eps;
  p.log_floor = floor;
  sonicore::stft::check_params(p);
  return p;
}

IstftParams istft_params(int64_t n_fft, int64_t hop, bool center, bool normalized) {
  IstftParams p;
  p.n_fft = n_fft;
  p.hop = hop;
  p.center = center;
  p.normalized = normalized;
  sonicore::stft::check_params(p);
  return p;
}

void check_window_length(const py::array& window, int64_t n_fft) {
  require(window.shape(0) == n_fft, "window must have n_fft = " + std::to_string(n_fft) + " samples");
}

template <class T>
void bind_rfft(py::module_& m) {
  m.def("rfft", [](py::array in, py::array out) {
    check_dtype<T>(in, "x");
    check_contig<T>(in, "x", 2);
    check_contig<T>(out, "out", 3, true);
    const int64_t count = in.shape(0), n = in.shape(1);
    require(n >= 2 && n % 2 == 0, "the C++ real FFT needs an even length >= 2, got " + std::to_string(n));
    require(out.shape(0) == count && out.shape(1) == n / 2 + 1 && out.shape(2) == 2,
            "out must have shape (count, n // 2 + 1, 2)");
    auto plan = sonicore::fft::real_plan<T>(n);  // validates the size with the GIL held
    (void)plan;
    const T* src = static_cast<const T*>(in.data());
    T* dst = static_cast<T*>(out.mutable_data());
    py::gil_scoped_release nogil;
    sonicore::fft::rfft<T>(src, count, n, dst);
  }, py::arg("x"), py::arg("out"));
  m.def("irfft", [](py::array in, py::array out) {
    check_contig<T>(in, "spec", 3);
    check_contig<T>(out, "out", 2, true);
    const int64_t count = out.shape(0), n = out.shape(1);
    require(n >= 2 && n % 2 == 0, "the C++ inverse real FFT needs an even length >= 2, got " + std::to_string(n));
    require(in.shape(0) == count && in.shape(1) == n / 2 + 1 && in.shape(2) == 2,
            "spec must have shape (count, n // 2 + 1, 2)");
    auto plan = sonicore::fft::real_plan<T>(n);
    (void)plan;
    const T* src = static_cast<const T*>(in.data());
    T* dst = static_cast<T*>(out.mutable_data());
    py::gil_scoped_release nogil;
    sonicore::fft::irfft<T>(src, count, n, dst);
  }, py::arg("spec"), py::arg("out"));
}

template <class T>
void stft_forward(py::array x, py::array window, int64_t n_fft, int64_t hop, bool center, int pad,
                  bool normalized, bool onesided, int output, double eps, double floor, py::array out) {
  check_contig<T>(x, "x", 2);
  check_contig<T>(window, "window", 1);
  check_contig<T>(out, "out", output == 0 ? 4 : 3, true);
  StftParams p = stft_params(n_fft, hop, center, pad, normalized, onesided, output, eps, floor);
  check_window_length(window, n_fft);
  const int64_t batch = x.shape(0), samples = x.shape(1);
  require(batch >= 1 && samples >= 1, "x is empty; expected at least one sample");
  const int64_t frames = sonicore::stft::num_frames(samples, p);
  const int64_t bins = sonicore::stft::num_bins(p);
  require(out.shape(0) == batch && out.shape(1) == frames && out.shape(2) == bins &&
              (output != 0 || out.shape(3) == 2),
          "out must have shape (batch, frames, bins" + std::string(output == 0 ? ", 2)" : ")") +
              " = (" + std::to_string(batch) + ", " + std::to_string(frames) + ", " + std::to_string(bins) + ")");
  auto plan = sonicore::fft::real_plan<T>(n_fft);
  (void)plan;
  const T* xs = static_cast<const T*>(x.data());
  const T* ws = static_cast<const T*>(window.data());
  T* o = static_cast<T*>(out.mutable_data());
  py::gil_scoped_release nogil;
  sonicore::stft::stft<T>(xs, batch, samples, ws, p, o);
}

template <class T>
void istft_forward(py::array spec, py::array window, int64_t n_fft, int64_t hop, bool center,
                   bool normalized, py::array out) {
  check_dtype<T>(spec, "spec");
  require(spec.ndim() == 4 && spec.shape(3) == 2, "spec must be a (batch, bins, frames, 2) real view");
  auto s = element_strides<T>(spec, "spec");
  require(s[3] == 1, "spec's (re, im) pairs must be adjacent (use torch.view_as_real)");
  check_contig<T>(window, "window", 1);
  check_contig<T>(out, "out", 2, true);
  IstftParams p = istft_params(n_fft, hop, center, normalized);
  check_window_length(window, n_fft);
  const int64_t batch = spec.shape(0), bins = spec.shape(1), frames = spec.shape(2);
  require(batch >= 1 && frames >= 1, "spec is empty; expected at least one frame");
  require(bins >= n_fft / 2 + 1, "spec needs n_fft // 2 + 1 = " + std::to_string(n_fft / 2 + 1) + " bins");
  require(out.shape(0) == batch, "out must have one row per batch item");
  auto plan = sonicore::fft::real_plan<T>(n_fft);
  (void)plan;
  const T* sp = static_cast<const T*>(spec.data());
  const T* ws = static_cast<const T*>(window.data());
  T* o = static_cast<T*>(out.mutable_data());
  const int64_t length = out.shape(1);
  py::gil_scoped_release nogil;
  sonicore::stft::istft<T>(sp, batch, bins, frames, s[0], s[1], s[2], ws, p, o, length);
}

// A stream plus the lock that serialises calls on it. Pushes run without the GIL, so two
// Python threads pushing to the same stream would otherwise race on its buffers. Lock order:
// the lock is only waited for WITHOUT the GIL, so the two can never deadlock.
template <class S>
struct Guarded {
  explicit Guarded(S&& s) : stream(std::move(s)) {}
  // Copies the stream only; the caller holds other's lock (see copy()).
  Guarded(const Guarded& other) : stream(other.stream) {}
  std::unique_lock<std::mutex> lock() const {
    std::unique_lock<std::mutex> lk(mu, std::defer_lock);
    py::gil_scoped_release nogil;
    lk.lock();
    return lk;
  }
  S stream;
  mutable std::mutex mu;
};

// Runs f (a push or flush on the locked stream) without the GIL and releases the stream's lock
// before the GIL is taken back.
template <class F>
void run_without_gil(std::unique_lock<std::mutex>& lk, F&& f) {
  py::gil_scoped_release nogil;
  f();
  lk.unlock();
}

// reset() and copy(), the same for both stream kinds.
template <class G>
py::class_<G>& def_reset_copy(py::class_<G>& c) {
  return c
      .def("reset", [](G& g) {
        auto lk = g.lock();
        g.stream.reset();
      })
      .def("copy", [](const G& g) {
        auto lk = g.lock();
        return G(g);
      });
}

template <class T>
void bind_streams(py::module_& m, const char* stft_name, const char* istft_name) {
  using S = Guarded<StftStream<T>>;
  auto frames_array = [](const StftStream<T>& s, int64_t k) {
    const bool cplx = s.row_size() != s.num_bins();
    return cplx ? py::array_t<T>({k, s.num_bins(), int64_t(2)}) : py::array_t<T>({k, s.num_bins()});
  };
  py::class_<S> stft_cls(m, stft_name);
  stft_cls
      .def(py::init([](py::array window, int64_t n_fft, int64_t hop, bool center, int pad, bool normalized,
                       bool onesided, int output, double eps, double floor) {
             check_contig<T>(window, "window", 1);
             StftParams p = stft_params(n_fft, hop, center, pad, normalized, onesided, output, eps, floor);
             check_window_length(window, n_fft);
             return S(StftStream<T>(static_cast<const T*>(window.data()), p));
           }),
           py::arg("window"), py::arg("n_fft"), py::arg("hop"), py::arg("center"), py::arg("pad_mode"),
           py::arg("normalized"), py::arg("onesided"), py::arg("output"), py::arg("magnitude_eps"),
           py::arg("log_floor"))
      .def_property_readonly("num_bins", [](S& g) { return g.stream.num_bins(); })
      .def_property_readonly("samples_pushed", [](S& g) {
        auto lk = g.lock();
        return g.stream.samples_pushed();
      })
      .def("push", [frames_array](S& g, py::array x) {
        check_contig<T>(x, "samples", 1);
        const int64_t count = x.shape(0);
        auto lk = g.lock();
        py::array_t<T> out = frames_array(g.stream, g.stream.frames_ready(count));
        const T* src = static_cast<const T*>(x.data());
        T* dst = out.mutable_data();
        run_without_gil(lk, [&] { g.stream.push(src, count, dst); });
        return out;
      }, py::arg("samples"))
      .def("flush", [frames_array](S& g) {
        auto lk = g.lock();
        py::array_t<T> out = frames_array(g.stream, g.stream.flush_frames());
        T* dst = out.mutable_data();
        run_without_gil(lk, [&] { g.stream.flush(dst); });
        return out;
      });
  def_reset_copy(stft_cls);

  using I = Guarded<IstftStream<T>>;
  py::class_<I> istft_cls(m, istft_name);
  istft_cls
      .def(py::init([](py::array window, int64_t n_fft, int64_t hop, bool center, bool normalized) {
             check_contig<T>(window, "window", 1);
             IstftParams p = istft_params(n_fft, hop, center, normalized);
             check_window_length(window, n_fft);
             return I(IstftStream<T>(static_cast<const T*>(window.data()), p));
           }),
           py::arg("window"), py::arg("n_fft"), py::arg("hop"), py::arg("center"), py::arg("normalized"))
      .def("push", [](I& g, py::array spec) {
        check_dtype<T>(spec, "frames");
        require(spec.ndim() == 3 && spec.shape(2) == 2, "frames must be a (bins, k, 2) real view");
        require(spec.shape(0) >= g.stream.num_bins(),
                "frames need n_fft // 2 + 1 = " + std::to_string(g.stream.num_bins()) + " bins");
        if (spec.shape(1) == 0) return py::array_t<T>(0);
        auto s = element_strides<T>(spec, "frames");
        require(s[2] == 1, "frames' (re, im) pairs must be adjacent");
        const int64_t k = spec.shape(1);
        auto lk = g.lock();
        py::array_t<T> out(g.stream.samples_ready(k));
        const T* src = static_cast<const T*>(spec.data());
        T* dst = out.mutable_data();
        run_without_gil(lk, [&] { g.stream.push(src, k, s[0], s[1], dst); });
        return out;
      }, py::arg("frames"))
      .def("flush", [](I& g, int64_t length) {
        auto lk = g.lock();
        py::array_t<T> out(g.stream.flush_samples(length));
        T* dst = out.mutable_data();
        run_without_gil(lk, [&] { g.stream.flush(length, dst); });
        return out;
      }, py::arg("length") = -1);
  def_reset_copy(istft_cls);
}

// A zero-initialised byte array for a large kernel output. On Linux, sizes from 4 MiB up are
// mapped on a 2 MiB boundary and advised as transparent huge pages: first-touch page faults
// of a fresh 40 MB spectrogram otherwise cost about as much as computing it.
py::array alloc_output(int64_t nbytes) {
  require(nbytes >= 0, "nbytes must be >= 0");
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  const size_t huge = size_t(2) << 20;
  if (nbytes >= int64_t(4) << 20) {
    const size_t len = size_t(nbytes) + huge;
    void* base = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base != MAP_FAILED) {
      uintptr_t p = (reinterpret_cast<uintptr_t>(base) + huge - 1) & ~uintptr_t(huge - 1);
      madvise(reinterpret_cast<void*>(p), size_t(nbytes), MADV_HUGEPAGE);
      struct Mapping { void* base; size_t len; };
      auto* owner = new Mapping{base, len};
      py::capsule keep(owner, [](void* o) {
        auto* mp = static_cast<Mapping*>(o);
        munmap(mp->base, mp->len);
        delete mp;
      });
      return py::array(py::dtype("uint8"), std::vector<py::ssize_t>{py::ssize_t(nbytes)},
                       std::vector<py::ssize_t>{1}, reinterpret_cast<uint8_t*>(p), keep);
    }
  }
#endif
  return py::array(py::dtype("uint8"), std::vector<py::ssize_t>{py::ssize_t(nbytes)});
}

}  // namespace

void bind_stft(py::module_& m) {
  m.def("alloc_output", &alloc_output, py::arg("nbytes"),
        "Byte buffer for a large output (huge-page advised on Linux); view it with the dtype you need.");
  // Overloads by dtype: pybind11 tries float32 first, then float64; a TypeError from the
  // first only means "try the next", so dispatch explicitly on the input's dtype instead.
  py::module_ f32 = m.def_submodule("_f32"), f64 = m.def_submodule("_f64");
  bind_rfft<float>(f32);
  bind_rfft<double>(f64);
  auto pick = [f32, f64](const py::array& a, const char* name) -> py::object {
    if (a.dtype().is(py::dtype::of<float>())) return f32.attr(name);
    if (a.dtype().is(py::dtype::of<double>())) return f64.attr(name);
    throw py::type_error(std::string("expected float32 or float64 data, got ") + std::string(py::str(a.dtype())));
  };
  m.def("rfft", [pick](py::array x, py::array out) { pick(x, "rfft")(x, out); }, py::arg("x"), py::arg("out"));
  m.def("irfft", [pick](py::array s, py::array out) { pick(s, "irfft")(s, out); }, py::arg("spec"), py::arg("out"));
  m.def("stft_forward", [](py::array x, py::array w, int64_t n_fft, int64_t hop, bool center, int pad,
                           bool normalized, bool onesided, int output, double eps, double floor, py::array out) {
    if (x.dtype().is(py::dtype::of<float>()))
      stft_forward<float>(x, w, n_fft, hop, center, pad, normalized, onesided, output, eps, floor, out);
    else if (x.dtype().is(py::dtype::of<double>()))
      stft_forward<double>(x, w, n_fft, hop, center, pad, normalized, onesided, output, eps, floor, out);
    else
      throw py::type_error("x must be float32 or float64, got " + std::string(py::str(x.dtype())));
  });
  m.def("istft_forward", [](py::array spec, py::array w, int64_t n_fft, int64_t hop, bool center,
                            bool normalized, py::array out) {
    if (spec.dtype().is(py::dtype::of<float>())) istft_forward<float>(spec, w, n_fft, hop, center, normalized, out);
    else if (spec.dtype().is(py::dtype::of<double>())) istft_forward<double>(spec, w, n_fft, hop, center, normalized, out);
    else throw py::type_error("spec must be float32 or float64 (a real view), got " + std::string(py::str(spec.dtype())));
  });
  m.def("fft_size_error", [](int64_t n) -> std::string {
    try {
      sonicore::fft::real_plan<float>(n);
    } catch (const sonicore::ArgumentError& e) {
      return e.what();
    }
    return "";
  }, py::arg("n"), "Why the C++ real FFT cannot take size n ('' when it can).");
  m.def("fft_kernel_isa", [] { return std::string(sonicore::fft::kernel_isa()); });
  bind_streams<float>(m, "StftStream32", "IstftStream32");
  bind_streams<double>(m, "StftStream64", "IstftStream64");
}

}  // namespace sonicore_py
