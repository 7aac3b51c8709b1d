"""Two-worker training on loopback vs one process: the cost of ``train.strategy: multi_worker``.

Both runs train the same recipe (synthetic ultrasound, ``unet`` depth ``--depth``, ``--filters``
filters, ``--size`` px, global batch ``--batch``, ``--epochs`` epochs, same seed, so the same
split and the same global batch) through ``kseg.training.train``, each worker in its own process
with ``TF_CONFIG`` naming two ``127.0.0.1`` ports. A timing callback (first in the list, so it
sees the whole epoch) records per epoch: the training steps, the validation pass, and the rest
(checkpoints, backup, logs). The two workers share this machine's cores, so the two-worker epoch
measures the overhead of the strategy (collectives, synchronised checkpoints), not a speed-up.

Bytes exchanged: TensorFlow does not report them, so they are computed: each step all-reduces
the gradient of every trainable weight (float32); a ring all-reduce makes each of ``W`` workers
send and receive ``2 (W - 1) / W`` times the gradient size.

The projection for ``--project-workers`` machines like this one (``--project-epochs`` epochs)
is written beside the measurements, with its assumptions: compute per step divides by the
workers, the measured per-step overhead of the collectives grows with the ring factor, the
gradient crosses a ``--link-gbit`` network, and the per-epoch overhead is the two-worker one.

Example:
    nice -n 10 python tools/bench_multiworker.py          # runs/bench/multiworker.json and .md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from kseg.training.cluster import local_addresses  # noqa: E402

DRIVER = r"""
import json, sys, time
from kseg.training import loop
from kseg._keras import keras
from kseg.config import load_config

class Timer(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.epochs, self.t0 = [], time.perf_counter()
    def on_train_begin(self, logs=None):
        self.start = time.perf_counter() - self.t0
        self.grad_bytes = int(sum(w.shape.num_elements() * w.dtype.size for w in self.model.trainable_weights))
    def on_epoch_begin(self, epoch, logs=None):
        now = time.perf_counter()
        if self.epochs:
            self.epochs[-1]["wall_s"] = now - self.epochs[-1]["begin"]
        self.epochs.append({"begin": now, "steps": [], "val_s": 0.0})
    def on_train_batch_begin(self, batch, logs=None):
        self.b = time.perf_counter()
    def on_train_batch_end(self, batch, logs=None):
        self.epochs[-1]["steps"].append(time.perf_counter() - self.b)
    def on_test_begin(self, logs=None):
        self.v = time.perf_counter()
    def on_test_end(self, logs=None):
        self.epochs[-1]["val_s"] += time.perf_counter() - self.v
    def on_train_end(self, logs=None):
        self.epochs[-1]["wall_s"] = time.perf_counter() - self.epochs[-1]["begin"]
        for e in self.epochs:
            e.pop("begin")
        json.dump({"start_s": self.start, "grad_bytes": self.grad_bytes, "epochs": self.epochs},
                  open(sys.argv[2], "w"))

timer = Timer()
make = loop.make_callbacks
loop.make_callbacks = lambda *a, **k: [timer] + make(*a, **k)
cfg = load_config(None, json.loads(sys.argv[3]))
t = time.perf_counter()
loop.train(cfg, sys.argv[1], verbose=0)
print("TOTAL", time.perf_counter() - t)
"""


ALLREDUCE = r"""
import json, sys, time
from kseg.training.strategy import make_strategy
from kseg._keras import tf
strategy = make_strategy("multi_worker")
n = int(sys.argv[2]) // 4
x = tf.ones([n], tf.float32)

@tf.function
def step():
    return strategy.reduce("SUM", strategy.run(lambda: tf.identity(x)), axis=None)

step()  # trace, connect
times = []
for _ in range(int(sys.argv[3])):
    t = time.perf_counter()
    float(step()[0])
    times.append(time.perf_counter() - t)
json.dump(times, open(sys.argv[1], "w"))
"""


def _allreduce(out: Path, grad_bytes: int, reps: int, timeout: float) -> list[float]:
    """Seconds per all-reduce of ``grad_bytes`` (float32) between two workers on loopback."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    addresses = local_addresses(2)
    procs = []
    for i in range(2):
        tf_config = {"cluster": {"worker": addresses}, "task": {"type": "worker", "index": i}}
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    ALLREDUCE,
                    str(out / f"allreduce{i}.json"),
                    str(grad_bytes),
                    str(reps),
                ],
                env={**env, "TF_CONFIG": json.dumps(tf_config)},
                stdout=subprocess.DEVNULL,
                stderr=(out / f"allreduce{i}.log").open("w"),
                start_new_session=True,
            )
        )
    try:
        for p in procs:
            p.wait(timeout=timeout)
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, 9)
                p.wait()
    return json.loads((out / "allreduce0.json").read_text())


