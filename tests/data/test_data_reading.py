"""Safer folder reading: manifest metadata and stratified splits, channels auto, the pixel limit
from the file header, and multi-value masks."""

from __future__ import annotations

import struct
import warnings
import zlib

import cv2
import numpy as np
import pytest

from kseg.config import DataConfig, load_config, save_config
from kseg.data import io as kio
from kseg.data.folder import scan_folder
from kseg.data.io import header_size, read_image, read_mask
from kseg.data.pipeline import load_splits
from kseg.data.split import stratified_group_split
from kseg.errors import ConfigError, DataError


def _folder(root, n=8, colour=(), size=(24, 32), mask_values=None):
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        g = rng.integers(0, 200, size, dtype=np.uint8)
        img = np.dstack([g, g, g])  # an RGB file of a grey scan
        if i in colour:
            img[..., 0] = 255 - img[..., 0]
        cv2.imwrite(str(root / "images" / f"c{i:02d}.png"), img)
        m = np.zeros(size, np.uint8)
        m[4:12, 4:12] = 255
        if mask_values is not None and i == 0:
            m = np.zeros(size, np.uint8)
            for k, v in enumerate(mask_values):
                m[k * 4 : k * 4 + 4] = v
        cv2.imwrite(str(root / "masks" / f"c{i:02d}.png"), m)
    return root


