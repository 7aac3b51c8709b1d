"""ONNX Runtime vs TFLite (LiteRT) on this machine: float and INT8 latency, size, INT8 Dice drop.

For each architecture (default ``unet``, ``attention_unet``, ``mobile_unet`` at 256x256x1):

1. **trained rows**: a brief real training run on the synthetic ultrasound set (``kseg train``,
   same recipe for every model, stated in the report), so that the Dice drop of each INT8 file means
   something. They are trained and exported at ``--train-size`` (default 128) and
   ``unet``/``attention_unet`` at ``--filters`` (default 16, half the default width), so three
   models train on a shared 2-core CPU within minutes; ``mobile_unet`` keeps its default width. The model is exported four ways through the
   CLI's library calls: TFLite float32, TFLite INT8 (full integer), ONNX float32, ONNX INT8
   (static QDQ, per channel), INT8 files calibrated on the same images; each is scored against
   the Keras model on the validation split by the parity gate.
2. **default-width rows** (``--full-width``): the architectures with default options at ``--size``
   (default 256), untrained (latency does not depend on the weights), calibrated on synthetic
   images; latency and size only. Rows are saved to ``partial.json`` as they finish and a rerun
   resumes after the last finished row.

Latency: one fresh process per measurement (``kseg.bench.latency.measure_isolated``), 1 thread
(``num_threads=1`` for LiteRT, ``intra_op_num_threads=1`` for ONNX Runtime), pinned to ``--cpus``;
the timed call is the runtime round trip (input in, run, output out). The four files of a model
are measured in interleaved rounds and the median p50 of the rounds is reported, because the
machine is shared.

Usage:
    python tools/bench_onnx.py [--out runs/bench/onnx] [--archs unet,attention_unet,mobile_unet]
        [--size 256] [--filters 16] [--epochs 6] [--steps 15] [--runs 10] [--rounds 3]
        [--cpus 0] [--full-width/--no-full-width]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from kseg.atomic import write_json, write_text  # noqa: E402
from kseg.bench.latency import machine_info, measure_isolated  # noqa: E402

VARIANTS = ("tflite_float32", "tflite_int8", "onnx_float32", "onnx_int8")


def train_run(arch: str, args, out: Path) -> tuple[Path, dict[str, Any]]:
    """A brief real training run (cached: an existing run with metrics.json is reused)."""
    import json

    from kseg.config import load_config
    from kseg.training import train

    run = out / "runs" / arch
    if (run / "metrics.json").is_file() and (run / "best.keras").is_file():
        return run, json.loads((run / "metrics.json").read_text())
    options = {} if arch == "mobile_unet" else {"filters": args.filters}
    overrides = {
        "model.name": arch,
        "model.options": options,
        "data.synthetic_kind": "ultrasound",
        "data.synthetic_n": args.synthetic_n,
        "data.img_size": args.train_size,
        "train.epochs": args.epochs,
        "train.steps_per_epoch": args.steps,
        "train.batch_size": args.batch,
        "train.learning_rate": args.lr,
        "train.seed": args.seed,
    }
    cfg = load_config(None, overrides)
    t0 = time.perf_counter()
    metrics = train(cfg, run, verbose=0)
    metrics = dict(metrics)
    metrics["train_seconds"] = time.perf_counter() - t0
    write_json(run / "bench_train.json", {"overrides": overrides, **metrics})
    return run, metrics


def export_all(model_path: Path, out_dir: Path, *, data: str | None, calibration=None) -> dict:
    """The four files of one model, each with its card (no gate: the drop is reported)."""
    from kseg.export import export_tflite
    from kseg.export.onnx import export_onnx

    out_dir.mkdir(parents=True, exist_ok=True)
    cards = {}
    for variant in VARIANTS:
        fmt, mode = variant.split("_")
        path = out_dir / f"{model_path.stem}.{mode}.{'tflite' if fmt == 'tflite' else 'onnx'}"
        fn = export_tflite if fmt == "tflite" else export_onnx
        t0 = time.perf_counter()
        card = fn(model_path, mode, data=data, out=path, max_dice_drop=-1, calibration=calibration)
        card["_export_seconds"] = time.perf_counter() - t0
        cards[variant] = card
        print(
            f"  {variant}: {path.stat().st_size / 1024:.0f} KiB, drop {card['dice_drop']:+.4f}",
            flush=True,
        )
    return cards


def time_files(files: dict[str, Path], args) -> dict[str, dict[str, Any]]:
    """Median over interleaved rounds of each file's p50 (and its min), 1 thread, pinned."""
    p50s: dict[str, list[float]] = {v: [] for v in files}
    mins: dict[str, list[float]] = {v: [] for v in files}
    last: dict[str, dict[str, Any]] = {}
    for _ in range(args.rounds):
        for variant, path in files.items():
            r = measure_isolated(
                path, threads=1, runs=args.runs, warmup=args.warmup, cpus=args.cpu_list
            )
            p50s[variant].append(r["latency_ms"]["p50"])
            mins[variant].append(r["latency_ms"]["min"])
            last[variant] = r
    return {
        v: {
            "p50_ms": statistics.median(p50s[v]),
            "min_ms": min(mins[v]),
            "round_p50s_ms": p50s[v],
            "backend": f"{last[v]['backend']} {last[v]['backend_version']}",
            "peak_rss_mb": last[v]["peak_rss_mb"],
            "init_ms": last[v]["init_ms"],
        }
        for v in files
    }


