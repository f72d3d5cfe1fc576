// sonicore._C.attention_forward / attention_probs (/ attention_forward_cuda): argument checks,
// GIL release, one call into the core.
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <vector>

#include "bindings.h"
#include "sonicore/attention.h"

namespace sonicore_py {
namespace {

sonicore::DType parse_dtype(const std::string& s) {
  if (s == "float32") return sonicore::DType::f32;
  if (s == "float16") return sonicore::DType::f16;
  if (s == "bfloat16") return sonicore::DType::bf16;
  throw py::value_error("attention: dtype must be 'float32', 'float16' or 'bfloat16', got '" + s + "'");
}

// Checks a (B, H, N, D) array of the given dtype and returns its shape and element strides.
void describe(const py::array& a, const char* name, sonicore::DType dt, bool writable, int64_t shape[4],
              int64_t stride[3]) {
  require(a.ndim() == 4, std::string("attention: ") + name + " must be 4-D (B, H, N, D)");
  const py::dtype kind = a.dtype();
  const bool ok = dt == sonicore::DType::f32   ? (kind.kind() == 'f' && kind.itemsize() == 4)
                  : dt == sonicore::DType::f16 ? (kind.kind() == 'f' && kind.itemsize() == 2)
                                               : ((kind.kind() == 'i' || kind.kind() == 'u') && kind.itemsize() == 2);
  require(ok, std::string("attention: ") + name + " does not hold " + sonicore::dtype_name(dt) + " data");
  if (writable) require(a.writeable(), std::string("attention: ") + name + " must be writable");
  const int64_t item = kind.itemsize();
  for (int i = 0; i < 4; ++i) shape[i] = a.shape(i);
  for (int i = 0; i < 4; ++i) {
    require(a.strides(i) >= 0 && a.strides(i) % item == 0,
            std::string("attention: ") + name + " needs non-negative strides that are whole elements");
  }
  require(shape[3] <= 1 || a.strides(3) == item, std::string("attention: ") + name + " needs a contiguous last axis");
  for (int i = 0; i < 3; ++i) stride[i] = a.strides(i) / item;
}

const int32_t* lens_ptr(const py::object& o, const char* name, int64_t batch, int64_t limit) {
  if (o.is_none()) return nullptr;
  auto arr = py::cast<py::array>(o);
  require(arr.dtype().kind() == 'i' && arr.dtype().itemsize() == 4 && arr.ndim() == 1 && arr.shape(0) == batch &&
              (arr.flags() & py::array::c_style),
          std::string("attention: ") + name + " must be a contiguous int32 array of shape (B,)");
  const int32_t* p = static_cast<const int32_t*>(arr.data());
  for (int64_t b = 0; b < batch; ++b)
    require(p[b] >= 0 && p[b] <= limit, std::string("attention: ") + name + " values must lie in [0, " +
                                            std::to_string(limit) + "]");
  return p;
}

sonicore::AttentionParams make_params(const py::array& q, const py::array& k, const py::array* v,
                                      const std::string& dtype, double scale) {
  sonicore::AttentionParams p;
  p.dtype = parse_dtype(dtype);
  int64_t qs[4], ks[4], vs[4];
  describe(q, "q", p.dtype, false, qs, p.q_stride);
  describe(k, "k", p.dtype, false, ks, p.k_stride);
  if (v) {
    describe(*v, "v", p.dtype, false, vs, p.v_stride);
    for (int i = 0; i < 4; ++i) require(vs[i] == ks[i], "attention: k and v must have the same shape");
    p.v = v->data();
  }
  require(qs[0] == ks[0], "attention: q and k must share the batch size");
  require(qs[3] == ks[3], "attention: q and k must share the head dim");
  require(ks[1] >= 1 && qs[1] % ks[1] == 0, "attention: query heads must be a multiple of key/value heads");
  p.batch = qs[0];
  p.q_heads = qs[1];
  p.q_len = qs[2];
  p.head_dim = qs[3];
  p.kv_heads = ks[1];
  p.kv_len = ks[2];
  p.q = q.data();
  p.k = k.data();
  p.scale = static_cast<float>(scale);
  return p;
}

}  // namespace

void bind_attention(py::module_& m) {
  m.def(
      "attention_forward",
      [](py::array q, py::array k, py::array v, py::array out, py::object lse, const std::string& dtype,
         double scale, bool causal, py::object q_lens, py::object kv_lens, int isa) {
        sonicore::AttentionParams p = make_params(q, k, &v, dtype, scale);
        int64_t os[4];
        describe(out, "out", p.dtype, true, os, p.out_stride);
        require(os[0] == p.batch && os[1] == p.q_heads && os[2] == p.q_len && os[3] == p.head_dim,
                "attention: out must have q's shape");
        p.out = out.mutable_data();
        if (!lse.is_none()) {
          auto l = py::cast<py::array_t<float>>(lse);
          require((l.flags() & py::array::c_style) && l.writeable() && l.ndim() == 3 && l.shape(0) == p.batch &&
                      l.shape(1) == p.q_heads && l.shape(2) == p.q_len,
                  "attention: lse must be a writable contiguous float32 array of shape (B, Hq, Nq)");
          p.lse = l.mutable_data();
        }
        p.q_lens = lens_ptr(q_lens, "q_lens", p.batch, p.q_len);
        p.kv_lens = lens_ptr(kv_lens, "kv_lens", p.batch, p.kv_len);
        p.causal = causal;
        p.isa = isa;
        py::gil_scoped_release nogil;
        sonicore::attention_forward_cpu(p);
      },
      py::arg("q"), py::arg("k"), py::arg("v"), py::arg("out"), py::arg("lse"), py::arg("dtype"), py::arg("scale"),
      py::arg("causal"), py::arg("q_lens") = py::none(), py::arg("kv_lens") = py::none(), py::arg("isa") = -1,
      "CPU attention forward on (B, H, N, D) arrays (bfloat16 passed as int16 bit patterns).");

  m.def(
      "attention_probs",
      [](py::array q, py::array k, py::array_t<float> probs, std::vector<int32_t> heads, const std::string& dtype,
         double scale, py::object kv_lens, int isa) {
        sonicore::AttentionParams p = make_params(q, k, nullptr, dtype, scale);
        for (int32_t h : heads)
          require(h >= 0 && h < p.q_heads, "attention_probs: head index " + std::to_string(h) + " out of range");
        require((probs.flags() & py::array::c_style) && probs.writeable() && probs.ndim() == 4 &&
                    probs.shape(0) == p.batch && probs.shape(1) == static_cast<int64_t>(heads.size()) &&
                    probs.shape(2) == p.q_len && probs.shape(3) == p.kv_len,
                "attention_probs: probs must be a writable contiguous float32 array (B, len(heads), Nq, Nk)");
        p.kv_lens = lens_ptr(kv_lens, "kv_lens", p.batch, p.kv_len);
        p.isa = isa;
        float* out = probs.mutable_data();
        py::gil_scoped_release nogil;
        sonicore::attention_probs_cpu(p, heads.data(), static_cast<int64_t>(heads.size()), out);
      },
      py::arg("q"), py::arg("k"), py::arg("probs"), py::arg("heads"), py::arg("dtype"), py::arg("scale"),
      py::arg("kv_lens") = py::none(), py::arg("isa") = -1,
      "Softmax weights of selected heads, written to probs (B, len(heads), Nq, Nk) float32.");

#ifdef SONICORE_WITH_CUDA
  // Device tensors travel as integer pointers; the Python op has checked devices and dtypes,
  // this layer re-checks every size and stride before the launch.
  m.def(
      "attention_forward_cuda",
      [](uintptr_t q, uintptr_t k, uintptr_t v, uintptr_t out, uintptr_t lse, std::vector<int64_t> shape,
         std::vector<int64_t> qs, std::vector<int64_t> ks, std::vector<int64_t> vs, std::vector<int64_t> os,
         const std::string& dtype, double scale, bool causal, uintptr_t q_lens, uintptr_t kv_lens, uintptr_t stream) {
        require(shape.size() == 6, "attention: shape must be (B, Hq, Hkv, Nq, Nk, D)");
        require(qs.size() == 3 && ks.size() == 3 && vs.size() == 3 && os.size() == 3,
                "attention: strides must be (batch, head, sequence) triples");
        for (int64_t x : shape) require(x >= 0, "attention: sizes must be non-negative");
        for (int i = 0; i < 3; ++i)
          require(qs[i] >= 0 && ks[i] >= 0 && vs[i] >= 0 && os[i] >= 0, "attention: strides must be non-negative");
        require(q && k && v && out, "attention: null device pointer");
        sonicore::AttentionParams p;
        p.dtype = parse_dtype(dtype);
        p.batch = shape[0], p.q_heads = shape[1], p.kv_heads = shape[2];
        p.q_len = shape[3], p.kv_len = shape[4], p.head_dim = shape[5];
        require(p.kv_heads >= 1 && p.q_heads % p.kv_heads == 0,
                "attention: query heads must be a multiple of key/value heads");
        p.q = reinterpret_cast<const void*>(q);
        p.k = reinterpret_cast<const void*>(k);
        p.v = reinterpret_cast<const void*>(v);
        p.out = reinterpret_cast<void*>(out);
        p.lse = reinterpret_cast<float*>(lse);
        for (int i = 0; i < 3; ++i) p.q_stride[i] = qs[i], p.k_stride[i] = ks[i], p.v_stride[i] = vs[i], p.out_stride[i] = os[i];
        p.q_lens = reinterpret_cast<const int32_t*>(q_lens);
        p.kv_lens = reinterpret_cast<const int32_t*>(kv_lens);
        p.scale = static_cast<float>(scale);
        p.causal = causal;
        py::gil_scoped_release nogil;
        sonicore::attention_forward_cuda(p, reinterpret_cast<void*>(stream));
      },
      py::arg("q"), py::arg("k"), py::arg("v"), py::arg("out"), py::arg("lse"), py::arg("shape"), py::arg("q_strides"),
      py::arg("k_strides"), py::arg("v_strides"), py::arg("out_strides"), py::arg("dtype"), py::arg("scale"),
      py::arg("causal"), py::arg("q_lens") = 0, py::arg("kv_lens") = 0, py::arg("stream") = 0,
      "CUDA tensor-core attention forward (float16/bfloat16, head dim 64 or 128, sm_80+).");
  m.def("attention_cuda_kernels", []() { return std::string(sonicore::attention_cuda_kernels()); },
        "The CUDA attention kernels compiled in: 'mma', or 'mma,wgmma,wgmma-ws' with the sm_90a kernels.");
  m.def("attention_cuda_choice", []() { return std::string(sonicore::attention_cuda_choice()); },
        "The CUDA attention kernel SONICORE_CUDA_ATTENTION asks for ('mma' when unset); ValueError for "
        "a value that names none.");
#endif
}

}  // namespace sonicore_py
