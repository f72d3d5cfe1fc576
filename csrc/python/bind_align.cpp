#include "bindings.h"

namespace sonicore_py {

void bind_align(py::module_& m) {}

}  // namespace sonicore_py
