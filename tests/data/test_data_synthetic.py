"""kseg.data.synthetic: determinism, sane masks, speckle statistics, clean images, writing."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kseg.config import SyntheticKind
from kseg.data.folder import scan_folder
from kseg.data.io import read_image, read_mask
from kseg.data.synthetic import (
    LOG_SPECKLE_BIAS_DB,
    RAYLEIGH_SNR,
    parse_synthetic_spec,
    speckle_envelope,
    synthesize,
    write_synthetic,
)
from kseg.errors import ConfigError, DataError

KINDS = {"ultrasound": (1, 0.005, 0.3), "vessels": (3, 0.03, 0.25), "skin": (3, 0.04, 0.4)}


@pytest.mark.parametrize("kind", list(KINDS))
def test_shapes_determinism_and_masks(kind):
    channels, lo, hi = KINDS[kind]
    a = synthesize(kind, 6, size=64, seed=3)
    assert a.images.shape == (6, 64, 64, channels) and a.images.dtype == np.uint8
    assert a.clean.shape == a.images.shape and a.clean.dtype == np.uint8
    assert a.masks.shape == (6, 64, 64) and set(np.unique(a.masks)) <= {0, 1}
    assert len(set(a.names)) == 6 and a.names[0] == f"{kind}_0000"
    b = synthesize(kind, 6, size=64, seed=3)
    assert np.array_equal(a.images, b.images) and np.array_equal(a.masks, b.masks)
    # sample i does not depend on n
    c = synthesize(kind, 2, size=64, seed=3)
    assert np.array_equal(c.images, a.images[:2]) and np.array_equal(c.clean, a.clean[:2])
    d = synthesize(kind, 2, size=64, seed=4)
    assert not np.array_equal(d.images, a.images[:2])
    share = a.masks.reshape(6, -1).mean(axis=1)
    assert (share > lo).all() and (share < hi).all(), share
    # the clean image is a different, noise-free image of the same scene
    diff = np.abs(a.images.astype(int) - a.clean.astype(int)).mean()
    assert diff > 2.0


def test_rayleigh_speckle_statistics():
    """Homogeneous scatterers: envelope SNR 1.91 and 5.57 dB std after log compression."""
    rng = np.random.default_rng(0)
    env, power = speckle_envelope(np.full((256, 256), 2.0, np.float32), rng, 0.8, 1.6)
    snr = env.mean() / env.std()
    assert RAYLEIGH_SNR == pytest.approx(1.913, abs=1e-3)
    assert snr == pytest.approx(RAYLEIGH_SNR, rel=0.05)
    assert np.allclose(power, 4.0, rtol=1e-3)  # E[R^2] = amplitude^2 with a unit-energy PSF
    assert (env**2).mean() == pytest.approx(4.0, rel=0.05)
    db = 20 * np.log10(env)
    assert db.std() == pytest.approx(5.57, abs=0.25)
    assert db.mean() == pytest.approx(10 * math.log10(4.0) - LOG_SPECKLE_BIAS_DB, abs=0.3)


def test_ultrasound_noise_is_log_rayleigh_around_clean():
    """In the images: noisy - clean has ~zero mean and the std of log-compressed speckle.

    The dynamic range is drawn in [45, 60] dB, so 5.57 dB maps to 23.7..31.6 grey levels. Only
    linear-array images are checked: sector scan conversion interpolates, which smooths speckle.
    """
    s = synthesize("ultrasound", 24, size=128, seed=0)
    checked = 0
    for x, c in zip(s.images[..., 0].astype(float), s.clean[..., 0].astype(float), strict=True):
        keep = (c > 60) & (c < 180)  # away from clipping at 0 and 255
        resid = (x - c)[keep]
        assert abs(resid.mean()) < 3.0
        if c[-1, 0] > 0 and c[-1, -1] > 0:  # linear geometry: no black fan corners
            assert 0.95 * 23.7 < resid.std() < 1.05 * 31.6
            checked += 1
    assert checked >= 4


def test_ultrasound_is_not_separable_by_intensity():
    """Best global threshold (either polarity) on the clean-free image gives a poor Dice."""
    s = synthesize("ultrasound", 24, size=64, seed=1)
    x, m = s.images[..., 0], s.masks.astype(bool)
    best = 0.0
    for t in range(10, 250, 10):
        for pred in (x < t, x > t):
            d = 2 * (pred & m).sum() / (pred.sum() + m.sum())
            best = max(best, d)
    assert best < 0.4
    # lesions come in both polarities
    inside = [x[i][m[i]].mean() - x[i][~m[i] & (x[i] > 0)].mean() for i in range(24)]
    assert min(inside) < -20 and max(inside) > 20


def test_unknown_kind_and_bad_n():
    with pytest.raises(ConfigError, match="ultrasound, vessels, skin"):
        synthesize("ct", 2)
    with pytest.raises(ConfigError, match="synthetic_n"):
        synthesize("skin", 0)


def test_parse_synthetic_spec():
    assert parse_synthetic_spec("synthetic:", "--data") == ("ultrasound", 200)
    assert parse_synthetic_spec("synthetic:skin", "--data", default_n=24) == ("skin", 24)
    kind, n = parse_synthetic_spec("synthetic:vessels:7", "SOURCE")
    assert (kind, n) == ("vessels", 7) and isinstance(kind, SyntheticKind)
    with pytest.raises(
        ConfigError, match=r"^SOURCE synthetic:ct: use synthetic:KIND\[:N\] with KIND"
    ):
        parse_synthetic_spec("synthetic:ct", "SOURCE")
    with pytest.raises(ConfigError, match=r"^--unlabeled synthetic:skin:x: use synthetic:KIND:N "):
        parse_synthetic_spec("synthetic:skin:x", "--unlabeled", usage="synthetic:KIND:N")


def test_write_synthetic_folder(tmp_path):
    out = write_synthetic("vessels", 3, tmp_path / "syn", size=48, seed=2)
    samples = scan_folder(out)
    assert [s.name for s in samples] == ["vessels_0000", "vessels_0001", "vessels_0002"]
    assert all(s.group == s.name for s in samples)
    ref = synthesize("vessels", 3, size=48, seed=2)
    assert np.array_equal(read_image(samples[1].image, 3), ref.images[1])
    assert np.array_equal(read_mask(samples[1].mask), ref.masks[1])
    assert np.array_equal(read_image(out / "clean" / "vessels_0001.png", 3), ref.clean[1])
    assert (out / "manifest.csv").read_text().splitlines()[0] == "image,mask,group,split"
    with pytest.raises(DataError, match="exists and is not empty"):
        write_synthetic("vessels", 1, out, size=48)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folders left
