"""``kseg data check`` on real data: findings and false alarms on HC18 and USGRA, planted faults.

1. The 400 clean HC18 images and masks: every finding is a false alarm.
2. The same folder (linked) plus planted faults, each a new file next to the real ones: a corrupt
   PNG, a float TIFF with a few NaNs (to fill) and one mostly NaN (to drop), a constant image, an
   exact copy and a slightly noisy copy of a real scan under another exam id (duplicates across
   groups: a leak), an intensity-inverted scan (outlier), a mask with a stray value and an empty
   mask. Recall = planted faults reported with the right kind; false alarms = findings on files
   that were not planted.
3. The 204 USGRA images (three probe presets 534x512, 512x512, 761x632; palette masks with
   nerve = 1 and vessel = 2): the one known fault is the exact duplicate pair 0043 = 0077 (and
   its group leak); every other finding is a false alarm. The classes found per mask are listed.
4. USGRA plus planted faults as in 2, and USGRA's own kinds: a crop at a size far from every
   preset (size outlier), a palette index no other mask has (stray value in a multi-class
   folder), an image without a mask. Then ``--fix`` is taken at its word: the cleaned folder is
   checked again (nothing left to drop) and loaded for 3-class training with the merge guard on.

Usage:
    python tools/bench_data_check.py --out runs/bench/data_check
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from kseg.atomic import write_json, write_text  # noqa: E402
from kseg.data.check import check_folder  # noqa: E402

HC18 = Path(os.environ.get("KSEG_HC18", REPO.parent / "shared" / "data" / "hc18"))
USGRA = Path(os.environ.get("KSEG_USGRA", REPO.parent / "shared" / "data" / "usgra"))
#: the faults USGRA ships with (the source's duplicate pair), not false alarms
USGRA_KNOWN = {("exact_duplicate", "0043.png", "0077.png"), ("group_leak", "0043.png", "0077.png")}


def link_folder(source: Path, root: Path) -> None:
    """``root/images`` and ``root/masks`` holding links to every file of ``source``'s."""
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True)
        for p in sorted((source / sub).iterdir()):
            os.symlink(p, root / sub / p.name)


