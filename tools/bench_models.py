"""Benchmark every architecture of the model zoo; write JSON and a generated Markdown table.

For each architecture with default options (or ``--set name.key=value``):

- parameters and MACs at ``--size`` (256) from the Keras graph (``kseg.models.complexity``),
- float32 and INT8 ``.tflite`` sizes and whether INT8 is all builtin integer ops,
- INT8 latency with LiteRT, 1 thread, median of ``--runs`` (50) invocations after 3 warm-ups,
- validation Dice after the same short training budget (``kseg.training.train``: ``--epochs`` x
  ``--steps`` steps of ``--batch`` images at ``--train-size``) on synthetic ultrasound and on
  ``../shared/data/hc18``; ``denoising_ae`` is trained on synthetic noisy/clean pairs with MSE
  and reports PSNR/SSIM instead.

Results are written after every architecture, so an interrupted run keeps what it measured.
Latencies are only comparable within one run on one machine.

Example:
    python tools/bench_models.py   # all models, defaults below; writes runs/bench/models/
    python tools/bench_models.py --models unet,mobile_unet --no-train
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from kseg.atomic import write_json, write_text  # noqa: E402

HC18 = Path(os.environ.get("KSEG_HC18", REPO.parent / "shared" / "data" / "hc18"))


def int8_latency_ms(tflite_bytes: bytes, runs: int, warmup: int = 3) -> float:
    """Median wall time of one INT8 inference with LiteRT on one thread."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=tflite_bytes, num_threads=1)
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]
    x = (
        np.random.default_rng(0)
        .integers(-128, 128, inp["shape"], dtype=np.int64)
        .astype(inp["dtype"])
    )
    interp.set_tensor(inp["index"], x)
    for _ in range(warmup):
        interp.invoke()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        interp.invoke()
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1000.0)


_SPLITS: dict[str, Any] = {}


def _splits(dataset: str, args):
    """Train/val arrays of ``dataset`` at ``--train-size``, decoded once per run."""
    if dataset not in _SPLITS:
        from kseg.config import DataConfig
        from kseg.data.pipeline import load_splits

        path = str(HC18) if dataset == "hc18" else None
        cfg = DataConfig(path=path, synthetic_n=args.synthetic_n, img_size=args.train_size)
        _SPLITS[dataset] = load_splits(cfg, seed=args.seed, progress=False)
    return _SPLITS[dataset]


def train_dice(name: str, options: dict[str, Any], dataset: str, args) -> dict[str, Any]:
    """Validation Dice of ``name`` after the fixed short budget on ``dataset``.

    Every model gets the same data (decoded once), loss (``combo``: 0.5 BCE + 0.5 Dice), optimizer
    (Adam 1e-3), seed and number of steps, without augmentation; Dice is scored with
    ``kseg.training.score_split`` (all validation pixels) at threshold 0.5.
    """
    from kseg._keras import keras, tf
    from kseg.losses import get_loss
    from kseg.models import create_model
    from kseg.training import score_split

    splits = _splits(dataset, args)
    x = splits.train.images.astype(np.float32)
    y = splits.train.masks[..., None].astype(np.float32)
    keras.utils.set_random_seed(args.seed)
    model = create_model(name, input_shape=x.shape[1:], **options)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=get_loss("combo"))
    ds = (
        tf.data.Dataset.from_tensor_slices((x, y))
        .shuffle(len(x), seed=args.seed)
        .repeat()
        .batch(args.batch)
    )
    started = time.perf_counter()
    model.fit(ds, epochs=args.epochs, steps_per_epoch=args.steps, verbose=0)
    seconds = time.perf_counter() - started
    probs = model.predict(splits.val.images.astype(np.float32), batch_size=args.batch, verbose=0)
    scores = score_split(probs[..., 0], splits.val.masks)
    return {"dice": float(scores["dice"]), "train_seconds": round(seconds, 1)}


