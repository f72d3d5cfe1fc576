"""The package skeleton: import without triton/GPU, thread pool, info, CLI."""
import subprocess
import sys

import pytest

import sonicore
from sonicore import _backend


def test_version_and_info():
    from sonicore.info import collect, format_info
    info = collect()
    assert info["version"] == sonicore.__version__
    assert info["cpu_isa"] in ("scalar", "avx2", "avx512")
    text = format_info(info)
    assert "cpu" in text and "cuda" in text and "triton" in text


def test_import_is_lazy():
    code = "import sys, sonicore, sonicore.ops; assert 'triton' not in sys.modules, 'triton imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_set_num_threads_roundtrip():
    old = sonicore.get_num_threads()
    try:
        sonicore.set_num_threads(3)
        assert sonicore.get_num_threads() == 3
        sonicore.set_num_threads(1)
        assert sonicore.get_num_threads() == 1
        sonicore.set_num_threads(0)
        assert sonicore.get_num_threads() == sonicore._C.default_num_threads()
    finally:
        sonicore.set_num_threads(old)
    with pytest.raises(TypeError):
        sonicore.set_num_threads("4")


def test_cli_info_runs():
    out = subprocess.run([sys.executable, "-m", "sonicore.cli", "info"], check=True,
                         capture_output=True, text=True).stdout
    assert out.startswith("sonicore ")
    js = subprocess.run([sys.executable, "-m", "sonicore.cli", "info", "--json"], check=True,
                        capture_output=True, text=True).stdout
    assert '"cpu_isa"' in js


def test_select_backend_reasons():
    reasons = {"cpu": None, "cuda": "no GPU here", "torch": None}
    assert _backend.select_backend("op", "cpu", None, reasons) == "cpu"
    assert _backend.select_backend("op", "cpu", "torch", reasons) == "torch"
    with pytest.raises(_backend.BackendUnavailable, match="no GPU here"):
        _backend.select_backend("op", "cpu", "cuda", reasons)
    with pytest.raises(_backend.BackendUnavailable, match="unknown backend"):
        _backend.select_backend("op", "cpu", "metal", reasons)


def test_compiled_core_does_not_link_torch_or_cuda_driver():
    """One wheel for every torch: the module must not depend on libtorch / libc10 / libcudart.so
    (cudart is linked statically and opens the driver lazily)."""
    import shutil
    so = sonicore._C.__file__
    readelf = shutil.which("readelf")
    if readelf is None:
        pytest.fail("readelf (binutils) is needed for this check")
    out = subprocess.run([readelf, "-d", so], check=True, capture_output=True, text=True).stdout
    needed = [ln.split("[")[1].split("]")[0] for ln in out.splitlines() if "(NEEDED)" in ln]
    assert needed, out
    for lib in needed:
        assert not lib.startswith(("libtorch", "libc10", "libcudart", "libcuda.", "libpython")), needed