def plant(root: Path) -> dict[str, str]:
    """Link HC18 into ``root`` and add faulty files; returns ``{file: expected kind}``."""
    link_folder(HC18, root)
    img, msk = root / "images", root / "masks"
    src = sorted((HC18 / "images").iterdir())
    mask_of = lambda p: HC18 / "masks" / p.name  # noqa: E731
    read = lambda p: cv2.imread(str(p), cv2.IMREAD_UNCHANGED)  # noqa: E731
    planted: dict[str, str] = {}

    def add_mask(name: str, mask: np.ndarray) -> None:
        cv2.imwrite(str(msk / f"{Path(name).stem}.png"), mask)

    (img / "901_HC.png").write_bytes(src[0].read_bytes()[:2000])  # truncated: corrupt
    add_mask("901_HC.png", read(mask_of(src[0])))
    planted["901_HC.png"] = "corrupt"
    a = read(src[1]).astype(np.float32)
    a[:2, :10] = np.nan
    cv2.imwrite(str(img / "902_HC.tif"), a)
    add_mask("902_HC.tif", read(mask_of(src[1])))
    planted["902_HC.tif"] = "nan"
    b = read(src[2]).astype(np.float32)
    b[: b.shape[0] // 2] = np.nan
    cv2.imwrite(str(img / "903_HC.tif"), b)
    add_mask("903_HC.tif", read(mask_of(src[2])))
    planted["903_HC.tif"] = "nan"
    cv2.imwrite(str(img / "904_HC.png"), np.full((540, 800), 90, np.uint8))
    add_mask("904_HC.png", read(mask_of(src[3])))
    planted["904_HC.png"] = "constant"
    (img / "905_HC.png").write_bytes(src[4].read_bytes())
    add_mask("905_HC.png", read(mask_of(src[4])))
    planted["905_HC.png"] = "exact_duplicate"
    c = read(src[5]).astype(int)
    c = np.clip(c + np.random.default_rng(0).integers(-3, 4, c.shape), 0, 255).astype(np.uint8)
    cv2.imwrite(str(img / "906_HC.png"), c)
    add_mask("906_HC.png", read(mask_of(src[5])))
    planted["906_HC.png"] = "near_duplicate"
    cv2.imwrite(str(img / "907_HC.png"), 255 - read(src[6]))
    add_mask("907_HC.png", read(mask_of(src[6])))
    planted["907_HC.png"] = "outlier"
    m = read(mask_of(src[7])).copy()
    m[:5, :5] = 3
    (msk / src[7].name).unlink()
    cv2.imwrite(str(msk / src[7].name), m)
    planted[src[7].name] = "stray_mask_values"
    (msk / src[8].name).unlink()
    cv2.imwrite(str(msk / src[8].name), np.zeros_like(read(mask_of(src[8]))))
    planted[src[8].name] = "empty_mask"
    return planted


def plant_usgra(root: Path) -> dict[str, str]:
    """Link USGRA into ``root`` and add faulty files; returns ``{file: expected kind}``."""
    from PIL import Image

    link_folder(USGRA, root)
    img, msk = root / "images", root / "masks"
    src = sorted((USGRA / "images").iterdir())
    read = lambda p: cv2.imread(str(p), cv2.IMREAD_UNCHANGED)  # noqa: E731
    palette = Image.open(USGRA / "masks" / src[0].name).getpalette()

    def copy_mask(name: str, of: Path, crop: tuple[slice, slice] | None = None) -> None:
        lab = np.asarray(Image.open(USGRA / "masks" / of.name))
        im = Image.fromarray(np.ascontiguousarray(lab[crop] if crop else lab), mode="P")
        im.putpalette(palette)
        im.save(msk / f"{Path(name).stem}.png")

    planted: dict[str, str] = {}
    (img / "9001.png").write_bytes(src[10].read_bytes()[:2000])
    copy_mask("9001.png", src[10])
    planted["9001.png"] = "corrupt"
    a = read(src[11]).astype(np.float32)
    a[:2, :10] = np.nan
    cv2.imwrite(str(img / "9002.tif"), a)
    copy_mask("9002.tif", src[11])
    planted["9002.tif"] = "nan"
    b = read(src[12]).astype(np.float32)
    b[: b.shape[0] // 2] = np.nan
    cv2.imwrite(str(img / "9003.tif"), b)
    copy_mask("9003.tif", src[12])
    planted["9003.tif"] = "nan"
    cv2.imwrite(str(img / "9004.png"), np.full(read(src[13]).shape, 40, np.uint8))
    copy_mask("9004.png", src[13])
    planted["9004.png"] = "constant"
    (img / "9005.png").write_bytes(src[14].read_bytes())
    copy_mask("9005.png", src[14])
    planted["9005.png"] = "exact_duplicate"
    c = read(src[15]).astype(int)
    c = np.clip(c + np.random.default_rng(0).integers(-3, 4, c.shape), 0, 255).astype(np.uint8)
    cv2.imwrite(str(img / "9006.png"), c)
    copy_mask("9006.png", src[15])
    planted["9006.png"] = "near_duplicate"
    cv2.imwrite(str(img / "9007.png"), 255 - read(src[16]))
    copy_mask("9007.png", src[16])
    planted["9007.png"] = "outlier"
    crop = (slice(100, 340), slice(150, 300))  # 150x240: far from every probe preset
    cv2.imwrite(str(img / "9008.png"), read(src[17])[crop])
    copy_mask("9008.png", src[17], crop)
    planted["9008.png"] = "outlier"
    lab = np.asarray(Image.open(USGRA / "masks" / src[18].name)).copy()
    lab[200:240, 200:240] = 5  # a palette index no other mask has
    im = Image.fromarray(lab, mode="P")
    im.putpalette(palette)
    (msk / src[18].name).unlink()
    im.save(msk / src[18].name)
    planted[src[18].name] = "stray_mask_values"
    (msk / src[19].name).unlink()
    Image.fromarray(np.zeros_like(lab), mode="P").save(msk / src[19].name)
    planted[src[19].name] = "empty_mask"
    (msk / src[20].name).unlink()
    planted[src[20].name] = "missing_mask"
    return planted


def score(
    report: dict, planted: dict[str, str], originals: set[str], known_faults: set = frozenset()
) -> dict:
    found: dict[str, set[str]] = {}
    false_alarms = []
    for f in report["findings"]:
        for name in f["files"]:
            found.setdefault(name, set()).add(f["kind"])
            partner = name in originals and any(n in planted for n in f["files"] if n != name)
            known = (f["kind"], *f["files"]) in known_faults
            if name not in planted and not partner and not known:
                false_alarms.append({"file": name, "kind": f["kind"], "detail": f["detail"]})
    rows = [
        {
            "file": n,
            "planted": k,
            "found": k in found.get(n, set()),
            "kinds": sorted(found.get(n, [])),
        }
        for n, k in planted.items()
    ]
    return {
        "planted": rows,
        "recall": sum(r["found"] for r in rows) / max(len(rows), 1),
        "false_alarms": false_alarms,
    }


def _usgra(out: Path) -> tuple[dict, list[str]]:
    """Clean USGRA, then USGRA with planted faults, --fix and a training load of the result."""
    from kseg.config import DataConfig
    from kseg.data.check import classes_line, write_fixed
    from kseg.data.pipeline import load_splits

    start = time.perf_counter()
    clean = check_folder(USGRA)
    t_clean = time.perf_counter() - start
    known = [f for f in clean["findings"] if (f["kind"], *f["files"]) in USGRA_KNOWN]
    false = [f for f in clean["findings"] if (f["kind"], *f["files"]) not in USGRA_KNOWN]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "usgra_planted"
        planted = plant_usgra(root)
        start = time.perf_counter()
        faulty = check_folder(root)
        t_faulty = time.perf_counter() - start
        originals = {p.name for p in (USGRA / "images").iterdir()}
        s = score(faulty, planted, originals, USGRA_KNOWN)
        fixed = write_fixed(faulty, Path(tmp) / "usgra_fixed")
        again = check_folder(fixed)
        left = [f for f in again["findings"] if not f["action"].startswith(("report", "keep"))]
        cfg = DataConfig(path=str(fixed), img_size=64, classes={"nerve": 1, "vessel": 2})
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "masks hold more than two values: class ids"
            sp = load_splits(cfg, 0, progress=False, num_classes=3, merge_guard=True)
        trained_on = len(sp.train) + len(sp.val)
        ids = sorted(set(np.unique(sp.train.masks).tolist()))
    result = {
        "clean": {
            "n_images": clean["n_images"],
            "sizes": clean["sizes"]["most_common"],
            "known_findings": known,
            "false_alarms": false,
            "classes": clean["classes"],
            "seconds": round(t_clean, 1),
        },
        "planted": {"n_images": faulty["n_images"], **s, "seconds": round(t_faulty, 1)},
        "fix": {
            "n_kept": faulty["n_kept"],
            "recheck_findings_to_act_on": left,
            "recheck_n_kept": again["n_kept"],
            "loaded_for_training": trained_on,
            "class_ids_loaded": ids,
        },
    }
    md = [
        "",
        "## USGRA (palette masks, three probe presets)",
        "",
        f"- Clean USGRA ({clean['n_images']} images, sizes {clean['sizes']['most_common']}): "
        f"{len(known)} known findings (the duplicate pair 0043 = 0077 and its group leak), "
        f"**{len(false)} false alarms**, {t_clean:.0f} s.",
        f"- {classes_line(clean['classes'])}.",
        f"- USGRA + {len(planted)} planted faults ({faulty['n_images']} images): recall "
        f"**{s['recall']:.0%}**, **{len(s['false_alarms'])} false alarms** on the real files, "
        f"{t_faulty:.0f} s.",
        f"- `--fix`: {faulty['n_kept']} images kept; checked again: "
        f"{len(left)} findings left to drop, {again['n_kept']} kept; loaded for 3-class training "
        f"with the merge guard on: {trained_on} images, class ids {ids}.",
        "",
        "| planted file | fault | found | reported as |",
        "|---|---|---|---|",
    ]
    md += [
        f"| {r['file']} | {r['planted']} | {'yes' if r['found'] else 'NO'} | {', '.join(r['kinds'])} |"
        for r in s["planted"]
    ]
    for title, alarms in (
        ("False alarms (clean)", false),
        ("False alarms (planted)", s["false_alarms"]),
    ):
        if alarms:
            md += ["", f"{title}:", ""] + [
                f"- {', '.join(a['files']) if 'files' in a else a['file']}: {a['kind']} ({a['detail']})"
                for a in alarms
            ]
    return result, md


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "bench" / "data_check")
    ap.add_argument("--only", choices=("hc18", "usgra"), help="Run one data set.")
    args = ap.parse_args()
    result: dict = {}
    md = ["# `kseg data check` (`tools/bench_data_check.py`)", ""]
    if args.only != "usgra":
        if not (HC18 / "images").is_dir():
            sys.exit(f"HC18 not found at {HC18}")
        r, lines = _hc18()
        result.update(r)
        md += lines
    if args.only != "hc18":
        if not (USGRA / "images").is_dir():
            sys.exit(f"USGRA not found at {USGRA}")
        r, lines = _usgra(args.out)
        result["usgra"] = r
        md += lines
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "data_check.json", result)
    write_text(args.out / "data_check.md", "\n".join(md) + "\n")
    print("\n".join(md))


