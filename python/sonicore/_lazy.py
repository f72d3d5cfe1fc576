"""Lazy submodule access for namespace packages (sonicore.models, sonicore.pipelines)."""
from __future__ import annotations

import importlib


def submodule(package: str, namespace: dict, name: str):
    """Imports package.name on first attribute access and caches it in the package namespace;
    a name that is not a submodule raises AttributeError (a broken submodule's own import
    error propagates unchanged)."""
    try:
        mod = importlib.import_module(f"{package}.{name}")
    except ModuleNotFoundError as exc:
        if exc.name == f"{package}.{name}":
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        raise
    namespace[name] = mod
    return mod
