// sonicore._C.nn_*: argument checks for the fused nn kernels, GIL released around the work.
#include <pybind11/numpy.h>

#include "bindings.h"
#include "sonicore/nn.h"
#include "sonicore/vocoder.h"
#include "sonicore/winograd.h"

namespace sonicore_py {

namespace {

py::buffer_info f32(const py::array& a, const char* name, int ndim, bool writable = false) {
  require(py::isinstance<py::array_t<float>>(a) && a.dtype().is(py::dtype::of<float>()),
          std::string(name) + " must be a float32 array");
  py::buffer_info b = a.request(writable);
  require(b.ndim == ndim, std::string(name) + " must have " + std::to_string(ndim) + " dimensions");
  require(b.strides[ndim - 1] == static_cast<py::ssize_t>(sizeof(float)),
          std::string(name) + " needs a unit stride on its last axis");
  for (int i = 0; i < ndim; ++i)
    require(b.strides[i] % static_cast<py::ssize_t>(sizeof(float)) == 0 && b.strides[i] >= 0,
            std::string(name) + " has unsupported strides");
  return b;
}

bool contiguous(const py::buffer_info& b) {
  py::ssize_t s = sizeof(float);
  for (int i = b.ndim - 1; i >= 0; --i) {
    if (b.shape[i] != 1 && b.strides[i] != s) return false;
    s *= b.shape[i];
  }
  return true;
}

int64_t el(const py::buffer_info& b, int i) { return b.shape[i] == 1 ? 0 : b.strides[i] / sizeof(float); }
}  // namespace

void bind_nn(py::module_& m) {
  m.def("nn_adaln_layernorm", [](py::array x, py::array shift, py::array scale, py::array out, float eps,
                                 int64_t taps) {
    auto bx = f32(x, "x", 3), bs = f32(shift, "shift", 3), bc = f32(scale, "scale", 3), bo = f32(out, "out", 3, true);
    require(contiguous(bx) && contiguous(bo), "x and out must be contiguous");
    const int64_t B = bx.shape[0], N = bx.shape[1], D = bx.shape[2];
    require(taps >= 1 && taps % 2 == 1, "taps must be a positive odd number");
    require(bo.shape[0] == B && bo.shape[1] == N && bo.shape[2] == taps * D, "out must be (B, N, taps*D)");
    for (auto* b : {&bs, &bc})
      require(b->shape[0] == B && (b->shape[1] == 1 || b->shape[1] == N) && b->shape[2] == D,
              "shift/scale must be (B, 1 or N, D)");
    require(eps > 0, "eps must be positive");
    sonicore::AdaLNArgs a{static_cast<const float*>(bx.ptr), static_cast<float*>(bo.ptr), B, N, D,
                          static_cast<const float*>(bs.ptr), el(bs, 0), el(bs, 1),
                          static_cast<const float*>(bc.ptr), el(bc, 0), el(bc, 1), eps, taps};
    py::gil_scoped_release nogil;
    sonicore::adaln_layernorm_f32(a);
  }, "LayerNorm (no affine) then x*(1+scale)+shift; float32 (B, N, D).");

  m.def("nn_qk_norm_rope", [](py::array qkv, int64_t H, py::array qw, py::array kw, py::object rot,
                              py::array q, py::array k, py::array v, float eps) {
    auto bq = f32(qkv, "qkv", 3);
    require(contiguous(bq), "qkv must be contiguous");
    require(H > 0 && bq.shape[2] % (3 * H) == 0, "qkv's last axis must be 3*heads*head_dim");
    const int64_t B = bq.shape[0], N = bq.shape[1], hd = bq.shape[2] / (3 * H);
    require(hd % 2 == 0 && hd <= 512, "head dim must be even and at most 512");
    auto bqw = f32(qw, "q_weight", 1), bkw = f32(kw, "k_weight", 1);
    require(bqw.shape[0] == hd && bkw.shape[0] == hd, "q/k norm weights must have head_dim entries");
    const float* rp = nullptr;
    if (!rot.is_none()) {
      auto br = f32(rot.cast<py::array>(), "rot", 4);
      require(contiguous(br) && br.shape[0] == N && br.shape[1] == hd / 2 && br.shape[2] == 2 && br.shape[3] == 2,
              "rot must be a contiguous (N, hd/2, 2, 2) table");
      rp = static_cast<const float*>(br.ptr);
    }
    sonicore::QKNormRopeArgs a{};
    a.qkv = static_cast<const float*>(bq.ptr); a.B = B; a.N = N; a.H = H; a.hd = hd;
    a.q_weight = static_cast<const float*>(bqw.ptr); a.k_weight = static_cast<const float*>(bkw.ptr);
    a.rot = rp; a.eps = eps;
    py::array outs[3] = {q, k, v};
    for (int j = 0; j < 3; ++j) {
      auto bo = f32(outs[j], "out", 4, true);
      require(bo.shape[0] == B && bo.shape[1] == H && bo.shape[2] == N && bo.shape[3] == hd,
              "outputs must be (B, H, N, hd)");
      a.out[j] = static_cast<float*>(bo.ptr);
      a.out_sb[j] = el(bo, 0); a.out_sh[j] = el(bo, 1); a.out_sn[j] = el(bo, 2);
    }
    require(eps > 0, "eps must be positive");
    py::gil_scoped_release nogil;
    sonicore::qk_norm_rope_f32(a);
  }, "Split interleaved qkv, RMSNorm q/k, RoPE; float32.");

  m.def("nn_swiglu", [](py::array h, py::array out, int64_t taps) {
    auto bh = f32(h, "h", 3), bo = f32(out, "out", 3, true);
    require(contiguous(bh) && contiguous(bo), "h and out must be contiguous");
    require(taps >= 1 && taps % 2 == 1, "taps must be a positive odd number");
    require(bh.shape[2] % 2 == 0 && bo.shape[0] == bh.shape[0] && bo.shape[1] == bh.shape[1] &&
            bo.shape[2] * 2 == bh.shape[2] * taps, "h must be (B, N, 2F) and out (B, N, taps*F)");
    const float* hp = static_cast<const float*>(bh.ptr);
    float* op = static_cast<float*>(bo.ptr);
    const int64_t B = bh.shape[0], N = bh.shape[1], F = bh.shape[2] / 2;
    py::gil_scoped_release nogil;
    sonicore::swiglu_f32(hp, op, B, N, F, taps);
  }, "silu(a) * b for h = [a | b]; float32 (B, N, 2F) -> (B, N, taps*F).");

  m.def("nn_merge_heads", [](py::array o, py::array out, int64_t taps) {
    auto bo = f32(o, "o", 4), bt = f32(out, "out", 3, true);
    require(contiguous(bt), "out must be contiguous");
    require(taps >= 1 && taps % 2 == 1, "taps must be a positive odd number");
    const int64_t B = bo.shape[0], H = bo.shape[1], N = bo.shape[2], hd = bo.shape[3];
    require(bt.shape[0] == B && bt.shape[1] == N && bt.shape[2] == taps * H * hd, "out must be (B, N, taps*H*hd)");
    const float* op = static_cast<const float*>(bo.ptr);
    float* tp = static_cast<float*>(bt.ptr);
    const int64_t sb = bo.strides[0] / 4, sh = bo.strides[1] / 4, sn = bo.strides[2] / 4;
    py::gil_scoped_release nogil;
    sonicore::merge_heads_f32(op, B, H, N, hd, sb, sh, sn, tp, taps);
  }, "(B, H, N, hd) attention output -> (B, N, taps*H*hd).");

  m.def("nn_aa_snake", [](py::array x, py::array alpha, py::array inv_beta, py::array up_filter,
                          py::array down_filter, py::array out) {
    auto bx = f32(x, "x", 3), bo = f32(out, "out", 3, true);
    require(contiguous(bx) && contiguous(bo), "x and out must be contiguous (B, C, T) arrays");
    const int64_t B = bx.shape[0], C = bx.shape[1], T = bx.shape[2];
    require(C >= 1 && T >= 1, "x must have at least one channel and one sample");
    require(bo.shape[0] == B && bo.shape[1] == C && bo.shape[2] == T, "out must have the shape of x");
    auto ba = f32(alpha, "alpha", 1), bb = f32(inv_beta, "inv_beta", 1);
    require(ba.shape[0] == C && bb.shape[0] == C, "alpha and inv_beta must have one entry per channel");
    auto bu = f32(up_filter, "up_filter", 1), bd = f32(down_filter, "down_filter", 1);
    require(bu.shape[0] == sonicore::kAASnakeTaps && bd.shape[0] == sonicore::kAASnakeTaps,
            "the up/down filters must have 12 taps");
    require(bx.ptr != bo.ptr, "out must not alias x");
    sonicore::AASnakeArgs a{static_cast<const float*>(bx.ptr), static_cast<float*>(bo.ptr), B * C, T, C,
                            static_cast<const float*>(ba.ptr), static_cast<const float*>(bb.ptr),
                            static_cast<const float*>(bu.ptr), static_cast<const float*>(bd.ptr)};
    py::gil_scoped_release nogil;
    sonicore::aa_snake_f32(a);
  }, "BigVGAN anti-aliased Snake: upsample x2, x + inv_beta*sin(alpha*x)^2, low-pass + downsample x2; "
     "float32 (B, C, T).");
  m.def("nn_winograd_input", [](py::array x, py::object lens, int64_t m_, int64_t r, py::array bt, py::array out) {
    auto bx = f32(x, "x", 3), bb = f32(bt, "bt", 2), bo = f32(out, "out", 3, true);
    require(m_ >= 1 && r >= 1 && r % 2 == 1 && m_ + r - 1 <= 16, "need m >= 1, an odd r and m + r - 1 <= 16");
    const int64_t B = bx.shape[0], N = bx.shape[1], C = bx.shape[2], alpha = m_ + r - 1, T = (N + m_ - 1) / m_;
    require(C >= 1, "x needs at least one channel");
    require(bb.shape[0] == alpha && bb.shape[1] == alpha && contiguous(bb), "bt must be a contiguous (alpha, alpha) matrix");
    require(contiguous(bo) && bo.shape[0] == alpha && bo.shape[1] == B * T && bo.shape[2] == C,
            "out must be a contiguous (alpha, B*ceil(N/m), C) array");
    const int64_t* lp = nullptr;
    py::array_t<int64_t, py::array::c_style> la;
    if (!lens.is_none()) {
      la = py::array_t<int64_t, py::array::c_style>::ensure(lens);
      require(la && la.ndim() == 1 && la.shape(0) == B, "lens must be a (B,) int64 array");
      lp = la.data();
    }
    sonicore::WinogradInputArgs a{static_cast<const float*>(bx.ptr), B, N, C, el(bx, 0), el(bx, 1), lp, m_, r,
                                  static_cast<const float*>(bb.ptr), static_cast<float*>(bo.ptr)};
    py::gil_scoped_release nogil;
    sonicore::winograd_input_f32(a);
  }, "Winograd input transform: x (B, N, C) -> (alpha, B*ceil(N/m), C); frames >= lens[b] read as zero.");

  m.def("nn_winograd_output", [](py::array M, int64_t N, int64_t m_, py::array at, py::object bias, int mode,
                                 py::object res, py::object gate, py::array out) {
    auto bm = f32(M, "M", 3), ba = f32(at, "at", 2), bo = f32(out, "out", 3, true);
    require(contiguous(bm) && contiguous(ba), "M and at must be contiguous");
    const int64_t alpha = bm.shape[0], C = bm.shape[2];
    require(m_ >= 1 && alpha >= m_ && alpha <= 16 && ba.shape[0] == m_ && ba.shape[1] == alpha,
            "at must be (m, alpha) with m <= alpha <= 16");
    require(mode >= 0 && mode <= 2, "mode must be 0 (plain), 1 (gated) or 2 (swiglu)");
    const int64_t B = bo.shape[0], T = (N + m_ - 1) / m_;
    require(N >= 0 && bm.shape[1] == B * T, "M must be (alpha, B*ceil(N/m), C)");
    const int64_t Cout = mode == 2 ? C / 2 : C;
    require(mode != 2 || C % 2 == 0, "swiglu needs an even channel count");
    require(bo.shape[1] == N && bo.shape[2] == Cout, "out must be (B, N, C) (C/2 for swiglu)");
    const float* bp = nullptr;
    py::buffer_info bb;
    if (!bias.is_none()) {
      bb = f32(bias.cast<py::array>(), "bias", 1);
      require(bb.shape[0] == C, "bias must have one entry per channel of M");
      bp = static_cast<const float*>(bb.ptr);
    }
    sonicore::WinogradOutputArgs a{static_cast<const float*>(bm.ptr), B, N, C, m_, alpha,
                                   static_cast<const float*>(ba.ptr), bp,
                                   static_cast<sonicore::WinogradEpilogue>(mode),
                                   nullptr, 0, 0, nullptr, 0, 0,
                                   static_cast<float*>(bo.ptr), el(bo, 0), el(bo, 1)};
    py::buffer_info br, bg;
    if (mode == 1) {
      require(!res.is_none() && !gate.is_none(), "the gated epilogue needs res and gate");
      br = f32(res.cast<py::array>(), "res", 3);
      bg = f32(gate.cast<py::array>(), "gate", 3);
      require(br.shape[0] == B && br.shape[1] == N && br.shape[2] == C, "res must be (B, N, C)");
      require(bg.shape[0] == B && (bg.shape[1] == N || bg.shape[1] == 1) && bg.shape[2] == C,
              "gate must be (B, N or 1, C)");
      a.res = static_cast<const float*>(br.ptr); a.res_sb = el(br, 0); a.res_sn = el(br, 1);
      a.gate = static_cast<const float*>(bg.ptr); a.gate_sb = el(bg, 0); a.gate_sn = el(bg, 1);
      // out may alias res element for element (same strides), never partially.
      require(br.ptr != bo.ptr || (a.res_sb == a.out_sb && a.res_sn == a.out_sn), "out may alias res only exactly");
    }
    py::gil_scoped_release nogil;
    sonicore::winograd_output_f32(a);
  }, "Winograd output transform (alpha, B*T, C) -> (B, N, C) + bias, with a plain, gated-residual or "
     "SwiGLU epilogue.");
}

}  // namespace sonicore_py
