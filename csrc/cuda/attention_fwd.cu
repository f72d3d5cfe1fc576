// Tensor-core flash-attention forward for float16 / bfloat16 on sm_80+ (FlashAttention-2 scheme,
// written from the papers' description): one CTA = 4 warps = 64 query rows; each warp owns 16
// rows. Q stays in registers (ldmatrix), K/V tiles of 64 keys are double-buffered in shared
// memory with cp.async, S = Q K^T and O += P V use mma.sync m16n8k16 with float32 accumulators,
// and the online softmax runs on the S fragments in registers (P is re-packed as the A operand
// of the second MMA without a trip through shared memory).
//
// Semantics match the CPU kernel (sonicore/attention.h): grouped-query heads, q_lens / kv_lens,
// bottom-right causal mask, rows without a visible key -> zeros and lse -inf, NaN propagates.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdlib>
#include <stdexcept>
#include <string>

#include "sonicore/attention.h"

namespace sonicore {

const char* attention_cuda_choice() {
  const char* pick = std::getenv("SONICORE_CUDA_ATTENTION");
  const std::string want = pick ? pick : "";
  SONICORE_CHECK(want.empty() || want == "mma" || want == "wgmma" || want == "wgmma-ws",
                 "SONICORE_CUDA_ATTENTION='" + want + "': expected one of mma, wgmma, wgmma-ws");
  return want == "wgmma" ? "wgmma" : want == "wgmma-ws" ? "wgmma-ws" : "mma";
}

namespace {

constexpr int kWarps = 4;
constexpr int kBlockM = 16 * kWarps;  // query rows per CTA
constexpr int kBlockN = 64;           // keys per pipeline stage
constexpr float kLog2e = 1.4426950408889634f;

template <typename T>
struct MmaType;
template <>
struct MmaType<__half> {
  __device__ static void mma(float* c, const uint32_t* a, const uint32_t* b) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  }
  __device__ static uint32_t pack(float lo, float hi) {
    __half2 h = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<uint32_t*>(&h);
  }
};
template <>
struct MmaType<__nv_bfloat16> {
  __device__ static void mma(float* c, const uint32_t* a, const uint32_t* b) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  }
  __device__ static uint32_t pack(float lo, float hi) {
    __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t*>(&h);
  }
};

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16-byte async copy; src_bytes = 0 writes zeros (rows past the valid range).
__device__ __forceinline__ void cp_async16(void* dst, const void* src, int src_bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(dst)), "l"(src), "r"(src_bytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t* r, const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t* r, const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}

// Shared tiles are [rows][HD] 16-bit values; 16-byte chunks are XOR-swizzled by row so that
// the 8 rows an ldmatrix phase reads hit 8 different bank groups.
template <int HD>
__device__ __forceinline__ int swz(int row, int chunk) {
  return row * HD + ((chunk ^ (row & 7)) << 3);
}

// Element offset of (row, 16-byte chunk) in a ROWS-row tile in the canonical 128-byte-swizzled
// layout of Hopper's matrix descriptors: each 64-column slice is its own region of ROWS x 128
// bytes, chunks XOR-ed with (row % 8) inside it.
template <int ROWS>
__device__ __forceinline__ int sw128(int row, int chunk) {
  return (chunk / 8) * (ROWS * 64) + row * 64 + (((chunk % 8) ^ (row & 7)) << 3);
}

// Copies `rows` x HD values (rows >= valid are zero-filled) from global rows of stride `ld`,
// in the swz layout (SW128 false) or the sw128 one, by NTHR threads (tid in [0, NTHR)).
template <typename T, int HD, int ROWS, bool SW128 = false, int NTHR = kWarps * 32>
__device__ __forceinline__ void load_tile(T* tile, const T* src, int64_t ld, int valid, int tid) {
  constexpr int kChunks = HD / 8;
  for (int i = tid; i < ROWS * kChunks; i += NTHR) {
    const int r = i / kChunks, c = i % kChunks;
    const bool ok = r < valid;
    const T* g = src + (ok ? int64_t(r) * ld : 0) + c * 8;
    cp_async16(tile + (SW128 ? sw128<ROWS>(r, c) : swz<HD>(r, c)), g, ok ? 16 : 0);
  }
}

__device__ __forceinline__ int key_limit(bool causal, int row, int ql, int kl) {
  return causal ? min(kl, max(0, row + (kl - ql) + 1)) : kl;
}

// The online-softmax step on one key block's S fragments (rows row_a / row_b of this thread,
// keys n0 + nt * 8 + 2 * (lane % 4) + e): scale, mask (only where some key of the block is hidden
// from some row), new running max, P = exp2(S - m) in place, l and O rescaled. The fragment
// layout is the same for mma.sync m16n8 tiles and for a warp's rows of a wgmma m64 accumulator.
template <int NT, int DT>
__device__ __forceinline__ void online_softmax(float (&s)[NT][4], float (&o)[DT][4], int n0, int lim_min, int lim_a,
                                               int lim_b, float qk_scale, float& m_a, float& m_b, float& l_a,
                                               float& l_b, int lane) {
  const bool masked = n0 + NT * 8 > lim_min;
  float mx_a = -INFINITY, mx_b = -INFINITY;
#pragma unroll
  for (int nt = 0; nt < NT; ++nt) {
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      const int col = n0 + nt * 8 + (lane % 4) * 2 + e;
      float va = s[nt][e] * qk_scale, vb = s[nt][2 + e] * qk_scale;
      if (masked) {
        va = col < lim_a ? va : -INFINITY;
        vb = col < lim_b ? vb : -INFINITY;
      }
      s[nt][e] = va;
      s[nt][2 + e] = vb;
      mx_a = fmaxf(mx_a, va);
      mx_b = fmaxf(mx_b, vb);
    }
  }
