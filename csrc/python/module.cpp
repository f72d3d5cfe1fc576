#include "bindings.h"

PYBIND11_MODULE(_C, m) {
  m.doc() = "sonicore compiled kernels (C++ core, optional CUDA)";
  py::register_exception<sonicore::ArgumentError>(m, "ArgumentError", PyExc_ValueError);
  sonicore_py::bind_core(m);
  sonicore_py::bind_stft(m);
  sonicore_py::bind_mel(m);
  sonicore_py::bind_attention(m);
  sonicore_py::bind_sampling(m);
  sonicore_py::bind_align(m);
  sonicore_py::bind_nn(m);
}
