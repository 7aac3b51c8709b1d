"""Shared building blocks of the model zoo.

Each function takes a Keras tensor and returns one, wiring builtin Keras layers (plus the kseg
:class:`~kseg.models.layers.GroupNorm`) so that every architecture quantizes to builtin INT8
TFLite ops. Architectures differ only in how they combine these blocks and with which
:class:`Style` (normalization, groups, activation).

Every layer gets a name ``{name}_{part}`` from the caller's ``name`` so graphs are readable and
two builds of the same model have the same layer names.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from kseg._keras import keras
from kseg.models.layers import GroupNorm, MaxUnpool2D
from kseg.models.options import Activation, BottleneckAttention, Norm, Upsampling

L = keras.layers


@dataclass(frozen=True)
class Style:
    """How convolutions are normalized and activated throughout one model."""

    norm: str = Norm.BATCH.value
    groups: int = 8
    activation: str = Activation.RELU.value


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round a channel count to a multiple of ``divisor`` without losing more than 10%.

    As in the MobileNet reference code (Sandler 2018), so width multipliers give NPU-friendly
    channel counts.
    """
    min_value = min_value or divisor
    new = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new < 0.9 * value:
        new += divisor
    return new


def normalization(x, style: Style, name: str):
    """BatchNormalization, GroupNorm (groups capped to a divisor of the channels), or nothing."""
    channels = int(x.shape[-1])
    if style.norm == Norm.BATCH:
        # momentum 0.9 (PyTorch's 0.1): Keras' 0.99 needs hundreds of steps before the moving
        # statistics match the batch statistics, so short medical-imaging runs validate badly.
        return L.BatchNormalization(momentum=0.9, name=f"{name}_bn")(x)
    if style.norm == Norm.GROUP:
        return GroupNorm(groups=math.gcd(style.groups, channels), name=f"{name}_gn")(x)
    if style.norm == Norm.INSTANCE:
        return GroupNorm(groups=channels, name=f"{name}_in")(x)
    return x


def activation(x, kind: str, name: str):
    """ReLU, ReLU6, LeakyReLU(0.1) or hard-swish from builtin layers."""
    if kind == Activation.RELU:
        return L.ReLU(name=f"{name}_relu")(x)
    if kind == Activation.RELU6:
        return L.ReLU(max_value=6.0, name=f"{name}_relu6")(x)
    if kind == Activation.LEAKY_RELU:
        return L.LeakyReLU(alpha=0.1, name=f"{name}_lrelu")(x)
    if kind == Activation.HARD_SWISH:
        # Written exactly as x * relu6(x + 3) * (1/6): the TFLite converter fuses this pattern into
        # one HARD_SWISH op (float and int8), which NPUs run natively.
        gate = L.Rescaling(1.0, offset=3.0, name=f"{name}_hs_add3")(x)
        gate = L.ReLU(max_value=6.0, name=f"{name}_hs_relu6")(gate)
        gate = L.Rescaling(1.0 / 6.0, name=f"{name}_hs_div6")(gate)
        return L.Multiply(name=f"{name}_hswish")([x, gate])
    raise ValueError(f"unknown activation {kind!r}")


def conv_norm_act(
    x,
    filters: int,
    style: Style,
    name: str,
    *,
    kernel: int = 3,
    strides: int = 1,
    dilation: int = 1,
    act: bool = True,
):
    """Conv2D -> normalization -> activation (bias only when there is no normalization)."""
    x = L.Conv2D(
        filters,
        kernel,
        strides=strides,
        dilation_rate=dilation,
        name=f"{name}_conv",
        **_normalized_conv_args(style),
    )(x)
    return norm_act(x, style, name, act=act)


def _normalized_conv_args(style: Style) -> dict[str, Any]:
    """Arguments of a (transposed) convolution that :func:`norm_act` follows: same padding, He
    initialization, and a bias only when there is no normalization to absorb it."""
    return {
        "padding": "same",
        "use_bias": style.norm == Norm.NONE,
        "kernel_initializer": "he_normal",
    }


def norm_act(x, style: Style, name: str, *, act: bool = True):
    """Normalization, then (unless ``act`` is false) activation, as ``style`` says."""
    x = normalization(x, style, name)
    return activation(x, style.activation, name) if act else x


def depthwise_norm_act(x, style: Style, name: str, *, kernel: int = 3, strides: int = 1):
    """Depthwise kxk conv -> normalization -> activation, its layers named ``{name}_dw*``."""
    x = L.DepthwiseConv2D(
        kernel, strides=strides, padding="same", use_bias=style.norm == Norm.NONE, name=f"{name}_dw"
    )(x)
    return norm_act(x, style, f"{name}_dw")


