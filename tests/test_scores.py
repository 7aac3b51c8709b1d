"""numpy scores: counts, empty conventions, HD95 on known geometry, pixel vs per-image pooling."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kseg.scores import aggregate, binarize, confusion, hd95, image_scores, label_scores


def _square(size=48, top=10, left=10, side=20):
    m = np.zeros((size, size), np.uint8)
    m[top : top + side, left : left + side] = 1
    return m


def test_confusion_and_scores_by_hand():
    true = np.array([[1, 1, 0], [0, 1, 0]], np.uint8)
    pred = np.array([[1, 0, 1], [0, 1, 0]], bool)
    assert confusion(pred, true) == (2, 1, 1, 2)
    s = image_scores(pred, true)
    assert s["dice"] == pytest.approx(4 / 6)
    assert s["iou"] == pytest.approx(2 / 4)
    assert s["precision"] == pytest.approx(2 / 3)
    assert s["recall"] == pytest.approx(2 / 3)
    assert (s["tp"], s["fp"], s["fn"]) == (2, 1, 1)


def test_empty_conventions():
    empty, full = np.zeros((8, 8), np.uint8), np.ones((8, 8), np.uint8)
    s = image_scores(empty, empty)
    assert [s[k] for k in ("dice", "iou", "precision", "recall", "hd95")] == [
        1.0,
        1.0,
        1.0,
        1.0,
        0.0,
    ]
    s = image_scores(full, empty)  # prediction full, truth empty
    assert s["dice"] == 0.0 and s["precision"] == 0.0 and s["recall"] == 0.0
    assert math.isnan(s["hd95"])


@pytest.mark.parametrize("shift", [1, 5, 7])
def test_hd95_of_shifted_squares_equals_shift(shift):
    a = _square()
    b = _square(left=10 + shift)
    assert hd95(a, b) == pytest.approx(shift)
    assert hd95(b, a) == pytest.approx(shift)
    assert hd95(a, a) == 0.0
    # anisotropic spacing scales the shift along axis 1
    assert hd95(a, b, spacing=(1.0, 0.5)) == pytest.approx(shift * 0.5)


def test_hd95_ignores_a_few_outlier_pixels_unlike_max_hausdorff():
    a = _square(size=64, side=30)
    b = a.copy()
    b[60, 60] = 1  # one stray pixel 30+ px away
    assert hd95(a, b) == 0.0


def test_binarize_threshold_and_argmax():
    prob = np.array([[0.5, 0.51]], np.float32)
    assert binarize(prob).tolist() == [[False, True]]
    assert binarize(prob[..., None], 0.4).tolist() == [[True, True]]
    k3 = np.array([[[0.1, 0.2, 0.7], [0.6, 0.3, 0.1]]], np.float32)
    assert binarize(k3).tolist() == [[2, 0]]


def test_aggregate_pixel_total_differs_from_per_image_mean():
    # image 1: big object predicted perfectly; image 2: 1-pixel object missed, 1 false pixel
    t1 = _square(size=16, top=0, left=0, side=10)
    t2 = np.zeros((16, 16), np.uint8)
    t2[0, 0] = 1
    p2 = np.zeros((16, 16), np.uint8)
    p2[5, 5] = 1
    per = [image_scores(t1, t1), image_scores(p2, t2)]
    agg = aggregate(per)
    assert agg["dice"] == pytest.approx(200 / 202)
    assert agg["dice_mean"] == pytest.approx(0.5)
    assert agg["iou"] == pytest.approx(100 / 102)
    assert agg["iou_mean"] == pytest.approx(0.5)
    assert agg["hd95_mean"] == pytest.approx(np.mean([0.0, hd95(p2, t2)]))
    assert hd95(p2, t2) == pytest.approx(math.hypot(5, 5))
    assert agg["n_images"] == 2 and agg["hd95_undefined"] == 0


def test_aggregate_nan_aware_hd95_and_totals():
    empty = np.zeros((8, 8), np.uint8)
    sq = _square(size=8, top=2, left=2, side=3)
    per = [image_scores(sq, sq), image_scores(sq, empty)]
    agg = aggregate(per)
    assert agg["hd95_mean"] == 0.0 and agg["hd95_undefined"] == 1
    agg = aggregate(per, totals={"tp": 1, "fp": 1, "fn": 0})
    assert agg["precision"] == 0.5 and agg["recall"] == 1.0
    with pytest.raises(ValueError):
        aggregate([])


def test_label_scores_multiclass():
    true = np.array([[0, 1, 2, 2]], np.uint8)
    pred = np.array([[0, 1, 1, 2]], np.uint8)
    s = label_scores(pred, true, num_classes=3)
    # class 1: tp1 fp1 fn0 -> dice 2/3 ; class 2: tp1 fp0 fn1 -> dice 2/3
    assert s["dice"] == pytest.approx(2 / 3)
    assert s["precision"] == pytest.approx(0.75)
    assert s["tp"] == [1, 1] and s["fp"] == [1, 0] and s["fn"] == [0, 1]
    agg = aggregate([s, s])
    assert agg["dice"] == pytest.approx(2 / 3) and agg["recall"] == pytest.approx(0.75)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="shape"):
        confusion(np.zeros((4, 4)), np.zeros((4, 5)))


def test_scores_evaluate_plots_do_not_import_tensorflow():
    code = (
        "import sys, kseg.scores, kseg.evaluate, kseg.plots; assert 'tensorflow' not in sys.modules"
    )
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    subprocess.run([sys.executable, "-c", code], check=True, cwd=repo, env=env)
