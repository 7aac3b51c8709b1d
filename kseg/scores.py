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
averages; its ``tp``/``fp``/``fn`` are per-class lists, which :func:`aggregate` sums per class, and
:func:`aggregate_classes` reports each class on its own (``per_class``), with
:func:`foreground_mean` the mean over classes ``1..K-1``.

Absent-class convention (multi-class only): a class absent from both the truth and the prediction
of an image has no score on that image (NaN in its per-image entry). It is skipped in that
class's per-image means (``dice_mean``, ``iou_mean``, ``hd95_mean``) and in the image's own
foreground mean, which averages the classes present in the truth or the prediction (1.0 when none
is, the binary empty convention). Pixel totals need no rule: an absent class adds no counts.

Uncertainty: a pixel-total Dice comes with ``dice_ci95``, the 95 % percentile bootstrap interval
over images (:func:`bootstrap_dice`: the images drawn again with replacement, the pooled Dice
recomputed). It is the spread a figure would show on another draw of as many images from the same
source; on a few dozen validation images it is wide (USGRA, 41 images: about +-0.07), and two
models whose intervals overlap widely are not ranked by their Dice.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import ndimage

SCORE_KEYS = ("dice", "iou", "precision", "recall")
#: the per-class keys of one image (:func:`label_scores` ``per_class`` entries)
CLASS_KEYS = (*SCORE_KEYS, "hd95")
#: how a class absent from an image is treated; written into ``metrics.json`` beside ``per_class``
ABSENT_CLASS_CONVENTION = (
    "a class absent from both truth and prediction on an image is skipped on that image: it "
    "counts in neither that class's per-image means (dice_mean, iou_mean, hd95_mean; n_images "
    "counts the images where truth or prediction holds it) nor the image's foreground mean; pixel-total scores "
    "(dice, iou, precision, recall) pool TP/FP/FN over all images"
)


#: how :func:`bootstrap_dice` draws; written into results beside ``dice_ci95``
BOOTSTRAP = {
    "method": "percentile bootstrap over images",
    "resamples": 2000,
    "level": 0.95,
    "seed": 0,
}