#pragma unroll
  for (int off = 1; off < 4; off <<= 1) {
    mx_a = fmaxf(mx_a, __shfl_xor_sync(0xffffffffu, mx_a, off));
    mx_b = fmaxf(mx_b, __shfl_xor_sync(0xffffffffu, mx_b, off));
  }
  const float mn_a = fmaxf(m_a, mx_a), mn_b = fmaxf(m_b, mx_b);
  // A row that has seen no key keeps m = -inf; exp2 against 0 then gives exact zeros.
  const float mu_a = mn_a == -INFINITY ? 0.f : mn_a, mu_b = mn_b == -INFINITY ? 0.f : mn_b;
  const float al_a = exp2f(m_a - mu_a), al_b = exp2f(m_b - mu_b);
  m_a = mn_a;
  m_b = mn_b;
  float sum_a = 0.f, sum_b = 0.f;
#pragma unroll
  for (int nt = 0; nt < NT; ++nt) {
    s[nt][0] = exp2f(s[nt][0] - mu_a);
    s[nt][1] = exp2f(s[nt][1] - mu_a);
    s[nt][2] = exp2f(s[nt][2] - mu_b);
    s[nt][3] = exp2f(s[nt][3] - mu_b);
    sum_a += s[nt][0] + s[nt][1];
    sum_b += s[nt][2] + s[nt][3];
  }
  l_a = l_a * al_a + sum_a;  // per-thread partial sums; the quad is reduced once at the end
  l_b = l_b * al_b + sum_b;
#pragma unroll
  for (int dt = 0; dt < DT; ++dt) {
    o[dt][0] *= al_a;
    o[dt][1] *= al_a;
    o[dt][2] *= al_b;
    o[dt][3] *= al_b;
  }
}

struct Args {
  const void *q, *k, *v;
  void* out;
  float* lse;
  const int32_t *q_lens, *kv_lens;
  int64_t qs[3], ks[3], vs[3], os[3];
  int Hq, group, Nq, Nk;
  float qk_scale;  // scale * log2(e)
};

// Where one CTA works: its batch / head, its BM query rows from m0 (causal: the last query blocks
// see the most keys, so they are scheduled first, no long tail), the valid lengths, the key range
// it must read, and the two accumulator rows of this thread with their key limits.
template <typename T>
struct Tile {
  int bh, b, h, m0, ql, kl, vrows, kend, lim_min, nblocks, row_a, row_b, lim_a, lim_b;
  const T *qg, *kg, *vg;
  T *sq, *sk, *sv;  // shared tiles: Q (BM x HD), then K and V (STAGES stages of BN x HD each)
};

template <typename T, int HD, bool CAUSAL, int BM = kBlockM, int BN = kBlockN, int STAGES = 2>
__device__ __forceinline__ Tile<T> tile_setup(const Args& a, unsigned char* smem, int warp, int lane) {
  Tile<T> t;
  t.sq = reinterpret_cast<T*>(smem);
  t.sk = t.sq + BM * HD;
  t.sv = t.sk + STAGES * BN * HD;
  t.bh = blockIdx.y;
  t.b = t.bh / a.Hq;
  t.h = t.bh % a.Hq;
  const int hk = t.h / a.group;
  t.m0 = (CAUSAL ? gridDim.x - 1 - blockIdx.x : blockIdx.x) * BM;
  t.ql = a.q_lens ? a.q_lens[t.b] : a.Nq;
  t.kl = a.kv_lens ? a.kv_lens[t.b] : a.Nk;
  t.qg = static_cast<const T*>(a.q) + t.b * a.qs[0] + t.h * a.qs[1] + int64_t(t.m0) * a.qs[2];
  t.kg = static_cast<const T*>(a.k) + t.b * a.ks[0] + hk * a.ks[1];
  t.vg = static_cast<const T*>(a.v) + t.b * a.vs[0] + hk * a.vs[1];
  t.vrows = max(0, min(BM, t.ql - t.m0));  // valid query rows of this CTA
  t.kend = t.vrows > 0 ? key_limit(CAUSAL, t.m0 + t.vrows - 1, t.ql, t.kl) : 0;
  t.lim_min = t.vrows > 0 ? key_limit(CAUSAL, t.m0, t.ql, t.kl) : 0;
  t.nblocks = (t.kend + BN - 1) / BN;
  t.row_a = t.m0 + warp * 16 + lane / 4;
  t.row_b = t.row_a + 8;
  t.lim_a = t.row_a < t.ql ? key_limit(CAUSAL, t.row_a, t.ql, t.kl) : 0;
  t.lim_b = t.row_b < t.ql ? key_limit(CAUSAL, t.row_b, t.ql, t.kl) : 0;
  return t;
}

// K and V rows [n0, n0 + BN) of the tile's head (zero-filled from kend on) into stage `st` of
// BN-row tiles, by NTHR threads.
template <typename T, int HD, int BN, bool SW128, int NTHR = kWarps * 32>
__device__ __forceinline__ void load_kv(const Tile<T>& t, const Args& a, int st, int n0, int tid) {
  const int valid = min(BN, t.kend - n0);
  load_tile<T, HD, BN, SW128, NTHR>(t.sk + st * BN * HD, t.kg + int64_t(n0) * a.ks[2], a.ks[2], valid, tid);
  load_tile<T, HD, BN, SW128, NTHR>(t.sv + st * BN * HD, t.vg + int64_t(n0) * a.vs[2], a.vs[2], valid, tid);
}

