"""Training speed on this CPU: float32 vs mixed_bfloat16 vs XLA vs oneDNN/thread settings.

Part 1 (speed): ``unet`` (depth 4, ``--filters`` 16) at ``--size`` 256 px, batch ``--batch`` 8,
random images and masks held in memory (no input pipeline in the way). Every setting runs in its
own subprocess (oneDNN and thread settings are fixed at TensorFlow start-up); each does
``--warmup`` steps (tracing, XLA compilation) then ``--steps`` timed steps. The settings are run
in ``--rounds`` interleaved rounds (A B C ... A B C) so a change in machine load hits them all,
and the best round of each is compared: ratios to float32 in one run.

Part 2 (accuracy, ``--dice``): HC18 (or synthetic ultrasound when HC18 is missing) trained with
``kseg.training.train`` for the same epochs in float32 and in the fastest setting; validation
Dice of each, and the difference.

Example:
    nice -n 10 python tools/bench_train_speed.py                  # writes runs/bench/train_speed/
    nice -n 10 python tools/bench_train_speed.py --dice --dice-epochs 6 --dice-size 128
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

HC18 = Path(os.environ.get("KSEG_HC18", REPO.parent / "shared" / "data" / "hc18"))

#: name -> (precision, jit_compile, environment)
SETTINGS: dict[str, tuple[str, bool, dict[str, str]]] = {
    "float32": ("float32", False, {}),
    "float32_onednn_off": ("float32", False, {"TF_ENABLE_ONEDNN_OPTS": "0"}),
    "float32_inter1": ("float32", False, {"TF_NUM_INTEROP_THREADS": "1"}),
    "float32_xla": ("float32", True, {}),
    "bfloat16": ("mixed_bfloat16", False, {}),
    "bfloat16_xla": ("mixed_bfloat16", True, {}),
}


def worker(args: argparse.Namespace) -> None:
    """One setting in this process; prints one JSON line."""
    import numpy as np

    from kseg._keras import keras, tf
    from kseg.losses import get_loss
    from kseg.metrics import default_metrics
    from kseg.models import create_model
    from kseg.training.precision import precision_policy

    precision, jit, _env = SETTINGS[args.worker]
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (args.batch, args.size, args.size, 1)).astype(np.float32)
    y = (rng.random((args.batch, args.size, args.size, 1)) > 0.7).astype(np.float32)
    with precision_policy(precision):
        model = create_model(
            "unet", input_shape=(args.size, args.size, 1), filters=args.filters, depth=args.depth
        )
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=get_loss("combo"),
        metrics=default_metrics(),
        jit_compile=jit,
    )
    ds = tf.data.Dataset.from_tensors((x, y)).repeat()
    it = iter(ds)
    started = time.perf_counter()
    model.fit(ds, steps_per_epoch=args.warmup, epochs=1, verbose=0)
    warm = time.perf_counter() - started
    started, cpu0 = time.perf_counter(), time.process_time()
    model.fit(ds, steps_per_epoch=args.steps, epochs=1, verbose=0)
    timed = time.perf_counter() - started
    cpu = time.process_time() - cpu0
    del it
    print(
        "RESULT "
        + json.dumps(
            {
                "setting": args.worker,
                "images_per_s": args.steps * args.batch / timed,
                "seconds_per_step": timed / args.steps,
                "cpu_seconds_per_image": cpu / (args.steps * args.batch),
                "warmup_seconds": warm,
                "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default"),
                "threads": [
                    tf.config.threading.get_intra_op_parallelism_threads(),
                    tf.config.threading.get_inter_op_parallelism_threads(),
                ],
            }
        ),
        flush=True,
    )


def run_setting(name: str, args: argparse.Namespace) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(REPO), **SETTINGS[name][2]}
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        name,
        "--size",
        str(args.size),
        "--batch",
        str(args.batch),
        "--filters",
        str(args.filters),
        "--depth",
        str(args.depth),
        "--steps",
        str(args.steps),
        "--warmup",
        str(args.warmup),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
    return {"setting": name, "error": " | ".join(tail)}


def dice_runs(settings: list[str], args: argparse.Namespace) -> list[dict[str, Any]]:
    """Train the same recipe in each setting (subprocesses), return validation Dice."""
    out = []
    for name in settings:
        precision, jit, env_extra = SETTINGS[name]
        env = {**os.environ, "PYTHONPATH": str(REPO), **env_extra}
        run_dir = Path(args.out) / "dice_runs" / name
        code = (
            "import json,sys,shutil\n"
            "from kseg.config import load_config\n"
            "from kseg.training import train\n"
            f"shutil.rmtree({str(run_dir)!r}, ignore_errors=True)\n"
            f"cfg = load_config(None, json.loads({json.dumps(json.dumps(dice_overrides(args, precision, jit)))}))\n"
            f"m = train(cfg, {str(run_dir)!r}, verbose=0)\n"
            "print('RESULT ' + json.dumps({'dice': m['dice'], 'train_seconds': m['train_seconds']}))\n"
        )
        proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
        row: dict[str, Any] = {"setting": name}
        for line in proc.stdout.splitlines():
            if line.startswith("RESULT "):
                row.update(json.loads(line[7:]))
        if "dice" not in row:
            row["error"] = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
        out.append(row)
        print(json.dumps(row), flush=True)
    return out


def dice_overrides(args: argparse.Namespace, precision: str, jit: bool) -> dict[str, Any]:
    data = str(HC18) if HC18.is_dir() else None
    return {
        "data.path": data,
        "data.img_size": args.dice_size,
        "data.synthetic_n": 200,
        "model.name": "unet",
        "model.options": {"filters": args.filters, "depth": args.depth},
        "train.epochs": args.dice_epochs,
        "train.batch_size": args.batch,
        "train.early_stopping_patience": 100,
        "train.schedule": "cosine",
        "train.seed": 0,
        "train.precision": precision,
        "train.jit_compile": jit,
    }


def to_markdown(r: dict[str, Any]) -> str:
    lines = [
        "# Training speed: float32 vs bfloat16 vs XLA",
        "",
        f"Machine: {r['machine']}; bf16 CPU flags: {', '.join(r['bf16_flags']) or 'none'}. "
        f"`unet` depth {r['depth']}, {r['filters']} filters, {r['size']} px, batch {r['batch']}, "
        f"{r['steps']} timed steps after {r['warmup']} warm-up steps, best of {r['rounds']} "
        "interleaved rounds, each setting in its own process.",
        "",
        "| setting | images/s (wall) | s/step | wall ratio | CPU s/image | CPU ratio | warm-up s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in r["speed"]:
        if "error" in row:
            lines.append(f"| {row['setting']} | error: {row['error'][:80]} | | | | | |")
            continue
        lines.append(
            f"| {row['setting']} | {row['images_per_s']:.2f} | {row['seconds_per_step']:.2f} | "
            f"{row['ratio']:.2f}x | {row['cpu_seconds_per_image']:.3f} | {row['cpu_ratio']:.2f}x "
            f"| {row['warmup_seconds']:.1f} |"
        )
    lines += [
        "",
        f"Fastest: **{r['fastest']}** ({r['fastest_ratio']:.2f}x float32 in CPU time per image). "
        "On a shared machine wall-clock images/s carry the other jobs' load and CPU seconds per "
        "image (all threads of the process) carry thread-pool waiting; report both.",
    ]
    if r.get("dice"):
        d = r["dice_protocol"]
        lines += [
            "",
            f"## Dice after the same epochs ({d['data']}, {d['size']} px, {d['epochs']} epochs, "
            f"batch {r['batch']}, seed 0)",
            "",
            "| setting | val Dice | train s |",
            "|---|---:|---:|",
        ]
        for row in r["dice"]:
            if "dice" in row:
                lines.append(f"| {row['setting']} | {row['dice']:.4f} | {row['train_seconds']} |")
            else:
                lines.append(f"| {row['setting']} | error: {row.get('error', '')[:80]} | |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--out", default="runs/bench/train_speed")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--filters", type=int, default=16)
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--settings", default=",".join(SETTINGS))
    ap.add_argument("--dice", action="store_true", help="also train float32 vs the fastest")
    ap.add_argument("--dice-only", default=None, help="skip speed; compare float32 with SETTING")
    ap.add_argument("--dice-epochs", type=int, default=6)
    ap.add_argument("--dice-size", type=int, default=128)
    args = ap.parse_args(argv)
    if args.worker:
        worker(args)
        return 0

    from kseg.atomic import write_json, write_text
    from kseg.training.precision import cpu_flags

    out = Path(args.out)
    flags = sorted(cpu_flags() & {"amx_bf16", "avx512_bf16", "amx_tile"})
    result: dict[str, Any] = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        + _cpu_model(),
        "bf16_flags": flags,
        **{k: getattr(args, k) for k in ("size", "batch", "filters", "depth", "steps", "warmup")},
        "rounds": args.rounds,
        "command": "python tools/bench_train_speed.py " + " ".join(argv or sys.argv[1:]),
    }
    names = [s for s in args.settings.split(",") if s]
    if args.dice_only:
        fastest = args.dice_only
        result["speed"], result["fastest"], result["fastest_ratio"] = [], fastest, float("nan")
    else:
        best: dict[str, dict[str, Any]] = {}
        for rnd in range(args.rounds):
            for name in names:
                row = run_setting(name, args)
                print(f"round {rnd + 1}: {json.dumps(row)}", flush=True)
                if "error" in row and name not in best:
                    best[name] = row
                elif "error" not in row and (
                    name not in best
                    or "error" in best[name]
                    or row["images_per_s"] > best[name]["images_per_s"]
                ):
                    best[name] = row
        base = best.get("float32", {}).get("images_per_s")
        base_cpu = best.get("float32", {}).get("cpu_seconds_per_image")
        for row in best.values():
            if "error" not in row and base:
                row["ratio"] = row["images_per_s"] / base
                row["cpu_ratio"] = base_cpu / row["cpu_seconds_per_image"]
        result["speed"] = [best[n] for n in names]
        ok = [r for r in result["speed"] if "ratio" in r]
        top = max(ok, key=lambda r: r["cpu_ratio"])
        result["fastest"], result["fastest_ratio"] = top["setting"], top["cpu_ratio"]
        fastest = top["setting"]
    if args.dice or args.dice_only:
        result["dice_protocol"] = {
            "data": str(HC18) if HC18.is_dir() else "synthetic ultrasound (200)",
            "size": args.dice_size,
            "epochs": args.dice_epochs,
        }
        compare = ["float32"] + ([fastest] if fastest != "float32" else [])
        result["dice"] = dice_runs(compare, args)
    write_json(out / "train_speed.json", result)
    write_text(out / "train_speed.md", to_markdown(result))
    print(to_markdown(result))
    return 0


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


if __name__ == "__main__":
    raise SystemExit(main())
