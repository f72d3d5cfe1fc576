// Each bind_*.cpp adds one kernel family to sonicore._C. The binding layer only checks
// arguments, releases the GIL and calls the core; no arithmetic lives here.
#pragma once
#include <pybind11/pybind11.h>

#include <string>

#include "sonicore/common.h"

namespace py = pybind11;

namespace sonicore_py {

void bind_core(py::module_& m);       // threads, ISA, build info
void bind_stft(py::module_& m);       // FFT, STFT/iSTFT, streaming
void bind_mel(py::module_& m);        // mel projection (CPU), fused STFT kernels (CUDA)
void bind_attention(py::module_& m);  // attention, attention_probs
void bind_sampling(py::module_& m);   // flow_step
void bind_align(py::module_& m);      // DTW, median filter
void bind_nn(py::module_& m);         // fused network pieces (adaLN, RoPE, SwiGLU)

// Buffer access helpers shared by the bind files.
inline void require(bool cond, const std::string& msg) {
  if (!cond) throw py::value_error(msg);
}

}  // namespace sonicore_py