// Q and the first key block's K / V into shared memory (one copy group).
template <typename T, int HD, bool SW128>
__device__ __forceinline__ void load_first(const Tile<T>& t, const Args& a, int tid) {
  load_tile<T, HD, kBlockM, SW128>(t.sq, t.qg, a.qs[2], t.vrows, tid);
  if (t.nblocks > 0) load_kv<T, HD, kBlockN, SW128>(t, a, 0, 0, tid);
  cp_async_commit();
}

// Key block j's K / V stage is in shared memory when this returns; block j + 1's copies into the
// other stage are in flight.
template <typename T, int HD, bool SW128>
__device__ __forceinline__ void next_stage(const Tile<T>& t, const Args& a, int j, int tid) {
  if (j + 1 < t.nblocks) {
    load_kv<T, HD, kBlockN, SW128>(t, a, (j + 1) & 1, (j + 1) * kBlockN, tid);
    cp_async_commit();
    cp_async_wait<1>();
  } else {
    cp_async_wait<0>();
  }
}

// The end of a CTA's work: the quad's partial row sums are reduced, O / l is written in T and
// the log-sum-exp in float32. l == 0 (no visible key, or a row past q_len): zeros and lse -inf.
// The zeros are written explicitly (not o * 0) so a NaN value in a key the row cannot see never
// leaks in; NaN l (NaN in what the row does see) gives NaN.
template <typename T, int DT>
__device__ __forceinline__ void finish_rows(const Args& a, const Tile<T>& t, float (&o)[DT][4], float m_a, float m_b,
                                            float l_a, float l_b, int lane) {
  const int row_a = t.row_a, row_b = t.row_b;
#pragma unroll
  for (int off = 1; off < 4; off <<= 1) {
    l_a += __shfl_xor_sync(0xffffffffu, l_a, off);
    l_b += __shfl_xor_sync(0xffffffffu, l_b, off);
  }
  if (row_a >= t.ql) l_a = 0.f;
  if (row_b >= t.ql) l_b = 0.f;
  const float inv_a = 1.f / l_a, inv_b = 1.f / l_b;
  T* og = static_cast<T*>(a.out) + t.b * a.os[0] + t.h * a.os[1];
#pragma unroll
  for (int dt = 0; dt < DT; ++dt) {
    const int col = dt * 8 + (lane % 4) * 2;
    if (row_a < a.Nq)
      *reinterpret_cast<uint32_t*>(og + int64_t(row_a) * a.os[2] + col) =
          l_a == 0.f ? 0u : MmaType<T>::pack(o[dt][0] * inv_a, o[dt][1] * inv_a);
    if (row_b < a.Nq)
      *reinterpret_cast<uint32_t*>(og + int64_t(row_b) * a.os[2] + col) =
          l_b == 0.f ? 0u : MmaType<T>::pack(o[dt][2] * inv_b, o[dt][3] * inv_b);
  }
  if (a.lse && lane % 4 == 0) {
    float* lg = a.lse + int64_t(t.bh) * a.Nq;
    if (row_a < a.Nq) lg[row_a] = l_a == 0.f ? -INFINITY : (m_a + log2f(l_a)) * 0.69314718055994531f;
    if (row_b < a.Nq) lg[row_b] = l_b == 0.f ? -INFINITY : (m_b + log2f(l_b)) * 0.69314718055994531f;
  }
}

