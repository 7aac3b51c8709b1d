"""The model-zoo test helpers (``_zoo.py``) as a fixture: with --import-mode=importlib a test
module cannot import a sibling file by name."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location(
    "kseg_zoo_helpers", Path(__file__).with_name("_zoo.py")
)
_zoo = importlib.util.module_from_spec(_spec)
sys.modules["kseg_zoo_helpers"] = _zoo
_spec.loader.exec_module(_zoo)


@pytest.fixture(scope="session")
def zoo():
    """Helpers: ``tiny_options(name)``, ``disks(n, size, channels, seed)``, ``run_tflite(bytes, x)``."""
    return _zoo
