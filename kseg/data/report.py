"""``kseg data report``: exploratory statistics of a folder dataset, as one PNG sheet and JSON.

Per split (the manifest's ``split`` column, else the same group-aware split training makes with
``val_fraction`` / ``test_fraction`` and ``seed``): intensity histograms and quantiles; for the
whole set: image sizes, foreground fraction, lesion (connected component) size and count per
image (all foreground classes together), per class presence, pixel share and object sizes
(:func:`kseg.data.classes.folder_classes`), images per group, and example images with their
mask outlines, one colour per class. No TensorFlow.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from kseg.data.classes import folder_classes, label_keys, read_class_table, summarize_mask
from kseg.data.folder import scan_folder
from kseg.data.io import read_image, read_stored_mask
from kseg.data.split import group_split

_Q = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)


def _quantiles(hist: np.ndarray) -> list[int]:
    cdf = np.cumsum(hist) / max(hist.sum(), 1)
    return [int(np.searchsorted(cdf, q)) for q in _Q]


def _q(values: list[float]) -> list[float]:
    if not values:
        return []
    return [round(float(v), 5) for v in np.quantile(values, _Q)]


def data_report(
    path: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    group_regex: str | None = None,
    group_column: str | None = None,
    val_fraction: float = 0.2,
    test_fraction: float = 0.0,
    seed: int = 42,
    examples: int = 6,
) -> dict[str, Any]:
    """Compute the statistics, write ``OUT/report.json`` and ``OUT/report.png``; return the dict."""
    from kseg.atomic import write_json

    samples = scan_folder(path, group_regex, require_masks=False, group_column=group_column)
    fixed = [s.split for s in samples]
    free = [i for i, s in enumerate(fixed) if s is None]
    auto = group_split([samples[i].group for i in free], val_fraction, test_fraction, seed)
    splits = list(fixed)
    for i, s in zip(free, auto, strict=True):
        splits[i] = s
    hists: dict[str, np.ndarray] = {}
    sizes, fg, lesion_px, lesion_frac, n_lesions = [], [], [], [], []
    per_mask = []
    for s, split in zip(samples, splits, strict=True):
        img = read_image(s.image, 1)[..., 0]
        hists.setdefault(split, np.zeros(256, np.int64))
        hists[split] += np.bincount(img.ravel(), minlength=256)
        sizes.append((img.shape[1], img.shape[0]))
        if s.mask is None:
            continue
        stored = read_stored_mask(s.mask)
        if stored.shape != img.shape:
            continue
        per_mask.append((s.mask.name, summarize_mask(stored)))
        m = _binary(stored)
        fg.append(float(m.mean()))
        k, _, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
        areas = stats[1:, cv2.CC_STAT_AREA].tolist()
        n_lesions.append(len(areas))
        lesion_px += areas
        lesion_frac += [a / m.size for a in areas]
    groups = Counter(s.group for s in samples)
    per_split = {
        k: {
            "n_images": int(sum(1 for x in splits if x == k)),
            "n_groups": len({s.group for s, x in zip(samples, splits, strict=True) if x == k}),
            "intensity_quantiles": dict(zip(map(str, _Q), _quantiles(h), strict=True)),
            "intensity_mean": float((np.arange(256) * h).sum() / max(h.sum(), 1)),
        }
        for k, h in sorted(hists.items())
    }
    wh = np.array(sizes)
    report: dict[str, Any] = {
        "folder": str(path),
        "n_images": len(samples),
        "n_with_mask": len(fg),
        "splits": per_split,
        "split_rule": f"manifest split column, else group split val {val_fraction} test {test_fraction} seed {seed}",
        "sizes": {
            "distinct": len(set(sizes)),
            "most_common": {f"{w}x{h}": c for (w, h), c in Counter(sizes).most_common(5)},
            "width_quantiles": _q(wh[:, 0].tolist()),
            "height_quantiles": _q(wh[:, 1].tolist()),
        },
        "foreground_fraction_quantiles": _q(fg),
        "empty_masks": int(sum(1 for v in fg if v == 0)),
        "lesions_per_image": dict(sorted(Counter(n_lesions).items())),
        "lesion_area_px_quantiles": _q(lesion_px),
        "lesion_area_fraction_quantiles": _q(lesion_frac),
        "classes": folder_classes(per_mask, _names(path)),
        "groups": {
            "n": len(groups),
            "images_per_group": dict(sorted(Counter(groups.values()).items())),
            "largest": dict(groups.most_common(5)),
        },
        "quantiles": list(_Q),
    }
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _sheet(report, hists, sizes, fg, lesion_frac, samples, out / "report.png", examples)
    write_json(out / "report.json", report)
    return report


def _names(path) -> dict[str, Any] | None:
    found = read_class_table(path)
    return found[0] if found else None


def _binary(stored) -> np.ndarray:
    if stored.kind == "lossy":
        return (stored.values >= 128).astype(np.uint8)
    return (stored.values != 0).astype(np.uint8)


#: outline colours of classes 1, 2, ... in the example images (RGB)
_OUTLINE = ((255, 60, 60), (60, 220, 60), (70, 140, 255), (255, 200, 0), (220, 80, 255))


def _sheet(report, hists, sizes, fg, lesion_frac, samples, path: Path, examples: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from kseg.atomic import atomic_path

    fig = plt.figure(figsize=(15, 8.5))
    gs = fig.add_gridspec(2, max(examples, 5), height_ratios=[1, 1])
    ax = fig.add_subplot(gs[0, 0])
    for k, h in sorted(hists.items()):
        ax.plot(h / max(h.sum(), 1), label=f"{k} ({report['splits'][k]['n_images']})")
    ax.set_yscale("log")
    ax.set_title("intensity histogram per split", fontsize=9)
    ax.legend(fontsize=7)
    ax = fig.add_subplot(gs[0, 1])
    w, h = zip(*sizes, strict=True)
    ax.scatter(w, h, s=6, alpha=0.5)
    ax.set_title(f"image sizes ({report['sizes']['distinct']} distinct)", fontsize=9)
    ax.set_xlabel("width", fontsize=8)
    ax.set_ylabel("height", fontsize=8)
    ax = fig.add_subplot(gs[0, 2])
    ax.hist(fg, bins=30)
    ax.set_title("foreground fraction per image", fontsize=9)
    ax = fig.add_subplot(gs[0, 3])
    if lesion_frac:
        ax.hist(np.log10(np.maximum(lesion_frac, 1e-7)), bins=30)
    ax.set_title("lesion size (log10 fraction of image)", fontsize=9)
    ax = fig.add_subplot(gs[0, 4])
    ipg = report["groups"]["images_per_group"]
    ax.bar([str(k) for k in ipg], list(ipg.values()))
    ax.set_title(f"images per group ({report['groups']['n']} groups)", fontsize=9)
    idx = np.linspace(0, len(samples) - 1, min(examples, len(samples))).round().astype(int)
    for j, i in enumerate(idx):
        s = samples[i]
        img = read_image(s.image, 3)
        if s.mask is not None:
            stored = read_stored_mask(s.mask)
            if stored.shape == img.shape[:2]:
                found = summarize_mask(stored)
                keys = sorted(found.classes) if len(found.classes) > 1 else []
                regions = (
                    [_binary(stored)] if not keys else [_class_region(stored, k) for k in keys]
                )
                img = img.copy()
                for c, region in enumerate(regions):
                    contours, _ = cv2.findContours(region, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
                    colour = _OUTLINE[c % len(_OUTLINE)]
                    img = cv2.drawContours(img, contours, -1, colour, max(1, img.shape[0] // 150))
        ax = fig.add_subplot(gs[1, j])
        ax.imshow(img)
        ax.set_title(s.name, fontsize=8)
        ax.axis("off")
    cls = report.get("classes") or {}
    legend = ""
    if cls.get("multi_class"):
        legend = "; outlines: " + ", ".join(
            f"{c.get('name') or k} {'red green blue yellow violet'.split()[i % 5]}"
            for i, (k, c) in enumerate(cls["classes"].items())
        )
    fig.suptitle(f"{report['folder']}: {report['n_images']} images{legend}", fontsize=11)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=80, format="png")
    plt.close(fig)


def _class_region(stored, key: int) -> np.ndarray:
    return (label_keys(stored) == key).astype(np.uint8)


__all__ = ["data_report"]