template <typename T, int HD, bool CAUSAL>
__global__ void __launch_bounds__(kWarps * 32) flash_fwd(Args a) {
  extern __shared__ __align__(128) unsigned char smem_raw[];
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const Tile<T> t = tile_setup<T, HD, CAUSAL>(a, smem_raw, warp, lane);

  constexpr int KS = HD / 16;  // k-steps over the head dim
  constexpr int NT = kBlockN / 8;
  constexpr int DT = HD / 8;
  float o[DT][4];
#pragma unroll
  for (int i = 0; i < DT; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.f;
  float m_a = -INFINITY, m_b = -INFINITY, l_a = 0.f, l_b = 0.f;
  uint32_t qf[KS][4];

  load_first<T, HD, false>(t, a, tid);

  for (int j = 0; j < t.nblocks; ++j) {
    const int n0 = j * kBlockN;
    next_stage<T, HD, false>(t, a, j, tid);
    __syncthreads();
    if (j == 0) {
#pragma unroll
      for (int ks = 0; ks < KS; ++ks) {
        const int r = warp * 16 + (lane % 16), c = ks * 2 + lane / 16;
        ldmatrix_x4(qf[ks], t.sq + swz<HD>(r, c));
      }
    }
    const T* kt = t.sk + (j & 1) * kBlockN * HD;
    const T* vt = t.sv + (j & 1) * kBlockN * HD;

    // S = Q K^T for this warp's 16 rows x 64 keys.
    float s[NT][4];
#pragma unroll
    for (int i = 0; i < NT; ++i) s[i][0] = s[i][1] = s[i][2] = s[i][3] = 0.f;
#pragma unroll
    for (int ks = 0; ks < KS; ++ks) {
#pragma unroll
      for (int nt = 0; nt < NT; nt += 2) {
        uint32_t kb[4];
        const int mtx = lane / 8;
        const int r = nt * 8 + (mtx / 2) * 8 + (lane % 8), c = ks * 2 + (mtx % 2);
        ldmatrix_x4(kb, kt + swz<HD>(r, c));
        MmaType<T>::mma(s[nt], qf[ks], kb);
        MmaType<T>::mma(s[nt + 1], qf[ks], kb + 2);
      }
    }

    online_softmax<NT, DT>(s, o, n0, t.lim_min, t.lim_a, t.lim_b, a.qk_scale, m_a, m_b, l_a, l_b, lane);

    // O += P V: the S fragments of two adjacent 8-key tiles form one m16k16 A fragment.
#pragma unroll
    for (int kk = 0; kk < kBlockN / 16; ++kk) {
      uint32_t pa[4];
      pa[0] = MmaType<T>::pack(s[2 * kk][0], s[2 * kk][1]);
      pa[1] = MmaType<T>::pack(s[2 * kk][2], s[2 * kk][3]);
      pa[2] = MmaType<T>::pack(s[2 * kk + 1][0], s[2 * kk + 1][1]);
      pa[3] = MmaType<T>::pack(s[2 * kk + 1][2], s[2 * kk + 1][3]);
#pragma unroll
      for (int dt = 0; dt < DT; dt += 2) {
        uint32_t vb[4];
        const int mtx = lane / 8;
        const int r = kk * 16 + (mtx % 2) * 8 + (lane % 8), c = dt + mtx / 2;
        ldmatrix_x4_trans(vb, vt + swz<HD>(r, c));
        MmaType<T>::mma(o[dt], pa, vb);
        MmaType<T>::mma(o[dt + 1], pa, vb + 2);
      }
    }
    __syncthreads();  // the next iteration's prefetch overwrites this stage
  }
  cp_async_wait<0>();  // nothing may stay in flight when the CTA exits (no key block case)

  finish_rows<T, DT>(a, t, o, m_a, m_b, l_a, l_b, lane);
}

// ---------------------------------------------------------------- Hopper (sm_90a): wgmma
//
// The same algorithm on Hopper's warpgroup MMA: one CTA = one warpgroup (4 warps, 64 query
// rows, each warp's 16 rows as above). S = Q K^T is one chain of wgmma m64n64k16 with Q and K
// read from shared memory through matrix descriptors; O += P V is wgmma m64n{HD}k16 with P in
// registers (the S accumulator re-packed, the same fragment layout as mma.sync's A) and V from
// shared memory, transposed by the descriptor. Tiles use the canonical 128-byte-swizzled layout
// (PTX ISA, "matrix descriptor"): each 64-column slice of a tile is its own region of rows x
// 128 bytes, 16-byte chunks XOR-ed with (row % 8); Q and K are K-major (head dim contiguous),
// V is MN-major. Descriptor values follow what Triton 3.9 emits for its own Hopper attention
// (stride byte offset 1024 = 8 rows, leading byte offset = one 64-column region for V).
// Compiled only for sm_90a; chosen with SONICORE_CUDA_ATTENTION=wgmma (not yet the default:
// it has not run on a GPU, see docs/attention.md).

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
// Warpgroup MMA wrappers for one 16-bit input type (CTY in C++, TY in PTX): S (64 x 64) from two
// shared-memory descriptors; O (64 x 64 or 64 x 128) += A in registers x B from a descriptor
// (B transposed: V is MN-major). The accumulators are "+f" operands, one per register.
#define SONICORE_WGMMA_WRAPPERS(CTY, TY)                                                                     \
  /* SCALE_D "0": S = A B (the first k-step), "1": S += A B; an immediate, so no instruction  */  \
  /* between two MMAs defines an input of theirs (ptxas would serialise them).                 */  \
  template <int ACC>                                                                                          \
  __device__ __forceinline__ void wgmma_ss_n64(float* d, uint64_t a, uint64_t b, CTY*) {                       \
    asm volatile("wgmma.mma_async.sync.aligned.m64n64k16.f32." TY "." TY " {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, %32, %33, %34, 1, 1, 0, 0;\n"      \
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])                                                                             \
                 : "l"(a), "l"(b), "n"(ACC)                                                                 \
                 : "memory");                                                                               \
  }                                                                                                          \
  template <int ACC>                                                                                          \
  __device__ __forceinline__ void wgmma_ss_n128(float* d, uint64_t a, uint64_t b, CTY*) {                      \
    asm volatile("wgmma.mma_async.sync.aligned.m64n128k16.f32." TY "." TY " {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, %64, %65, %66, 1, 1, 0, 0;\n"      \
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])                                                                             \
                 : "l"(a), "l"(b), "n"(ACC)                                                                 \
                 : "memory");                                                                               \
  }                                                                                                          \
  __device__ __forceinline__ void wgmma_rs_n64(float* d, const uint32_t* a, uint64_t b, CTY*) {                \
    asm volatile("wgmma.mma_async.sync.aligned.m64n64k16.f32." TY "." TY " {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, "                     \
                 "{%32, %33, %34, %35}, %36, 1, 1, 1, 1;\n"                                                   \
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])                                                                             \
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b)                                        \
                 : "memory");                                                                               \
  }                                                                                                          \
  __device__ __forceinline__ void wgmma_rs_n128(float* d, const uint32_t* a, uint64_t b, CTY*) {               \
    asm volatile("wgmma.mma_async.sync.aligned.m64n128k16.f32." TY "." TY " {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, "                    \
                 "{%64, %65, %66, %67}, %68, 1, 1, 1, 1;\n"                                                   \
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])                                                                             \
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b)                                        \
                 : "memory");                                                                               \
  }
