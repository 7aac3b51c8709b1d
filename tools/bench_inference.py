"""Benchmark of whole-image inference (kseg.inference): tiling agreement and speed, and the threshold
chosen on validation data against 0.5.

1. Tiling. A model trained at native scale (synthetic ultrasound generated at the model size) sees
   held-out images that fit it whole (S x S). The sliding window (overlapping windows, Gaussian or
   linear blending) must agree with one whole-image pass: Dice between the two masks
   >= 0.995 on every image; and 2 x 2 mosaics of such images, whose windows straddle the seams,
   against each image predicted whole. Then a 2048 x 2048 image is segmented with the window (fixed-batch 1
   .tflite: windows run one by one; Keras: batches of 8): seconds per megapixel, windows, and the
   share of the time spent outside the model (padding, batching, blending).
2. Threshold. For each data set (synthetic ultrasound; HC18 real fetal-head ultrasound) one short real
   training run with a train / val / test split. ``export_tflite`` chooses the threshold with the best
   Dice of the ``.tflite`` on the validation split (stored in the card); ``evaluate --store-threshold``
   does the same for the Keras model. The held-out test split is then scored at 0.5 and at the chosen
   threshold (through ``kseg.evaluate.evaluate_model``, i.e. the predict path, at each image's own size).

Writes OUT/bench_inference.json after every step and OUT/bench_inference.md at the end; run
directories are reused when present (``--fresh`` retrains).

    nice -n 10 python tools/bench_inference.py --out runs/bench/inference
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
HC18 = REPO.parent / "shared" / "data" / "hc18"

RECIPES: dict[str, dict[str, Any]] = {
    "synthetic": {
        "data.synthetic_kind": "ultrasound",
        "data.synthetic_n": 400,
        "data.img_size": 128,
    },
    "hc18": {"data.path": str(HC18), "data.img_size": 128},
    # thin structures: the case where a threshold off 0.5 is most likely to matter
    "vessels": {
        "data.synthetic_kind": "vessels",
        "data.synthetic_n": 400,
        "data.img_size": 128,
    },
}
COMMON = {
    "data.val_fraction": 0.2,
    "data.test_fraction": 0.2,
    "model.name": "unet",
    "model.options": {"depth": 4, "filters": 8},
    "train.batch_size": 8,
    "train.learning_rate": 0.003,
    "train.schedule": "cosine",
    "train.seed": 11,
}


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 0, b > 0
    den = int(a.sum() + b.sum())
    return 1.0 if den == 0 else 2.0 * int((a & b).sum()) / den


def save(out: Path, report: dict[str, Any]) -> None:
    from kseg.atomic import write_json

    write_json(out / "bench_inference.json", report)


def train_run(name: str, out: Path, epochs: int, minutes: float, fresh: bool) -> Path:
    from kseg.config import load_config
    from kseg.training import train

    run = out / f"run_{name}"
    if (run / "best.keras").is_file() and not fresh:
        print(f"[{name}] reusing {run}", flush=True)
        return run
    if run.exists():
        import shutil

        shutil.rmtree(run)
    overrides = {
        **COMMON,
        **RECIPES[name],
        "train.epochs": epochs,
        "train.time_limit_minutes": minutes,
    }
    t0 = time.time()
    train(load_config(None, overrides), run, verbose=0)
    seconds = time.time() - t0
    (run / "bench_train_seconds.txt").write_text(f"{seconds:.1f}\n")
    print(f"[{name}] trained in {seconds:.0f} s -> {run}", flush=True)
    return run


def convert(run: Path, mode: str) -> dict[str, Any]:
    from kseg.export import export_tflite

    out = run / f"best.{mode}.tflite"
    if out.is_file() and out.with_suffix(".json").is_file():
        return json.loads(out.with_suffix(".json").read_text())
    return export_tflite(run / "best.keras", mode, out=out, max_dice_drop=-1)


# ------------------------------------------------------------------------------ threshold


def threshold_rows(name: str, run: Path, out: Path) -> list[dict[str, Any]]:
    from kseg.evaluate import evaluate_model
    from kseg.inference import InferenceOptions

    rows = []
    models = {"keras": run / "best.keras"}
    for mode in ("float32", "int8"):
        convert(run, mode)
        models[f"tflite {mode}"] = run / f"best.{mode}.tflite"
    for kind, path in models.items():
        ev = out / "eval" / name / kind.replace(" ", "_")
        val = evaluate_model(
            path,
            split="val",
            out_dir=ev / "val",
            options=InferenceOptions(threshold=0.5),
            store_threshold=kind == "keras",  # the .tflite cards already hold theirs (convert)
            worst_k=0,
        )
        if kind == "keras":
            chosen = val["threshold_selection"]["threshold"]
        else:
            card = json.loads(path.with_suffix(".json").read_text())
            chosen = card["output"]["threshold"]
            assert card["output"]["threshold_source"] == "validation"
        at_half = evaluate_model(
            path,
            split="test",
            out_dir=ev / "test_05",
            options=InferenceOptions(threshold=0.5),
            worst_k=0,
        )
        at_chosen = evaluate_model(path, split="test", out_dir=ev / "test_chosen", worst_k=0)
        assert at_chosen["threshold"] == chosen, (at_chosen["threshold"], chosen)
        rows.append(
            {
                "data": name,
                "model": kind,
                "threshold": chosen,
                "val_dice_05": val["dice"],
                "val_dice_chosen": val["threshold_selection"]["dice"],
                "test_dice_05": at_half["dice"],
                "test_dice_chosen": at_chosen["dice"],
                "test_gain": at_chosen["dice"] - at_half["dice"],
                "test_dice_mean_05": at_half["dice_mean"],
                "test_dice_mean_chosen": at_chosen["dice_mean"],
                "n_val": val["n_images"],
                "n_test": at_half["n_images"],
            }
        )
        r = rows[-1]
        print(
            f"[{name}] {kind}: t={chosen:.2f} test Dice {r['test_dice_05']:.4f} @0.5 -> "
            f"{r['test_dice_chosen']:.4f} (val {r['val_dice_05']:.4f} -> {r['val_dice_chosen']:.4f})",
            flush=True,
        )
    return rows


# --------------------------------------------------------------------------------- tiling


def tiling_agreement(run: Path) -> list[dict[str, Any]]:
    """Tiled vs whole on images that fit the model: (a) each 128 px test image alone through the
    window path; (b) 2 x 2 mosaics of four test images (256 px): windows straddle the seams and
    are blended, and each quadrant is compared with its image predicted whole."""
    from kseg.config import load_config
    from kseg.data.pipeline import load_splits
    from kseg.inference import InferenceOptions, load_predictor, segment_image

    cfg = load_config(run / "config.yaml")
    test = load_splits(
        cfg.data, seed=cfg.train.seed, split_file=run / "split.csv", progress=False
    ).test
    images = test.images[..., 0] if test.images.ndim == 4 else test.images
    s = images.shape[1]
    rows = []
    for kind, path in (("tflite int8", run / "best.int8.tflite"), ("keras", run / "best.keras")):
        pred = load_predictor(path, num_threads=1)
        whole = [
            segment_image(pred, img, InferenceOptions(tile="off", threshold=0.5)).mask
            for img in images
        ]
        for blend in ("gaussian", "linear"):
            for overlap in (0.25, 0.5):
                opts = InferenceOptions(tile="on", overlap=overlap, blend=blend, threshold=0.5)
                single = [
                    dice(w, segment_image(pred, img, opts).mask)
                    for img, w in zip(images, whole, strict=True)
                ]
                quad = []
                for i in range(0, len(images) - 3, 4):
                    mosaic = np.block([[images[i], images[i + 1]], [images[i + 2], images[i + 3]]])
                    res = segment_image(pred, mosaic, opts)
                    for k, (y, x) in enumerate(((0, 0), (0, s), (s, 0), (s, s))):
                        quad.append(dice(whole[i + k], res.mask[y : y + s, x : x + s]))
                rows.append(
                    {
                        "model": kind,
                        "blend": blend,
                        "overlap": overlap,
                        "image_size": int(s),
                        "n_images": len(single),
                        "single_dice_min": float(np.min(single)),
                        "mosaic_windows": int(res.windows),
                        "n_mosaics": len(quad) // 4,
                        "mosaic_dice_min": float(np.min(quad)),
                        "mosaic_dice_mean": float(np.mean(quad)),
                        "mosaic_share_ge_0995": float(np.mean(np.asarray(quad) >= 0.995)),
                        "met": bool(np.min(single) >= 0.995),
                    }
                )
                r = rows[-1]
                print(
                    f"[tiling] {kind} {blend} overlap {overlap}: single min {r['single_dice_min']:.4f}; "
                    f"mosaic quadrants min {r['mosaic_dice_min']:.4f} mean {r['mosaic_dice_mean']:.4f}",
                    flush=True,
                )
    return rows


def big_image(size: int = 2048) -> np.ndarray:
    """A 2048 x 2048 mosaic of 128 px synthetic ultrasound images (content at the model's scale)."""
    from kseg.data.synthetic import synthesize

    n = size // 128
    tiles = synthesize("ultrasound", n * n, size=128, seed=99).images[..., 0]
    return tiles.reshape(n, n, 128, 128).transpose(0, 2, 1, 3).reshape(size, size)


def tiling_speed(run: Path, repeats: int) -> list[dict[str, Any]]:
    from kseg.inference import InferenceOptions, load_predictor, segment_image

    img = big_image()
    mp = img.size / 1e6
    rows = []
    for kind, path in (
        ("tflite int8", run / "best.int8.tflite"),
        ("tflite float32", run / "best.float32.tflite"),
        ("keras", run / "best.keras"),
    ):
        pred = load_predictor(path, num_threads=1)
        size = pred.input_size
        window = np.ascontiguousarray(img[:size, :size][None, ..., None].astype(np.float32))
        batch = np.repeat(window, 8, axis=0)
        pred.predict(batch)  # warm up
        t0 = time.perf_counter()
        for _ in range(3):
            pred.predict(batch)
        per_window = (time.perf_counter() - t0) / (3 * 8)
        for overlap in (0.25, 0.5):
            opts = InferenceOptions(tile="on", overlap=overlap, threshold=0.5)
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                res = segment_image(pred, img, opts)
                times.append(time.perf_counter() - t0)
            best = min(times)
            model_s = per_window * res.windows
            rows.append(
                {
                    "model": kind,
                    "overlap": overlap,
                    "image": f"{img.shape[1]}x{img.shape[0]}",
                    "windows": int(res.windows),
                    "seconds": best,
                    "seconds_per_mp": best / mp,
                    "ms_per_window_model_only": per_window * 1e3,
                    "outside_model_share": max(0.0, 1.0 - model_s / best),
                    "repeats": repeats,
                    "threads": 1,
                }
            )
            r = rows[-1]
            print(
                f"[speed] {kind} overlap {overlap}: {r['seconds']:.2f} s, "
                f"{r['seconds_per_mp']:.2f} s/MP, {r['windows']} windows, "
                f"{100 * r['outside_model_share']:.0f} % outside the model",
                flush=True,
            )
        whole = InferenceOptions(tile="off", threshold=0.5)
        t0 = time.perf_counter()
        segment_image(pred, img, whole)
        rows[-1]["whole_image_resize_seconds"] = time.perf_counter() - t0
    return rows


# ------------------------------------------------------------------------------- report


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Whole-image inference (`tools/bench_inference.py`)",
        "",
        f"Machine: {report['machine']}. Models: U-Net depth 4, 8 filters, 128 px, short real "
        "training runs (train/val/test 60/20/20).",
        "",
    ]
    runs = report.get("runs", {})
    for name, info in runs.items():
        lines.append(
            f"- {name}: {info['epochs']} epochs in {info['seconds']:.0f} s, validation Dice "
            f"{info['val_dice']:.4f}"
        )
    if report.get("tiling"):
        lines += [
            "",
            "## Tiling agrees with the whole-image pass (synthetic test split, 128 px images that fit)",
            "",
            "Single: each image alone through the window path (one window, the same pixels). "
            "Mosaic: 2 x 2 mosaics of four test images (256 px); windows straddle the seams and are "
            "blended; each quadrant is compared with its image predicted whole.",
            "",
            "| model | blend | overlap | single: min Dice | mosaic windows | mosaic quadrants: min Dice | mean | share >= 0.995 |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in report["tiling"]:
            lines.append(
                f"| {r['model']} | {r['blend']} | {r['overlap']} | {r['single_dice_min']:.4f} | "
                f"{r['mosaic_windows']} | {r['mosaic_dice_min']:.4f} | {r['mosaic_dice_mean']:.4f} | "
                f"{100 * r['mosaic_share_ge_0995']:.0f} % |"
            )
    if report.get("speed"):
        lines += [
            "",
            "## Time per megapixel, 2048 x 2048 image, sliding window (1 thread)",
            "",
            "| model | overlap | windows | seconds | s / MP | ms / window (model alone) | time outside the model | whole image resized to 128 |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in report["speed"]:
            whole = r.get("whole_image_resize_seconds")
            lines.append(
                f"| {r['model']} | {r['overlap']} | {r['windows']} | {r['seconds']:.2f} | "
                f"{r['seconds_per_mp']:.2f} | {r['ms_per_window_model_only']:.1f} | "
                f"{100 * r['outside_model_share']:.0f} % | "
                + (f"{whole:.3f} s |" if whole is not None else "|")
            )
    if report.get("threshold"):
        lines += [
            "",
            "## Threshold chosen on validation vs 0.5 (Dice on the held-out test split)",
            "",
            "| data | model | chosen t | val Dice @0.5 | val Dice @t | test Dice @0.5 | test Dice @t | gain | test per-image mean @0.5 -> @t |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in report["threshold"]:
            lines.append(
                f"| {r['data']} | {r['model']} | {r['threshold']:.2f} | {r['val_dice_05']:.4f} | "
                f"{r['val_dice_chosen']:.4f} | {r['test_dice_05']:.4f} | "
                f"{r['test_dice_chosen']:.4f} | {r['test_gain']:+.4f} | "
                f"{r['test_dice_mean_05']:.4f} -> {r['test_dice_mean_chosen']:.4f} |"
            )
    lines += ["", f"Command: `{report['command']}`", ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "bench" / "inference")
    ap.add_argument("--datasets", default="synthetic,hc18", help="synthetic, hc18, vessels")
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--minutes", type=float, default=6.0, help="training time limit per run")
    ap.add_argument("--repeats", type=int, default=2, help="timed runs of the 2048 image (best)")
    ap.add_argument("--fresh", action="store_true", help="retrain even when a run exists")
    ap.add_argument(
        "--parts",
        default="threshold,tiling,speed",
        help="what to measure; the others are kept from an earlier OUT/bench_inference.json",
    )
    args = ap.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    datasets = [d for d in args.datasets.split(",") if d]
    if "hc18" in datasets and not (HC18 / "images").is_dir():
        print(f"HC18 not found at {HC18}: skipped")
        datasets.remove("hc18")
    report: dict[str, Any] = {
        "machine": f"{os.cpu_count()} cores, {os.uname().machine}",
        "command": "python tools/bench_inference.py "
        + " ".join(f"--{k} {v}" for k, v in vars(args).items() if k not in ("out", "fresh")),
        "runs": {},
        "threshold": [],
    }
    parts = set(args.parts.split(","))
    earlier = out / "bench_inference.json"
    if earlier.is_file():
        old = json.loads(earlier.read_text())
        for key in ("threshold", "tiling", "speed"):
            if key not in parts and key in old:
                report[key] = old[key]
    runs = {}
    for name in datasets:
        run = train_run(name, out, args.epochs, args.minutes, args.fresh)
        metrics = json.loads((run / "metrics.json").read_text())
        history = (run / "history.csv").read_text().strip().splitlines()
        report["runs"][name] = {
            "run": str(run),
            "epochs": len(history) - 1,
            "seconds": float((run / "bench_train_seconds.txt").read_text()),
            "val_dice": metrics["dice"],
        }
        runs[name] = run
        save(out, report)
    if "threshold" in parts:
        for name, run in runs.items():
            report["threshold"] += threshold_rows(name, run, out)
            save(out, report)
    if "synthetic" in runs and "tiling" in parts:
        report["tiling"] = tiling_agreement(runs["synthetic"])
        save(out, report)
    if "synthetic" in runs and "speed" in parts:
        report["speed"] = tiling_speed(runs["synthetic"], args.repeats)
        save(out, report)
    from kseg.atomic import write_text

    write_text(out / "bench_inference.md", markdown(report))
    print(f"wrote {out}/bench_inference.json and .md")


if __name__ == "__main__":
    main()
