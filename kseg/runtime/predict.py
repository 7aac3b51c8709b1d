"""Predict masks for image files with any predictor (TFLite here, Keras elsewhere); no TensorFlow.

``kseg predict`` calls :func:`predict_files` for both model kinds, so a ``.tflite`` on a device and
a ``.keras`` on a workstation write the same files: ``<stem>_mask.png`` (0/255) and
``<stem>_overlay.png`` (the image with the mask outline and a tint).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import cv2
import numpy as np

from kseg.atomic import write_bytes
from kseg.data.io import read_image
from kseg.errors import DataError
from kseg.runtime.tiling import predict_image


@runtime_checkable
class Predictor(Protocol):
    """What :func:`predict_files` and :func:`~kseg.runtime.tiling.predict_image` need of a model.

    ``predict`` takes raw pixels float32 ``(N, S, S, C)`` in [0, 255] and returns probabilities
    float32 ``(N, S, S, K)`` (K = 1: sigmoid, K > 1: softmax).
    """

    input_size: int
    channels: int
    resize_mode: str
    threshold: float

    def predict(self, batch: np.ndarray) -> np.ndarray: ...


def prob_to_mask(prob: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """uint8 ``(H, W)`` label mask: ``prob > threshold`` for K = 1 (as training metrics and kseg.scores.binarize), argmax for K > 1."""
    if prob.ndim == 2:
        prob = prob[..., None]
    if prob.shape[-1] == 1:
        return (prob[..., 0] > threshold).astype(np.uint8)
    return np.argmax(prob, axis=-1).astype(np.uint8)


def mask_to_png(mask: np.ndarray, num_classes: int = 1) -> np.ndarray:
    """Labels -> uint8 grey levels: binary 0/255; K classes spread evenly over 0..255."""
    top = max(1, num_classes - 1)
    return (mask.astype(np.uint16) * (255 // top)).clip(0, 255).astype(np.uint8)


def overlay(image: np.ndarray, mask: np.ndarray, *, alpha: float = 0.35) -> np.ndarray:
    """RGB uint8: the image with foreground tinted red and its outline in yellow."""
    img = image[..., 0] if image.ndim == 3 and image.shape[2] == 1 else image
    rgb = np.repeat(img[..., None], 3, axis=2) if img.ndim == 2 else img.copy()
    rgb = rgb.astype(np.float32)
    fg = mask > 0
    rgb[fg] = (1 - alpha) * rgb[fg] + alpha * np.array([255.0, 0.0, 0.0])
    out = np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
    contours, _ = cv2.findContours(fg.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(out, contours, -1, (255, 255, 0), 1)
    return out


def _write_png(path: Path, arr: np.ndarray, *, rgb: bool = False) -> None:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(arr, cv2.COLOR_RGB2BGR) if rgb else arr)
    if not ok:
        raise DataError(f"{path}: could not encode PNG")
    write_bytes(path, buf.tobytes())


def predict_files(
    predictor: Predictor,
    inputs: list[Path] | list[str],
    out_dir: str | os.PathLike[str],
    *,
    tile: bool = False,
    overlap: float = 0.25,
) -> list[dict[str, Any]]:
    """Write ``<stem>_mask.png`` (0/255) and ``<stem>_overlay.png`` for each input image.

    Returns one record per input: paths written, image size and foreground fraction.

    Raises:
        DataError: an input that cannot be read (the message names it).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    threshold = float(getattr(predictor, "threshold", 0.5))
    records = []
    for src in map(Path, inputs):
        image = read_image(src, int(predictor.channels))
        prob = predict_image(predictor, image, tile=tile, overlap=overlap)
        mask = prob_to_mask(prob, threshold)
        mask_path = out / f"{src.stem}_mask.png"
        overlay_path = out / f"{src.stem}_overlay.png"
        _write_png(mask_path, mask_to_png(mask, prob.shape[-1]))
        _write_png(overlay_path, overlay(image, mask), rgb=True)
        records.append(
            {
                "input": str(src),
                "mask": str(mask_path),
                "overlay": str(overlay_path),
                "height": int(image.shape[0]),
                "width": int(image.shape[1]),
                "foreground_fraction": float((mask > 0).mean()),
            }
        )
    return records
