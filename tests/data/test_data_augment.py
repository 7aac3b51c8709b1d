"""kseg.data.augment: the mask moves with the image; switches and limits from the config."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from kseg.config import AugmentConfig
from kseg.data.augment import build_augment
from kseg.errors import ConfigError


def _scene(size: int = 64, c: int = 1) -> tuple[np.ndarray, np.ndarray]:
    img = np.full((size, size, c), 30, np.uint8)
    mask = np.zeros((size, size), np.uint8)
    mask[10:30, 14:44] = 1  # off-centre so flips and rotations move it
    img[mask == 1] = 220
    return img, mask


@pytest.mark.parametrize("channels", [1, 3])
def test_mask_moves_with_image(channels):
    cfg = AugmentConfig(hflip_p=0.5, vflip_p=0.5, rotate_p=1.0, crop_p=0.7)
    aug = build_augment(cfg, 64)
    img, mask = _scene(c=channels)
    moved = 0
    for seed in range(40):
        aug.set_random_seed(seed)
        out = aug(image=img, mask=mask)
        x, m = out["image"], out["mask"]
        assert x.shape == img.shape and x.dtype == np.uint8 and m.shape == mask.shape
        assert set(np.unique(m)) <= {0, 1}
        bright = x.mean(axis=-1) > 125
        iou = (bright & (m == 1)).sum() / (bright | (m == 1)).sum()
        assert iou > 0.85, (seed, iou)
        moved += int((m != mask).mean() > 0.02)
    assert moved > 30  # geometry really changed in most draws


def test_validation_config_gives_none():
    assert build_augment(AugmentConfig(enabled=False), 64) is None
    off = {f.name: 0.0 for f in dataclasses.fields(AugmentConfig) if f.name.endswith("_p")}
    assert build_augment(AugmentConfig(**off), 64) is None


def test_rotation_stays_within_limit():
    cfg = AugmentConfig(
        hflip_p=0,
        rotate_p=1,
        rotate_limit=15,
        crop_p=0,
        brightness_contrast_p=0,
        gamma_p=0,
        clahe_p=0,
        blur_p=0,
        gauss_noise_p=0,
        speckle_p=0,
    )
    aug = build_augment(cfg, 64)
    mask = np.zeros((64, 64), np.uint8)
    mask[31:33, 4:60] = 1  # a horizontal bar: its angle after augmentation is measurable
    angles = []
    for seed in range(30):
        aug.set_random_seed(seed)
        m = aug(image=np.zeros((64, 64, 1), np.uint8), mask=mask)["mask"]
        ys, xs = np.nonzero(m)
        slope = np.polyfit(xs - xs.mean(), ys - ys.mean(), 1)[0]
        angles.append(np.degrees(np.arctan(slope)))
    assert max(abs(a) for a in angles) <= 15.5
    assert max(abs(a) for a in angles) > 8  # and it does rotate


def test_photometric_only_touches_image_and_speckle_is_multiplicative():
    cfg = AugmentConfig(
        hflip_p=0,
        rotate_p=0,
        crop_p=0,
        brightness_contrast_p=0,
        gamma_p=0,
        clahe_p=0,
        blur_p=0,
        gauss_noise_p=0,
        speckle_p=1.0,
    )
    aug = build_augment(cfg, 32)
    img = np.zeros((32, 32, 1), np.uint8)
    img[:, 16:] = 200
    aug.set_random_seed(0)
    out = aug(image=img, mask=np.ones((32, 32), np.uint8))
    assert (out["mask"] == 1).all()
    assert (out["image"][:, :16] == 0).all()  # multiplicative: black stays black
    ratio = out["image"][:, 16:].astype(float) / 200
    assert 0.05 < ratio.std() < 0.2 and 0.75 <= ratio.min() and ratio.max() <= 1.21


def test_geometric_only_keeps_clean_aligned():
    aug = build_augment(
        AugmentConfig(rotate_p=1.0, crop_p=1.0, speckle_p=1.0), 64, geometric_only=True
    )
    img, _ = _scene()
    aug.set_random_seed(3)
    out = aug(image=img, clean=img.copy())
    assert np.array_equal(out["image"], out["clean"])


def test_bad_probability_names_key():
    with pytest.raises(ConfigError, match="data.augment.gamma_p"):
        build_augment(AugmentConfig(gamma_p=1.5), 64)
