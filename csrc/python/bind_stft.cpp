#include "bindings.h"

namespace sonicore_py {

void bind_stft(py::module_& m) {}

}  // namespace sonicore_py
