"""Ahead-of-time code generation checks for Triton kernels, on machines without a GPU: the kernel is
compiled for sm_90 (Hopper) with Triton's own compiler and ptxas, and the PTX is inspected.

The STFT framing kernel must load interior frames with 128-bit vector loads (ld.global.v4): a
scalar-load version measured 1.29-1.36x torch.stft on an H200 against 1.56x for the CUDA kernel with
the same structure (bench/results/gpu-h200-2026-11-26/run2_RESULTS_gpu.md)."""
import collections
import importlib.util
import os
import re

import pytest

triton = pytest.importorskip("triton")

KERNELS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "kernels")


def _compile_ptx(fn, signature, constexprs, n_pointer_like):
    try:
        from triton.backends.compiler import GPUTarget
        src = triton.compiler.ASTSource(fn=fn, signature=signature, constexprs=constexprs,
                                        attrs={(i,): [["tt.divisibility", 16]] for i in range(n_pointer_like)})
    except (ImportError, AttributeError, TypeError) as e:  # another Triton's AOT API
        pytest.skip(f"this Triton ({triton.__version__}) has another ahead-of-time compile API: {e}")
    # The launch options sonicore passes (FMA contraction on), as a GPU run would compile it.
    return triton.compile(src, target=GPUTarget("cuda", 90, 32), options={"enable_fp_fusion": True}).asm["ptx"]


def _load_compiled(name):
    """kernels/<name>.py with @triton.jit producing compilable functions, even where the tests run
    everything else in the interpreter (TRITON_INTERPRET=1 is read when a kernel is decorated)."""
    saved = os.environ.get("TRITON_INTERPRET")
    os.environ["TRITON_INTERPRET"] = "0"
    try:
        spec = importlib.util.spec_from_file_location(f"sonicore_codegen_{name}", os.path.join(KERNELS, f"{name}.py"))
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    finally:
        if saved is None:
            del os.environ["TRITON_INTERPRET"]
        else:
            os.environ["TRITON_INTERPRET"] = saved
    return mod


def test_stft_frame_kernel_vectorises_interior_frames():
    mod = _load_compiled("stft")
    sig = {"x_ptr": "*fp32", "w_ptr": "*fp32", "out_ptr": "*fp32", "n_samples": "i64", "x_batch_stride": "i64",
           "n_frames": "i64", "n_fft": "i64", "hop": "i64", "pad": "i64", "scale_ptr": "*fp32",
           "PAD_MODE": "constexpr", "BLOCK": "constexpr"}
    # Every integer argument divisible by 16, as Triton specialises them at run time for n_fft 4096, hop 1024.
    ptx = _compile_ptx(mod.frame_kernel, sig, {"PAD_MODE": mod.PAD_REFLECT, "BLOCK": 1024}, 10)
    ops = collections.Counter(re.findall(r"(?:ld|st)\.global[\.\w]*", ptx))
    # 1024 samples over 128 threads: 8 per thread = two v4 loads of x and two of the window on the
    # interior path, two v4 stores per path.
    assert ops["ld.global.v4.b32"] >= 4, ops
    assert ops["st.global.v4.b32"] >= 2, ops
