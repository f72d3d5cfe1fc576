"""Where the MMAudio parity goldens are: $SONICORE_GOLDENS, else ../shared/goldens beside the
checkout (where CI lays shared/), else shared/goldens inside it. Missing goldens skip the parity
tests on a developer's machine but FAIL under CI (CI=true): a skipped parity check must never
pass for a green run."""
import os

import pytest

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def goldens_dir():
    for cand in (os.environ.get("SONICORE_GOLDENS"),
                 os.path.join(os.path.dirname(_ROOT), "shared", "goldens"),
                 os.path.join(_ROOT, "shared", "goldens")):
        if cand and os.path.isdir(cand):
            return cand
    return None


GOLDENS = goldens_dir()


def require_goldens():
    """pytestmark for golden tests."""
    if GOLDENS is None and os.environ.get("CI") == "true":
        raise RuntimeError("CI: the goldens directory was not found (../shared/goldens or $SONICORE_GOLDENS)")
    return pytest.mark.skipif(GOLDENS is None, reason="goldens directory not found (set SONICORE_GOLDENS)")
