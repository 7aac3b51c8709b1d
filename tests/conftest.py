"""Shared fixtures: real data location, tiny synthetic data, temporary run folders."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HC18 = Path(os.environ.get("KSEG_HC18", REPO.parent / "shared" / "data" / "hc18"))


def _real_data(root: Path, variable: str, name: str) -> Path:
    """``root`` when it holds ``images/`` and ``masks/``, else skip with the reason and the fix."""
    if not ((root / "images").is_dir() and (root / "masks").is_dir()):
        pytest.skip(
            f"real {name} data not found at {root} (set {variable} or place ../shared beside the repo)"
        )
    return root


@pytest.fixture(scope="session")
def hc18_dir() -> Path:
    """The real HC18 fetal-head subset; skipped with a reason where it is absent (a user's clone)."""
    return _real_data(HC18, "KSEG_HC18", "HC18")


TINY_RUN = {
    "data.synthetic_n": 96,
    "data.img_size": 64,
    "train.epochs": 8,
    "train.steps_per_epoch": 20,
    "train.batch_size": 8,
    "train.learning_rate": 0.003,
    "train.seed": 7,
    "model.options": {"depth": 3, "filters": 8},
}


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> Path:
    """One short real training run on synthetic ultrasound (64x64), shared by the tests that need a
    trained model: it must have learned something for parity and prediction checks to mean anything."""
    from kseg.config import load_config
    from kseg.training import train

    out = tmp_path_factory.mktemp("runs") / "tiny"
    train(load_config(None, TINY_RUN), out, verbose=0)
    return out


USGRA = Path(os.environ.get("KSEG_USGRA", REPO.parent / "shared" / "data" / "usgra"))


@pytest.fixture(scope="session")
def usgra_dir() -> Path:
    """The real USGRA nerve/vessel subset (palette masks, 3 classes); skipped where absent."""
    return _real_data(USGRA, "KSEG_USGRA", "USGRA")
