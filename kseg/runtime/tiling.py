"""Whole-image prediction (resize or sliding window): implemented once in :mod:`kseg.inference.tiling`.

Kept so ``from kseg.runtime.tiling import predict_image`` goes on working; numpy + OpenCV only.
"""

from __future__ import annotations

from kseg.inference.tiling import (
    as_hwc,
    blend_window,
    gaussian_window,
    predict_image,
    predict_prob,
    tile_starts,
    window_weights,
)

__all__ = [
    "as_hwc",
    "blend_window",
    "gaussian_window",
    "predict_image",
    "predict_prob",
    "tile_starts",
    "window_weights",
]
