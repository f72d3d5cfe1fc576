// AMX forward of the CPU attention kernel (Sapphire Rapids and later; compiled with -mamx-tile
// -mamx-bf16 -mavx512bf16 by CMake, offered only when cpu_has_amx()).
//
// The tile unit multiplies bf16 matrices into float32 accumulators, 16 x 16 x 32 per
// instruction (TDPBF16PS, ~15x the float32 FMA rate of AVX-512 on this class of CPU). bfloat16
// inputs are exact in bf16: QK^T is one tile product, and P is rounded to bf16 for PV (as the GPU
// flash kernels do). Other dtypes (only when asked, isa = 3: at head dim 64 they take
// 0.88-0.95x of the AVX-512 kernel's time on one thread here and 1.1-2.3x on two, and run at
// half speed for stretches of seconds on this VM; docs/attention.md, AMX) are split exactly into
// bf16 parts by truncation, x = x0 + x1 + x2 (x0 the top 8 significant bits, x1 the next 8, x2
// the rest), and a product x * y is summed from the part products x_i * y_j with i + j <= 2
// (the dropped ones are below 2^-24 |x y|): 6 tile products each for float32 QK^T and PV, P
// split in three too. The split is exact for finite values only, so such calls with NaN / inf
// inputs are declined (forward_amx returns false).
//
// A task is (b, head, up to 128 query rows) in 32-row sub-blocks (two 16-row tiles); keys go
// 256 at a time, each key block serving every sub-block while it is in cache. Per sub-block and
// key block:
//   S (32 x 256) = Q' K'^T on tiles 0-3 (2 x 2 output tiles per 32 keys; only the 32-key columns
//   some row of the sub-block can see), stored to memory;
//   one pass per row on AVX-512: P = exp2(S - m) against the running max as it stands (the lazy
//   step, kept while every P <= 2^16), else the ordinary step (row max, O and the row sums
//   rescaled in memory when it moves); row sums; P into bf16 parts;
//   O (32 x Dq) += P' V' on tiles 0-3, loaded from / stored to the float32 O rows.
// Each Q / P part is loaded into its tiles once for all the K / V parts it pairs with.
// K and V are read in their own dtype and packed once per call into tile layout: K per part as
// 16-key x 32-channel B tiles (pairs of channels in each 32-bit word, a 16 x 16 word transpose),
// V per part as 32-key x 16-channel B tiles (pairs of keys in each word).
#if defined(SONICORE_HAVE_AMX_KERNELS) && (defined(__x86_64__) || defined(__i386__))
#include <immintrin.h>

#include <atomic>
#include <cstring>
#include <initializer_list>

#include "attention_impl.h"
#include "sonicore/parallel.h"

