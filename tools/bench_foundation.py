"""Foundation benchmark (issue: train -> evaluate -> convert --int8).

Measures, in one run on this machine:

- synthetic ultrasound, the full recipe (configs/synthetic.yaml) and the quick-start demo recipe
  (configs/demo.yaml): validation Dice of the Keras model, of the float32 .tflite and of the INT8
  .tflite (LiteRT), and the INT8 / float32 size ratio; targets: float Dice >= 0.85, INT8 within
  0.01, size <= 0.30x;
- real data, ../shared/data/hc18 (configs/hc18.yaml, a <= 30 minute CPU run): Dice of the Keras
  model and of the INT8 file; target >= 0.90.

Writes JSON and a Markdown table (default runs/bench/foundation.{json,md}).

Usage:
    python tools/bench_foundation.py [--only synthetic_demo|synthetic_ultrasound|hc18] [--out runs/bench/foundation]
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HC18 = REPO.parent / "shared" / "data" / "hc18"
# (name, config under configs/, data folder or None for the embedded synthetic set)
RECIPES = [
    ("synthetic_demo", "demo.yaml", None),
    ("synthetic_ultrasound", "synthetic.yaml", None),
    ("hc18", "hc18.yaml", HC18),
]


def one_recipe(
    name: str, config: Path, data: Path | None, out_root: Path, *, time_limit: bool = True
) -> dict:
    from kseg.config import load_config
    from kseg.export import ParityError, export_tflite
    from kseg.training import train

    run = out_root / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    overrides = {"data.path": str(data) if data else None}
    if (
        not time_limit
    ):  # Dice of the whole recipe, whatever the machine's speed (training is seeded)
        overrides["train.time_limit_minutes"] = None
    cfg = load_config(config, overrides)
    started = time.perf_counter()
    metrics = train(cfg, run, verbose=2)
    train_min = (time.perf_counter() - started) / 60
    cards = {}
    for mode in ("float32", "int8"):
        try:
            cards[mode] = export_tflite(run / "best.keras", mode, max_dice_drop=-1)
        except ParityError:  # gate disabled above; kept for clarity
            raise
    f32, i8 = cards["float32"], cards["int8"]
    return {
        "recipe": name,
        "config": str(config.relative_to(REPO)),
        "run_dir": str(run),
        "train_minutes": round(train_min, 1),
        "epochs": metrics["epochs_completed"],
        "n_val": metrics["n_images"],
        "keras_dice": metrics["dice"],
        "float32_tflite_dice": f32["tflite_dice"],
        "int8_tflite_dice": i8["tflite_dice"],
        "int8_dice_drop": i8["dice_drop"],
        "float32_bytes": f32["size_bytes"],
        "int8_bytes": i8["size_bytes"],
        "int8_size_ratio": i8["size_bytes"] / f32["size_bytes"],
        "params": i8["source"]["params"],
        "macs": i8["source"]["macs"],
    }


def to_markdown(results: list[dict]) -> str:
    lines = [
        "| recipe | train min | epochs | val images | Keras Dice | float32 .tflite Dice | INT8 .tflite Dice | INT8 drop | INT8 KiB | INT8/float32 size |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['recipe']} | {r['train_minutes']} | {r['epochs']} | {r['n_val']} | {r['keras_dice']:.4f} | "
            f"{r['float32_tflite_dice']:.4f} | {r['int8_tflite_dice']:.4f} | {r['int8_dice_drop']:+.4f} | "
            f"{r['int8_bytes'] / 1024:.0f} | {r['int8_size_ratio']:.3f} |"
        )
    lines += [
        "",
        "Targets: synthetic Keras Dice >= 0.85, INT8 within 0.01, INT8 size <= 0.30x float32; hc18 Dice >= 0.90 within 30 CPU minutes.",
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--only", choices=[name for name, _, _ in RECIPES])
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "bench" / "foundation")
    ap.add_argument(
        "--no-time-limit",
        action="store_true",
        help="train every epoch of the recipe (ignore train.time_limit_minutes)",
    )
    args = ap.parse_args()
    from kseg.atomic import write_json, write_text

    results = []
    for name, config, data in RECIPES:
        if args.only not in (None, name):
            continue
        if data is not None and not (data / "images").is_dir():
            print(f"skipping {name}: {data} not found")
            continue
        results.append(
            one_recipe(
                name,
                REPO / "configs" / config,
                data,
                args.out.parent / "runs",
                time_limit=not args.no_time_limit,
            )
        )
    report = {
        "machine": {"cpus": __import__("os").cpu_count(), "platform": platform.platform()},
        "results": results,
    }
    write_json(args.out.with_suffix(".json"), report)
    write_text(args.out.with_suffix(".md"), to_markdown(results))
    print(to_markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
