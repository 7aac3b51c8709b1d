"""Click flags for whole-image inference, shared by ``kseg predict`` and ``kseg evaluate``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from kseg._cli import flag
from kseg.inference.options import Blend, InferenceOptions, TileMode

_FLAGS: list[Callable[[Callable[..., Any]], Callable[..., Any]]] = [
    click.option(
        "--threshold",
        type=float,
        default=None,
        help="Foreground threshold (default: the model card's, chosen on validation data; else 0.5).",
    ),
    click.option(
        "--tile",
        type=click.Choice(TileMode.values()),
        default="auto",
        show_default=True,
        help="Sliding window at full resolution: on, off (resize whole image), or auto "
        "(only for models trained at native scale, only images larger than the input).",
    ),
    click.option(
        "--overlap", type=float, default=0.25, show_default=True, help="Window overlap, 0-0.9."
    ),
    click.option(
        "--blend",
        type=click.Choice(Blend.values()),
        default="gaussian",
        show_default=True,
        help="Weighting of overlapping windows.",
    ),
    flag(
        "--tta",
        help="Average over the flips the model was trained with (horizontal when unknown).",
    ),
    click.option(
        "--min-size", type=int, default=0, show_default=True, help="Drop components under N px."
    ),
    flag("--fill-holes", help="Fill holes inside components."),
    click.option(
        "--keep-largest",
        type=int,
        default=0,
        show_default=True,
        help="Keep the k largest components (0: all).",
    ),
    click.option(
        "--smooth",
        type=float,
        default=0.0,
        show_default=True,
        help="Smooth contours: Gaussian sigma in px (0: off).",
    ),
    click.option(
        "--pixel-spacing",
        default=None,
        metavar="MM[,MM]",
        help="Pixel size in mm (one value or ROW,COL) for areas in mm^2.",
    ),
]

OPTION_KEYS = (
    "threshold",
    "tile",
    "overlap",
    "blend",
    "tta",
    "min_size",
    "fill_holes",
    "keep_largest",
    "smooth",
    "pixel_spacing",
)


def inference_flags(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Add the inference flags to a click command (applied in reverse so --help lists them in order)."""
    for option in reversed(_FLAGS):
        fn = option(fn)
    return fn


def options_from_flags(kwargs: dict[str, Any]) -> InferenceOptions:
    """Pop the inference flags out of a command's kwargs and build validated options."""
    vals = {k: kwargs.pop(k) for k in OPTION_KEYS}
    vals["pixel_spacing_mm"] = vals.pop("pixel_spacing")
    return InferenceOptions(**vals)
