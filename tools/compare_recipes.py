"""Two training recipes, each run with several seeds, compared on the same validation images.

One run's score moves with its training seed (on USGRA by 0.04-0.05 Dice), so one run per recipe
cannot rank two recipes; and each run's bootstrap interval covers the images, not the seed. This
compares recipe A with recipe B from ``kseg evaluate`` folders of their runs (same split):

- each run's pooled Dice per class;
- each seed pair (the i-th run of A against the i-th of B) with its paired bootstrap interval;
- the recipes pooled over their runs (pixel counts summed per image over the runs,
  :func:`kseg.evaluate.compare_evaluations` with lists): the difference and its paired interval.

The pooled interval still covers image sampling only: with two or three seeds per recipe, read
a difference as settled when the seed pairs agree in sign and the pooled interval excludes 0.

    python tools/compare_recipes.py --a runs/exp/s224_42/eval_val runs/exp/s224_7/eval_val \\
        --b runs/bench/usgra/eval_val runs/exp/s256_7/eval_val --labels "224 px" "256 px" \\
        --rename class_1=nerve class_2=vessel --out runs/bench/size
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from kseg.atomic import write_json, write_text  # noqa: E402
from kseg.evaluate import compare_evaluations  # noqa: E402


def run_scores(folder: Path) -> dict[str, float]:
    """Pooled Dice per class (and the foreground mean) from a ``kseg evaluate`` folder."""
    metrics = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
    per_class = metrics.get("per_class") or {"foreground": {"dice": metrics["dice"]}}
    out = {name: float(v["dice"]) for name, v in per_class.items()}
    out["mean"] = float(metrics["dice"])  # multi-class: the foreground mean of the pooled Dice
    return out


def difference(cmp: dict[str, Any]) -> dict[str, list[float]]:
    """``{class: [difference, low, high], mean: [...]}`` from :func:`compare_evaluations`."""
    out = {
        name: [v["difference"], *v["difference_ci95"]]
        for name, v in (cmp.get("per_class") or {}).items()
    }
    out["mean"] = list(cmp["dice"])
    return out


def verdict(diff: list[float], pairs: list[list[float]]) -> str:
    signs = {d[0] > 0 for d in pairs}
    if diff[1] > 0 and signs == {True}:
        return "A better"
    if diff[2] < 0 and signs == {False}:
        return "B better"
    return "not ranked"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--a", nargs="+", type=Path, required=True, help="recipe A's evaluations")
    ap.add_argument("--b", nargs="+", type=Path, required=True, help="recipe B's evaluations")
    ap.add_argument("--labels", nargs=2, default=["A", "B"], metavar=("A", "B"))
    ap.add_argument("--rename", nargs="*", default=[], help="class_1=nerve ...: report names")
    ap.add_argument("--out", type=Path, required=True, help="folder for compare.{json,md}")
    args = ap.parse_args()
    rename = dict(r.split("=", 1) for r in args.rename)

    def named(d: dict[str, Any]) -> dict[str, Any]:
        return {rename.get(k, k): v for k, v in d.items()}

    runs = {
        "a": [named(run_scores(f)) for f in args.a],
        "b": [named(run_scores(f)) for f in args.b],
    }
    pairs = [
        named(difference(compare_evaluations(a, b))) for a, b in zip(args.a, args.b, strict=False)
    ]
    pooled = named(difference(compare_evaluations(args.a, args.b)))
    result = {
        "labels": {"a": args.labels[0], "b": args.labels[1]},
        "a": [str(f) for f in args.a],
        "b": [str(f) for f in args.b],
        "runs": runs,
        "seed_pairs": pairs,
        "pooled": pooled,
        "verdict": {k: verdict(v, [p[k] for p in pairs]) for k, v in pooled.items()},
        "note": "differences are A minus B; intervals: paired bootstrap over the images "
        "(95 %, 2000 draws), not over training seeds",
    }
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "compare.json", result)
    write_text(args.out / "compare.md", markdown(result))
    print(markdown(result))
    return 0


def markdown(r: dict[str, Any]) -> str:
    la, lb = r["labels"]["a"], r["labels"]["b"]
    keys = list(r["pooled"])
    lines = [f"# {la} (A) against {lb} (B)", "", "Pooled Dice of each run:", ""]
    lines += ["| recipe | run | " + " | ".join(keys) + " |", "|---|---|" + "---:|" * len(keys)]
    for side, label in (("a", la), ("b", lb)):
        for folder, scores in zip(r[side], r["runs"][side], strict=True):
            row = " | ".join(f"{scores.get(k, float('nan')):.3f}" for k in keys)
            lines.append(f"| {label} | `{folder}` | {row} |")
    lines += ["", "A minus B (95 % paired interval over the images):", ""]
    lines += ["| comparison | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]

    def cell(d: list[float]) -> str:
        return f"{d[0]:+.3f} ({d[1]:+.3f} to {d[2]:+.3f})"

    for i, pair in enumerate(r["seed_pairs"]):
        lines.append(f"| run {i + 1} of each | " + " | ".join(cell(pair[k]) for k in keys) + " |")
    lines.append("| **pooled over the runs** | " + " | ".join(cell(r["pooled"][k]) for k in keys))
    lines[-1] += " |"
    lines.append("| verdict | " + " | ".join(r["verdict"][k] for k in keys) + " |")
    lines += ["", r["note"], ""]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
