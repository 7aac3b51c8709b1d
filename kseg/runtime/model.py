"""A ``.tflite`` segmentation model behind the kseg pixel contract (no TensorFlow).

:class:`TFLiteModel` takes raw pixels in [0, 255] like the Keras model, quantizes them with the
model's own input scale and zero point, runs the interpreter, and dequantizes the output with the
output scale and zero point, so callers always see float32 probabilities.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from kseg.errors import ConfigError, DataError, ModelError
from kseg.runtime.backends import Backend, interpreter_kwargs, load_backend

TFLITE_IDENTIFIER = b"TFL3"
CARD_FORMAT = "kseg-model-card/1"
_MIN_SIZE = 24  # root offset + identifier + the smallest possible Model table


def check_tflite_file(path: str | os.PathLike[str]) -> Path:
    """Check that ``path`` exists and is a complete TFLite flatbuffer; return it as a Path.

    Raises:
        ModelError: missing file, wrong identifier (not a ``.tflite``), or truncated file.
    """
    p = Path(path)
    if not p.is_file():
        raise ModelError(f"{p}: model file not found")
    size = p.stat().st_size
    with p.open("rb") as f:
        head = f.read(8)
    if len(head) < 8 or head[4:8] != TFLITE_IDENTIFIER:
        raise ModelError(f"{p}: not a TFLite model (missing TFL3 identifier)")
    root = int.from_bytes(head[:4], "little")
    if size < _MIN_SIZE or root >= size:
        raise ModelError(f"{p}: truncated TFLite model ({size} bytes); copy or export it again")
    return p


def read_card(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The model card ``FILE.json`` beside ``FILE.tflite``, or None when there is none.

    Raises:
        ModelError: the card exists but is not valid JSON or has another format.
    """
    card_path = Path(path).with_suffix(".json")
    if not card_path.is_file():
        return None
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ModelError(f"{card_path}: unreadable model card ({e}); re-export the model") from None
    if not isinstance(card, dict) or not str(card.get("format", "")).startswith("kseg-model-card/"):
        raise ModelError(
            f"{card_path}: not a kseg model card (format should be {CARD_FORMAT!r}); "
            f"remove or rename it"
        )
    return card


def apply_card(predictor: Any, card: dict[str, Any] | None) -> dict[str, Any]:
    """Set what a model card says on a predictor whose ``num_classes`` is known (the protocol's
    threshold, its source, resize mode, native scale, training flips, output activation and filter
    chain; defaults where there is no card) and return the card's ``input`` section."""
    from kseg.filters.chain import chain_from_card  # numpy + OpenCV, no TensorFlow

    card_in = (card or {}).get("input", {})
    card_out = (card or {}).get("output", {})
    p = predictor
    p.output_activation = str(
        card_out.get("activation", "sigmoid" if p.num_classes == 1 else "softmax")
    )
    p.threshold = float(card_out.get("threshold", 0.5))
    #: "validation" when the card's threshold was chosen on held-out data (kseg convert)
    p.threshold_source = str(card_out.get("threshold_source", "config" if card else "default"))
    p.resize_mode = str(card_in.get("resize", "stretch"))
    p.native_scale = card_in.get("native_scale")  # None: the card does not say
    p.flips = card_in.get("flips")  # the flips the training applied (TTA); None: not said
    p.filters = chain_from_card(card)  # the filter chain of training (``input.preprocess``)
    return card_in


def _qparams(detail: dict[str, Any]) -> tuple[float, int]:
    """Per-tensor scale and zero point (0.0, 0 for a float tensor)."""
    qp = detail.get("quantization_parameters") or {}
    scales = np.asarray(qp.get("scales", []), dtype=np.float64)
    zps = np.asarray(qp.get("zero_points", []), dtype=np.int64)
    if scales.size == 1:
        return float(scales[0]), int(zps[0]) if zps.size else 0
    scale, zp = detail.get("quantization", (0.0, 0))
    return float(scale), int(zp)


