"""Tiny Keras segmentation models converted to .tflite for runtime and bench tests.

Tests may import TensorFlow to build these; the runtime under test never does. Files are written
once per session into a shared folder (both tests/runtime and tests/bench use them).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

SIZE = 32


def _build(batch: int | None, channels: int = 1):
    from kseg._keras import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((SIZE, SIZE, channels), batch_size=batch)
    x = keras.layers.Rescaling(1.0 / 127.5, offset=-1.0)(inp)  # normalization inside the model
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    skip = x
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(x)
    x = keras.layers.Conv2DTranspose(8, 2, strides=2, padding="same")(x)
    x = keras.layers.Concatenate()([x, skip])
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    # a wide logit spread, like a trained model: few pixels sit on the 0.5 threshold, where one
    # int8 rounding step between two interpreter builds would flip the mask
    head_init = keras.initializers.RandomNormal(stddev=3.0, seed=1)
    out = keras.layers.Conv2D(1, 1, activation="sigmoid", kernel_initializer=head_init)(x)
    return keras.Model(inp, out)


def _representative(channels: int = 1):
    rng = np.random.default_rng(0)
    for _ in range(16):
        yield [rng.uniform(0, 255, (1, SIZE, SIZE, channels)).astype(np.float32)]


def _convert(model, *, int8: bool) -> bytes:
    from kseg._keras import tf

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    if int8:
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = _representative
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
    return conv.convert()


def _card(path: Path, interp_details: tuple[dict, dict], mode: str) -> None:
    inp, out = interp_details
    card = {
        "format": "kseg-model-card/1",
        "tflite": {"path": path.name, "mode": mode, "size_bytes": path.stat().st_size},
        "input": {
            "shape": [int(d) for d in inp["shape"]],
            "dtype": np.dtype(inp["dtype"]).name,
            "scale": float(inp["quantization"][0]),
            "zero_point": int(inp["quantization"][1]),
            "pixel_range": [0, 255],
            "normalization": {"mean": [0.5], "std": [0.5], "applied": "in_model"},
            "resize": "stretch",
            "channels": int(inp["shape"][-1]),
        },
        "output": {
            "shape": [int(d) for d in out["shape"]],
            "dtype": np.dtype(out["dtype"]).name,
            "scale": float(out["quantization"][0]),
            "zero_point": int(out["quantization"][1]),
            "activation": "sigmoid",
            "threshold": 0.5,
        },
        "float_dice": 0.80,
        "tflite_dice": 0.79 if mode == "int8" else 0.80,
        "size_bytes": path.stat().st_size,
    }
    path.with_suffix(".json").write_text(json.dumps(card))


def build_all(folder: Path) -> dict[str, Path]:
    """float32, int8 (batch 1) and int8 with an unknown batch; each with a card except the last."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {
        "float": folder / "tiny_float.tflite",
        "int8": folder / "tiny_int8.tflite",
        "int8_dynamic": folder / "tiny_int8_dynbatch.tflite",
    }
    if all(p.is_file() for p in paths.values()):
        return paths
    from ai_edge_litert.interpreter import Interpreter

    fixed = _build(batch=1)
    paths["float"].write_bytes(_convert(fixed, int8=False))
    paths["int8"].write_bytes(_convert(fixed, int8=True))
    paths["int8_dynamic"].write_bytes(_convert(_build(batch=None), int8=True))
    for key, mode in (("float", "float32"), ("int8", "int8")):
        it = Interpreter(model_path=str(paths[key]))
        _card(paths[key], (it.get_input_details()[0], it.get_output_details()[0]), mode)
    return paths


#: class names of :func:`build_multiclass`'s model (index = class id), as its card records them
MULTICLASS_NAMES = ["background", "nerve", "vessel"]


def _build_multiclass():
    """A 3-class softmax model with fixed weights: after a 5x5 mean, bright pixels (> 0.45 of full
    scale) are class 1, dark ones (< 0.34) class 2, the rest background. Deterministic, so a
    test knows which class a region gets (the service tests' speckle frame has all three)."""
    from kseg._keras import keras

    inp = keras.Input((SIZE, SIZE, 1), batch_size=1)
    x = keras.layers.Rescaling(1.0 / 255.0)(inp)
    mean = keras.layers.Conv2D(1, 5, padding="same", use_bias=False, name="mean5")
    x = mean(x)
    head = keras.layers.Conv2D(3, 1, activation="softmax", name="classes")
    out = head(x)
    model = keras.Model(inp, out)
    mean.set_weights([np.full((5, 5, 1, 1), 1 / 25, np.float32)])
    head.set_weights(
        [np.array([[[[0.0, 100.0, -100.0]]]], np.float32), np.array([0.0, -45.0, 34.0], np.float32)]
    )
    return model


def build_multiclass(folder: Path) -> Path:
    """``tiny_3class.tflite`` (float32, 32x32x1 -> 3 classes) with a card whose ``output.classes``
    names the classes (:data:`MULTICLASS_NAMES`)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "tiny_3class.tflite"
    if path.is_file() and path.with_suffix(".json").is_file():
        return path
    from ai_edge_litert.interpreter import Interpreter

    path.write_bytes(_convert(_build_multiclass(), int8=False))
    it = Interpreter(model_path=str(path))
    _card(path, (it.get_input_details()[0], it.get_output_details()[0]), "float32")
    card = json.loads(path.with_suffix(".json").read_text())
    card["input"]["normalization"] = {"mean": [0.0], "std": [1.0], "applied": "in_model"}
    card["output"].update(activation="softmax", classes=MULTICLASS_NAMES)
    path.with_suffix(".json").write_text(json.dumps(card))
    return path
