"""What the Hopper attention kernels (csrc/cuda/attention_fwd.cu, flash_fwd_sm90 and the
warp-specialised flash_fwd_sm90_ws) compile to, on machines with nvcc and no GPU: the file is built
for sm_90a and the SASS is read with nvdisasm (shipped with Triton's NVIDIA backend).

Each key block must issue its Q K^T and P V warpgroup MMAs (HGMMA) back to back, with one wait per
chain. ptxas serialises a chain (a wait after every HGMMA, warning C7513) when an instruction
between two of its MMAs defines one of their inputs; a pipelined variant of this kernel fell into
that and was dropped, so the property is checked here."""
import collections
import os
import re
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _nvcc():
    for c in (shutil.which("nvcc"), "/usr/local/cuda/bin/nvcc"):
        if c and os.path.exists(c):
            return c
    return None


def _nvdisasm():
    try:
        import triton
    except ImportError:
        return None
    p = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "nvdisasm")
    return p if os.path.exists(p) else shutil.which("nvdisasm")


@pytest.fixture(scope="module")
def sm90_sass(tmp_path_factory):
    nvcc, nvdisasm = _nvcc(), _nvdisasm()
    if nvcc is None or nvdisasm is None:
        pytest.skip("needs nvcc and nvdisasm (CUDA toolkit, Triton's NVIDIA backend)")
    cubin = str(tmp_path_factory.mktemp("sm90") / "attention.cubin")
    r = subprocess.run([nvcc, "-cubin", os.path.join(ROOT, "csrc/cuda/attention_fwd.cu"), "-o", cubin,
                        "-I", os.path.join(ROOT, "csrc/include"), "-DSONICORE_CUDA_SM90A=1", "-arch=sm_90a",
                        "-O3", "--use_fast_math", "--expt-relaxed-constexpr", "-std=c++17", "-Xptxas=-v"],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "C7513" not in r.stderr and "C7519" not in r.stderr, r.stderr[-3000:]
    # No Hopper kernel spills (the warp-specialised one's register split is sized to avoid it).
    spills = re.findall(r"Compiling entry function '(\w*flash_fwd_sm90\w*)'.*?(\d+) bytes spill stores", r.stderr, re.S)
    assert spills and all(n == "0" for _, n in spills), spills
    d = subprocess.run([nvdisasm, cubin], capture_output=True, text=True, timeout=300)
    assert d.returncode == 0, d.stderr[-2000:]
    kernels = collections.defaultdict(list)
    name = None
    for line in d.stdout.splitlines():
        m = re.match(r"\s*\.text\.(\S+):", line)
        if m:
            name = m.group(1) if "flash_fwd_sm90" in m.group(1) else None
        elif name and ("HGMMA" in line or "USETMAXREG" in line):
            kernels[name].append(line)
    return kernels


def _check_chains(name, hgmma, pv_steps):
    """One key block's HGMMAs: Q K^T is hd / 16 MMAs over the head dim, P V `pv_steps` MMAs of 16
    keys each, with a wait after the last of each chain only; P V reads V through a transposed
    descriptor, Q K^T both operands from descriptors."""
    hd = 128 if "Li128E" in name else 64
    assert len(hgmma) == hd // 16 + pv_steps, (name, len(hgmma))
    waits = [i for i, line in enumerate(hgmma) if "gsb0" in line]
    assert waits == [hd // 16 - 1, len(hgmma) - 1], (name, hgmma)
    assert sum(".tnspB" in line for line in hgmma) == pv_steps, (name, hgmma)


def test_hopper_kernels_issue_each_mma_chain_back_to_back(sm90_sass):
    # 2 dtypes x head dim 64 / 128 x causal or not; 64-key blocks.
    one_wg = {n: v for n, v in sm90_sass.items() if "flash_fwd_sm90_ws" not in n}
    assert len(one_wg) == 8, sorted(sm90_sass)
    for name, hgmma in one_wg.items():
        _check_chains(name, hgmma, 4)


def test_warp_specialised_hopper_kernel(sm90_sass):
    # flash_fwd_sm90_ws: per 128-key block, Q K^T is hd / 16 MMAs m64n128k16 and P V 8 MMAs (16
    # keys each), one wait after each chain; the producer warpgroup gives registers back
    # (USETMAXREG.DEALLOC) and the consumers take them (TRY_ALLOC).
    ws = {n: v for n, v in sm90_sass.items() if "flash_fwd_sm90_ws" in n}
    assert len(ws) == 8, sorted(sm90_sass)
    for name, lines in ws.items():
        hd = 128 if "Li128E" in name else 64
        hgmma = [line for line in lines if "HGMMA" in line]
        _check_chains(name, hgmma, 8)
        assert all("64x128x16" in line for line in hgmma[:hd // 16]), (name, hgmma)
        assert any("USETMAXREG.DEALLOC" in line for line in lines), name
        assert any("USETMAXREG.TRY_ALLOC" in line for line in lines), name
