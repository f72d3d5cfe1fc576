// sonicore._C.flow_step_cpu / flow_step_cuda: argument checks, GIL release, the call.
#include <pybind11/numpy.h>

#include <cstdint>
#include <string>

#include "bindings.h"
#include "sonicore/flow_step.h"

namespace sonicore_py {
namespace {

using sonicore::DType;

// A (rows, cols) view with unit column stride, as the kernel reads it.
struct Block {
  void* ptr = nullptr;
  int64_t rows = 0, cols = 0, stride = 0, itemsize = 0;
  py::buffer_info info;  // keeps the buffer alive and the view valid
  const char* lo() const { return static_cast<const char*>(ptr); }
  const char* hi() const { return lo() + ((rows - 1) * stride + cols) * itemsize; }
};

Block as_block(const py::buffer& b, const char* name, int64_t itemsize, bool writable) {
  Block k;
  k.info = b.request(writable);
  require(k.info.ndim == 2, std::string("flow_step: ") + name + " must be a 2-D (rows, cols) buffer");
  require(k.info.itemsize == itemsize,
          std::string("flow_step: ") + name + " has " + std::to_string(k.info.itemsize) +
              "-byte elements, expected " + std::to_string(itemsize));
  k.ptr = k.info.ptr;
  k.itemsize = itemsize;
  k.rows = k.info.shape[0];
  k.cols = k.info.shape[1];
  require(k.cols <= 1 || k.info.strides[1] == itemsize,
          std::string("flow_step: ") + name + " must be contiguous along each row");
  require(k.info.strides[0] % itemsize == 0 && k.info.strides[0] >= 0,
          std::string("flow_step: ") + name + " has a row stride that is not a whole, non-negative number of elements");
  k.stride = k.info.strides[0] / itemsize;
  return k;
}

// An output may be exactly one of the inputs (same start, same stride) or disjoint from it.
void require_no_partial_overlap(const Block& o, const Block& in, const char* oname, const char* iname) {
  if (o.rows == 0 || o.cols == 0) return;
  bool same = o.ptr == in.ptr && o.stride == in.stride && o.itemsize == in.itemsize;
  bool disjoint = o.hi() <= in.lo() || in.hi() <= o.lo();
  require(same || disjoint, std::string("flow_step: ") + oname + " partially overlaps " + iname +
                                "; pass the same tensor (in place) or a separate one");
}

DType parse_dtype(const std::string& s) {
  if (s == "float32") return DType::f32;
  if (s == "float16") return DType::f16;
  if (s == "bfloat16") return DType::bf16;
  throw py::value_error("flow_step: the velocity dtype must be float32, float16 or bfloat16, got " + s);
}

void flow_step_cpu_py(py::buffer out, py::buffer x, py::buffer v_cond, const std::string& v_dtype,
                      py::object v_uncond, py::object guidance, float guidance_uncond, py::object prev,
                      float cur_weight, float prev_weight, py::object store, float dt, py::object out_copy) {
  DType vd = parse_dtype(v_dtype);
  int64_t vsz = vd == DType::f32 ? 4 : 2;
  Block bo = as_block(out, "out", 4, true), bx = as_block(x, "x", 4, false);
  Block bvc = as_block(v_cond, "v_cond", vsz, false);
  const int64_t R = bx.rows, N = bx.cols;
  auto same_shape = [&](const Block& b, const char* name) {
    require(b.rows == R && b.cols == N, std::string("flow_step: ") + name + " has shape (" +
                                            std::to_string(b.rows) + ", " + std::to_string(b.cols) +
                                            "), expected (" + std::to_string(R) + ", " + std::to_string(N) + ")");
  };
  same_shape(bo, "out");
  same_shape(bvc, "v_cond");

  sonicore::FlowStepArgs a;
  a.rows = R;
  a.cols = N;
  a.out = static_cast<float*>(bo.ptr);
  a.out_stride = bo.stride;
  a.x = static_cast<const float*>(bx.ptr);
  a.x_stride = bx.stride;
  a.v_dtype = vd;
  a.v_cond = bvc.ptr;
  a.v_cond_stride = bvc.stride;
  a.dt = dt;
  a.cur_weight = cur_weight;
  a.prev_weight = prev_weight;
  a.guidance_uncond = guidance_uncond;

  Block bvu, bg, bp, bs;
  if (!v_uncond.is_none()) {
    bvu = as_block(v_uncond.cast<py::buffer>(), "v_uncond", vsz, false);
    same_shape(bvu, "v_uncond");
    a.v_uncond = bvu.ptr;
    a.v_uncond_stride = bvu.stride;
    require_no_partial_overlap(bo, bvu, "out", "v_uncond");
  }
  if (py::isinstance<py::float_>(guidance) || py::isinstance<py::int_>(guidance)) {
    a.guidance = guidance.cast<float>();
  } else if (!guidance.is_none()) {
    bg.info = guidance.cast<py::buffer>().request();
    require(bg.info.ndim == 1 && bg.info.shape[0] == R && bg.info.itemsize == 4 && bg.info.format == "f" &&
                (R <= 1 || bg.info.strides[0] == 4),
            "flow_step: per-row guidance must be a contiguous float32 array of length rows");
    a.guidance_rows = static_cast<const float*>(bg.info.ptr);
  }
  if (!prev.is_none()) {
    bp = as_block(prev.cast<py::buffer>(), "prev", 4, false);
    same_shape(bp, "prev");
    a.prev = static_cast<const float*>(bp.ptr);
    a.prev_stride = bp.stride;
    require_no_partial_overlap(bo, bp, "out", "prev");
  }
  if (!store.is_none()) {
    bs = as_block(store.cast<py::buffer>(), "store", 4, true);
    same_shape(bs, "store");
    a.store = static_cast<float*>(bs.ptr);
    a.store_stride = bs.stride;
    require_no_partial_overlap(bs, bx, "store", "x");
    require_no_partial_overlap(bs, bvc, "store", "v_cond");
    if (a.v_uncond) require_no_partial_overlap(bs, bvu, "store", "v_uncond");
    if (a.prev) require_no_partial_overlap(bs, bp, "store", "prev");
    require_no_partial_overlap(bs, bo, "store", "out");
    require(!(bs.ptr == bo.ptr), "flow_step: store and out must be different buffers");
  }
  Block bd;
  if (!out_copy.is_none()) {
    bd = as_block(out_copy.cast<py::buffer>(), "out_copy", 4, true);
    same_shape(bd, "out_copy");
    a.out_copy = static_cast<float*>(bd.ptr);
    a.out_copy_stride = bd.stride;
    require(bd.ptr != bo.ptr, "flow_step: out_copy and out must be different buffers");
    require_no_partial_overlap(bd, bo, "out_copy", "out");
    require_no_partial_overlap(bd, bx, "out_copy", "x");
    require_no_partial_overlap(bd, bvc, "out_copy", "v_cond");
    if (a.v_uncond) require_no_partial_overlap(bd, bvu, "out_copy", "v_uncond");
    if (a.prev) require_no_partial_overlap(bd, bp, "out_copy", "prev");
    if (a.store) require_no_partial_overlap(bd, bs, "out_copy", "store");
  }
  require_no_partial_overlap(bo, bx, "out", "x");
  require_no_partial_overlap(bo, bvc, "out", "v_cond");
  // out == v_cond would also be fine element-wise, but only x and prev are meant to be updated.
  py::gil_scoped_release nogil;
  sonicore::flow_step_cpu(a);
}

// Raw-pointer form shared by the CUDA entry point and the CPU hot path of the sampler
// (whose Python side has already checked every tensor's shape, dtype and layout).
sonicore::FlowStepArgs raw_args(int64_t rows, int64_t cols, uintptr_t out, int64_t out_stride, uintptr_t x,
                                int64_t x_stride, const std::string& v_dtype, uintptr_t v_cond,
                                int64_t v_cond_stride, uintptr_t v_uncond, int64_t v_uncond_stride,
                                float guidance, float guidance_uncond, uintptr_t guidance_rows, uintptr_t prev,
                                int64_t prev_stride, float cur_weight, float prev_weight, uintptr_t store,
                                int64_t store_stride, uintptr_t out_copy, int64_t out_copy_stride, float dt) {
  sonicore::FlowStepArgs a;
  a.rows = rows;
  a.cols = cols;
  a.out = reinterpret_cast<float*>(out);
  a.out_stride = out_stride;
  a.x = reinterpret_cast<const float*>(x);
  a.x_stride = x_stride;
  a.v_dtype = parse_dtype(v_dtype);
  a.v_cond = reinterpret_cast<const void*>(v_cond);
  a.v_cond_stride = v_cond_stride;
  a.v_uncond = reinterpret_cast<const void*>(v_uncond);
  a.v_uncond_stride = v_uncond_stride;
  a.guidance = guidance;
  a.guidance_uncond = guidance_uncond;
  a.guidance_rows = reinterpret_cast<const float*>(guidance_rows);
  a.prev = reinterpret_cast<const float*>(prev);
  a.prev_stride = prev_stride;
  a.cur_weight = cur_weight;
  a.prev_weight = prev_weight;
  a.store = reinterpret_cast<float*>(store);
  a.store_stride = store_stride;
  a.out_copy = reinterpret_cast<float*>(out_copy);
  a.out_copy_stride = out_copy_stride;
  a.dt = dt;
  sonicore::flow_step_check(a);  // throws before the GIL is released
  return a;
}

void flow_step_cpu_ptr_py(int64_t rows, int64_t cols, uintptr_t out, int64_t out_stride, uintptr_t x,
                          int64_t x_stride, const std::string& v_dtype, uintptr_t v_cond, int64_t v_cond_stride,
                          uintptr_t v_uncond, int64_t v_uncond_stride, float guidance, float guidance_uncond,
                          uintptr_t guidance_rows, uintptr_t prev, int64_t prev_stride, float cur_weight,
                          float prev_weight, uintptr_t store, int64_t store_stride, uintptr_t out_copy,
                          int64_t out_copy_stride, float dt) {
  sonicore::FlowStepArgs a = raw_args(rows, cols, out, out_stride, x, x_stride, v_dtype, v_cond, v_cond_stride,
                                      v_uncond, v_uncond_stride, guidance, guidance_uncond, guidance_rows, prev,
                                      prev_stride, cur_weight, prev_weight, store, store_stride, out_copy,
                                      out_copy_stride, dt);
  // Small steps (a few µs) keep the GIL: releasing and re-taking it costs about as much.
  if (rows * cols < (int64_t(1) << 16)) {
    sonicore::flow_step_cpu(a);
    return;
  }
  py::gil_scoped_release nogil;
  sonicore::flow_step_cpu(a);
}

#ifdef SONICORE_WITH_CUDA
void flow_step_cuda_py(int64_t rows, int64_t cols, uintptr_t out, int64_t out_stride, uintptr_t x,
                       int64_t x_stride, const std::string& v_dtype, uintptr_t v_cond, int64_t v_cond_stride,
                       uintptr_t v_uncond, int64_t v_uncond_stride, float guidance, float guidance_uncond,
                       uintptr_t guidance_rows, uintptr_t prev, int64_t prev_stride, float cur_weight,
                       float prev_weight, uintptr_t store, int64_t store_stride, uintptr_t out_copy,
                       int64_t out_copy_stride, float dt, uintptr_t stream) {
  sonicore::FlowStepArgs a = raw_args(rows, cols, out, out_stride, x, x_stride, v_dtype, v_cond, v_cond_stride,
                                      v_uncond, v_uncond_stride, guidance, guidance_uncond, guidance_rows, prev,
                                      prev_stride, cur_weight, prev_weight, store, store_stride, out_copy,
                                      out_copy_stride, dt);
  py::gil_scoped_release nogil;
  sonicore::flow_step_cuda(a, reinterpret_cast<void*>(stream));
}
#endif

}  // namespace

void bind_sampling(py::module_& m) {
  m.def("flow_step_cpu", &flow_step_cpu_py, py::arg("out"), py::arg("x"), py::arg("v_cond"),
        py::arg("v_dtype"), py::arg("v_uncond"), py::arg("guidance"), py::arg("guidance_uncond"), py::arg("prev"),
        py::arg("cur_weight"), py::arg("prev_weight"),
        py::arg("store"), py::arg("dt"), py::arg("out_copy") = py::none(),
        "Fused flow-matching step on (rows, cols) CPU buffers; see sonicore.ops.flow_step.");
  m.def("flow_step_cpu_ptr", &flow_step_cpu_ptr_py, py::arg("rows"), py::arg("cols"), py::arg("out"),
        py::arg("out_stride"), py::arg("x"), py::arg("x_stride"), py::arg("v_dtype"), py::arg("v_cond"),
        py::arg("v_cond_stride"), py::arg("v_uncond"), py::arg("v_uncond_stride"), py::arg("guidance"),
        py::arg("guidance_uncond"), py::arg("guidance_rows"), py::arg("prev"), py::arg("prev_stride"),
        py::arg("cur_weight"), py::arg("prev_weight"), py::arg("store"), py::arg("store_stride"),
        py::arg("out_copy"), py::arg("out_copy_stride"), py::arg("dt"),
        "flow_step_cpu on raw addresses (element strides); the caller guarantees the memory.");
#ifdef SONICORE_WITH_CUDA
  m.def("flow_step_cuda", &flow_step_cuda_py, py::arg("rows"), py::arg("cols"), py::arg("out"),
        py::arg("out_stride"), py::arg("x"), py::arg("x_stride"), py::arg("v_dtype"), py::arg("v_cond"),
        py::arg("v_cond_stride"), py::arg("v_uncond"), py::arg("v_uncond_stride"), py::arg("guidance"),
        py::arg("guidance_uncond"), py::arg("guidance_rows"), py::arg("prev"), py::arg("prev_stride"),
        py::arg("cur_weight"), py::arg("prev_weight"),
        py::arg("store"), py::arg("store_stride"),
        py::arg("out_copy"), py::arg("out_copy_stride"), py::arg("dt"), py::arg("stream"),
        "Fused flow-matching step on CUDA device pointers, on the given cudaStream_t (asynchronous).");
#endif
}

}  // namespace sonicore_py