def quantize(x: np.ndarray, scale: float, zero_point: int, dtype: np.dtype) -> np.ndarray:
    """``round(x / scale) + zero_point`` clipped to ``dtype`` (identity cast for float tensors)."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f" or scale == 0.0:
        return x.astype(dtype)
    info = np.iinfo(dtype)
    q = np.rint(np.asarray(x, np.float64) / scale) + zero_point
    return np.clip(q, info.min, info.max).astype(dtype)


def check_batch(path: Any, batch: np.ndarray, input_size: int, channels: int) -> np.ndarray:
    """``batch`` as ``(N, S, S, C)`` (one image gets a batch axis), or one line naming the file
    and the shape the model wants."""
    batch = np.asarray(batch)
    if batch.ndim == 3:
        batch = batch[None]
    expected = (input_size, input_size, channels)
    if batch.ndim != 4 or tuple(batch.shape[1:]) != expected:
        raise DataError(
            f"{path}: input batch shape {tuple(batch.shape)} does not match the model "
            f"(N, {expected[0]}, {expected[1]}, {expected[2]})"
        )
    return batch


def describe_model(
    model: Any, *, delegate: str, input_shape: list[int], output_shape: list[int]
) -> dict[str, Any]:
    """The ``describe()`` facts of a :class:`TFLiteModel` or an ``ONNXModel``: one set of keys in
    one order, so reports list both kinds alike; the tensor shapes come from the caller (each
    backend reads them its own way)."""
    return {
        "path": str(model.path),
        "backend": model.backend,
        "backend_version": model.backend_version,
        "delegate": delegate,
        "num_threads": model.num_threads,
        "input_shape": input_shape,
        "input_dtype": model.input_dtype.name,
        "input_scale": model.input_scale,
        "input_zero_point": model.input_zero_point,
        "output_shape": output_shape,
        "output_dtype": model.output_dtype.name,
        "output_scale": model.output_scale,
        "output_zero_point": model.output_zero_point,
        "dynamic_batch": model.dynamic_batch,
        "card": model.card is not None,
    }


def dequantize(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """``(q - zero_point) * scale`` as float32 (a float tensor is returned as float32)."""
    if q.dtype.kind == "f" or scale == 0.0:
        return q.astype(np.float32)
    return ((q.astype(np.float32) - np.float32(zero_point)) * np.float32(scale)).astype(np.float32)


class TFLiteModel:
    """A TFLite segmentation model with the kseg pixel contract.

    Args:
        path: the ``.tflite`` file; its card ``FILE.json`` is read when present.
        runtime: ``auto`` (LiteRT, then tflite-runtime, then tf.lite), or one of them by name.
        num_threads: interpreter threads (None: the interpreter default).
        delegate: ``None``/``"xnnpack"`` (default CPU), ``"none"`` (builtin kernels) or
            ``"external:/path/lib.so"`` (loaded for real).

    Example:
        >>> m = TFLiteModel("model_int8.tflite", num_threads=1)
        >>> prob = m.predict(pixels)      # (N, S, S, K) float32; whole images: kseg.inference
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        runtime: str = "auto",
        num_threads: int | None = None,
        delegate: str | None = None,
    ) -> None:
        self.path = check_tflite_file(path)
        self.card = read_card(self.path)
        self._backend: Backend = load_backend(runtime)
        self.backend = self._backend.name
        self.backend_version = self._backend.version
        self.num_threads = num_threads
        self.delegate = delegate
        kwargs = interpreter_kwargs(self._backend, delegate)
        if num_threads is not None:
            if int(num_threads) < 1:
                raise ConfigError(f"num_threads must be >= 1, got {num_threads}")
            kwargs["num_threads"] = int(num_threads)
        try:
            self.interpreter = self._backend.interpreter_cls(model_path=str(self.path), **kwargs)
            self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            msg = str(e).strip().splitlines()
            first = next((line for line in msg if line.strip()), type(e).__name__)
            raise ModelError(
                f"{self.path}: truncated or corrupt TFLite model, or an op this runtime lacks "
                f"({first.strip()}); export it again"
            ) from None
        inputs = self.interpreter.get_input_details()
        outputs = self.interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ModelError(
                f"{self.path}: expected 1 input and 1 output, found {len(inputs)} and {len(outputs)}"
            )
        self._in, self._out = inputs[0], outputs[0]
        shape = [int(d) for d in self._in["shape"]]
        if len(shape) != 4 or shape[1] != shape[2]:
            raise ModelError(
                f"{self.path}: input shape {shape} is not (N, S, S, C); not a kseg segmentation model"
            )
        sig = self._in.get("shape_signature")
        self.dynamic_batch = sig is not None and len(sig) > 0 and int(sig[0]) == -1
        self.input_size: int = shape[1]
        self.channels: int = shape[3]
        self.input_dtype: np.dtype = np.dtype(self._in["dtype"])
        self.output_dtype: np.dtype = np.dtype(self._out["dtype"])
        self.input_scale, self.input_zero_point = _qparams(self._in)
        self.output_scale, self.output_zero_point = _qparams(self._out)
        self.num_classes: int = int(self._out["shape"][-1])
        card_in = apply_card(self, self.card)
        norm = card_in.get("normalization") or {}
        self._external_norm: tuple[np.ndarray, np.ndarray] | None = None
        if norm.get("applied", "in_model") == "external":
            mean = np.asarray(norm.get("mean", [0.0]), np.float32)
            std = np.asarray(norm.get("std", [1.0]), np.float32)
            if np.any(std == 0):
                raise ModelError(
                    f"{self.path.with_suffix('.json')}: input.normalization.std has a zero"
                )
            self._external_norm = (mean, std)
        self._batch = shape[0]

    # ------------------------------------------------------------------ inference

    def preprocess(self, batch: np.ndarray) -> np.ndarray:
        """Raw pixels (N, S, S, C) in [0, 255] -> the input tensor (normalized if the card says
        ``external``, then quantized with the input scale and zero point).

        :meth:`predict` first applies the card's filter chain (``self.filters``), as training did.
        """
        x = np.asarray(batch, dtype=np.float32)
        if self._external_norm is not None:
            mean, std = self._external_norm
            x = (x / 255.0 - mean) / std
        return quantize(x, self.input_scale, self.input_zero_point, self.input_dtype)

    def invoke_raw(self, x: np.ndarray) -> np.ndarray:
        """Run one already-quantized input tensor and return the raw output tensor (a copy)."""
        if tuple(x.shape) != tuple(self._in["shape"]):
            self.interpreter.resize_tensor_input(self._in["index"], list(x.shape))
            self.interpreter.allocate_tensors()
            self._in = self.interpreter.get_input_details()[0]
            self._out = self.interpreter.get_output_details()[0]
        self.interpreter.set_tensor(self._in["index"], x)
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self._out["index"]).copy()

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Probabilities float32 ``(N, S, S, K)`` for raw pixels float32 ``(N, S, S, C)`` in [0, 255].

        A model with a fixed batch of 1 is run once per image.
        """
        batch = check_batch(self.path, batch, self.input_size, self.channels)
        x = self.preprocess(self.filters.apply_pixels(batch) if self.filters else batch)
        if self.dynamic_batch:
            raw = self.invoke_raw(x)
        else:
            raw = np.concatenate(
                [self.invoke_raw(x[i : i + self._batch]) for i in range(0, len(x), self._batch)]
            )
        return dequantize(raw, self.output_scale, self.output_zero_point)

    __call__ = predict

    def describe(self) -> dict[str, Any]:
        """Interpreter-level facts about the model (for reports and ``--json``)."""
        return describe_model(
            self,
            delegate=self.delegate or "xnnpack",
            input_shape=[int(d) for d in self._in["shape"]],
            output_shape=[int(d) for d in self._out["shape"]],
        )

    def __repr__(self) -> str:
        return (
            f"TFLiteModel({str(self.path)!r}, backend={self.backend!r}, input={self.input_size}x"
            f"{self.input_size}x{self.channels} {self.input_dtype.name}, classes={self.num_classes})"
        )
