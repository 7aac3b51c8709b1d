"""Tiny models and an INT8 conversion helper for the optimize tests.

The stand-in ``_TestGroupNorm`` mirrors the zoo's custom group normalization (variance as the
MEAN of d*d) so the QAT configs are exercised on a custom serializable layer.
"""

from __future__ import annotations

import numpy as np

from kseg._keras import keras, tf

L = keras.layers


@keras.utils.register_keras_serializable(package="kseg_tests")
class _TestGroupNorm(L.Layer):
    def __init__(self, groups: int = 2, epsilon: float = 1e-5, **kwargs):
        super().__init__(**kwargs)
        self.groups = groups
        self.epsilon = epsilon

    def build(self, input_shape):
        c = int(input_shape[-1])
        self.gamma = self.add_weight(name="gamma", shape=(c,), initializer="ones")
        self.beta = self.add_weight(name="beta", shape=(c,), initializer="zeros")

    def call(self, x):
        shape = tf.shape(x)
        c = x.shape[-1]
        g = tf.reshape(x, [shape[0], shape[1], shape[2], self.groups, c // self.groups])
        mean = tf.reduce_mean(g, axis=[1, 2, 4], keepdims=True)
        d = g - mean
        var = tf.reduce_mean(d * d, axis=[1, 2, 4], keepdims=True)
        g = d * tf.math.rsqrt(var + self.epsilon)
        return tf.reshape(g, shape) * self.gamma + self.beta

    def get_config(self):
        return {**super().get_config(), "groups": self.groups, "epsilon": self.epsilon}


def _block(x, f, name, norm):
    x = L.Conv2D(f, 3, padding="same", use_bias=norm == "none", name=f"{name}_conv")(x)
    if norm == "batch":
        x = L.BatchNormalization(name=f"{name}_bn")(x)
    elif norm == "group":
        x = _TestGroupNorm(2, name=f"{name}_gn")(x)
    return L.ReLU(name=f"{name}_relu")(x)


def tiny_unet(
    size: int = 32, filters: int = 4, *, attention: bool = False, norm: str = "batch", seed: int = 0
):
    """Depth-2 U-Net: Rescaling, conv blocks, (attention gates with Multiply), 1x1 sigmoid head."""
    keras.utils.set_random_seed(seed)
    inp = L.Input((size, size, 1), name="image")
    x = L.Rescaling(1 / 255.0, name="normalize")(inp)
    x = L.Conv2D(filters, 3, padding="same", name="stem_conv")(x)
    e1 = _block(x, filters, "enc1", norm)
    x = L.MaxPooling2D(name="enc1_pool")(e1)
    e2 = _block(x, filters * 2, "enc2", norm)
    x = L.MaxPooling2D(name="enc2_pool")(e2)
    b = _block(x, filters * 4, "bottleneck", norm)
    skips = [e2, e1]
    x = b
    for i, skip in enumerate(skips):
        x = L.Conv2DTranspose(skip.shape[-1], 2, strides=2, name=f"dec{i}_up")(x)
        if attention:
            g = L.Conv2D(skip.shape[-1], 1, name=f"dec{i}_att_g")(x)
            s = L.Conv2D(skip.shape[-1], 1, name=f"dec{i}_att_x")(skip)
            a = L.Activation("relu", name=f"dec{i}_att_relu")(L.Add(name=f"dec{i}_att_add")([g, s]))
            a = L.Conv2D(1, 1, activation="sigmoid", name=f"dec{i}_att_psi")(a)
            skip = L.Multiply(name=f"dec{i}_att_mul")([skip, a])
        x = L.Concatenate(name=f"dec{i}_cat")([x, skip])
        x = _block(x, skip.shape[-1], f"dec{i}", norm)
    out = L.Conv2D(1, 1, activation="sigmoid", name="head")(x)
    return keras.Model(inp, out, name="tiny_attention_unet" if attention else "tiny_unet")


def blobs(n: int = 16, size: int = 32, seed: int = 0):
    """Bright discs on speckle: images float32 in [0, 255] (N,S,S,1), masks {0,1} (N,S,S,1)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    images = np.empty((n, size, size, 1), np.float32)
    masks = np.empty((n, size, size, 1), np.float32)
    for i in range(n):
        cy, cx = rng.uniform(size * 0.3, size * 0.7, 2)
        r = rng.uniform(size * 0.12, size * 0.25)
        m = ((yy - cy) ** 2 + (xx - cx) ** 2) < r * r
        img = 60 + 120 * m + rng.normal(0, 20, (size, size))
        images[i, ..., 0] = np.clip(img, 0, 255)
        masks[i, ..., 0] = m
    return images, masks


def to_int8_tflite(model, images: np.ndarray) -> bytes:
    """Full-integer conversion with int8 input and output (batch 1), for tests only."""
    from kseg.optimize._convert import convert_int8

    return convert_int8(model, images)


def float_ops(tflite_bytes: bytes) -> list[str]:
    """Ops with a float32 input or output tensor (ignoring none): empty for a fully integer graph."""
    from kseg.optimize._convert import float_ops as _float_ops

    return _float_ops(tflite_bytes)
