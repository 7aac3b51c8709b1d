"""Whole-image prediction through a fixed-size model: resize, or slide a window and blend.

A segmentation model has a fixed input side ``S``. :func:`predict_image` either brings the image to
``S`` with :func:`kseg.data.io.fit_to_size` and the prediction back with
:func:`~kseg.data.io.restore_size` (the default, identical to training), or, with ``tile=True``,
cuts an image larger than ``S`` into overlapping ``S x S`` windows at full resolution and blends
the window predictions with a weight that falls towards each window's border, so seams do not
show (the overlap-tile strategy of Ronneberger et al., "U-Net", MICCAI 2015).
"""

from __future__ import annotations

import numpy as np

from kseg.data.io import fit_to_size, restore_size
from kseg.errors import DataError


def _as_hwc(image: np.ndarray, channels: int) -> np.ndarray:
    img = np.asarray(image)
    if img.ndim == 2:
        img = img[..., None]
    if img.ndim != 3:
        raise DataError(f"image shape {img.shape} is not (H, W) or (H, W, C)")
    if img.shape[2] != channels:
        raise DataError(
            f"image has {img.shape[2]} channels but the model expects {channels}; "
            f"read it with read_image(path, channels={channels})"
        )
    return img


def tile_starts(length: int, size: int, overlap: float) -> list[int]:
    """Window starts along one axis: stride ``size * (1 - overlap)``, the last window flush with the end."""
    if length <= size:
        return [0]
    stride = max(1, int(round(size * (1.0 - overlap))))
    starts = list(range(0, length - size, stride))
    starts.append(length - size)
    return sorted(set(starts))


def blend_window(size: int, floor: float = 0.05) -> np.ndarray:
    """``(size, size)`` weights: a separable triangle peaking at the centre, at least ``floor``."""
    ramp = 1.0 - np.abs(np.linspace(-1.0, 1.0, size, dtype=np.float32))
    ramp = np.maximum(ramp, floor)
    return np.outer(ramp, ramp).astype(np.float32)


def predict_image(
    predictor, image: np.ndarray, *, tile: bool = False, overlap: float = 0.25, batch_size: int = 4
) -> np.ndarray:
    """Probabilities float32 ``(H, W, K)`` at the image's own size.

    Args:
        predictor: anything with ``input_size``, ``channels``, ``resize_mode`` and
            ``predict(batch) -> (N, S, S, K)`` (a :class:`kseg.runtime.Predictor`).
        image: uint8 ``(H, W)`` or ``(H, W, C)``, C equal to ``predictor.channels``.
        tile: slide ``S x S`` windows over images larger than ``S`` instead of resizing.
        overlap: fraction of a window shared with its neighbour when tiling, in [0, 0.9].
        batch_size: windows per ``predict`` call.

    Raises:
        DataError: wrong channel count or shape.
    """
    img = _as_hwc(image, int(predictor.channels))
    size = int(predictor.input_size)
    h, w = img.shape[:2]
    if not tile or (h <= size and w <= size):
        x, info = fit_to_size(img, size, predictor.resize_mode)
        if x.ndim == 2:
            x = x[..., None]
        prob = predictor.predict(x[None].astype(np.float32))[0]
        out = restore_size(prob, info)
        return out[..., None] if out.ndim == 2 else out
    if not 0.0 <= overlap <= 0.9:
        raise DataError(f"tile overlap {overlap} must be in [0, 0.9]")
    ph, pw = max(h, size), max(w, size)
    padded = np.zeros((ph, pw, img.shape[2]), dtype=img.dtype)
    padded[:h, :w] = img
    boxes = [(y, x) for y in tile_starts(ph, size, overlap) for x in tile_starts(pw, size, overlap)]
    weight = blend_window(size)
    acc = None
    norm = np.zeros((ph, pw), dtype=np.float32)
    for i in range(0, len(boxes), batch_size):
        chunk = boxes[i : i + batch_size]
        batch = np.stack([padded[y : y + size, x : x + size] for y, x in chunk]).astype(np.float32)
        probs = predictor.predict(batch)
        if acc is None:
            acc = np.zeros((ph, pw, probs.shape[-1]), dtype=np.float32)
        for (y, x), p in zip(chunk, probs, strict=True):
            acc[y : y + size, x : x + size] += p * weight[..., None]
            norm[y : y + size, x : x + size] += weight
    return (acc / norm[..., None])[:h, :w]
