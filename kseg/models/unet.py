"""The U-Net family: one encoder-decoder builder, six registered variants.

``unet``, ``unet2``, ``dilated_unet``, ``res_unet``, ``attention_unet`` and ``res_attention_unet``
are :func:`build_unet` with different switches (down-sampling, dilation, residual blocks,
attention gates, bottleneck attention); each registered function only chooses them.
"""

from __future__ import annotations

from kseg._keras import keras
from kseg.models import blocks
from kseg.models._registry import register_model
from kseg.models.options import BottleneckAttention, Downsampling


def build_unet(
    x,
    *,
    depth: int,
    filters: int,
    norm: str,
    groups: int,
    activation: str,
    upsampling: str,
    dropout: float,
    downsampling: str = Downsampling.POOL.value,
    dilation: int = 1,
    residual: bool = False,
    attention_gates: bool = False,
    attention: str = BottleneckAttention.NONE.value,
    up_kernel: int = 2,
):
    """Encoder (``depth`` levels) -> bottleneck -> decoder with skip concatenation.

    Level ``i`` has ``filters * 2**i`` channels; the bottleneck ``filters * 2**depth``.

    Args:
        downsampling: ``pool`` (2x2 max-pool) or ``strided`` (3x3 stride-2 conv).
        dilation: dilation of the down-/up-sampling convolutions (``dilated_unet``).
        residual: residual blocks instead of two plain convs.
        attention_gates: additive attention gates on the skips.
        attention: ``none``/``se``/``self`` block after the bottleneck.
        up_kernel: kernel of the transposed convolution.
    """
    style = blocks.Style(norm=norm, groups=groups, activation=activation)
    skips = []
    for i in range(depth):
        f = filters * 2**i
        x = blocks.double_conv(x, f, style, f"enc{i}", residual=residual)
        skips.append(x)
        if downsampling == Downsampling.POOL:
            x = keras.layers.MaxPooling2D(2, name=f"enc{i}_pool")(x)
        else:
            x = blocks.downsample_conv(x, f, style, f"enc{i}_down", dilation=dilation)
    x = blocks.double_conv(x, filters * 2**depth, style, "bottleneck", residual=residual)
    x = blocks.bottleneck_attention(x, attention, "bottleneck_att")
    x = blocks.dropout(x, dropout, "bottleneck")
    for i in reversed(range(depth)):
        f = filters * 2**i
        skip = skips[i]
        if attention_gates:
            skip = blocks.attention_gate(skip, x, style, f"dec{i}_ag")
        up = blocks.upsample(
            x, f, style, f"dec{i}_up", mode=upsampling, kernel=up_kernel, dilation=dilation
        )
        x = keras.layers.Concatenate(name=f"dec{i}_concat")([up, skip])
        x = blocks.double_conv(x, f, style, f"dec{i}", residual=residual)
        x = blocks.dropout(x, dropout, f"dec{i}")
    return x


@register_model("unet", description="classic U-Net: max-pool encoder, skip concat decoder")
def unet(
    x,
    *,
    depth: int = 4,
    filters: int = 32,
    norm: str = "batch",
    groups: int = 8,
    activation: str = "relu",
    upsampling: str = "transpose",
    dropout: float = 0.0,
):
    """Classic U-Net: two 3x3 convs per level, 2x2 max-pooling, 2x2 up-convolution, skip concat.

    Reference:
        Ronneberger, Fischer and Brox, "U-Net: Convolutional Networks for Biomedical Image
        Segmentation", MICCAI 2015. https://arxiv.org/abs/1505.04597
    """
    return build_unet(
        x, depth=depth, filters=filters, norm=norm, groups=groups, activation=activation,
        upsampling=upsampling, dropout=dropout,
    )  # fmt: skip


@register_model("unet2", description="U-Net with strided-conv down- and transposed-conv upsampling")
def unet2(
    x,
    *,
    depth: int = 4,
    filters: int = 32,
    norm: str = "batch",
    groups: int = 8,
    activation: str = "relu",
    upsampling: str = "transpose",
    dropout: float = 0.0,
):
    """U-Net whose down-sampling is a learned 3x3 stride-2 conv and up-sampling a 3x3 transposed
    conv (all-convolutional, as in Springenberg 2015 "Striving for Simplicity").

    Reference:
        Ronneberger et al., MICCAI 2015 (https://arxiv.org/abs/1505.04597); Springenberg et al.,
        "Striving for Simplicity: The All Convolutional Net", ICLR-W 2015
        (https://arxiv.org/abs/1412.6806).
    """
    return build_unet(
        x, depth=depth, filters=filters, norm=norm, groups=groups, activation=activation,
        upsampling=upsampling, dropout=dropout, downsampling=Downsampling.STRIDED.value,
        up_kernel=3,
    )  # fmt: skip


