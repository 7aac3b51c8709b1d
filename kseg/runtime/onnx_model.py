"""An ``.onnx`` segmentation model run by ONNX Runtime, behind the same pixel contract as a ``.tflite``.

ONNX Runtime is an optional extra (``pip install 'kseg[onnx]'``): it is imported when an
:class:`ONNXModel` is created, never by :mod:`kseg.runtime` itself, so the TFLite path does not
need it. This module imports no TensorFlow.

kseg's ONNX files keep the Keras layout: input ``image`` float32 ``(N, S, S, C)`` NHWC holding raw
pixels in [0, 255] (normalization is inside the graph), output probabilities ``(N, S, S, K)``.
An INT8 file is a QDQ graph (QuantizeLinear/DequantizeLinear around the integer ops) with float
input and output, so callers feed the same pixels to both kinds.

Example:
    >>> m = ONNXModel("best.int8.onnx", num_threads=1)
    >>> prob = m.predict(pixels)          # (N, S, S, K) float32
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from kseg.errors import ConfigError, ModelError
from kseg.runtime.model import apply_card, check_batch, describe_model, read_card

ONNX_SUFFIX = ".onnx"
INSTALL_HINT = "pip install 'kseg[onnx]'"


def import_onnxruntime():
    """The ``onnxruntime`` module, or one clear error saying how to install it."""
    try:
        import onnxruntime
    except ImportError:
        raise ModelError(
            f"running .onnx models needs ONNX Runtime, which is not installed; {INSTALL_HINT}"
        ) from None
    return onnxruntime


def is_onnx(path: str | os.PathLike[str]) -> bool:
    return Path(path).suffix.lower() == ONNX_SUFFIX


def check_onnx_file(path: str | os.PathLike[str]) -> Path:
    """``path`` as a Path if it exists, ends in ``.onnx`` and is not empty."""
    p = Path(path)
    if not p.is_file():
        raise ModelError(f"{p}: model file not found")
    if not is_onnx(p):
        raise ModelError(f"{p}: not an ONNX model (expected a file ending in .onnx)")
    if p.stat().st_size == 0:
        raise ModelError(f"{p}: empty ONNX file; export it again with kseg convert --onnx")
    return p


class ONNXModel:
    """An ONNX segmentation model with the kseg pixel contract (same interface as TFLiteModel).

    Args:
        path: the ``.onnx`` file; its card ``FILE.json`` is read when present.
        num_threads: ONNX Runtime intra-op threads (None: its default, all cores).
        runtime: only ``auto`` or ``onnxruntime`` (the argument exists so callers can treat both
            model kinds alike).
    """

    # float32 in and out: there are no quantization parameters (describe() reports them as None)
    input_scale = input_zero_point = output_scale = output_zero_point = None

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        num_threads: int | None = None,
        runtime: str = "auto",
    ) -> None:
        if runtime not in ("auto", "onnxruntime"):
            raise ConfigError(f"--runtime {runtime}: .onnx models run with onnxruntime (or auto)")
        self.path = check_onnx_file(path)
        self.card = read_card(self.path)
        ort = import_onnxruntime()
        self.backend = "onnxruntime"
        self.backend_version = ort.__version__
        self.delegate = "cpu"
        self.num_threads = num_threads
        opts = ort.SessionOptions()
        if num_threads is not None:
            if int(num_threads) < 1:
                raise ConfigError(f"num_threads must be >= 1, got {num_threads}")
            opts.intra_op_num_threads = int(num_threads)
            opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(
                str(self.path), opts, providers=["CPUExecutionProvider"]
            )
        except Exception as e:  # ORT raises its own exception classes with long messages
            first = next((ln for ln in str(e).splitlines() if ln.strip()), type(e).__name__)
            raise ModelError(
                f"{self.path}: corrupt or unsupported ONNX model ({first.strip()[:200]}); export it again"
            ) from None
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ModelError(
                f"{self.path}: expected 1 input and 1 output, found {len(inputs)} and {len(outputs)}"
            )
        self._in, self._out = inputs[0], outputs[0]
        shape = list(self._in.shape)
        if (
            len(shape) != 4
            or not all(isinstance(d, int) for d in shape[1:])
            or shape[1] != shape[2]
        ):
            raise ModelError(
                f"{self.path}: input shape {shape} is not (N, S, S, C) NHWC; not a kseg segmentation model"
            )
        if self._in.type != "tensor(float)":
            raise ModelError(f"{self.path}: input type {self._in.type}; kseg feeds float32 pixels")
        self.dynamic_batch = not isinstance(shape[0], int)
        self._batch = 1 if self.dynamic_batch else int(shape[0])
        self.input_size: int = int(shape[1])
        self.channels: int = int(shape[3])
        self.input_dtype = np.dtype(np.float32)
        self.output_dtype = np.dtype(np.float32)
        self.num_classes: int = int(self._out.shape[-1])
        apply_card(self, self.card)

    def preprocess(self, batch: np.ndarray) -> np.ndarray:
        """Raw pixels -> the input tensor (float32; a QDQ graph quantizes inside)."""
        return np.ascontiguousarray(batch, dtype=np.float32)

    def invoke_raw(self, x: np.ndarray) -> np.ndarray:
        """Run one input tensor and return the output tensor."""
        return self.session.run([self._out.name], {self._in.name: x})[0]

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Probabilities float32 ``(N, S, S, K)`` for raw pixels float32 ``(N, S, S, C)`` in [0, 255]."""
        batch = check_batch(self.path, batch, self.input_size, self.channels)
        x = self.preprocess(self.filters.apply_pixels(batch) if self.filters else batch)
        if self.dynamic_batch:
            return np.asarray(self.invoke_raw(x), np.float32)
        parts = [self.invoke_raw(x[i : i + self._batch]) for i in range(0, len(x), self._batch)]
        return np.concatenate(parts).astype(np.float32)

    __call__ = predict

    def describe(self) -> dict[str, Any]:
        """Session-level facts (for reports and cards); the same keys as TFLiteModel.describe."""
        batch = 1 if self.dynamic_batch else self._batch
        return describe_model(
            self,
            delegate=self.delegate,
            input_shape=[batch, self.input_size, self.input_size, self.channels],
            output_shape=[batch, *[int(d) for d in self._out.shape[1:]]],
        )

    def __repr__(self) -> str:
        return (
            f"ONNXModel({str(self.path)!r}, onnxruntime {self.backend_version}, input="
            f"{self.input_size}x{self.input_size}x{self.channels}, classes={self.num_classes})"
        )
