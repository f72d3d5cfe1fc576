#include <pybind11/numpy.h>

#include <cstdint>

#include "bindings.h"
#include "sonicore/dtw.h"

namespace sonicore_py {

namespace {

template <typename T>
py::tuple dtw_cpu(py::array_t<T, py::array::c_style> x, bool open_end, bool open_begin) {
  require(x.ndim() == 3, "dtw: expected a (batch, tokens, frames) array");
  const int64_t b = x.shape(0), n = x.shape(1), m = x.shape(2);
  require(b >= 1 && n >= 1 && m >= 1, "dtw: every dimension of the cost array must be >= 1");
  require(n < (int64_t(1) << 30) && m < (int64_t(1) << 30), "dtw: cost matrix too large");
  const int64_t cap = n + m - 1;
  py::array_t<int32_t> text({b, cap}), time({b, cap});
  py::array_t<int64_t> lengths(b);
  const T* px = x.data();
  int32_t* pt = text.mutable_data();
  int32_t* pm = time.mutable_data();
  int64_t* pl = lengths.mutable_data();
  {
    py::gil_scoped_release nogil;
    sonicore::dtw_path_batched<T>(px, b, n, m, n * m, m, pt, pm, pl, open_end, open_begin);
  }
  return py::make_tuple(text, time, lengths);
}

template <typename T>
py::array_t<T> median_cpu(py::array_t<T, py::array::c_style> x, int width) {
  require(x.ndim() >= 1, "median_filter: expected an array with at least one dimension");
  require(width >= 1 && width % 2 == 1 && width <= 255, "median_filter: width must be odd, from 1 to 255");
  const int64_t len = x.shape(x.ndim() - 1);
  const int64_t rows = len == 0 ? 0 : x.size() / len;
  py::array_t<T> y(std::vector<py::ssize_t>(x.shape(), x.shape() + x.ndim()));
  const T* px = x.data();
  T* py_ = y.mutable_data();
  {
    py::gil_scoped_release nogil;
    sonicore::median_filter<T>(px, py_, rows, len, width);
  }
  return y;
}

}  // namespace

void bind_align(py::module_& m) {
  m.def("dtw_f32", &dtw_cpu<float>, py::arg("cost"), py::arg("open_end") = false, py::arg("open_begin") = false,
        "DTW paths of (B, N, M) float32 costs -> (text (B, N+M-1) int32, time (B, N+M-1) int32, lengths (B,)).");
  m.def("dtw_f64", &dtw_cpu<double>, py::arg("cost"), py::arg("open_end") = false, py::arg("open_begin") = false, "As dtw_f32 for float64 costs.");
  m.def("median_filter_f32", &median_cpu<float>, py::arg("x"), py::arg("width"),
        "Median over `width` along the last axis, reflect padding.");
  m.def("median_filter_f64", &median_cpu<double>, py::arg("x"), py::arg("width"));
#ifdef SONICORE_WITH_CUDA
  m.def(
      "dtw_cuda",
      [](uintptr_t x, int64_t b, int64_t n, int64_t mm, uintptr_t cost_ws, uintptr_t trace_ws, uintptr_t text,
         uintptr_t time, uintptr_t lengths, bool open_end, bool open_begin, uintptr_t stream) {
        require(x && cost_ws && trace_ws && text && time && lengths, "dtw_cuda: null device pointer");
        require(b >= 1 && n >= 1 && mm >= 1, "dtw_cuda: every dimension must be >= 1");
        py::gil_scoped_release nogil;
        sonicore::dtw_path_cuda(reinterpret_cast<const float*>(x), b, n, mm, reinterpret_cast<float*>(cost_ws),
                                reinterpret_cast<uint8_t*>(trace_ws), reinterpret_cast<int32_t*>(text),
                                reinterpret_cast<int32_t*>(time), reinterpret_cast<int64_t*>(lengths), open_end, open_begin,
                                reinterpret_cast<void*>(stream));
      },
      py::arg("x"), py::arg("b"), py::arg("n"), py::arg("m"), py::arg("cost_ws"), py::arg("trace_ws"),
      py::arg("text"), py::arg("time"), py::arg("lengths"), py::arg("open_end"), py::arg("open_begin"), py::arg("stream"));
  m.def(
      "median_filter_cuda",
      [](uintptr_t x, uintptr_t y, int64_t rows, int64_t len, int width, uintptr_t stream) {
        require(x && y, "median_filter_cuda: null device pointer");
        require(rows >= 0 && len >= 0, "median_filter_cuda: negative size");
        py::gil_scoped_release nogil;
        sonicore::median_filter_cuda(reinterpret_cast<const float*>(x), reinterpret_cast<float*>(y), rows, len,
                                     width, reinterpret_cast<void*>(stream));
      },
      py::arg("x"), py::arg("y"), py::arg("rows"), py::arg("len"), py::arg("width"), py::arg("stream"));
#endif
}

}  // namespace sonicore_py
