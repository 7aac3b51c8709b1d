"""The few custom Keras layers of the model zoo.

Everything else in ``kseg.models`` is built from builtin Keras layers so that tfmot QAT and the
TFLite converter know it. Each layer here is small, registered as serializable under the
``kseg`` package (``kseg>GroupNorm`` ...) and listed in :func:`kseg.models.custom_objects`.

- :class:`Normalize`: the model's first layer, a ``Rescaling`` that also carries the kseg model
  spec (registry name, options, mean, std, classes) so a loaded model can describe itself.
- :class:`GroupNorm`: group normalization written with MEAN/MUL/RSQRT so that the INT8 graph stays
  all-integer (Keras' ``GroupNormalization`` leaves a float SQUARE island).
- :class:`MaxUnpool2D`: SegNet unpooling from a "was this the max" mask (EQUAL + SELECT_V2),
  builtin TFLite ops only.
"""

from __future__ import annotations

import json
from typing import Any

from kseg._keras import keras, tf

_PACKAGE = "kseg"


@keras.saving.register_keras_serializable(package=_PACKAGE)
class Normalize(keras.layers.Rescaling):
    """``(pixel/255 - mean) / std`` as the model's first layer, plus the kseg model spec.

    A plain ``keras.layers.Rescaling`` (``scale = 1/(255*std)``, ``offset = -mean/std``, per
    channel) whose config also holds ``spec``: a JSON-safe dict written by
    :func:`kseg.models.create_model` and read back by :func:`kseg.models.model_spec`.

    Args:
        scale: per-channel multiplier (list) or one number.
        offset: per-channel offset (list) or one number.
        spec: ``{"name", "options", "num_classes", "mean", "std", "input_shape", "task"}``.
    """

    def __init__(self, scale: Any, offset: Any = 0.0, spec: dict[str, Any] | None = None, **kwargs):
        super().__init__(scale=scale, offset=offset, **kwargs)
        # Kept as a JSON string: a dict attribute would be wrapped by Keras' attribute tracking.
        self._spec_json = json.dumps(_plain(spec or {}), sort_keys=True)

    @property
    def spec(self) -> dict[str, Any]:
        return json.loads(self._spec_json)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config["scale"] = _plain(config["scale"])
        config["offset"] = _plain(config["offset"])
        config["spec"] = self.spec
        return config


def _plain(value: Any) -> Any:
    """Plain JSON types from Keras' tracked ListWrapper/DictWrapper and numpy scalars."""
    if isinstance(value, dict) or hasattr(value, "items"):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)) or (
        hasattr(value, "__iter__") and not isinstance(value, str)
    ):
        return [_plain(v) for v in value]
    if hasattr(value, "item"):
        return value.item()
    return value


@keras.saving.register_keras_serializable(package=_PACKAGE)
class GroupNorm(keras.layers.Layer):
    """Group normalization that quantizes to an all-INT8 TFLite graph.

    The channels are split into ``groups``; each group is normalized over (H, W, channels of the
    group) with its own mean and variance, then scaled per channel by ``gamma`` and shifted by
    ``beta``. The variance is ``mean(d * d)`` with ``d = x - mean`` (MUL, not SQUARE) on a 4-D
    reshape ``(N, H*W, G, C/G)``, which TFLite quantizes to int8 MEAN/SUB/MUL/RSQRT.
    ``groups = channels`` is instance normalization; ``groups = 1`` is layer normalization.

    Args:
        groups: number of groups; must divide the number of channels.
        epsilon: added to the variance.

    Reference:
        Wu and He, "Group Normalization", ECCV 2018. https://arxiv.org/abs/1803.08494
    """

    def __init__(self, groups: int = 8, epsilon: float = 1e-5, **kwargs):
        super().__init__(**kwargs)
        self.groups = int(groups)
        self.epsilon = float(epsilon)

    def build(self, input_shape):
        channels = int(input_shape[-1])
        if channels % self.groups:
            raise ValueError(
                f"{self.name}: {channels} channels cannot be split into {self.groups} groups"
            )
        self.gamma = self.add_weight(name="gamma", shape=(channels,), initializer="ones")
        self.beta = self.add_weight(name="beta", shape=(channels,), initializer="zeros")
        super().build(input_shape)

    def call(self, x):
        # Static H, W, C: a dynamic tf.shape would leave SHAPE/PACK ops in the TFLite graph.
        h, w, c = (int(d) for d in x.shape[1:])
        g = self.groups
        xr = tf.reshape(x, [-1, h * w, g, c // g])
        mean = tf.reduce_mean(xr, axis=[1, 3], keepdims=True)
        d = xr - mean
        var = tf.reduce_mean(d * d, axis=[1, 3], keepdims=True)
        y = tf.reshape(d * tf.math.rsqrt(var + self.epsilon), [-1, h, w, c])
        return y * self.gamma + self.beta

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(groups=self.groups, epsilon=self.epsilon)
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class MaxUnpool2D(keras.layers.Layer):
    """SegNet 2x2 max-unpooling with builtin TFLite ops only.

    Inputs ``[x, pooled, y]``: ``x`` the encoder features before 2x2 max-pooling, ``pooled`` the
    pooled features, ``y`` the decoder features at the pooled resolution (same channels as ``x``).
    Output: ``y`` placed at the positions of each 2x2 window that held the maximum of ``x``, zero
    elsewhere. Instead of argmax indices (which TFLite cannot quantize) the positions come from
    ``x == nearest_upsample(pooled)``; ties (e.g. several zeros after a ReLU) keep every tied
    position. In an INT8 graph MAX_POOL_2D and RESIZE_NEAREST_NEIGHBOR keep the input's
    quantization, so the comparison is exact there too.

    Reference:
        Badrinarayanan, Kendall and Cipolla, "SegNet: A Deep Convolutional Encoder-Decoder
        Architecture for Image Segmentation", TPAMI 2017. https://arxiv.org/abs/1511.00561
    """

    def call(self, inputs):
        x, pooled, y = inputs
        size = [int(x.shape[1]), int(x.shape[2])]
        up_pooled = tf.image.resize(pooled, size, method="nearest")
        up_y = tf.image.resize(y, size, method="nearest")
        return tf.where(tf.equal(x, up_pooled), up_y, tf.zeros((), dtype=up_y.dtype))

    def compute_output_shape(self, input_shapes):
        x_shape, _, y_shape = input_shapes
        return tuple(x_shape[:-1]) + (y_shape[-1],)


def custom_layers() -> dict[str, type]:
    """The kseg layer classes by registered name and by class name."""
    out: dict[str, type] = {}
    for cls in (Normalize, GroupNorm, MaxUnpool2D):
        out[cls.__name__] = cls
        out[f"{_PACKAGE}>{cls.__name__}"] = cls
    return out