SONICORE_WGMMA_WRAPPERS(__nv_bfloat16, "bf16")
SONICORE_WGMMA_WRAPPERS(__half, "f16")
#undef SONICORE_WGMMA_WRAPPERS
__device__ __forceinline__ void pin_registers32(float* d) {
  asm volatile("" : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])::"memory");
}
__device__ __forceinline__ void pin_registers64(float* d) {
  asm volatile("" : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])::"memory");
}

__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void wgmma_wait() { asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory"); }
// cp.async writes (generic proxy) made visible to wgmma's reads (async proxy).
__device__ __forceinline__ void fence_async_shared() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }

// 128-byte-swizzle matrix descriptor: start address, leading and stride byte offsets (all >> 4),
// swizzle mode 1 in bits 62-63.
__device__ __forceinline__ uint64_t sw128_desc(uint32_t saddr, uint32_t lbo, uint32_t sbo) {
  return uint64_t((saddr & 0x3FFFFu) >> 4) | (uint64_t(lbo >> 4) << 16) | (uint64_t(sbo >> 4) << 32) |
         (uint64_t(1) << 62);
}

#endif

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
// Descriptors of one key block, computed before each chain is issued: no instruction between two
// MMAs of a chain may define one of their inputs, or ptxas serialises them. S's k-step ks lies in
// region ks / 4 of Q and K (each 64-column region holds all of a tile's rows, 128 bytes apart),
// 32 bytes per step; this warpgroup's 64 Q rows start at q_addr. P V's step kk starts 16 V rows
// (2048 bytes) on, and V's 64-column regions are BN * 128 bytes apart (the leading byte offset
// of an MN-major operand).
template <int HD>
struct QkDesc {
  uint64_t q[HD / 16], k[HD / 16];
};
template <int HD, int BM, int BN>
__device__ __forceinline__ void make_qk_desc(QkDesc<HD>& d, uint32_t q_addr, uint32_t k_addr) {
#pragma unroll
  for (int ks = 0; ks < HD / 16; ++ks) {
    const uint32_t off = (ks % 4) * 32;
    d.q[ks] = sw128_desc(q_addr + (ks / 4) * (BM * 128) + off, 0, 1024);
    d.k[ks] = sw128_desc(k_addr + (ks / 4) * (BN * 128) + off, 0, 1024);
  }
#pragma unroll
  for (int ks = 0; ks < HD / 16; ++ks) asm volatile("" : "+l"(d.q[ks]), "+l"(d.k[ks]));
}
template <int BN>
struct VDesc {
  uint64_t v[BN / 16];
};
template <int BN>
__device__ __forceinline__ void make_v_desc(VDesc<BN>& d, uint32_t v_addr) {
#pragma unroll
  for (int kk = 0; kk < BN / 16; ++kk) d.v[kk] = sw128_desc(v_addr + kk * 2048, BN * 128, 1024);
#pragma unroll
  for (int kk = 0; kk < BN / 16; ++kk) asm volatile("" : "+l"(d.v[kk]));
}

// S (64 x BN) = Q K^T over the head dim, one commit group.
template <typename T, int HD, int BN>
__device__ __forceinline__ void qk_chain(float* sf, const QkDesc<HD>& d) {
#pragma unroll
  for (int ks = 0; ks < HD / 16; ++ks) {
    if constexpr (BN == 64) {
      if (ks == 0) wgmma_ss_n64<0>(sf, d.q[ks], d.k[ks], static_cast<T*>(nullptr));
      else wgmma_ss_n64<1>(sf, d.q[ks], d.k[ks], static_cast<T*>(nullptr));
    } else {
      if (ks == 0) wgmma_ss_n128<0>(sf, d.q[ks], d.k[ks], static_cast<T*>(nullptr));
      else wgmma_ss_n128<1>(sf, d.q[ks], d.k[ks], static_cast<T*>(nullptr));
    }
  }
  wgmma_commit();
}

// P packed as the A operand of every 16-key step (the S fragments of two 8-key tiles each).
template <typename T, int NT>
__device__ __forceinline__ void pack_p(const float (&s)[NT][4], uint32_t (&pa)[NT / 2][4]) {
#pragma unroll
  for (int kk = 0; kk < NT / 2; ++kk) {
    pa[kk][0] = MmaType<T>::pack(s[2 * kk][0], s[2 * kk][1]);
    pa[kk][1] = MmaType<T>::pack(s[2 * kk][2], s[2 * kk][3]);
    pa[kk][2] = MmaType<T>::pack(s[2 * kk + 1][0], s[2 * kk + 1][1]);
    pa[kk][3] = MmaType<T>::pack(s[2 * kk + 1][2], s[2 * kk + 1][3]);
  }
}

// O += P V over the block's keys, one commit group.
template <typename T, int HD, int BN>
__device__ __forceinline__ void pv_chain(float* of, const uint32_t (&pa)[BN / 16][4], const VDesc<BN>& d) {
#pragma unroll
  for (int kk = 0; kk < BN / 16; ++kk) {
    if constexpr (HD == 64) wgmma_rs_n64(of, pa[kk], d.v[kk], static_cast<T*>(nullptr));
    else wgmma_rs_n128(of, pa[kk], d.v[kk], static_cast<T*>(nullptr));
  }
  wgmma_commit();
}

// Keeps N accumulators (32 or 64) in place across a wgmma fence / wait.
template <int N>
__device__ __forceinline__ void pin_acc(float* d) {
  if constexpr (N == 32) pin_registers32(d);
  else pin_registers64(d);
}

