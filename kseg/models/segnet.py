"""SegNet: encoder-decoder that unpools with the encoder's max-pooling positions."""

from __future__ import annotations

from kseg._keras import keras
from kseg.models import blocks
from kseg.models._registry import register_model
from kseg.models.options import ENCODER_DECODER


@register_model(
    "segnet",
    description="SegNet: decoder unpools at the encoder's max positions",
    options={k: v for k, v in ENCODER_DECODER.items() if k != "upsampling"},  # it unpools
)
def segnet(x, style: blocks.Style, *, depth: int, filters: int, dropout: float):
    """SegNet with ``depth`` levels of two 3x3 conv-norm-act and 2x2 max-pooling; the decoder
    places features at the positions that held each window's maximum (no skip concatenation),
    followed by two 3x3 convs. A residual-free bottleneck block sits at the deepest level.

    Pooling indices are replaced by an equality mask (:class:`~kseg.models.layers.MaxUnpool2D`)
    so the model converts to builtin INT8 TFLite ops (EQUAL, SELECT_V2, RESIZE_NEAREST_NEIGHBOR).

    Reference:
        Badrinarayanan, Kendall and Cipolla, "SegNet: A Deep Convolutional Encoder-Decoder
        Architecture for Image Segmentation", TPAMI 2017. https://arxiv.org/abs/1511.00561
    """
    skips, pooled = [], []
    for i in range(depth):
        x = blocks.double_conv(x, filters * 2**i, style, f"enc{i}")
        skips.append(x)
        x = keras.layers.MaxPooling2D(2, name=f"enc{i}_pool")(x)
        pooled.append(x)
    x = blocks.double_conv(x, filters * 2 ** (depth - 1), style, "bottleneck")
    x = blocks.dropout(x, dropout, "bottleneck")
    for i in reversed(range(depth)):
        x = blocks.max_unpool(skips[i], pooled[i], x, f"dec{i}")
        x = blocks.conv_norm_act(x, filters * 2**i, style, f"dec{i}_a")
        x = blocks.conv_norm_act(x, filters * 2 ** max(i - 1, 0), style, f"dec{i}_b")
    return x