def separable_conv(x, filters: int, style: Style, name: str, *, kernel: int = 3, strides: int = 1):
    """Depthwise kxk -> norm -> act -> pointwise 1x1 -> norm -> act (MobileNetV1 block)."""
    x = depthwise_norm_act(x, style, name, kernel=kernel, strides=strides)
    return conv_norm_act(x, filters, style, f"{name}_pw", kernel=1)


def double_conv(
    x, filters: int, style: Style, name: str, *, residual: bool = False, dilation: int = 1
):
    """Two 3x3 conv-norm-act (U-Net), or a residual block when ``residual``.

    The residual form is conv-norm-act, conv-norm, plus a shortcut (1x1 conv + norm when the
    channel count changes), then the activation (He 2016; as in ResUNet, Zhang 2018,
    https://arxiv.org/abs/1711.10684).
    """
    if not residual:
        x = conv_norm_act(x, filters, style, f"{name}_a", dilation=dilation)
        return conv_norm_act(x, filters, style, f"{name}_b", dilation=dilation)
    shortcut = x
    if int(x.shape[-1]) != filters:
        shortcut = conv_norm_act(x, filters, style, f"{name}_proj", kernel=1, act=False)
    y = conv_norm_act(x, filters, style, f"{name}_a", dilation=dilation)
    y = conv_norm_act(y, filters, style, f"{name}_b", dilation=dilation, act=False)
    y = L.Add(name=f"{name}_add")([shortcut, y])
    return activation(y, style.activation, f"{name}_out")


def downsample_conv(x, filters: int, style: Style, name: str, *, dilation: int = 1):
    """Halve the resolution with a learned 3x3 convolution of stride 2.

    Keras cannot combine a stride with a dilation in one Conv2D, so with ``dilation > 1`` this is
    a stride-1 dilated 3x3 conv followed by a stride-2 subsample (1x1 max-pool): the same outputs
    a strided dilated conv would give, at 4x its MACs.
    """
    if dilation == 1:
        return conv_norm_act(x, filters, style, name, strides=2)
    x = conv_norm_act(x, filters, style, name, dilation=dilation)
    return L.MaxPooling2D(pool_size=1, strides=2, name=f"{name}_subsample")(x)


def upsample(
    x, filters: int, style: Style, name: str, *, mode: str, kernel: int = 2, dilation: int = 1
):
    """Double the resolution and map to ``filters`` channels.

    ``transpose``: Conv2DTranspose(kernel, stride 2) -> norm -> act. ``bilinear`` / ``nearest``:
    UpSampling2D -> 1x1 conv-norm-act. With ``dilation > 1`` (which Keras cannot put into a
    strided transposed conv) the upsampling is UpSampling2D (nearest for ``transpose``) followed
    by a 3x3 conv-norm-act with that dilation.
    """
    if mode == Upsampling.TRANSPOSE and dilation == 1:
        x = L.Conv2DTranspose(
            filters, kernel, strides=2, name=f"{name}_tconv", **_normalized_conv_args(style)
        )(x)
        return norm_act(x, style, name)
    interpolation = "nearest" if mode == Upsampling.TRANSPOSE else str(mode)
    x = L.UpSampling2D(2, interpolation=interpolation, name=f"{name}_resize")(x)
    if dilation == 1:
        return conv_norm_act(x, filters, style, name, kernel=1)
    return conv_norm_act(x, filters, style, name, kernel=3, dilation=dilation)


