"""Shared fixtures: real data location, tiny synthetic data, temporary run folders."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HC18 = Path(os.environ.get("KSEG_HC18", REPO.parent / "shared" / "data" / "hc18"))


@pytest.fixture(scope="session")
def hc18_dir() -> Path:
    """The real HC18 fetal-head subset; skipped with a reason where it is absent (a user's clone)."""
    if not (HC18 / "images").is_dir():
        pytest.skip(f"real HC18 data not found at {HC18} (set KSEG_HC18 or place ../shared beside the repo)")
    return HC18
