"""Sweep engines: one 8-cell sweep with the local runner and with Ray on a local 2-worker cluster.

Runs, in child processes, exactly the commands a user types::

    kseg sweep PROTOCOL --out OUT/local
    ray start --head --block --num-cpus 2 ...        (2 CPUs: two cells at a time, 1 CPU each)
    kseg sweep PROTOCOL --engine ray --address 127.0.0.1:PORT --out OUT/ray

and measures: both wall times; the two tables (same columns, same rows, largest metric
difference); from ``OUT/ray/engine.json`` each task's scheduling delay, worker set-up (importing
kseg and TensorFlow in a fresh worker, the thread limit, the cell folder) and result hand-back;
Ray's own round trip for an empty task; and the engine's overhead per cell (worker-slot seconds
not spent inside cells, less the local runner's). From these and the HC18 classic sweep measured
by ``tools/bench_sweep.py`` (``docs/benchmarks/sweep_hc18.json``) it estimates that sweep's wall
time on 10 machines. Writes ``OUT/sweep_engine.json|md``.

    python tools/bench_sweep_engine.py --out runs/bench/sweep_engine
"""

from __future__ import annotations

import argparse
import csv
import heapq
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tools")]

from bench_sweep import LoadSampler  # noqa: E402

from kseg.atomic import write_json, write_text  # noqa: E402

PROTOCOL = [
    "sweep", "--models", "unet,segnet", "--losses", "dice,bce,focal,tversky",
    "--data", "synthetic:ultrasound:48", "--epochs", "3", "--no-int8", "--no-hd95",
    "--set", "data.img_size=32", "--set", "train.batch_size=4", "--set", "train.steps_per_epoch=6",
    "--set", "model.options={depth: 2, filters: 4}",
]  # fmt: skip
WORKERS = 2
TIMES = ("train_seconds_mean", "train_seconds_std", "cell_seconds_mean", "cell_seconds_std")
NOOP = """
import json, sys, time, ray
ray.init(address=sys.argv[1], logging_level="ERROR")
f = ray.remote(num_cpus=1)(lambda: 0)
t = time.perf_counter(); ray.get(f.remote()); cold = time.perf_counter() - t
warm = []
for _ in range(30):
    t = time.perf_counter(); ray.get(f.remote()); warm.append(time.perf_counter() - t)
print(json.dumps({"first_s": cold, "warm_s": warm}))
"""


def kseg(args: list[str], log: Path) -> tuple[float, list[float]]:
    """``kseg ARGS`` in a child process; wall seconds and 1-min load samples."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_AUTH_MODE": "token"}
    cmd = [sys.executable, "-c", "from kseg.cli import main; main()", *args]
    sampler = LoadSampler(every=10)
    sampler.start()
    started = time.perf_counter()
    with log.open("w") as fh:
        proc = subprocess.run(cmd, cwd=REPO, env=env, stdout=fh, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - started
    samples = sampler.stop()
    if proc.returncode != 0:
        raise SystemExit(f"kseg sweep failed ({proc.returncode}); see {log}")
    return wall, samples


class RayHead:
    """``ray start --head --block`` with ``cpus`` CPUs; SIGTERM stops the node's processes."""

    def __init__(self, cpus: int, temp: Path) -> None:
        self.temp, self.log = temp, temp / "head.log"
        temp.mkdir(parents=True, exist_ok=True)
        ray_cli = Path(sys.executable).with_name("ray")
        cmd = [
            str(ray_cli), "start", "--head", "--block", "--num-cpus", str(cpus), "--port", "0",
            "--node-ip-address", "127.0.0.1", "--include-dashboard", "false",
            "--disable-usage-stats", "--object-store-memory", str(200 * 2**20),
            "--temp-dir", str(temp),
        ]  # fmt: skip
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        started = time.perf_counter()
        with self.log.open("w") as fh:
            self.proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env)
        while True:
            m = re.search(r"ray start --address='[^':]+:(\d+)'", self.log.read_text())
            if m:
                self.address = f"127.0.0.1:{m.group(1)}"
                break
            if self.proc.poll() is not None or time.perf_counter() - started > 300:
                self.stop()
                raise SystemExit(f"ray start failed; see {self.log}")
            time.sleep(0.2)
        self.start_seconds = time.perf_counter() - started

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)


def table(out: Path) -> tuple[list[str], list[dict[str, str]]]:
    with (out / "results.csv").open() as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
    return list(reader.fieldnames or ()), rows


def cell_seconds(out: Path) -> list[float]:
    return [
        json.loads(p.read_text())["cell_seconds"] for p in sorted(out.glob("cells/*/cell.json"))
    ]