def attention_gate(skip, gating, style: Style, name: str, *, inter_filters: int | None = None):
    """Additive attention gate on a skip connection (Oktay 2018).

    ``skip`` is at resolution H, ``gating`` (the coarser decoder feature) at H/2. Both are mapped
    to ``inter_filters`` channels at H/2 (1x1 stride-2 conv on the skip, 1x1 conv on the gate),
    added, ReLU, 1x1 conv to one channel, sigmoid, bilinear upsampling to H: the attention map
    ``alpha`` in [0, 1] that multiplies the skip (broadcast over channels).

    Reference:
        Oktay et al., "Attention U-Net: Learning Where to Look for the Pancreas", MIDL 2018.
        https://arxiv.org/abs/1804.03999
    """
    channels = int(skip.shape[-1])
    inter = inter_filters or max(1, channels // 2)
    theta = L.Conv2D(inter, 1, strides=2, use_bias=False, name=f"{name}_theta")(skip)
    phi = L.Conv2D(inter, 1, use_bias=True, name=f"{name}_phi")(gating)
    f = L.Add(name=f"{name}_add")([theta, phi])
    f = L.ReLU(name=f"{name}_relu")(f)
    psi = L.Conv2D(1, 1, name=f"{name}_psi")(f)
    alpha = L.Activation("sigmoid", name=f"{name}_sigmoid")(psi)
    alpha = L.UpSampling2D(2, interpolation="bilinear", name=f"{name}_resize")(alpha)
    return L.Multiply(name=f"{name}_gate")([skip, alpha])


def squeeze_excite(x, name: str, *, ratio: int = 8):
    """Squeeze-and-excitation channel attention (Hu 2018): GAP -> 1x1 -> ReLU -> 1x1 -> sigmoid.

    Cost: about ``2 * C^2 / ratio`` MACs, negligible next to the convolutions.

    Reference:
        Hu, Shen and Sun, "Squeeze-and-Excitation Networks", CVPR 2018.
        https://arxiv.org/abs/1709.01507
    """
    channels = int(x.shape[-1])
    s = L.GlobalAveragePooling2D(keepdims=True, name=f"{name}_squeeze")(x)
    s = L.Conv2D(max(1, channels // ratio), 1, activation="relu", name=f"{name}_reduce")(s)
    s = L.Conv2D(channels, 1, activation="sigmoid", name=f"{name}_expand")(s)
    return L.Multiply(name=f"{name}_scale")([x, s])


def spatial_self_attention(x, name: str, *, ratio: int = 8):
    """Non-local spatial self-attention with a residual connection (Wang 2018).

    Queries and keys are 1x1 convs to ``C/ratio`` channels, values to ``C/2``; the ``HW x HW``
    softmax attention mixes all positions, a 1x1 conv maps back to C, and the result is added to
    ``x``. Cost: ``HW*HW*(C/ratio + C/2)`` MACs for the two matmuls, quadratic in the number of
    positions, plus ``HW*C*(2C/ratio + C)`` for the 1x1 convs; it belongs at the bottleneck only
    (16x16 at 256x256 input, depth 4: about 0.1 GMAC at C = 512). Static reshapes and two
    batch matmuls: builtin INT8 TFLite ops (BATCH_MATMUL, SOFTMAX).

    Reference:
        Wang, Girshick, Gupta and He, "Non-local Neural Networks", CVPR 2018.
        https://arxiv.org/abs/1711.07971
    """
    h, w, channels = (int(d) for d in x.shape[1:])
    qk = max(1, channels // ratio)
    vc = max(1, channels // 2)
    q = L.Conv2D(qk, 1, name=f"{name}_query")(x)
    q = L.Rescaling(1.0 / math.sqrt(qk), name=f"{name}_query_scale")(q)
    k = L.Conv2D(qk, 1, name=f"{name}_key")(x)
    v = L.Conv2D(vc, 1, name=f"{name}_value")(x)
    q = L.Reshape((h * w, qk), name=f"{name}_query_flat")(q)
    k = L.Reshape((h * w, qk), name=f"{name}_key_flat")(k)
    v = L.Reshape((h * w, vc), name=f"{name}_value_flat")(v)
    scores = L.Dot(axes=(2, 2), name=f"{name}_scores")([q, k])
    weights = L.Softmax(axis=-1, name=f"{name}_softmax")(scores)
    out = L.Dot(axes=(2, 1), name=f"{name}_mix")([weights, v])
    out = L.Reshape((h, w, vc), name=f"{name}_unflat")(out)
    out = L.Conv2D(channels, 1, name=f"{name}_out")(out)
    return L.Add(name=f"{name}_residual")([x, out])


def bottleneck_attention(x, kind: str, name: str):
    """Dispatch on :class:`~kseg.models.options.BottleneckAttention`."""
    if kind == BottleneckAttention.SE:
        return squeeze_excite(x, name)
    if kind == BottleneckAttention.SELF:
        return spatial_self_attention(x, name)
    return x


def inverted_residual(
    x, filters: int, style: Style, name: str, *, strides: int = 1, expansion: int = 6
):
    """MobileNetV2 inverted residual: 1x1 expand -> 3x3 depthwise -> 1x1 linear project.

    The shortcut is added when the stride is 1 and the channel count is unchanged. Returns
    ``(output, expanded)``: ``expanded`` is the activated 1x1 expansion at the input resolution
    (the block's input when ``expansion`` is 1), a wide feature map that segmentation decoders take
    as their skip.

    Reference:
        Sandler et al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks", CVPR 2018.
        https://arxiv.org/abs/1801.04381
    """
    in_channels = int(x.shape[-1])
    y = x
    if expansion != 1:
        y = conv_norm_act(y, in_channels * expansion, style, f"{name}_expand", kernel=1)
    expanded = y
    y = depthwise_norm_act(y, style, name, strides=strides)
    y = conv_norm_act(y, filters, style, f"{name}_project", kernel=1, act=False)
    if strides == 1 and in_channels == filters:
        y = L.Add(name=f"{name}_add")([x, y])
    return y, expanded


def max_unpool(skip, pooled, y, name: str):
    """SegNet unpooling of ``y`` to the max positions of ``skip`` (see :class:`MaxUnpool2D`)."""
    return MaxUnpool2D(name=f"{name}_unpool")([skip, pooled, y])


def dropout(x, rate: float, name: str):
    return L.Dropout(rate, name=f"{name}_dropout")(x) if rate > 0 else x
