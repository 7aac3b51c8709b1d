"""Class names and colours of multi-class inference: where names come from (run config, card,
bundle labels, defaults), names in statistics and GeoJSON, one overlay colour per class, and
``kseg predict``'s per-class outputs."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from kseg.inference import mask_geojson, mask_stats, overlay
from kseg.inference.classes import (
    class_colour,
    class_colour_hex,
    class_legend,
    predictor_class_names,
)

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location(
    "kseg_tiny_models", REPO / "tests" / "runtime" / "tiny_models.py"
)
tiny_models = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tiny_models)


@pytest.fixture(scope="module")
def tiny_multiclass(tmp_path_factory) -> Path:
    return tiny_models.build_multiclass(tmp_path_factory.getbasetemp() / "kseg_tiny_models")


def _run_dir(tmp_path: Path, classes: dict[str, int]) -> Path:
    from kseg.config import load_config, save_config

    save_config(load_config(None, {"data.classes": classes}), tmp_path / "config.yaml")
    return tmp_path / "best.keras"


def test_names_come_from_the_run_config_then_the_card_then_defaults(tmp_path):
    model = _run_dir(tmp_path, {"nerve": 1, "vessel": 2})
    card = {"output": {"classes": ["bg", "a", "b"]}}
    assert predictor_class_names(SimpleNamespace(num_classes=3, path=model, card=card)) == (
        "background",
        "nerve",
        "vessel",
    )
    # the run has 3 classes: a 4-class file beside it is not described by it
    other = SimpleNamespace(num_classes=4, path=model, card=None)
    assert predictor_class_names(other) == ("background", "class_1", "class_2", "class_3")
    assert predictor_class_names(SimpleNamespace(num_classes=3, card=card)) == ("bg", "a", "b")
    dict_card = {"output": {"classes": {"0": "bg", "2": "b", "1": "a"}}}
    assert predictor_class_names(SimpleNamespace(num_classes=3, card=dict_card)) == (
        "bg",
        "a",
        "b",
    )
    bundle = {"bundle": {"labels": ["fetal_head"]}}  # a binary bundle's labels.txt
    assert predictor_class_names(SimpleNamespace(num_classes=1, card=bundle)) == (
        "background",
        "fetal_head",
    )
    wrong = {"output": {"classes": ["a", "b"]}}  # 2 names for 3 classes: ignored
    assert predictor_class_names(SimpleNamespace(num_classes=3, card=wrong))[1] == "class_1"
    assert predictor_class_names(SimpleNamespace(num_classes=1)) == ("background", "foreground")


def test_colours_and_legend():
    assert class_colour(0) == (0, 0, 0) and class_colour(1) == (255, 0, 0)
    assert class_colour(9) == class_colour(1)  # the palette repeats after 8 foreground colours
    assert len({class_colour(c) for c in range(1, 9)}) == 8
    assert class_legend(("background", "nerve", "vessel")) == [
        {"id": 1, "name": "nerve", "colour": class_colour_hex(1)},
        {"id": 2, "name": "vessel", "colour": "#00a0ff"},
    ]


def test_stats_and_geojson_carry_class_ids_and_names():
    m = np.zeros((40, 40), np.uint8)
    m[2:10, 2:10] = 1
    m[20:30, 20:35] = 2
    m[32:36, 2:6] = 2
    names = ("background", "nerve", "vessel")
    s = mask_stats(m, num_classes=3, class_names=names)
    assert s["class_names"] == list(names)
    assert s["classes"]["1"]["name"] == "nerve" and s["classes"]["1"]["area_px"] == 64
    assert s["classes"]["2"]["name"] == "vessel" and s["classes"]["2"]["area_px"] == 166
    assert s["classes"]["2"]["component_count"] == 2
    assert [(c["class"], c["class_name"]) for c in s["components"]] == [
        (1, "nerve"),
        (2, "vessel"),
        (2, "vessel"),
    ]
    gj = mask_geojson(m, class_names=names)
    props = [f["properties"] for f in gj["features"]]
    assert [(p["class"], p["class_name"], p["area_px"]) for p in props] == [
        (1, "nerve", 64),
        (2, "vessel", 150),
        (2, "vessel", 16),
    ]
    assert list(props[0])[:3] == ["id", "class", "class_name"]
    assert "class_name" not in mask_geojson(m)["features"][0]["properties"]  # no names: as before


def test_overlay_paints_each_class_in_its_colour_and_binary_as_before():
    img = np.full((30, 30), 100, np.uint8)
    m = np.zeros((30, 30), np.uint8)
    m[3:12, 3:12] = 1
    m[15:27, 15:27] = 2
    ov = overlay(img, m, alpha=1.0, num_classes=3)
    assert (ov[7, 7] == class_colour(1)).all() and (ov[20, 20] == class_colour(2)).all()
    assert (ov[3, 3] == class_colour(1)).all()  # outline in the class colour too
    assert (ov[0, 0] == 100).all()
    binary = overlay(img, (m > 0).astype(np.uint8), alpha=1.0)
    assert (binary[7, 7] == [255, 0, 0]).all() and (binary[20, 20] == [255, 0, 0]).all()
    assert (binary[3, 3] == [255, 255, 0]).all()  # the yellow outline of one-class models


def test_predict_writes_per_class_outputs(tiny_multiclass, tmp_path):
    from kseg.cli import main
    from kseg.data.synthetic import synthesize

    img = synthesize("ultrasound", 1, size=128, seed=3).images[0]
    img = np.ascontiguousarray(img[16:112, :, 0] if img.ndim == 3 else img[16:112]).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "scan.png"), img)
    out = tmp_path / "out"
    r = CliRunner().invoke(
        main,
        ["predict", "--model", str(tiny_multiclass), str(tmp_path / "scan.png"), "--out", str(out)]
        + ["--stats", "--geojson"],
    )
    assert r.exit_code == 0, r.output
    assert "class = argmax" in r.output
    assert "nerve" in r.output and "#ff0000" in r.output and "vessel" in r.output
    mask = cv2.imread(str(out / "scan_mask.png"), cv2.IMREAD_UNCHANGED)
    assert set(np.unique(mask)) == {0, 127, 254}  # class ids spread over 0..255, as before
    labels = mask // 127
    stats = json.loads((out / "scan_stats.json").read_text())
    assert stats["classes"]["1"]["name"] == "nerve" and stats["classes"]["2"]["name"] == "vessel"
    for c in (1, 2):
        assert stats["classes"][str(c)]["area_px"] == int((labels == c).sum()) > 100
    gj = json.loads((out / "scan.geojson").read_text())
    assert {f["properties"]["class_name"] for f in gj["features"]} == {"nerve", "vessel"}
    ov = cv2.cvtColor(cv2.imread(str(out / "scan_overlay.png")), cv2.COLOR_BGR2RGB)
    for c in (1, 2):
        inner = cv2.erode((labels == c).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
        tint = ov[inner].astype(float).mean(0)
        assert np.argmax(tint) == (0 if c == 1 else 2), tint  # red nerve, blue vessel


def test_predict_files_records_per_class_areas(tiny_multiclass, tmp_path):
    from kseg.inference import load_predictor, predict_files

    img = np.zeros((64, 64), np.uint8)
    img[:, :20] = 230  # bright: class 1
    img[:, 40:] = 20  # dark: class 2
    img[:, 20:40] = 100  # mid grey: background
    cv2.imwrite(str(tmp_path / "bands.png"), img)
    rec = predict_files(load_predictor(tiny_multiclass), [tmp_path / "bands.png"], tmp_path / "o")[
        0
    ]
    assert list(rec["classes"]) == ["nerve", "vessel"]
    assert rec["classes"]["nerve"]["fraction"] == pytest.approx(20 / 64, abs=0.1)
    assert rec["classes"]["vessel"]["fraction"] == pytest.approx(
        24 / 64, abs=0.1
    )  # the 5x5 mean blurs edges
    assert rec["foreground_fraction"] == pytest.approx(
        rec["classes"]["nerve"]["fraction"] + rec["classes"]["vessel"]["fraction"]
    )
