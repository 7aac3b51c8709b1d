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

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from kseg.data.io import StoredMask, _colour_key, describe_ids, foreground_ids

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
    """

    kind: str
    shape: tuple[int, int]
    classes: dict[int, dict[str, Any]] = field(default_factory=dict)
    values: list[int] = field(default_factory=list)


def _keys(stored: StoredMask) -> np.ndarray:
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
    keys = _keys(stored)
    if len(ids) == 1:
        regions = {ids[0]: keys != 0}
    else:
        regions = {k: keys == k for k in ids}
    for k, region in regions.items():
        out.classes[int(k)] = {"pixels": int(region.sum()), "objects": _objects(region)}
    return out


def _label(kind: str, key: int) -> str:
    return describe_ids(kind, [key]).split(" ", 1)[1] if kind == "colour" else str(key)


def folder_classes(masks: Iterable[tuple[str, MaskClasses | None]]) -> dict[str, Any]:
    """What the masks of a folder hold, class by class.

    Args:
        masks: ``(file name, summary)`` pairs (``None``: no mask or an unreadable one).

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
    for name, m in rows:
        kinds[m.kind] = kinds.get(m.kind, 0) + 1
        total_px += m.shape[0] * m.shape[1]
        for k in m.classes:
            seen.setdefault(k, []).append(name)
    kind = max(kinds, key=lambda k: kinds[k]) if kinds else "gray"
    need = min(2, len(rows)) or 1
    real = {k for k, files in seen.items() if len(files) >= need}
    stray = {_label(kind, k): files for k, files in sorted(seen.items()) if k not in real}
    classes: dict[str, Any] = {}
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
    "MaskClasses",
    "folder_classes",
    "merge_guard_message",
    "merged_classes",
    "summarize_mask",
]
