"""``kseg data from-geojson``: polygon annotations (QuPath, viewers, GIS tools) -> label masks.

Annotations are GeoJSON in pixel coordinates (x to the right, y down), either one file per image
(``case01.geojson`` / ``case01.json`` for ``images/case01.png``) or one file whose features name
their image in a property (``image``, ``image_id``, ``filename`` or ``file``). Polygons and
multipolygons are filled, their holes left out; features are drawn in file order (later ones on
top). The class of a feature comes from ``properties.classification.name`` (QuPath), else
``class``, ``label``, ``name`` or ``category``, else ``foreground``. One class gives 0/255 masks;
several give labels ``1..K`` in sorted class order (``classes.json`` lists them).

The output is a kseg folder dataset: ``OUT/images`` (links to the annotated images),
``OUT/masks/<stem>.png``, ``OUT/classes.json`` and ``OUT/report.json`` (unmatched files and
invalid geometries by name: ring with fewer than three points, non-numeric or non-finite
coordinates, unsupported geometry types).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from kseg.data.io import header_size, is_image_file
from kseg.errors import DataError

_IMAGE_KEYS = ("image", "image_id", "filename", "file")
_CLASS_KEYS = ("class", "label", "name", "category")
_SHIFT = 4  # fixed-point bits for sub-pixel vertices in cv2.fillPoly


def _features(obj: Any) -> list[dict[str, Any]]:
    if isinstance(obj, dict) and obj.get("type") == "FeatureCollection":
        return list(obj.get("features") or [])
    if isinstance(obj, dict) and obj.get("type") == "Feature":
        return [obj]
    if isinstance(obj, list):  # QuPath exports a bare list of features
        return [f for f in obj if isinstance(f, dict)]
    if isinstance(obj, dict) and obj.get("type") in ("Polygon", "MultiPolygon"):
        return [{"type": "Feature", "geometry": obj, "properties": {}}]
    return []


def class_of(props: dict[str, Any] | None) -> str:
    props = props or {}
    cls = props.get("classification")
    if isinstance(cls, dict) and cls.get("name"):
        return str(cls["name"])
    for key in _CLASS_KEYS:
        if props.get(key) not in (None, ""):
            return str(props[key])
    return "foreground"


def _rings(geom: dict[str, Any]) -> list[list[Any]] | None:
    """Polygons as lists of rings (first: exterior, rest: holes); None for other types."""
    t = (geom or {}).get("type")
    coords = (geom or {}).get("coordinates")
    if t == "Polygon":
        return [coords]
    if t == "MultiPolygon":
        return list(coords or [])
    return None


def _ring_array(ring: Any) -> np.ndarray | None:
    try:
        arr = np.asarray(ring, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if arr.ndim != 2 or arr.shape[1] < 2 or not np.isfinite(arr).all():
        return None
    arr = arr[:, :2]
    if len(arr) > 1 and np.array_equal(arr[0], arr[-1]):
        arr = arr[:-1]
    if len(np.unique(arr, axis=0)) < 3:
        return None
    return arr


def rasterize(
    features: list[dict[str, Any]],
    shape: tuple[int, int],
    labels: dict[str, int],
    where: str,
    problems: list[str],
) -> np.ndarray:
    """Label mask ``(H, W)`` uint8 from features; problems (by ``where`` and feature index) are
    appended to ``problems``."""
    mask = np.zeros(shape, np.uint8)
    for i, feat in enumerate(features):
        geom = feat.get("geometry") if isinstance(feat, dict) else None
        polys = _rings(geom)
        if polys is None:
            problems.append(
                f"{where} feature {i}: geometry {(geom or {}).get('type')!r} is not a Polygon or MultiPolygon"
            )
            continue
        label = labels[class_of(feat.get("properties"))]
        for p, rings in enumerate(polys):
            arrs = [_ring_array(r) for r in (rings or [])]
            if not arrs or arrs[0] is None:
                problems.append(
                    f"{where} feature {i} polygon {p}: exterior ring has fewer than 3 valid points"
                )
                continue
            tmp = np.zeros(shape, np.uint8)
            cv2.fillPoly(
                tmp, [np.round(arrs[0] * (1 << _SHIFT)).astype(np.int32)], 1, cv2.LINE_8, _SHIFT
            )
            for h, hole in enumerate(arrs[1:], start=1):
                if hole is None:
                    problems.append(
                        f"{where} feature {i} polygon {p}: hole {h} has fewer than 3 valid points"
                    )
                    continue
                cv2.fillPoly(
                    tmp, [np.round(hole * (1 << _SHIFT)).astype(np.int32)], 0, cv2.LINE_8, _SHIFT
                )
            mask[tmp > 0] = label
    return mask


def _load(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not valid GeoJSON ({exc})") from None


def from_geojson(
    images: str | os.PathLike[str],
    annotations: str | os.PathLike[str],
    out: str | os.PathLike[str],
) -> dict[str, Any]:
    """Convert; return the report (also written to ``OUT/report.json``)."""
    from kseg.atomic import write_bytes, write_json

    img_dir, ann, out = Path(images), Path(annotations), Path(out)
    if not img_dir.is_dir():
        raise DataError(f"{img_dir}: --images folder not found")
    if not ann.exists():
        raise DataError(f"{ann}: --annotations not found (a folder of .geojson files or one file)")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(f"{out}: --out exists and is not empty; choose a new folder")
    by_stem = {p.stem: p for p in sorted(img_dir.iterdir()) if is_image_file(p)}
    per_image: dict[str, list[dict[str, Any]]] = {}
    sources: dict[str, str] = {}
    unmatched_ann: list[str] = []
    if ann.is_dir():
        for f in sorted(ann.iterdir()):
            if f.suffix.lower() not in (".geojson", ".json"):
                continue
            if f.stem not in by_stem:
                unmatched_ann.append(f.name)
                continue
            per_image.setdefault(f.stem, []).extend(_features(_load(f)))
            sources[f.stem] = f.name
    else:
        for i, feat in enumerate(_features(_load(ann))):
            props = feat.get("properties") or {}
            ref = next((props[k] for k in _IMAGE_KEYS if props.get(k)), None)
            stem = Path(str(ref)).stem if ref else None
            if stem is None or stem not in by_stem:
                unmatched_ann.append(f"{ann.name} feature {i} ({ref or 'no image property'})")
                continue
            per_image.setdefault(stem, []).append(feat)
            sources[stem] = f"{ann.name}"
    if not per_image:
        raise DataError(
            f"{ann}: no annotation matches an image in {img_dir} (match by file stem or an 'image' property)"
        )
    classes = sorted({class_of(f.get("properties")) for fs in per_image.values() for f in fs})
    labels = {c: (255 if len(classes) == 1 else k + 1) for k, c in enumerate(classes)}
    problems: list[str] = []
    (out / "images").mkdir(parents=True)
    (out / "masks").mkdir()
    counts = {}
    for stem, feats in sorted(per_image.items()):
        src = by_stem[stem]
        size = header_size(src)
        if size is None:
            arr = cv2.imread(str(src), cv2.IMREAD_UNCHANGED)
            if arr is None:
                problems.append(f"{src.name}: image cannot be read")
                continue
            size = (arr.shape[1], arr.shape[0])
        mask = rasterize(feats, (size[1], size[0]), labels, sources[stem], problems)
        ok, enc = cv2.imencode(".png", mask)
        write_bytes(out / "masks" / f"{stem}.png", enc.tobytes())
        try:
            os.symlink(src.resolve(), out / "images" / src.name)
        except OSError:
            import shutil

            shutil.copy2(src, out / "images" / src.name)
        counts[stem] = int((mask > 0).sum())
    report = {
        "images": str(img_dir),
        "annotations": str(ann),
        "n_masks": len(counts),
        "classes": {c: labels[c] for c in classes},
        "images_without_annotation": sorted(set(by_stem) - set(per_image)),
        "unmatched_annotations": unmatched_ann,
        "invalid_geometries": problems,
        "foreground_pixels": counts,
    }
    write_json(out / "classes.json", {"classes": report["classes"], "background": 0})
    write_json(out / "report.json", report)
    return report


__all__ = ["class_of", "from_geojson", "rasterize"]
