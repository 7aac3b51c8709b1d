"""Whole-image inference: one path from an image of any size to a mask, statistics and polygons.

Used by ``kseg predict``, ``kseg evaluate`` and ``kseg serve`` for ``.tflite`` and Keras models
alike. numpy + OpenCV only (no TensorFlow, no SciPy). Models are opened by
:func:`kseg.runtime.open_model` (a ``.keras`` model loads TensorFlow there, lazily);
:func:`load_predictor` is that with one thread.

Example:
    >>> from kseg.inference import InferenceOptions, load_predictor, segment_image
    >>> pred = load_predictor("runs/demo/best.int8.tflite")
    >>> res = segment_image(pred, image, InferenceOptions(tile="on", min_size=50, pixel_spacing_mm=0.1))
    >>> res.stats()["area_mm2"], res.geojson()["features"][0]["properties"]["area_px"]
"""

from __future__ import annotations

from kseg.inference.files import predict_files
from kseg.inference.options import Blend, InferenceOptions, TileMode, parse_spacing
from kseg.inference.postprocess import postprocess
from kseg.inference.segment import (
    Segmentation,
    encode_png,
    load_predictor,
    mask_to_png,
    overlay,
    prob_to_mask,
    segment_image,
)
from kseg.inference.tiling import predict_image, predict_prob
from kseg.inference.vector import mask_geojson, mask_stats

__all__ = [
    "Blend",
    "InferenceOptions",
    "Segmentation",
    "TileMode",
    "encode_png",
    "load_predictor",
    "mask_geojson",
    "mask_stats",
    "mask_to_png",
    "overlay",
    "parse_spacing",
    "postprocess",
    "predict_files",
    "predict_image",
    "predict_prob",
    "prob_to_mask",
    "segment_image",
]
