"""The GPU kernels that have not yet run on a GPU are opt-in (docs/attention.md): the Hopper
attention kernels of Triton ("ws") and CUDA ("wgmma", "wgmma-ws"). bench/gpu/run.sh tests them in a
process of their own, so that a trap or a hang in one cannot take the other GPU tests down with it:
SONICORE_TEST_OPTIN_KERNELS=skip leaves them out, =only runs nothing else; unset, everything runs."""
import os

import pytest

OPTIN_ENV = "SONICORE_TEST_OPTIN_KERNELS"


def select(is_optin: bool) -> None:
    """Skips the calling test's case where SONICORE_TEST_OPTIN_KERNELS rules it out of this process."""
    mode = os.environ.get(OPTIN_ENV, "").strip()
    if mode not in ("", "skip", "only"):
        raise ValueError(f"{OPTIN_ENV}={mode!r}: expected skip or only (or unset)")
    if mode == "skip" and is_optin:
        pytest.skip("opt-in GPU kernel: tested in its own process (bench/gpu/run.sh)")
    if mode == "only" and not is_optin:
        pytest.skip(f"{OPTIN_ENV}=only: this process tests the opt-in GPU kernels alone")
