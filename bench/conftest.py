"""Benchmarks: ratios against the peer in the same run; GPU ones marked `gpu` by name."""
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))


def pytest_collection_modifyitems(config, items):
    from _markers import mark_by_name
    mark_by_name(items, pytest)