def train_denoiser(name: str, options: dict[str, Any], args) -> dict[str, Any]:
    """PSNR/SSIM of the denoiser on held-out synthetic ultrasound pairs after the same budget."""
    from kseg._keras import keras, tf
    from kseg.data.synthetic import synthesize
    from kseg.models import create_model

    data = synthesize("ultrasound", args.synthetic_n, size=args.train_size, seed=args.seed)
    noisy = data.images.astype(np.float32)
    clean = data.clean.astype(np.float32)
    n_val = max(1, len(noisy) // 5)
    keras.utils.set_random_seed(args.seed)
    model = create_model(name, input_shape=noisy.shape[1:], **options)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=lambda y, p: tf.reduce_mean(tf.square((y - p) / 255.0)),
    )
    ds = (
        tf.data.Dataset.from_tensor_slices((noisy[n_val:], clean[n_val:]))
        .shuffle(len(noisy), seed=args.seed)
        .repeat()
        .batch(args.batch)
    )
    started = time.perf_counter()
    model.fit(ds, epochs=args.epochs, steps_per_epoch=args.steps, verbose=0)
    pred = model.predict(noisy[:n_val], verbose=0)
    psnr = tf.image.psnr(pred, clean[:n_val], max_val=255.0).numpy().mean()
    ssim = tf.image.ssim(pred, clean[:n_val], max_val=255.0).numpy().mean()
    base = tf.image.psnr(noisy[:n_val], clean[:n_val], max_val=255.0).numpy().mean()
    return {
        "psnr": float(psnr),
        "ssim": float(ssim),
        "noisy_psnr": float(base),
        "train_seconds": round(time.perf_counter() - started, 1),
    }


def _cell(row: dict[str, Any], key: str, fmt: str) -> str:
    value = row.get(key)
    return "-" if value is None else fmt.format(value)


def markdown(result: dict[str, Any]) -> str:
    cfg = result["settings"]
    lines = [
        "# Model zoo benchmark",
        "",
        f"Generated by `tools/bench_models.py` on {result['date']} ({result['machine']}). "
        f"Parameters, MACs, sizes and latency at {cfg['size']}x{cfg['size']}x1 with default options; "
        f"INT8 latency: LiteRT, 1 thread, median of {cfg['runs']} runs. Dice: validation split after "
        f"{cfg['epochs']} epochs x {cfg['steps']} steps x batch {cfg['batch']} at "
        f"{cfg['train_size']}x{cfg['train_size']} (same budget for every model; far from converged).",
        "",
        "| model | params | MACs | INT8 size | INT8 ok | INT8 latency | Dice synthetic | Dice hc18 |",
        "|---|---:|---:|---:|---|---:|---:|---:|",
    ]
    for row in result["models"]:
        dice_syn = row.get("synthetic", {}).get("dice")
        dice_hc = row.get("hc18", {}).get("dice")
        if "denoise" in row:
            dice_syn_s = f"PSNR {row['denoise']['psnr']:.1f} dB (noisy {row['denoise']['noisy_psnr']:.1f}), SSIM {row['denoise']['ssim']:.3f}"
            dice_hc_s = "n/a"
        else:
            dice_syn_s = "-" if dice_syn is None else f"{dice_syn:.3f}"
            dice_hc_s = "-" if dice_hc is None else f"{dice_hc:.3f}"
        ok = {True: "yes", False: f"no: {row.get('int8_reason')}", None: "-"}[row.get("int8_ok")]
        lines.append(
            f"| {row['name']} | {row['params'] / 1e6:.2f} M | {row['macs'] / 1e9:.2f} G | "
            f"{_cell(row, 'int8_bytes', '{:,}')} B | {ok} | {_cell(row, 'int8_latency_ms', '{:.1f}')} ms | "
            f"{dice_syn_s} | {dice_hc_s} |"
        )
    targets = result.get("targets")
    if targets:
        lines += ["", "## Targets", ""]
        lines += [f"- {t}" for t in targets]
    return "\n".join(lines) + "\n"


