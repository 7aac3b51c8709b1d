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


def test_multiclass_per_class_section_columns_and_worst_cases(tmp_path):
    """Two 4x4 images, K = 3; scores by hand (the absent-class convention of kseg.scores)."""
    # A: truth row 0 1 1 2, prediction 0 1 2 2 -> nerve 2/3, vessel 2/3
    # B: truth row 0 1 1 1, prediction 0 1 0 0 -> nerve 1/2, vessel absent from both
    truths = {"A": [0, 1, 1, 2], "B": [0, 1, 1, 1]}
    preds = {"A": [0, 1, 2, 2], "B": [0, 1, 0, 0]}
    items = [(n, np.full((4, 4), i * 50, np.uint8), np.tile(truths[n], (4, 1)).astype(np.uint8))
             for i, n in enumerate("AB")]  # fmt: skip
    probs = {
        i * 50: np.eye(3, dtype=np.float32)[np.tile(preds[n], (4, 1))] for i, n in enumerate("AB")
    }
    names = ("background", "nerve", "blood vessel")
    result = evaluate(lambda im: probs[int(im[0, 0])], items, tmp_path, worst_k=2,
                      class_names=names)  # fmt: skip
    pc = result["per_class"]
    assert result["classes"] == list(names) and list(pc) == ["nerve", "blood vessel"]
    # nerve: tp 8 fp 0 fn 12 over the two images -> 16/28; per image (2/3 + 1/2) / 2
    assert pc["nerve"]["dice"] == pytest.approx(4 / 7) and pc["nerve"]["n_images"] == 2
    assert pc["nerve"]["dice_mean"] == pytest.approx(7 / 12)
    # vessel: only A counts (B has no vessel in truth or prediction)
    assert pc["blood vessel"]["dice"] == pytest.approx(2 / 3)
    assert pc["blood vessel"]["n_images"] == 1
    assert pc["nerve"]["worst_cases"] == ["B", "A"] and pc["blood vessel"]["worst_cases"] == ["A"]
    assert result["foreground_mean"]["dice"] == pytest.approx((4 / 7 + 2 / 3) / 2)
    assert result["dice"] == pytest.approx(result["foreground_mean"]["dice"])
    assert result["decision"] == "argmax" and "absent" in result["per_class_convention"]
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    assert on_disk["per_class"]["blood vessel"]["dice"] == pytest.approx(2 / 3)
    with open(tmp_path / "per_image.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0])[6:] == [
        "dice_nerve", "iou_nerve", "hd95_nerve",
        "dice_blood_vessel", "iou_blood_vessel", "hd95_blood_vessel",
    ]  # fmt: skip
    assert float(rows[1]["dice_nerve"]) == pytest.approx(0.5)
    assert rows[1]["dice_blood_vessel"] == "nan"  # absent from B: no score
    assert float(rows[1]["dice"]) == pytest.approx(0.5)  # B's mean skips the absent class
    for png in ("worst_cases.png", "worst_cases_nerve.png", "worst_cases_blood_vessel.png"):
        assert (tmp_path / png).stat().st_size > 1000


def test_binary_per_image_csv_keeps_its_columns(tmp_path):
    true = np.zeros((8, 8), np.uint8)
    true[2:6, 2:6] = 1
    result = evaluate(lambda im: true.astype(np.float32), [("a", true, true)], tmp_path, worst_k=0)
    assert "per_class" not in result and "classes" not in result
    header = (tmp_path / "per_image.csv").read_text().splitlines()[0]
    assert header == "name,dice,iou,precision,recall,hd95"
