"""``kseg data from-geojson``: polygon areas, holes, multipolygons, classes, and problems by name."""

from __future__ import annotations

import json

import cv2
import numpy as np
from click.testing import CliRunner

from kseg.cli import main
from kseg.data.geojson import from_geojson


def _square(x0, y0, x1, y1):
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]


def _images(root, names=("a", "b", "c")):
    root.mkdir(parents=True)
    for n in names:
        cv2.imwrite(str(root / f"{n}.png"), np.zeros((60, 80), np.uint8))
    return root


def _fc(*features):
    return {"type": "FeatureCollection", "features": list(features)}


def _feat(geom_type, coords, cls=None):
    props = {"classification": {"name": cls}} if cls else {}
    return {
        "type": "Feature",
        "geometry": {"type": geom_type, "coordinates": coords},
        "properties": props,
    }


def test_polygon_with_hole_and_multipolygon_areas(tmp_path):
    imgs = _images(tmp_path / "img")
    ann = tmp_path / "ann"
    ann.mkdir()
    # a: pixels 10..49 square with a hole over pixels 25..34
    (ann / "a.geojson").write_text(
        json.dumps(_fc(_feat("Polygon", [_square(10, 10, 49, 49), _square(25, 25, 34, 34)])))
    )
    (ann / "b.geojson").write_text(
        json.dumps(_fc(_feat("MultiPolygon", [[_square(0, 0, 9, 9)], [_square(60, 40, 69, 49)]])))
    )
    (ann / "zzz.geojson").write_text(json.dumps(_fc()))  # no image zzz
    rep = from_geojson(imgs, ann, tmp_path / "out")
    a = cv2.imread(str(tmp_path / "out" / "masks" / "a.png"), cv2.IMREAD_UNCHANGED)
    b = cv2.imread(str(tmp_path / "out" / "masks" / "b.png"), cv2.IMREAD_UNCHANGED)
    assert a.shape == (60, 80) and set(np.unique(a)) == {0, 255}
    assert a[30, 30] == 0 and a[15, 15] == 255 and a[5, 5] == 0  # hole, inside, outside
    # vertices are pixel centres, boundaries included: 40x40 outer minus the 10x10 hole
    assert int((a > 0).sum()) == 40 * 40 - 10 * 10
    assert (b > 0).sum() == 2 * 100 and b[45, 65] == 255
    assert rep["images_without_annotation"] == ["c"]
    assert rep["unmatched_annotations"] == ["zzz.geojson"]
    assert rep["classes"] == {"foreground": 255}
    assert sorted(p.name for p in (tmp_path / "out" / "images").iterdir()) == ["a.png", "b.png"]


def test_classes_become_labels_and_invalid_geometries_are_named(tmp_path):
    imgs = _images(tmp_path / "img", names=("s1", "s2"))
    features = [
        {
            **_feat("Polygon", [_square(0, 0, 19, 19)], "tumor"),
            "properties": {"image": "s1.png", "classification": {"name": "tumor"}},
        },
        {
            **_feat("Polygon", [_square(30, 30, 39, 39)]),
            "properties": {"image": "s1.png", "class": "stroma"},
        },
        {
            **_feat("Polygon", [[[0, 0], [5, 5]]]),
            "properties": {"image": "s2.png", "class": "stroma"},
        },
        {**_feat("Point", [3, 3]), "properties": {"image": "s2.png"}},
        {**_feat("Polygon", [_square(0, 0, 5, 5)]), "properties": {"image": "missing.png"}},
    ]
    one = tmp_path / "all.geojson"
    one.write_text(json.dumps(_fc(*features)))
    res = CliRunner().invoke(
        main,
        [
            "data",
            "from-geojson",
            "--images",
            str(imgs),
            "--annotations",
            str(one),
            "--out",
            str(tmp_path / "o"),
        ],
    )
    assert res.exit_code == 0, res.output
    rep = json.loads((tmp_path / "o" / "report.json").read_text())
    assert rep["classes"] == {"foreground": 1, "stroma": 2, "tumor": 3}
    m = cv2.imread(str(tmp_path / "o" / "masks" / "s1.png"), cv2.IMREAD_UNCHANGED)
    assert m[10, 10] == 3 and m[35, 35] == 2 and m[50, 70] == 0
    assert rep["invalid_geometries"] == [
        "all.geojson feature 0 polygon 0: exterior ring has fewer than 3 valid points",
        "all.geojson feature 1: geometry 'Point' is not a Polygon or MultiPolygon",
    ]
    assert rep["unmatched_annotations"] == ["all.geojson feature 4 (missing.png)"]
    assert "warning: 1 unmatched annotations" in res.output
    # the output is a folder kseg reads, masks as class ids
    from kseg.data.io import read_mask

    assert set(np.unique(read_mask(tmp_path / "o" / "masks" / "s1.png", 4))) == {0, 2, 3}
    # and training it carries the class names (classes.json): a 4-class model named by them
    from kseg.config import class_names, load_config
    from kseg.training.loop import _classes_from_data

    cfg = _classes_from_data(load_config(None, {"data.path": str(tmp_path / "o")}))
    assert cfg.model.num_classes == 4
    assert class_names(cfg) == ("background", "foreground", "stroma", "tumor")
    ids = read_mask(tmp_path / "o" / "masks" / "s1.png", 4, classes=cfg.data.classes)
    assert ids[10, 10] == 3 and ids[35, 35] == 2


def test_no_match_is_one_line_error(tmp_path):
    imgs = _images(tmp_path / "img", names=("x",))
    ann = tmp_path / "a.geojson"
    ann.write_text(json.dumps(_fc(_feat("Polygon", [_square(0, 0, 5, 5)]))))
    res = CliRunner().invoke(
        main,
        [
            "data",
            "from-geojson",
            "--images",
            str(imgs),
            "--annotations",
            str(ann),
            "--out",
            str(tmp_path / "o"),
        ],
    )
    assert res.exit_code == 2 and "error:" in res.output and "no annotation matches" in res.output
