"""TFLite helpers for the optimize steps, over the project's single implementations.

Conversion is :func:`kseg.export.convert_model`, graph checks are :mod:`kseg.bench.analyze`,
inference is :class:`kseg.runtime.TFLiteModel`; only the weight-sparsity count lives here.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from kseg._keras import keras, tf
from kseg.export.card import gzip_size
from kseg.export.convert import Mode, convert_model


def convert_int8(model: keras.Model, images: np.ndarray, *, limit: int = 64) -> bytes:
    """Full-integer TFLite (int8 in/out, batch 1) calibrated on ``images`` (pixels)."""
    return convert_model(model, Mode.INT8, representative=np.asarray(images)[:limit])


def convert_float(model: keras.Model) -> bytes:
    return convert_model(model, Mode.FLOAT32)


def _analyze(tflite_bytes: bytes):
    from kseg.bench.analyze import analyze_model

    return analyze_model("<memory>.tflite", data=tflite_bytes)


def float_ops(tflite_bytes: bytes) -> list[str]:
    """``"index:OP"`` for each op computing in float; empty = all integer."""
    return [f"{op.index}:{op.name}" for op in _analyze(tflite_bytes).float_ops]


def io_dtypes(tflite_bytes: bytes) -> tuple[str, str]:
    info = _analyze(tflite_bytes)
    return info.inputs[0].dtype, info.outputs[0].dtype


def _interpreter(tflite_bytes: bytes) -> Any:
    interp = tf.lite.Interpreter(model_content=tflite_bytes)
    interp.allocate_tensors()
    return interp


def _filter_weights(tflite_bytes: bytes) -> list[tuple[str, np.ndarray]]:
    """``(tensor name, values)`` of the filters of CONV_2D / DEPTHWISE / TRANSPOSE_CONV / FC ops."""
    interp = _interpreter(tflite_bytes)
    tensors = {t["index"]: t for t in interp.get_tensor_details()}
    filter_input = {"CONV_2D": 1, "DEPTHWISE_CONV_2D": 1, "FULLY_CONNECTED": 1, "TRANSPOSE_CONV": 1}
    out = []
    for op in interp._get_ops_details():  # noqa: SLF001
        pos = filter_input.get(op["op_name"])
        if pos is None:
            continue
        idx = op["inputs"][pos]
        w = interp.get_tensor(idx)
        if w.ndim >= 2:
            out.append((tensors[idx]["name"], w))
    return out


def tflite_weight_sparsity(tflite_bytes: bytes) -> dict[str, Any]:
    """Share of zero weights in the filters of CONV_2D / DEPTHWISE / TRANSPOSE_CONV / FC ops.

    Quantized weights are symmetric (zero point 0), so a pruned float zero stays an int8 zero.
    """
    per_op: dict[str, float] = {}
    zeros = total = 0
    for name, w in _filter_weights(tflite_bytes):
        z = int(np.count_nonzero(w == 0))
        per_op[name] = z / w.size
        zeros += z
        total += w.size
    return {"overall": zeros / total if total else 0.0, "per_tensor": per_op, "weights": total}


def tflite_weight_entropy(tflite_bytes: bytes) -> dict[str, float]:
    """Order-0 entropy of the filter values (bits per weight, one histogram over all filters)
    and the bytes an ideal coder of independent values would need: the floor for gzip's
    Huffman stage on the weights (its LZ77 stage only gains on repeated runs)."""
    values = [w.ravel() for _, w in _filter_weights(tflite_bytes)]
    if not values:
        return {"bits_per_weight": 0.0, "ideal_bytes": 0.0, "weights": 0}
    flat = np.concatenate(values)
    _, counts = np.unique(flat, return_counts=True)
    p = counts / counts.sum()
    bits = float(-(p * np.log2(p)).sum())
    return {"bits_per_weight": bits, "ideal_bytes": bits * flat.size / 8, "weights": int(flat.size)}


def tflite_predict(tflite_bytes: bytes, images: np.ndarray) -> np.ndarray:
    """Probabilities (float32) from a TFLite model for pixel images, through the kseg runtime."""
    from kseg.runtime import open_model

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.tflite"
        path.write_bytes(tflite_bytes)
        return open_model(path).predict(np.asarray(images, np.float32))


__all__ = [
    "convert_float",
    "convert_int8",
    "float_ops",
    "gzip_size",
    "io_dtypes",
    "tflite_predict",
    "tflite_weight_entropy",
    "tflite_weight_sparsity",
]
