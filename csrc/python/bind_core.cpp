#include <pybind11/stl.h>

#include "bindings.h"
#include "sonicore/cpu_features.h"
#include "sonicore/parallel.h"
#ifdef SONICORE_WITH_CUDA
#include "sonicore/cuda_runtime_info.h"
#endif

namespace sonicore_py {

void bind_core(py::module_& m) {
  m.attr("__version__") = SONICORE_VERSION;
#ifdef SONICORE_WITH_CUDA
  m.attr("built_with_cuda") = true;
  m.def("cuda_device_count", &sonicore::cuda::device_count);
  m.def("cuda_device_name", &sonicore::cuda::device_name, py::arg("device") = 0);
  m.def("cuda_runtime_version", &sonicore::cuda::runtime_version);
  m.def("cuda_status", &sonicore::cuda::status_message);
#else
  m.attr("built_with_cuda") = false;
#endif
  m.def("cpu_isa", [] { return std::string(sonicore::isa_name(sonicore::cpu_isa())); },
        "Best instruction set the CPU kernels use on this machine.");
  m.def("cpu_has_amx", &sonicore::cpu_has_amx,
        "Whether AMX bf16 tiles are usable here (CPU, build, OS grant, SONICORE_ISA); the attention "
        "kernel uses them for bfloat16.");
  m.def("num_threads", &sonicore::num_threads, "Threads in sonicore's CPU pool.");
  m.def("default_num_threads", &sonicore::default_num_threads);
  m.def(
      "set_num_threads",
      [](int n) {
        py::gil_scoped_release nogil;
        sonicore::set_num_threads(n);
      },
      py::arg("n"));
}

}  // namespace sonicore_py
