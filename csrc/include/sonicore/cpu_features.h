// Run-time instruction-set detection: kernels are compiled once per ISA and picked here.
#pragma once

namespace sonicore {

enum class Isa : int { scalar = 0, avx2 = 1, avx512 = 2 };

Isa cpu_isa();                 // best ISA usable on this CPU (and allowed by SONICORE_ISA)
const char* isa_name(Isa isa);

// AMX tiles with bf16 dot products (TMUL): the CPU has them, this build compiled them, the OS
// granted this process the tile state, and SONICORE_ISA does not cap below "amx". Asked once.
bool cpu_has_amx();

}  // namespace sonicore