def _png_header(width: int, height: int) -> bytes:
    """A syntactically valid PNG whose IHDR claims ``width x height`` but holds one tiny IDAT."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + tag
            + data
            + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 16))
        + chunk(b"IEND", b"")
    )


# ------------------------------------------------------------------------ manifest metadata


def test_manifest_extra_columns_are_kept_as_metadata(tmp_path):
    root = _folder(tmp_path / "ds", n=4)
    (root / "manifest.csv").write_text(
        "image,group,class,original_name,size\n"
        "c00.png,p1,benign,scan 1.bmp,24x32\n"
        "c01.png,p1,benign,scan 2.bmp,24x32\n"
        "c02.png,p2,malignant,x.bmp,24x32\n"
        "c03.png,p3,malignant,y.bmp,24x32\n"
    )
    s = {x.name: x for x in scan_folder(root)}
    assert s["c00"].meta == {"class": "benign", "original_name": "scan 1.bmp", "size": "24x32"}
    assert s["c02"].group == "p2"
    by_class = {x.name: x.group for x in scan_folder(root, group_column="class")}
    assert by_class == {"c00": "benign", "c01": "benign", "c02": "malignant", "c03": "malignant"}


def test_stratified_group_split_gives_each_stratum_its_share():
    groups = [f"g{i}" for i in range(20) for _ in range(2)]  # 20 groups, 2 images each
    strata = ["a" if i < 10 else "b" for i in range(20) for _ in range(2)]
    split = stratified_group_split(groups, strata, 0.2, 0.0, seed=3)
    val_a = {g for g, s, x in zip(groups, strata, split, strict=True) if s == "a" and x == "val"}
    val_b = {g for g, s, x in zip(groups, strata, split, strict=True) if s == "b" and x == "val"}
    assert len(val_a) == 2 and len(val_b) == 2
    # groups stay whole
    for g in set(groups):
        assert len({x for gg, x in zip(groups, split, strict=True) if gg == g}) == 1


def test_data_stratify_through_load_splits(tmp_path):
    root = _folder(tmp_path / "ds", n=12)
    rows = ["image,class"] + [f"c{i:02d}.png,{'rare' if i < 4 else 'common'}" for i in range(12)]
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    cfg = DataConfig(path=str(root), img_size=16, val_fraction=0.25, stratify="class")
    for seed in range(4):
        sp = load_splits(cfg, seed, progress=False)
        val = {r["name"] for r in sp.rows if r["split"] == "val"}
        assert sum(int(n[1:]) < 4 for n in val) == 1  # round(0.25 * 4) rare images
        assert sum(int(n[1:]) >= 4 for n in val) == 2  # round(0.25 * 8) common ones
    with pytest.raises(DataError, match=r"no column 'site' \(data.stratify\)"):
        load_splits(DataConfig(path=str(root), img_size=16, stratify="site"), 0, progress=False)


# --------------------------------------------------------------------------- channels auto


def test_channels_auto_is_the_default_and_picks_grey_for_grey_rgb_files(tmp_path):
    assert DataConfig().channels == "auto"
    root = _folder(tmp_path / "ds", n=6)  # RGB files with equal channels
    sp = load_splits(DataConfig(path=str(root), img_size=16), 0, progress=False)
    assert sp.channels == 1 and sp.train.images.shape[-1] == 1
    assert "auto -> 1" in sp.channels_reason


def test_channels_auto_picks_rgb_when_one_image_has_colour(tmp_path):
    root = _folder(tmp_path / "ds", n=6, colour=(4,))
    sp = load_splits(DataConfig(path=str(root), img_size=16), 0, progress=False)
    assert sp.channels == 3 and sp.val.images.shape[-1] == 3
    assert "auto -> 3" in sp.channels_reason and "c04.png" in sp.channels_reason


def test_channels_auto_on_synthetic_follows_the_kind():
    sk = load_splits(DataConfig(synthetic_kind="skin", synthetic_n=6, img_size=32), 0)
    us = load_splits(DataConfig(synthetic_kind="ultrasound", synthetic_n=6, img_size=32), 0)
    assert (sk.channels, us.channels) == (3, 1)


def test_channels_config_validation():
    assert load_config(None, {"data.channels": "auto"}).data.channels == "auto"
    assert load_config(None, {"data.channels": 3}).data.channels == 3
    with pytest.raises(ConfigError, match="data.channels = 2 is not valid; use 1, 3 or auto"):
        load_config(None, {"data.channels": 2})


# ----------------------------------------------------------------------------- pixel limit


def test_huge_png_header_is_refused_before_decoding(tmp_path, monkeypatch):
    p = tmp_path / "huge.png"
    p.write_bytes(_png_header(30000, 30000))
    assert header_size(p) == (30000, 30000)

    def no_decode(path):
        raise AssertionError("decoded a file the header already refused")

    monkeypatch.setattr(kio, "_imread", no_decode)
    with pytest.raises(
        DataError,
        match=r"huge.png: image is 30000x30000 \(900.0 MP\), above the pixel limit of 100 MP",
    ):
        read_image(p, 1)
    with pytest.raises(DataError, match="pixel limit of 100 MP"):
        read_mask(p)


@pytest.mark.parametrize("ext", [".jpg", ".bmp", ".tif"])
def test_pixel_limit_reads_other_headers(tmp_path, ext):
    p = tmp_path / f"img{ext}"
    cv2.imwrite(str(p), np.zeros((100, 200), np.uint8))
    assert header_size(p) == (200, 100)
    with pytest.raises(DataError, match=r"200x100 \(0.0 MP\), above the pixel limit of 0.01 MP"):
        read_image(p, 1, max_pixels=10_000)
    assert read_image(p, 1, max_pixels=20_000).shape == (100, 200, 1)


def test_pixel_limit_from_config_in_the_pipeline(tmp_path):
    root = _folder(tmp_path / "ds", n=4)
    with pytest.raises(DataError, match=r"c00.png: image is 32x24 .*data.max_pixels"):
        load_splits(DataConfig(path=str(root), img_size=16, max_pixels=500), 0, progress=False)


# ------------------------------------------------------------------------- multi-value masks


def test_multi_value_mask_warns_with_file_and_values(tmp_path):
    root = _folder(tmp_path / "ds", n=6, mask_values=(0, 1, 2))
    with pytest.warns(
        UserWarning, match=r"1 mask\(s\) hold more than two values \(c00.png: 0, 1, 2\); binarised"
    ):
        sp = load_splits(DataConfig(path=str(root), img_size=24), 0, progress=False)
    allm = np.concatenate([sp.train.masks, sp.val.masks])
    assert set(np.unique(allm).tolist()) == {0, 1}


def test_num_classes_uses_mask_values_as_class_ids(tmp_path):
    root = _folder(tmp_path / "ds", n=6, mask_values=(0, 1, 2))
    cfg = DataConfig(path=str(root), img_size=24, resize="stretch")
    with warnings.catch_warnings():  # class ids in a multi-class run: no warning
        warnings.simplefilter("error")
        sp = load_splits(cfg, 0, progress=False, num_classes=3)
    names = sp.train.names + sp.val.names
    masks = np.concatenate([sp.train.masks, sp.val.masks])
    m0 = masks[names.index("c00")]
    assert set(np.unique(m0).tolist()) == {0, 1, 2}
    assert set(np.unique(masks[names.index("c01")]).tolist()) == {0, 1}  # 0/255 -> 0/1
    bad = tmp_path / "bad.png"
    cv2.imwrite(str(bad), np.array([[0, 5]], np.uint8))
    with pytest.raises(DataError, match=r"bad.png: mask values 0, 5 are not class ids 0..2"):
        read_mask(bad, 3)


def test_two_value_masks_do_not_warn(tmp_path):
    root = _folder(tmp_path / "ds", n=4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_splits(DataConfig(path=str(root), img_size=16, val_fraction=0.25), 0, progress=False)


# ------------------------------------------------------------------- preprocess in the config


def test_preprocess_chain_round_trips_through_the_run_config(tmp_path):
    cfg = load_config(None, {"data.preprocess": [{"lee": {"size": 7}}, "clahe"]})
    assert cfg.data.preprocess == (
        {"lee": {"size": 7, "looks": None}},
        {"clahe": {"clip": 2.0, "tiles": 8}},
    )
    save_config(cfg, tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml").data.preprocess == cfg.data.preprocess
    with pytest.raises(
        ConfigError, match=r"config: data.preprocess: unknown filter 'wiener'; valid: "
    ):
        load_config(None, {"data.preprocess": ["wiener"]})