def row_for(arch: str, kind: str, cards: dict, timings: dict, extra: dict) -> dict[str, Any]:
    row: dict[str, Any] = {"arch": arch, "kind": kind, **extra}
    for v in VARIANTS:
        c = cards[v]
        row[v] = {
            "size_bytes": c["size_bytes"],
            "dice": c.get("tflite_dice", c.get("onnx_dice")),
            "float_dice": c["float_dice"],
            "dice_drop": c["dice_drop"],
            "pixel_agreement": c["parity"]["pixel_agreement"],
            "float_ops": (c.get("tflite") or c.get("onnx") or {}).get("float_ops"),
            **timings[v],
        }
    t, o = row["tflite_int8"]["p50_ms"], row["onnx_int8"]["p50_ms"]
    row["int8_tflite_over_onnx"] = t / o
    row["float_tflite_over_onnx"] = row["tflite_float32"]["p50_ms"] / row["onnx_float32"]["p50_ms"]
    row["target_met"] = t <= o
    return row


def markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    a = result["args"]
    lines = [
        "# ONNX Runtime vs TFLite (LiteRT)",
        "",
        f"Machine: {m['machine']} {m['cpu']}, {m['cpu_count']} CPUs (shared); 1 thread, pinned to CPU "
        f"{a['cpus']}; one fresh process per measurement, median p50 of {a['rounds']} interleaved "
        f"rounds x {a['runs']} runs. Runtimes: {', '.join(result['runtimes'])}.",
        "",
        f"Trained rows: `kseg train` on synthetic ultrasound, n={a['synthetic_n']}, "
        f"{a['train_size']}x{a['train_size']}x1 (files and latency at that size), {a['epochs']} epochs x {a['steps']} steps, batch {a['batch']}, "
        f"Adam lr {a['lr']}, seed {a['seed']}; unet/attention_unet with filters={a['filters']}, "
        "mobile_unet default width. Dice: validation split of that run, parity gate against Keras. "
        "INT8: TFLite full-integer PTQ vs ONNX Runtime static QDQ (int8 weights per channel, int8 "
        "activations, MinMax), both calibrated on the same train-split images. "
        f"Default-width rows: the architectures' default options at {a['size']}x{a['size']}x1, "
        "untrained (latency and size do not depend on the weights), calibrated on 16 synthetic "
        "images; no Dice.",
        "",
        "| model | kind | input | GMAC | float Dice | TFLite f32 ms | ONNX f32 ms | TFLite int8 ms | ONNX int8 ms "
        "| int8 TFLite/ONNX | TFLite int8 KiB | ONNX int8 KiB | TFLite int8 Dice drop | ONNX int8 Dice drop | target |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in result["rows"]:
        trained = r["kind"] == "trained"
        fd = f"{r['tflite_int8']['float_dice']:.4f}" if trained else "-"
        d1 = f"{r['tflite_int8']['dice_drop']:+.4f}" if trained else "-"
        d2 = f"{r['onnx_int8']['dice_drop']:+.4f}" if trained else "-"
        lines.append(
            f"| {r['arch']} | {r['kind']} | {r['input']} | {r['gmacs']:.2f} | {fd} "
            f"| {r['tflite_float32']['p50_ms']:.1f} | {r['onnx_float32']['p50_ms']:.1f} "
            f"| {r['tflite_int8']['p50_ms']:.1f} | {r['onnx_int8']['p50_ms']:.1f} "
            f"| **{r['int8_tflite_over_onnx']:.2f}** "
            f"| {r['tflite_int8']['size_bytes'] / 1024:.0f} | {r['onnx_int8']['size_bytes'] / 1024:.0f} "
            f"| {d1} | {d2} | {'met' if r['target_met'] else 'NOT met'} |"
        )
    lines += [
        "",
        "Target: kseg's INT8 `.tflite` at least as fast as ONNX Runtime's INT8 on the same model "
        "(int8 TFLite/ONNX <= 1.00).",
        "",
        "Float32 sizes (KiB): "
        + "; ".join(
            f"{r['arch']} ({r['kind']}) TFLite {r['tflite_float32']['size_bytes'] / 1024:.0f}, "
            f"ONNX {r['onnx_float32']['size_bytes'] / 1024:.0f}"
            for r in result["rows"]
        )
        + ".",
        "",
    ]
    for r in result["rows"]:
        if r["kind"] == "trained":
            lines.append(
                f"- {r['arch']}: trained {r['train_seconds'] / 60:.1f} min, float Dice "
                f"{r['tflite_int8']['float_dice']:.4f}; int8 Dice TFLite {r['tflite_int8']['dice']:.4f} "
                f"(pixel agreement {r['tflite_int8']['pixel_agreement']:.4f}), ONNX "
                f"{r['onnx_int8']['dice']:.4f} ({r['onnx_int8']['pixel_agreement']:.4f}); "
                f"float32 drops TFLite {r['tflite_float32']['dice_drop']:+.4f}, ONNX "
                f"{r['onnx_float32']['dice_drop']:+.4f}"
            )
    if result.get("notes"):
        lines += ["", *[f"- {n}" for n in result["notes"]]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "bench" / "onnx")
    ap.add_argument("--archs", default="unet,attention_unet,mobile_unet")
    ap.add_argument("--size", type=int, default=256, help="default-width (latency) rows")
    ap.add_argument("--train-size", type=int, default=128, help="trained (Dice drop) rows")
    ap.add_argument("--filters", type=int, default=16)
    ap.add_argument("--synthetic-n", type=int, default=160)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=0.003)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--runs", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--cpus", default="0", help="CPU ids to pin to ('' for none)")
    ap.add_argument("--full-width", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument(
        "--report-only",
        action="store_true",
        help="write onnx.json/onnx.md from the rows finished so far (partial.json); no measuring",
    )
    args = ap.parse_args(argv)
    args.cpu_list = [int(c) for c in args.cpus.split(",") if c.strip()] or None
    archs = [a.strip() for a in args.archs.split(",") if a.strip()]
    args.out.mkdir(parents=True, exist_ok=True)

    import json

    import numpy as np

    from kseg.models import create_model, load_model
    from kseg.models.complexity import count_macs

    partial = args.out / "partial.json"
    rows: list[dict[str, Any]] = json.loads(partial.read_text()) if partial.is_file() else []
    for r in rows:  # rows from before the "input" key was recorded
        r.setdefault("input", args.train_size if r["kind"] == "trained" else args.size)
    done = {(r["arch"], r["kind"]) for r in rows}  # a killed run resumes after its last row
    if args.report_only:
        archs, args.full_width = [], False
    for arch in archs:
        if (arch, "trained") in done:
            continue
        print(f"[{arch}] training", flush=True)
        run, metrics = train_run(arch, args, args.out)
        print(f"[{arch}] val dice {metrics.get('dice', float('nan')):.4f}; exporting", flush=True)
        cards = export_all(run / "best.keras", args.out / "files" / arch, data=None)
        files = {
            v: Path((cards[v].get("tflite") or cards[v].get("onnx"))["path"]) for v in VARIANTS
        }
        print(f"[{arch}] timing", flush=True)
        timings = time_files(files, args)
        macs = count_macs(load_model(run / "best.keras"))
        rows.append(
            row_for(
                arch,
                "trained",
                cards,
                timings,
                {
                    "gmacs": macs / 1e9,
                    "input": args.train_size,
                    "options": {} if arch == "mobile_unet" else {"filters": args.filters},
                    "train_seconds": metrics.get("train_seconds", float("nan")),
                    "val_dice_keras": metrics.get("dice"),
                },
            )  # fmt: skip
        )
        write_json(partial, rows)
    if args.full_width:
        from kseg.data.synthetic import synthesize

        calib = synthesize("ultrasound", 16, size=args.size, seed=1).images
        calib = np.asarray(calib, np.uint8).reshape(16, args.size, args.size, 1)
        for arch in archs:
            if (arch, "default width, untrained") in done:
                continue
            print(f"[{arch}] default width, untrained: exporting", flush=True)
            d = args.out / "files" / f"{arch}_default"
            d.mkdir(parents=True, exist_ok=True)
            model_path = d / f"{arch}.keras"
            if not model_path.is_file():
                create_model(arch, input_shape=(args.size, args.size, 1)).save(model_path)
            cards = export_all(model_path, d, data="synthetic:ultrasound:40", calibration=calib)
            files = {
                v: Path((cards[v].get("tflite") or cards[v].get("onnx"))["path"]) for v in VARIANTS
            }
            timings = time_files(files, args)
            macs = count_macs(load_model(model_path))
            rows.append(
                row_for(
                    arch,
                    "default width, untrained",
                    cards,
                    timings,
                    {"gmacs": macs / 1e9, "input": args.size},
                )
            )
            write_json(partial, rows)

    runtimes = sorted({r[v]["backend"] for r in rows for v in VARIANTS})
    notes = []
    for r in rows:
        if not r["target_met"]:
            notes.append(
                f"{r['arch']} ({r['kind']}): TFLite INT8 is {r['int8_tflite_over_onnx']:.2f}x ONNX "
                "Runtime's INT8 latency (target not met)."
            )
    if args.report_only:
        notes.append("report written from the rows finished so far (--report-only)")
    result = {
        "format": "kseg-bench-onnx/1",
        "machine": machine_info(),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "runtimes": runtimes,
        "rows": rows,
        "notes": notes,
    }
    write_json(args.out / "onnx.json", result)
    write_text(args.out / "onnx.md", markdown(result))
    print(markdown(result))
    print(f"wrote {args.out / 'onnx.json'} and {args.out / 'onnx.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
