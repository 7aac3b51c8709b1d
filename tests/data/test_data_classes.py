"""Masks as people have them: palette PNGs read by index, grey label images, colour masks through
``data.classes``, and the binary-merge guard."""

from __future__ import annotations

import warnings

import cv2
import numpy as np
import pytest
from PIL import Image

from kseg.config import DataConfig
from kseg.data.classes import merged_classes
from kseg.data.io import foreground_ids, read_mask, read_stored_mask
from kseg.data.pipeline import load_splits
from kseg.errors import DataError

NERVE, VESSEL = (128, 0, 0), (0, 128, 0)  # the PASCAL VOC colours of indices 1 and 2


def _labels(h=40, w=60) -> np.ndarray:
    lab = np.zeros((h, w), np.uint8)
    cv2.circle(lab, (15, 20), 9, 1, -1)
    cv2.rectangle(lab, (35, 8), (52, 30), 2, -1)
    return lab


def _palette_png(path, lab: np.ndarray, palette=None) -> None:
    im = Image.fromarray(lab, mode="P")
    pal = palette or [0, 0, 0, *NERVE, *VESSEL]
    im.putpalette(pal + [0] * (768 - len(pal)))
    im.save(path)


def test_palette_png_is_read_by_index_not_colour(tmp_path):
    lab = _labels()
    _palette_png(tmp_path / "m.png", lab)
    assert Image.open(tmp_path / "m.png").mode == "P"
    # OpenCV alone sees the colours: the largest channel of both classes is 128
    bgr = cv2.imread(str(tmp_path / "m.png"), cv2.IMREAD_UNCHANGED)
    assert set(np.unique(bgr.max(axis=2)).tolist()) == {0, 128}
    ids = read_mask(tmp_path / "m.png", 3)
    assert ids.dtype == np.uint8 and np.array_equal(ids, lab)
    assert np.array_equal(read_mask(tmp_path / "m.png"), (lab > 0).astype(np.uint8))  # binary
    assert np.array_equal(read_mask(tmp_path / "m.png", classes={"a": 1, "b": 2}), lab > 0)
    with pytest.raises(DataError, match=r"m.png: palette indices 0, 1, 2 are not class ids 0..1"):
        read_mask(tmp_path / "m.png", 2)
    for ext in ("bmp", "tif"):  # other indexed formats OpenCV expands
        Image.open(tmp_path / "m.png").save(tmp_path / f"m.{ext}")
        assert read_stored_mask(tmp_path / f"m.{ext}").kind == "palette", ext
        assert np.array_equal(read_mask(tmp_path / f"m.{ext}", 3), lab), ext


def test_palette_colours_through_a_colour_table(tmp_path):
    lab = _labels()
    _palette_png(tmp_path / "m.png", lab)
    ids = read_mask(tmp_path / "m.png", 3, classes={"vessel": list(VESSEL), "nerve": list(NERVE)})
    assert np.array_equal(ids, np.choose(lab, [0, 2, 1]))  # the table's order decides the ids


def test_palette_image_whose_black_is_not_index_0_is_read_by_colour(tmp_path):
    # a colour image saved with an optimised palette: index 0 = red foreground, 1 = black
    lab = _labels()
    stored = np.where(lab > 0, 0, 1).astype(np.uint8)
    _palette_png(tmp_path / "m.png", stored, palette=[255, 0, 0, 0, 0, 0])
    assert np.array_equal(read_mask(tmp_path / "m.png"), (lab > 0).astype(np.uint8))


def test_grey_label_image_and_table_remapping(tmp_path):
    lab = _labels()
    cv2.imwrite(str(tmp_path / "g.png"), lab)
    assert np.array_equal(read_mask(tmp_path / "g.png", 3), lab)
    stored = np.choose(lab, [0, 7, 3]).astype(np.uint16)  # 16-bit label image with ids 7 and 3
    cv2.imwrite(str(tmp_path / "g16.png"), stored)
    ids = read_mask(tmp_path / "g16.png", 3, classes={"nerve": 7, "vessel": 3})
    assert np.array_equal(ids, lab)
    with pytest.raises(DataError, match=r"g16.png: mask values 3 are not in data.classes \(n: 7\)"):
        read_mask(tmp_path / "g16.png", 1, classes={"n": 7})
    # a 0/255 mask of the one named class
    cv2.imwrite(str(tmp_path / "b.png"), (lab > 0).astype(np.uint8) * 255)
    assert np.array_equal(read_mask(tmp_path / "b.png", classes={"lesion": 1}), lab > 0)


