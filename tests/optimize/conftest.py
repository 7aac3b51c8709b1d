"""Fixtures for the optimize tests: tiny blob data, and ``_helpers.py`` importable as
``kseg_optimize_helpers`` (with --import-mode=importlib a test folder is not a package)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location(
    "kseg_optimize_helpers", Path(__file__).with_name("_helpers.py")
)
_helpers = importlib.util.module_from_spec(_spec)
sys.modules["kseg_optimize_helpers"] = _helpers
_spec.loader.exec_module(_helpers)


@pytest.fixture(scope="module")
def tiny_data():
    from kseg.optimize._train import FitData

    x, y = _helpers.blobs(12, 32, seed=0)
    return FitData(x[:8], y[:8], x[8:], y[8:])
