// Private to csrc/cpu/flow_step*.cpp: turns the run-time choices of a FlowStepArgs call
// (velocity dtype, guidance, previous velocity, store) into compile-time template
// arguments, so that each per-ISA row body is one branch-free loop.
#pragma once
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "sonicore/flow_step.h"

// The step must round like eager PyTorch (one rounding per product and per sum), so no
// multiply-add may be contracted into an FMA in these files, whatever -ffp-contract says.
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

namespace sonicore {
namespace detail {

inline float f32_from_bits(uint32_t b) {
  float f;
  std::memcpy(&f, &b, sizeof f);
  return f;
}

inline float half_to_float(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
  if (exp == 0) {
    // zero or subnormal: mant * 2^-24 is exact in float32
    float f = float(mant) * 5.9604644775390625e-08f;
    return sign ? -f : f;
  }
  if (exp == 31) return f32_from_bits(sign | 0x7f800000u | (mant << 13));
  return f32_from_bits(sign | ((exp + 112u) << 23) | (mant << 13));
}

inline float bf16_to_float(uint16_t h) { return f32_from_bits(uint32_t(h) << 16); }

// Scalar load of one velocity element in its storage dtype.
template <DType D>
inline float load_v(const void* p, int64_t i) {
  if constexpr (D == DType::f32) return static_cast<const float*>(p)[i];
  else if constexpr (D == DType::f16) return half_to_float(static_cast<const uint16_t*>(p)[i]);
  else return bf16_to_float(static_cast<const uint16_t*>(p)[i]);
}

// Unnamed namespace: each per-ISA file gets its own copy, compiled with its own flags, so the
// linker never merges an AVX2 build of these into the scalar path.
namespace {

// What a per-ISA row body works on: row `row` of `a`, columns [c0, c1), guidance weights w, wu.
struct RowSpan {
  const FlowStepArgs& a;
  int64_t row, c0, c1;
  float w, wu;
};

// Row `row` of each buffer of `a`; null for the buffers this combination does not use.
struct RowPointers {
  const float* x;
  float* out;
  const void* vc;
  const void* vu;
  const float* pv;
  float* st;
  float* dup;
};

template <DType D, bool Guided, bool Prev, bool Store>
inline RowPointers row_pointers(const FlowStepArgs& a, int64_t row) {
  const size_t vsz = D == DType::f32 ? 4 : 2;
  return {a.x + row * a.x_stride,
          a.out + row * a.out_stride,
          static_cast<const char*>(a.v_cond) + row * a.v_cond_stride * vsz,
          Guided ? static_cast<const char*>(a.v_uncond) + row * a.v_uncond_stride * vsz : nullptr,
          Prev ? a.prev + row * a.prev_stride : nullptr,
          Store ? a.store + row * a.store_stride : nullptr,
          a.out_copy ? a.out_copy + row * a.out_copy_stride : nullptr};
}

}  // namespace

// Calls body.template run<D, Guided, Prev, Store>() for the combination `a` asks for.
template <typename Body>
inline void dispatch_flow_step(const FlowStepArgs& a, Body&& body) {
  auto with_flags = [&](auto dtag) {
    constexpr DType D = decltype(dtag)::value;
    const bool g = a.v_uncond != nullptr, p = a.prev != nullptr, s = a.store != nullptr;
    int code = (g ? 4 : 0) | (p ? 2 : 0) | (s ? 1 : 0);
    switch (code) {
      case 0: body.template run<D, false, false, false>(); break;
      case 1: body.template run<D, false, false, true>(); break;
      case 2: body.template run<D, false, true, false>(); break;
      case 3: body.template run<D, false, true, true>(); break;
      case 4: body.template run<D, true, false, false>(); break;
      case 5: body.template run<D, true, false, true>(); break;
      case 6: body.template run<D, true, true, false>(); break;
      default: body.template run<D, true, true, true>(); break;
    }
  };
  switch (a.v_dtype) {
    case DType::f32: with_flags(std::integral_constant<DType, DType::f32>{}); break;
    case DType::f16: with_flags(std::integral_constant<DType, DType::f16>{}); break;
    case DType::bf16: with_flags(std::integral_constant<DType, DType::bf16>{}); break;
    default: throw ArgumentError("flow_step: the velocity must be float32, float16 or bfloat16");
  }
}

}  // namespace detail
}  // namespace sonicore