def test_colour_mask_via_table_with_antialiasing_and_unknown_colour(tmp_path):
    lab = _labels()
    rgb = np.zeros(lab.shape + (3,), np.uint8)
    rgb[lab == 1] = (255, 0, 0)
    rgb[lab == 2] = (0, 0, 255)
    blurred = cv2.GaussianBlur(rgb, (3, 3), 0)  # anti-aliased edges: blends with black
    cv2.imwrite(str(tmp_path / "c.png"), cv2.cvtColor(blurred, cv2.COLOR_RGB2BGR))
    table = {"tumour": [255, 0, 0], "cyst": [0, 0, 255]}
    ids = read_mask(tmp_path / "c.png", 3, classes=table)
    assert set(np.unique(ids).tolist()) == {0, 1, 2}
    inner = cv2.erode((lab > 0).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    assert np.array_equal(ids[inner], lab[inner])  # interior exact; edges go to the nearest
    assert abs(int((ids > 0).sum()) - int((lab > 0).sum())) < 0.1 * (lab > 0).sum()
    # without a table, a multi-class colour mask is an error that shows the table to write
    with pytest.raises(DataError, match=r"c.png: colour mask .*name each class's colour"):
        read_mask(tmp_path / "c.png", 3)
    assert np.array_equal(read_mask(tmp_path / "c.png") > 0, blurred.max(axis=2) > 0)  # binary
    rgb[0:5, 0:5] = (0, 255, 0)  # a colour nobody listed
    cv2.imwrite(str(tmp_path / "u.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    with pytest.raises(
        DataError,
        match=r"u.png: colour \[0, 255, 0\] \(25 pixels\) is not in data.classes "
        r"\(tumour: \[255, 0, 0\], cyst: \[0, 0, 255\]\); add it to data.classes",
    ):
        read_mask(tmp_path / "u.png", 3, classes=table)
    with pytest.raises(DataError, match="u.png: colour mask, but data.classes gives ids"):
        read_mask(tmp_path / "u.png", 3, classes={"a": 1, "b": 2})


def test_foreground_ids_ignore_antialiasing_and_binary_encodings(tmp_path):
    lab = _labels(80, 120)
    one = (lab > 0).astype(np.uint8) * 255
    cv2.imwrite(str(tmp_path / "aa.png"), cv2.GaussianBlur(one, (5, 5), 0))  # many grey values
    kind, ids = foreground_ids(read_stored_mask(tmp_path / "aa.png"))
    assert kind == "gray" and ids == [255]
    red = np.zeros(one.shape + (3,), np.uint8)
    red[..., 2] = one
    cv2.imwrite(str(tmp_path / "red.png"), cv2.GaussianBlur(red, (5, 5), 0))
    assert foreground_ids(read_stored_mask(tmp_path / "red.png")) == ("colour", [255 << 16])
    _palette_png(tmp_path / "p.png", lab)
    assert foreground_ids(read_stored_mask(tmp_path / "p.png")) == ("palette", [1, 2])
    # binary folders: 0/255, 0/1 mixed with 0/255: not several classes
    assert merged_classes([("a", ("gray", [255])), ("b", ("gray", [1])), ("c", None)]) is None
    two = [("a", ("gray", [1])), ("b", ("gray", [2])), ("c", ("gray", [1])), ("d", ("gray", [2]))]
    assert merged_classes(two) == ("gray", [1, 2], "b")  # one class per mask, two across masks
    both = [("a", ("palette", [1, 2])), ("b", ("palette", [1, 2]))]
    assert merged_classes(both) == ("palette", [1, 2], "a")
    # a stray value in one mask of a binary folder is not a class (data check reports it)
    stray = [("a", ("gray", [1, 7])), ("b", ("gray", [1])), ("c", ("gray", [1]))]
    assert merged_classes(stray) is None
    assert merged_classes([("a", ("colour", [1])), ("b", ("colour", [2]))]) is None


def _palette_folder(root, n=6):
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        cv2.imwrite(str(root / "images" / f"s{i}.png"), rng.integers(0, 255, (40, 60), np.uint8))
        _palette_png(root / "masks" / f"s{i}.png", _labels())
    return root


def test_merge_guard_stops_binary_training_and_opt_in_merges(tmp_path):
    root = _palette_folder(tmp_path / "ds")
    cfg = DataConfig(path=str(root), img_size=32)
    with pytest.raises(
        DataError,
        match=r"ds: masks hold 2 foreground classes \(palette indices 1, 2, e.g. s0.png\) but "
        r"model.num_classes is 1.*--set model.num_classes=3.*data.merge_classes: true",
    ):
        load_splits(cfg, 0, progress=False, merge_guard=True)
    merged = DataConfig(path=str(root), img_size=32, merge_classes=True)
    with pytest.warns(UserWarning, match=r"merged into one foreground \(data.merge_classes"):
        sp = load_splits(merged, 0, progress=False, merge_guard=True)
    assert set(np.unique(sp.train.masks).tolist()) == {0, 1}
    named = DataConfig(path=str(root), img_size=32, classes={"nerve": 1, "vessel": 2})
    with warnings.catch_warnings():  # class ids in a multi-class run: no warning
        warnings.simplefilter("error")
        sp = load_splits(named, 0, progress=False, num_classes=3, merge_guard=True)
    assert set(np.unique(sp.train.masks).tolist()) == {0, 1, 2}


def test_merge_guard_lets_binary_and_antialiased_folders_through(tmp_path):
    root = tmp_path / "ds"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(6):
        cv2.imwrite(str(root / "images" / f"s{i}.png"), np.full((40, 60), 30 + i, np.uint8))
        m = (_labels() > 0).astype(np.uint8) * (255 if i % 2 else 1)
        if i == 2:
            m = cv2.GaussianBlur(m * 255, (5, 5), 0)  # anti-aliased 0/255 mask
        cv2.imwrite(str(root / "masks" / f"s{i}.png"), m)
    with pytest.warns(UserWarning, match=r"1 mask\(s\) hold more than two values \(s2.png"):
        sp = load_splits(
            DataConfig(path=str(root), img_size=32), 0, progress=False, merge_guard=True
        )
    assert set(np.unique(sp.train.masks).tolist()) == {0, 1}


def test_usgra_palette_masks_read_as_three_classes(usgra_dir):
    masks = sorted((usgra_dir / "masks").glob("*.png"))
    assert len(masks) == 204
    ids: set[int] = set()
    with_nerve = with_vessel = 0
    for p in masks:
        u = set(np.unique(read_mask(p, 3)).tolist())
        ids |= u
        with_nerve += 1 in u
        with_vessel += 2 in u
    assert ids == {0, 1, 2}
    assert with_nerve == 204 and with_vessel == 183  # the counts of the data set's README


def test_kseg_train_refuses_to_merge_in_one_line(tmp_path):
    from click.testing import CliRunner

    from kseg.cli import main

    root = _palette_folder(tmp_path / "ds", n=6)
    res = CliRunner().invoke(
        main,
        ["train", "--data", str(root), "--out", str(tmp_path / "run"), "--set", "train.epochs=1"],
    )
    assert res.exit_code == 2, res.output
    line = [ln for ln in res.output.splitlines() if ln.startswith("error:")]
    assert len(line) == 1 and "masks hold 2 foreground classes (palette indices 1, 2" in line[0]
    assert "--set model.num_classes=3" in line[0] and "data.merge_classes: true" in line[0]


def test_class_names_stored_with_the_data(tmp_path):
    from kseg.data.classes import read_class_table

    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "class_names.txt").write_text("_background_\nnerve\nvessel\n")
    table, src = read_class_table(tmp_path / "a")
    assert table == {"nerve": 1, "vessel": 2} and src.name == "class_names.txt"
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "labelmap.txt").write_text(
        "# label:color_rgb:parts:actions\nbackground:0,0,0::\nnerve:128,0,0::\nvessel:0,128,0::\n"
    )
    assert read_class_table(tmp_path / "b")[0] == {"nerve": (128, 0, 0), "vessel": (0, 128, 0)}
    (tmp_path / "b" / "labelmap.txt").write_text("background:0,0,0::\nnerve:red::\n")
    with pytest.raises(DataError, match=r"labelmap.txt: line 'nerve:red::' is not 'name:R,G,B::'"):
        read_class_table(tmp_path / "b")
    assert read_class_table(tmp_path) is None
    # kseg data from-geojson's classes.json: several labels 1..K, or one 255 (a binary model)
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "classes.json").write_text('{"classes": {"tumor": 2, "stroma": 1}}')
    table, src = read_class_table(tmp_path / "c")
    assert table == {"tumor": 2, "stroma": 1} and src.name == "classes.json"
    (tmp_path / "c" / "classes.json").write_text('{"classes": {"lesion": 255}, "background": 0}')
    assert read_class_table(tmp_path / "c")[0] == {"lesion": 255}
    for bad in ('{"classes": ["tumor"]}', '{"classes": {"tumor": 0}}', "{oops"):
        (tmp_path / "c" / "classes.json").write_text(bad)
        with pytest.raises(DataError, match=r"classes.json: .*data.classes"):
            read_class_table(tmp_path / "c")


