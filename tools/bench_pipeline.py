"""Input-pipeline overhead: training step time with the full tf.data pipeline vs pre-loaded tensors.

The same model is trained step by step (``train_on_batch``) on

* ``pipeline``: batches from :func:`kseg.data.pipeline.make_dataset` with augmentation on
  (albumentations in parallel ``tf.numpy_function`` calls, shuffle, prefetch), and
* ``preloaded``: batches drawn from that pipeline beforehand and held in memory as tensors,

in interleaved rounds so that load from other processes affects both alike. The figure of merit is
the ratio of median step times (target <= 1.15). The pure pipeline throughput (batches per second
without training) is reported too.

Usage:
    python tools/bench_pipeline.py --out runs/bench/pipeline   # writes pipeline.json, pipeline.md
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from kseg._keras import keras, tf  # noqa: E402
from kseg.atomic import write_json, write_text  # noqa: E402
from kseg.config import AugmentConfig, DataConfig  # noqa: E402
from kseg.data.augment import build_augment  # noqa: E402
from kseg.data.pipeline import load_splits, make_dataset  # noqa: E402

TARGET = 1.15


def _model(size: int, channels: int) -> tuple[keras.Model, str]:
    try:
        from kseg.models import create_model

        m = create_model(
            "unet", input_shape=(size, size, channels), num_classes=1, depth=3, filters=16
        )
        name = "unet(depth=3, filters=16)"
    except Exception as exc:  # the models package may be absent in a partial checkout
        print(
            f"kseg.models.create_model unavailable ({exc}); using a small conv net", file=sys.stderr
        )
        inp = keras.Input((size, size, channels))
        x = keras.layers.Rescaling(1 / 255.0)(inp)
        for f in (16, 32, 32, 16):
            x = keras.layers.Conv2D(f, 3, padding="same", activation="relu")(x)
        m = keras.Model(inp, keras.layers.Conv2D(1, 1, activation="sigmoid")(x))
        name = "conv net (4 x 3x3)"
    m.compile(keras.optimizers.Adam(1e-3), keras.losses.BinaryCrossentropy())
    return m, name


def _steps(model: keras.Model, batches, n: int) -> list[float]:
    times = []
    it = iter(batches)
    for _ in range(n):
        t0 = time.perf_counter()
        x, y = next(it)
        model.train_on_batch(x, y)
        times.append(time.perf_counter() - t0)
    return times


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/bench/pipeline", help="output path without extension")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=30, help="timed steps per variant")
    ap.add_argument(
        "--rounds", type=int, default=3, help="interleaved rounds (steps split across them)"
    )
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--n", type=int, default=400, help="synthetic ultrasound images")
    args = ap.parse_args(argv)

    cfg = DataConfig(synthetic_n=args.n, img_size=args.size)
    t0 = time.perf_counter()
    splits = load_splits(cfg, seed=0, progress=False)
    load_s = time.perf_counter() - t0
    aug = build_augment(AugmentConfig(), args.size)
    ds = make_dataset(
        splits.train,
        args.batch,
        augment=aug,
        shuffle=True,
        seed=0,
        repeat=True,
        drop_remainder=True,
    )

    # pure pipeline throughput
    it = iter(ds)
    for _ in range(3):
        next(it)
    t0 = time.perf_counter()
    n_tp = 20
    for _ in range(n_tp):
        next(it)
    pipe_bps = n_tp / (time.perf_counter() - t0)

    model, model_name = _model(args.size, splits.channels)  # data.channels auto, resolved
    per_round = max(1, args.steps // args.rounds)
    pre = [b for b, _ in zip(ds, range(per_round + args.warmup), strict=False)]
    pre = [(tf.identity(x), tf.identity(y)) for x, y in pre]
    _steps(model, ds, args.warmup)
    _steps(model, pre, args.warmup)

    t_pipe: list[float] = []
    t_pre: list[float] = []
    live = iter(ds)
    for _ in range(args.rounds):
        t_pipe += _steps(model, _Chain(live), per_round)
        t_pre += _steps(model, pre, per_round)
    med_pipe, med_pre = statistics.median(t_pipe), statistics.median(t_pre)
    ratio = med_pipe / med_pre
    result = {
        "benchmark": "pipeline",
        "model": model_name,
        "img_size": args.size,
        "batch_size": args.batch,
        "steps_per_variant": len(t_pipe),
        "rounds": args.rounds,
        "augment": "AugmentConfig() defaults",
        "load_splits_s": round(load_s, 3),
        "pipeline_only_batches_per_s": round(pipe_bps, 2),
        "step_ms_pipeline_median": round(1e3 * med_pipe, 2),
        "step_ms_preloaded_median": round(1e3 * med_pre, 2),
        "step_ms_pipeline_mean": round(1e3 * statistics.fmean(t_pipe), 2),
        "step_ms_preloaded_mean": round(1e3 * statistics.fmean(t_pre), 2),
        "ratio": round(ratio, 3),
        "target": TARGET,
        "pass": bool(ratio <= TARGET),
        "host": {
            "cpus": os.cpu_count(),
            "load_avg_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
            "python": platform.python_version(),
            "tensorflow": tf.__version__,
        },
    }
    out = Path(args.out)
    write_json(out.with_suffix(".json"), result)
    md = [
        f"# Input pipeline overhead ({model_name}, {args.size}x{args.size}, batch {args.batch})",
        "",
        "| variant | median step (ms) | mean step (ms) |",
        "|---|---:|---:|",
        f"| tf.data pipeline, augmentation on | {result['step_ms_pipeline_median']} | {result['step_ms_pipeline_mean']} |",
        f"| pre-loaded tensors | {result['step_ms_preloaded_median']} | {result['step_ms_preloaded_mean']} |",
        "",
        f"Ratio {ratio:.3f} (target <= {TARGET}): {'pass' if result['pass'] else 'MISS'}. "
        f"Pipeline alone: {pipe_bps:.1f} batches/s. {len(t_pipe)} timed steps per variant in "
        f"{args.rounds} interleaved rounds; {os.cpu_count()} CPUs, 1-min load {result['host']['load_avg_1m']}.",
        "",
    ]
    write_text(out.with_suffix(".md"), "\n".join(md))
    print("\n".join(md))
    return 0


class _Chain:
    """Iterate an existing iterator (so interleaved rounds continue the same stream)."""

    def __init__(self, it):
        self.it = it

    def __iter__(self):
        return self.it


if __name__ == "__main__":
    raise SystemExit(main())
