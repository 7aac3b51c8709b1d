"""The inference path on a trained model: convert stores a validated threshold, predict writes
GeoJSON and statistics that agree with its masks, evaluate stores and reuses a threshold."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from kseg.cli import main
from kseg.inference.vector import polygon_area


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def one_line_error(result, needle):
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.strip().splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in result.output, (
        result.output
    )


@pytest.fixture(scope="module")
def run_copy(trained_run, tmp_path_factory):
    """A private copy of the shared run (this module writes threshold files into it)."""
    dst = tmp_path_factory.mktemp("infer") / "run"
    dst.mkdir()
    for name in ("config.yaml", "split.csv", "best.keras", "metrics.json"):
        shutil.copy(trained_run / name, dst / name)
    return dst


@pytest.fixture(scope="module")
def float_tflite(run_copy):
    out = run_copy / "m.float32.tflite"
    result = run("convert", "--model", run_copy / "best.keras", "--out", out)
    assert result.exit_code == 0, result.output
    assert "chosen on validation" in result.output
    return out


def test_convert_stores_the_validated_threshold(float_tflite, run_copy):
    from kseg.config import load_config
    from kseg.data.pipeline import load_splits
    from kseg.runtime import TFLiteModel

    card = json.loads(float_tflite.with_suffix(".json").read_text())
    sel = card["threshold_selection"]
    assert card["output"]["threshold"] == sel["threshold"]
    assert card["output"]["threshold_source"] == "validation"
    assert card["input"]["native_scale"] is True  # synthetic data generated at the model size
    assert sel["dice"] >= sel["dice_at_default"] and sel["default"] == 0.5
    model = TFLiteModel(float_tflite)
    assert model.threshold == sel["threshold"] and model.native_scale is True
    # recompute the chosen threshold's Dice independently on the same validation images
    cfg = load_config(run_copy / "config.yaml")
    val = load_splits(
        cfg.data, seed=cfg.train.seed, split_file=run_copy / "split.csv", progress=False
    ).val
    assert sel["n_images"] == len(val.images)
    probs = model.predict(val.images.astype(np.float32))[..., 0]
    pred, true = probs > sel["threshold"], val.masks.reshape(probs.shape) > 0
    tp, fp, fn = (pred & true).sum(), (pred & ~true).sum(), (~pred & true).sum()
    assert sel["dice"] == pytest.approx(2 * tp / (2 * tp + fp + fn), abs=1e-9)
    assert "## Threshold" in float_tflite.with_suffix(".md").read_text()


def test_predict_writes_geojson_and_stats_that_match_the_mask(float_tflite, tmp_path):
    from kseg.data.synthetic import synthesize

    data = synthesize("ultrasound", 2, size=64, seed=5)
    big = synthesize("ultrasound", 1, size=160, seed=6).images[0][:150, :130]
    paths = []
    for name, img in [*zip(data.names, data.images, strict=True), ("big", big)]:
        p = tmp_path / f"{name}.png"
        cv2.imwrite(str(p), img)
        paths.append(p)
    out = tmp_path / "out"
    result = run(
        "predict", "--model", float_tflite, *paths, "--out", out,
        "--geojson", "--stats", "--pixel-spacing", "0.5", "--min-size", "5", "--fill-holes",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "1 of 3 images tiled" in result.output  # auto: the model is native-scale, 150x130 > 64
    for p in paths:
        mask = cv2.imread(str(out / f"{p.stem}_mask.png"), cv2.IMREAD_UNCHANGED)
        stats = json.loads((out / f"{p.stem}_stats.json").read_text())
        gj = json.loads((out / f"{p.stem}.geojson").read_text())
        area = int((mask > 0).sum())
        assert stats["area_px"] == area and stats["area_mm2"] == pytest.approx(area * 0.25)
        assert stats["tiled"] == (p.stem == "big")
        assert mask.shape == (stats["height"], stats["width"])
        assert sum(polygon_area(f["geometry"]["coordinates"]) for f in gj["features"]) == area
        assert len(gj["features"]) == stats["component_count"]
        assert all(f["properties"]["area_px"] >= 5 for f in gj["features"])


def test_predict_option_errors_are_one_line(float_tflite, tmp_path):
    img = tmp_path / "a.png"
    cv2.imwrite(str(img), np.zeros((20, 20), np.uint8))
    base = ("predict", "--model", float_tflite, img, "--out", tmp_path / "o")
    one_line_error(run(*base, "--overlap", "2"), "overlap 2.0 must be in [0, 0.9]")
    one_line_error(run(*base, "--pixel-spacing", "abc"), "pixel spacing must be a number")
    one_line_error(run(*base, "--threshold", "1"), "threshold 1.0 must be in [0, 1)")


def test_evaluate_stores_a_threshold_that_predict_and_evaluate_reuse(run_copy, tmp_path):
    from kseg.runtime import KerasPredictor

    model = run_copy / "best.keras"
    one_line_error(
        run(
            "evaluate",
            "--model",
            model,
            "--split",
            "all",
            "--store-threshold",
            "--out",
            tmp_path / "x",
        ),
        "--split val",
    )
    r = run("evaluate", "--model", model, "--store-threshold", "--out", tmp_path / "e1")
    assert r.exit_code == 0, r.output
    first = json.loads((tmp_path / "e1" / "metrics.json").read_text())
    sel = first["threshold_selection"]
    assert first["threshold"] == 0.5 and first["threshold_source"] == "config"
    stored = json.loads((run_copy / "best.threshold.json").read_text())
    assert stored["threshold"] == sel["threshold"] and stored["source"] == "validation"
    pred = KerasPredictor.from_file(model)
    assert pred.threshold == sel["threshold"] and pred.threshold_source == "validation"
    # evaluated again: the stored threshold is used and gives the Dice the sweep promised
    r = run("evaluate", "--model", model, "--out", tmp_path / "e2")
    assert r.exit_code == 0, r.output
    second = json.loads((tmp_path / "e2" / "metrics.json").read_text())
    assert second["threshold"] == sel["threshold"] and second["threshold_source"] == "validation"
    assert second["dice"] == pytest.approx(sel["dice"], abs=1e-9)