@register_model("dilated_unet", description="unet2 with dilation 2 in the down/up-sampling convs")
def dilated_unet(
    x,
    *,
    depth: int = 4,
    filters: int = 32,
    norm: str = "batch",
    groups: int = 8,
    activation: str = "relu",
    upsampling: str = "nearest",
    dropout: float = 0.0,
    dilation: int = 2,
):
    """``unet2`` with dilated 3x3 down- and up-sampling convolutions (larger receptive field).

    Keras cannot combine stride and dilation in one convolution, so down-sampling is a dilated
    stride-1 conv plus a stride-2 subsample, and up-sampling is ``upsampling`` interpolation plus a
    dilated 3x3 conv (see :func:`kseg.models.blocks.upsample`).

    Reference:
        Yu and Koltun, "Multi-Scale Context Aggregation by Dilated Convolutions", ICLR 2016
        (https://arxiv.org/abs/1511.07122); Ronneberger et al., MICCAI 2015.
    """
    return build_unet(
        x, depth=depth, filters=filters, norm=norm, groups=groups, activation=activation,
        upsampling=upsampling, dropout=dropout, downsampling=Downsampling.STRIDED.value,
        dilation=dilation,
    )  # fmt: skip


@register_model("res_unet", description="U-Net with residual blocks in encoder and decoder")
def res_unet(
    x,
    *,
    depth: int = 4,
    filters: int = 32,
    norm: str = "batch",
    groups: int = 8,
    activation: str = "relu",
    upsampling: str = "transpose",
    dropout: float = 0.0,
):
    """U-Net whose conv pairs are residual blocks (shortcut + two 3x3 convs).

    Reference:
        Zhang, Liu and Wang, "Road Extraction by Deep Residual U-Net", IEEE GRSL 2018
        (https://arxiv.org/abs/1711.10684); He et al., "Deep Residual Learning", CVPR 2016.
    """
    return build_unet(
        x, depth=depth, filters=filters, norm=norm, groups=groups, activation=activation,
        upsampling=upsampling, dropout=dropout, residual=True,
    )  # fmt: skip


@register_model("attention_unet", description="U-Net with additive attention gates on the skips")
def attention_unet(
    x,
    *,
    depth: int = 4,
    filters: int = 32,
    norm: str = "batch",
    groups: int = 8,
    activation: str = "relu",
    upsampling: str = "transpose",
    dropout: float = 0.0,
):
    """U-Net whose skips pass through additive attention gates driven by the coarser decoder level.

    Reference:
        Oktay et al., "Attention U-Net: Learning Where to Look for the Pancreas", MIDL 2018.
        https://arxiv.org/abs/1804.03999
    """
    return build_unet(
        x, depth=depth, filters=filters, norm=norm, groups=groups, activation=activation,
        upsampling=upsampling, dropout=dropout, attention_gates=True,
    )  # fmt: skip


@register_model(
    "res_attention_unet",
    description="residual U-Net + attention gates + bottleneck SE or self-attention",
)
def res_attention_unet(
    x,
    *,
    depth: int = 4,
    filters: int = 32,
    norm: str = "batch",
    groups: int = 8,
    activation: str = "relu",
    upsampling: str = "transpose",
    dropout: float = 0.0,
    attention: str = "se",
):
    """Hybrid: residual blocks throughout, attention gates on the skips, and an attention block at
    the bottleneck chosen by ``attention``:

    - ``se`` (default): squeeze-excitation, 2*C^2/8 MACs = 65 kMAC at C = 512: free.
    - ``self``: non-local spatial self-attention over all bottleneck positions. At 256x256,
      depth 4, filters 32 (16x16 positions, C = 512) it costs about 0.1 GMAC (84 MMAC of 1x1
      convs + 21 MMAC of attention matmuls), under 1% of the model's 12.8 GMAC, and 0.4 M
      parameters; the matmul part grows with the square of the bottleneck area (a 512x512 input
      quadruples the positions and multiplies it by 16). It converts to int8 BATCH_MATMUL and
      SOFTMAX, which some NPUs run on the CPU.
    - ``none``: residual attention U-Net without a bottleneck block.

    Reference:
        Zhang et al. 2018 (ResUNet, https://arxiv.org/abs/1711.10684); Oktay et al. 2018
        (https://arxiv.org/abs/1804.03999); Hu et al., "Squeeze-and-Excitation Networks", CVPR 2018
        (https://arxiv.org/abs/1709.01507); Wang et al., "Non-local Neural Networks", CVPR 2018
        (https://arxiv.org/abs/1711.07971).
    """
    return build_unet(
        x, depth=depth, filters=filters, norm=norm, groups=groups, activation=activation,
        upsampling=upsampling, dropout=dropout, residual=True, attention_gates=True,
        attention=attention,
    )  # fmt: skip
