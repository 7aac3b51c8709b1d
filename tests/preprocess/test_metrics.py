"""Speckle metrics against values known in closed form."""

from __future__ import annotations

import numpy as np
import pytest

from kseg.preprocess.metrics import cnr, enl, epi, psnr, regions, speckle_index, ssim


@pytest.mark.parametrize("looks", [1, 4, 10])
def test_enl_of_gamma_speckle_matches_theory(looks):
    # intensity of L-look speckle ~ Gamma(L, mean/L): mean^2/var = L
    x = np.random.default_rng(looks).gamma(looks, 50.0 / looks, (256, 256))
    assert enl(x) == pytest.approx(looks, rel=0.05)


def test_speckle_index_of_constant_is_zero_and_of_speckle_near_one():
    assert speckle_index(np.full((32, 32), 80.0)) == pytest.approx(0.0, abs=1e-6)
    x = np.random.default_rng(0).gamma(1.0, 100.0, (256, 256)).astype(np.float32)
    # local std/mean of single-look speckle estimated in 5x5 windows: near 1 (slightly below)
    assert 0.8 < speckle_index(x) < 1.05


def test_cnr_by_hand():
    img = np.zeros((20, 20), np.float32)
    lesion = np.zeros((20, 20), bool)
    lesion[:10] = True
    img[:10] = np.tile([8.0, 12.0], 100).reshape(10, 20)  # mean 10, var 4
    img[10:] = np.tile([1.0, 3.0], 100).reshape(10, 20)  # mean 2, var 1
    assert cnr(img, lesion, ~lesion) == pytest.approx(8.0 / np.sqrt(5.0))


def test_epi_is_one_for_identity_and_drops_with_blur():
    import cv2

    rng = np.random.default_rng(0)
    ref = rng.uniform(0, 255, (64, 64)).astype(np.float32)
    assert epi(ref, ref) == pytest.approx(1.0)
    assert epi(cv2.GaussianBlur(ref, (7, 7), 2.0), ref) < 0.7


def test_psnr_and_ssim():
    clean = np.full((64, 64), 100, np.uint8)
    noisy = clean.copy()
    noisy[::2] = 110  # MSE 50
    assert psnr(noisy, clean) == pytest.approx(10 * np.log10(255**2 / 50.0), rel=1e-6)
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 256, (64, 64)).astype(np.uint8)
    assert ssim(texture, texture) == pytest.approx(1.0)


def test_regions_are_disjoint_and_inside_the_image():
    mask = np.zeros((64, 64), np.uint8)
    mask[24:40, 24:40] = 1
    image = np.full((64, 64), 50, np.uint8)
    image[:, :8] = 0  # outside the imaged sector
    r = regions(mask, image, margin=2, ring=6)
    assert not (r.lesion & r.background).any()
    assert r.lesion.sum() == 12 * 12  # 16x16 eroded by 2 on each side
    assert not r.background[:, :8].any() and r.background.any()
    assert not (r.background & (mask > 0)).any()
