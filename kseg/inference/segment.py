"""One image in, a :class:`Segmentation` out: the path shared by ``kseg predict``, ``kseg evaluate``
and ``kseg serve``, for ``.tflite`` and Keras models alike."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from kseg.data.io import encode_png
from kseg.errors import DataError
from kseg.inference.classes import class_colour, default_class_names, predictor_class_names
from kseg.inference.options import InferenceOptions
from kseg.inference.postprocess import postprocess
from kseg.inference.tiling import ProbInfo, predict_prob
from kseg.inference.vector import class_components, mask_geojson, mask_stats
from kseg.runtime import Predictor, open_model


def prob_to_mask(prob: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """uint8 ``(H, W)`` label mask: ``prob > threshold`` for K = 1 (as training metrics and
    kseg.scores.binarize), argmax for K > 1."""
    if prob.ndim == 2:
        prob = prob[..., None]
    if prob.shape[-1] == 1:
        return (prob[..., 0] > threshold).astype(np.uint8)
    return np.argmax(prob, axis=-1).astype(np.uint8)


def mask_to_png(mask: np.ndarray, num_classes: int = 1) -> np.ndarray:
    """Labels -> uint8 grey levels: binary 0/255; K classes spread evenly over 0..255."""
    top = max(1, num_classes - 1)
    return (mask.astype(np.uint16) * (255 // top)).clip(0, 255).astype(np.uint8)


def overlay(
    image: np.ndarray, mask: np.ndarray, *, alpha: float = 0.35, num_classes: int = 1
) -> np.ndarray:
    """RGB uint8: the image with the mask tinted and outlined.

    One output channel: foreground tinted red, outlined in yellow. K > 1 classes: each class
    tinted and outlined in its own colour (:func:`kseg.inference.classes.class_colour`), so one
    overlay shows every class and the page's legend explains it.
    """
    img = image[..., 0] if image.ndim == 3 and image.shape[2] == 1 else image
    rgb = np.repeat(img[..., None], 3, axis=2) if img.ndim == 2 else img.copy()
    rgb = rgb.astype(np.float32)
    classes = [1] if num_classes <= 1 else [int(c) for c in np.unique(mask) if c > 0]
    for c in classes:
        fg = mask > 0 if num_classes <= 1 else mask == c
        rgb[fg] = (1 - alpha) * rgb[fg] + alpha * np.array(class_colour(c), np.float32)
    out = np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
    for c in classes:
        fg = mask > 0 if num_classes <= 1 else mask == c
        contours, _ = cv2.findContours(
            fg.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE
        )
        edge = (255, 255, 0) if num_classes <= 1 else class_colour(c)
        cv2.drawContours(out, contours, -1, edge, 1)
    return out


def model_threshold(predictor) -> float:
    """The model's own threshold: its card's (validated on held-out data when the card says so)."""
    return float(getattr(predictor, "threshold", 0.5))


@dataclass
class Segmentation:
    """The result of :func:`segment_image` for one image.

    Attributes:
        image: the input as uint8 ``(H, W, C)``.
        prob: probabilities float32 ``(H, W, K)`` at the image's size.
        mask: uint8 labels ``(H, W)`` after thresholding and postprocessing.
        threshold: the threshold used (one-class models; K > 1 uses argmax).
        options: the options it was made with.
        tiled: whether the image was processed at native resolution in windows.
        windows: model windows run (TTA multiplies model calls, not windows).
        seconds: wall time of prediction and postprocessing.
        names: class names by class id, background first (default: ``class_1``, ...; see
            :func:`kseg.inference.classes.predictor_class_names`).
    """

    image: np.ndarray
    prob: np.ndarray
    mask: np.ndarray
    threshold: float
    options: InferenceOptions
    tiled: bool = False
    windows: int = 1
    seconds: float = 0.0
    names: tuple[str, ...] | None = None
    _stats: dict[str, Any] | None = field(default=None, repr=False)
    _parts: dict[int, Any] | None = field(default=None, repr=False)

    @property
    def num_classes(self) -> int:
        return int(self.prob.shape[-1])

    @property
    def class_names(self) -> tuple[str, ...]:
        """Names by class id, background first (``names`` or the defaults)."""
        return tuple(self.names) if self.names else default_class_names(self.num_classes)

    def stats(self) -> dict[str, Any]:
        """Area (px, and mm^2 with a pixel spacing), perimeter, bounding box, component count and
        one record per component (see :func:`kseg.inference.vector.mask_stats`)."""
        if self._stats is None:
            s = mask_stats(
                self.mask,
                self.options.spacing,
                num_classes=self.num_classes,
                parts=self._shared(),
                class_names=self.class_names,
            )
            s["threshold"] = float(self.threshold)
            s["tiled"] = bool(self.tiled)
            s["windows"] = int(self.windows)
            self._stats = s
        return self._stats

    def geojson(self) -> dict[str, Any]:
        """A FeatureCollection: one Polygon per component in pixel coordinates, holes as interior
        rings, each with its class id and name and its area (see
        :func:`kseg.inference.vector.mask_geojson`)."""
        h, w = self.mask.shape
        props: dict[str, Any] = {"width": int(w), "height": int(h), "coordinates": "pixel"}
        if self.options.spacing is not None:
            props["pixel_spacing_mm"] = list(self.options.spacing)
        props["class_names"] = list(self.class_names)
        return mask_geojson(
            self.mask,
            self.options.spacing,
            properties=props,
            parts=self._shared(),
            class_names=self.class_names,
        )

    def _shared(self) -> dict[int, Any]:
        """The mask's components with their rings, labelled once for stats() and geojson()."""
        if self._parts is None:
            self._parts = class_components(
                self.mask, self.options.spacing, num_classes=self.num_classes, with_rings=True
            )
        return self._parts

    def mask_png(self) -> bytes:
        """The mask as a PNG (binary: 0/255; K classes spread over 0..255)."""
        return encode_png(mask_to_png(self.mask, self.num_classes))

    def overlay_png(self, alpha: float = 0.35) -> bytes:
        """The image with the mask tinted and outlined (one colour per class), as an RGB PNG."""
        if not 0.0 <= float(alpha) <= 1.0:
            raise DataError(f"overlay alpha {alpha} must be in [0, 1]")
        ov = overlay(self.image, self.mask, alpha=float(alpha), num_classes=self.num_classes)
        return encode_png(ov, rgb=True)

    def rethreshold(self, threshold: float) -> Segmentation:
        """The same probabilities with another threshold (postprocessing applied again)."""
        opts = self.options.replace(threshold=threshold)
        mask = postprocess(prob_to_mask(self.prob, opts.threshold), opts)
        return Segmentation(
            self.image,
            self.prob,
            mask,
            float(threshold),
            opts,
            self.tiled,
            self.windows,
            0.0,
            self.names,
        )


