"""Ahead-of-time code generation checks for Triton kernels, on machines without a GPU: the kernel is
compiled for sm_90 (Hopper) with Triton's own compiler and ptxas, and the PTX is inspected.

The STFT framing kernel must load interior frames with 128-bit vector loads (ld.global.v4): a
scalar-load version measured 1.29-1.36x torch.stft on an H200 against 1.56x for the CUDA kernel with
the same structure (bench/results/gpu-h200-2026-11-26/run2_RESULTS_gpu.md)."""
import os

import pytest

triton = pytest.importorskip("triton")

KERNELS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "kernels")


# Kernels are compiled in a child process with the interpreter off: a process that imported Triton
# under TRITON_INTERPRET=1 (as the test session does) holds Triton's standard-library functions
# (tl.maximum, tl.sum, tl.min, ...) in their interpreter form, and those cannot be compiled.
_PROBE = r"""
import collections, importlib.util, json, re, sys
import triton
from triton.backends.compiler import GPUTarget
jobs = json.load(sys.stdin)
found = {}
for job in jobs:
    spec = importlib.util.spec_from_file_location("sonicore_codegen_" + job["module"], job["path"])
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    sig = job["signature"]
    div = [i for i, (n, t) in enumerate(sig.items()) if t != "constexpr" and n not in job["general"]]
    src = triton.compiler.ASTSource(fn=getattr(mod, job["kernel"]), signature=sig, constexprs=job["constexprs"],
                                    attrs={(i,): [["tt.divisibility", 16]] for i in div})
    ptx = triton.compile(src, target=GPUTarget("cuda", 90, 128),
                         options=dict(job["options"], enable_fp_fusion=True)).asm["ptx"]
    found[job["name"]] = collections.Counter(re.findall(job["pattern"], ptx))
print(json.dumps(found))
"""


def compile_for_sm90(jobs):
    """PTX instruction counts of each job's kernel compiled for sm_90 with sonicore's launch options.

    A job: name, module (a file in kernels/), kernel, signature (argument -> Triton type, in
    order), constexprs, general (arguments left without the divisible-by-16 specialisation that
    Triton gives every other pointer and integer at run time), options (num_warps, ...), pattern
    (a regex over the PTX). Returns {name: {instruction: count}}."""
    import json
    import subprocess
    import sys
    for job in jobs:
        job["path"] = os.path.join(KERNELS, job["module"] + ".py")
    env = dict(os.environ, TRITON_INTERPRET="0")
    r = subprocess.run([sys.executable, "-c", _PROBE], input=json.dumps(jobs), env=env,
                       capture_output=True, text=True, timeout=900)
    if r.returncode != 0 and "GPUTarget" in r.stderr and ("ImportError" in r.stderr or "TypeError" in r.stderr):
        pytest.skip(f"this Triton ({triton.__version__}) has another ahead-of-time compile API")
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("frames", [1, 4])
def test_stft_frame_kernel_vectorises_interior_frames(frames):
    sig = {"x_ptr": "*fp32", "w_ptr": "*fp32", "out_ptr": "*fp32", "n_samples": "i64", "x_batch_stride": "i64",
           "n_rows": "i64", "n_frames": "i64", "n_fft": "i64", "hop": "i64", "pad": "i64", "scale_ptr": "*fp32",
           "PAD_MODE": "constexpr", "BLOCK": "constexpr", "FRAMES": "constexpr"}
    # Every integer argument divisible by 16, as Triton specialises them at run time for n_fft 4096, hop 1024.
    ops = compile_for_sm90([dict(name="frame", module="stft", kernel="frame_kernel", signature=sig,
                                 constexprs={"PAD_MODE": 1, "BLOCK": 1024, "FRAMES": frames}, general=[],
                                 options={"num_warps": 4}, pattern=r"(?:ld|st)\.global[\.\w]*")])["frame"]
    # 1024 samples over 128 threads: 8 per thread per frame = two v4 loads of x per frame and two of
    # the window on the interior path, two v4 stores per frame per path.
    assert ops.get("ld.global.v4.b32", 0) >= 2 + 2 * frames, ops
    assert ops.get("st.global.v4.b32", 0) >= 2 * frames, ops


def _attention_signature(desc=None):
    """The run-time arguments of kernels/attention.py's bf16 kernels, in order; desc: the K_DESC /
    V_DESC type of the split kernel (which also takes Hkv), None for the others."""
    sig = {n: "*bf16" for n in ("Q", "K", "V", "O")}
    sig.update({"LSE": "*fp32", "QLENS": "*i32", "KVLENS": "*i32"})
    if desc:
        sig.update({"K_DESC": desc, "V_DESC": desc})
    ints = "sqb sqh sqn skb skh skn svb svh svn sob soh son Hq".split()
    ints += (["Hkv"] if desc else []) + ["Nq", "Nk", "D"]
    sig.update({n: "i32" for n in ints})
    sig["qk_scale"] = "fp32"
    return sig


