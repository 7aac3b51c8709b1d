"""GAN networks: DCGAN generator/discriminator and pix2pix U-Net generator / PatchGAN.

Images live in ``[-1, 1]`` (``tanh`` output), masks in ``{-1, 1}``. Stabilisations that matter on
speckled ultrasound (and that the DCGAN paper lists):

* no normalisation at the generator's output layer nor on the discriminator's input layer
  (batch statistics of raw speckle make the discriminator key on batch composition);
* LeakyReLU (slope 0.2) everywhere in the discriminators, ReLU in the generators;
* strided convolutions instead of pooling, ``tanh`` output;
* a lighter discriminator (half the generator's width), so it does not win at once;
* one-sided label smoothing (real target 0.9) lives in :mod:`kseg.gan.losses`.

References:
    A. Radford, L. Metz, S. Chintala, "Unsupervised Representation Learning with Deep
    Convolutional Generative Adversarial Networks", ICLR 2016 (DCGAN).
    P. Isola, J.-Y. Zhu, T. Zhou, A. A. Efros, "Image-to-Image Translation with Conditional
    Adversarial Networks", CVPR 2017 (pix2pix: U-Net generator, PatchGAN, adversarial + L1).
    T. Salimans et al., "Improved Techniques for Training GANs", NeurIPS 2016 (one-sided label
    smoothing).
"""

from __future__ import annotations

import math

from kseg._keras import keras
from kseg.errors import ConfigError

_INIT = {"class_name": "RandomNormal", "config": {"mean": 0.0, "stddev": 0.02}}  # DCGAN init


def check_size(size: int, *, allowed: tuple[int, ...] | None = None) -> int:
    """``size`` must be a power of two >= 16 (and in ``allowed`` when given)."""
    size = int(size)
    ok = size >= 16 and size & (size - 1) == 0
    if not ok or (allowed is not None and size not in allowed):
        valid = ", ".join(map(str, allowed)) if allowed else "a power of two >= 16"
        raise ConfigError(f"--size {size} is not supported; use {valid}")
    return size


def _init():
    return keras.initializers.get(dict(_INIT))


def dcgan_generator(size: int = 64, latent_dim: int = 100, filters: int = 32) -> keras.Model:
    """DCGAN generator: ``z (latent_dim,)`` -> image ``(size, size, 1)`` in ``[-1, 1]``.

    A dense projection to 4x4, then ``log2(size/4)`` transposed convolutions (stride 2) with
    BatchNorm + ReLU, the last one with ``tanh`` and no normalisation.
    """
    size = check_size(size)
    n_up = int(math.log2(size // 4))
    width = filters * 2 ** (n_up - 1)
    z = keras.Input((latent_dim,), name="z")
    x = keras.layers.Dense(4 * 4 * width, use_bias=False, kernel_initializer=_init())(z)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Reshape((4, 4, width))(x)
    for i in range(n_up - 1):
        width = max(filters, width // 2)
        x = keras.layers.Conv2DTranspose(
            width, 4, 2, "same", use_bias=False, kernel_initializer=_init(), name=f"up{i}"
        )(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.ReLU()(x)
    out = keras.layers.Conv2DTranspose(
        1, 4, 2, "same", activation="tanh", kernel_initializer=_init(), name="image"
    )(x)
    return keras.Model(z, out, name="dcgan_generator")


def dcgan_discriminator(size: int = 64, filters: int = 16) -> keras.Model:
    """DCGAN discriminator: image -> one logit. First conv has no normalisation."""
    size = check_size(size)
    img = keras.Input((size, size, 1), name="image")
    x = keras.layers.Conv2D(filters, 4, 2, "same", kernel_initializer=_init(), name="in_conv")(img)
    x = keras.layers.LeakyReLU(0.2)(x)
    width, s = filters, size // 2
    while s > 4:
        width *= 2
        x = keras.layers.Conv2D(width, 4, 2, "same", use_bias=False, kernel_initializer=_init())(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.LeakyReLU(0.2)(x)
        s //= 2
    x = keras.layers.Flatten()(x)
    out = keras.layers.Dense(1, kernel_initializer=_init(), name="logit")(x)
    return keras.Model(img, out, name="dcgan_discriminator")


def pix2pix_generator(size: int = 64, filters: int = 32, dropout: float = 0.5) -> keras.Model:
    """U-Net generator: mask ``(size, size, 1)`` in ``{-1, 1}`` -> image in ``[-1, 1]``.

    Encoder down to 4x4 (conv stride 2, BatchNorm except the first, LeakyReLU), decoder with
    transposed convs, skip connections, dropout in the two deepest decoder blocks (the only noise
    source, as in pix2pix), ``tanh`` output without normalisation.
    """
    size = check_size(size)
    depth = int(math.log2(size // 4))
    mask = keras.Input((size, size, 1), name="mask")
    skips, x = [], mask
    for i in range(depth):
        w = filters * min(2**i, 8)
        x = keras.layers.Conv2D(
            w, 4, 2, "same", use_bias=i == 0, kernel_initializer=_init(), name=f"down{i}"
        )(x)
        if i > 0:
            x = keras.layers.BatchNormalization()(x)
        x = keras.layers.LeakyReLU(0.2)(x)
        skips.append(x)
    for i in reversed(range(depth - 1)):
        w = filters * min(2**i, 8)
        x = keras.layers.Conv2DTranspose(
            w, 4, 2, "same", use_bias=False, kernel_initializer=_init(), name=f"up{i}"
        )(x)
        x = keras.layers.BatchNormalization()(x)
        if i >= depth - 3 and dropout > 0:
            x = keras.layers.Dropout(dropout)(x)
        x = keras.layers.ReLU()(x)
        x = keras.layers.Concatenate()([x, skips[i]])
    out = keras.layers.Conv2DTranspose(
        1, 4, 2, "same", activation="tanh", kernel_initializer=_init(), name="image"
    )(x)
    return keras.Model(mask, out, name="pix2pix_generator")


def patchgan_discriminator(size: int = 64, filters: int = 16, n_layers: int = 3) -> keras.Model:
    """PatchGAN: (mask, image) -> a grid of logits, one per overlapping patch.

    ``n_layers`` stride-2 convs (the first without normalisation), then a stride-1 conv and a
    1-channel logit conv: at 64 px with 3 layers each logit sees a 70 px-style receptive field.
    """
    size = check_size(size)
    mask = keras.Input((size, size, 1), name="mask")
    img = keras.Input((size, size, 1), name="image")
    x = keras.layers.Concatenate(name="in_concat")([mask, img])
    x = keras.layers.Conv2D(filters, 4, 2, "same", kernel_initializer=_init(), name="in_conv")(x)
    x = keras.layers.LeakyReLU(0.2)(x)
    w = filters
    for _ in range(n_layers - 1):
        w = min(w * 2, filters * 8)
        x = keras.layers.Conv2D(w, 4, 2, "same", use_bias=False, kernel_initializer=_init())(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.LeakyReLU(0.2)(x)
    x = keras.layers.Conv2D(w * 2, 4, 1, "same", use_bias=False, kernel_initializer=_init())(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.LeakyReLU(0.2)(x)
    out = keras.layers.Conv2D(1, 4, 1, "same", kernel_initializer=_init(), name="logits")(x)
    return keras.Model([mask, img], out, name="patchgan_discriminator")


__all__ = [
    "check_size",
    "dcgan_discriminator",
    "dcgan_generator",
    "patchgan_discriminator",
    "pix2pix_generator",
]
