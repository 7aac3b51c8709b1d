"""The classic architecture x loss table: runs the shipped sweep configs through ``kseg sweep``.

For each config in ``--sweeps`` (``hc18`` = ``configs/sweeps/hc18_classic.yaml`` on ``--data``,
``synthetic`` = ``configs/sweeps/synthetic_classic.yaml``) this runs, in a child process, exactly
the command a user types::

    kseg sweep --config configs/sweeps/hc18_classic.yaml --data HC18 --out OUT/hc18

samples the load average every 30 s while it runs, and writes ``DOCS/sweep_<name>.json|md``
(every cell: validation Dice, IoU, precision, recall, HD95, params, MACs, INT8 Dice, epochs, time
per cell; mean Dice per model and per loss; total wall time, load average, machine) and copies the
sweep's heat-map to ``DOCS/sweep_<name>_heatmap.png``. A killed benchmark resumes: the sweep
continues where it stopped (the wall time then covers the last start only; ``attempts`` says so).

    python tools/bench_sweep.py --sweeps hc18,synthetic --out runs/bench/sweep
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from kseg.atomic import write_json, write_text  # noqa: E402

HC18 = Path(os.environ.get("KSEG_HC18", REPO.parent / "shared" / "data" / "hc18"))
SWEEPS = {
    "hc18": ("configs/sweeps/hc18_classic.yaml", "HC18 fetal-head ultrasound"),
    "synthetic": ("configs/sweeps/synthetic_classic.yaml", "synthetic ultrasound"),
}


class LoadSampler(threading.Thread):
    """1-minute load average every ``every`` seconds until stopped."""

    def __init__(self, every: float = 30.0) -> None:
        super().__init__(daemon=True)
        self.every, self.samples, self._halt = every, [], threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            self.samples.append(round(os.getloadavg()[0], 2))
            self._halt.wait(self.every)

    def stop(self) -> list[float]:
        self._halt.set()
        self.join()
        return self.samples


def run_sweep_cli(
    config: str, data: str | None, out: Path, log: Path, extra: list[str]
) -> dict[str, Any]:
    """``kseg sweep --config CONFIG [--data DATA] [EXTRA] --out OUT`` in a child process, timed."""
    cmd = [sys.executable, "-c", "from kseg.cli import main; main()", "sweep", "--config", config]
    if data:
        cmd += ["--data", data]
    cmd += [*extra, "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    sampler = LoadSampler()
    load_start = os.getloadavg()
    sampler.start()
    started = time.perf_counter()
    with log.open("a") as fh:
        proc = subprocess.run(cmd, cwd=REPO, env=env, stdout=fh, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - started
    samples = sampler.stop()
    if proc.returncode != 0:
        raise SystemExit(f"kseg sweep failed ({proc.returncode}); see {log}")
    return {
        "command": "kseg " + " ".join(cmd[3:]),
        "wall_seconds": round(wall, 1),
        "load_avg_start": [round(x, 2) for x in load_start],
        "load_avg_end": [round(x, 2) for x in os.getloadavg()],
        "load_avg_1m_samples": samples,
        "load_avg_1m_mean": round(statistics.fmean(samples), 2) if samples else None,
    }


def _r(v: Any, nd: int) -> Any:
    return None if v is None else round(float(v), nd)


def summarize(out: Path) -> dict[str, Any]:
    """Cells and the per-model / per-loss means from the sweep's ``results.json``."""
    res = json.loads((out / "results.json").read_text())
    plan = json.loads((out / "sweep.json").read_text())["plan"]
    cells = []
    for c in res["cells"]:
        cells.append(
            {
                "model": c["model"],
                "loss": c["loss"],
                "seed": c["seed"],
                "dice": _r(c["dice"], 4),
                "iou": _r(c["iou"], 4),
                "precision": _r(c["precision"], 4),
                "recall": _r(c["recall"], 4),
                "hd95_px": _r(c.get("hd95"), 1),
                "params": c["params"],
                "macs": c["macs"],
                "int8_dice": _r(c.get("int8_dice"), 4),
                "int8_error": c.get("int8_error"),
                "epochs": c["epochs"],
                "train_seconds": _r(c["train_seconds"], 1),
                "hd95_seconds": _r(c.get("hd95_seconds"), 1),
                "int8_seconds": _r(c.get("int8_seconds"), 1),
                "cell_seconds": _r(c.get("cell_seconds"), 1),
                "attempts": c.get("attempts", 1),
                "train_precision": c.get("train_precision"),
            }
        )

    def mean_by(key: str) -> dict[str, float]:
        names = plan["models"] if key == "model" else plan["losses"]
        return {
            n: round(statistics.fmean(c["dice"] for c in cells if c[key] == n), 4)
            for n in names
            if any(c[key] == n for c in cells)
        }

    cell_s = [c["cell_seconds"] for c in cells if c["cell_seconds"] is not None]
    return {
        "plan": plan,
        "cells": cells,
        "dice_by_model": mean_by("model"),
        "dice_by_loss": mean_by("loss"),
        "best": max(cells, key=lambda c: c["dice"]) if cells else None,
        "sum_cell_seconds": round(sum(cell_s), 1),
        "mean_cell_seconds": round(statistics.fmean(cell_s), 1) if cell_s else None,
        "resumed_cells": [f"{c['model']}/{c['loss']}" for c in cells if c["attempts"] > 1],
    }