def test_training_takes_class_names_from_the_data(tmp_path, capsys):
    from kseg.config import load_config
    from kseg.training.loop import _classes_from_data

    root = _palette_folder(tmp_path / "ds", n=2)
    (root / "labelmap.txt").write_text("background:0,0,0::\nnerve:128,0,0::\nvessel:0,128,0::\n")
    cfg = _classes_from_data(load_config(None, {"data.path": str(root)}))
    assert cfg.data.classes == {"nerve": (128, 0, 0), "vessel": (0, 128, 0)}
    assert cfg.model.num_classes == 3
    assert "data.classes from" in capsys.readouterr().err
    # the config's own names win; merging on purpose keeps binary
    own = load_config(None, {"data.path": str(root), "data.classes": ["a", "b"]})
    assert _classes_from_data(own) == own
    merged = load_config(None, {"data.path": str(root), "data.merge_classes": True})
    assert _classes_from_data(merged).model.num_classes == 1
    # the palette colours of the labelmap read the masks as ids 1 and 2
    ids = read_mask(root / "masks" / "s0.png", 3, classes=cfg.data.classes)
    assert np.array_equal(ids, _labels())
    rep = __import__("kseg.data.check", fromlist=["x"]).check_folder(root)
    assert rep["classes"]["classes"]["1"]["name"] == "nerve"
    assert rep["classes"]["names_from"] == "labelmap.txt"
