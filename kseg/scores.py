"""Per-image segmentation scores in numpy + scipy (no TensorFlow; the device runtime uses them).

Conventions (the same as :mod:`kseg.metrics`):

- A probability map is binarized with ``p > threshold`` (:func:`binarize`); a multi-class map
  ``(H, W, K)`` with ``argmax``.
- Dice, IoU, precision, recall from pixel counts; when TP + FP + FN = 0 (nothing to find, nothing
  found) every score is 1.0; when only the denominator of precision or recall is 0 it is 0.0.
- HD95 is in pixels (times ``spacing``): 0.0 when both masks are empty, NaN when exactly one is
  empty (a distance to nothing is undefined; :func:`aggregate` skips NaNs and counts them).
- :func:`aggregate` reports both the pixel-total scores (TP/FP/FN summed over all images, keys
  ``dice`` ...) and the per-image means (``dice_mean`` ...). They differ when images have very
  different foreground sizes: the per-image mean weighs a missed small object as much as a large
  one.

Multi-class: :func:`label_scores` scores each foreground class ``1..K-1`` as a binary mask and
averages; its ``tp``/``fp``/``fn`` are per-class lists, which :func:`aggregate` sums per class.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import ndimage

SCORE_KEYS = ("dice", "iou", "precision", "recall")


def binarize(prob: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Probability map -> mask: ``(H, W)``/``(H, W, 1)`` -> bool ``p > threshold``;
    ``(H, W, K>1)`` -> uint8 labels by ``argmax``."""
    prob = np.asarray(prob)
    if prob.ndim == 3 and prob.shape[-1] > 1:
        return np.argmax(prob, axis=-1).astype(np.uint8)
    if prob.ndim == 3:
        prob = prob[..., 0]
    return prob > threshold


def confusion(pred: np.ndarray, true: np.ndarray) -> tuple[int, int, int, int]:
    """Pixel counts ``(tp, fp, fn, tn)`` of two binary masks of the same shape."""
    p, t = _as_bool(pred), _as_bool(true)
    _check_shapes(p, t)
    tp = int(np.count_nonzero(p & t))
    fp = int(np.count_nonzero(p & ~t))
    fn = int(np.count_nonzero(~p & t))
    return tp, fp, fn, int(p.size - tp - fp - fn)


def scores_from_counts(tp: float, fp: float, fn: float) -> dict[str, float]:
    """Dice, IoU, precision, recall from counts, with the empty convention of this module."""
    if tp + fp + fn == 0:
        return dict.fromkeys(SCORE_KEYS, 1.0)

    def ratio(num: float, den: float) -> float:
        return float(num / den) if den > 0 else 0.0

    return {
        "dice": ratio(2 * tp, 2 * tp + fp + fn),
        "iou": ratio(tp, tp + fp + fn),
        "precision": ratio(tp, tp + fp),
        "recall": ratio(tp, tp + fn),
    }


def _boundary(mask: np.ndarray) -> np.ndarray:
    # pixels of the mask with a 4-connected background neighbour (the image edge counts as background)
    eroded = ndimage.binary_erosion(mask, structure=ndimage.generate_binary_structure(2, 1))
    return mask & ~eroded


def hd95(pred: np.ndarray, true: np.ndarray, spacing: float | Sequence[float] = 1.0) -> float:
    """95th-percentile symmetric Hausdorff distance between the mask boundaries.

    The surface distances from every boundary pixel of ``pred`` to the nearest boundary pixel of
    ``true`` and back are pooled and their 95th percentile returned (the medpy definition), in
    pixels times ``spacing``. Both masks empty -> 0.0; exactly one empty -> NaN.

    Reference:
        Huttenlocher, Klanderman, Rucklidge, "Comparing images using the Hausdorff distance",
        IEEE TPAMI 1993; medpy.metric.binary.hd95.
    """
    p, t = _as_bool(pred), _as_bool(true)
    _check_shapes(p, t)
    if not p.any() and not t.any():
        return 0.0
    if not p.any() or not t.any():
        return math.nan
    bp, bt = _boundary(p), _boundary(t)
    to_true = ndimage.distance_transform_edt(~bt, sampling=spacing)[bp]
    to_pred = ndimage.distance_transform_edt(~bp, sampling=spacing)[bt]
    return float(np.percentile(np.concatenate([to_true, to_pred]), 95))


