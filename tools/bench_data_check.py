"""``kseg data check`` on real data: no false alarm on clean HC18, every planted fault found.

1. The 400 clean HC18 images and masks: every finding is a false alarm.
2. The same folder (linked) plus planted faults, each a new file next to the real ones: a corrupt
   PNG, a float TIFF with a few NaNs (to fill) and one mostly NaN (to drop), a constant image, an
   exact copy and a slightly noisy copy of a real scan under another exam id (duplicates across
   groups: a leak), an intensity-inverted scan (outlier), a mask with a stray value and an empty
   mask. Recall = planted faults reported with the right kind; false alarms = findings on files
   that were not planted.

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


def plant(root: Path) -> dict[str, str]:
    """Link HC18 into ``root`` and add faulty files; returns ``{file: expected kind}``."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for sub in ("images", "masks"):
        for p in sorted((HC18 / sub).iterdir()):
            os.symlink(p, root / sub / p.name)
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


def score(report: dict, planted: dict[str, str], originals: set[str]) -> dict:
    found: dict[str, set[str]] = {}
    false_alarms = []
    for f in report["findings"]:
        for name in f["files"]:
            found.setdefault(name, set()).add(f["kind"])
            partner = name in originals and any(n in planted for n in f["files"] if n != name)
            if name not in planted and not partner:
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


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "bench" / "data_check")
    args = ap.parse_args()
    if not (HC18 / "images").is_dir():
        sys.exit(f"HC18 not found at {HC18}")
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
        "# `kseg data check` (`tools/bench_data_check.py`)",
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
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "data_check.json", result)
    write_text(args.out / "data_check.md", "\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