def bootstrap_dice(
    tp: Sequence[Any] | np.ndarray,
    fp: Sequence[Any] | np.ndarray,
    fn: Sequence[Any] | np.ndarray,
    *,
    resamples: int = BOOTSTRAP["resamples"],
    level: float = BOOTSTRAP["level"],
    seed: int = BOOTSTRAP["seed"],
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap intervals of the pooled Dice ``2 TP / (2 TP + FP + FN)`` over images.

    Args:
        tp, fp, fn: per-image pixel counts, shape ``(N,)`` (one class) or ``(N, C)`` (per class).
        resamples: how many times the ``N`` images are drawn again with replacement.
        level: the interval's coverage.
        seed: the draws are fixed by it, so a report is reproducible.

    Returns:
        ``(per_class, mean)``: ``per_class`` ``(C, 2)`` low and high of each class's pooled Dice
        (NaN for a class with no pixels in any image), ``mean`` ``(2,)`` of their mean over the
        classes present in each draw (the foreground mean of a multi-class result; 1.0 for a
        draw where no class has a pixel, as :func:`aggregate` scores that case).

    Example:
        >>> # two images, Dice 0.947 and 0.667 alone: a draw of the second twice scores 0.667
        >>> low_high, _ = bootstrap_dice([90, 10], [10, 0], [0, 10])
        >>> [round(float(v), 3) for v in low_high[0]]
        [0.667, 0.947]
    """
    dice = _dice_draws([(tp, fp, fn)], resamples, seed)[0]
    q = [(1.0 - level) / 2.0, (1.0 + level) / 2.0]
    seen = np.isfinite(dice).any(axis=0)
    per_class = np.full((dice.shape[1], 2), np.nan)
    if seen.any():
        per_class[seen] = np.nanquantile(dice[:, seen], q, axis=0).T
    return per_class, np.quantile(_class_mean(dice), q)


def bootstrap_dice_difference(
    counts: tuple[Any, Any, Any],
    baseline: tuple[Any, Any, Any],
    *,
    resamples: int = BOOTSTRAP["resamples"],
    level: float = BOOTSTRAP["level"],
    seed: int = BOOTSTRAP["seed"],
) -> tuple[np.ndarray, np.ndarray]:
    """Paired bootstrap of the pooled Dice's difference between two models on the same images.

    Each draw takes the same images for both models, so what the images share (an easy or a hard
    set) cancels out and only the models' difference varies: two models whose own intervals
    overlap can still differ clearly, or not at all.

    Args:
        counts: ``(tp, fp, fn)`` per image of the model, each ``(N,)`` or ``(N, C)``.
        baseline: the same for the model compared with, on the same ``N`` images in the same order.
        resamples, level, seed: as :func:`bootstrap_dice`.

    Returns:
        ``(per_class, mean)``: ``per_class`` ``(C, 3)`` the difference of each class's pooled Dice
        (model minus baseline) on all the images, then the low and high of its interval (NaN for a
        class neither model nor truth has anywhere); ``mean`` ``(3,)`` the same for the
        foreground mean.

    Example:
        >>> # the model finds 10 more pixels of the first image's 100 than the baseline
        >>> per_class, _ = bootstrap_dice_difference(([90, 50], [0, 0], [10, 0]), ([80, 50], [0, 0], [20, 0]))
        >>> [round(float(v), 3) for v in per_class[0]]
        [0.037, 0.0, 0.058]
    """
    shape = [np.shape(a) for a in (*counts, *baseline)]
    if len(set(shape)) != 1:
        raise ValueError(f"bootstrap_dice_difference(): counts of different shapes {shape}")
    whole = [pooled_dice(*c) for c in (counts, baseline)]
    dice, base = _dice_draws([counts, baseline], resamples, seed)
    diff = dice - base
    q = [(1.0 - level) / 2.0, (1.0 + level) / 2.0]
    per_class = np.full((diff.shape[1], 3), np.nan)
    for j in range(diff.shape[1]):
        ok = np.isfinite(diff[:, j])
        if ok.any():
            d = whole[0][j] - whole[1][j]
            per_class[j] = [d if np.isfinite(d) else np.nan, *np.quantile(diff[ok, j], q)]
    mean_whole = _class_mean(whole[0][None]) - _class_mean(whole[1][None])
    mean = np.array([mean_whole[0], *np.quantile(_class_mean(dice) - _class_mean(base), q)])
    return per_class, mean


def pooled_dice(tp: Any, fp: Any, fn: Any) -> np.ndarray:
    """Each class's pooled Dice ``(C,)`` over all the images (NaN: no pixel of it anywhere)."""
    t, f_p, f_n = (a.sum(axis=0) for a in _per_image_counts(tp, fp, fn))
    den = 2.0 * t + f_p + f_n
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, 2.0 * t / den, np.nan)


