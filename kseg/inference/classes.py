"""Class names and colours of a model's output: one source for ``kseg predict``, ``kseg serve``
(its JSON, GeoJSON and page legend) and ``kseg export android`` (``labels.txt``).

Names are indexed by class id with ``"background"`` first (as :func:`kseg.config.class_names`):
a binary model has two, ``("background", NAME)``; a K-class softmax model has K. They come from,
in this order, the run configuration beside the model file (``config.yaml`` of its run
directory, read with :func:`kseg.config.class_names`), the model card's ``output.classes``, the
labels of an Android bundle's card (``bundle.labels``), and last ``class_1``, ``class_2``, ...
numpy only: no TensorFlow.

Example:
    >>> class_colour_hex(1), class_colour_hex(2)
    ('#ff0000', '#00a0ff')
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kseg.errors import KsegError

#: RGB colour per class id (0, the background, is never drawn); class 1 is the binary overlay's red
CLASS_COLOURS: tuple[tuple[int, int, int], ...] = (
    (0, 0, 0),
    (255, 0, 0),
    (0, 160, 255),
    (255, 200, 0),
    (0, 200, 80),
    (200, 60, 255),
    (255, 120, 0),
    (0, 220, 220),
    (255, 0, 150),
)


def class_colour(cls: int) -> tuple[int, int, int]:
    """RGB colour of class ``cls`` (the palette repeats after its eight foreground colours)."""
    cls = int(cls)
    if cls <= 0:
        return CLASS_COLOURS[0]
    return CLASS_COLOURS[1 + (cls - 1) % (len(CLASS_COLOURS) - 1)]


def class_colour_hex(cls: int) -> str:
    """``#rrggbb`` of :func:`class_colour` (for the web page and reports)."""
    return "#{:02x}{:02x}{:02x}".format(*class_colour(cls))


def default_class_names(num_classes: int) -> tuple[str, ...]:
    """``("background", "foreground")`` for one output channel, else ``background, class_1, ...``."""
    k = int(num_classes)
    if k <= 1:
        return ("background", "foreground")
    return ("background", *(f"class_{i}" for i in range(1, k)))


def _names_from(value: Any, num_classes: int) -> tuple[str, ...] | None:
    """A card's class-name entry (a list by class id, or ``{id: name}``) when it fits the model."""
    if isinstance(value, dict):
        try:
            value = [value[k] for k in sorted(value, key=int)]
        except (TypeError, ValueError):
            return None
    if not isinstance(value, (list, tuple)) or not all(isinstance(n, str) for n in value):
        return None
    k = int(num_classes)
    if len(value) == max(2, k):
        return tuple(value)
    if k <= 1 and len(value) == 1:  # a binary bundle's labels.txt names the one channel
        return ("background", value[0])
    return None


def predictor_class_names(predictor: Any) -> tuple[str, ...]:
    """Names of ``predictor``'s classes by class id, background first (see the module docstring).

    Args:
        predictor: an opened model (:func:`kseg.runtime.open_model`); its ``path``, ``card`` and
            ``num_classes`` are read when present.
    """
    k = int(getattr(predictor, "num_classes", 1))
    path = getattr(predictor, "path", None)
    if path is not None:
        names = run_class_names(Path(path), k)
        if names is not None:
            return names
    card = getattr(predictor, "card", None) or {}
    for value in (
        (card.get("output") or {}).get("classes"),
        (card.get("bundle") or {}).get("labels"),
    ):
        names = _names_from(value, k)
        if names is not None:
            return names
    return default_class_names(k)


def run_class_names(model_path: Path, num_classes: int) -> tuple[str, ...] | None:
    """:func:`kseg.config.class_names` of the run that holds ``model_path`` (its ``config.yaml``),
    or None without a readable run configuration for this number of classes."""
    from kseg.config import class_names, load_run_config

    cfg_path = Path(model_path).resolve().parent / "config.yaml"
    if not cfg_path.is_file():
        return None
    try:
        cfg = load_run_config(cfg_path)
    except KsegError:
        return None
    if int(cfg.model.num_classes) != int(num_classes):
        return None
    return tuple(class_names(cfg))


def class_legend(names: tuple[str, ...] | list[str]) -> list[dict[str, Any]]:
    """``[{"id", "name", "colour"}]`` for the foreground classes (ids 1..), as the page draws them."""
    return [
        {"id": i, "name": str(n), "colour": class_colour_hex(i)} for i, n in enumerate(names) if i
    ]


__all__ = [
    "CLASS_COLOURS",
    "class_colour",
    "class_colour_hex",
    "class_legend",
    "default_class_names",
    "predictor_class_names",
    "run_class_names",
]
