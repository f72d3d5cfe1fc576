"""Loads the compiled module sonicore._C with a message a user can act on."""
from __future__ import annotations

try:
    from . import _C  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised only on broken installs
    raise ImportError(
        "sonicore's compiled core (sonicore._C) could not be imported: "
        f"{exc}. Install the package with `pip install .` (a C++17 compiler and CMake >= 3.24 "
        "are needed to build from source), or for a developer build run "
        "`cmake -S . -B build && cmake --build build` and put python/ on PYTHONPATH."
    ) from exc

C = _C
