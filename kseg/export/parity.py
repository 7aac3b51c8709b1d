"""Parity gate: does the ``.tflite`` segment like the Keras model it came from?

Both models see the same validation images (model resolution). Each is scored against the ground
truth per image; the drop, the pixel agreement between the two masks, and the images where they
disagree most are reported, with a side-by-side PNG (image | float | tflite | difference) for
expert review.
"""

from __future__ import annotations

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
) -> ParityResult:
    """Score ``reference`` (Keras) and ``candidate`` (TFLite) predictors on the same images.

    Args:
        reference, candidate: objects with ``predict(batch float32 (N,S,S,C)) -> probs (N,S,S,K)``.
        images: (N, S, S, C) uint8 pixels at model resolution; masks (N, S, S) {0, 1}.
        max_dice_drop: the gate; ``None`` reports without judging.
    """
    from kseg.scores import aggregate, image_scores

    if len(images) == 0:
        raise KsegError("parity check has no validation images; give --data with more images")
    batch = images.astype(np.float32)
    ref = np.concatenate([reference.predict(batch[i : i + 8]) for i in range(0, len(batch), 8)])
    cand = np.concatenate([candidate.predict(batch[i : i + 1]) for i in range(len(batch))])
    ref_m, cand_m = _labels(ref, threshold), _labels(cand, threshold)

    rows = []
    ref_scores, cand_scores = [], []
    for name, r, c, t in zip(names, ref_m, cand_m, masks, strict=True):
        rs, cs = image_scores(r, t), image_scores(c, t)
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
    if review_png is not None:
        from kseg.plots import plot_comparison

        plot_comparison(
            images[order],
            ref_m[order],
            cand_m[order],
            review_png,
            titles=("float", "tflite"),
            names=[names[i] for i in order],
        )
        summary["review_png"] = str(review_png)
    return ParityResult(summary, rows, cand)
