#include "sonicore/cpu_features.h"

#include <cstdlib>
#include <cstring>

namespace sonicore {

static Isa detect() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  Isa best = Isa::scalar;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) best = Isa::avx2;
  if (best == Isa::avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw"))
    best = Isa::avx512;
#else
  Isa best = Isa::scalar;
#endif
  // SONICORE_ISA=scalar|avx2|avx512 caps the choice (for tests and for comparing paths).
  if (const char* env = std::getenv("SONICORE_ISA")) {
    Isa cap = best;
    if (!std::strcmp(env, "scalar")) cap = Isa::scalar;
    else if (!std::strcmp(env, "avx2")) cap = Isa::avx2;
    else if (!std::strcmp(env, "avx512")) cap = Isa::avx512;
    if (static_cast<int>(cap) < static_cast<int>(best)) best = cap;
  }
  return best;
}

Isa cpu_isa() {
  static const Isa isa = detect();
  return isa;
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::avx512: return "avx512";
    case Isa::avx2: return "avx2";
    default: return "scalar";
  }
}

}  // namespace sonicore
