"""Skip-connected denoising autoencoder for speckle reduction."""

from __future__ import annotations

from kseg._keras import keras
from kseg.config import Task
from kseg.models import blocks
from kseg.models._registry import register_model
from kseg.models.options import ENCODER_DECODER


@register_model(
    "denoising_ae",
    task=Task.DENOISE,
    description="denoising autoencoder with additive skips; outputs the clean image (0..255)",
    options={**ENCODER_DECODER, "depth": 3},
)
def denoising_ae(
    x, style: blocks.Style, *, depth: int, filters: int, upsampling: str, dropout: float
):
    """Convolutional encoder-decoder with symmetric additive skip connections (RED-Net style).

    Each level: 3x3 conv-norm-act (kept as the skip) and a 3x3 stride-2 conv; the decoder
    up-samples, adds the skip and convolves. The output head (in :func:`kseg.models.create_model`)
    is a 1x1 conv to C channels, sigmoid, times 255: the denoised image in **pixel units 0..255**,
    the same units as the input, so it can feed a segmentation model directly. Train it on
    noisy/clean pairs (``kseg train --task denoise``) with an MSE/L1 loss on pixel values.

    Reference:
        Mao, Shen and Yang, "Image Restoration Using Very Deep Convolutional Encoder-Decoder
        Networks with Symmetric Skip Connections", NeurIPS 2016. https://arxiv.org/abs/1603.09056
    """
    skips = []
    for i in range(depth):
        f = filters * 2**i
        x = blocks.conv_norm_act(x, f, style, f"enc{i}")
        skips.append(x)
        x = blocks.downsample_conv(x, filters * 2 ** (i + 1), style, f"enc{i}_down")
    x = blocks.double_conv(x, filters * 2**depth, style, "bottleneck")
    x = blocks.dropout(x, dropout, "bottleneck")
    for i in reversed(range(depth)):
        f = filters * 2**i
        x = blocks.upsample(x, f, style, f"dec{i}_up", mode=upsampling, kernel=3)
        x = keras.layers.Add(name=f"dec{i}_skip")([x, skips[i]])
        x = blocks.conv_norm_act(x, f, style, f"dec{i}")
    return x