def compare(local: Path, ray: Path) -> dict[str, Any]:
    (lc, lr), (rc, rr) = table(local), table(ray)
    diffs = {}
    for key in ("dice_mean", "iou_mean", "precision_mean", "recall_mean"):
        diffs[key] = max(abs(float(a[key]) - float(b[key])) for a, b in zip(lr, rr, strict=True))
    same = [
        {k: v for k, v in a.items() if k not in TIMES}
        == {k: v for k, v in b.items() if k not in TIMES}
        for a, b in zip(lr, rr, strict=True)
    ]
    return {
        "same_columns": lc == rc,
        "columns": len(lc),
        "same_rows": [(a["model"], a["loss"]) for a in lr] == [(b["model"], b["loss"]) for b in rr],
        "rows": len(lr),
        "identical_rows_except_times": sum(same),
        "max_abs_diff": diffs,
    }


def task_times(ray_out: Path) -> dict[str, Any]:
    tasks = json.loads((ray_out / "engine.json").read_text())["tasks"]
    first_seen: set[int] = set()
    fresh, reused = [], []
    for t in sorted(tasks, key=lambda t: t["entered"]):
        (reused if t["pid"] in first_seen else fresh).append(t["started"] - t["entered"])
        first_seen.add(t["pid"])
    return {
        "tasks": len(tasks),
        "workers": len(first_seen),
        "schedule_first_s": sorted(t["entered"] - t["submitted"] for t in tasks)[:WORKERS],
        "setup_fresh_worker_s": fresh,
        "setup_reused_worker_s": reused,
        "handback_s": [t["collected"] - t["finished"] for t in tasks],
        "cell_s": [t["finished"] - t["started"] for t in tasks],
    }


def schedule(durations: list[float], machines: int) -> float:
    """Makespan when each cell goes, in plan order, to the first machine that is free (Ray's
    order for equal tasks)."""
    free = [0.0] * machines
    heapq.heapify(free)
    end = 0.0
    for d in durations:
        t = heapq.heappop(free) + d
        end = max(end, t)
        heapq.heappush(free, t)
    return end


