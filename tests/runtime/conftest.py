"""Tiny converted models shared by tests/runtime and tests/bench (built once per session)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location(
    "kseg_tiny_models", Path(__file__).with_name("tiny_models.py")
)
tiny_models = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tiny_models)


@pytest.fixture(scope="session")
def tiny_tflite(tmp_path_factory) -> dict[str, Path]:
    """``{"float", "int8", "int8_dynamic"}`` -> ``.tflite`` (32x32x1; the first two with cards)."""
    return tiny_models.build_all(tmp_path_factory.getbasetemp() / "kseg_tiny_models")
