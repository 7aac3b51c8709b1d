"""Print the demo's result for a run directory: the plan and budget, validation Dice of the Keras
model, the INT8 file's parity line, its latency (``kseg bench``) and the overlay picture's path.

Usage: python tools/summarize_run.py RUN_DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _load(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def main(run: Path) -> int:
    metrics = json.loads((run / "metrics.json").read_text())
    budget = _load(run / "budget.json")
    card = _load(run / "best.int8.json")
    bench = _load(run / "bench.int8.json")
    contours = run / "eval-int8" / "contours.png"
    print()
    print(f"run directory      {run}")
    if budget:
        print(
            f"training           {budget['elapsed_minutes']:.1f} of {budget['budget_minutes']:g} min "
            f"budget, {budget['epochs_done']} epochs (plan: {run / 'plan.yaml'})"
        )
    print(
        f"validation Dice    {metrics['dice']:.4f} (Keras float, {metrics.get('n_images', '?')} images "
        f"the model never trained on; all-background guess "
        f"{metrics.get('baseline_dice_all_background', 0):.4f}, all-foreground guess "
        f"{metrics.get('baseline_dice_all_foreground', 0):.4f})"
    )
    if card:
        p = card["parity"]
        status = {True: "passed", False: "FAILED", None: "-"}[p.get("passed")]
        print(
            f"int8 .tflite       Dice {card['tflite_dice']:.4f} (drop {card['dice_drop']:+.4f}, gate "
            f"{status}, pixel agreement {p.get('pixel_agreement', float('nan')):.4f}), "
            f"{card['size_bytes'] / 1024:.1f} KiB  ->  {card['tflite']['path']}"
        )
    if bench:
        for r in bench.get("results", [])[:1]:
            lat = r["latency_ms"]
            print(
                f"int8 latency       {lat['p50']:.2f} ms p50, {lat.get('p90', lat['p50']):.2f} ms p90 "
                f"({r.get('backend', 'LiteRT')}, {r.get('threads', 1)} thread, "
                f"{r.get('input_shape', '')}; kseg bench)"
            )
    if contours.is_file():
        print(
            f"overlay picture    {contours}  (validation images: truth dashed green, INT8 prediction red)"
        )
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python tools/summarize_run.py RUN_DIR")
    sys.exit(main(Path(sys.argv[1])))
