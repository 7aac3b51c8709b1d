"""Edge runtime: run a kseg ``.tflite`` with LiteRT, tflite-runtime or tf.lite, without TensorFlow
(and an ``.onnx`` with ONNX Runtime, an optional extra imported only when such a file is opened).

This package imports only numpy, OpenCV (through :mod:`kseg.data.io`) and an interpreter package,
so ``kseg predict`` and ``kseg bench`` work on a device that has nothing else.

Example:
    >>> from kseg.runtime import TFLiteModel, predict_files
    >>> model = TFLiteModel("unet_int8.tflite", runtime="auto", num_threads=2)
    >>> predict_files(model, [Path("scan.png")], "out/")
"""

from __future__ import annotations

from kseg.runtime.backends import Delegate, Runtime, available_runtimes, load_backend
from kseg.runtime.model import (
    TFLiteModel,
    check_tflite_file,
    dequantize,
    quantize,
    read_card,
)
from kseg.runtime.onnx_model import ONNXModel, is_onnx, open_model
from kseg.runtime.predict import Predictor, mask_to_png, overlay, predict_files, prob_to_mask
from kseg.runtime.tiling import predict_image

__all__ = [
    "Delegate",
    "ONNXModel",
    "Predictor",
    "Runtime",
    "TFLiteModel",
    "available_runtimes",
    "check_tflite_file",
    "dequantize",
    "is_onnx",
    "load_backend",
    "mask_to_png",
    "open_model",
    "overlay",
    "predict_files",
    "predict_image",
    "prob_to_mask",
    "quantize",
    "read_card",
]