def _run(out: Path, overrides: dict[str, Any], workers: int, timeout: float) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    addresses = local_addresses(workers)
    procs, timings = [], []
    started = time.perf_counter()
    for i in range(workers):
        extra = {}
        if workers > 1:
            extra["TF_CONFIG"] = json.dumps(
                {"cluster": {"worker": addresses}, "task": {"type": "worker", "index": i}}
            )
        timing = out.parent / f"{out.name}.timing{i}.json"
        timings.append(timing)
        log = (out.parent / f"{out.name}.log{i}").open("w")
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", DRIVER, str(out), str(timing), json.dumps(overrides)],
                env={**env, **extra},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
    try:
        for p in procs:
            p.wait(timeout=max(timeout - (time.perf_counter() - started), 1))
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, 9)
                p.wait()
    total = time.perf_counter() - started
    if any(p.returncode for p in procs):
        raise SystemExit(f"{out.name} failed; see {out.parent}/{out.name}.log*")
    per = [json.loads(t.read_text()) for t in timings]
    return {
        "wall_s": total,
        "workers": per,
        "metrics": json.loads((out / "metrics.json").read_text()),
    }


def _summary(run: dict[str, Any]) -> dict[str, Any]:
    """Per-epoch figures of worker 0 (the chief), epochs after the first (tracing)."""
    import numpy as np

    epochs = run["workers"][0]["epochs"]
    steady = epochs[1:] or epochs
    step = float(np.median([s for e in steady for s in e["steps"][1:] or e["steps"]]))
    wall = float(np.median([e["wall_s"] for e in steady]))
    val = float(np.median([e["val_s"] for e in steady]))
    n_steps = len(steady[0]["steps"])
    return {
        "epoch_s": round(wall, 2),
        "first_epoch_s": round(epochs[0]["wall_s"], 2),
        "step_s": round(step, 4),
        "steps_per_epoch": n_steps,
        "val_s": round(val, 2),
        "other_s": round(wall - val - step * n_steps, 2),
        "startup_s": round(run["workers"][0]["start_s"], 1),
        "total_s": round(run["wall_s"], 1),
        "dice": round(run["metrics"]["dice"], 4),
        "best_epoch": run["metrics"]["best_epoch"],
    }


