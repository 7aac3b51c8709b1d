"""kseg.data.pipeline: load_splits and make_dataset (shapes, dtypes, determinism, real data)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from kseg.config import AugmentConfig, DataConfig, ResizeMode
from kseg.data.augment import build_augment
from kseg.data.pipeline import ArrayData, compute_mean_std, load_splits, make_dataset
from kseg.errors import DataError


@pytest.fixture(scope="module")
def splits():
    return load_splits(
        DataConfig(synthetic_n=24, img_size=32, val_fraction=0.25), seed=5, progress=False
    )


def _collect(ds):
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in ds], strict=True)
    return np.concatenate(xs), np.concatenate(ys)


def test_load_synthetic_splits(splits):
    assert len(splits.train) == 18 and len(splits.val) == 6 and splits.test is None
    assert splits.train.images.shape == (18, 32, 32, 1) and splits.train.clean.shape == (
        18,
        32,
        32,
        1,
    )
    assert not set(splits.train.groups) & set(splits.val.groups)
    assert {r["split"] for r in splits.rows} == {"train", "val"} and len(splits.rows) == 24
    assert splits.train.originals is None


def test_validation_dataset_is_plain_and_repeatable(splits):
    ds = make_dataset(splits.val, 4)
    x1, y1 = _collect(ds)
    x2, y2 = _collect(ds)
    assert x1.dtype == np.float32 and y1.dtype == np.float32
    assert x1.shape == (6, 32, 32, 1) and y1.shape == (6, 32, 32, 1)
    assert np.array_equal(x1, x2) and np.array_equal(y1, y2)
    # no augmentation: exactly the stored pixels, raw 0..255, masks {0, 1}
    assert np.array_equal(x1, splits.val.images.astype(np.float32))
    assert np.array_equal(y1[..., 0], splits.val.masks.astype(np.float32))
    assert ds.element_spec[0].shape.as_list() == [None, 32, 32, 1]


def test_training_dataset_augments_reproducibly(splits):
    aug = build_augment(AugmentConfig(rotate_p=1.0), 32)

    def run():
        ds = make_dataset(splits.train, 8, augment=aug, shuffle=True, seed=11)
        return _collect(ds), _collect(ds)  # two epochs

    (xa, ya), (xb, _) = run()
    (xc, yc), _ = run()
    assert xa.shape == (18, 32, 32, 1) and ya.shape == (18, 32, 32, 1)
    assert set(np.unique(ya)) <= {0.0, 1.0} and 0 <= xa.min() and xa.max() <= 255
    assert np.array_equal(xa, xc) and np.array_equal(ya, yc)  # same seed, same stream
    assert not np.array_equal(xa, xb)  # a new epoch, new draws
    assert not np.array_equal(
        np.sort(xa.ravel()), np.sort(splits.train.images.astype(np.float32).ravel())
    )
    ds = make_dataset(
        splits.train, 8, augment=aug, shuffle=True, seed=11, repeat=True, drop_remainder=True
    )
    assert ds.element_spec[0].shape.as_list() == [8, 32, 32, 1]
    assert len(list(ds.take(5))) == 5  # repeats past one epoch


def test_denoise_targets(splits):
    aug = build_augment(AugmentConfig(), 32, geometric_only=True)
    x, y = _collect(make_dataset(splits.val, 3, task="denoise"))
    assert y.shape == (6, 32, 32, 1) and 0.0 <= y.min() and y.max() <= 1.0
    assert np.allclose(y * 255.0, splits.val.clean, atol=1e-3)
    xa, ya = _collect(make_dataset(splits.train, 6, augment=aug, task="denoise", seed=2))
    assert xa.shape == ya.shape == (18, 32, 32, 1)
    no_clean = ArrayData(splits.val.images, splits.val.masks, splits.val.names, splits.val.groups)
    with pytest.raises(DataError, match="denoise"):
        make_dataset(no_clean, 2, task="denoise")


def test_rgb_channels_and_mean_std():
    sp = load_splits(
        DataConfig(synthetic_kind="skin", synthetic_n=8, img_size=32, channels=3), 0, progress=False
    )
    assert sp.train.images.shape[1:] == (32, 32, 3)
    mean, std = compute_mean_std(sp.train)
    ref = sp.train.images.reshape(-1, 3) / 255.0
    assert np.allclose(mean, ref.mean(axis=0)) and np.allclose(std, ref.std(axis=0), rtol=1e-6)
    with pytest.warns(UserWarning, match="grayscale"):
        gray = load_splits(
            DataConfig(synthetic_kind="skin", synthetic_n=8, img_size=32, channels=1),
            0,
            progress=False,
        )
    assert gray.train.images.shape[1:] == (32, 32, 1)


def test_single_group_has_no_validation(tmp_path):
    with pytest.raises(DataError, match="no validation images"):
        load_splits(DataConfig(synthetic_n=1, img_size=32), 0, progress=False)


def test_hc18_subset_through_load_splits(hc18_dir, tmp_path):
    """8 real images, one of a different size (216_HC is 541 x 738), letterboxed to 64."""
    stems = ["000_HC", "002_HC", "004_HC", "006_HC", "008_HC", "010_HC", "012_HC", "216_HC"]
    for sub in ("images", "masks"):
        (tmp_path / sub).mkdir()
        for stem in stems:
            shutil.copy(hc18_dir / sub / f"{stem}.png", tmp_path / sub / f"{stem}.png")
    cfg = DataConfig(
        path=str(tmp_path), img_size=64, resize=ResizeMode.LETTERBOX, val_fraction=0.25
    )
    sp = load_splits(cfg, seed=0, split_file=tmp_path / "run" / "split.csv", progress=False)
    assert len(sp.train) == 6 and len(sp.val) == 2
    every = np.concatenate([sp.train.masks, sp.val.masks])
    share = every.reshape(8, -1).mean(axis=1)
    assert ((share > 0.03) & (share < 0.5)).all(), share  # fetal heads, not empty, not full
    imgs = np.concatenate([sp.train.images, sp.val.images])
    assert imgs.shape == (8, 64, 64, 1)
    # letterbox: 540 x 800 -> 43 x 64 content at row 10, 541 x 738 -> 47 x 64 at row 8
    assert (imgs[:, :8] == 0).all() and (imgs[:, 56:] == 0).all() and imgs[:, 20:44].mean() > 10
    assert (tmp_path / "run" / "split.csv").read_text().count("\n") == 9
    x, y = next(iter(make_dataset(sp.val, 2)))
    assert x.shape == (2, 64, 64, 1) and y.shape == (2, 64, 64, 1)
