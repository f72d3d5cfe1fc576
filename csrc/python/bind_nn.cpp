#include "bindings.h"

namespace sonicore_py {

void bind_nn(py::module_& m) {}

}  // namespace sonicore_py
