// exp(x) as a branch-free function that vectorises inside loops, for kernel files compiled once per
// ISA. static inline: each translation unit keeps its own copy built with its own flags (no ODR clash
// that could let a baseline file call an AVX-512 copy).
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

namespace sonicore {
namespace kernel_math {

// exp(x) for the SiLU: range reduction by ln2 and a degree-6 polynomial; relative error ~2e-7 on
// [-87, 88], saturating outside. Branch-free so that the loop below vectorises.
static inline float exp_approx(float x) {
  x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
  const float k = std::nearbyint(x * 1.44269504088896341f);
  const float r = (x - k * 0.693359375f) + k * 2.12194440e-4f;
  float p = 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  int32_t bits = (static_cast<int32_t>(k) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

}  // namespace kernel_math
}  // namespace sonicore
