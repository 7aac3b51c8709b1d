"""Options of whole-image inference: one frozen, validated object shared by CLI, evaluate and serve."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from kseg.config import StrEnum
from kseg.errors import ConfigError


class TileMode(StrEnum):
    """When to slide the model over an image instead of resizing the whole image to the input."""

    AUTO = "auto"  #: tile images larger than the input when the model was trained at native scale
    ON = "on"  #: always work at native resolution (pad small images, tile large ones)
    OFF = "off"  #: always resize the whole image to the input (the training contract)


class Blend(StrEnum):
    """Weight of each window's probabilities when overlapping windows are averaged."""

    GAUSSIAN = "gaussian"  #: Gaussian bump, sigma = 1/8 of the window (nnU-Net)
    LINEAR = "linear"  #: separable triangle (linear ramp towards the window border)


@dataclass(frozen=True)
class InferenceOptions:
    """How :func:`kseg.inference.segment_image` turns an image into a mask.

    Args:
        threshold: foreground probability threshold (``p > threshold``) for one-class models;
            ``None``: the model's own (the validated threshold of its card, else 0.5).
        tile: a :class:`TileMode`.
        overlap: fraction of a window shared with its neighbour when tiling, in [0, 0.9].
        blend: a :class:`Blend`.
        tta: average the probabilities of the image and its flips, those the training applied
            (horizontal only when the model does not say; see :func:`~kseg.inference.tiling.tta_flips`).
        min_size: drop connected components (4-connected) smaller than this many pixels.
        fill_holes: fill background regions enclosed by a component.
        keep_largest: keep only the k largest components (0: all).
        smooth: Gaussian sigma in pixels applied to the mask before re-thresholding at 0.5,
            which rounds jagged contours (0: off).
        pixel_spacing_mm: physical pixel size, one number or ``(row, col)``, for areas in mm^2.
        batch_size: windows per model call when the model takes a batch (fixed batch 1: one by one).

    Example:
        >>> opts = InferenceOptions(tile="on", overlap=0.5, min_size=50, pixel_spacing_mm=0.1)
    """

    threshold: float | None = None
    tile: TileMode | str = TileMode.AUTO
    overlap: float = 0.25
    blend: Blend | str = Blend.GAUSSIAN
    tta: bool = False
    min_size: int = 0
    fill_holes: bool = False
    keep_largest: int = 0
    smooth: float = 0.0
    pixel_spacing_mm: float | tuple[float, float] | None = None
    batch_size: int = 8

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "tile", _enum(TileMode, self.tile, "tile"))
        set_(self, "blend", _enum(Blend, self.blend, "blend"))
        if self.threshold is not None:
            t = _number(self.threshold, "threshold")
            if not 0.0 <= t < 1.0:
                raise ConfigError(f"threshold {t} must be in [0, 1); 0.5 is the usual choice")
            set_(self, "threshold", t)
        ov = _number(self.overlap, "overlap")
        if not 0.0 <= ov <= 0.9:
            raise ConfigError(f"overlap {ov} must be in [0, 0.9]; 0.25-0.5 is typical")
        set_(self, "overlap", ov)
        for name in ("min_size", "keep_largest", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
                raise ConfigError(f"{name} must be a whole number, got {value!r}")
            low = 1 if name == "batch_size" else 0
            if value < low:
                raise ConfigError(f"{name} must be >= {low}, got {value}")
            set_(self, name, int(value))
        sm = _number(self.smooth, "smooth")
        if sm < 0 or sm > 50:
            raise ConfigError(f"smooth {sm} must be in [0, 50] pixels (Gaussian sigma)")
        set_(self, "smooth", sm)
        set_(self, "tta", bool(self.tta))
        set_(self, "fill_holes", bool(self.fill_holes))
        if self.pixel_spacing_mm is not None:
            set_(self, "pixel_spacing_mm", parse_spacing(self.pixel_spacing_mm))

    @property
    def spacing(self) -> tuple[float, float] | None:
        """``(row, col)`` pixel spacing in mm, or None."""
        return self.pixel_spacing_mm  # type: ignore[return-value]

    def replace(self, **changes: Any) -> InferenceOptions:
        """A copy with ``changes`` applied (validated again)."""
        unknown = set(changes) - {f.name for f in fields(self)}
        if unknown:
            raise ConfigError(
                f"unknown inference option(s) {', '.join(sorted(unknown))}; valid: "
                + ", ".join(f.name for f in fields(self))
            )
        return InferenceOptions(**{**asdict(self), **changes})

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["tile"], d["blend"] = str(self.tile), str(self.blend)
        if self.pixel_spacing_mm is not None:
            d["pixel_spacing_mm"] = list(self.pixel_spacing_mm)
        return d


def parse_spacing(value: Any) -> tuple[float, float]:
    """``0.1``, ``"0.1"``, ``"0.1,0.12"`` or ``(0.1, 0.12)`` -> ``(row, col)`` mm, both > 0."""
    if isinstance(value, str):
        parts = [p for p in value.replace("x", ",").split(",") if p.strip()]
    elif isinstance(value, list | tuple):
        parts = list(value)
    else:
        parts = [value]
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2:
        raise ConfigError(
            f"pixel spacing {value!r} must be one number or ROW,COL in mm, e.g. 0.1 or 0.1,0.12"
        )
    out = tuple(_number(p, "pixel spacing") for p in parts)
    if any(not v > 0 for v in out):
        raise ConfigError(f"pixel spacing {value!r} must be > 0 mm")
    return out  # type: ignore[return-value]


def _number(value: Any, name: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number, got {value!r}") from None
    if isinstance(value, bool) or not math.isfinite(v):
        raise ConfigError(f"{name} must be a finite number, got {value!r}")
    return v


def _enum(cls: type[StrEnum], value: Any, name: str) -> StrEnum:
    try:
        return cls(str(value).lower())
    except ValueError:
        raise ConfigError(
            f"{name} {value!r} is not valid; use one of: {', '.join(cls.values())}"
        ) from None
