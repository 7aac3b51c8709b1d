"""Masks, overlays, GeoJSON and statistics for image files, with any predictor; no TensorFlow.

``kseg predict`` calls :func:`predict_files` for every model kind, so a ``.tflite`` on a device and
a ``.keras`` on a workstation write the same files through the same path
(:func:`kseg.inference.segment_image`): ``<stem>_mask.png`` (0/255; K classes: class ids spread over 0..255) and ``<stem>_overlay.png``
(the image with a tint and outline per class), and on request ``<stem>.geojson`` (one polygon per
component, pixel coordinates) and ``<stem>_stats.json`` (areas, perimeters, boxes, components).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from kseg.atomic import write_bytes, write_json
from kseg.data.io import read_image
from kseg.inference.classes import predictor_class_names
from kseg.inference.options import InferenceOptions
from kseg.inference.segment import segment_image
from kseg.runtime.protocol import Predictor


def predict_files(
    predictor: Predictor,
    inputs: list[Path] | list[str],
    out_dir: str | os.PathLike[str],
    *,
    tile: bool = False,
    overlap: float = 0.25,
    options: InferenceOptions | None = None,
    geojson: bool = False,
    stats: bool = False,
) -> list[dict[str, Any]]:
    """Write ``<stem>_mask.png`` (0/255; K classes: class ids spread over 0..255) and ``<stem>_overlay.png`` for each input image, and
    ``<stem>.geojson`` / ``<stem>_stats.json`` when asked.

    Args:
        options: inference options; without them ``tile=True`` means ``tile="on"`` and
            ``False`` ``"auto"`` (see :class:`kseg.inference.InferenceOptions`).

    Returns one record per input: paths written, image size, foreground fraction, area,
    component count and threshold; for K > 1 classes also ``classes``: per class name its
    ``area_px`` and ``fraction`` of the image (with ``stats``: its ``component_count`` too).

    Raises:
        DataError: an input that cannot be read (the message names it).
    """
    opts = options or InferenceOptions(tile="on" if tile else "auto", overlap=overlap)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = predictor_class_names(predictor)
    records = []
    for src in map(Path, inputs):
        image = read_image(src, int(predictor.channels))
        res = segment_image(predictor, image, opts, class_names=names)
        mask_path = out / f"{src.stem}_mask.png"
        overlay_path = out / f"{src.stem}_overlay.png"
        write_bytes(mask_path, res.mask_png())
        write_bytes(overlay_path, res.overlay_png())
        rec: dict[str, Any] = {
            "input": str(src),
            "mask": str(mask_path),
            "overlay": str(overlay_path),
            "height": int(image.shape[0]),
            "width": int(image.shape[1]),
            "foreground_fraction": float((res.mask > 0).mean()),
            "threshold": res.threshold,
            "tiled": res.tiled,
        }
        if res.num_classes > 1:
            rec["classes"] = {
                names[c]: {
                    "area_px": int(np.count_nonzero(res.mask == c)),
                    "fraction": float((res.mask == c).mean()),
                }
                for c in range(1, res.num_classes)
            }
        if stats:
            s = res.stats()
            stats_path = out / f"{src.stem}_stats.json"
            write_json(stats_path, {"input": str(src), **s})
            rec.update(
                stats=str(stats_path), area_px=s["area_px"], component_count=s["component_count"]
            )
            if "area_mm2" in s:
                rec["area_mm2"] = s["area_mm2"]
            for c, entry in s.get("classes", {}).items():
                rec["classes"][names[int(c)]]["component_count"] = entry["component_count"]
        if geojson:
            gj_path = out / f"{src.stem}.geojson"
            write_bytes(gj_path, json.dumps(res.geojson()).encode("utf-8"))
            rec["geojson"] = str(gj_path)
        records.append(rec)
    return records


__all__ = ["predict_files"]