def segment_image(
    predictor,
    image: np.ndarray,
    options: InferenceOptions | None = None,
    *,
    class_names: tuple[str, ...] | list[str] | None = None,
) -> Segmentation:
    """Probabilities, mask and everything derived from them for one uint8 image of any size.

    Args:
        predictor: a :class:`kseg.runtime.TFLiteModel`, a
            :class:`kseg.runtime.KerasPredictor` (see :func:`kseg.runtime.open_model`) or any object
            with ``input_size``, ``channels``, ``resize_mode``, ``threshold`` and ``predict``.
        image: uint8 ``(H, W)`` or ``(H, W, C)``; C must match the model.
        options: :class:`InferenceOptions` (default: no tiling unless the model was trained at
            native scale, the model's threshold, no postprocessing).
        class_names: names by class id, background first (default: looked up with
            :func:`kseg.inference.classes.predictor_class_names`; callers that segment many
            images pass them once).

    Raises:
        DataError: wrong channel count or shape.
    """
    opts = options or InferenceOptions()
    t0 = time.perf_counter()
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise DataError(
            f"image dtype {image.dtype} is not uint8; read it with kseg.data.io.read_image"
        )
    prob, info = predict_prob(predictor, image, opts)
    threshold = opts.threshold if opts.threshold is not None else model_threshold(predictor)
    mask = postprocess(prob_to_mask(prob, threshold), opts)
    img = image[..., None] if image.ndim == 2 else image
    return Segmentation(
        img,
        prob,
        mask,
        float(threshold),
        opts,
        info.tiled,
        info.windows,
        time.perf_counter() - t0,
        tuple(class_names) if class_names else predictor_class_names(predictor),
    )


def load_predictor(
    path: str | os.PathLike[str], runtime: str | None = None, num_threads: int | None = 1
) -> Predictor:
    """:func:`kseg.runtime.open_model` with inference's default of one thread (the service and
    ``kseg predict`` run one interpreter per worker)."""
    return open_model(path, runtime=runtime, num_threads=num_threads)


__all__ = [
    "ProbInfo",
    "Segmentation",
    "encode_png",
    "load_predictor",
    "mask_to_png",
    "model_threshold",
    "overlay",
    "prob_to_mask",
    "segment_image",
]