def project(
    one: dict[str, Any], two: dict[str, Any], grad_bytes: int, allreduce_s: float, val_n: int, args
) -> dict[str, Any]:
    """Expected wall time of ``args.project_epochs`` epochs on ``args.project_workers`` machines
    like this one, for a data set of ``args.project_train`` / ``args.project_val`` images."""
    w = args.project_workers
    ring = 2 * (w - 1) / w  # a two-worker ring moves 1x the gradient: the measured case
    wire = ring * grad_bytes / (args.link_gbit * 1e9 / 8)
    comm = max(allreduce_s * ring, wire)
    steps = -(-args.project_train // args.batch)
    step = one["step_s"] / w + comm
    val = one["val_s"] * args.project_val / max(val_n, 1) / w + (two["val_s"] - one["val_s"])
    epoch = steps * step + val + two["other_s"]
    first_extra = two["first_epoch_s"] - two["epoch_s"]  # tracing, connecting
    total = args.project_epochs * epoch + two["startup_s"] + first_extra
    single_epoch = steps * one["step_s"] + one["val_s"] * args.project_val / max(val_n, 1)
    single_epoch += one["other_s"]
    single = args.project_epochs * single_epoch + one["startup_s"]
    single += one["first_epoch_s"] - one["epoch_s"]
    return {
        "workers": w,
        "epochs": args.project_epochs,
        "train_images": args.project_train,
        "val_images": args.project_val,
        "steps_per_epoch": steps,
        "step_s": round(step, 4),
        "comm_s_per_step": round(comm, 4),
        "epoch_s": round(epoch, 2),
        "total_min": round(total / 60, 1),
        "single_process_epoch_s": round(single_epoch, 2),
        "single_process_min": round(single / 60, 1),
        "speedup": round(single / total, 2),
        "assumptions": (
            f"{args.project_train} training / {args.project_val} validation images, global batch "
            f"{args.batch} ({steps} steps per epoch); compute per step = the one-process step / {w}; "
            f"communication per step = max(the loopback all-reduce of the gradient, "
            f"{allreduce_s:.3f} s, x the ring factor {ring:.2f}; {grad_bytes / 1e6:.1f} MB x {ring:.2f} "
            f"over {args.link_gbit:g} Gbit/s) = {comm:.3f} s; validation / {w} plus the measured "
            "two-worker synchronisation; checkpoints, backup and logs as measured with two workers; "
            "start-up and tracing as measured with two workers; machines like this one at this load"
        ),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "bench" / "multiworker")
    ap.add_argument("--n", type=int, default=120, help="synthetic images")
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--filters", type=int, default=16)
    ap.add_argument("--batch", type=int, default=16, help="global batch")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=3600)
    ap.add_argument("--project-workers", type=int, default=4)
    ap.add_argument("--project-epochs", type=int, default=100)
    ap.add_argument("--link-gbit", type=float, default=10.0)
    ap.add_argument("--project-train", type=int, default=320, help="HC18 classic: 320")
    ap.add_argument("--project-val", type=int, default=80, help="HC18 classic: 80")
    ap.add_argument("--allreduce-reps", type=int, default=20)
    args = ap.parse_args()

    args.out.mkdir(parents=True, exist_ok=True)
    overrides = {
        "data.synthetic_n": args.n,
        "data.img_size": args.size,
        "train.epochs": args.epochs,
        "train.batch_size": args.batch,
        "train.seed": args.seed,
        "train.early_stopping_patience": 1000,
        "model.options": {"depth": args.depth, "filters": args.filters},
    }
    stamp = time.strftime("%Y%m%d-%H%M%S")
    load_before = os.getloadavg()
    one_run = _run(args.out / f"single-{stamp}", overrides, 1, args.timeout)
    two_run = _run(
        args.out / f"two-{stamp}", {**overrides, "train.strategy": "multi_worker"}, 2, args.timeout
    )
    grad_bytes = one_run["workers"][0]["grad_bytes"]
    allreduce = _allreduce(args.out, grad_bytes, args.allreduce_reps, args.timeout)
    load_after = os.getloadavg()
    one, two = _summary(one_run), _summary(two_run)
    allreduce_s = float(sorted(allreduce)[len(allreduce) // 2])
    val_n = sum(
        1
        for _ in (args.out / f"single-{stamp}" / "split.csv").read_text().splitlines()[1:]
        if _.endswith(",val")
    )
    w = 2
    result = {
        "recipe": overrides,
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "load_1min_before_after": [round(load_before[0], 2), round(load_after[0], 2)],
        },
        "single": one,
        "two_workers": two,
        "ratio_epoch_s": round(two["epoch_s"] / one["epoch_s"], 2),
        "ratio_step_s": round(two["step_s"] / one["step_s"], 2),
        "dice_difference": round(two["dice"] - one["dice"], 4),
        "gradient_bytes_per_step": grad_bytes,
        "ring_bytes_sent_per_worker_per_step": int(2 * (w - 1) / w * grad_bytes),
        "bytes_source": "computed from the trainable weights (TensorFlow does not report them)",
        "allreduce_loopback_s": {
            "median": round(allreduce_s, 4),
            "min": round(min(allreduce), 4),
            "reps": len(allreduce),
            "MB_per_s": round(grad_bytes / allreduce_s / 1e6, 1),
        },
        "val_images": val_n,
        "projection": project(one, two, grad_bytes, allreduce_s, val_n, args),
    }
    json_path = args.out.parent / "multiworker.json"
    json_path.write_text(json.dumps(result, indent=2))
    p = result["projection"]
    rows = [
        ("epoch wall s (median, after the first)", one["epoch_s"], two["epoch_s"]),
        ("training step s (median)", one["step_s"], two["step_s"]),
        ("validation pass s", one["val_s"], two["val_s"]),
        ("checkpoints, backup, logs s / epoch", one["other_s"], two["other_s"]),
        ("first epoch s (tracing)", one["first_epoch_s"], two["first_epoch_s"]),
        ("start-up s (to fit)", one["startup_s"], two["startup_s"]),
        ("whole command s", one["total_s"], two["total_s"]),
        ("validation Dice", one["dice"], two["dice"]),
    ]
    md = [
        f"# Two workers on loopback vs one process ({time.strftime('%Y-%m-%d %H:%M')})",
        "",
        f"Recipe: synthetic ultrasound n={args.n}, {args.size} px, unet depth {args.depth} / "
        f"{args.filters} filters, global batch {args.batch}, {args.epochs} epochs, seed {args.seed}; "
        f"{os.cpu_count()} cores shared by both workers; 1-min load {load_before[0]:.1f} before, "
        f"{load_after[0]:.1f} after.",
        "",
        "| | one process | two workers |",
        "|---|---:|---:|",
        *[f"| {name} | {a} | {b} |" for name, a, b in rows],
        "",
        f"Two-worker epoch / one-process epoch: **{result['ratio_epoch_s']}x** (step "
        f"{result['ratio_step_s']}x). Gradient all-reduced per step: "
        f"{grad_bytes / 1e6:.2f} MB ({result['bytes_source']}); a two-worker ring sends and "
        f"receives {result['ring_bytes_sent_per_worker_per_step'] / 1e6:.2f} MB per worker per step. "
        f"One all-reduce of it between the two workers on loopback, alone: "
        f"{allreduce_s * 1000:.0f} ms median of {len(allreduce)} "
        f"({result['allreduce_loopback_s']['MB_per_s']} MB/s).",
        "",
        f"Projection: {p['epochs']} epochs of {p['train_images']} / {p['val_images']} images on "
        f"{p['workers']} machines like this one: **{p['total_min']} min** ({p['epoch_s']} s per "
        f"epoch; one process: {p['single_process_min']} min, {p['single_process_epoch_s']} s per "
        f"epoch; {p['speedup']}x). Assumptions: {p['assumptions']}.",
        "",
    ]
    (args.out.parent / "multiworker.md").write_text("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