// One key block on this warpgroup, both chains waited for: S = Q K^T from the stage's K (sk),
// the online softmax (n0: the block's first key), O += P V from its V (sv). BM / BN: the rows of
// the CTA's Q tile and of a K / V stage (the descriptors' region sizes).
template <typename T, int HD, int BM, int BN>
__device__ __forceinline__ void wgmma_block(float (&o)[HD / 8][4], uint32_t q_addr, const T* sk, const T* sv, int n0,
                                            const Tile<T>& t, float qk_scale, float& m_a, float& m_b, float& l_a,
                                            float& l_b, int lane) {
  constexpr int NT = BN / 8;
  constexpr int DT = HD / 8;
  float s[NT][4];
  float* sf = &s[0][0];
  float* of = &o[0][0];
  QkDesc<HD> dq;
  make_qk_desc<HD, BM, BN>(dq, q_addr, smem_addr(sk));
  pin_acc<NT * 4>(sf);
  wgmma_fence();
  qk_chain<T, HD, BN>(sf, dq);
  wgmma_wait<0>();
  pin_acc<NT * 4>(sf);
  online_softmax<NT, DT>(s, o, n0, t.lim_min, t.lim_a, t.lim_b, qk_scale, m_a, m_b, l_a, l_b, lane);
  uint32_t pa[NT / 2][4];
  pack_p<T, NT>(s, pa);  // all steps first: no register the MMAs read changes between them
  VDesc<BN> dv;
  make_v_desc<BN>(dv, smem_addr(sv));
  pin_acc<DT * 4>(of);
  wgmma_fence();
  pv_chain<T, HD, BN>(of, pa, dv);
  wgmma_wait<0>();
  pin_acc<DT * 4>(of);
}
#endif

// Per key block: S = Q K^T, wait, softmax, O += P V, wait. (A variant that issued block j's S
// MMAs together with block j - 1's P V MMAs and ran the softmax while P V was in flight, as
// FlashAttention-3 does inside a warpgroup, compiled with every HGMMA serialised by ptxas 13.0,
// warning C7513, whatever was tried: it was not kept. This kernel's SASS has one wait per chain.)
template <typename T, int HD, bool CAUSAL>
__global__ void __launch_bounds__(kWarps * 32) flash_fwd_sm90(Args a) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  extern __shared__ __align__(128) unsigned char smem_sm90[];
  // The swizzle pattern repeats every 1024 bytes and the descriptors assume regions aligned to
  // it: the launch reserves 1 KiB extra and the tiles start at the first 1024-byte boundary.
  unsigned char* base = smem_sm90 + ((1024u - (smem_addr(smem_sm90) & 1023u)) & 1023u);
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const Tile<T> t = tile_setup<T, HD, CAUSAL>(a, base, warp, lane);

  constexpr int DT = HD / 8;
  constexpr int kStage = kBlockN * HD;  // values per K or V stage
  float o[DT][4];
#pragma unroll
  for (int i = 0; i < DT; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.f;
  float m_a = -INFINITY, m_b = -INFINITY, l_a = 0.f, l_b = 0.f;
  const uint32_t q_addr = smem_addr(t.sq);

  load_first<T, HD, true>(t, a, tid);
  for (int j = 0; j < t.nblocks; ++j) {
    next_stage<T, HD, true>(t, a, j, tid);
    fence_async_shared();
    __syncthreads();
    wgmma_block<T, HD, kBlockM, kBlockN>(o, q_addr, t.sk + (j & 1) * kStage, t.sv + (j & 1) * kStage, j * kBlockN, t,
                                         a.qk_scale, m_a, m_b, l_a, l_b, lane);
    __syncthreads();  // the next iteration's prefetch overwrites this stage
  }
  cp_async_wait<0>();
  finish_rows<T, DT>(a, t, o, m_a, m_b, l_a, l_b, lane);
#else
  __trap();  // built for another architecture: the host never launches it there
#endif
}

// ---------------------------------------------------------------- Hopper, warp-specialised
//
// The FlashAttention-3 arrangement without its intra-warpgroup pipelining: one CTA = a producer
// warpgroup + two consumer warpgroups (64 query rows each, BM = 128), 384 threads. The producer
// gives most of its registers to the consumers (setmaxnreg: 56 / 224 instead of 168 each) and
// fills a ring of K / V stages (BN = 128 keys; 3 stages at head dim 64, 2 at 128) with cp.async
// in the 128-byte-swizzled layout (zero-filled past the valid rows, as above); each producer
// thread waits for its copies, fences them for the async proxy and arrives on the stage's "full"
// mbarrier. Each consumer warpgroup waits on it, runs S = Q K^T (wgmma m64n128k16 from two
// descriptors), the online softmax in registers and O += P V (P from registers), and arrives on
// the stage's "empty" mbarrier, which the producer waits on before it refills the stage. No
// CTA-wide barrier inside the key loop: the two consumers drift apart, so one's softmax overlaps
// the other's MMAs. Compiled only for sm_90a; SONICORE_CUDA_ATTENTION=wgmma-ws picks it (not
// yet run on a GPU).

