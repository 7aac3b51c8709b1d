"""Edge U-Net: inverted-residual encoder, depthwise-separable decoder, width multiplier."""

from __future__ import annotations

from kseg._keras import keras
from kseg.errors import ConfigError
from kseg.models import blocks
from kseg.models._registry import register_model
from kseg.models.options import Encoder

L = keras.layers

# Channels and blocks per level (level k is at stride 2**k), MobileNetV2-like.
_CHANNELS = (16, 24, 32, 64, 96, 160)
_BLOCKS = (1, 2, 3, 3, 2, 1)


@register_model(
    "mobile_unet",
    description="edge U-Net: inverted-residual encoder, separable decoder, width multiplier",
)
def mobile_unet(
    x,
    *,
    depth: int = 4,
    width: float = 1.5,
    expansion: int = 6,
    norm: str = "batch",
    groups: int = 8,
    activation: str = "relu6",
    upsampling: str = "bilinear",
    dropout: float = 0.0,
    encoder: str = "inverted_residual",
    encoder_weights: str | None = None,
):
    """U-Net for phones and NPUs.

    Encoder (``inverted_residual``): a 3x3 stride-2 stem, then per level MobileNetV2 inverted
    residual blocks (1x1 expand by ``expansion``, 3x3 depthwise, linear 1x1 project; the first of a
    level has stride 2), channels ``(16, 24, 32, 64, 96, 160) * width`` rounded to multiples of 8;
    the skip at each stride is the activated 1x1 expansion there (see
    :func:`_inverted_residual_encoder`).
    ``encoder`` may instead name a ``keras.applications`` backbone (``mobilenet_v3_small``,
    ``mobilenet_v3_large``, ``efficientnet_v2_b0``) built with ``weights=None`` or loaded from
    ``encoder_weights`` (a local weights file; nothing is downloaded); its features at strides
    2..2**depth are the skips (depth <= 5).

    Decoder: per level, up-sampling (bilinear + 1x1 conv by default), concatenation with the skip
    and a depthwise-separable conv block; the last level up-samples to full resolution and
    concatenates the normalized input.

    At 256x256 with the defaults (width 1.5): 0.47 M parameters and 0.67 GMAC (``kseg models
    list``); width 1.0 gives 0.22 M and 0.30 GMAC. Width 1.5 is the default because, after the
    same short training budget on HC18 (tools/bench_models.py), it reached Dice 0.908 against
    0.866 for width 1.0 (unet: 0.965). Taking the skips from the expanded activations instead of
    the linear bottleneck outputs raised HC18 Dice from 0.936 to 0.946 at that budget (8 x 25
    steps; unet 0.971) for +0.03 M parameters and +0.12 GMAC.

    Reference:
        Sandler et al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks", CVPR 2018
        (https://arxiv.org/abs/1801.04381); Howard et al., "Searching for MobileNetV3", ICCV 2019
        (https://arxiv.org/abs/1905.02244); Ronneberger et al., MICCAI 2015.
    """
    style = blocks.Style(norm=norm, groups=groups, activation=activation)
    image = x
    if encoder == Encoder.INVERTED_RESIDUAL:
        if encoder_weights:
            raise ConfigError(
                "model 'mobile_unet': encoder_weights needs a keras.applications encoder "
                "(mobilenet_v3_small, mobilenet_v3_large, efficientnet_v2_b0)"
            )
        skips = _inverted_residual_encoder(x, style, depth=depth, width=width, expansion=expansion)
    else:
        skips = _applications_encoder(x, encoder, encoder_weights, depth=depth)
    x = blocks.dropout(skips[-1], dropout, "bottleneck")
    for k in reversed(range(1, depth)):
        channels = blocks.make_divisible(_CHANNELS[k - 1] * width)
        x = blocks.upsample(x, channels, style, f"dec{k}_up", mode=upsampling)
        x = L.Concatenate(name=f"dec{k}_concat")([x, skips[k - 1]])
        x = blocks.separable_conv(x, channels, style, f"dec{k}")
    channels = blocks.make_divisible(_CHANNELS[0] * width)
    x = blocks.upsample(x, channels, style, "dec0_up", mode=upsampling)
    x = L.Concatenate(name="dec0_concat")([x, image])
    return blocks.separable_conv(x, channels, style, "dec0")


def _inverted_residual_encoder(x, style, *, depth: int, width: float, expansion: int):
    """Features at strides 2, 4, ..., 2**depth.

    The skip at stride 2**k (k < depth) is the activated expansion of the first (strided) block
    of level k + 1, as in the MobileNetV2 segmentation heads (DeepLabv3+, TensorFlow's pix2pix
    mobile U-Net): ``expansion`` times wider than the level's linear bottleneck output and past a
    non-linearity. The deepest feature is the last block's output.
    """
    stem = blocks.make_divisible(_CHANNELS[0] * width)
    x = blocks.conv_norm_act(x, stem, style, "stem", strides=2)
    skips = []
    for k in range(1, depth + 1):
        channels = blocks.make_divisible(_CHANNELS[min(k, len(_CHANNELS)) - 1] * width)
        for b in range(_BLOCKS[min(k, len(_BLOCKS)) - 1]):
            strides = 2 if (k > 1 and b == 0) else 1
            x, expanded = blocks.inverted_residual(
                x, channels, style, f"enc{k}_{b}", strides=strides,
                expansion=1 if k == 1 else expansion,
            )  # fmt: skip
            if strides == 2:  # the expansion ran at the previous level's resolution
                skips.append(expanded)
    skips.append(x)
    return skips


_APPLICATIONS = {
    Encoder.MOBILENET_V3_SMALL: "MobileNetV3Small",
    Encoder.MOBILENET_V3_LARGE: "MobileNetV3Large",
    Encoder.EFFICIENTNET_V2_B0: "EfficientNetV2B0",
}


def _applications_encoder(x, encoder: str, weights: str | None, *, depth: int):
    """Skips from a keras.applications backbone wired onto ``x`` (one flat functional graph)."""
    from pathlib import Path

    if depth > 5:
        raise ConfigError(f"model 'mobile_unet': encoder {encoder} has 5 levels; use depth <= 5")
    if weights is not None and not Path(weights).is_file():
        raise ConfigError(f"model 'mobile_unet': encoder_weights {weights}: file not found")
    cls = getattr(keras.applications, _APPLICATIONS[Encoder(encoder)])
    kwargs = {"include_top": False, "weights": None, "input_tensor": x}
    if encoder != Encoder.EFFICIENTNET_V2_B0:
        kwargs["minimalistic"] = False
    kwargs["include_preprocessing"] = False  # the model's Normalize layer already scales pixels
    backbone = cls(**kwargs)
    if weights is not None:
        try:
            backbone.load_weights(weights)
        except Exception as exc:  # noqa: BLE001
            raise ConfigError(
                f"model 'mobile_unet': encoder_weights {weights}: cannot load into {encoder} "
                f"({type(exc).__name__}); give weights saved from the same backbone and channels"
            ) from None
    size = int(x.shape[1])
    skips = []
    for k in range(1, depth + 1):
        target = size // 2**k
        # The last layer at each stride is the output of that stage.
        last = None
        for layer in backbone.layers:
            shape = layer.output_shape
            if isinstance(shape, list) or len(shape) != 4:
                continue
            if shape[1] == target:
                last = layer
        if last is None:
            raise ConfigError(
                f"model 'mobile_unet': encoder {encoder} has no features at stride {2**k}"
            )
        skips.append(last.output)
    return skips