def estimate_hc18(per_cell_overhead: float, fresh_setup: float, machines: int = 10) -> dict:
    """HC18 classic (20 cells) on ``machines`` 2-core machines, one cell per machine at a time
    (``--cpus-per-cell 2``: TensorFlow on both cores as in the one-machine run)."""
    src = REPO / "docs" / "benchmarks" / "sweep_hc18.json"
    bench = json.loads(src.read_text())
    cells = [c["cell_seconds"] for c in bench["summary"]["cells"]]
    wall_one = bench["run"]["wall_seconds"]
    driver = wall_one - sum(cells)  # split, results, plots: done once by the driver either way
    # every cell pays the engine's overhead; the first cell on each machine also imports TF
    first = [c + per_cell_overhead + fresh_setup for c in cells[:machines]]
    rest = [c + per_cell_overhead for c in cells[machines:]]
    plan_order = schedule(first + rest, machines)
    longest_first = schedule(sorted(first + rest, reverse=True), machines)
    return {
        "source": str(src.relative_to(REPO)),
        "cells": len(cells),
        "machines": machines,
        "one_machine_wall_s": wall_one,
        "cell_s_sum": sum(cells),
        "cell_s_min_max": [min(cells), max(cells)],
        "driver_s": driver,
        "per_cell_engine_overhead_s": per_cell_overhead,
        "fresh_worker_setup_s": fresh_setup,
        "wall_plan_order_s": driver + plan_order,
        "wall_longest_first_s": driver + longest_first,
        "ideal_s": wall_one / machines,
        "speedup_plan_order": wall_one / (driver + plan_order),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "bench" / "sweep_engine")
    ap.add_argument("--docs", type=Path, default=None, help="also copy the .json/.md here")
    args = ap.parse_args()
    out = args.out.resolve()
    for sub in ("local", "ray"):
        shutil.rmtree(out / sub, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    load0 = os.getloadavg()

    print("[bench] local runner ...", flush=True)
    local_wall, local_load = kseg([*PROTOCOL, "--out", str(out / "local")], out / "local.log")
    print(f"[bench] local {local_wall:.1f} s; starting a Ray head with {WORKERS} CPUs", flush=True)
    head = RayHead(WORKERS, Path(f"/tmp/kray-bench-{os.getpid()}"))
    try:
        env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_AUTH_MODE": "token"}
        noop = json.loads(
            subprocess.run(
                [sys.executable, "-c", NOOP, head.address],
                env=env, capture_output=True, text=True, check=True, timeout=600,
            ).stdout.strip().splitlines()[-1]
        )  # fmt: skip
        print("[bench] Ray sweep ...", flush=True)
        ray_args = [*PROTOCOL, "--engine", "ray", "--address", head.address]
        ray_wall, ray_load = kseg([*ray_args, "--out", str(out / "ray")], out / "ray.log")
    finally:
        head.stop()
        shutil.rmtree(head.temp, ignore_errors=True)
    print(f"[bench] Ray {ray_wall:.1f} s", flush=True)

    n = len(cell_seconds(out / "local"))
    local_cells, ray_cells = sum(cell_seconds(out / "local")), sum(cell_seconds(out / "ray"))
    tasks = task_times(out / "ray")
    local_idle = local_wall - local_cells  # process start, TF import, split, results, plots
    ray_idle = WORKERS * ray_wall - ray_cells  # worker-slot seconds outside cells
    overhead = (ray_idle - WORKERS * local_idle) / n
    fresh = statistics.mean(tasks["setup_fresh_worker_s"])
    result = {
        "title": "kseg sweep: local runner vs Ray on a local 2-worker cluster",
        "protocol": "kseg " + " ".join(PROTOCOL),
        "cells": n,
        "ray_workers": WORKERS,
        "cpus_per_cell": 1,
        "local": {"wall_s": local_wall, "cell_s_sum": local_cells, "load_1m": local_load},
        "ray": {
            "head_start_s": head.start_seconds,
            "wall_s": ray_wall,
            "cell_s_sum": ray_cells,
            "load_1m": ray_load,
            "noop_task_first_s": noop["first_s"],
            "noop_task_warm_ms_median": 1000 * statistics.median(noop["warm_s"]),
            **tasks,
        },
        "tables": compare(out / "local", out / "ray"),
        "overhead": {
            "local_outside_cells_s": local_idle,
            "ray_slot_seconds_outside_cells_s": ray_idle,
            "engine_overhead_per_cell_s": overhead,
            "fresh_worker_setup_mean_s": fresh,
        },
        "hc18_on_10_machines": estimate_hc18(
            max(
                0.0,
                statistics.mean(tasks["handback_s"])
                + statistics.mean(tasks["setup_reused_worker_s"] or [0.0])
                + statistics.median(noop["warm_s"]),
            ),
            fresh,
        ),  # fmt: skip
        "load_avg_start": load0,
        "machine": {"cpu_count": os.cpu_count(), "python": sys.version.split()[0]},
        "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
    }
    write_json(out / "sweep_engine.json", result)
    write_text(out / "sweep_engine.md", to_markdown(result))
    if args.docs:
        args.docs.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(out / "sweep_engine.json", args.docs / "sweep_engine.json")
        shutil.copyfile(out / "sweep_engine.md", args.docs / "sweep_engine.md")
    print(to_markdown(result))


def _mean(xs: list[float]) -> str:
    return f"{statistics.mean(xs):.2f}" if xs else "-"


def to_markdown(r: dict[str, Any]) -> str:
    lo, ra, tb, ov, est = r["local"], r["ray"], r["tables"], r["overhead"], r["hc18_on_10_machines"]
    load = lambda xs: f"{statistics.mean(xs):.1f}" if xs else "-"  # noqa: E731
    return "\n".join(
        [
            f"# {r['title']}",
            "",
            f"`{r['protocol']}`; Ray: {r['ray_workers']} CPUs on one node, 1 CPU per cell.",
            "",
            "| | wall s | sum of cell s | mean 1-min load |",
            "|---|---:|---:|---:|",
            f"| local runner | {lo['wall_s']:.1f} | {lo['cell_s_sum']:.1f} | {load(lo['load_1m'])} |",
            f"| Ray, {r['ray_workers']} workers | {ra['wall_s']:.1f} | {ra['cell_s_sum']:.1f} "
            f"| {load(ra['load_1m'])} |",
            "",
            f"- tables: same columns {tb['same_columns']} ({tb['columns']}), same rows "
            f"{tb['same_rows']} ({tb['rows']}), identical apart from times "
            f"{tb['identical_rows_except_times']}/{tb['rows']}; largest |Δ Dice| "
            f"{tb['max_abs_diff']['dice_mean']:.4f}",
            f"- Ray head start {ra['head_start_s']:.1f} s; empty task: first "
            f"{ra['noop_task_first_s']:.2f} s (worker start), then "
            f"{ra['noop_task_warm_ms_median']:.1f} ms median round trip",
            f"- per task: scheduling of the first {len(ra['schedule_first_s'])} "
            f"{_mean(ra['schedule_first_s'])} s; set-up in a fresh worker "
            f"{_mean(ra['setup_fresh_worker_s'])} s (imports TensorFlow), in a reused one "
            f"{_mean(ra['setup_reused_worker_s'])} s; hand-back {_mean(ra['handback_s'])} s",
            f"- engine overhead per cell (worker-slot seconds outside cells minus the local "
            f"runner's, per cell): {ov['engine_overhead_per_cell_s']:.2f} s",
            "",
            f"## HC18 classic on {est['machines']} machines (estimate)",
            "",
            f"{est['cells']} cells, {est['one_machine_wall_s'] / 60:.1f} min on one machine "
            f"(cells {est['cell_s_min_max'][0]:.0f}-{est['cell_s_min_max'][1]:.0f} s, driver "
            f"{est['driver_s']:.0f} s). One cell per machine at a time, plan order: "
            f"**{est['wall_plan_order_s']:.0f} s ({est['wall_plan_order_s'] / 60:.1f} min)**, "
            f"{est['speedup_plan_order']:.1f}x; longest first {est['wall_longest_first_s']:.0f} s; "
            f"perfect split {est['ideal_s']:.0f} s.",
            "",
        ]
    )


if __name__ == "__main__":
    main()