constexpr int kWsBlockM = 128;
constexpr int kWsBlockN = 128;
constexpr int kWsProducerThreads = 128;
constexpr int kWsConsumerWarps = 8;
constexpr int kWsThreads = kWsProducerThreads + kWsConsumerWarps * 32;
template <int HD>
constexpr int ws_stages() { return HD == 64 ? 3 : 2; }
template <int HD>
constexpr size_t ws_smem_bytes(size_t elem) {
  return size_t(kWsBlockM + 2 * ws_stages<HD>() * kWsBlockN) * HD * elem + 1024;  // + 1 KiB to align
}

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
__device__ __forceinline__ void mbar_init(uint64_t* bar, unsigned count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(smem_addr(bar)), "r"(count) : "memory");
}
__device__ __forceinline__ void mbar_arrive(uint64_t* bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(smem_addr(bar)) : "memory");
}
// Spins until the phase with the given parity has completed (acquire: what the arriving threads
// wrote before they arrived is visible afterwards). WATCHDOG: a wait that outlasts 2^24 polls (a
// second or more; a stage normally turns over within microseconds) traps, so a protocol error
// fails the call with a CUDA error instead of hanging the process. The producer's waits have it
// and it waits for the last stages' release before it exits, so it outlives any consumer wait;
// the consumers' own waits would cost them a register they lack.
template <bool WATCHDOG>
__device__ __forceinline__ void mbar_wait(uint64_t* bar, unsigned parity) {
  uint32_t done;
  for (uint32_t polls = 0;; ++polls) {
    asm volatile(
        "{\n"
        " .reg .pred p;\n"
        " mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n"
        " selp.u32 %0, 1, 0, p;\n"
        "}\n"
        : "=r"(done)
        : "r"(smem_addr(bar)), "r"(parity)
        : "memory");
    if (done) return;
    if (WATCHDOG && polls == (1u << 24)) __trap();
  }
}

#endif

template <typename T, int HD, bool CAUSAL>
__global__ void __launch_bounds__(kWsThreads, 1) flash_fwd_sm90_ws(Args a) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  constexpr int S = ws_stages<HD>();
  constexpr int DT = HD / 8;
  constexpr int kProducerRegs = 56;   // 128 x 56 + 256 x 224 = 64512 of the SM's 65536 (40: spills)
  constexpr int kConsumerRegs = 224;
  constexpr int kStage = kWsBlockN * HD;  // values per K or V stage
  extern __shared__ __align__(128) unsigned char smem_ws[];
  __shared__ uint64_t full[S], empty[S];
  unsigned char* base = smem_ws + ((1024u - (smem_addr(smem_ws) & 1023u)) & 1023u);
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const bool producer = tid < kWsProducerThreads;
  // Consumer warp cw = warp - 4 owns rows m0 + 16 cw .. + 15 (the row mapping of tile_setup).
  const int cw = producer ? 0 : warp - kWsProducerThreads / 32;
  const Tile<T> t = tile_setup<T, HD, CAUSAL, kWsBlockM, kWsBlockN, S>(a, base, cw, lane);
  if (tid == 0) {
#pragma unroll
    for (int s = 0; s < S; ++s) {
      mbar_init(&full[s], kWsProducerThreads);       // every producer thread
      mbar_init(&empty[s], kWsConsumerWarps * 32);   // every consumer thread
    }
  }
  __syncthreads();

  if (producer) {
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(kProducerRegs));
    for (int j = 0; j < t.nblocks; ++j) {
      const int s = j % S;
      if (j >= S) mbar_wait<true>(&empty[s], ((j / S) - 1) & 1);  // the consumers are done with block j - S
      if (j == 0) load_tile<T, HD, kWsBlockM, true, kWsProducerThreads>(t.sq, t.qg, a.qs[2], t.vrows, tid);
      load_kv<T, HD, kWsBlockN, true, kWsProducerThreads>(t, a, s, j * kWsBlockN, tid);
      cp_async_commit();
      cp_async_wait<0>();
      fence_async_shared();  // this thread's copies, made visible to the async proxy (wgmma)
      mbar_arrive(&full[s]);
    }
    // The last stages' release, under the watchdog too: a consumer stuck on a "full" wait (which
    // has none) then traps the kernel through this wait rather than hanging it.
    for (int j = max(0, t.nblocks - S); j < t.nblocks; ++j) mbar_wait<true>(&empty[j % S], (j / S) & 1);
    return;
  }
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(kConsumerRegs));

  // Consumers: warpgroup wg owns rows m0 + 64 wg .. + 63.
  const int wg = cw / 4;
  float o[DT][4];
#pragma unroll
  for (int i = 0; i < DT; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.f;
  float m_a = -INFINITY, m_b = -INFINITY, l_a = 0.f, l_b = 0.f;
  const uint32_t q_addr = smem_addr(t.sq) + wg * 64 * 128;  // this warpgroup's rows in each region
  for (int j = 0; j < t.nblocks; ++j) {
    const int s = j % S;
    mbar_wait<false>(&full[s], (j / S) & 1);
    fence_async_shared();
    wgmma_block<T, HD, kWsBlockM, kWsBlockN>(o, q_addr, t.sk + s * kStage, t.sv + s * kStage, j * kWsBlockN, t,
                                             a.qk_scale, m_a, m_b, l_a, l_b, lane);
    mbar_arrive(&empty[s]);  // this thread's MMAs of the stage have completed
  }
  finish_rows<T, DT>(a, t, o, m_a, m_b, l_a, l_b, lane);
#else
  __trap();  // built for another architecture: the host never launches it there
#endif
}

// Which kernel a call runs: the sm_80 one (mma.sync) or one of the Hopper ones.
enum class Kernel { mma, wgmma, wgmma_ws };

