"""``kseg data check``: find what would make a Dice untrustworthy before training on a folder.

Checks (each finding names its files):

- ``corrupt``: an image or mask that cannot be decoded; ``too_large``: above ``max_pixels``
  (from the header, never decoded);
- ``nan``: NaN/inf pixels in a float image: a few (<= ``nan_fill`` of the pixels) are filled with
  the image median by ``--fix``, more and the image is dropped;
- ``constant``: an image with a single value;
- ``exact_duplicate`` (same decoded pixels) and ``near_duplicate`` (perceptual difference hash
  within ``hash_bits`` bits); ``group_leak`` when the copies sit in different groups, i.e. they
  could land in training and validation;
- ``outlier``: per-image intensity statistics (mean, log std, 50/95 % quantiles scaled to the
  type's range) with a robust z-score above ``z_max`` (median/MAD), or noise of a DBSCAN on their
  first two principal components; and sizes that are rare *and* far from every common size
  (:func:`_size_outliers`: a few probe presets are all common, so none is an outlier);
- ``stray_mask_values`` (binary folder: a lossless mask with more than two values; multi-class
  folder: a value that is no class of the folder), ``empty_mask``, ``missing_mask``,
  ``mask_size`` (mask and image sizes differ), ``orphan_mask``;
- and the size and aspect distribution, and the classes of the masks: presence, pixel share and
  object sizes per class (:func:`kseg.data.classes.folder_classes`).

The originals are never changed. ``fix=OUT`` writes ``OUT/images``, ``OUT/masks`` (links to the
kept files; NaN-filled images and binarised masks as real files) and ``OUT/manifest.csv``: a
folder kseg trains on, holding what the report's ``action`` column says (images without a mask
are left out).

References:
    N. Krawetz, "Kind of like that" (difference hash), hackerfactor.com, 2013.
    M. Ester, H.-P. Kriegel, J. Sander, X. Xu, "A density-based algorithm for discovering clusters
    in large spatial databases with noise", KDD 1996 (DBSCAN).
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from kseg.data.classes import MaskClasses, folder_classes, read_class_table, summarize_mask
from kseg.data.folder import MANIFEST, MANIFEST_COLUMNS, _listing
from kseg.data.io import DEFAULT_MAX_PIXELS, _imread, header_size, is_image_file, read_stored_mask
from kseg.errors import DataError

_FEATURES = ("mean", "log_std", "q50", "q95")
#: MAD floors per feature: a MAD near 0 (all images alike, or all with a black border) must not
#: turn a small difference into a huge z-score
_FLOORS = np.array([0.02, 0.05, 0.02, 0.02])
#: dead zone of the difference hash, as a share of the pixel type's range (0.5 grey levels)
HASH_TOL = 0.002
#: a size is common when this share of the images (and at least 3) has it
COMMON_SIZE_SHARE = 0.02
#: a rare size is far when one side differs from every common size by more than this factor
SIZE_FACTOR = 1.5


@dataclass
class _Image:
    name: str
    path: Path
    mask: Path | None
    group: str
    meta: dict[str, str] = field(default_factory=dict)
    ok: bool = True
    fill_nan: bool = False
    sha: str | None = None
    dhash: np.ndarray | None = None
    feats: np.ndarray | None = None
    hw: tuple[int, int] | None = None
    classes: MaskClasses | None = None
    binarise: bool = False


def _gray_float(arr: np.ndarray) -> np.ndarray:
    a = arr.astype(np.float64)
    if a.ndim == 3:
        a = a[..., :3].mean(axis=2)
    return a


def dhash(gray: np.ndarray, side: int = 16, tol: float = 0.0) -> np.ndarray:
    """Difference hash: ``side x side`` bits, each whether a pixel is brighter than its right
    neighbour by more than ``tol`` in a ``(side) x (side + 1)`` area-resized copy.

    The dead zone ``tol`` keeps flat areas (black borders, letterbox bars) stable: without it,
    noise of a grey level or two flips half of their bits, and a noisy copy of a USGRA scan
    differed in up to 60 of 256 bits (0.5 grey levels: at most 8, distinct scans at least 20).
    """
    g = np.nan_to_num(gray.astype(np.float32))
    small = cv2.resize(g, (side + 1, side), interpolation=cv2.INTER_AREA)
    return (small[:, 1:] > small[:, :-1] + tol).ravel()


def _entries(
    root: Path, group_regex: str | None, group_column: str | None
) -> tuple[list[_Image], list[str]]:
    img_dir, mask_dir = root / "images", root / "masks"
    if not img_dir.is_dir():
        raise DataError(f"{root}: no images/ subfolder; put the images in {img_dir}")
    images = {p.stem: p for p in sorted(img_dir.iterdir()) if is_image_file(p)}
    if not images:
        raise DataError(f"{img_dir}: no images")
    masks = (
        {p.stem: p for p in sorted(mask_dir.iterdir()) if is_image_file(p)}
        if mask_dir.is_dir()
        else {}
    )
    manifest: dict[str, dict[str, str]] = {}
    if (root / MANIFEST).is_file():
        with (root / MANIFEST).open(newline="", encoding="utf-8-sig") as fh:
            for row in csv.DictReader(fh):
                row = {k.strip(): (v or "").strip() for k, v in row.items() if k}
                stem = Path(Path(row.get("image", "").replace("\\", "/")).name).stem
                manifest[stem] = row
    pattern = re.compile(group_regex) if group_regex else None
    out = []
    for stem, path in images.items():
        row = manifest.get(stem, {})
        group = row.get(group_column or "group") or ""
        if not group and pattern is not None:
            m = pattern.search(stem)
            group = (m.group(1) if m and pattern.groups else m.group(0)) if m else stem
        meta = {k: v for k, v in row.items() if k not in MANIFEST_COLUMNS}
        out.append(_Image(stem, path, masks.get(stem), group or stem, meta))
    orphans = sorted(p.name for s, p in masks.items() if s not in images)
    return out, orphans


def check_folder(
    path: str | os.PathLike[str],
    *,
    group_regex: str | None = None,
    group_column: str | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    nan_fill: float = 0.01,
    hash_bits: int = 10,
    z_max: float = 6.0,
    dbscan_min_samples: int = 5,
) -> dict[str, Any]:
    """Check a folder dataset; return the report (see the module docstring for the checks)."""
    root = Path(path)
    if not root.is_dir():
        raise DataError(f"{root}: data folder not found")
    items, orphans = _entries(root, group_regex, group_column)
    findings: list[dict[str, Any]] = []

    def add(kind: str, files: list[str], detail: str, action: str = "report") -> None:
        findings.append({"kind": kind, "files": files, "detail": detail, "action": action})

    for it in items:
        size = header_size(it.path)
        if max_pixels and size is not None and size[0] * size[1] > max_pixels:
            add(
                "too_large",
                [it.path.name],
                f"{size[0]}x{size[1]} above {max_pixels / 1e6:g} MP",
                "drop",
            )
            it.ok = False
            continue
        arr = _imread(it.path)
        if arr is None or arr.size == 0:
            add("corrupt", [it.path.name], "cannot be decoded", "drop")
            it.ok = False
            continue
        g = _gray_float(arr)
        if arr.dtype.kind == "f":
            bad = ~np.isfinite(g)
            frac = float(bad.mean())
            if frac > 0:
                if frac <= nan_fill:
                    add("nan", [it.path.name], f"{frac:.2%} NaN/inf pixels", "fill with median")
                    it.fill_nan = True
                else:
                    add("nan", [it.path.name], f"{frac:.2%} NaN/inf pixels", "drop")
                    it.ok = False
                    continue
            g = np.where(bad, np.nanmedian(np.where(bad, np.nan, g)), g) if frac else g
        it.hw = (int(g.shape[0]), int(g.shape[1]))
        if float(g.max()) == float(g.min()):
            add("constant", [it.path.name], f"every pixel is {g.flat[0]:g}", "drop")
            it.ok = False
            continue
        it.sha = hashlib.sha1(
            np.ascontiguousarray(arr).tobytes() + str(arr.shape).encode()
        ).hexdigest()
        # the same range as kseg.data.io reads it: uint16 full range, float 0..1 or 0..255
        scale = {"u1": 255.0, "u2": 65535.0}.get(f"{arr.dtype.kind}{arr.dtype.itemsize}", 0.0)
        if not scale:
            scale = 1.0 if float(g.max()) <= 1.0 else 255.0
        it.dhash = dhash(g, tol=HASH_TOL * scale)
        q50, q95 = np.quantile(
            g[:: max(1, g.shape[0] // 256), :: max(1, g.shape[1] // 256)], [0.5, 0.95]
        )
        it.feats = np.array(
            [
                float(g.mean()) / scale,
                np.log(max(float(g.std()) / scale, 1e-4)),
                q50 / scale,
                q95 / scale,
            ]
        )
        _check_mask(it, add, max_pixels)

    if orphans:
        add("orphan_mask", orphans, "mask without an image (ignored)")
    table = read_class_table(root)
    classes = folder_classes(
        ((i.mask.name, i.classes) for i in items if i.mask is not None),
        table[0] if table else None,
    )
    if table:
        classes["names_from"] = table[1].name
    _stray_values(items, classes, add)
    _duplicates([i for i in items if i.ok and i.sha], add, hash_bits)
    _outliers([i for i in items if i.ok and i.feats is not None], add, z_max, dbscan_min_samples)
    _size_outliers([i for i in items if i.ok and i.hw], add, z_max)
    sizes = [i.hw for i in items if i.hw]
    counts: dict[str, int] = defaultdict(int)
    for f in findings:
        counts[f["kind"]] += (
            len(f["files"])
            if f["kind"] not in ("exact_duplicate", "near_duplicate", "group_leak")
            else 1
        )
    return {
        "folder": str(root),
        "n_images": len(items),
        "n_kept": sum(i.ok for i in items),
        "counts": dict(sorted(counts.items())),
        "findings": findings,
        "sizes": _size_summary(sizes),
        "classes": classes,
        "_items": items,  # for --fix; removed before writing JSON
    }


def _check_mask(it: _Image, add, max_pixels: int | None) -> None:
    if it.mask is None:
        add(
            "missing_mask",
            [it.path.name],
            "no mask with this stem",
            "drop (the --fix folder is for training; add a mask to keep it)",
        )
        it.ok = False
        return
    try:
        stored = read_stored_mask(it.mask, max_pixels=max_pixels)
    except DataError:
        add("corrupt", [it.mask.name], "mask cannot be decoded", "drop")
        it.ok = False
        return
    if it.hw and stored.shape != it.hw:
        add(
            "mask_size",
            [it.mask.name],
            f"mask {stored.shape[0]}x{stored.shape[1]} vs image {it.hw[0]}x{it.hw[1]}",
            "drop",
        )
        it.ok = False
        return
    it.classes = summarize_mask(stored)
    if not it.classes.classes:
        add("empty_mask", [it.mask.name], "no foreground pixel", "keep")


def _stray_values(items: list[_Image], classes: dict[str, Any], add) -> None:
    """Mask values that are no class of the folder (see :mod:`kseg.data.classes`).

    Binary folder: a lossless mask with more than two values; ``--fix`` writes it binarised
    (non-zero = foreground), which is how binary training reads it. Multi-class folder: a mask
    with a value or colour that is no class of the folder; ``--fix`` leaves it out, since
    nobody can say which class its pixels are.
    """
    multi = classes["multi_class"]
    known = {int(k) for k in classes["classes"] if k.isdigit()}
    for it in items:
        m = it.classes
        if not it.ok or m is None or m.kind == "lossy":
            continue
        stray_labels = [k for k in m.classes if str(k) in classes["stray"]]
        if not multi:
            if len(m.values) > 2:
                shown = ", ".join(map(str, m.values[:8])) + (" ..." if len(m.values) > 8 else "")
                add(
                    "stray_mask_values",
                    [it.mask.name],  # type: ignore[union-attr]
                    f"values {shown}",
                    "binarise (non-zero = foreground) in the --fix copy",
                )
                it.binarise = True
            continue
        extra = [v for v in m.values if v and v not in known] if m.kind != "colour" else []
        if stray_labels and m.kind == "colour":
            extra = stray_labels
        if extra:
            what = "colours" if m.kind == "colour" else "values"
            shown = (
                ", ".join(f"[{k >> 16}, {(k >> 8) & 255}, {k & 255}]" for k in extra[:4])
                if m.kind == "colour"
                else ", ".join(map(str, extra[:8]))
            )
            add(
                "stray_mask_values",
                [it.mask.name],  # type: ignore[union-attr]
                f"{what} {shown} are no class of the folder (classes "
                f"{', '.join(classes['classes'])})",
                "drop (which class its pixels are is unknown)",
            )
            it.ok = False


def _duplicates(items: list[_Image], add, hash_bits: int) -> None:
    by_sha: dict[str, list[_Image]] = defaultdict(list)
    for it in items:
        by_sha[it.sha].append(it)  # type: ignore[index]
    exact_pairs = set()
    for copies in by_sha.values():
        if len(copies) > 1:
            names = [c.path.name for c in copies]
            groups = sorted({c.group for c in copies})
            add("exact_duplicate", names, "identical pixels", "keep the first")
            if len(groups) > 1:
                add(
                    "group_leak",
                    names,
                    f"the same image in groups {', '.join(groups)}",
                    "keep the first",
                )
            for c in copies[1:]:
                c.ok = False
            exact_pairs |= {(a.name, b.name) for a in copies for b in copies}
    if len(items) < 2:
        return
    hashes = np.stack([it.dhash for it in items]).astype(np.uint8)  # (n, bits)
    # Hamming distance of all pairs in one matrix product: d = a(1-b) + (1-a)b
    h = hashes.astype(np.int32)
    dist = h @ (1 - h).T + (1 - h) @ h.T
    n = len(items)
    iu = np.triu_indices(n, 1)
    close = np.flatnonzero(dist[iu] <= hash_bits)
    for k in close:
        a, b = items[iu[0][k]], items[iu[1][k]]
        if (a.name, b.name) in exact_pairs or (a.sha == b.sha):
            continue
        names = [a.path.name, b.path.name]
        add(
            "near_duplicate",
            names,
            f"perceptual hash differs in {int(dist[iu][k])} of {h.shape[1]} bits",
            "report",
        )
        if a.group != b.group:
            add("group_leak", names, f"near-duplicates in groups {a.group}, {b.group}", "report")


def _robust_z(x: np.ndarray, floor: np.ndarray) -> np.ndarray:
    med = np.median(x, axis=0)
    mad = np.maximum(np.median(np.abs(x - med), axis=0) * 1.4826, floor)
    return (x - med) / mad


def _outliers(items: list[_Image], add, z_max: float, min_samples: int) -> None:
    if len(items) < max(8, min_samples + 2):
        return
    x = np.stack([it.feats for it in items])  # type: ignore[misc]
    z = _robust_z(x, _FLOORS)
    flagged: set[int] = set()
    for i, it in enumerate(items):
        bad = [
            f"{_FEATURES[j]} z={z[i, j]:+.1f}" for j in range(x.shape[1]) if abs(z[i, j]) > z_max
        ]
        if bad:
            add("outlier", [it.path.name], "robust z-score: " + ", ".join(bad), "report")
            flagged.add(i)
    # DBSCAN noise on the first two principal components of the robust z-scores
    zc = np.clip(z, -50, 50)
    zc = zc - zc.mean(axis=0)
    _, _, vt = np.linalg.svd(zc, full_matrices=False)
    pc = zc @ vt[:2].T
    d = np.sqrt(((pc[:, None, :] - pc[None, :, :]) ** 2).sum(-1))
    kth = np.sort(d, axis=1)[:, min_samples]  # distance to the min_samples-th neighbour
    eps = max(3.0 * float(np.median(kth)), z_max / 2.0)
    core = (d <= eps).sum(axis=1) - 1 >= min_samples
    reach = (d[:, core] <= eps).any(axis=1) if core.any() else np.zeros(len(items), bool)
    noise = ~core & ~reach
    for i in np.flatnonzero(noise):
        if int(i) not in flagged:
            add(
                "outlier",
                [items[i].path.name],
                f"DBSCAN noise on PCA of statistics (eps {eps:.2f})",
                "report",
            )


def _size_outliers(items: list[_Image], add, z_max: float) -> None:
    """Images whose size is rare *and* far from every common size.

    A size (W x H) is common when at least ``COMMON_SIZE_SHARE`` of the images (and 3) have
    it: a few probe or camera presets are then all common, however different. A rare size is an
    outlier when one side differs from that of every common size by more than ``SIZE_FACTOR``.
    When common sizes cover less than half of the images (sizes vary freely, e.g. crops), log
    width and height are judged by robust z-scores instead.
    """
    if len(items) < 8:
        return
    count: dict[tuple[int, int], int] = defaultdict(int)
    for it in items:
        count[it.hw] += 1  # type: ignore[index]
    need = max(3, int(np.ceil(COMMON_SIZE_SHARE * len(items))))
    common = [hw for hw, c in count.items() if c >= need]
    if sum(count[hw] for hw in common) >= len(items) / 2:
        ref = np.log(np.array(common, np.float64))
        shown = ", ".join(f"{w}x{h}" for h, w in sorted(common, key=lambda hw: -count[hw])[:4]) + (
            " ..." if len(common) > 4 else ""
        )
        limit = np.log(SIZE_FACTOR)
        for it in items:
            if count[it.hw] >= need:  # type: ignore[index]
                continue
            d = np.abs(np.log(np.array(it.hw, np.float64))[None, :] - ref).max(axis=1)
            if float(d.min()) > limit:
                h, w = it.hw  # type: ignore[misc]
                add(
                    "outlier",
                    [it.path.name],
                    f"size {w}x{h} ({count[it.hw]} image(s)) differs by more than "  # type: ignore[index]
                    f"{SIZE_FACTOR:g}x in a side from every common size ({shown})",
                    "report",
                )
        return
    x = np.log(np.array([it.hw for it in items], np.float64))
    z = _robust_z(x, np.array([0.1, 0.1]))
    for i, it in enumerate(items):
        if np.abs(z[i]).max() > z_max:
            h, w = it.hw  # type: ignore[misc]
            add(
                "outlier",
                [it.path.name],
                f"size {w}x{h}: robust z-score of log height {z[i, 0]:+.1f}, width {z[i, 1]:+.1f}",
                "report",
            )


def _size_summary(sizes: list[tuple[int, int]]) -> dict[str, Any]:
    if not sizes:
        return {}
    hw = np.array(sizes)
    common: dict[str, int] = defaultdict(int)
    for h, w in sizes:
        common[f"{w}x{h}"] += 1
    aspect = hw[:, 1] / hw[:, 0]
    return {
        "most_common": dict(sorted(common.items(), key=lambda kv: -kv[1])[:5]),
        "n_distinct": len(common),
        "width": [int(hw[:, 1].min()), int(np.median(hw[:, 1])), int(hw[:, 1].max())],
        "height": [int(hw[:, 0].min()), int(np.median(hw[:, 0])), int(hw[:, 0].max())],
        "aspect_quantiles": [
            round(float(q), 3) for q in np.quantile(aspect, [0, 0.05, 0.5, 0.95, 1])
        ],
    }


def render_markdown(report: dict[str, Any]) -> str:
    lines = [
        f"# Data check: {report['folder']}",
        "",
        f"{report['n_images']} images, {report['n_kept']} kept by `--fix`.",
        "",
        "| finding | count |",
        "|---|---|",
    ]
    lines += [f"| {k} | {v} |" for k, v in report["counts"].items()] or ["| none | 0 |"]
    s = report.get("sizes") or {}
    if s:
        lines += [
            "",
            f"Sizes (WxH): {s['n_distinct']} distinct, most common {s['most_common']}; width min/median/max "
            f"{s['width']}, height {s['height']}; aspect quantiles (0, 5, 50, 95, 100 %) {s['aspect_quantiles']}.",
        ]
    lines += _classes_markdown(report.get("classes") or {})
    if report["findings"]:
        lines += ["", "| kind | files | detail | action |", "|---|---|---|---|"]
        for f in report["findings"]:
            lines.append(
                f"| {f['kind']} | {_listing(f['files'])} | {f['detail']} | {f['action']} |"
            )
    return "\n".join(lines) + "\n"


def classes_line(classes: dict[str, Any]) -> str:
    """One line: which classes the masks hold and, for several, how to train them."""
    if not classes or not classes.get("classes"):
        return "masks: no foreground class found"
    what = {"palette": "palette indices", "colour": "colours"}.get(classes["kind"], "values")
    parts = ", ".join(
        f"{k}{' (' + c['name'] + ')' if c.get('name') else ''} in {c['masks']}/{classes['n_masks']}"
        for k, c in classes["classes"].items()
    )
    line = f"masks ({classes['kind']}): {what} {parts}"
    if classes["multi_class"]:
        ids = classes["ids"]
        if classes.get("names_from"):
            fix = f"kseg train names them from {classes['names_from']}"
        elif classes["kind"] == "colour":
            fix = "name their colours in data.classes"
        else:
            fix = (
                f"train with --set model.num_classes={max(ids) + 1} or data.classes "
                f"(binary training refuses them unless data.merge_classes: true)"
            )
        line += f"; {len(ids)} foreground classes: {fix}"
    return line


def _classes_markdown(classes: dict[str, Any]) -> list[str]:
    if not classes or not classes.get("classes"):
        return []
    lines = [
        "",
        classes_line(classes) + ".",
        "",
        "| class (stored label) | masks with it | pixel share | objects per mask | object area "
        "(% of image, p10/p50/p90) |",
        "|---|---|---|---|---|",
    ]
    for k, c in classes["classes"].items():
        area = "/".join(f"{100 * a:.2g}" for a in c["object_area_fraction"])
        lines.append(
            f"| {k}{' ' + c['name'] if c.get('name') else ''} | {c['masks']} ({c['masks_fraction']:.0%}) | {100 * c['pixel_share']:.2f} % "
            f"| {c['objects_per_mask']:.2f} | {area} |"
        )
    return lines


def write_fixed(report: dict[str, Any], out: str | os.PathLike[str]) -> Path:
    """A cleaned copy of the folder: links to the kept files, NaN-filled copies, a manifest."""
    from kseg.atomic import write_bytes, write_text

    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(f"{out}: --fix folder exists and is not empty; choose a new one")
    items: list[_Image] = report["_items"]
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(exist_ok=True)
    meta_cols = sorted({k for it in items for k in it.meta})
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["image", "mask", "group", *meta_cols])
    for it in items:
        if not it.ok:
            continue
        dst = out / "images" / it.path.name
        if it.fill_nan:
            arr = _imread(it.path).astype(np.float32)
            arr[~np.isfinite(arr)] = np.nanmedian(np.where(np.isfinite(arr), arr, np.nan))
            dst = dst.with_suffix(".tif")
            ok, enc = cv2.imencode(".tif", arr)
            if not ok:
                raise DataError(f"{it.path}: could not write the NaN-filled copy")
            write_bytes(dst, enc.tobytes())
        else:
            _link(it.path, dst)
        mask_name = ""
        if it.mask is not None and it.binarise:
            stored = read_stored_mask(it.mask, max_pixels=None)
            mask_name = f"{it.mask.stem}.png"
            ok, enc = cv2.imencode(".png", (stored.values != 0).astype(np.uint8) * 255)
            if not ok:  # pragma: no cover - PNG encoding of uint8 does not fail
                raise DataError(f"{it.mask}: could not write the binarised copy")
            write_bytes(out / "masks" / mask_name, enc.tobytes())
        elif it.mask is not None:
            _link(it.mask, out / "masks" / it.mask.name)
            mask_name = it.mask.name
        w.writerow([dst.name, mask_name, it.group, *[it.meta.get(c, "") for c in meta_cols]])
    write_text(out / MANIFEST, buf.getvalue())
    return out


def _link(src: Path, dst: Path) -> None:
    try:
        os.symlink(src.resolve(), dst)
    except OSError:  # no symlinks (Windows without privilege): copy
        import shutil

        shutil.copy2(src, dst)


def public(report: dict[str, Any]) -> dict[str, Any]:
    """The report without internal fields (for JSON)."""
    return {k: v for k, v in report.items() if not k.startswith("_")}


__all__ = ["check_folder", "classes_line", "dhash", "public", "render_markdown", "write_fixed"]