def _dice_draws(
    count_sets: Sequence[tuple[Any, Any, Any]], resamples: int, seed: int
) -> list[np.ndarray]:
    """Pooled Dice ``(resamples, C)`` of each ``(tp, fp, fn)`` set over the same draws of the
    images (with replacement); NaN where a draw holds no pixel of a class."""
    sets = [_per_image_counts(*c) for c in count_sets]
    n = sets[0][0].shape[0]
    if n == 0:
        raise ValueError("the bootstrap needs at least one image")
    rng = np.random.default_rng(seed)
    out = [np.empty((resamples, s[0].shape[1]), np.float64) for s in sets]
    chunk = max(1, min(resamples, 2_000_000 // max(n, 1)))  # memory: chunk x N indices
    for start in range(0, resamples, chunk):
        stop = min(start + chunk, resamples)
        idx = rng.integers(0, n, size=(stop - start, n))
        for (tp_, fp_, fn_), dice in zip(sets, out, strict=True):
            t, f_p, f_n = (a[idx].sum(axis=1) for a in (tp_, fp_, fn_))
            den = 2.0 * t + f_p + f_n
            with np.errstate(invalid="ignore", divide="ignore"):
                dice[start:stop] = np.where(den > 0, 2.0 * t / den, np.nan)
    return out


def _per_image_counts(tp: Any, fp: Any, fn: Any) -> list[np.ndarray]:
    """``tp, fp, fn`` as float ``(N, C)`` arrays (``(N,)``: one class)."""
    return [np.asarray(a, np.float64).reshape(len(a), -1) for a in (tp, fp, fn)]


def _class_mean(dice: np.ndarray) -> np.ndarray:
    """Each draw's mean over the classes it holds; a draw holding none scores 1.0 (nothing to
    find, nothing found: the convention of this module)."""
    present = np.isfinite(dice)
    total = np.where(present, dice, 0.0).sum(axis=1)
    held = present.sum(axis=1)
    return np.where(held > 0, total / np.maximum(held, 1), 1.0)


def _interval(pair: np.ndarray) -> list[float]:
    return [float(v) for v in pair]


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

    Each foreground class is scored as a binary mask. The image's ``dice`` ... ``hd95`` are the
    means over the classes present in the truth or the prediction (the absent-class convention of
    this module; all absent: 1.0, HD95 0.0); ``tp``, ``fp``, ``fn`` are per-class lists and
    ``per_class`` holds each class's :data:`CLASS_KEYS` (NaN where the class is absent).

    Example:
        >>> s = label_scores(np.array([[0, 1, 1]]), np.array([[0, 1, 0]]), num_classes=3)
        >>> round(s["dice"], 4), s["per_class"][1]["dice"]  # class 2 absent: skipped
        (0.6667, nan)
    """
    if num_classes < 2:
        return image_scores(np.asarray(pred) > 0, np.asarray(true) > 0, spacing)
    pred, true = np.asarray(pred), np.asarray(true)
    scored = [image_scores(pred == c, true == c, spacing) for c in range(1, num_classes)]
    per_class = [
        {k: float(s[k]) for k in CLASS_KEYS}
        if s["tp"] + s["fp"] + s["fn"] > 0
        else dict.fromkeys(CLASS_KEYS, math.nan)
        for s in scored
    ]
    present = [c for c in per_class if not math.isnan(c["dice"])]
    out: dict[str, Any] = {
        k: float(np.mean([c[k] for c in present])) if present else 1.0 for k in SCORE_KEYS
    }
    out["hd95"] = _nanmean([c["hd95"] for c in present]) if present else 0.0
    for k in ("tp", "fp", "fn"):
        out[k] = [s[k] for s in scored]
    out["per_class"] = per_class
    return out


def aggregate_classes(
    per_image: Sequence[dict[str, Any]], names: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """Each foreground class on its own, keyed by name (``names[0]`` is the background).

    Args:
        per_image: dicts from :func:`label_scores` (with ``per_class``).
        names: class names, index = class id (:func:`kseg.config.class_names`).

    Returns:
        ``{name: {dice, iou, precision, recall (pixel totals), dice_ci95 (the pooled Dice's 95 %
        bootstrap interval over images, :func:`bootstrap_dice`), dice_mean, iou_mean, hd95_mean,
        hd95_median (over the images where the class is present), hd95_undefined, n_images}}``
        for classes ``1..K-1``; a mean over no image is NaN, and so are the pixel totals of a
        class absent from every image (skipped by :func:`aggregate` and :func:`foreground_mean`).
    """
    if not per_image:
        raise ValueError("aggregate_classes() needs at least one image")
    n_fg = len(per_image[0]["per_class"])
    if len(names) != n_fg + 1:
        raise ValueError(f"{len(names)} class names for {n_fg + 1} classes: {list(names)}")
    per_image_counts = {
        k: np.array([s[k] for s in per_image], np.float64) for k in ("tp", "fp", "fn")
    }
    intervals = bootstrap_dice(*per_image_counts.values())[0]
    out: dict[str, dict[str, Any]] = {}
    for j in range(n_fg):
        counts = [float(per_image_counts[k][:, j].sum()) for k in ("tp", "fp", "fn")]
        entry: dict[str, Any] = (
            scores_from_counts(*counts) if sum(counts) > 0 else dict.fromkeys(SCORE_KEYS, math.nan)
        )
        entry["dice_ci95"] = _interval(intervals[j])
        rows = [s["per_class"][j] for s in per_image if not math.isnan(s["per_class"][j]["dice"])]
        for k in ("dice", "iou"):
            entry[f"{k}_mean"] = float(np.mean([r[k] for r in rows])) if rows else math.nan
        hds = np.array([r["hd95"] for r in rows], np.float64)
        entry["hd95_mean"] = _nanmean(hds)
        entry["hd95_median"] = float(np.nanmedian(hds)) if np.isfinite(hds).any() else math.nan
        entry["hd95_undefined"] = int(np.count_nonzero(np.isnan(hds)))
        entry["n_images"] = len(rows)
        out[str(names[j + 1])] = entry
    return out


def foreground_mean(per_class: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Mean over the foreground classes of each score in :func:`aggregate_classes` (NaN-aware)."""
    keys = ("dice", "iou", "precision", "recall", "dice_mean", "iou_mean", "hd95_mean")
    return {k: _nanmean([c[k] for c in per_class.values()]) for k in keys}


def aggregate(
    per_image: Sequence[dict[str, Any]], totals: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Pool per-image results.

    Args:
        per_image: dicts from :func:`image_scores` / :func:`label_scores`.
        totals: optional ``{"tp", "fp", "fn"}`` to use instead of summing the per-image counts.

    Returns:
        ``dice``, ``iou``, ``precision``, ``recall`` over all pixels (per class, then averaged
        over the classes present in some image), ``dice_ci95`` (the pooled Dice's 95 % bootstrap
        interval over images, :func:`bootstrap_dice`; not with ``totals``), ``dice_mean`` ... ``recall_mean`` and
        ``hd95_mean`` (NaN-aware) over
        images, ``hd95_median``, ``hd95_undefined`` (images where HD95 is NaN) and ``n_images``.
    """
    if not per_image:
        raise ValueError("aggregate() needs at least one image")
    interval = None
    if totals is None:
        counts = {k: np.array([s[k] for s in per_image], np.float64) for k in ("tp", "fp", "fn")}
        totals = {k: v.sum(axis=0) for k, v in counts.items()}
        interval = bootstrap_dice(counts["tp"], counts["fp"], counts["fn"])[1]
    tp, fp, fn = (np.atleast_1d(np.asarray(totals[k], np.float64)) for k in ("tp", "fp", "fn"))
    counts = list(zip(tp, fp, fn, strict=True))
    if len(counts) > 1:  # a class absent from every image is skipped (absent-class convention)
        counts = [c for c in counts if sum(c) > 0] or [(0.0, 0.0, 0.0)]
    per_class = [scores_from_counts(*c) for c in counts]
    out: dict[str, Any] = {k: float(np.mean([s[k] for s in per_class])) for k in SCORE_KEYS}
    if interval is not None:
        out["dice_ci95"] = _interval(interval)
    for k in SCORE_KEYS:
        out[f"{k}_mean"] = float(np.mean([s[k] for s in per_image]))
    hds = np.array([s.get("hd95", math.nan) for s in per_image], np.float64)
    out["hd95_mean"] = _nanmean(hds)
    out["hd95_median"] = float(np.nanmedian(hds)) if np.isfinite(hds).any() else math.nan
    out["hd95_undefined"] = int(np.count_nonzero(np.isnan(hds)))
    out["n_images"] = len(per_image)
    return out


def nan_to_none(obj: Any) -> Any:
    """``obj`` with every non-finite float (nested in dicts and lists) as ``None``: JSON has no NaN."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [nan_to_none(v) for v in obj]
    return obj


#: suffixes that would collide with the foreground-mean names (``dice_mean``)
_RESERVED_SUFFIXES = {"mean"}


def class_suffixes(class_names: Sequence[str]) -> list[str]:
    """Class names as column and metric-name suffixes (``dice_nerve``): lower case, ``[a-z0-9_]``;
    a name that is empty, repeated or reserved (``mean``) becomes ``class_ID``.

        >>> class_suffixes(["background", "Nerve", "blood vessel", "mean"])
        ['background', 'nerve', 'blood_vessel', 'class_3']
    """
    out: list[str] = []
    for c, name in enumerate(class_names):
        slug = re.sub(r"[^0-9a-z_]+", "_", str(name).lower()).strip("_")
        if not slug or slug in out or slug in _RESERVED_SUFFIXES:
            slug = f"class_{c}"
        out.append(slug)
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
    "ABSENT_CLASS_CONVENTION",
    "CLASS_KEYS",
    "SCORE_KEYS",
    "aggregate",
    "aggregate_classes",
    "foreground_mean",
    "binarize",
    "class_suffixes",
    "confusion",
    "hd95",
    "image_scores",
    "label_scores",
    "nan_to_none",
    "scores_from_counts",
]
