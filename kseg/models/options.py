"""Model options: documented string enums and the one validator every architecture goes through.

An architecture's options are the keyword-only parameters of its registered builder (with their
defaults). :func:`validate_options` checks a user's options against that signature and against the
value rules in :data:`_CHECKS`, and raises a one-line :class:`~kseg.errors.ConfigError` naming the
model, the key and the valid values.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from kseg.config import StrEnum
from kseg.errors import ConfigError, did_you_mean


class Norm(StrEnum):
    """Normalization after each convolution."""

    BATCH = "batch"  #: BatchNormalization (folded into the conv by the TFLite converter)
    GROUP = "group"  #: kseg GroupNorm with ``groups`` groups (all-INT8 friendly)
    INSTANCE = "instance"  #: GroupNorm with one group per channel
    NONE = "none"  #: convolution bias only


class Activation(StrEnum):
    RELU = "relu"
    RELU6 = "relu6"  #: ReLU capped at 6 (MobileNet)
    LEAKY_RELU = "leaky_relu"  #: slope 0.1 below zero
    HARD_SWISH = "hard_swish"  #: x * relu6(x + 3) / 6 (MobileNetV3), builtin layers only


class Upsampling(StrEnum):
    TRANSPOSE = "transpose"  #: learned Conv2DTranspose, stride 2
    BILINEAR = "bilinear"  #: UpSampling2D bilinear + 1x1 conv
    NEAREST = "nearest"  #: UpSampling2D nearest + 1x1 conv


class Downsampling(StrEnum):
    POOL = "pool"  #: 2x2 max-pooling
    STRIDED = "strided"  #: 3x3 convolution with stride 2


class BottleneckAttention(StrEnum):
    """Attention block at the U-Net bottleneck."""

    NONE = "none"
    SE = "se"  #: squeeze-excitation: ~2*C^2/r MACs, negligible
    SELF = "self"  #: non-local spatial self-attention: ~2*(HW)^2*C/8 MACs, quadratic in positions


class Encoder(StrEnum):
    """Encoder of ``mobile_unet``."""

    INVERTED_RESIDUAL = "inverted_residual"  #: kseg MobileNetV2-style blocks, width multiplier
    MOBILENET_V3_SMALL = "mobilenet_v3_small"  #: keras.applications, weights=None or a file
    MOBILENET_V3_LARGE = "mobilenet_v3_large"
    EFFICIENTNET_V2_B0 = "efficientnet_v2_b0"


#: The options of the zoo's encoder-decoders with their usual defaults; an architecture registered
#: with ``options={**ENCODER_DECODER, ...}`` changes a default in place or adds an option last.
ENCODER_DECODER: dict[str, Any] = {
    "depth": 4,
    "filters": 32,
    "norm": Norm.BATCH.value,
    "groups": 8,
    "activation": Activation.RELU.value,
    "upsampling": Upsampling.TRANSPOSE.value,
    "dropout": 0.0,
}


def _enum(cls: type[StrEnum]) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        try:
            return cls(str(value)).value
        except ValueError:
            raise ValueError(f"use one of: {', '.join(cls.values())}") from None

    return check


def _int(low: int, high: int | None = None) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        try:
            if isinstance(value, bool) or not float(value).is_integer():
                raise ValueError
            value = int(float(value))
        except (TypeError, ValueError):
            raise ValueError("must be a whole number") from None
        if value < low or (high is not None and value > high):
            raise ValueError(f"must be between {low} and {high}" if high else f"must be >= {low}")
        return value

    return check


def _float(low: float, high: float, *, high_open: bool = False) -> Callable[[Any], float]:
    def check(value: Any) -> float:
        try:
            if isinstance(value, bool):
                raise ValueError
            value = float(value)
        except (TypeError, ValueError):
            raise ValueError("must be a number") from None
        if value < low or value > high or (high_open and value == high):
            bracket = ")" if high_open else "]"
            raise ValueError(f"must be in [{low}, {high}{bracket}")
        return value

    return check


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in {"true", "false", "yes", "no", "1", "0"}:
        return value.lower() in {"true", "yes", "1"}
    if value in (0, 1):
        return bool(value)
    raise ValueError("must be true or false")


def _optional_path(value: Any) -> str | None:
    if value is None or value == "" or str(value).lower() == "none":
        return None
    return str(value)


_CHECKS: dict[str, Callable[[Any], Any]] = {
    "depth": _int(1, 6),
    "filters": _int(1, 1024),
    "width": _float(0.05, 4.0),
    "norm": _enum(Norm),
    "groups": _int(1, 1024),
    "activation": _enum(Activation),
    "upsampling": _enum(Upsampling),
    "downsampling": _enum(Downsampling),
    "dropout": _float(0.0, 1.0, high_open=True),
    "deep_supervision": _bool,
    "attention": _enum(BottleneckAttention),
    "encoder": _enum(Encoder),
    "encoder_weights": _optional_path,
    "dilation": _int(1, 8),
    "expansion": _int(1, 8),
}


def option_defaults(builder: Callable[..., Any]) -> dict[str, Any]:
    """The keyword-only parameters of a builder and their defaults: the model's options."""
    sig = inspect.signature(builder)
    return {
        p.name: p.default
        for p in sig.parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    }


def validate_options(
    model: str, builder: Callable[..., Any], options: dict[str, Any]
) -> dict[str, Any]:
    """Defaults updated with ``options``, each value checked and converted.

    Raises:
        ConfigError: unknown option (lists the valid ones) or a bad value (says what is valid).
    """
    defaults = option_defaults(builder)
    for key in options:
        if key not in defaults:
            raise ConfigError(
                f"model {model!r} has no option {key!r}{did_you_mean(key, defaults)}; "
                "valid options: " + ", ".join(sorted(defaults))
            )
    resolved = dict(defaults)
    resolved.update(options)
    out: dict[str, Any] = {}
    for key, value in resolved.items():
        check = _CHECKS.get(key)
        if check is None:
            out[key] = value
            continue
        try:
            out[key] = check(value)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"model {model!r}: option {key} = {value!r} {exc}") from None
    return out