def _hc18() -> tuple[dict, list[str]]:
    start = time.perf_counter()
    clean = check_folder(HC18)
    t_clean = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "hc18_planted"
        planted = plant(root)
        start = time.perf_counter()
        faulty = check_folder(root)
        t_faulty = time.perf_counter() - start
    originals = {p.name for p in (HC18 / "images").iterdir()} | {
        p.name for p in (HC18 / "masks").iterdir()
    }
    s = score(faulty, planted, originals)
    result = {
        "clean_hc18": {
            "n_images": clean["n_images"],
            "findings": clean["findings"],
            "seconds": round(t_clean, 1),
        },
        "planted": {"n_images": faulty["n_images"], **s, "seconds": round(t_faulty, 1)},
    }
    md = [
        "## HC18 (binary masks, one size)",
        "",
        f"- Clean HC18 ({clean['n_images']} images): **{len(clean['findings'])} findings** (false alarms), "
        f"{t_clean:.0f} s.",
        f"- HC18 + {len(planted)} planted faults ({faulty['n_images']} images): recall "
        f"**{s['recall']:.0%}**, **{len(s['false_alarms'])} false alarms** on the real files, {t_faulty:.0f} s.",
        "",
        "| planted file | fault | found | reported as |",
        "|---|---|---|---|",
    ]
    md += [
        f"| {r['file']} | {r['planted']} | {'yes' if r['found'] else 'NO'} | {', '.join(r['kinds'])} |"
        for r in s["planted"]
    ]
    if s["false_alarms"]:
        md += ["", "False alarms:", ""] + [
            f"- {a['file']}: {a['kind']} ({a['detail']})" for a in s["false_alarms"]
        ]
    return result, md


if __name__ == "__main__":
    main()
