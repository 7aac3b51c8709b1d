"""Speckle/contrast filters: shape and dtype kept, identities, and what each filter must do to
speckle, checked with numbers."""

from __future__ import annotations

import numpy as np
import pytest

from kseg.errors import ConfigError
from kseg.filters import FILTERS
from kseg.filters.pixel import filter_params, lee
from kseg.preprocess.metrics import enl

ALL = FILTERS.names()
SMOOTHING = [n for n in ALL if n != "clahe"]


def _speckle(shape=(128, 128), looks=1, mean=100.0, seed=0) -> np.ndarray:
    """Fully developed multiplicative speckle on a constant scene: intensity ~ mean * Gamma(L, 1/L)."""
    rng = np.random.default_rng(seed)
    return (mean * rng.gamma(looks, 1.0 / looks, shape)).astype(np.float32)


def test_registry_has_every_filter_of_the_issue():
    assert set(ALL) == {
        "lee",
        "enhanced_lee",
        "frost",
        "kuan",
        "srad",
        "median",
        "gaussian",
        "bilateral",
        "nlm",
        "clahe",
    }


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize(
    "shape,dtype",
    [
        ((40, 56), np.uint8),
        ((40, 56, 1), np.uint8),
        ((40, 56, 3), np.uint8),
        ((40, 56), np.float32),
    ],
)
def test_filters_keep_shape_and_dtype(name, shape, dtype):
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, shape).astype(dtype)
    out = FILTERS.get(name)(img)
    assert out.shape == img.shape and out.dtype == img.dtype
    assert np.isfinite(out.astype(np.float64)).all()


@pytest.mark.parametrize("name", SMOOTHING)
def test_constant_image_is_unchanged(name):
    img = np.full((48, 48, 1), 117, np.uint8)
    np.testing.assert_array_equal(FILTERS.get(name)(img), img)


def test_channels_are_filtered_independently():
    rng = np.random.default_rng(2)
    rgb = rng.integers(1, 256, (32, 32, 3)).astype(np.uint8)
    out = lee(rgb, size=5)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], lee(rgb[..., c], size=5))


@pytest.mark.parametrize("name", ["lee", "kuan", "enhanced_lee", "frost", "srad", "median"])
def test_speckle_filters_raise_enl_on_pure_speckle(name):
    noisy = _speckle(looks=1)
    before = enl(noisy)
    after = enl(FILTERS.get(name)(noisy)[8:-8, 8:-8])
    assert before == pytest.approx(1.0, rel=0.1)  # single-look intensity speckle
    assert after > 4.0 * before, (name, before, after)


def test_lee_with_known_looks_matches_the_formula():
    x = _speckle((64, 64), looks=4, seed=3)
    out = lee(x, size=3, looks=4)
    import cv2

    m = cv2.blur(x, (3, 3), borderType=cv2.BORDER_REFLECT)
    v = np.maximum(cv2.blur(x * x, (3, 3), borderType=cv2.BORDER_REFLECT) - m * m, 0)
    k = np.clip(1 - 0.25 / np.maximum(v / np.maximum(m * m, 1e-6), 1e-6), 0, 1)
    np.testing.assert_allclose(out, m + k * (x - m), rtol=1e-5, atol=1e-4)


def test_lee_keeps_a_strong_edge():
    img = np.zeros((64, 64), np.float32) + 20
    img[:, 32:] = 200
    img *= _speckle((64, 64), looks=16, mean=1.0, seed=4)
    out = lee(img, size=7)
    # the step survives: the columns next to it keep most of the 180-grey contrast
    assert out[:, 34].mean() - out[:, 29].mean() > 150


def test_bad_parameters_are_one_line_config_errors():
    with pytest.raises(ConfigError, match="lee.size = 4; use an odd window size"):
        lee(np.zeros((8, 8), np.uint8), size=4)
    with pytest.raises(ConfigError, match="srad.dt"):
        FILTERS.get("srad")(np.zeros((8, 8), np.uint8), dt=0.5)


def test_filter_params_lists_defaults():
    assert filter_params("clahe") == {"clip": 2.0, "tiles": 8}
    assert filter_params("lee") == {"size": 5, "looks": None}
