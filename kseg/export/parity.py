"""Parity gate: does the ``.tflite`` segment like the Keras model it came from?

Both models see the same validation images (model resolution). Each is scored against the ground
truth per image; the drop, the pixel agreement between the two masks, and the images where they
disagree most are reported, with a side-by-side PNG (image | float | tflite | difference) for
expert review.

Multi-class models (K > 1, ``argmax`` decision) are judged class by class: the summary adds
``classes`` (names, index = class id) and ``per_class`` keyed by class name (float and candidate
Dice over all pixels and their drop), and the gate fails when the foreground-mean drop or any
class's drop exceeds ``max_dice_drop`` (``failed_classes`` names them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kseg.errors import KsegError


class ParityError(KsegError):
    """The ``.tflite`` lost more Dice than allowed; the file is kept and its card says failed."""


@dataclass(frozen=True)
class ParityResult:
    summary: dict[str, Any]
    per_image: list[dict[str, Any]]
    #: the candidate's probabilities (N, S, S, K) on the images, for threshold selection
    candidate_probs: np.ndarray | None = None


def _labels(probs: np.ndarray, threshold: float) -> np.ndarray:
    from kseg.scores import binarize

    return np.stack([binarize(p, threshold) for p in probs]).astype(np.uint8)


def check_parity(
    reference,
    candidate,
    images: np.ndarray,
    masks: np.ndarray,
    names: list[str],
    *,
    threshold: float = 0.5,
    max_dice_drop: float | None = 0.01,
    review_png: Path | None = None,
    worst_k: int = 6,
    candidate_name: str = "tflite",
    class_names: Sequence[str] | None = None,
) -> ParityResult:
    """Score ``reference`` (Keras) and ``candidate`` (TFLite) predictors on the same images.

    Args:
        reference, candidate: objects with ``predict(batch float32 (N,S,S,C)) -> probs (N,S,S,K)``.
        images: (N, S, S, C) uint8 pixels at model resolution; masks (N, S, S) {0, 1}.
        max_dice_drop: the gate; ``None`` reports without judging.
        candidate_name: the candidate's column title in the review PNG (``tflite``, ``onnx``).
        class_names: K names, index = class id, for a K > 1 model's ``per_class`` section
            (default ``background, class_1, ...``).
    """
    from kseg.scores import (
        aggregate,
        aggregate_classes,
        image_scores,
        label_scores,
        nan_to_none,
    )

    if len(images) == 0:
        raise KsegError("parity check has no validation images; give --data with more images")
    batch = images.astype(np.float32)
    ref = np.concatenate([reference.predict(batch[i : i + 8]) for i in range(0, len(batch), 8)])
    cand = np.concatenate([candidate.predict(batch[i : i + 1]) for i in range(len(batch))])
    ref_m, cand_m = _labels(ref, threshold), _labels(cand, threshold)
    k = int(ref.shape[-1])
    masks = np.asarray(masks)
    if masks.ndim == 4:
        masks = masks[..., 0]

    def score(pred: np.ndarray, true: np.ndarray) -> dict[str, Any]:
        return image_scores(pred, true) if k == 1 else label_scores(pred, true, k)

    rows = []
    ref_scores, cand_scores = [], []
    for name, r, c, t in zip(names, ref_m, cand_m, masks, strict=True):
        rs, cs = score(r, t), score(c, t)
        ref_scores.append(rs)
        cand_scores.append(cs)
        rows.append(
            {
                "name": name,
                "float_dice": rs["dice"],
                "tflite_dice": cs["dice"],
                "float_iou": rs["iou"],
                "tflite_iou": cs["iou"],
                "dice_drop": rs["dice"] - cs["dice"],
                "pixel_agreement": float(np.mean(r == c)),
            }
        )
    ra, ca = aggregate(ref_scores), aggregate(cand_scores)
    drop = ra["dice"] - ca["dice"]
    order = np.argsort([r["pixel_agreement"] for r in rows])[:worst_k]
    summary = {
        "n_images": len(rows),
        "threshold": threshold,
        "float_dice": ra["dice"],
        "tflite_dice": ca["dice"],
        # how far another draw of as many validation images could move each Dice (the drop
        # itself is paired, image by image, and far tighter)
        "float_dice_ci95": ra["dice_ci95"],
        "tflite_dice_ci95": ca["dice_ci95"],
        "dice_drop": drop,
        "float_iou": ra["iou"],
        "tflite_iou": ca["iou"],
        "float_dice_mean": ra.get("dice_mean"),
        "tflite_dice_mean": ca.get("dice_mean"),
        "pixel_agreement": float(np.mean(ref_m == cand_m)),
        "max_abs_prob_diff": float(np.max(np.abs(ref - cand))),
        "worst_disagreement": [rows[i]["name"] for i in order],
        "max_dice_drop": max_dice_drop,
        "passed": None if max_dice_drop is None else bool(drop <= max_dice_drop),
    }
    if k > 1:
        labels = list(class_names) if class_names is not None and len(class_names) == k else []
        labels = labels or ["background", *(f"class_{c}" for c in range(1, k))]
        rc, cc = aggregate_classes(ref_scores, labels), aggregate_classes(cand_scores, labels)
        per_class = {}
        for name in labels[1:]:
            f, q = rc[name]["dice"], cc[name]["dice"]
            class_drop = f - q  # NaN when the class is in no image and never predicted
            per_class[name] = {
                "float_dice": f,
                "tflite_dice": q,
                "float_dice_ci95": rc[name]["dice_ci95"],
                "tflite_dice_ci95": cc[name]["dice_ci95"],
                "dice_drop": class_drop,
                "float_iou": rc[name]["iou"],
                "tflite_iou": cc[name]["iou"],
                "n_images": rc[name]["n_images"],
                "passed": None
                if max_dice_drop is None or np.isnan(class_drop)
                else bool(class_drop <= max_dice_drop),
            }
        failed = [n for n, c in per_class.items() if c["passed"] is False]
        summary["decision"] = "argmax"
        summary["classes"] = labels
        summary["per_class"] = nan_to_none(per_class)  # JSON has no NaN
        summary["failed_classes"] = failed
        if max_dice_drop is not None:
            summary["passed"] = bool(drop <= max_dice_drop) and not failed
    if review_png is not None:
        from kseg.plots import plot_comparison

        plot_comparison(
            images[order],
            ref_m[order],
            cand_m[order],
            review_png,
            titles=("float", candidate_name),
            names=[names[i] for i in order],
        )
        summary["review_png"] = str(review_png)
    return ParityResult(summary, rows, cand)


def rename_candidate(summary: dict[str, Any], name: str) -> dict[str, Any]:
    """The summary with ``tflite_*`` keys (also inside ``per_class``) renamed ``NAME_*``."""

    def rename(obj: Any) -> Any:
        if isinstance(obj, dict):
            return {k.replace("tflite_", f"{name}_"): rename(v) for k, v in obj.items()}
        return obj

    return rename(summary)


def failure_message(summary: dict[str, Any], out: Any, max_dice_drop: float | None) -> str:
    """One line saying why the gate failed: the mean drop, and for K > 1 the classes over it."""
    per_class = summary.get("per_class") or {}
    failed = summary.get("failed_classes") or []
    what = f"Dice drop {summary['dice_drop']:.4f}"
    if failed:
        what += " (foreground mean); " + ", ".join(
            f"{n} {per_class[n]['dice_drop']:.4f}" for n in failed
        )
    return f"{out}: {what} exceeds --max-dice-drop {max_dice_drop}; file kept, card marked failed"