def check_targets(rows: list[dict[str, Any]]) -> list[str]:
    by_name = {r["name"]: r for r in rows}
    out = []
    mob = by_name.get("mobile_unet")
    if mob:
        out.append(
            f"mobile_unet parameters {mob['params'] / 1e6:.3f} M <= 0.5 M: {'met' if mob['params'] <= 0.5e6 else 'MISSED'}"
        )
        out.append(
            f"mobile_unet MACs {mob['macs'] / 1e9:.3f} G <= 1.0 G: {'met' if mob['macs'] <= 1e9 else 'MISSED'}"
        )
        a = mob.get("hc18", {}).get("dice")
        b = by_name.get("unet", {}).get("hc18", {}).get("dice")
        if a is not None and b is not None:
            out.append(
                f"mobile_unet hc18 Dice {a:.3f} vs unet {b:.3f} (gap {b - a:+.3f}, target <= 0.03): {'met' if b - a <= 0.03 else 'MISSED'}"
            )
    failed = [r["name"] for r in rows if r.get("int8_ok") is False]
    out.append(
        "every architecture converts to INT8: "
        + ("met" if not failed else "MISSED: " + ", ".join(failed))
    )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "bench" / "models")
    parser.add_argument("--models", default="", help="comma-separated names (default: all)")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--no-train", action="store_true")
    parser.add_argument("--datasets", default="synthetic,hc18")
    parser.add_argument("--train-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--synthetic-n", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--merge", action="store_true", help="update rows of an existing models.json"
    )
    parser.add_argument(
        "--no-profile",
        action="store_true",
        help="skip conversion and latency (keeps those of a --merge'd file); params, MACs, training",
    )
    parser.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="NAME.KEY=VALUE",
        help="architecture option",
    )
    args = parser.parse_args(argv)

    import platform

    from kseg.export.measure import profile_architecture, public_row
    from kseg.models import MODELS, model_task

    names = [n for n in args.models.split(",") if n] or MODELS.names()
    options: dict[str, dict[str, Any]] = {n: {} for n in names}
    for item in args.sets:
        key, value = item.split("=", 1)
        model, opt = key.split(".", 1)
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = value  # a bare word such as transpose or relu
        options.setdefault(model, {})[opt] = parsed
    datasets = [d for d in args.datasets.split(",") if d]
    if "hc18" in datasets and not (HC18 / "images").is_dir():
        print(f"hc18 not found at {HC18}; skipping it", file=sys.stderr)
        datasets.remove("hc18")
    result: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "settings": {k: v for k, v in vars(args).items() if k not in ("out",)},
        "models": [],
    }
    previous: dict[str, dict[str, Any]] = {}
    if args.merge and (args.out / "models.json").is_file():
        old = json.loads((args.out / "models.json").read_text())
        previous = {r["name"]: r for r in old["models"]}
        result["settings"] = {**old["settings"], **result["settings"]}
    order = list(dict.fromkeys(list(previous) + names))
    for name in names:
        if args.no_profile:
            # parameters and MACs only (no conversion); keep sizes/latency measured before
            row = profile_architecture(
                name, size=args.size, options=options.get(name), convert=False
            )
            row = {**public_row(row), **previous.get(name, {})}
        else:
            print(f"[{name}] profile at {args.size}", file=sys.stderr, flush=True)
            row = profile_architecture(name, size=args.size, options=options.get(name))
            if row.get("_int8_model") is not None:
                row["int8_latency_ms"] = int8_latency_ms(row["_int8_model"], args.runs)
            row = {**previous.get(name, {}), **public_row(row)}
        if not args.no_train:
            if model_task(name) == "denoise":
                print(f"[{name}] train denoiser", file=sys.stderr, flush=True)
                row["denoise"] = train_denoiser(name, options.get(name, {}), args)
            else:
                for dataset in datasets:
                    print(f"[{name}] train on {dataset}", file=sys.stderr, flush=True)
                    row[dataset] = train_dice(name, options.get(name, {}), dataset, args)
        previous[name] = row
        result["models"] = [previous[n] for n in order if n in previous]
        result["targets"] = check_targets(result["models"])
        write_json(args.out / "models.json", result)
        write_text(args.out / "models.md", markdown(result))
        print(
            json.dumps({k: row[k] for k in row if k not in ("ops", "options", "description")}),
            flush=True,
        )
    print(f"wrote {args.out / 'models.json'} and {args.out / 'models.md'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
