"""The data fingerprint: what a folder of images and masks looks like, in numbers.

nnU-Net's planning starts from a "dataset fingerprint" (image sizes, spacings, intensity
statistics, class sizes); this is the 2D, CPU-budget version: sizes, channels, intensity
statistics, foreground fraction, object sizes, the classes of the masks (presence, pixel share
and object sizes per class) and the number of groups (patients, exams).

Reference: Isensee et al., "nnU-Net: a self-configuring method for deep learning-based biomedical
image segmentation", Nature Methods 18, 2021.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from kseg.errors import DataError


def _summary(values: list[float]) -> dict[str, float]:
    a = np.asarray(values, dtype=np.float64)
    return {
        "min": float(a.min()),
        "median": float(np.median(a)),
        "max": float(a.max()),
        "mean": float(a.mean()),
    }


def image_stats(image: np.ndarray, mask: np.ndarray) -> dict[str, Any]:
    """Numbers of one ``(H, W, C)`` uint8 image and its ``(H, W)`` {0, 1} mask.

    Objects are the 8-connected foreground components; an object's size is its equivalent
    diameter (``2 * sqrt(area / pi)``) as a fraction of the image's shorter side.
    """
    from scipy import ndimage

    h, w = mask.shape[:2]
    gray = image.shape[-1] == 1 or bool(
        np.array_equal(image[..., 0], image[..., 1])
        and np.array_equal(image[..., 1], image[..., 2])
    )
    labels, n = ndimage.label(mask > 0, structure=np.ones((3, 3), bool))
    areas = np.bincount(labels.ravel())[1:] if n else np.zeros(0, np.int64)
    diameters = 2.0 * np.sqrt(areas / np.pi) / min(h, w)
    return {
        "height": h,
        "width": w,
        "gray": gray,
        "foreground": float((mask > 0).mean()),
        "objects": int(n),
        "diameters": diameters.tolist(),
    }


def fingerprint(
    path: str | os.PathLike[str],
    *,
    group_regex: str | None = None,
    max_images: int = 400,
    seed: int = 0,
    classes: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Fingerprint the folder dataset at ``path`` (``images/`` + ``masks/``, see ``kseg.data``).

    Args:
        group_regex: as ``data.group_regex``: which part of a file name names its group.
        max_images: read at most this many (an evenly spread, seeded sample); counts and groups
            always cover every file.
        classes: ``data.classes`` (name -> id or colour), to name the classes found; default:
            the folder's ``labelmap.txt`` / ``class_names.txt`` / ``classes.json`` if any.

    Returns:
        ``{"path", "n_images", "n_groups", "sampled", "height", "width", "channels",
        "intensity": {"mean", "std", "p01", "p99"}, "foreground_fraction": {...},
        "empty_masks", "objects_per_image": {...}, "object_diameter": {"median", "p10", "min"},
        "n_classes", "multi_class", "classes": {label: {"name", "masks", "masks_fraction",
        "pixel_share", "objects_per_image", "object_diameter": {"median", "p10", "min"}}}}``
        (sizes in pixels; intensity of pixel/255; diameters as a fraction of the shorter side).
        The foreground numbers above ``classes`` take all foreground classes together; a label
        is a palette index, grey value or colour ``[R, G, B]`` (:mod:`kseg.data.classes`), and
        ``objects_per_image`` of a class counts the images that hold it.
    """
    from kseg.data.classes import folder_classes, summarize_mask
    from kseg.data.folder import scan_folder
    from kseg.data.io import mask_to_ids, read_image, read_stored_mask

    if classes is None:  # names stored with the data (kseg.data.classes.CLASS_FILES)
        from kseg.data.classes import read_class_table

        found = read_class_table(path)
        classes = found[0] if found else None
    samples = scan_folder(path, group_regex=group_regex)
    if not samples:
        raise DataError(f"{path}: no images to fingerprint")
    rng = np.random.default_rng(seed)
    picked = (
        samples
        if len(samples) <= max_images
        else [samples[i] for i in sorted(rng.choice(len(samples), max_images, replace=False))]
    )
    rows, pixels, per_mask = [], [], []
    for s in picked:
        image = read_image(s.image, 3)
        stored = read_stored_mask(s.mask)
        mask = mask_to_ids(stored, s.mask, 1)  # all foreground classes together
        if mask.shape[:2] != image.shape[:2]:
            raise DataError(
                f"{s.mask}: mask is {mask.shape[1]}x{mask.shape[0]} but its image is "
                f"{image.shape[1]}x{image.shape[0]}; masks must match their images"
            )
        rows.append(image_stats(image, mask))
        per_mask.append((s.mask.name, summarize_mask(stored)))
        flat = image.reshape(-1, 3)
        take = rng.choice(len(flat), min(len(flat), 4096), replace=False)
        pixels.append(flat[take])
    px = np.concatenate(pixels).astype(np.float64) / 255.0
    gray = all(r["gray"] for r in rows)
    px = px[:, :1] if gray else px
    diameters = [d for r in rows for d in r["diameters"]]
    found = folder_classes(per_mask, classes)
    return {
        "path": str(path),
        "n_images": len(samples),
        "n_groups": len({s.group for s in samples}),
        "sampled": len(picked),
        "height": _summary([r["height"] for r in rows]),
        "width": _summary([r["width"] for r in rows]),
        "channels": 1 if gray else 3,
        "intensity": {
            "mean": [round(float(v), 4) for v in px.mean(axis=0)],
            "std": [round(float(v), 4) for v in px.std(axis=0)],
            "p01": float(np.percentile(px, 1)),
            "p99": float(np.percentile(px, 99)),
        },
        "foreground_fraction": _summary([r["foreground"] for r in rows]),
        "empty_masks": sum(1 for r in rows if r["objects"] == 0),
        "objects_per_image": _summary([r["objects"] for r in rows]),
        "object_diameter": {
            "median": float(np.median(diameters)) if diameters else 0.0,
            "p10": float(np.percentile(diameters, 10)) if diameters else 0.0,
            "min": float(np.min(diameters)) if diameters else 0.0,
        },
        "n_classes": len(found["classes"])
        if found["multi_class"]
        else min(1, len(found["classes"])),
        "multi_class": found["multi_class"],
        "classes": _per_class(found, per_mask),
    }


def _per_class(found: dict[str, Any], per_mask: list) -> dict[str, Any]:
    """Per class label: its name (from ``data.classes``), presence and object diameters."""
    from kseg.data.classes import label_of

    out: dict[str, Any] = {}
    for label, c in found["classes"].items():
        diam = [
            2.0 * np.sqrt(a / np.pi) / min(m.shape)
            for _, m in per_mask
            for key, cls in m.classes.items()
            if label_of(key, m.kind) == label
            for a in cls["objects"]
        ]
        out[label] = {
            "name": c.get("name"),
            "masks": c["masks"],
            "masks_fraction": c["masks_fraction"],
            "pixel_share": c["pixel_share"],
            "objects_per_image": c["objects_per_mask"],
            "object_diameter": {
                "median": float(np.median(diam)) if diam else 0.0,
                "p10": float(np.percentile(diam, 10)) if diam else 0.0,
                "min": float(np.min(diam)) if diam else 0.0,
            },
        }
    return out


__all__ = ["fingerprint", "image_stats"]
