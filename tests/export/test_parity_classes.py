"""Multi-class parity gate: one class's Dice drop fails it even when the mean passes; the card
says which class, its float/int8 Dice and the decision policy. Fake predictors, no TensorFlow."""

from __future__ import annotations

import numpy as np
import pytest

from kseg.export.card import render_markdown
from kseg.export.parity import check_parity, failure_message, rename_candidate

NAMES = ["background", "nerve", "vessel"]
# two 1x4 images; nerve 2 + 1 pixels, vessel 1 + 1 pixels
MASKS = np.array([[[0, 1, 1, 2]], [[0, 1, 0, 2]]], np.uint8)


class _Fake:
    """``predict(batch) -> one-hot probabilities`` of fixed labels, looked up by image index."""

    def __init__(self, labels: np.ndarray) -> None:
        self.labels = labels

    def predict(self, batch: np.ndarray) -> np.ndarray:
        idx = batch[:, 0, 0, 0].astype(int)  # the test images carry their index in pixel (0, 0)
        return np.eye(3, dtype=np.float32)[self.labels[idx]]


def _images() -> np.ndarray:
    return np.arange(2, dtype=np.uint8)[:, None, None, None] * np.ones((2, 1, 4, 1), np.uint8)


def _check(max_dice_drop):
    cand = MASKS.copy()
    cand[1, 0, 3] = 0  # the candidate misses one of the two vessel pixels; nerve stays perfect
    return check_parity(
        _Fake(MASKS), _Fake(cand), _images(), MASKS, ["a", "b"],
        max_dice_drop=max_dice_drop, class_names=NAMES,
    ).summary  # fmt: skip


def test_one_class_drop_fails_the_gate_the_mean_passes():
    s = _check(0.2)
    # vessel: float 1.0; candidate tp 1 fn 1 -> 2/3, drop 1/3; nerve drop 0; mean drop 1/6
    assert s["dice_drop"] == pytest.approx(1 / 6)
    pc = s["per_class"]
    assert pc["nerve"]["float_dice"] == 1.0 and pc["nerve"]["dice_drop"] == 0.0
    assert pc["vessel"]["tflite_dice"] == pytest.approx(2 / 3)
    assert pc["vessel"]["dice_drop"] == pytest.approx(1 / 3)
    assert pc["vessel"]["passed"] is False and pc["nerve"]["passed"] is True
    assert s["passed"] is False and s["failed_classes"] == ["vessel"]
    assert s["classes"] == NAMES and s["decision"] == "argmax"
    msg = failure_message(s, "m.tflite", 0.2)
    assert "vessel 0.3333" in msg and "exceeds --max-dice-drop 0.2" in msg
    assert _check(0.34)["passed"] is True
    assert _check(None)["passed"] is None and _check(None)["per_class"]["vessel"]["passed"] is None
    onnx = rename_candidate(s, "onnx")
    assert onnx["onnx_dice"] == s["tflite_dice"]
    assert onnx["per_class"]["vessel"]["onnx_dice"] == pytest.approx(2 / 3)


def test_markdown_card_has_classes_decision_and_per_class_table():
    parity = _check(0.2)
    card = {
        "tflite": {"path": "m.int8.tflite", "mode": "int8", "size_bytes": 1, "gzip_bytes": 1},
        "source": {"path": "best.keras", "name": "unet", "sha256": "0" * 64},
        "input": {"shape": [1, 1, 4, 1], "dtype": "int8", "pixel_range": [0, 255],
                  "normalization": {"applied": "in_model"}, "resize": "stretch"},
        "output": {"shape": [1, 1, 4, 3], "dtype": "int8", "activation": "softmax",
                   "threshold": 0.5, "classes": NAMES, "decision": "argmax"},
        "parity": parity,
    }  # fmt: skip
    md = render_markdown(card)
    assert "FAILED" in md and "argmax over classes" in md
    assert "0 `background`, 1 `nerve`, 2 `vessel`" in md
    # the INT8 Dice's bootstrap interval over the images: the vessel is intact in one image
    # (Dice 1) and lost in the other (0), so draws span 0-1; the nerve is intact everywhere
    lo, hi = parity["per_class"]["vessel"]["tflite_dice_ci95"]
    assert (lo, hi) == (0.0, 1.0)
    assert f"| vessel | 2 | 1.0000 | 0.6667 | {lo:.2f}-{hi:.2f} | 0.3333 | FAIL |" in md
    assert "| nerve | 2 | 1.0000 | 1.0000 | 1.00-1.00 | 0.0000 | pass |" in md
    assert "| Dice | Dice 95 % CI (bootstrap over images) | IoU |" in md


def test_review_png_names_the_images(tmp_path):
    masks = np.concatenate([MASKS, MASKS])  # four images: more images than classes
    cand = masks.copy()
    cand[1, 0, 3] = cand[3, 0, 3] = 0
    images = np.arange(4, dtype=np.uint8)[:, None, None, None] * np.ones((4, 1, 4, 1), np.uint8)
    s = check_parity(
        _Fake(masks), _Fake(cand), images, masks, ["a", "b", "c", "d"], max_dice_drop=0.2,
        class_names=NAMES, review_png=tmp_path / "r.png", worst_k=4,
    ).summary  # fmt: skip
    assert s["per_class"]["vessel"]["dice_drop"] == pytest.approx(1 / 3)  # tp 2 fn 2 -> 2/3
    assert set(s["worst_disagreement"]) == {"a", "b", "c", "d"}
    assert (tmp_path / "r.png").stat().st_size > 1000
