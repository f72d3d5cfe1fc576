#include "bindings.h"

namespace sonicore_py {

void bind_attention(py::module_& m) {}

}  // namespace sonicore_py
