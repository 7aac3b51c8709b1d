"""Mask clean-up with OpenCV only: drop small components, fill holes, keep the largest, smooth.

Components are 4-connected (pixels sharing an edge), the convention under which every component
has one outer boundary and its polygons in :mod:`kseg.inference.vector` are valid; the background
is then 8-connected, so a hole is a background region that touches no image border through edges
or corners. Multi-class label masks are cleaned class by class; removed pixels become background
and filled holes take the class only where they were background.
"""

from __future__ import annotations

import cv2
import numpy as np

from kseg.inference.options import InferenceOptions


def label_components(binary: np.ndarray, *, centroids: bool = False):
    """4-connected components: ``(n, labels int32 (H, W), stats)`` with cv2's stats rows
    ``[x, y, w, h, area]`` (row 0 is the background); ``centroids=True`` adds cv2's centroids."""
    n, labels, stats, cents = cv2.connectedComponentsWithStats(
        np.ascontiguousarray(binary, dtype=np.uint8), connectivity=4, ltype=cv2.CV_32S
    )
    if centroids:
        return int(n), labels, stats, cents
    return int(n), labels, stats


def remove_small(binary: np.ndarray, min_size: int) -> np.ndarray:
    """Drop components with fewer than ``min_size`` pixels."""
    binary = binary.astype(bool)
    if min_size <= 1 or not binary.any():
        return binary
    n, labels, stats = label_components(binary)
    keep = stats[:, cv2.CC_STAT_AREA] >= min_size
    keep[0] = False
    return keep[labels]


def keep_largest(binary: np.ndarray, k: int) -> np.ndarray:
    """Keep the ``k`` largest components (ties: the lower label, i.e. the first in raster order)."""
    binary = binary.astype(bool)
    if k <= 0 or not binary.any():
        return binary
    n, labels, stats = label_components(binary)
    if n - 1 <= k:
        return binary
    areas = stats[1:, cv2.CC_STAT_AREA]
    order = np.lexsort((np.arange(1, n), -areas))[:k] + 1
    keep = np.zeros(n, bool)
    keep[order] = True
    return keep[labels]


def fill_holes(binary: np.ndarray) -> np.ndarray:
    """Fill background regions (8-connected) that do not reach the image border."""
    binary = binary.astype(bool)
    bg = ~binary
    if not bg.any():
        return binary
    _, labels = cv2.connectedComponents(bg.astype(np.uint8), connectivity=8, ltype=cv2.CV_32S)
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    outside = np.isin(labels, border[border > 0])
    return binary | (bg & ~outside)


def smooth_mask(binary: np.ndarray, sigma: float) -> np.ndarray:
    """Round jagged contours: Gaussian-blur the 0/1 mask with ``sigma`` pixels, keep ``> 0.5``."""
    binary = binary.astype(bool)
    if sigma <= 0 or not binary.any():
        return binary
    blurred = cv2.GaussianBlur(
        binary.astype(np.float32),
        (0, 0),
        sigmaX=sigma,
        sigmaY=sigma,
        borderType=cv2.BORDER_REPLICATE,
    )
    return blurred > 0.5


def clean_binary(binary: np.ndarray, options: InferenceOptions) -> np.ndarray:
    """Apply the options in a fixed order: smooth, fill holes, drop small, keep the k largest."""
    out = binary.astype(bool)
    if options.smooth > 0:
        out = smooth_mask(out, options.smooth)
    if options.fill_holes:
        out = fill_holes(out)
    if options.min_size > 1:
        out = remove_small(out, options.min_size)
    if options.keep_largest > 0:
        out = keep_largest(out, options.keep_largest)
    return out


def needs_postprocess(options: InferenceOptions) -> bool:
    return bool(
        options.smooth > 0 or options.fill_holes or options.min_size > 1 or options.keep_largest > 0
    )


def postprocess(mask: np.ndarray, options: InferenceOptions) -> np.ndarray:
    """Clean a uint8 label mask ``(H, W)`` (0 background, 1..K-1 classes) class by class."""
    mask = np.asarray(mask, np.uint8)
    if not needs_postprocess(options):
        return mask
    out = np.zeros_like(mask)
    classes = [int(c) for c in np.unique(mask) if c > 0]
    for c in classes:
        cleaned = clean_binary(mask == c, options)
        # a filled hole or a smoothed bulge takes the class only where nothing else is
        out[cleaned & ((mask == c) | (mask == 0)) & (out == 0)] = c
    return out
