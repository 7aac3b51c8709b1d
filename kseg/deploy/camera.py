"""The model a camera frame can be fed to: RGB pixels in, per-class confidence out.

Android camera and MediaPipe Tasks hand over RGB(A) bytes; MediaPipe's ``ImageSegmenter`` refuses
a 1-channel input. A grayscale kseg model is therefore wrapped with its RGB -> gray step inside
the graph, before the model's own in-model normalization (ITU-R BT.601 luma weights, the ones
OpenCV's ``COLOR_RGB2GRAY`` uses, as a fixed 1x1 convolution: a builtin op every runtime and NPU
runs). An RGB model is used as it is.
"""

from __future__ import annotations

import numpy as np

from kseg._keras import keras
from kseg.errors import ModelError

#: ITU-R BT.601 luma (OpenCV's RGB2GRAY): gray = 0.299 R + 0.587 G + 0.114 B
RGB_TO_GRAY = (0.299, 0.587, 0.114)


def check_exportable(model: keras.Model, name: str) -> None:
    """One clear line for a model that cannot become a camera segmentation bundle."""
    from kseg.models import model_spec

    if len(model.outputs) != 1:
        raise ModelError(
            f"{name}: {len(model.outputs)} outputs (deep-supervision heads?); a bundle needs one "
            "segmentation output: rebuild the model with deep_supervision off and load its weights"
        )
    if len(model.inputs) != 1:
        raise ModelError(f"{name}: {len(model.inputs)} inputs; a bundle needs one image input")
    spec = model_spec(model)
    if spec.get("task", "segment") != "segment":
        raise ModelError(
            f"{name}: a {spec.get('task')} model ({spec.get('name')}) outputs an image, not class "
            "confidences; only segmentation models can be exported for Android"
        )
    shape = model.input_shape
    if len(shape) != 4 or shape[1] is None or shape[1] != shape[2] or shape[3] not in (1, 3):
        raise ModelError(
            f"{name}: input shape {shape} is not (N, S, S, 1|3) with a fixed size; "
            "rebuild it with a fixed --img-size"
        )


def camera_model(model: keras.Model) -> keras.Model:
    """``model`` taking RGB pixels ``(N, S, S, 3)`` float in [0, 255] (a gray model gets its
    RGB -> gray 1x1 convolution in front); an RGB model is returned unchanged."""
    if int(model.input_shape[3]) == 3:
        return model
    size = int(model.input_shape[1])
    rgb = keras.Input((size, size, 3), name="image")
    to_gray = keras.layers.Conv2D(1, 1, use_bias=False, trainable=False, name="rgb_to_gray")
    gray = to_gray(rgb)
    to_gray.set_weights([np.asarray(RGB_TO_GRAY, np.float32).reshape(1, 1, 3, 1)])
    return keras.Model(rgb, model(gray), name=f"{model.name}_rgb")


def gray_to_rgb(images: np.ndarray) -> np.ndarray:
    """(N, S, S, 1) -> (N, S, S, 3) by repetition; gray pixels survive RGB -> gray unchanged
    because the BT.601 weights sum to 1."""
    return np.repeat(images, 3, axis=-1) if images.shape[-1] == 1 else images
