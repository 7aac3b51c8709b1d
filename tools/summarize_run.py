"""Print the demo's result: float Dice, INT8 Dice and .tflite sizes for a run directory.

Usage: python tools/summarize_run.py RUN_DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(run: Path) -> int:
    metrics = json.loads((run / "metrics.json").read_text())
    cards = {
        p.stem.split(".")[-1]: json.loads(p.read_text()) for p in sorted(run.glob("best.*.json"))
    }
    print()
    print(f"run directory      {run}")
    print(
        f"validation Dice    {metrics['dice']:.4f} (Keras float, {metrics.get('n_images', '?')} images; "
        f"all-background guess {metrics.get('baseline_dice_all_background', 0):.4f}, "
        f"all-foreground guess {metrics.get('baseline_dice_all_foreground', 0):.4f})"
    )
    for mode, card in cards.items():
        p = card["parity"]
        status = {True: "passed", False: "FAILED", None: "-"}[p.get("passed")]
        print(
            f"{mode:<8} .tflite    Dice {card['tflite_dice']:.4f} (drop {card['dice_drop']:+.4f}, gate {status}), "
            f"{card['size_bytes'] / 1024:.1f} KiB  ->  {card['tflite']['path']}"
        )
    if "float32" in cards and "int8" in cards:
        ratio = cards["int8"]["size_bytes"] / cards["float32"]["size_bytes"]
        print(f"INT8 / float32 size  {ratio:.3f}x")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python tools/summarize_run.py RUN_DIR")
    sys.exit(main(Path(sys.argv[1])))
