// Shared plumbing for every sonicore kernel: errors, dtype tags, small helpers.
// The core takes raw pointers + shapes + strides; it never includes Python or torch headers.
#pragma once
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace sonicore {

enum class DType : int { f32 = 0, f64 = 1, f16 = 2, bf16 = 3, i32 = 4, i64 = 5 };

inline const char* dtype_name(DType d) {
  switch (d) {
    case DType::f32: return "float32";
    case DType::f64: return "float64";
    case DType::f16: return "float16";
    case DType::bf16: return "bfloat16";
    case DType::i32: return "int32";
    case DType::i64: return "int64";
  }
  return "unknown";
}

// Every kernel reports bad arguments with this exception; the binding turns it into ValueError.
struct ArgumentError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

#define SONICORE_CHECK(cond, msg)                                   \
  do {                                                              \
    if (!(cond)) throw ::sonicore::ArgumentError(std::string(msg)); \
  } while (0)

}  // namespace sonicore
