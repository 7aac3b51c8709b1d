"""Opening models: one place for ``.tflite`` (LiteRT, tflite-runtime or tf.lite), ``.onnx`` (ONNX
Runtime, an optional extra) and ``.keras`` / run directories (TensorFlow), behind one predictor
protocol (:class:`Predictor`: input spec, filter chain, threshold, card).

Importing this package imports only numpy, OpenCV and an interpreter package; TensorFlow only
when a ``.keras`` file is opened, ONNX Runtime only when an ``.onnx`` file is. So ``kseg predict``
and ``kseg bench`` on a ``.tflite`` work on a device that has nothing else. Whole images (tiling,
thresholds, postprocessing, writing masks) are :mod:`kseg.inference`'s job.

Example:
    >>> from kseg.runtime import open_model
    >>> model = open_model("unet_int8.tflite", runtime="auto", num_threads=2)
    >>> prob = model.predict(pixels)          # raw pixels (N, S, S, C) -> (N, S, S, K)
"""

from __future__ import annotations

from kseg.runtime.backends import Delegate, Runtime, available_runtimes, load_backend
from kseg.runtime.keras_model import KerasPredictor
from kseg.runtime.model import (
    TFLiteModel,
    check_tflite_file,
    dequantize,
    quantize,
    read_card,
)
from kseg.runtime.onnx_model import ONNXModel, is_onnx
from kseg.runtime.open import ModelKind, open_model, resolve_model_path
from kseg.runtime.protocol import Predictor

__all__ = [
    "Delegate",
    "KerasPredictor",
    "ModelKind",
    "ONNXModel",
    "Predictor",
    "Runtime",
    "TFLiteModel",
    "available_runtimes",
    "check_tflite_file",
    "dequantize",
    "is_onnx",
    "load_backend",
    "open_model",
    "quantize",
    "read_card",
    "resolve_model_path",
]