template <typename T, int HD, bool CAUSAL>
void launch(const Args& a, int batch, Kernel which, cudaStream_t stream) {
  size_t smem = size_t(kBlockM + 4 * kBlockN) * HD * sizeof(T);
  auto kernel = flash_fwd<T, HD, CAUSAL>;
  int rows = kBlockM, threads = kWarps * 32;
  if (which == Kernel::wgmma) {
    kernel = flash_fwd_sm90<T, HD, CAUSAL>;
    smem += 1024;  // room to align the tiles to 1024 bytes
  } else if (which == Kernel::wgmma_ws) {
    kernel = flash_fwd_sm90_ws<T, HD, CAUSAL>;
    smem = ws_smem_bytes<HD>(sizeof(T));
    rows = kWsBlockM;
    threads = kWsThreads;
  }
  // Set on every launch (cheap): the attribute belongs to the current device's context.
  const cudaError_t attr = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                static_cast<int>(smem));
  if (attr != cudaSuccess)
    throw std::runtime_error(std::string("attention: cuda backend: cannot reserve shared memory: ") +
                             cudaGetErrorString(attr));
  dim3 grid((a.Nq + rows - 1) / rows, batch * a.Hq);
  kernel<<<grid, threads, smem, stream>>>(a);
}

template <typename T>
void dispatch_hd(const Args& a, int hd, bool causal, int batch, Kernel which, cudaStream_t stream) {
  if (hd == 64) {
    causal ? launch<T, 64, true>(a, batch, which, stream) : launch<T, 64, false>(a, batch, which, stream);
  } else {
    causal ? launch<T, 128, true>(a, batch, which, stream) : launch<T, 128, false>(a, batch, which, stream);
  }
}

// A Hopper kernel runs when it was compiled (sm_90a among the build's architectures), the
// current device is compute capability 9.0, and SONICORE_CUDA_ATTENTION asks for it ("wgmma":
// one warpgroup per CTA; "wgmma-ws": the warp-specialised one); anything else runs mma.sync.
Kernel pick_kernel() {
  const std::string want = attention_cuda_choice();
#if defined(SONICORE_CUDA_SM90A)
  if (want == "mma") return Kernel::mma;
  int dev = 0, major = 0, minor = 0;
  if (cudaGetDevice(&dev) != cudaSuccess) return Kernel::mma;
  if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) != cudaSuccess)
    return Kernel::mma;
  if (major != 9 || minor != 0) return Kernel::mma;
  return want == "wgmma" ? Kernel::wgmma : Kernel::wgmma_ws;
#else
  return Kernel::mma;
#endif
}

}  // namespace

const char* attention_cuda_kernels() {
#if defined(SONICORE_CUDA_SM90A)
  return "mma,wgmma,wgmma-ws";
#else
  return "mma";
#endif
}

const char* attention_cuda_unsupported(const AttentionParams& p) {
  if (p.dtype != DType::f16 && p.dtype != DType::bf16)
    return "cuda backend: float16 or bfloat16 only (float32 goes to triton or torch)";
  if (p.head_dim != 64 && p.head_dim != 128) return "cuda backend: head dim not supported (64 or 128)";
  const uintptr_t mask = 15;
  if ((reinterpret_cast<uintptr_t>(p.q) | reinterpret_cast<uintptr_t>(p.k) | reinterpret_cast<uintptr_t>(p.v) |
       reinterpret_cast<uintptr_t>(p.out)) & mask)
    return "cuda backend: q, k, v and out must be 16-byte aligned";
  for (int i = 0; i < 3; ++i)
    if ((p.q_stride[i] | p.k_stride[i] | p.v_stride[i] | p.out_stride[i]) % 8 != 0)
      return "cuda backend: strides must be multiples of 8 elements";
  if (p.q_len > (int64_t(1) << 30) || p.kv_len > (int64_t(1) << 30) || p.batch * p.q_heads > 65535)
    return "cuda backend: sequence or batch x heads too large for one launch";
  return "";
}

void attention_forward_cuda(const AttentionParams& p, void* stream) {
  SONICORE_CHECK(p.q_heads >= 1 && p.kv_heads >= 1 && p.q_heads % p.kv_heads == 0,
                 "attention: the query heads must be a positive multiple of the key/value heads");
  const char* why = attention_cuda_unsupported(p);
  SONICORE_CHECK(why[0] == '\0', std::string("attention: ") + why);
  if (p.batch == 0 || p.q_len == 0) return;
  Args a{};
  a.q = p.q, a.k = p.k, a.v = p.v, a.out = p.out, a.lse = p.lse;
  a.q_lens = p.q_lens, a.kv_lens = p.kv_lens;
  for (int i = 0; i < 3; ++i) a.qs[i] = p.q_stride[i], a.ks[i] = p.k_stride[i], a.vs[i] = p.v_stride[i], a.os[i] = p.out_stride[i];
  a.Hq = static_cast<int>(p.q_heads);
  a.group = static_cast<int>(p.q_heads / p.kv_heads);
  a.Nq = static_cast<int>(p.q_len);
  a.Nk = static_cast<int>(p.kv_len);
  a.qk_scale = p.scale * kLog2e;
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  const Kernel which = pick_kernel();
  if (p.dtype == DType::f16)
    dispatch_hd<__half>(a, static_cast<int>(p.head_dim), p.causal, static_cast<int>(p.batch), which, s);
  else
    dispatch_hd<__nv_bfloat16>(a, static_cast<int>(p.head_dim), p.causal, static_cast<int>(p.batch), which, s);
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess)
    throw std::runtime_error(std::string("attention: cuda backend: launch failed: ") + cudaGetErrorString(err));
}

}  // namespace sonicore
