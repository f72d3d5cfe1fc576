#include "sonicore/cpu_features.h"

#include <cstdlib>
#include <cstring>
#include <initializer_list>
#if defined(__linux__) && (defined(__x86_64__) || defined(__i386__))
#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

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
  // SONICORE_ISA=scalar|avx2|avx512|amx caps the choice (for tests and for comparing paths).
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

#if defined(SONICORE_HAVE_AMX_KERNELS)
static bool detect_amx() {
  if (cpu_isa() != Isa::avx512) return false;
  if (const char* env = std::getenv("SONICORE_ISA"))  // a lower cap turns AMX off
    for (const char* lower : {"scalar", "avx2", "avx512"})
      if (!std::strcmp(env, lower)) return false;
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
  const bool tile = d & (1u << 24), bf16 = d & (1u << 22);
  if (!__get_cpuid_count(7, 1, &a, &b, &c, &d)) return false;
  const bool avx512bf16 = a & (1u << 5);
  if (!tile || !bf16 || !avx512bf16) return false;
  // Linux hands out the 8 KB tile register state only on request (ARCH_REQ_XCOMP_PERM for
  // XFEATURE_XTILEDATA); the grant covers every thread of the process.
  constexpr long kReqXcompPerm = 0x1023, kXtileData = 18;
  return syscall(SYS_arch_prctl, kReqXcompPerm, kXtileData) == 0;
}
#endif

bool cpu_has_amx() {
#if defined(SONICORE_HAVE_AMX_KERNELS)
  static const bool ok = detect_amx();
  return ok;
#else
  return false;
#endif
}

}  // namespace sonicore