namespace sonicore {
namespace attn {
namespace {

constexpr int kRows = 32;    // query rows per sub-block: two 16-row tiles
constexpr int kKB = 256;     // keys per online-softmax block
constexpr int kVec = kKB / 16, kHalves = kKB / 32;  // 16-key vectors, 32-key tile columns
constexpr int kTileElems = 512;  // one 1 KB tile of bf16

// LDTILECFG's 64-byte operand (palette 1): eight 16-row x 64-byte tiles.
struct alignas(64) TileConfig {
  uint8_t palette = 1, start_row = 0, reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
  TileConfig() {
    for (int i = 0; i < 8; ++i) colsb[i] = 64, rows[i] = 16;
  }
};

// Configures the tiles for this thread while alive; releases them (and their 8 KB of state)
// on exit.
struct TileScope {
  TileScope() {
    static const TileConfig cfg;
    _tile_loadconfig(&cfg);
  }
  ~TileScope() { _tile_release(); }
};

inline __m512 top_bits(__m512 x) {  // x truncated to a bf16 (its high 16 bits)
  return _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(x), _mm512_set1_epi32(int(0xFFFF0000u))));
}

// x = part[0] + ... + part[n - 1] exactly: each part is x's remainder truncated to bf16; the last
// one is exact once the earlier ones hold all but <= 8 significant bits (n = 3 for float32,
// 2 for float16, 1 for bfloat16 values).
inline void split(__m512 x, int n, __m512* part) {
  for (int i = 0; i + 1 < n; ++i) {
    part[i] = top_bits(x);
    x = _mm512_sub_ps(x, part[i]);
  }
  part[n - 1] = x;
}

// a's then b's 16 lanes as 32 bf16 in one register, rounded to nearest even: exact for the
// parts split() makes, except a last part that is not (P with fewer than three parts).
inline __m512i narrow(__m512 a, __m512 b) { return (__m512i)_mm512_cvtne2ps_pbh(b, a); }

// 16 32-bit words: low half = bf16 of lo's lane, high half = bf16 of hi's lane.
inline __m512i pair_words(__m512 lo, __m512 hi) {
  return _mm512_mask_blend_epi16(0xAAAAAAAAu, _mm512_srli_epi32(_mm512_castps_si512(lo), 16),
                                 _mm512_castps_si512(hi));
}

// Elements [i, i + 16) of a row of the caller's q / k / v (float32, float16 or bfloat16 bits) as
// float32, lanes at or past n zero: read straight from the input, no float32 copy of K / V.
inline __m512 load16(const void* base, DType dt, int64_t offset, int64_t n) {
  const __mmask16 mask = n >= 16 ? __mmask16(0xFFFF) : n <= 0 ? __mmask16(0) : __mmask16((1u << n) - 1);
  if (dt == DType::f32) return _mm512_maskz_loadu_ps(mask, static_cast<const float*>(base) + offset);
  const __m256i h = _mm256_maskz_loadu_epi16(mask, static_cast<const uint16_t*>(base) + offset);
  if (dt == DType::f16) return _mm512_cvtph_ps(h);
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

// The part products x_i * y_j with i + j <= 2 are summed: part i of one operand pairs with parts
// j < partners(i, nb) of the other (nb parts).
constexpr int partners(int i, int nb) { return nb < 3 - i ? nb : 3 - i; }

int parts_of(DType dt) { return dt == DType::f32 ? 3 : dt == DType::f16 ? 2 : 1; }

struct Plan {
  const Ctx* cx;
  int64_t D, Dq, Dc;   // head dim, padded to 16 (V / O channels) and to 32 (QK reduction)
  int64_t NK;          // keys padded to a multiple of kKB
  int np;              // parts of q, k and v (P's part count is forward_tasks' NPP)
  int64_t ND, CT;      // 32-channel reduction steps, 16-channel output tiles
  int64_t k_head, v_head;  // packed elements per key/value head
  uint16_t* kp;        // (B * Hkv) x [key tile][part][step] tiles
  uint16_t* vp;        // (B * Hkv) x [32-key chunk][part][channel tile] tiles
  int64_t QB;          // query rows per task (a multiple of kRows)
  explicit Plan(int np_) : np(np_) {}
};

// Valid keys of batch entry b, and where the packed tiles of its kv head h start.
struct HeadTiles {
  int64_t kl;
  uint16_t* out;
};
inline HeadTiles head_tiles(const AttentionParams& p, int64_t b, int64_t h, uint16_t* base, int64_t per_head) {
  return {p.kv_lens ? p.kv_lens[b] : p.kv_len, base + (b * p.kv_heads + h) * per_head};
}

// K tiles of one (b, kv head): tile (kt, part, step) row r, word j = channels
// (32 step + 2r, +1) of key 16 kt + j, as bf16 part `part`. Keys >= kl are zero.
void pack_k(const Plan& pl, int64_t b, int64_t h, int64_t kt0, int64_t kt1) {
  const AttentionParams& p = *pl.cx->p;
  const auto [kl, out] = head_tiles(p, b, h, pl.kp, pl.k_head);
  const int64_t off = b * p.k_stride[0] + h * p.k_stride[1];
  for (int64_t kt = kt0; kt < kt1; ++kt)
    for (int64_t s = 0; s < pl.ND; ++s) {
      __m512 w[3][16];
      for (int j = 0; j < 16; ++j) {
        const int64_t key = kt * 16 + j, c0 = s * 32, n = key < kl ? pl.D - c0 : 0;
        __m512 lo[3], hi[3];
        split(load16(p.k, p.dtype, off + key * p.k_stride[2] + c0, n), pl.np, lo);
        split(load16(p.k, p.dtype, off + key * p.k_stride[2] + c0 + 16, n - 16), pl.np, hi);
        for (int q = 0; q < pl.np; ++q) w[q][j] = _mm512_castsi512_ps(narrow(lo[q], hi[q]));
      }
      for (int q = 0; q < pl.np; ++q) {
        transpose16x16(w[q]);
        uint16_t* t = out + ((kt * pl.np + q) * pl.ND + s) * kTileElems;
        for (int r = 0; r < 16; ++r) _mm512_store_ps(reinterpret_cast<float*>(t + r * 32), w[q][r]);
      }
    }
}

// V tiles of one (b, kv head): tile (kc, part, ct) row r, word c = channel 16 ct + c of keys
// 32 kc + 2r and + 1, as bf16 part `part`. Keys >= kl are zero.
void pack_v(const Plan& pl, int64_t b, int64_t h, int64_t kc0, int64_t kc1) {
  const AttentionParams& p = *pl.cx->p;
  const auto [kl, out] = head_tiles(p, b, h, pl.vp, pl.v_head);
  const int64_t off = b * p.v_stride[0] + h * p.v_stride[1];
  for (int64_t kc = kc0; kc < kc1; ++kc)
    for (int r = 0; r < 16; ++r) {
      const int64_t k0 = kc * 32 + 2 * r;
      for (int64_t ct = 0; ct < pl.CT; ++ct) {
        const int64_t n = pl.D - ct * 16;
        const __m512 x0 = load16(p.v, p.dtype, off + k0 * p.v_stride[2] + ct * 16, k0 < kl ? n : 0);
        const __m512 x1 = load16(p.v, p.dtype, off + (k0 + 1) * p.v_stride[2] + ct * 16, k0 + 1 < kl ? n : 0);
        __m512 a[3], c[3];
        split(x0, pl.np, a);
        split(x1, pl.np, c);
        for (int q = 0; q < pl.np; ++q)
          _mm512_store_si512(out + ((kc * pl.np + q) * pl.CT + ct) * kTileElems + r * 32, pair_words(a[q], c[q]));
      }
    }
}

// A growing buffer (not std::vector: this file is compiled for AVX-512 + AMX, and an out-of-line
// std:: template instantiated here could be the copy the linker keeps for every other file).
struct Buffer {
  uint16_t* p = nullptr;
  size_t n = 0;
  ~Buffer() { release(); }
  uint16_t* get(size_t m) {
    if (m > n) {
      release();
      p = new uint16_t[m];
      n = m;
    }
    return p;
  }
  void release() {
    delete[] p;
    p = nullptr;
    n = 0;
  }
};

// Packed K / V above this size are freed after their call rather than kept for the next one.
constexpr size_t kKeepBytes = size_t(64) << 20;

// Per-thread scratch of one task: QB query rows in kRows-row sub-blocks.
struct Scratch {
  std::unique_ptr<float[]> raw;
  uint16_t* qp;   // [part][QB rows][Dc] bf16
  uint16_t* pp;   // [part][kRows][kKB] bf16 (one sub-block at a time)
  float* s;       // [kRows][kKB] scores
  float* o;       // [QB][Dq] output accumulators
  float* lsum;    // [QB][16] per-row partial sums of P
  float *m, *lim, *mu;  // [QB] running max, key limit, subtracted max
  explicit Scratch(const Plan& pl) {
    const int64_t QB = pl.QB;
    const int64_t n_qp = 3 * QB * pl.Dc / 2, n_pp = 3 * kRows * kKB / 2;  // in floats
    const int64_t n = n_qp + n_pp + kRows * kKB + QB * pl.Dq + QB * 16 + 3 * QB + 16;
    raw.reset(new float[n]);
    float* base = raw.get() + (64 - (reinterpret_cast<uintptr_t>(raw.get()) & 63)) / 4 % 16;  // 64-byte aligned
    qp = reinterpret_cast<uint16_t*>(base);
    pp = reinterpret_cast<uint16_t*>(base + n_qp);
    s = base + n_qp + n_pp;
    o = s + kRows * kKB;
    lsum = o + QB * pl.Dq;
    m = lsum + QB * 16;
    lim = m + QB, mu = lim + QB;
  }
};

// Q rows [r0, r0 + vrows) of (b, h) into qp parts; zero rows past vrows. (Unscaled: the scale
// is applied to S in float32, so bfloat16 / float16 queries keep their one / two exact parts.)
void pack_q(const Plan& pl, Scratch& w, int64_t b, int64_t h, int64_t r0, int64_t vrows) {
  const AttentionParams& p = *pl.cx->p;
  const int64_t qoff = b * p.q_stride[0] + h * p.q_stride[1];
  for (int64_t i = 0; i < pl.QB; ++i) {
    const int64_t row = qoff + (r0 + i) * p.q_stride[2];
    for (int64_t c = 0; c < pl.Dc; c += 32) {
      const int64_t n = i < vrows ? pl.D - c : 0;
      __m512 lo[3], hi[3];
      split(load16(p.q, p.dtype, row + c, n), pl.np, lo);
      split(load16(p.q, p.dtype, row + c + 16, n - 16), pl.np, hi);
      for (int q = 0; q < pl.np; ++q) _mm512_store_si512(w.qp + (q * pl.QB + i) * pl.Dc + c, narrow(lo[q], hi[q]));
    }
  }
}

// S = Q' K'^T for sub-block rows [r, r + 32) and keys [c0, c0 + kKB): 32-key column pairs of
// 2 x 2 output tiles (one row of tiles when only the first 16 rows hold queries).
template <int NP, int NPP>
void qk_block(const Plan& pl, Scratch& w, const uint16_t* kp, int64_t r, int64_t c0, int nh, bool two) {
  const int64_t lda = pl.Dc * 2, ldk = 64, lds = kKB * 4;
  for (int half = 0; half < nh; ++half) {
    const int64_t kt = (c0 + 32 * half) / 16;
    _tile_zero(0);
    _tile_zero(1);
    if (two) {
      _tile_zero(2);
      _tile_zero(3);
    }
    for (int64_t s = 0; s < pl.ND; ++s)
      for (int i = 0; i < NP; ++i) {  // Q part i stays in tiles 4 / 5 for every K part it pairs with
        const uint16_t* qa = w.qp + (i * pl.QB + r) * pl.Dc + s * 32;
        _tile_loadd(4, qa, lda);
        if (two) _tile_loadd(5, qa + 16 * pl.Dc, lda);
        for (int j = 0; j < partners(i, NP); ++j) {
          const uint16_t* kb0 = kp + ((kt * NP + j) * pl.ND + s) * kTileElems;
          const uint16_t* kb1 = kp + (((kt + 1) * NP + j) * pl.ND + s) * kTileElems;
          _tile_loadd(6, kb0, ldk);
          _tile_loadd(7, kb1, ldk);
          _tile_dpbf16ps(0, 4, 6);
          _tile_dpbf16ps(1, 4, 7);
          if (two) {
            _tile_dpbf16ps(2, 5, 6);
            _tile_dpbf16ps(3, 5, 7);
          }
        }
      }
    _tile_stored(0, w.s + 32 * half, lds);
    _tile_stored(1, w.s + 32 * half + 16, lds);
    if (two) {
      _tile_stored(2, w.s + 16 * kKB + 32 * half, lds);
      _tile_stored(3, w.s + 16 * kKB + 32 * half + 16, lds);
    }
  }
}

// O rows [r, r + 32) += P' V' for the block's keys: per pair of 16-channel tiles, the O tiles
// are loaded from memory, accumulated over every (part pair, 32-key half) and stored back.
template <int NP, int NPP>
void pv_block(const Plan& pl, Scratch& w, const uint16_t* vp, int64_t r, int64_t c0, int nh, bool two) {
  const int64_t ldo = pl.Dq * 4, ldp = kKB * 2, ldv = 64;
  const int64_t kc = c0 / 32;
  for (int64_t ct = 0; ct < pl.CT; ct += 2) {
    const bool wide = ct + 1 < pl.CT;
    float* o = w.o + r * pl.Dq + ct * 16;
    _tile_loadd(0, o, ldo);
    if (wide) _tile_loadd(1, o + 16, ldo);
    if (two) {
      _tile_loadd(2, o + 16 * pl.Dq, ldo);
      if (wide) _tile_loadd(3, o + 16 * pl.Dq + 16, ldo);
    }
    for (int half = 0; half < nh; ++half)
      for (int i = 0; i < NPP; ++i) {  // P part i stays in tiles 4 / 5 for every V part it pairs with
        const uint16_t* pa = w.pp + i * kRows * kKB + half * 32;
        _tile_loadd(4, pa, ldp);
        if (two) _tile_loadd(5, pa + 16 * kKB, ldp);
        for (int j = 0; j < partners(i, NP); ++j) {
          const uint16_t* vb = vp + (((kc + half) * NP + j) * pl.CT + ct) * kTileElems;
          _tile_loadd(6, vb, ldv);
          _tile_dpbf16ps(0, 4, 6);
          if (wide) {
            _tile_loadd(7, vb + kTileElems, ldv);
            _tile_dpbf16ps(1, 4, 7);
          }
          if (two) {
            _tile_dpbf16ps(2, 5, 6);
            if (wide) _tile_dpbf16ps(3, 5, 7);
          }
        }
      }
    _tile_stored(0, o, ldo);
    if (wide) _tile_stored(1, o + 16, ldo);
    if (two) {
      _tile_stored(2, o + 16 * pl.Dq, ldo);
      if (wide) _tile_stored(3, o + 16 * pl.Dq + 16, ldo);
    }
  }
}

// P = exp2(x) for the 32 keys [16 v, 16 v + 32) of row i: added to `sum`, counted in `ok` when
// <= 2^16 (NaN is not), and written as NPP bf16 parts into pp.
template <int NPP>
inline void emit_pair(Scratch& w, int i, int v, __m512 x0, __m512 x1, bool clamp, __m512& sum, __mmask16& ok) {
  const __m512 cap = _mm512_set1_ps(65536.0f);
  const __m512 e0 = clamp ? exp2_avx512_clamped(x0) : exp2_avx512(x0);
  const __m512 e1 = clamp ? exp2_avx512_clamped(x1) : exp2_avx512(x1);
  ok &= _mm512_cmp_ps_mask(e0, cap, _CMP_LE_OQ) & _mm512_cmp_ps_mask(e1, cap, _CMP_LE_OQ);
  sum = _mm512_add_ps(sum, _mm512_add_ps(e0, e1));
  __m512 lo[3], hi[3];
  split(e0, NPP, lo);
  split(e1, NPP, hi);
  for (int q = 0; q < NPP; ++q) _mm512_store_si512(w.pp + (q * kRows + i) * kKB + 16 * v, narrow(lo[q], hi[q]));
}

// Online-softmax step over S (sub-block rows [r, r + nrows), keys [c0, c0 + kKB)), one row at a
// time, writing P = exp2(S - m) as bf16 parts into pp and adding it to the row's sums.
//
// Every block after a row's first takes the lazy step: it is exponentiated against the row's
// running max as it stands, with no row max, no horizontal reduction and no rescale. That is
// exact (O and the sums share the max they are relative to, and the final O / l cancels it) and
// is kept when every P <= 2^16 (NaN fails the test), so nothing can overflow. Otherwise (a row's
// first block, a max that grew by more than 16 in log2 units) the ordinary step finds the row
// max, moves the running max (rescaling the row's O and sums) and rewrites P. Both mask keys at
// or past the row's limit in blocks that cross some row's limit.
template <int NP, int NPP>
void softmax_block(const Plan& pl, Scratch& w, int64_t r, int64_t c0, int nrows, bool masked) {
  const __m512 ninf = _mm512_set1_ps(kNegInf);
  const __m512 lane = _mm512_set_ps(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
  const __m512 qs = _mm512_set1_ps(pl.cx->qscale);  // scores to log2 units
  for (int i = 0; i < nrows; ++i) {
    const float* srow = w.s + i * kKB;
    float* lrow = w.lsum + (r + i) * 16;
    const float m_old = w.m[r + i];
    const __m512 lim = _mm512_set1_ps(w.lim[r + i]);
    auto masked_off = [&](int v, __m512 x) {  // -inf at or past the row's key limit
      if (!masked) return x;
      const __m512 key = _mm512_add_ps(lane, _mm512_set1_ps(float(c0 + 16 * v)));
      return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(key, lim, _CMP_LT_OQ), ninf, x);
    };
    __m512 sum = _mm512_setzero_ps();
    __mmask16 ok = 0;
    if (m_old != kNegInf) {
      const __m512 mv = _mm512_set1_ps(m_old);
      auto x = [&](int v) { return masked_off(v, _mm512_fmsub_ps(_mm512_load_ps(srow + 16 * v), qs, mv)); };
      ok = 0xFFFF;
      for (int v = 0; v < kVec; v += 2) emit_pair<NPP>(w, i, v, x(v), x(v + 1), masked, sum, ok);
      if (ok == 0xFFFF) {
        _mm512_store_ps(lrow, _mm512_add_ps(_mm512_load_ps(lrow), sum));
        continue;
      }
      sum = _mm512_setzero_ps();
    }
    auto scores = [&](int v) { return masked_off(v, _mm512_mul_ps(_mm512_load_ps(srow + 16 * v), qs)); };
    __m512 mxv = scores(0);
    for (int v = 1; v < kVec; ++v) mxv = _mm512_max_ps(mxv, scores(v));
    const float mx = _mm512_reduce_max_ps(mxv);
    if (mx > m_old) {  // the max moved (NaN never does: its P is NaN below and reaches O)
      if (m_old != kNegInf) {  // O and the sums are still zero while a row has seen no key
        const __m512 av = _mm512_set1_ps(std::exp2(m_old - mx));
        float* orow = w.o + (r + i) * pl.Dq;
        for (int64_t c = 0; c < pl.Dq; c += 16) _mm512_store_ps(orow + c, _mm512_mul_ps(_mm512_load_ps(orow + c), av));
        _mm512_store_ps(lrow, _mm512_mul_ps(_mm512_load_ps(lrow), av));
      }
      w.m[r + i] = w.mu[r + i] = mx;  // mu stays 0 for a row with no key yet: exp2(-inf - 0) = 0
    }
    const __m512 mv = _mm512_set1_ps(w.mu[r + i]);
    for (int v = 0; v < kVec; v += 2)
      emit_pair<NPP>(w, i, v, _mm512_sub_ps(scores(v), mv), _mm512_sub_ps(scores(v + 1), mv), true, sum, ok);
    _mm512_store_ps(lrow, _mm512_add_ps(_mm512_load_ps(lrow), sum));
  }
}

// Tasks (b, head, QB query rows). Keys advance in kKB blocks, each used by every kRows-row
// sub-block while it is in cache: the packed K and V of a block are read from memory once per
// QB rows rather than once per tile row.
template <int NP, int NPP>
void forward_tasks(const Plan& pl, int64_t t0, int64_t t1) {
  FlushDenormals ftz;
  TileScope tiles;
  const Ctx& cx = *pl.cx;
  const AttentionParams& p = *cx.p;
  const int64_t G = p.q_heads / p.kv_heads, QB = pl.QB, nsub = QB / kRows;
  Scratch w(pl);
  std::unique_ptr<int64_t[]> kend_sb(new int64_t[nsub]), lim_min(new int64_t[nsub]);
  for (int64_t t = t0; t < t1; ++t) {
    const int64_t qb = t % cx.nqb, bh = t / cx.nqb, h = bh % p.q_heads, b = bh / p.q_heads;
    const int64_t ql = p.q_lens ? p.q_lens[b] : p.q_len, kl = p.kv_lens ? p.kv_lens[b] : p.kv_len;
    const int64_t r0 = qb * QB, rows = std::min<int64_t>(QB, p.q_len - r0);
    const int64_t vrows = std::max<int64_t>(0, std::min(rows, ql - r0));
    const int64_t ooff = b * p.out_stride[0] + h * p.out_stride[1];
    float* lse = p.lse ? p.lse + (b * p.q_heads + h) * p.q_len : nullptr;
    const int64_t kvh = b * p.kv_heads + h / G;
    const uint16_t* kp = pl.kp + kvh * pl.k_head;
    const uint16_t* vp = pl.vp + kvh * pl.v_head;

    int64_t kend = 0;
    for (int64_t sb = 0; sb < nsub; ++sb) {
      const int64_t v = std::max<int64_t>(0, std::min<int64_t>(kRows, vrows - sb * kRows));
      kend_sb[sb] = v > 0 ? key_limit(p.causal, r0 + sb * kRows + v - 1, ql, kl) : 0;
      kend = std::max(kend, kend_sb[sb]);
      lim_min[sb] = kl;
    }
    for (int64_t i = 0; i < QB; ++i) {
      const int64_t lim = i < vrows ? key_limit(p.causal, r0 + i, ql, kl) : 0;
      if (i < vrows) lim_min[i / kRows] = std::min(lim_min[i / kRows], lim);
      w.lim[i] = float(lim);
      w.m[i] = kNegInf;
      w.mu[i] = 0.0f;
    }
    std::memset(w.o, 0, sizeof(float) * QB * pl.Dq);
    std::memset(w.lsum, 0, sizeof(float) * QB * 16);
    if (kend > 0) pack_q(pl, w, b, h, r0, vrows);
    for (int64_t c0 = 0; c0 < kend; c0 += kKB)
      for (int64_t sb = 0; sb < nsub; ++sb) {
        if (c0 >= kend_sb[sb]) continue;  // causal: no visible key left for these rows
        const int64_t r = sb * kRows;
        const bool two = vrows - r > 16;
        // 32-key columns holding a key some row of the sub-block can see; the rest of a block
        // that crosses every row's limit is masked in the softmax and skipped on the tiles.
        const int nh = int(std::min<int64_t>(kHalves, (kend_sb[sb] - c0 + 31) / 32));
        qk_block<NP, NPP>(pl, w, kp, r, c0, nh, two);
        softmax_block<NP, NPP>(pl, w, r, c0, two ? kRows : 16, c0 + kKB > lim_min[sb]);
        pv_block<NP, NPP>(pl, w, vp, r, c0, nh, two);
      }
    for (int64_t i = 0; i < rows; ++i)
      write_row(p, ooff + (r0 + i) * p.out_stride[2], lse, r0 + i, w.o + i * pl.Dq,
                i < vrows ? _mm512_reduce_add_ps(_mm512_load_ps(w.lsum + i * 16)) : 0.0f, w.mu[i]);
  }
}

// Whether every valid row of q, k and v is finite. The part split is exact for finite values
// only: +-inf leaves an inf - inf remainder, and a zero part times an infinite one is NaN where
// float32 arithmetic gives +-inf (and, after the softmax, possibly a finite row).
bool inputs_finite(const AttentionParams& p) {
  std::atomic<bool> ok{true};
  const int64_t D = p.head_dim;
  auto scan = [&](const void* base, const int64_t* st, int64_t heads, int64_t len, const int32_t* lens) {
    parallel_for(p.batch * heads, 1, [&](int64_t i0, int64_t i1) {
      __mmask16 bad = 0;
      for (int64_t i = i0; i < i1 && ok.load(std::memory_order_relaxed); ++i) {
        const int64_t b = i / heads, h = i % heads, n = lens ? lens[b] : len;
        for (int64_t j = 0; j < n; ++j)
          for (int64_t c = 0; c < D; c += 16)
            bad |= _mm512_fpclass_ps_mask(load16(base, p.dtype, b * st[0] + h * st[1] + j * st[2] + c, D - c),
                                          0x99);  // NaN, +inf, -inf
        if (bad) ok = false;
      }
    });
  };
  scan(p.q, p.q_stride, p.q_heads, p.q_len, p.q_lens);
  scan(p.k, p.k_stride, p.kv_heads, p.kv_len, p.kv_lens);
  scan(p.v, p.v_stride, p.kv_heads, p.kv_len, p.kv_lens);
  return ok;
}

// fn(b, h, i0, i1) over runs [i0, i1) of the per_head items of each (batch entry, kv head), in
// parallel chunks of about `grain` items that never straddle two heads.
template <class F>
void for_head_runs(const AttentionParams& p, int64_t per_head, int64_t grain, F fn) {
  parallel_for(p.batch * p.kv_heads * per_head, grain, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1;) {
      const int64_t bh = i / per_head, e = std::min(i1, (bh + 1) * per_head);
      fn(bh / p.kv_heads, bh % p.kv_heads, i - bh * per_head, e - bh * per_head);
      i = e;
    }
  });
}

}  // namespace