def image_scores(
    pred: np.ndarray, true: np.ndarray, spacing: float | Sequence[float] = 1.0
) -> dict[str, Any]:
    """Scores of one binary prediction ``(H, W)`` against its truth.

    Returns ``dice``, ``iou``, ``precision``, ``recall``, ``hd95`` and the counts ``tp``, ``fp``,
    ``fn`` (needed by :func:`aggregate` for the pixel totals).
    """
    tp, fp, fn, _ = confusion(pred, true)
    return {
        **scores_from_counts(tp, fp, fn),
        "hd95": hd95(pred, true, spacing),
        "tp": tp,
        "fp": fp,
        "fn": fn,
    }


def label_scores(
    pred: np.ndarray, true: np.ndarray, num_classes: int, spacing: float | Sequence[float] = 1.0
) -> dict[str, Any]:
    """Scores of a label map ``(H, W)`` with values ``0..K-1``: mean over foreground classes.

    ``hd95`` is the NaN-aware mean over classes (NaN if undefined for every class); ``tp``, ``fp``,
    ``fn`` are per-class lists.
    """
    if num_classes < 2:
        return image_scores(np.asarray(pred) > 0, np.asarray(true) > 0, spacing)
    pred, true = np.asarray(pred), np.asarray(true)
    per_class = [image_scores(pred == c, true == c, spacing) for c in range(1, num_classes)]
    out: dict[str, Any] = {k: float(np.mean([s[k] for s in per_class])) for k in SCORE_KEYS}
    out["hd95"] = _nanmean([s["hd95"] for s in per_class])
    for k in ("tp", "fp", "fn"):
        out[k] = [s[k] for s in per_class]
    return out


def aggregate(
    per_image: Sequence[dict[str, Any]], totals: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Pool per-image results.

    Args:
        per_image: dicts from :func:`image_scores` / :func:`label_scores`.
        totals: optional ``{"tp", "fp", "fn"}`` to use instead of summing the per-image counts.

    Returns:
        ``dice``, ``iou``, ``precision``, ``recall`` over all pixels (per class, then averaged
        over classes), ``dice_mean`` ... ``recall_mean`` and ``hd95_mean`` (NaN-aware) over
        images, ``hd95_median``, ``hd95_undefined`` (images where HD95 is NaN) and ``n_images``.
    """
    if not per_image:
        raise ValueError("aggregate() needs at least one image")
    if totals is None:
        totals = {
            k: np.sum([np.asarray(s[k], np.float64) for s in per_image], axis=0)
            for k in ("tp", "fp", "fn")
        }
    tp, fp, fn = (np.atleast_1d(np.asarray(totals[k], np.float64)) for k in ("tp", "fp", "fn"))
    per_class = [scores_from_counts(*c) for c in zip(tp, fp, fn, strict=True)]
    out: dict[str, Any] = {k: float(np.mean([s[k] for s in per_class])) for k in SCORE_KEYS}
    for k in SCORE_KEYS:
        out[f"{k}_mean"] = float(np.mean([s[k] for s in per_image]))
    hds = np.array([s.get("hd95", math.nan) for s in per_image], np.float64)
    out["hd95_mean"] = _nanmean(hds)
    out["hd95_median"] = float(np.nanmedian(hds)) if np.isfinite(hds).any() else math.nan
    out["hd95_undefined"] = int(np.count_nonzero(np.isnan(hds)))
    out["n_images"] = len(per_image)
    return out


def _nanmean(values: Sequence[float] | np.ndarray) -> float:
    arr = np.asarray(values, np.float64)
    return float(np.nanmean(arr)) if np.isfinite(arr).any() else math.nan


def _as_bool(mask: np.ndarray) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim == 3 and mask.shape[-1] == 1:
        mask = mask[..., 0]
    if mask.ndim != 2:
        raise ValueError(f"expected a 2-D mask (H, W), got shape {mask.shape}")
    return mask.astype(bool)


def _check_shapes(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise ValueError(f"prediction shape {a.shape} != truth shape {b.shape}")


__all__ = [
    "SCORE_KEYS",
    "aggregate",
    "binarize",
    "confusion",
    "hd95",
    "image_scores",
    "label_scores",
    "scores_from_counts",
]
