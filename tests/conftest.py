"""Shared test setup.

Triton kernels run in the interpreter on machines without a GPU: TRITON_INTERPRET must be
set before triton is first imported, so it is set here, before any test module loads.
"""
import os

try:
    import torch
    _has_cuda = torch.cuda.is_available()
except ImportError:  # pragma: no cover
    _has_cuda = False
if not _has_cuda:
    os.environ.setdefault("TRITON_INTERPRET", "1")

import numpy as np
import pytest


@pytest.fixture
def rng(request):
    """A fresh, per-test random generator. Its seed is printed when the test fails; set
    SONICORE_TEST_SEED to that number to replay the failure (the alignment tests' speech comes
    from espeak-ng, whose audio varies by a few samples between calls: there a seed replays the
    text and prosody, not the exact samples)."""
    fixed = os.environ.get("SONICORE_TEST_SEED")
    seed = int(fixed) if fixed else np.random.SeedSequence().entropy % (2**32)
    request.node.user_properties.append(("seed", seed))
    return np.random.default_rng(seed)


def pytest_runtest_makereport(item, call):
    if call.excinfo is not None:
        for k, v in item.user_properties:
            if k == "seed":
                print(f"\n[rng seed for {item.nodeid}: {v}]")


requires_cuda = pytest.mark.skipif(not _has_cuda, reason="needs a CUDA GPU")


def pytest_collection_modifyitems(config, items):
    from _markers import mark_by_name
    mark_by_name(items, pytest)
