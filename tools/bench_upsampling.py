"""U-Net up-sampling by evidence: INT8 latency (with per-op profile) and Dice of each mode, beside
keras-unet-collection's ``unet_2d``.

Models: kseg ``unet`` (depth ``--depth`` 3, ``--filters`` 16) with ``transpose``, ``nearest`` and
``bilinear`` up-sampling, and the peer ``keras_unet_collection.models.unet_2d`` with filters
[16, 32, 64, 128] (its defaults otherwise: no batch norm, ``unpool=True`` = bilinear up-sampling; sigmoid output),
behind the same pixel/255 rescaling. Install the peer with
``pip install --no-deps keras-unet-collection`` (it imports ``tensorflow.keras``, which kseg
points at tf_keras); without it the peer is skipped.

Latency: each model converted to INT8 (``kseg.export.convert_model``, 8 random calibration
images) at ``--size`` 256, LiteRT/XNNPACK, 1 thread; the models are invoked in ``--runs``
interleaved rounds and each one's fastest run is kept, both in wall time and in thread CPU time
(the machine is shared: CPU time leaves out the time the scheduler gave to other jobs). The
per-op profile (``kseg.bench.profile``) names where the time goes.

Dice: each model trained the same way (kseg data pipeline and augmentation, combo loss, Adam
with warm-up + cosine, ``--epochs`` epochs, batch 8, ``--train-size`` px, seed 0) on HC18 and on
synthetic ultrasound; validation Dice of the best epoch.

Example:
    nice -n 10 python tools/bench_upsampling.py            # writes runs/bench/upsampling/
    python tools/bench_upsampling.py --no-train            # latency only
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from kseg.atomic import write_json, write_text  # noqa: E402

HC18 = Path(os.environ.get("KSEG_HC18", REPO.parent / "shared" / "data" / "hc18"))
MODES = ("transpose", "nearest", "bilinear")
PEER = "peer_unet_2d"


def build(name: str, size: int, args: argparse.Namespace):
    """A Keras model taking raw pixels (1 channel) in [0, 255] and returning probabilities."""
    from kseg._keras import keras
    from kseg.models import create_model

    if name != PEER:
        return create_model(
            "unet",
            input_shape=(size, size, 1),
            depth=args.depth,
            filters=args.filters,
            upsampling=name,
        )
    from keras_unet_collection import models as kuc

    filters = [args.filters * 2**i for i in range(args.depth + 1)]
    inner = kuc.unet_2d(
        (size, size, 1), filters, n_labels=1, output_activation="Sigmoid", name="peer"
    )
    inputs = keras.Input((size, size, 1), name="image")
    x = keras.layers.Rescaling(1.0 / 255.0, name="rescale")(inputs)
    outputs = keras.layers.Activation("linear", dtype="float32", name="mask")(inner(x))
    return keras.Model(inputs, outputs, name=PEER)


def peer_available() -> bool:
    try:
        import keras_unet_collection  # noqa: F401
    except ImportError:
        return False
    return True


def latency(names: list[str], args: argparse.Namespace, out: Path) -> dict[str, Any]:
    from kseg.bench.analyze import analyze_model
    from kseg.bench.profile import interleaved_ms, make_interpreter, profile_ops
    from kseg.export import convert_model

    rep = np.random.default_rng(0).uniform(0, 255, (8, args.size, args.size, 1)).astype(np.float32)
    files = {}
    for name in names:
        path = out / f"{name}.int8.tflite"
        if not path.is_file():
            data = convert_model(build(name, args.size, args), "int8", representative=rep)
            path.write_bytes(data)
        files[name] = path
    kw = {"threads": 1, "runtime": "auto", "delegate": None}
    interps = [make_interpreter(files[n].read_bytes(), **kw) for n in names]
    cpu = interleaved_ms(interps, runs=args.runs, warmup=3, cpu_time=True)
    wall = interleaved_ms(interps, runs=args.runs, warmup=0, cpu_time=False)
    result = {}
    for name, c, w in zip(names, cpu, wall, strict=True):
        info = analyze_model(files[name])
        prof = profile_ops(files[name], threads=1, runs=max(args.runs // 2, 5), warmup=2)
        result[name] = {
            "file": str(files[name]),
            "cpu_ms": c,
            "wall_ms": w,
            "gmacs": info.total_macs / 1e9,
            "size_kib": files[name].stat().st_size / 1024,
            "ops": sorted({op.name for op in info.ops}),
            "profile_by_type": prof["by_type"],
            "slowest_types": prof["slowest_types"][:3],
        }
        print(
            f"{name}: {c:.2f} ms CPU, {w:.2f} ms wall, {info.total_macs / 1e9:.2f} GMAC", flush=True
        )
    return result


def train_dice(name: str, dataset: str, args: argparse.Namespace) -> dict[str, Any]:
    """Train ``name`` on ``dataset`` (``hc18`` or ``synthetic``) and return validation Dice."""
    from kseg._keras import keras
    from kseg.config import DataConfig, TrainConfig
    from kseg.data.augment import build_augment
    from kseg.data.pipeline import load_splits, make_dataset
    from kseg.losses import get_loss
    from kseg.metrics import default_metrics
    from kseg.training.callbacks import make_optimizer
    from kseg.training.loop import score_split
    from kseg.training.precision import precision_policy, resolve_precision

    seed = args.seed
    keras.utils.set_random_seed(seed)
    if dataset == "hc18":
        data_cfg = DataConfig(path=str(HC18), img_size=args.train_size)
    else:
        data_cfg = DataConfig(path=None, synthetic_n=args.synthetic_n, img_size=args.train_size)
    splits = load_splits(data_cfg, seed=seed, progress=False)
    batch = 8
    steps = max(len(splits.train.images) // batch, 1)
    train_cfg = TrainConfig(
        epochs=args.epochs, batch_size=batch, schedule="cosine", learning_rate=1e-3
    )
    augment = build_augment(data_cfg.augment, args.train_size)
    train_ds = make_dataset(splits.train, batch, augment=augment, shuffle=True, seed=0, repeat=True)
    val_ds = make_dataset(splits.val, batch)
    policy = resolve_precision("auto").policy
    with precision_policy(policy):
        model = build(name, args.train_size, args)
    model.compile(
        optimizer=make_optimizer(train_cfg, steps),
        loss=get_loss("combo"),
        metrics=default_metrics(),
    )
    best, best_weights = -1.0, None

    class Keep(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            nonlocal best, best_weights
            if logs and logs.get("val_dice", -1) > best:
                best, best_weights = logs["val_dice"], self.model.get_weights()

    started = time.perf_counter()
    model.fit(
        train_ds,
        validation_data=val_ds,
        epochs=args.epochs,
        steps_per_epoch=steps,
        callbacks=[Keep()],
        verbose=0,
    )
    seconds = time.perf_counter() - started
    model.set_weights(best_weights)
    probs = model.predict(splits.val.images.astype(np.float32), batch_size=batch, verbose=0)
    scores = score_split(np.asarray(probs, np.float32), splits.val.masks)
    return {
        "dice": scores["dice"],
        "n_val": len(splits.val.images),
        "n_train": len(splits.train.images),
        "train_seconds": round(seconds, 1),
        "precision": policy,
    }


def to_markdown(r: dict[str, Any]) -> str:
    lat = r["latency"]
    names = list(lat) or list(r.get("dice", {}))
    peer = lat.get(PEER)
    lines = [
        "# U-Net up-sampling: INT8 latency and Dice",
        "",
        f"INT8 at {r['size']}x{r['size']}, LiteRT/XNNPACK, 1 thread, fastest of {r['runs']} "
        "interleaved rounds. kseg `unet` depth "
        f"{r['depth']}, {r['filters']} filters; peer: keras-unet-collection `unet_2d` filters "
        f"{[r['filters'] * 2**i for i in range(r['depth'] + 1)]} (its defaults: no batch norm, "
        "bilinear un-pooling followed by a 3x3 conv). CPU ms is thread CPU time (the machine was "
        "shared; wall ms carries other jobs' load).",
        "",
        "| model | GMAC | KiB | CPU ms | wall ms | vs peer (CPU) | slowest op types (share) |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for n in lat:
        row = lat[n]
        ratio = f"{row['cpu_ms'] / peer['cpu_ms']:.2f}x" if peer else "-"
        slow = ", ".join(f"{t['op']} {100 * t['share']:.0f}%" for t in row["profile_by_type"][:3])
        lines.append(
            f"| {n} | {row['gmacs']:.2f} | {row['size_kib']:.0f} | {row['cpu_ms']:.2f} "
            f"| {row['wall_ms']:.2f} | {ratio} | {slow} |"
        )
    if r.get("dice"):
        proto = r["dice_protocol"]
        lines += [
            "",
            f"Dice: {proto['epochs']} epochs, {proto['size']} px, batch 8, combo loss, cosine, "
            f"seed {proto.get('seed', 0)}, best epoch's validation Dice; precision {proto.get('precision', '?')}.",
            "",
            "| model | " + " | ".join(r["dice_sets"]) + " |",
            "|---|" + "---:|" * len(r["dice_sets"]),
        ]
        for n in names:
            cells = []
            for ds in r["dice_sets"]:
                d = r["dice"].get(n, {}).get(ds)
                cells.append(f"{d['dice']:.4f}" if d and "dice" in d else "-")
            lines.append(f"| {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/bench/upsampling")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--depth", type=int, default=3)
    ap.add_argument("--filters", type=int, default=16)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--no-train", dest="train", action="store_false", help="latency only")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--train-size", type=int, default=128)
    ap.add_argument("--synthetic-n", type=int, default=240)
    ap.add_argument("--datasets", default="hc18,synthetic")
    ap.add_argument("--seed", type=int, default=0, help="seed of data split, weights, shuffling")
    ap.add_argument("--models", default=None, help="comma list (default: all modes and the peer)")
    ap.add_argument("--no-latency", dest="latency", action="store_false")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    names = list(MODES) + ([PEER] if peer_available() else [])
    if args.models:
        names = [n for n in args.models.split(",") if n in names]
    result: dict[str, Any] = {
        **{k: getattr(args, k) for k in ("size", "depth", "filters", "runs")},
        "peer": PEER
        if PEER in names
        else "not installed (pip install --no-deps keras-unet-collection)",
        "command": "python tools/bench_upsampling.py " + " ".join(argv or sys.argv[1:]),
    }
    result["latency"] = latency(names, args, out) if args.latency else {}
    write_json(out / "upsampling.json", result)
    write_text(out / "upsampling.md", to_markdown(result))
    if args.train:
        sets = [s for s in args.datasets.split(",") if s and (s != "hc18" or HC18.is_dir())]
        result["dice_sets"], result["dice"] = sets, {}
        result["dice_protocol"] = {
            "epochs": args.epochs,
            "size": args.train_size,
            "seed": args.seed,
        }
        for ds in sets:
            for name in names:
                row = train_dice(name, ds, args)
                result["dice_protocol"]["precision"] = row["precision"]
                result["dice"].setdefault(name, {})[ds] = row
                print(
                    f"{name} on {ds}: Dice {row['dice']:.4f} ({row['train_seconds']} s)", flush=True
                )
                write_json(out / "upsampling.json", result)
                write_text(out / "upsampling.md", to_markdown(result))
    print(to_markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
