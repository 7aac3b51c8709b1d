"""Budget benchmark: ``kseg train --data DIR --budget M`` as a user runs it, timed from outside.

For each data set: run the whole command in a fresh process (planning, training, final scoring),
time it with a wall clock, and collect the plan (``RUN/plan.yaml``), what the run decided about its
budget (``RUN/budget.json``: re-fits, stop) and the validation metrics. The target (issue 16):
the command ends within +-10 % of the budget; HC18 Dice >= 0.97; synthetic ultrasound Dice >= the
demo's 0.7705.

Writes OUT/plan_bench.json after every data set and docs-ready OUT/plan_bench.md.

    python tools/bench_plan.py --budget 15 --out runs/bench/plan                 # HC18 + synthetic
    python tools/bench_plan.py --budget 15 --sets hc18 --out runs/bench/plan
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
HC18 = Path(os.environ.get("KSEG_HC18", REPO.parent / "shared" / "data" / "hc18"))
DEMO_DICE = 0.7705  #: the README's demo (synthetic ultrasound, 400 images)
TARGETS = {"hc18": 0.97, "synthetic": DEMO_DICE}


def kseg(*args: str) -> list[str]:
    return [sys.executable, "-c", "from kseg.cli import main; main()", *args]


def synthetic_folder(out: Path, n: int, size: int) -> Path:
    folder = out / f"synth{n}"
    if not (folder / "images").is_dir():
        subprocess.run(
            kseg("data", "synth", "--kind", "ultrasound", "--n", str(n), "--size", str(size),
                 "--out", str(folder)),
            check=True,
        )  # fmt: skip
    return folder


def run_one(name: str, data: Path, budget: float, out: Path) -> dict[str, Any]:
    run = out / f"{name}_run"
    if run.exists():
        shutil.rmtree(run)
    log = out / f"{name}.log"
    load_before = os.getloadavg()
    started = time.perf_counter()
    with log.open("w") as fh:
        proc = subprocess.run(
            kseg("train", "--data", str(data), "--budget", str(budget), "--out", str(run)),
            stdout=fh,
            stderr=subprocess.STDOUT,
        )
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{name}: kseg train failed (exit {proc.returncode}); see {log}")
    metrics = json.loads((run / "metrics.json").read_text())
    record = json.loads((run / "budget.json").read_text())
    cfg = (run / "config.yaml").read_text()
    import yaml

    c = yaml.safe_load(cfg)
    return {
        "data": str(data),
        "budget_minutes": budget,
        "wall_minutes": round(wall / 60.0, 2),
        "of_budget": round(wall / (budget * 60.0), 3),
        "within_10pct": abs(wall / (budget * 60.0) - 1.0) <= 0.10,
        "dice": metrics["dice"],
        "dice_target": TARGETS.get(name),
        "n_val": metrics.get("n_images"),
        "epochs_planned": c["train"]["epochs"],
        "epochs_done": record["epochs_done"],
        "refits": record["refits"],
        "stop": record["stop"],
        "epoch_seconds_median": sorted(record["epoch_seconds"][1:] or record["epoch_seconds"])[
            len(record["epoch_seconds"][1:] or record["epoch_seconds"]) // 2
        ],
        "recipe": {
            "model": c["model"],
            "img_size": c["data"]["img_size"],
            "batch_size": c["train"]["batch_size"],
            "precision": c["train"]["precision"],
        },
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "run": str(run),
    }


def to_markdown(results: dict[str, Any]) -> str:
    lines = [
        "| data | budget min | wall min | of budget | within +-10 % | epochs planned -> done | "
        "s/epoch | recipe | val Dice | target |",
        "|---|---:|---:|---:|---|---|---:|---|---:|---:|",
    ]
    for name, r in results.items():
        m = r["recipe"]["model"]
        recipe = (
            f"{m['name']} d{m['options'].get('depth')} f{m['options'].get('filters')} "
            f"{r['recipe']['img_size']} px"
        )
        lines.append(
            f"| {name} | {r['budget_minutes']:g} | {r['wall_minutes']:.2f} | {r['of_budget']:.3f} | "
            f"{'yes' if r['within_10pct'] else 'no'} | {r['epochs_planned']} -> {r['epochs_done']} | "
            f"{r['epoch_seconds_median']:.1f} | {recipe} | {r['dice']:.4f} | {r['dice_target']} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=float, default=15.0)
    ap.add_argument("--sets", default="hc18,synthetic")
    ap.add_argument("--synthetic-n", type=int, default=400)
    ap.add_argument("--synthetic-size", type=int, default=128)
    ap.add_argument("--out", type=Path, default=Path("runs/bench/plan"))
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    report = args.out / "plan_bench.json"
    results: dict[str, Any] = json.loads(report.read_text()) if report.is_file() else {}
    for name in args.sets.split(","):
        if name == "hc18":
            if not (HC18 / "images").is_dir():
                print(f"skipping hc18: {HC18} not found (set KSEG_HC18)", file=sys.stderr)
                continue
            data = HC18
        elif name == "synthetic":
            data = synthetic_folder(args.out, args.synthetic_n, args.synthetic_size)
        else:
            raise SystemExit(f"--sets: unknown set {name!r}; use hc18, synthetic")
        results[name] = run_one(name, data, args.budget, args.out)
        report.write_text(json.dumps(results, indent=2))
        print(json.dumps({k: results[name][k] for k in ("wall_minutes", "of_budget", "dice")}))
    (args.out / "plan_bench.md").write_text(to_markdown(results))
    print(to_markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
