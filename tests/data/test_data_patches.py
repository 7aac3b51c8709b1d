"""data.sampling: patch: native-resolution windows (shapes, where they are centred, how often
each class is), the tiles that cover validation images, and native canvases from load_splits."""

from __future__ import annotations

import numpy as np
import pytest

from kseg.config import load_config
from kseg.data.pipeline import (
    ArrayData,
    PatchSampler,
    grid_tiles,
    load_splits,
    make_dataset,
    patches_per_image,
    tile_starts,
)
from kseg.errors import ConfigError


def _native(n=4, h=100, w=140):
    """Images whose pixel value encodes its column (to find a window's origin); masks with a
    large class 1 block and a 3 x 3 class 2 speck."""
    images = np.zeros((n, h, w, 1), np.uint8)
    images[..., 0] = (np.arange(w) % 256)[None, None, :]
    masks = np.zeros((n, h, w), np.uint8)
    masks[:, 10:60, 10:80] = 1  # 3500 px
    masks[:, 90:93, 130:133] = 2  # 9 px, near the bottom-right corner
    extent = np.tile([h, w], (n, 1))
    return ArrayData(
        images, masks, [f"i{k}" for k in range(n)], [f"i{k}" for k in range(n)], extent=extent
    )


def test_windows_have_the_patch_shape_and_stay_inside_the_image():
    d = _native()
    s = PatchSampler(d.images, d.masks, d.extent, 32, foreground=0.5)
    for seed in range(200):
        x, y = s(seed % 4, seed)
        assert x.shape == (32, 32, 1) and y.shape == (32, 32)
        x0 = int(x[0, 0, 0])
        assert 0 <= x0 <= 140 - 32 and np.array_equal(x[0, :, 0], np.arange(x0, x0 + 32))
    # same seed, same window
    assert np.array_equal(s(1, 7)[0], s(1, 7)[0])


def test_foreground_share_and_rare_classes():
    d = _native()
    n = 400
    all_fg = PatchSampler(d.images, d.masks, d.extent, 32, foreground=1.0)
    rare = sum(bool((all_fg(i % 4, i)[1] == 2).any()) for i in range(n))
    # the 9-px class is drawn as often as the 3500-px one: about half the windows hold it
    assert 0.4 * n <= rare <= 0.6 * n
    centred = sum(bool(all_fg(i % 4, i)[1].any()) for i in range(n))
    assert centred == n  # every window centred on foreground holds foreground
    uniform = PatchSampler(d.images, d.masks, d.extent, 32, foreground=0.0)
    rare_u = sum(bool((uniform(i % 4, i)[1] == 2).any()) for i in range(n))
    assert rare_u < 0.1 * n  # drawn uniformly, the speck is in few windows (2.5 % expected)
    with pytest.raises(ConfigError, match="patch_foreground"):
        PatchSampler(d.images, d.masks, d.extent, 32, foreground=1.5)


def test_small_images_in_a_canvas_give_windows_at_the_origin():
    d = _native(n=1, h=100, w=140)
    d.extent = np.array([[20, 30]])  # the image fills only the top-left of its canvas
    s = PatchSampler(d.images, d.masks, d.extent, 32, foreground=0.0)
    x, _ = s(0, 3)
    assert x.shape == (32, 32, 1) and int(x[0, 0, 0]) == 0


def test_tiles_cover_every_pixel():
    assert tile_starts(100, 32) == [0, 32, 64, 68] and tile_starts(32, 32) == [0]
    assert tile_starts(20, 32) == [0]
    d = _native(n=2)
    tiles = grid_tiles(d, 32)
    assert len(tiles) == 2 * 4 * 5 and tiles.images.shape == (40, 32, 32, 1)
    assert tiles.names[0] == "i0@0,0" and tiles.names[-1] == "i1@68,108"
    covered = np.zeros((100, 140), bool)
    for name, m in zip(tiles.names[:20], tiles.masks[:20], strict=True):
        y, x = map(int, name.split("@")[1].split(","))
        assert np.array_equal(m, d.masks[0, y : y + 32, x : x + 32])
        covered[y : y + 32, x : x + 32] = True
    assert covered.all()
    assert patches_per_image(d, 32) == round(100 * 140 / 32**2)  # 14
    resized = ArrayData(d.images, d.masks, d.names, d.groups)
    assert grid_tiles(resized, 32) is resized and patches_per_image(resized, 32) == 1


def test_dataset_of_patches_and_native_canvases(tmp_path):
    from tests.plan.test_plan_classes import write_two_class_folder

    root = write_two_class_folder(tmp_path / "d", n=6, h=50, w=70)
    cfg = load_config(None, {"data.path": str(root), "data.img_size": 32, "model.num_classes": 3})
    splits = load_splits(cfg.data, seed=0, progress=False, num_classes=3, native=True)
    assert splits.train.images.shape[1:3] == (50, 70) and splits.train.masks.max() == 2
    assert splits.train.extent.tolist() == [[50, 70]] * len(splits.train)
    ds = make_dataset(splits.train, 4, shuffle=True, repeat=True, patch=32, patch_foreground=1.0)
    x, y = next(iter(ds))
    assert x.shape == (4, 32, 32, 1) and y.shape == (4, 32, 32, 1)
    assert float(y.numpy().max()) >= 1.0  # centred on foreground: class ids, not 0/1
    # whole images as before without native
    whole = load_splits(cfg.data, seed=0, progress=False, num_classes=3)
    assert whole.train.images.shape[1:3] == (32, 32) and whole.train.extent is None
