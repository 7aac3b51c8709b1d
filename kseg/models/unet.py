"""The U-Net family: one encoder-decoder builder, six registered variants.

``unet``, ``unet2``, ``dilated_unet``, ``res_unet``, ``attention_unet`` and ``res_attention_unet``
are :func:`build_unet` with different switches (down-sampling, dilation, residual blocks,
attention gates, bottleneck attention); each is registered by :func:`_variant`, which names the
switches and the options (the shared :data:`OPTIONS`, a changed default or an added one), and
gives the variant the docstring of the function it decorates.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kseg._keras import keras
from kseg.models import blocks
from kseg.models._registry import register_model
from kseg.models.options import ENCODER_DECODER, BottleneckAttention, Downsampling


def build_unet(
    x,
    style: blocks.Style,
    *,
    depth: int,
    filters: int,
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


#: The options of every U-Net variant with their defaults (the registry reads a model's options
#: and defaults from its builder's signature).
OPTIONS: dict[str, Any] = ENCODER_DECODER


def _variant(
    name: str, description: str, *, options: dict[str, Any] | None = None, **switches: Any
) -> Callable[[Callable[[], None]], Callable[..., Any]]:
    """Register :func:`build_unet` with fixed ``switches`` as the architecture ``name``.

    Its options are :data:`OPTIONS` updated with ``options`` (a changed default keeps its place,
    a new option comes last); its docstring is the decorated function's.
    """
    defaults = {**OPTIONS, **(options or {})}

    def register(doc: Callable[[], None]) -> Callable[..., Any]:
        def variant(x, style, **opts):
            return build_unet(x, style, **opts, **switches)

        variant.__doc__ = doc.__doc__
        return register_model(name, description=description, options=defaults)(variant)

    return register


@_variant("unet", "classic U-Net: max-pool encoder, skip concat decoder")
def unet() -> None:
    """Classic U-Net: two 3x3 convs per level, 2x2 max-pooling, 2x2 up-convolution, skip concat.

    Reference:
        Ronneberger, Fischer and Brox, "U-Net: Convolutional Networks for Biomedical Image
        Segmentation", MICCAI 2015. https://arxiv.org/abs/1505.04597
    """


@_variant(
    "unet2",
    "U-Net with strided-conv down- and transposed-conv upsampling",
    downsampling=Downsampling.STRIDED.value,
    up_kernel=3,
)
def unet2() -> None:
    """U-Net whose down-sampling is a learned 3x3 stride-2 conv and up-sampling a 3x3 transposed
    conv (all-convolutional, as in Springenberg 2015 "Striving for Simplicity").

    Reference:
        Ronneberger et al., MICCAI 2015 (https://arxiv.org/abs/1505.04597); Springenberg et al.,
        "Striving for Simplicity: The All Convolutional Net", ICLR-W 2015
        (https://arxiv.org/abs/1412.6806).
    """


@_variant(
    "dilated_unet",
    "unet2 with dilation 2 in the down/up-sampling convs",
    options={"upsampling": "nearest", "dilation": 2},
    downsampling=Downsampling.STRIDED.value,
)
def dilated_unet() -> None:
    """``unet2`` with dilated 3x3 down- and up-sampling convolutions (larger receptive field).

    Keras cannot combine stride and dilation in one convolution, so down-sampling is a dilated
    stride-1 conv plus a stride-2 subsample, and up-sampling is ``upsampling`` interpolation plus a
    dilated 3x3 conv (see :func:`kseg.models.blocks.upsample`).

    Reference:
        Yu and Koltun, "Multi-Scale Context Aggregation by Dilated Convolutions", ICLR 2016
        (https://arxiv.org/abs/1511.07122); Ronneberger et al., MICCAI 2015.
    """


@_variant("res_unet", "U-Net with residual blocks in encoder and decoder", residual=True)
def res_unet() -> None:
    """U-Net whose conv pairs are residual blocks (shortcut + two 3x3 convs).

    Reference:
        Zhang, Liu and Wang, "Road Extraction by Deep Residual U-Net", IEEE GRSL 2018
        (https://arxiv.org/abs/1711.10684); He et al., "Deep Residual Learning", CVPR 2016.
    """


@_variant(
    "attention_unet", "U-Net with additive attention gates on the skips", attention_gates=True
)
def attention_unet() -> None:
    """U-Net whose skips pass through additive attention gates driven by the coarser decoder level.

    Reference:
        Oktay et al., "Attention U-Net: Learning Where to Look for the Pancreas", MIDL 2018.
        https://arxiv.org/abs/1804.03999
    """


@_variant(
    "res_attention_unet",
    "residual U-Net + attention gates + bottleneck SE or self-attention",
    options={"attention": "se"},
    residual=True,
    attention_gates=True,
)
def res_attention_unet() -> None:
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
