"""Speckle filters: speed, image quality and what they do to a segmentation network's Dice.

Three parts (each can be skipped):

1. ``timing``: every filter (default parameters) on a 512x512 synthetic B-mode image, median of
   ``--repeats`` calls, as a ratio to ``cv2.bilateralFilter(d=5, sigmaColor=25, sigmaSpace=3)``
   measured in the same interleaved rounds (so load from other processes hits both alike).
2. ``quality``: :func:`kseg.preprocess.compare.compare` on synthetic ultrasound (clean image
   known: PSNR/SSIM) and on HC18 (real, no clean image): ENL, speckle index, CNR, EPI per chain.
3. ``ablation``: the same short training recipe (same data, split, seed, model, epochs) with no
   filter and with the two best chains of part 2 (best SSIM on synthetic, best CNR on HC18);
   validation Dice. The chain then runs at the model input size (``--img-size``).

Usage:
    nice -n 10 python tools/bench_preprocess.py --out runs/bench/preprocess
    python tools/bench_preprocess.py --skip-ablation            # minutes, not an hour
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import cv2  # noqa: E402

from kseg.atomic import write_json, write_text  # noqa: E402
from kseg.filters import FILTERS  # noqa: E402
from kseg.preprocess.compare import DEFAULT_CHAINS, compare  # noqa: E402

HC18 = Path(os.environ.get("KSEG_HC18", REPO.parent / "shared" / "data" / "hc18"))
#: stronger settings compared besides the defaults (speckle grains span several pixels)
EXTRA_CHAINS = (
    "lee:size=9",
    "enhanced_lee:size=9",
    "median:size=7",
    "srad:iterations=60",
    "nlm:h=20",
    "median:size=7+clahe",
)


def timing(size: int, repeats: int) -> list[dict]:
    from kseg.data.synthetic import synthesize

    img = synthesize("ultrasound", 1, size, 0).images[0, ..., 0]
    names = FILTERS.names()
    ref = lambda: cv2.bilateralFilter(img, 5, 25.0, 3.0)  # noqa: E731
    times: dict[str, list[float]] = {n: [] for n in [*names, "cv2.bilateralFilter"]}
    for fn in [*[FILTERS.get(n) for n in names]]:  # warm-up (OpenCV lazy init)
        fn(img)
    calls = {n: (lambda f=FILTERS.get(n): f(img)) for n in names}  # noqa: B008
    calls["cv2.bilateralFilter"] = ref
    for _ in range(repeats):
        for name, fn in calls.items():
            start = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - start) * 1000.0)
    base = statistics.median(times["cv2.bilateralFilter"])
    base_min = min(times["cv2.bilateralFilter"])
    rows = []
    for name, ts in times.items():
        med = statistics.median(ts)
        rows.append(
            {
                "filter": name,
                "ms": round(med, 3),
                "ratio_vs_bilateral": round(med / base, 2),
                # the fastest call is the one least disturbed by other processes on a shared machine
                "min_ms": round(min(ts), 3),
                "min_ratio_vs_bilateral": round(min(ts) / base_min, 2),
            }
        )
    return rows


def _md_timing(rows: list[dict], size: int, repeats: int) -> list[str]:
    lines = [
        f"## Filter time at {size}x{size} (uint8, default parameters, {repeats} interleaved rounds)",
        "",
        "| filter | median ms | x cv2.bilateralFilter | min ms | x cv2.bilateralFilter (min) |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| `{r['filter']}` | {r['ms']:.2f} | {r['ratio_vs_bilateral']:.2f} | {r['min_ms']:.2f} "
        f"| {r['min_ratio_vs_bilateral']:.2f} |"
        for r in rows
    ]
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "bench" / "preprocess")
    ap.add_argument("--repeats", type=int, default=11)
    ap.add_argument("--synthetic-n", type=int, default=24, help="images scored on synthetic")
    ap.add_argument("--hc18-n", type=int, default=16, help="HC18 images scored (evenly spaced)")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--img-size", type=int, default=64)
    ap.add_argument("--filters", type=int, default=8, help="U-Net base filters (depth 3)")
    ap.add_argument("--train-n", type=int, default=160, help="synthetic images for the ablation")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-timing", action="store_true")
    ap.add_argument("--skip-quality", action="store_true")
    ap.add_argument("--skip-ablation", action="store_true")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    report: dict = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores (shared), {platform.python_version()}",
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    md: list[str] = [
        "# Speckle filters (`tools/bench_preprocess.py`)",
        "",
        f"Machine: {report['machine']}.",
        "",
    ]
    if not args.skip_timing:
        report["timing"] = timing(512, args.repeats)
        md += _md_timing(report["timing"], 512, args.repeats) + [""]
        write_json(args.out / "preprocess.json", report)
    chains = [*DEFAULT_CHAINS, *EXTRA_CHAINS]
    sources = [("synthetic", f"synthetic:ultrasound:{args.synthetic_n}", 256, args.synthetic_n)]
    if (HC18 / "images").is_dir():
        sources.append(("hc18", str(HC18), None, args.hc18_n))
    else:
        md += [f"HC18 not found at {HC18}: skipped.", ""]
    ablation_opts = {
        "epochs": args.epochs,
        "img_size": args.img_size,
        "model_options": {"depth": 3, "filters": args.filters},
        "batch_size": 16,
    }
    for key, source, size, n in sources:
        if args.skip_quality:
            break
        sub = args.out / key
        if sub.exists():
            import shutil

            shutil.rmtree(sub)
        opts = dict(ablation_opts)
        if key == "synthetic":
            opts["n_train"] = args.train_n
        rep = compare(
            source,
            chains,
            sub,
            n=n,
            size=size,
            seed=args.seed,
            ablation=not args.skip_ablation,
            ablation_options=opts,
        )
        report[key] = rep
        body = (sub / "compare.md").read_text().splitlines()
        md += [f"## {key}: " + body[0].removeprefix("# ")] + body[1:] + [""]
        write_json(args.out / "preprocess.json", report)
        write_text(args.out / "preprocess.md", "\n".join(md) + "\n")
    report["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    write_json(args.out / "preprocess.json", report)
    write_text(args.out / "preprocess.md", "\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
