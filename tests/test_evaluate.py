"""evaluate(): the three files, their rows, the worst-case ordering, and the resize wrapper."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from kseg.errors import DataError
from kseg.evaluate import evaluate


def _items():
    """Four 32x32 images whose truth is a 12x12 square; predictions shift it by 0, 6, 2, 12."""
    out = []
    for i, shift in enumerate([0, 6, 2, 12]):
        true = np.zeros((32, 32), np.uint8)
        true[8:20, 8:20] = 1
        image = (true * 200 + 20).astype(np.uint8)
        out.append((f"img{i}", image, true, shift))
    return out


def test_evaluate_writes_files_with_right_rows_and_worst_order(tmp_path):
    items = _items()
    # the images are identical, so the shift comes from the iteration order
    order = iter(s for *_, s in items)

    def predict(image):
        true = (image > 100).astype(np.float32)
        return np.roll(true, next(order), axis=1) * 0.9

    result = evaluate(predict, [(n, im, t) for n, im, t, _ in items], tmp_path, worst_k=2)
    # hand-computed: 12x12 square shifted by s columns -> tp = 12*(12-s), fp = fn = 12*s
    tps = [12 * (12 - s) for s in (0, 6, 2, 12)]
    fps = [12 * s for s in (0, 6, 2, 12)]
    dices = [2 * tp / (2 * tp + 2 * fp) for tp, fp in zip(tps, fps, strict=True)]
    assert result["dice"] == pytest.approx(2 * sum(tps) / (2 * sum(tps) + 2 * sum(fps)))
    assert result["dice_mean"] == pytest.approx(np.mean(dices))
    assert result["n_images"] == 4
    assert result["worst_cases"] == ["img3", "img1"]

    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["dice"] == pytest.approx(result["dice"])
    assert metrics["worst_cases"] == ["img3", "img1"]
    assert metrics["hd95_undefined"] == 0

    with open(tmp_path / "per_image.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["name"] for r in rows] == ["img0", "img1", "img2", "img3"]
    assert list(rows[0]) == ["name", "dice", "iou", "precision", "recall", "hd95"]
    assert [float(r["dice"]) for r in rows] == pytest.approx(dices, abs=1e-6)
    assert [float(r["hd95"]) for r in rows] == pytest.approx([0, 6, 2, 12])

    png = tmp_path / "worst_cases.png"
    assert png.stat().st_size > 1000
    from matplotlib.image import imread

    from kseg.plots import CELL_PX

    assert imread(png).shape[:2] == (2 * CELL_PX, 3 * CELL_PX)
    assert not list(tmp_path.glob(".*tmp*"))  # no temp files left behind


def test_empty_prediction_gives_nan_hd95_written_as_null(tmp_path):
    true = np.zeros((16, 16), np.uint8)
    true[4:8, 4:8] = 1
    items = [("a", true * 255, true), ("b", true * 255, np.zeros_like(true))]
    result = evaluate(lambda im: np.zeros(im.shape[:2], np.float32), items, tmp_path, worst_k=0)
    # a: truth present, nothing predicted -> dice 0, hd95 nan; b: both empty -> dice 1, hd95 0
    assert result["dice_mean"] == pytest.approx(0.5)
    assert result["hd95_undefined"] == 1 and result["hd95_mean"] == 0.0
    rows = (tmp_path / "per_image.csv").read_text().splitlines()
    assert rows[1].endswith(",nan") and rows[2].startswith("b,1.000000")
    assert not (tmp_path / "worst_cases.png").exists()


def test_multiclass_predictor(tmp_path):
    true = np.array([[0, 1, 2, 2]], np.uint8)
    prob = np.eye(3, dtype=np.float32)[[0, 1, 1, 2]][None]  # (1, 4, 3): argmax 0 1 1 2
    result = evaluate(lambda im: prob, [("x", true, true)], tmp_path, worst_k=1)
    assert result["num_classes"] == 3
    assert result["dice"] == pytest.approx(2 / 3) and result["precision"] == pytest.approx(0.75)


def test_errors(tmp_path):
    with pytest.raises(DataError, match="nothing to evaluate"):
        evaluate(lambda im: im, [], tmp_path)
    with pytest.raises(DataError, match="prediction size"):
        evaluate(
            lambda im: np.zeros((4, 4)),
            [("a", np.zeros((8, 8), np.uint8), np.zeros((8, 8), np.uint8))],
            tmp_path,
        )


def test_predict_image_gives_original_size_and_pixel_contract():
    """evaluate_model predicts through kseg.inference.predict_image: raw pixels in, original size out."""
    from kseg.inference import predict_image

    seen = {}

    class Fake:
        input_size, channels, resize_mode, threshold = 16, 1, "letterbox", 0.5

        def predict(self, x):
            seen["shape"], seen["dtype"], seen["max"] = x.shape, x.dtype, float(x.max())
            return (x[..., :1] > 100).astype(np.float32)

    image = np.zeros((30, 50), np.uint8)
    image[:, 25:] = 200
    prob = predict_image(Fake(), image)
    assert seen == {"shape": (1, 16, 16, 1), "dtype": np.float32, "max": 200.0}
    assert prob.shape[:2] == (30, 50)
    assert prob[:, :20].max() == 0.0 and prob[:, 30:].min() == 1.0