def to_markdown(name: str, doc: dict[str, Any]) -> str:
    s, run = doc["summary"], doc["run"]
    recipe = doc["recipe"]
    lines = [
        f"# Architecture x loss sweep: {doc['title']}",
        "",
        f"`{run['command']}` (config `{doc['config']}`; {recipe}).",
        "",
        f"Wall time {run['wall_seconds'] / 60:.1f} min for {len(s['cells'])} cells "
        f"(sum of cell times {s['sum_cell_seconds'] / 60:.1f} min, mean {s['mean_cell_seconds']:.0f} s "
        f"per cell); 1-min load average {run['load_avg_1m_mean']} mean over the run "
        f"(start {run['load_avg_start'][0]}, end {run['load_avg_end'][0]}); "
        f"{doc['machine']['cpu']}, {doc['machine']['cpu_count']} cores.",
        "",
        "Validation metrics of each cell's best epoch (pixels pooled over the validation split); "
        "HD95 in pixels at the original image size; INT8 Dice of the full-integer TFLite model on "
        "the same split; cell s = training + HD95 evaluation + INT8 conversion.",
        "",
        "| model | loss | Dice | IoU | precision | recall | HD95 px | INT8 Dice | params | GMACs "
        "| epochs | train s | cell s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def f(v: Any, nd: int) -> str:
        return "-" if v is None else f"{v:.{nd}f}"

    for c in s["cells"]:
        lines.append(
            f"| {c['model']} | {c['loss']} | {f(c['dice'], 4)} | {f(c['iou'], 4)} "
            f"| {f(c['precision'], 4)} | {f(c['recall'], 4)} | {f(c['hd95_px'], 1)} "
            f"| {f(c['int8_dice'], 4)} | {c['params']:,} | {c['macs'] / 1e9:.3f} | {c['epochs']} "
            f"| {f(c['train_seconds'], 0)} | {f(c['cell_seconds'], 0)} |"
        )
    b = s["best"]
    lines += [
        "",
        "Mean Dice per model: "
        + ", ".join(f"{k} {v:.4f}" for k, v in s["dice_by_model"].items())
        + ". Per loss: "
        + ", ".join(f"{k} {v:.4f}" for k, v in s["dice_by_loss"].items())
        + f". Best cell: {b['model']} / {b['loss']} (Dice {b['dice']:.4f}).",
    ]
    if s["resumed_cells"]:
        lines.append(
            f"Resumed cells (times cover the last start only): {', '.join(s['resumed_cells'])}."
        )
    errors = [c for c in s["cells"] if c["int8_error"]]
    for c in errors:
        lines.append(f"INT8 failed for {c['model']}/{c['loss']}: {c['int8_error']}")
    lines += ["", f"![heat-map](sweep_{name}_heatmap.png)", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sweeps", default="hc18,synthetic", help="comma-separated: hc18, synthetic")
    ap.add_argument("--data", type=Path, default=HC18, help="HC18 folder (images/, masks/)")
    ap.add_argument("--out", type=Path, default=Path("runs/bench/sweep"))
    ap.add_argument("--docs", type=Path, default=REPO / "docs" / "benchmarks")
    ap.add_argument(
        "--extra",
        default="",
        help="more kseg sweep flags for a smoke test, e.g. '--models unet --losses dice --epochs 1' "
        "(the shipped figures use none)",
    )
    args = ap.parse_args(argv)
    from kseg.bench.latency import machine_info
    from kseg.config import load_config

    names = [n.strip() for n in args.sweeps.split(",") if n.strip()]
    for name in names:
        if name not in SWEEPS:
            raise SystemExit(f"--sweeps {name}: use one of {', '.join(SWEEPS)}")
    args.out.mkdir(parents=True, exist_ok=True)
    for name in names:
        config, title = SWEEPS[name]
        out = (args.out / name).resolve()
        data = str(args.data) if name == "hc18" else None
        print(f"sweep {name}: {config} -> {out}", flush=True)
        run = run_sweep_cli(config, data, out, args.out / f"{name}.log", args.extra.split())
        cfg = load_config(REPO / config)
        t, d = cfg.train, cfg.data
        doc = {
            "title": title,
            "config": config,
            "data": data or f"synthetic:{d.synthetic_kind}:{d.synthetic_n}",
            "recipe": (
                f"{d.img_size} px, {t.epochs} epochs, batch {t.batch_size}, {t.optimizer} "
                f"lr {t.learning_rate:g}, {t.schedule} schedule, depth "
                f"{cfg.model.options.get('depth')} / {cfg.model.options.get('filters')} filters"
            ),
            "run": run,
            "extra_flags": args.extra or None,
            "machine": machine_info(),
            "summary": summarize(out),
            "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        }
        args.docs.mkdir(parents=True, exist_ok=True)
        write_json(args.docs / f"sweep_{name}.json", doc)
        write_text(args.docs / f"sweep_{name}.md", to_markdown(name, doc))
        shutil.copyfile(out / "heatmap.png", args.docs / f"sweep_{name}_heatmap.png")
        print(to_markdown(name, doc), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
