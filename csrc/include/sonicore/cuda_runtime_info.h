// What the CUDA part of the build can see at run time. Only defined when built with CUDA.
#pragma once
#include <string>

namespace sonicore {
namespace cuda {

// Number of usable devices; 0 when no driver or no device (never throws).
int device_count();
// Name of a device ("" when unavailable).
std::string device_name(int device);
// The CUDA runtime version the kernels were built against, e.g. 13000.
int runtime_version();
// The last error of the runtime as text, for "why can't CUDA run" messages.
std::string status_message();

}  // namespace cuda
}  // namespace sonicore
