"""A C++ program uses the kernels with no Python: build examples/cpp/stream_roundtrip.cpp against
the headers and static core library that the installed package carries, run it, and check that
the streamed STFT -> iSTFT round trip reconstructs the signal."""
import os
import shutil
import subprocess

import pytest

import sonicore

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _core_paths():
    pkg = os.path.dirname(sonicore.__file__)
    inc, lib = os.path.join(pkg, "include"), os.path.join(pkg, "lib", "libsonicore_core.a")
    if os.path.isdir(inc) and os.path.exists(lib):
        return inc, lib
    dev_lib = os.path.join(ROOT, "build", "dev", "libsonicore_core.a")  # developer build
    if os.path.exists(dev_lib):
        return os.path.join(ROOT, "csrc", "include"), dev_lib
    return None, None


def test_cpp_program_streams_without_python(tmp_path):
    cxx = shutil.which("g++") or shutil.which("c++")
    inc, lib = _core_paths()
    if inc is None:
        if os.environ.get("CI") == "true":
            pytest.fail("the installed package carries no include/ + lib/libsonicore_core.a")
        pytest.skip("no installed core library and no developer build")
    assert cxx, "a C++ compiler is needed for this check"
    exe = tmp_path / "stream_roundtrip"
    subprocess.run([cxx, "-O1", "-std=c++17", os.path.join(ROOT, "examples", "cpp", "stream_roundtrip.cpp"),
                    f"-I{inc}", lib, "-lpthread", "-o", str(exe)], check=True)
    out = subprocess.run([str(exe)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    err = float(out.stdout.rsplit("relative error", 1)[1])
    assert err < 1e-5
