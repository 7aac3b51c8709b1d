"""Which classes a folder's masks hold, and how often and how large each one is (numpy + OpenCV).

One reading serves the binary-merge guard of ``kseg train``, ``kseg data check`` and ``report``
and the planner's fingerprint. A *label* is what a mask file stores for a class: a palette
index, a grey value, or a colour (``R << 16 | G << 8 | B``); see
:func:`kseg.data.io.foreground_ids` for which labels count (those that fill an area, so the
edges of an anti-aliased mask do not).

A folder's *classes* are the labels found in at least two masks (all masks when there is one);
a label found in a single mask of many is *stray*. A folder holds several classes when one mask
holds two classes, or when its masks use two different ids (255 and 65535, the usual binary
foreground, not counted): 0/1 and 0/255 masks mixed are one class.

Example:
    >>> s = summarize_mask(read_stored_mask("masks/0000.png"))
    >>> s.kind, sorted(s.classes)
    ('palette', [1, 2])
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from kseg.data.io import StoredMask, _colour_key, describe_ids, foreground_ids
from kseg.errors import DataError

#: grey values that mean "foreground" in a binary mask, not a class id
BINARY_FOREGROUND = (255, 65535)
_Q = (0.1, 0.5, 0.9)


@dataclass
class MaskClasses:
    """The classes of one mask.

    Attributes:
        kind: the :class:`~kseg.data.io.StoredMask` kind.
        shape: ``(H, W)``.
        classes: label -> ``{"pixels": int, "objects": [area_px, ...]}`` (8-connected
            components), for every label that fills an area; with one such label, every
            non-zero pixel (its anti-aliased edge too) counts for it.
        values: every stored value (palette index / grey value; colour masks: none).
        colours: palette masks: label -> its palette colour ``[R, G, B]`` (to match names
            given by colour, as ``labelmap.txt`` does).
    """

    kind: str
    shape: tuple[int, int]
    classes: dict[int, dict[str, Any]] = field(default_factory=dict)
    values: list[int] = field(default_factory=list)
    colours: dict[int, str] = field(default_factory=dict)


def label_keys(stored: StoredMask) -> np.ndarray:
    """``(H, W)`` labels: palette indices, grey values, or colours as ``R << 16 | G << 8 | B``."""
    if stored.kind == "colour":
        return _colour_key(stored.rgb)  # type: ignore[arg-type]
    return stored.values


def _objects(region: np.ndarray) -> list[int]:
    n, _, stats, _ = cv2.connectedComponentsWithStats(region.astype(np.uint8), connectivity=8)
    return [int(a) for a in stats[1:n, cv2.CC_STAT_AREA]]


def summarize_mask(stored: StoredMask) -> MaskClasses:
    """Pixels and objects per class of one stored mask (see :class:`MaskClasses`)."""
    out = MaskClasses(stored.kind, stored.shape)
    if stored.kind != "colour":
        out.values = [int(v) for v in np.unique(stored.values)]
    if stored.kind == "lossy":
        fg = stored.values >= 128
        if fg.any():
            out.classes[255] = {"pixels": int(fg.sum()), "objects": _objects(fg)}
        return out
    _, ids = foreground_ids(stored)
    keys = label_keys(stored)
    if len(ids) == 1:
        regions = {ids[0]: keys != 0}
    else:
        regions = {k: keys == k for k in ids}
    for k, region in regions.items():
        out.classes[int(k)] = {"pixels": int(region.sum()), "objects": _objects(region)}
        if stored.kind == "palette" and stored.rgb is not None:
            first = np.argwhere(stored.values == k)
            if len(first):
                out.colours[int(k)] = label_of(stored.rgb[tuple(first[0])].tolist())
    return out


def _label(kind: str, key: int) -> str:
    return describe_ids(kind, [key]).split(" ", 1)[1] if kind == "colour" else str(key)


def label_of(value: Any, kind: str | None = None) -> str:
    """The label string of a ``data.classes`` value or a stored key: ``"2"`` or
    ``"[128, 0, 0]"`` (``kind="colour"`` turns an int key into its colour)."""
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(str(int(c)) for c in value) + "]"
    if kind == "colour":
        return _label("colour", int(value))
    return str(int(value))


def folder_classes(
    masks: Iterable[tuple[str, MaskClasses | None]], names: dict[str, Any] | None = None
) -> dict[str, Any]:
    """What the masks of a folder hold, class by class.

    Args:
        masks: ``(file name, summary)`` pairs (``None``: no mask or an unreadable one).
        names: a ``data.classes`` table (name -> id or colour) naming the labels: each class
            then has a ``"name"`` (None for a label the table does not list).

    Returns:
        ``{"kind", "n_masks", "classes": {label: {"masks", "masks_fraction", "pixel_share",
        "objects_per_mask", "object_area_fraction": [p10, p50, p90]}}, "stray": {label: [files]},
        "multi_class", "ids", "example"}``: ``classes`` ordered by label; ``pixel_share`` of all
        mask pixels; ``object_area_fraction`` of the image area; ``multi_class`` says whether
        binary training would merge classes (``ids`` and ``example`` name them).
    """
    rows = [(n, m) for n, m in masks if m is not None]
    kinds: dict[str, int] = {}
    total_px = 0
    seen: dict[int, list[str]] = {}
    colour_of: dict[int, str] = {}
    for name, m in rows:
        kinds[m.kind] = kinds.get(m.kind, 0) + 1
        for k, c in m.colours.items():
            colour_of.setdefault(k, c)
        total_px += m.shape[0] * m.shape[1]
        for k in m.classes:
            seen.setdefault(k, []).append(name)
    kind = max(kinds, key=lambda k: kinds[k]) if kinds else "gray"
    need = min(2, len(rows)) or 1
    real = {k for k, files in seen.items() if len(files) >= need}
    stray = {_label(kind, k): files for k, files in sorted(seen.items()) if k not in real}
    classes: dict[str, Any] = {}
    by_label = {label_of(v): n for n, v in (names or {}).items()}
    for k in sorted(real):
        px = objs = 0
        areas: list[float] = []
        for _, m in rows:
            c = m.classes.get(k)
            if c is None:
                continue
            px += c["pixels"]
            objs += len(c["objects"])
            areas += [a / (m.shape[0] * m.shape[1]) for a in c["objects"]]
        n = len(seen[k])
        classes[_label(kind, k)] = {
            **(
                {"name": by_label.get(_label(kind, k), by_label.get(colour_of.get(k, "")))}
                if names
                else {}
            ),
            "masks": n,
            "masks_fraction": round(n / max(len(rows), 1), 4),
            "pixel_share": round(px / max(total_px, 1), 5),
            "objects_per_mask": round(objs / max(n, 1), 3),
            "object_area_fraction": [round(float(q), 6) for q in np.quantile(areas, _Q)]
            if areas
            else [],
        }
    found = merged_classes(
        [(n, (m.kind, [k for k in m.classes if k in real])) for n, m in rows], need=1
    )
    return {
        "kind": kind,
        "n_masks": len(rows),
        "classes": classes,
        "stray": stray,
        "multi_class": found is not None,
        "ids": found[1] if found else [],
        "example": found[2] if found else None,
    }


#: files in a data folder that name its classes, as annotation tools (and ``kseg data
#: from-geojson``) write them
CLASS_FILES = ("labelmap.txt", "class_names.txt", "classes.json")


def read_class_table(
    folder: str | os.PathLike[str],
) -> tuple[dict[str, int | tuple[int, int, int]], Path] | None:
    """Class names stored with the data: ``(data.classes table, file)`` or None.

    - ``labelmap.txt`` (PASCAL VOC / CVAT segmentation export): ``name:R,G,B:parts:actions``
      per line, ``#`` comments, background first. Names map to their colour, which the masks
      hold (RGB masks) or their palette gives each index (palette masks).
    - ``class_names.txt`` (labelme2voc): one name per line, index = line number, the first line
      (``_background_`` / ``background``) being index 0. Names map to their index.
    - ``classes.json`` (``kseg data from-geojson``): ``{"classes": {name: label}, "background":
      0}``; one class is label 255 (a binary model named after it), several are ``1..K``.

    Raises:
        DataError: a file that is there but cannot be read as such a table (names the line).
    """
    root = Path(folder)
    for name in CLASS_FILES:
        path = root / name
        if not path.is_file():
            continue
        read = _classes_json_entries if name == "classes.json" else _class_text_entries
        table: dict[str, int | tuple[int, int, int]] = {}
        for label, value in read(path):
            if label.lower().strip("_") == "background" or "," in label:
                raise DataError(
                    f"{path}: class {label!r} cannot be a foreground name; name the classes in "
                    f"data.classes"
                )
            table[label] = value
        return (table, path) if table else None
    return None


_Entry = tuple[str, int | tuple[int, int, int]]


def _class_text_entries(path: Path) -> list[_Entry]:
    """The foreground ``(name, id or colour)`` of a ``labelmap.txt`` or ``class_names.txt``."""
    lines = [
        ln.strip()
        for ln in path.read_text(encoding="utf-8-sig").splitlines()
        if ln.strip() and not ln.lstrip().startswith("#")
    ]
    entries: list[_Entry] = []
    for i, ln in enumerate(lines):
        if path.name == "labelmap.txt":
            parts = ln.split(":")
            try:
                rgb = tuple(int(c) for c in parts[1].split(","))
            except (IndexError, ValueError):
                rgb = ()
            if len(rgb) != 3 or not all(0 <= c <= 255 for c in rgb):
                raise DataError(
                    f"{path}: line {ln!r} is not 'name:R,G,B::' (PASCAL VOC labelmap); fix "
                    f"it or name the classes in data.classes"
                )
            if rgb != (0, 0, 0):  # black: the background
                entries.append((parts[0].strip(), rgb))  # type: ignore[arg-type]
        elif i > 0:  # line 0: the background
            entries.append((ln, i))
    return entries


def _classes_json_entries(path: Path) -> list[_Entry]:
    """The ``(name, label)`` of ``{"classes": {name: label 1..255}, "background": 0}``, as ``kseg
    data from-geojson`` writes it."""
    import json

    try:
        doc = json.loads(path.read_text(encoding="utf-8-sig"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise DataError(
            f"{path}: not JSON ({exc}); fix it or name the classes in data.classes"
        ) from None
    classes = doc.get("classes") if isinstance(doc, dict) else None
    if not isinstance(classes, dict) or not all(
        isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 255 for v in classes.values()
    ):
        raise DataError(
            f'{path}: expected {{"classes": {{"name": label 1..255, ...}}, "background": 0}} (as '
            f"kseg data from-geojson writes it); fix it or name the classes in data.classes"
        )
    return [(str(n), int(v)) for n, v in classes.items()]


def merged_classes(
    masks: Sequence[tuple[str, tuple[str, list[int]] | None]], *, need: int = 2
) -> tuple[str, list[int], str] | None:
    """``(kind, ids, example file)`` when the masks hold two or more foreground classes.

    ``masks`` pairs a file name with :func:`~kseg.data.io.foreground_ids`. Only labels found in
    at least ``need`` masks (all of them when fewer masks have labels) count, so a stray value
    in one mask is not a class; see the module docstring for the rule.
    """
    rows = [(n, fg) for n, fg in masks if fg and fg[1]]
    count: dict[int, int] = {}
    for _, (_, ids) in rows:
        for i in ids:
            count[i] = count.get(i, 0) + 1
    need = min(need, len(rows)) or 1
    real = {i for i, c in count.items() if c >= need}
    union: set[int] = set()
    example: tuple[str, str] | None = None
    for name, (kind, ids) in rows:
        mine = [i for i in ids if i in real]
        if len(mine) >= 2:
            return kind, sorted(mine) if kind != "colour" else mine, name
        if kind != "colour":
            new = {i for i in mine if i not in BINARY_FOREGROUND} - union
            if new and union and example is None:
                example = (kind, name)
            union |= new
    if len(union) >= 2 and example is not None:
        return example[0], sorted(union), example[1]
    return None


def merge_guard_message(folder: str, found: tuple[str, list[int], str]) -> str:
    """The one line of the binary-merge guard: folder, ids, an example file and the fix."""
    kind, ids, example = found
    if kind == "colour":
        names = ", ".join(
            f"class_{i + 1}: [{k >> 16}, {(k >> 8) & 255}, {k & 255}]" for i, k in enumerate(ids)
        )
        fix = f"--set 'data.classes={{{names}}}'"
    else:
        names = ", ".join(f"class_{i}: {i}" for i in ids)
        fix = f"--set model.num_classes={max(ids) + 1} (or name them: data.classes: {{{names}}})"
    return (
        f"{folder}: masks hold {len(ids)} foreground classes ({describe_ids(kind, ids)}, e.g. "
        f"{example}) but model.num_classes is 1, which would merge them into one foreground; "
        f"train them as classes with {fix}, or set data.merge_classes: true to merge them"
    )


__all__ = [
    "BINARY_FOREGROUND",
    "CLASS_FILES",
    "read_class_table",
    "MaskClasses",
    "folder_classes",
    "label_keys",
    "label_of",
    "merge_guard_message",
    "merged_classes",
    "summarize_mask",
]
