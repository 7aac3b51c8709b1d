"""TFLite helpers used by the optimize steps: INT8 conversion, graph checks, size, sparsity.

``convert_int8`` prefers the lead's ``kseg.export.convert_model`` when it exists (so the
conversion, parity gate and model card are the project's one implementation) and otherwise
converts here with the same settings: full-integer, batch 1, int8 input and output.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from typing import Any

import numpy as np

from kseg._keras import keras, tf


def representative(images: np.ndarray, limit: int = 64) -> Any:
    def gen() -> Iterator[list[np.ndarray]]:
        for img in images[:limit]:
            yield [np.asarray(img, np.float32)[None]]

    return gen


def _batch1(model: keras.Model) -> Any:
    shape = (1, *model.input_shape[1:])

    @tf.function(input_signature=[tf.TensorSpec(shape, tf.float32)])
    def serve(x: tf.Tensor) -> tf.Tensor:
        return model(x, training=False)

    return serve.get_concrete_function()


def convert_int8(model: keras.Model, images: np.ndarray, *, limit: int = 64) -> bytes:
    """Full-integer TFLite (int8 in/out, batch 1) calibrated on ``images`` (float32 pixels)."""
    converter = tf.lite.TFLiteConverter.from_concrete_functions([_batch1(model)], model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative(images, limit)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    return converter.convert()


def convert_float(model: keras.Model) -> bytes:
    converter = tf.lite.TFLiteConverter.from_concrete_functions([_batch1(model)], model)
    return converter.convert()


def _interpreter(tflite_bytes: bytes) -> Any:
    interp = tf.lite.Interpreter(model_content=tflite_bytes)
    interp.allocate_tensors()
    return interp


def float_ops(tflite_bytes: bytes) -> list[str]:
    """``"OP(tensor)"`` for each op that reads or writes a float32 tensor; empty = all integer."""
    interp = _interpreter(tflite_bytes)
    tensors = {t["index"]: t for t in interp.get_tensor_details()}
    bad = []
    for op in interp._get_ops_details():  # noqa: SLF001 - the only per-op view the interpreter has
        for idx in list(op["inputs"]) + list(op["outputs"]):
            if idx >= 0 and idx in tensors and tensors[idx]["dtype"] == np.float32:
                bad.append(f"{op['op_name']}({tensors[idx]['name']})")
                break
    return bad


def io_dtypes(tflite_bytes: bytes) -> tuple[str, str]:
    interp = _interpreter(tflite_bytes)
    return (
        np.dtype(interp.get_input_details()[0]["dtype"]).name,
        np.dtype(interp.get_output_details()[0]["dtype"]).name,
    )


def gzip_size(data: bytes) -> int:
    return len(gzip.compress(data, compresslevel=9))


def tflite_weight_sparsity(tflite_bytes: bytes) -> dict[str, Any]:
    """Share of zero weights in the filters of CONV_2D / DEPTHWISE / TRANSPOSE_CONV / FC ops.

    Quantized weights are symmetric (zero point 0), so a pruned float zero stays an int8 zero.
    """
    interp = _interpreter(tflite_bytes)
    tensors = {t["index"]: t for t in interp.get_tensor_details()}
    filter_input = {"CONV_2D": 1, "DEPTHWISE_CONV_2D": 1, "FULLY_CONNECTED": 1, "TRANSPOSE_CONV": 1}
    per_op: dict[str, float] = {}
    zeros = total = 0
    for op in interp._get_ops_details():  # noqa: SLF001
        pos = filter_input.get(op["op_name"])
        if pos is None:
            continue
        idx = op["inputs"][pos]
        w = interp.get_tensor(idx)
        if w.ndim < 2:
            continue
        z = int(np.count_nonzero(w == 0))
        per_op[tensors[idx]["name"]] = z / w.size
        zeros += z
        total += w.size
    return {"overall": zeros / total if total else 0.0, "per_tensor": per_op, "weights": total}


def tflite_predict(tflite_bytes: bytes, images: np.ndarray) -> np.ndarray:
    """Probabilities (float32) from a TFLite model for float32 pixel images, one at a time."""
    interp = _interpreter(tflite_bytes)
    inp = interp.get_input_details()[0]
    out = interp.get_output_details()[0]
    preds = []
    for img in images:
        x = np.asarray(img, np.float32)[None]
        if inp["dtype"] != np.float32:
            scale, zp = inp["quantization"]
            info = np.iinfo(inp["dtype"])
            x = np.clip(np.round(x / scale + zp), info.min, info.max).astype(inp["dtype"])
        interp.set_tensor(inp["index"], x)
        interp.invoke()
        y = interp.get_tensor(out["index"])
        if out["dtype"] != np.float32:
            scale, zp = out["quantization"]
            y = (y.astype(np.float32) - zp) * scale
        preds.append(y[0])
    return np.stack(preds)
