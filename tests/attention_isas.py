"""The CPU attention kernel paths this machine can run, as the ISA caps the tests hand to
sonicore.ops.attention (its `_CPU_ISA_CAP`), best first: 3 lets the AMX kernel take every dtype
(by default it takes bfloat16 only), 2 AVX-512, 1 AVX2, 0 portable. Capping lower covers every
compiled path on one machine. The `isa` fixture runs a test once per cap."""
import sys

import pytest

import sonicore.ops.attention  # noqa: F401  (the module, not the function of the same name)
from sonicore import _backend

A = sys.modules["sonicore.ops.attention"]
ISAS = {"amx": 3, "avx512": 2, "avx2": 1, "scalar": 0}
ISA_CAPS = [v for v in ISAS.values() if v <= (3 if _backend.C.cpu_has_amx() else ISAS[_backend.C.cpu_isa()])]


@pytest.fixture(params=ISA_CAPS, ids=lambda v: f"isa{v}")
def isa(request, monkeypatch):
    monkeypatch.setattr(A, "_CPU_ISA_CAP", request.param)
    return request.param