def _attention_job(variant, causal):
    desc = None if variant == "loop" else "tensordesc<bf16[64,64]>" if variant.startswith("split-tma") else "*i32"
    sig = _attention_signature(desc)
    consts = dict(GROUP=1, CAUSAL=causal, HAS_QLENS=False, HAS_KVLENS=False, IEEE=False,
                  BLOCK_M=64, BLOCK_N=64, BLOCK_D=64)
    if variant != "loop":
        consts["TMA"] = variant == "split-tma"
    sig.update({n: "constexpr" for n in consts})
    # As for N = 4096, D = 64: pointers, strides and sizes divisible by 16; Hq, Hkv and the scale general.
    return dict(name=f"{variant}-{causal}", module="attention",
                kernel="_attention_fwd" if variant == "loop" else "_attention_fwd_split",
                signature=sig, constexprs=consts, general=["Hq", "Hkv", "qk_scale", "K_DESC", "V_DESC"],
                options={"num_warps": 4, "num_stages": 3},
                pattern=r"(?:wgmma\.mma_async|cp\.async\.bulk\.tensor|cp\.async\.cg)")


@pytest.fixture(scope="module")
def attention_ptx_ops():
    return compile_for_sm90([_attention_job(v, c) for v in VARIANTS for c in (False, True)])


VARIANTS = ["loop", "split", "split-tma"]


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("causal", [False, True])
def test_attention_kernels_compile_to_wgmma_for_sm90(attention_ptx_ops, variant, causal):
    # What a bf16, head dim 64 call compiles to on Hopper: warpgroup MMAs, and for "split-tma*"
    # bulk tensor copies (TMA) of K and V; the others load them through cp.async.
    ops = attention_ptx_ops[f"{variant}-{causal}"]
    assert ops.get("wgmma.mma_async", 0) >= 8, ops
    if variant.startswith("split-tma"):
        assert ops.get("cp.async.bulk.tensor", 0) >= 2 and ops.get("cp.async.cg", 0) == 0, ops
    else:
        assert ops.get("cp.async.cg", 0) >= 8 and ops.get("cp.async.bulk.tensor", 0) == 0, ops


def _ws_job(causal, even, block_n, lens):
    sig = _attention_signature()
    consts = dict(GROUP=1, CAUSAL=causal, HAS_QLENS=lens, HAS_KVLENS=lens, IEEE=False,
                  BLOCK_M=128, BLOCK_N=block_n, BLOCK_D=128, EVEN=even, WS=True)
    sig.update({n: "constexpr" for n in consts})
    return dict(name=f"ws-{causal}-{even}-{block_n}-{lens}", module="attention", kernel="_attention_fwd_ws",
                signature=sig, constexprs=consts, general=["Hq", "qk_scale"],
                options={"num_warps": 4, "num_stages": 2},
                pattern=r"(?:\.reqntid \d+|setmaxnreg\.(?:inc|dec)|wgmma\.mma_async|cp\.async\.bulk\.tensor"
                        r"|cp\.async\.cg)")


WS_JOBS = [(False, True, 64, False), (True, False, 64, False), (False, False, 128, True)]


@pytest.fixture(scope="module")
def ws_ptx_ops():
    return compile_for_sm90([_ws_job(*j) for j in WS_JOBS])


@pytest.mark.parametrize("job", WS_JOBS, ids=lambda j: "causal-{}-even-{}-n{}-lens-{}".format(*j))
def test_ws_attention_is_warp_specialised_for_sm90(ws_ptx_ops, job):
    # Head dim 128, 128-row tiles on num_warps=4: Triton's Hopper warp specialisation must give
    # three warpgroups (384 threads: one producing TMA copies, two consuming 64 rows each, with
    # their register budgets moved by setmaxnreg). A Triton that silently fell back to one
    # warpgroup would still be correct but would not be this kernel.
    ops = ws_ptx_ops["ws-{}-{}-{}-{}".format(*job)]
    assert ops.get(".reqntid 384", 0) == 1, ops
    assert ops.get("setmaxnreg.dec", 0) >= 1 and ops.get("setmaxnreg.inc", 0) >= 1, ops
    assert ops.get("cp.async.bulk.tensor", 0) >= 3 and ops.get("cp.async.cg", 0) == 0, ops
    # S = Q K^T is 8 k-steps per consumer, P V is BLOCK_N / 16: both consumers' chains.
    assert ops.get("wgmma.mma_async", 0) >= 2 * (8 + job[2] // 16), ops
