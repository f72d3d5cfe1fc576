// Scaled dot-product attention forward: softmax(scale * q k^T + mask) v.
//
// Shapes (element strides for the batch, head and sequence axes; the head dim is contiguous):
//   q   (B, Hq, Nq, D)    k, v (B, Hkv, Nk, D)    out (B, Hq, Nq, D)    lse (B, Hq, Nq) float32
// Hq is a multiple of Hkv; query head h reads key/value head h / (Hq / Hkv).
// Semantics (shared with the Python reference, see docs/attention.md):
//   * q_lens[b] / kv_lens[b] (optional) are the valid lengths; padding is never read, query rows
//     past q_lens[b] are written as zeros with lse -inf.
//   * causal: query i sees key j iff j <= i + (kv_len - q_len)  (bottom-right aligned).
//   * a row that sees no key gets zeros and lse -inf; NaN inputs propagate as NaN.
//   * float32 accumulation; out has the input dtype (f32, f16 or bf16).
#pragma once
#include <cstdint>

#include "sonicore/common.h"

namespace sonicore {

struct AttentionParams {
  DType dtype = DType::f32;  // f32, f16 or bf16 for q, k, v and out
  int64_t batch = 0, q_heads = 0, kv_heads = 0, q_len = 0, kv_len = 0, head_dim = 0;
  const void* q = nullptr;
  int64_t q_stride[3] = {0, 0, 0};  // batch, head, sequence (elements)
  const void* k = nullptr;
  int64_t k_stride[3] = {0, 0, 0};
  const void* v = nullptr;
  int64_t v_stride[3] = {0, 0, 0};
  void* out = nullptr;
  int64_t out_stride[3] = {0, 0, 0};
  float* lse = nullptr;                // (B, Hq, Nq) contiguous, or null
  const int32_t* q_lens = nullptr;     // (B,) or null (all Nq)
  const int32_t* kv_lens = nullptr;    // (B,) or null (all Nk)
  float scale = 1.0f;
  bool causal = false;
  int isa = -1;  // -1: best for this CPU; otherwise a cap (Isa value), used by tests to cover every path
};

// Validates the parameters (throws ArgumentError) and runs the tiled CPU kernel on sonicore's pool.
void attention_forward_cpu(const AttentionParams& p);

// Softmax weights of selected query heads: probs (B, num_heads, Nq, Nk) float32 contiguous.
// Uses q, k, kv_lens, scale, isa and the shapes of `p`; v, out, lse, q_lens and causal are ignored.
void attention_probs_cpu(const AttentionParams& p, const int32_t* heads, int64_t num_heads, float* probs);

#ifdef SONICORE_WITH_CUDA
// CUDA tensor-core forward for f16/bf16, head dim 64 or 128, sm_80+. Pointers are device
// pointers (lens too); `stream` is a cudaStream_t. Throws ArgumentError for unsupported calls.
void attention_forward_cuda(const AttentionParams& p, void* stream);
// Why the CUDA kernel cannot take `p` ("" when it can).
const char* attention_cuda_unsupported(const AttentionParams& p);
// The CUDA attention kernels in this build: "mma" (sm_80+), plus ",wgmma,wgmma-ws" when sm_90a was
// built (those run on compute capability 9.0 when SONICORE_CUDA_ATTENTION names them).
const char* attention_cuda_kernels();
// The kernel SONICORE_CUDA_ATTENTION asks for: "mma" (also when unset), "wgmma" or "wgmma-ws";
// any other value throws ArgumentError.
const char* attention_cuda_choice();
#endif

}  // namespace sonicore
