"""numpy scores: counts, empty conventions, HD95 on known geometry, pixel vs per-image pooling."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kseg.scores import (
    aggregate,
    aggregate_classes,
    binarize,
    bootstrap_dice,
    bootstrap_dice_difference,
    class_suffixes,
    confusion,
    foreground_mean,
    hd95,
    image_scores,
    label_scores,
    nan_to_none,
)


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


# --- per class ---------------------------------------------------------------------------------
# Two 1x4 label maps, K = 3 (0 background, 1 nerve, 2 vessel):
#   A: truth 0 1 1 2, prediction 0 1 2 2 -> nerve tp1 fp0 fn1 (2/3), vessel tp1 fp1 fn0 (2/3)
#   B: truth 0 1 1 1, prediction 0 1 0 0 -> nerve tp1 fp0 fn2 (1/2), vessel absent from both
_A = (np.array([[0, 1, 2, 2]], np.uint8), np.array([[0, 1, 1, 2]], np.uint8))
_B = (np.array([[0, 1, 0, 0]], np.uint8), np.array([[0, 1, 1, 1]], np.uint8))
_NAMES = ("background", "nerve", "vessel")


def test_label_scores_skip_a_class_absent_from_truth_and_prediction():
    b = label_scores(*_B, num_classes=3)
    assert b["per_class"][0]["dice"] == pytest.approx(0.5)
    assert all(np.isnan(v) for v in b["per_class"][1].values())  # vessel: no score here
    assert b["dice"] == pytest.approx(0.5)  # not (0.5 + 1) / 2: the absent class is skipped
    assert b["tp"] == [1, 0] and b["fn"] == [2, 0]
    empty = label_scores(np.zeros((1, 4)), np.zeros((1, 4)), num_classes=3)
    assert empty["dice"] == 1.0 and empty["hd95"] == 0.0  # nothing anywhere: binary convention


def test_aggregate_classes_by_hand():
    per = [label_scores(*_A, num_classes=3), label_scores(*_B, num_classes=3)]
    pc = aggregate_classes(per, _NAMES)
    assert list(pc) == ["nerve", "vessel"]
    nerve, vessel = pc["nerve"], pc["vessel"]
    # nerve pixel totals tp 2 fp 0 fn 3 -> dice 4/7, iou 2/5; per image (2/3 + 1/2) / 2
    assert nerve["dice"] == pytest.approx(4 / 7) and nerve["iou"] == pytest.approx(2 / 5)
    assert nerve["dice_mean"] == pytest.approx(7 / 12) and nerve["n_images"] == 2
    # vessel: only image A counts (tp 1 fp 1 fn 0)
    assert vessel["dice"] == pytest.approx(2 / 3) and vessel["dice_mean"] == pytest.approx(2 / 3)
    # HD95 (1-px row: all pixels are boundary): vessel in A pools distances 0, 0, 1 -> 0.9;
    # nerve in B pools 0 | 0, 1, 2 -> 1.85
    assert vessel["n_images"] == 1 and vessel["hd95_mean"] == pytest.approx(0.9)
    assert nerve["hd95_mean"] == pytest.approx((0.9 + 1.85) / 2)
    fg = foreground_mean(pc)
    assert fg["dice"] == pytest.approx((4 / 7 + 2 / 3) / 2)
    assert fg["dice_mean"] == pytest.approx((7 / 12 + 2 / 3) / 2)
    agg = aggregate(per)
    assert agg["dice"] == pytest.approx(fg["dice"])  # top level = foreground mean
    assert agg["dice_mean"] == pytest.approx((2 / 3 + 1 / 2) / 2)  # image means: A 2/3, B 1/2
    with pytest.raises(ValueError, match="class names"):
        aggregate_classes(per, _NAMES[:2])


def test_a_class_absent_from_every_image_is_skipped_in_the_mean():
    s = label_scores(np.array([[0, 1, 0, 0]]), np.array([[0, 1, 1, 0]]), num_classes=3)
    pc = aggregate_classes([s], _NAMES)
    assert np.isnan(pc["vessel"]["dice"]) and pc["vessel"]["n_images"] == 0
    assert aggregate([s])["dice"] == pytest.approx(2 / 3)  # not (2/3 + 1) / 2
    assert foreground_mean(pc)["dice"] == pytest.approx(2 / 3)
    assert nan_to_none({"a": [math.nan, 1.0]}) == {"a": [None, 1.0]}


def test_bootstrap_interval_by_enumeration():
    # two images: alone they score 2*90/200 = 0.9 and 2*10/30 = 0.667, together 200/230 = 0.870;
    # a draw is one of them twice (p 1/4 each) or both (p 1/2): the 95 % interval spans the two
    per_class, mean = bootstrap_dice([90, 10], [20, 0], [0, 10], resamples=4000)
    assert per_class.shape == (1, 2)
    assert per_class[0] == pytest.approx([2 * 10 / 30, 2 * 90 / 200])
    assert mean == pytest.approx(per_class[0])  # one class: the mean is the class
    # the same draws for the same seed, other draws for another
    again, _ = bootstrap_dice([90, 10], [20, 0], [0, 10], resamples=4000)
    assert np.array_equal(again, per_class)
    # identical images: no spread at all, the interval is the pooled Dice itself
    flat, _ = bootstrap_dice([5] * 30, [1] * 30, [3] * 30)
    assert flat[0] == pytest.approx([10 / 14, 10 / 14])


def test_bootstrap_interval_narrows_with_more_images_and_covers_the_pooled_dice():
    rng = np.random.default_rng(3)
    widths = []
    for n in (20, 320):
        tp = rng.integers(50, 150, n)
        fp, fn = rng.integers(0, 60, n), rng.integers(0, 60, n)
        (low, high) = bootstrap_dice(tp, fp, fn)[0][0]
        pooled = 2 * tp.sum() / (2 * tp.sum() + fp.sum() + fn.sum())
        assert low < pooled < high
        widths.append(high - low)
    # the interval shrinks like 1/sqrt(n): 16x the images, about a quarter of the width
    assert widths[1] < 0.4 * widths[0]


def test_aggregates_carry_the_interval_per_class_and_for_the_mean():
    per = [label_scores(*_A, num_classes=3), label_scores(*_B, num_classes=3)]
    pc = aggregate_classes(per, _NAMES)
    for name in _NAMES[1:]:
        low, high = pc[name]["dice_ci95"]
        assert low <= pc[name]["dice"] <= high
    agg = aggregate(per)
    low, high = agg["dice_ci95"]
    assert low <= agg["dice"] <= high
    # a class absent from every image has no interval; nothing anywhere has the 1.0 convention
    s = label_scores(np.array([[0, 1, 0, 0]]), np.array([[0, 1, 1, 0]]), num_classes=3)
    assert np.isnan(aggregate_classes([s], _NAMES)["vessel"]["dice_ci95"]).all()
    empty = image_scores(np.zeros((4, 4), bool), np.zeros((4, 4), bool))
    assert aggregate([empty, empty])["dice_ci95"] == [1.0, 1.0]
    assert "dice_ci95" not in aggregate([empty], totals={"tp": 1, "fp": 0, "fn": 0})


def test_paired_difference_by_enumeration_and_narrower_than_unpaired_intervals():
    # the model finds 10 more of the first image's 100 pixels; the second image is the same for
    # both. Draws: image 1 twice (difference 0.947 - 0.889), image 2 twice (0), both (whole set)
    model = ([90, 50], [0, 0], [10, 0])
    base = ([80, 50], [0, 0], [20, 0])
    per_class, mean = bootstrap_dice_difference(model, base, resamples=4000)
    whole = 2 * 140 / (2 * 140 + 10) - 2 * 130 / (2 * 130 + 20)
    assert per_class.shape == (1, 3) and per_class[0, 0] == pytest.approx(whole)
    assert per_class[0, 1:] == pytest.approx([0.0, 180 / 190 - 160 / 180])
    assert mean == pytest.approx(per_class[0])  # one class: the mean is the class
    # a model against itself: difference 0 with no spread, whatever the images
    rng = np.random.default_rng(0)
    counts = tuple(rng.integers(0, 100, (30, 2)) for _ in range(3))
    same, same_mean = bootstrap_dice_difference(counts, counts)
    assert np.array_equal(same, np.zeros((2, 3))) and np.array_equal(same_mean, np.zeros(3))
    # a consistent small gain on varied images: each model's own interval is wide and the two
    # overlap, the paired interval of the difference is narrow and excludes 0
    tp = rng.integers(20, 200, 40)
    fp, fn = rng.integers(0, 80, 40), rng.integers(0, 80, 40)
    better = (tp + 5, fp, np.maximum(fn - 5, 0))
    diff, _ = bootstrap_dice_difference(better, (tp, fp, fn))
    own = [bootstrap_dice(*c)[0][0] for c in (better, (tp, fp, fn))]
    assert own[0][0] < own[1][1]  # the intervals overlap
    assert 0 < diff[0, 1] < diff[0, 0] < diff[0, 2]
    assert diff[0, 2] - diff[0, 1] < 0.25 * (own[0][1] - own[0][0])
    with pytest.raises(ValueError, match="different shapes"):
        bootstrap_dice_difference(([1, 2], [0, 0], [0, 0]), ([1], [0], [0]))


def test_class_suffixes():
    assert class_suffixes(["background", "Nerve", "blood vessel", "mean", "nerve"]) == [
        "background",
        "nerve",
        "blood_vessel",
        "class_3",
        "class_4",
    ]
