#include "bindings.h"

namespace sonicore_py {

void bind_sampling(py::module_& m) {}

}  // namespace sonicore_py
