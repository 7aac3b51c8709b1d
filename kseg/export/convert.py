"""Keras -> TFLite conversion in every mode kseg ships.

All modes trace the model with a fixed batch of 1: an unknown batch dimension leaves
SHAPE / PACK / STRIDED_SLICE ops around transposed convolutions, which NPUs reject.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

import numpy as np

from kseg._keras import keras, tf
from kseg.config import IODType, StrEnum
from kseg.errors import ModelError


class Mode(StrEnum):
    """TFLite variants. Each card says which one its file is."""

    FLOAT32 = "float32"  #: no quantization
    FP16 = "fp16"  #: float16 weights, float32 compute on CPU (GPU delegates run fp16)
    DYNAMIC = "dynamic"  #: int8 weights, float activations (dynamic-range quantization)
    INT8 = "int8"  #: full integer: int8 weights and activations, int8/uint8 input and output
    INT16X8 = "int16x8"  #: int8 weights, int16 activations, for accuracy-sensitive models


MODE_DESCRIPTIONS = {
    Mode.FLOAT32: "float32 weights and activations",
    Mode.FP16: "float16 weights (dequantized to float32 on CPU)",
    Mode.DYNAMIC: "dynamic-range: int8 weights, float32 activations; not for integer-only NPUs",
    Mode.INT8: "full-integer post-training quantization (or QAT) with int8 weights and activations",
    Mode.INT16X8: "int8 weights with int16 activations (16x8), float32 input and output",
}


def fixed_batch_function(model: keras.Model, batch: int = 1, input_dtype=None):
    """A concrete function of ``model`` with the batch dimension fixed (inference mode).

    ``input_dtype=tf.uint8`` takes uint8 pixels and casts them to float32 inside the graph (a
    builtin CAST), so a float model can be fed camera bytes directly.
    """
    shape = (batch, *model.input_shape[1:])
    if any(d is None for d in shape):
        raise ModelError(
            f"model input shape {model.input_shape} has an unknown spatial size; rebuild it with a fixed --img-size"
        )

    dtype = input_dtype or tf.float32

    @tf.function
    def serve(image):
        if dtype != tf.float32:
            image = tf.cast(image, tf.float32)
        return model(image, training=False)

    return serve.get_concrete_function(tf.TensorSpec(shape, dtype, name="image"))


@contextlib.contextmanager
def quiet_converter() -> Iterator[None]:
    """Silence the converter's own log lines (TF/absl Python loggers, and the native MLIR
    converter, which writes lines such as ``fully_quantize: 0, ...`` straight to file descriptor
    2). Errors still arrive as exceptions; ``KSEG_VERBOSE=1`` keeps everything."""
    import logging

    if os.environ.get("KSEG_VERBOSE"):
        yield
        return
    loggers = [logging.getLogger(n) for n in ("tensorflow", "absl", "h5py")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def convert_model(
    model: keras.Model,
    mode: Mode | str = Mode.FLOAT32,
    *,
    representative: np.ndarray | None = None,
    io_dtype: IODType | str = IODType.INT8,
) -> bytes:
    """Convert a Keras model (float, QAT or pruned) to a ``.tflite`` flatbuffer.

    Args:
        model: takes raw pixels (N, S, S, C) in [0, 255] (see docs/ARCHITECTURE.md).
        mode: a :class:`Mode`.
        representative: calibration images (N, S, S, C) in pixel units for ``int8`` and ``int16x8``.
        io_dtype: ``int8`` or ``uint8`` input and output for ``int8``; for the float modes
            (``float32``, ``fp16``, ``dynamic``, ``int16x8``) ``uint8`` means a uint8 input cast to
            float32 inside the graph (float output), ``int8`` leaves the float32 input.
    """
    mode = Mode(mode)
    io_dtype = IODType(io_dtype)
    cast_uint8 = mode is not Mode.INT8 and io_dtype is IODType.UINT8
    fn = fixed_batch_function(model, input_dtype=tf.uint8 if cast_uint8 else None)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([fn], model)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if mode is Mode.FP16:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif mode is Mode.DYNAMIC:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif mode in (Mode.INT8, Mode.INT16X8):
        if representative is None or len(representative) == 0:
            raise ModelError(
                f"{mode} conversion needs calibration images; give --data or train in a run directory"
            )
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = _representative(representative)
        if mode is Mode.INT8:
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            dtype = tf.int8 if io_dtype is IODType.INT8 else tf.uint8
            converter.inference_input_type = dtype
            converter.inference_output_type = dtype
        else:
            converter.target_spec.supported_ops = [
                tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
            ]
    try:
        return converter.convert()
    except Exception as exc:  # the converter raises many types with multi-line messages
        first = next(
            (ln for ln in str(exc).splitlines() if "error" in ln.lower()),
            str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
        )
        raise ModelError(f"TFLite {mode} conversion failed: {first.strip()[:300]}") from None


def _representative(images: np.ndarray) -> callable:
    def gen() -> Iterator[list[np.ndarray]]:
        for img in images:
            yield [np.asarray(img, np.float32)[None]]

    return gen