bool forward_amx(const Ctx& cx_in) {
  Ctx cx = cx_in;
  const AttentionParams& p = *cx.p;
  const int np = parts_of(p.dtype);
  if (np > 1 && !inputs_finite(p)) return false;
  Plan pl(np);
  pl.cx = &cx;
  pl.D = p.head_dim;
  pl.Dq = round_up(pl.D, 16);
  pl.Dc = round_up(pl.D, 32);
  pl.NK = round_up(std::max<int64_t>(p.kv_len, 1), kKB);
  pl.ND = pl.Dc / 32;
  pl.CT = pl.Dq / 16;
  pl.k_head = (pl.NK / 16) * pl.np * pl.ND * kTileElems;
  pl.v_head = (pl.NK / 32) * pl.np * pl.CT * kTileElems;
  const int64_t heads = p.batch * p.kv_heads;
  // 64-byte aligned packed buffers, kept by the calling thread from call to call up to
  // kKeepBytes: a fresh allocation is fresh pages, and faulting them in cost more than a short
  // call (decoder steps) itself.
  static thread_local Buffer kbuf, vbuf;
  auto align64 = [](uint16_t* q) { return q + (64 - (reinterpret_cast<uintptr_t>(q) & 63)) / 2 % 32; };
  pl.kp = align64(kbuf.get(size_t(heads * pl.k_head + 32)));
  pl.vp = align64(vbuf.get(size_t(heads * pl.v_head + 32)));
  for_head_runs(p, pl.NK / 16, std::max<int64_t>(1, 64 / pl.ND), [&](int64_t b, int64_t h, int64_t i0, int64_t i1) {
    pack_k(pl, b, h, i0, i1);
  });
  for_head_runs(p, pl.NK / 32, std::max<int64_t>(1, 64 / pl.CT), [&](int64_t b, int64_t h, int64_t i0, int64_t i1) {
    pack_v(pl, b, h, i0, i1);
  });
  // Up to 4 sub-blocks (128 query rows) per task.
  const int64_t bh = p.batch * p.q_heads;
  pl.QB = task_rows(bh, p.q_len, 4 * kRows, kRows);
  cx.nqb = (p.q_len + pl.QB - 1) / pl.QB;
  parallel_for(bh * cx.nqb, task_grain(std::min<int64_t>(pl.QB, p.q_len), p),
               [&](int64_t t0, int64_t t1) {
    // <parts of q, k, v; parts of P>: P in three parts next to float32 and float16 values, in
    // one (rounded, as the GPU flash kernels keep it) next to bfloat16 ones.
    if (np == 1)
      forward_tasks<1, 1>(pl, t0, t1);
    else if (np == 2)
      forward_tasks<2, 3>(pl, t0, t1);
    else
      forward_tasks<3, 3>(pl, t0, t1);
  });
  for (Buffer* b : {&kbuf, &vbuf})
    if (b->n * sizeof(uint16_t) > kKeepBytes) b->release();
  return true;
}

}  // namespace attn
}  // namespace sonicore

#endif  // SONICORE_HAVE_AMX_KERNELS && x86
