"""kseg.data.folder: mixed formats and sizes, manifest and regex groups, bad-input errors."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from kseg.config import DataConfig, ResizeMode
from kseg.data.folder import check_sizes, scan_folder
from kseg.data.pipeline import load_splits
from kseg.errors import DataError


def _disc(h: int, w: int, r: int) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    cv2.circle(m, (w // 2, h // 2), r, 1, -1)
    return m


def _write(root, stem, ext, img, mask, mask_kind="255"):
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(root / "images" / f"{stem}{ext}"), img)
    if mask_kind == "255":
        cv2.imwrite(str(root / "masks" / f"{stem}.png"), mask * 255)
    elif mask_kind == "01":
        cv2.imwrite(str(root / "masks" / f"{stem}.png"), mask)
    elif mask_kind == "palette":
        p = Image.fromarray(mask, mode="L").convert("P")
        p.putpalette([0, 0, 0, 0, 255, 0] + [0, 0, 0] * 254)
        p.save(root / "masks" / f"{stem}.png")
    elif mask_kind == "bmp":
        cv2.imwrite(str(root / "masks" / f"{stem}.bmp"), mask * 255)


@pytest.fixture
def mixed(tmp_path):
    """Six images: png/jpg/bmp/tif, gray and colour, three sizes, four mask encodings."""
    root = tmp_path / "ds"
    rng = np.random.default_rng(0)
    specs = [
        ("p01_a", ".png", (60, 80), 1, "255"),
        ("p01_b", ".jpg", (60, 80), 3, "01"),
        ("p02_a", ".bmp", (45, 70), 1, "palette"),
        ("p02_b", ".tif", (45, 70), 3, "bmp"),
        ("p03_a", ".png", (81, 55), 3, "255"),
        ("p04_a", ".tiff", (64, 64), 1, "01"),
    ]
    for stem, ext, (h, w), c, mk in specs:
        img = rng.integers(0, 120, (h, w, c) if c == 3 else (h, w), dtype=np.uint8)
        mask = _disc(h, w, min(h, w) // 4)
        img[mask == 1] = 230
        _write(root, stem, ext, img, mask, mk)
    return root, specs


def test_scan_mixed_formats(mixed):
    root, specs = mixed
    samples = scan_folder(root)
    assert [s.name for s in samples] == sorted(s[0] for s in specs)
    assert all(s.mask is not None and s.group == s.name and s.split is None for s in samples)
    assert samples[3].image.suffix == ".tif" and samples[3].mask.suffix == ".bmp"
    check_sizes(samples)


@pytest.mark.parametrize("resize", [ResizeMode.STRETCH, ResizeMode.LETTERBOX])
@pytest.mark.parametrize("channels", [1, 3])
def test_load_mixed_folder(mixed, resize, channels):
    root, specs = mixed
    cfg = DataConfig(
        path=str(root), img_size=32, channels=channels, resize=resize, val_fraction=0.3
    )
    sp = load_splits(cfg, seed=0, progress=False)
    n = len(sp.train) + len(sp.val)
    assert n == len(specs)
    for part in (sp.train, sp.val):
        assert part.images.shape[1:] == (32, 32, channels) and part.images.dtype == np.uint8
        assert part.masks.shape[1:] == (32, 32) and set(np.unique(part.masks)) <= {0, 1}
        # every image has its disc: the bright pixels coincide with the mask
        for img, m in zip(part.images, part.masks, strict=True):
            assert 0.05 < m.mean() < 0.4
            bright = img.mean(axis=-1) > 175
            assert (bright & (m == 1)).sum() / max((bright | (m == 1)).sum(), 1) > 0.8
        assert all(p.parent.name == "images" for p in part.originals)


def test_regex_groups(mixed):
    root, _ = mixed
    samples = scan_folder(root, group_regex=r"^(p\d+)_")
    assert {s.name: s.group for s in samples}["p01_b"] == "p01"
    assert len({s.group for s in samples}) == 4
    with pytest.raises(DataError, match="does not match file 'p01_a'"):
        scan_folder(root, group_regex=r"^patient(\d+)")
    with pytest.raises(DataError, match="not a valid regex"):
        scan_folder(root, group_regex=r"(")


def test_manifest_groups_and_splits(mixed):
    root, _ = mixed
    (root / "manifest.csv").write_text(
        "image,mask,group,split\n"
        "p01_a.png,p01_a.png,alice,val\n"
        "p01_b.jpg,,alice,val\n"
        "images/p02_a.bmp,,bob,\n"
        "p02_b,,bob,\n"
        "p03_a.png,,carol,\n"
        "p04_a.tiff,,dave,\n"
    )
    samples = {s.name: s for s in scan_folder(root, group_regex=r"^(p\d+)_")}
    assert samples["p01_b"].group == "alice" and samples["p01_b"].split == "val"
    assert samples["p02_a"].group == "bob" and samples["p02_a"].split is None
    for seed in range(5):
        sp = load_splits(
            DataConfig(path=str(root), img_size=16, val_fraction=0.3), seed, progress=False
        )
        split = {r["name"]: r["split"] for r in sp.rows}
        assert split["p01_a"] == split["p01_b"] == "val"
        assert split["p02_a"] == split["p02_b"]


def test_manifest_errors_name_the_row(mixed):
    root, _ = mixed
    (root / "manifest.csv").write_text("image,patient\np01_a.png,x\n")
    with pytest.raises(
        DataError, match=r"no column 'pid' \(data.group_column\); columns: image, patient"
    ):
        scan_folder(root, group_column="pid")
    (root / "manifest.csv").write_text("image,group\np01_a.png,x\nghost.png,y\n")
    with pytest.raises(DataError, match="line 3: image 'ghost.png' not found"):
        scan_folder(root)
    (root / "manifest.csv").write_text("image,split\np01_a.png,training\n")
    with pytest.raises(DataError, match="line 2: split 'training'"):
        scan_folder(root)


def test_missing_and_empty_folders(tmp_path):
    with pytest.raises(DataError, match="data folder not found"):
        scan_folder(tmp_path / "absent")
    with pytest.raises(DataError, match="no images/ subfolder"):
        scan_folder(tmp_path)
    (tmp_path / "images").mkdir()
    with pytest.raises(DataError, match="no masks/ subfolder"):
        scan_folder(tmp_path)
    (tmp_path / "masks").mkdir()
    (tmp_path / "images" / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="no images .*empty"):
        scan_folder(tmp_path)


def test_image_without_mask_lists_files(mixed):
    root, _ = mixed
    (root / "masks" / "p01_a.png").unlink()
    (root / "masks" / "p03_a.png").unlink()
    with pytest.raises(DataError, match=r"no mask for 2 image\(s\): p01_a.png, p03_a.png"):
        scan_folder(root)
    assert len(scan_folder(root, require_masks=False)) == 6


def test_orphan_mask_is_a_warning(mixed):
    root, _ = mixed
    cv2.imwrite(str(root / "masks" / "lonely.png"), np.zeros((4, 4), np.uint8))
    with pytest.warns(UserWarning, match="lonely.png"):
        samples = scan_folder(root)
    assert len(samples) == 6


def test_duplicate_stems(mixed):
    root, _ = mixed
    cv2.imwrite(str(root / "images" / "p01_a.jpg"), np.zeros((4, 4), np.uint8))
    with pytest.raises(DataError, match="p01_a.jpg, p01_a.png"):
        scan_folder(root)


def test_mask_size_mismatch_lists_files(mixed):
    root, _ = mixed
    cv2.imwrite(str(root / "masks" / "p03_a.png"), np.zeros((81, 56), np.uint8))
    with pytest.raises(DataError, match="p03_a.png 81x55 vs mask p03_a.png 81x56"):
        check_sizes(scan_folder(root))
    with pytest.raises(DataError, match="p03_a.png 81x55 vs mask p03_a.png 81x56"):
        load_splits(DataConfig(path=str(root), img_size=16), 0, progress=False)


def test_corrupt_image_is_named(mixed):
    root, _ = mixed
    (root / "images" / "p02_a.bmp").write_bytes(b"BM garbage")
    with pytest.raises(DataError, match=r"p02_a.bmp: cannot read image"):
        load_splits(DataConfig(path=str(root), img_size=16), 0, progress=False)
    with pytest.raises(DataError, match=r"p02_a.bmp: cannot read image"):
        check_sizes(scan_folder(root))
