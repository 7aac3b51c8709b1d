"""The ``kseg`` command line: a thin click group over library functions.

Nothing heavy is imported at module level: ``kseg predict`` and ``kseg bench`` on a ``.tflite``
must start on a device that has only numpy, OpenCV, click and an interpreter. Each command
imports what it needs when it runs.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from kseg import __version__
from kseg._cli import (
    KsegGroup,
    config_option,
    flag,
    group_options,
    model_option,
    parse_key_values,
    path_option,
    runtime_option,
    sets_option,
    warn_provenance,
)
from kseg.errors import KsegError
from kseg.inference.cli import inference_flags, options_from_flags


@click.group(cls=KsegGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="kseg")
def main() -> None:
    """kseg: 2D medical image segmentation, from raw images to a verified INT8 .tflite."""


# ------------------------------------------------------------------------------------ train


@main.command()
@config_option("YAML config (see configs/).")
@click.option(
    "--data",
    type=click.Path(path_type=Path),
    help="Folder with images/ and masks/; default: embedded synthetic data.",
)
@click.option("--model", help="Architecture name (kseg models list).")
@click.option("--loss", help="Loss name: bce, focal, dice, tversky, focal_tversky, combo.")
@click.option(
    "--task",
    type=click.Choice(["segment", "denoise"]),
    help="denoise: train denoising_ae on noisy/clean pairs.",
)
@click.option("--epochs", type=int)
@click.option("--img-size", type=int, help="Model input size (square).")
@click.option("--batch-size", type=int)
@click.option(
    "--seed",
    type=int,
    help="Training seed (weights, shuffling, augmentation); also draws the split unless "
    "data.split_seed is set.",
)
@click.option(
    "--out", type=click.Path(path_type=Path), help="Run directory (default runs/<model>-<time>)."
)
@click.option(
    "--resume", type=click.Path(path_type=Path), help="Continue an interrupted run directory."
)
@click.option(
    "--init",
    "init",
    type=click.Path(path_type=Path),
    help="Start from this model (or run directory): layers matching by name and shape are loaded.",
)
@flag("--freeze-encoder", help="With --init: keep the encoder fixed.")
@click.option(
    "--unfreeze-after", type=int, help="With --freeze-encoder: train the encoder from epoch N on."
)
@sets_option("Any config key, e.g. --set train.schedule=cosine.")
@click.option(
    "--budget",
    type=float,
    default=None,
    metavar="MINUTES",
    help="Plan the recipe for --data to fit this many minutes (kseg plan), then train it.",
)
@click.option(
    "--cluster",
    type=click.Path(path_type=Path),
    help="Multi-worker training: YAML listing 'workers: [host:port, ...]' (the same file on every "
    "machine; worker 0 is the chief). Sets TF_CONFIG and train.strategy=multi_worker.",
)
@click.option(
    "--worker-index", type=int, help="With --cluster: this machine's index in the workers list."
)
def train(
    config_path,
    data,
    model,
    loss,
    task,
    epochs,
    img_size,
    batch_size,
    seed,
    out,
    resume,
    init,
    freeze_encoder,
    unfreeze_after,
    sets,
    budget,
    cluster,
    worker_index,
) -> None:
    """Train a segmentation model; writes a self-describing run directory.

    --init MODEL fine-tunes: every layer of MODEL whose name and weight shapes match is loaded (the
    first convolution also across gray/RGB), the rest is listed in RUN/init.json.

    On several machines (docs/scaling.md) run the same command on each, with the same --out, under
    TF_CONFIG or with --cluster FILE --worker-index N; worker 0 (the chief) writes the run
    directory. After a lost worker, restart every worker with --resume OUT.
    """
    from kseg.config import load_config

    if (cluster is None) != (worker_index is None):
        raise KsegError(
            "--cluster FILE and --worker-index N go together (N: this machine's place in the "
            "file's workers list, 0 = chief)"
        )
    if cluster is not None:
        import os

        from kseg.training.cluster import tf_config_from_file

        os.environ["TF_CONFIG"] = tf_config_from_file(cluster, worker_index)
        if resume is None:
            sets = (*sets, "train.strategy=multi_worker")
        else:
            from kseg.training.rundir import RunDir

            strategy = load_config(RunDir.for_resume(resume).config).train.strategy
            if strategy != "multi_worker":
                raise KsegError(
                    f"--cluster: {resume} trained with train.strategy = {strategy}; resume it "
                    "without --cluster, on one machine"
                )
    if resume is not None:
        given = [
            f
            for f, v in {
                "--config": config_path,
                "--data": data,
                "--model": model,
                "--out": out,
                "--init": init,
                "--freeze-encoder": freeze_encoder,
                "--unfreeze-after": unfreeze_after,
            }.items()
            if v
        ]
        if given or sets:
            raise KsegError(
                f"--resume uses the run's own config.yaml; drop {', '.join(given) or '--set'}"
            )
        from kseg.training import train as run_train

        click.echo(f"resuming {resume}")
        metrics = run_train(None, resume, resume=True)
        _print_metrics(resume, metrics)
        return
    overrides = {
        "data.path": str(data) if data else None,
        "model.name": model or ("denoising_ae" if task == "denoise" else None),
        "train.loss": loss,
        "train.task": task,
        "train.epochs": epochs,
        "data.img_size": img_size,
        "train.batch_size": batch_size,
        "train.seed": seed,
        "train.init": str(init) if init else None,
        "train.freeze_encoder": True if freeze_encoder else None,
        "train.unfreeze_after": unfreeze_after,
    }
    overrides = {k: v for k, v in overrides.items() if v is not None}  # flags not given
    overrides.update(parse_key_values(sets, flag="--set", example="train.learning_rate=3e-4"))
    notes = None
    if budget is not None:
        config_path, notes = _planned_config(data, budget, config_path, out, overrides)
    cfg = load_config(config_path, overrides)
    from kseg.training import default_out
    from kseg.training import train as run_train
    from kseg.training.budget import process_start_time

    if out is None and cfg.train.strategy != "multi_worker":  # workers must agree on --out
        out = default_out(cfg)
    metrics = run_train(cfg, out, notes=notes, clock_start=process_start_time())
    _print_metrics(out, metrics)
    _print_budget(out)


def _planned_config(data, budget, config_path, out, overrides):
    """``kseg train --budget``: plan for ``data`` (the budget pays for planning) -> a temp config."""
    if data is None or str(data).startswith("synthetic"):
        raise KsegError("--budget plans for a folder: give --data DIR (images/ and masks/)")
    if config_path is not None:
        raise KsegError("--budget writes its own config; drop --config (or use kseg plan --out)")
    import tempfile

    from kseg.plan.cli import plan_notes
    from kseg.plan.planner import plan, to_yaml
    from kseg.training.rundir import RunDir

    if out is not None:
        RunDir.for_new_run(out)  # fail before minutes of probing
    classes = overrides.get("data.classes")
    if classes is not None:  # the plan reads the masks by the user's table
        from kseg.config import from_dict

        classes = from_dict({"data": {"classes": classes}}, source="--set").data.classes
    p = plan(
        str(data),
        budget,
        include_planning=True,
        classes=classes or None,
        merge_classes=bool(overrides.get("data.merge_classes", False)),
        log=lambda m: click.echo(m, err=True),
    )
    click.echo(to_yaml(p), nl=False)
    tmp = Path(tempfile.mkdtemp(prefix="kseg-plan-")) / "plan.yaml"
    tmp.write_text(to_yaml(p), encoding="utf-8")
    overrides.pop("data.path", None)  # the plan's own (same folder)
    return tmp, plan_notes(p)


def _print_budget(run: Path) -> None:
    """One line on how a ``train.budget_minutes`` run used its budget (nothing for other runs)."""
    import json

    from kseg.training.budget import BUDGET_FILE

    path = Path(run) / BUDGET_FILE
    if not path.is_file():
        return
    r = json.loads(path.read_text())
    if "elapsed_minutes" not in r:
        return
    click.echo(
        f"budget: {r['elapsed_minutes']:.1f} of {r['budget_minutes']:g} min "
        f"({100 * r['of_budget']:.0f} %), {r['epochs_done']} epochs"
    )


def _print_metrics(run: Path, metrics: dict[str, Any]) -> None:
    if "worker" in metrics:  # a multi-worker job's non-chief worker scores nothing
        click.echo(
            f"worker {metrics['worker']}: {metrics['epochs_completed']} epochs done; "
            f"the chief (worker 0) wrote the run {run}"
        )
        return
    keys = ("dice", "iou", "precision", "recall", "psnr", "ssim", "psnr_noisy_input")
    click.echo(f"run: {run}")
    click.echo(
        "validation "
        + "  ".join(
            f"{k}={metrics[k]:.4f}{_ci(metrics) if k == 'dice' else ''}"
            for k in keys
            if k in metrics
        )
    )
    for name, c in (metrics.get("per_class") or {}).items():  # multi-class: dice above = their mean
        click.echo(f"  {name}: dice={_f4(c['dice'])}{_ci(c)}  iou={_f4(c['iou'])}")


# --------------------------------------------------------------------------------- evaluate


@main.command()
@model_option(".keras/.h5 model, .tflite or .onnx file.")
@path_option(
    "--data",
    help="Folder with images/ and masks/ (default: the model's run data).",
)
@click.option(
    "--split", type=click.Choice(["val", "test", "all"]), default="val", show_default=True
)
@path_option(
    "--out",
    help="Output folder (default: <model dir>/eval-<model stem>).",
)
@runtime_option("For .tflite: litert, tflite_runtime, tf or auto.")
@flag(
    "--store-threshold",
    help="Store the best validation threshold for the model (its card, or MODEL.threshold.json).",
)
@path_option(
    "--baseline",
    help="An earlier kseg evaluate folder of another model on the same images: print the Dice "
    "difference with its paired 95 % bootstrap interval.",
)
@inference_flags
def evaluate(model_path, data, split, out, runtime, store_threshold, baseline, **flags) -> None:
    """Per-image and aggregate Dice, IoU, precision, recall and HD95 (pixels).

    Images go through the same inference path as kseg predict (same flags). With --baseline, the
    pooled Dice is compared with another model's on the same images, image draws paired: a
    difference whose interval holds 0 does not rank the two models.
    """
    from kseg.evaluate import evaluate_model

    options = options_from_flags(flags)
    out = out or model_path.parent / f"eval-{model_path.stem}"
    result = evaluate_model(
        model_path,
        data=data,
        split=split,
        out_dir=out,
        runtime=runtime,
        options=options,
        store_threshold=store_threshold,
        baseline=baseline,
    )
    warn_provenance(result.get("provenance"))
    per_class = result.get("per_class") or {}
    click.echo(
        f"wrote {out}/metrics.json, per_image.csv, worst_cases.png, contours.png"
        + (", worst_cases_CLASS.png per class" if per_class else "")
    )
    sel = result.get("threshold_selection")
    if sel:
        click.echo(
            f"threshold {result['threshold']:.2f} ({result['threshold_source']}); best on this "
            f"split {sel['threshold']:.2f}: Dice {sel['dice']:.4f}"
            + (f", stored in {result['threshold_stored']}" if "threshold_stored" in result else "")
        )
    click.echo(
        "  ".join(
            f"{k}={result[k]:.4f}{_ci(result) if k == 'dice' else ''}"
            for k in ("dice", "iou", "precision", "recall")
            if k in result
        )
        + (
            f"  hd95_mean={result['hd95_mean']:.2f}px"
            if result.get("hd95_mean") is not None
            else ""
        )
        + ("  (foreground mean)" if per_class else "")
    )
    for name, c in per_class.items():
        hd = c.get("hd95_mean")
        click.echo(
            f"  {name}: dice={_f4(c['dice'])}{_ci(c)}  iou={_f4(c['iou'])}  "
            f"dice_mean={_f4(c['dice_mean'])}  hd95_mean="
            + (f"{hd:.2f}px" if hd is not None else "n/a")
            + f"  ({c['n_images']} images where truth or prediction has it)"
        )
    if "baseline" in result:
        _echo_baseline(result["baseline"])


def _echo_baseline(cmp: dict[str, Any]) -> None:
    """``vs BASELINE (N images): dice +0.0123 (95 % CI -0.0100 to +0.0350), ...`` per class."""

    def diff(d: float, low: float, high: float) -> str:
        verdict = (
            "better" if low > 0 else "worse" if high < 0 else "not ranked: the interval holds 0"
        )
        return f"{d:+.4f} (95 % CI {low:+.4f} to {high:+.4f}; {verdict})"

    per_class = cmp.get("per_class") or {}
    click.echo(
        f"vs {cmp['baseline']} ({cmp['n_images']} images, paired bootstrap): dice "
        + diff(*cmp["dice"])
        + ("  (foreground mean)" if per_class else "")
    )
    for name, c in per_class.items():
        click.echo(
            f"  {name}: {c['dice']:.4f} vs {c['baseline_dice']:.4f}  "
            + diff(c["difference"], *c["difference_ci95"])
        )


def _f4(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _ci(scores: dict[str, Any]) -> str:
    """`` (95 % CI 0.61-0.75)``: the pooled Dice's bootstrap interval over images, if known."""
    low, high = (scores.get("dice_ci95") or (None, None))[:2]
    if low is None or high is None or low != low or high != high:  # absent, None or NaN
        return ""
    return f" (95 % CI {low:.2f}-{high:.2f})"


def _echo_parity(p: dict[str, Any], kind: str) -> None:
    """The Dice parity ``p`` of a converted (``kind``: tflite or onnx) model against Keras: one
    line, and one more per class of a multi-class model."""
    click.echo(
        f"float Dice {p['float_dice']:.4f}  {kind} Dice {p[f'{kind}_dice']:.4f}  drop {p['dice_drop']:+.4f}  "
        f"pixel agreement {p['pixel_agreement']:.4f}  ({p['n_images']} images)"
    )
    for name, c in (p.get("per_class") or {}).items():
        drop = c.get("dice_drop")
        click.echo(
            f"  {name}: float Dice {_f4(c.get('float_dice'))}  {kind} Dice "
            f"{_f4(c.get(f'{kind}_dice'))}  drop " + ("n/a" if drop is None else f"{drop:+.4f}")
        )


# ---------------------------------------------------------------------------------- convert


@main.command()
@model_option(".keras/.h5 model (float, QAT or pruned).")
@click.option(
    "--int8", "mode", flag_value="int8", help="Full-integer INT8 (representative dataset)."
)
@click.option("--fp16", "mode", flag_value="fp16", help="Float16 weights.")
@click.option(
    "--dynamic",
    "mode",
    flag_value="dynamic",
    help="Dynamic-range (int8 weights, float activations).",
)
@click.option("--int16x8", "mode", flag_value="int16x8", help="int16 activations, int8 weights.")
@click.option(
    "--float32", "mode", flag_value="float32", default=True, help="No quantization (default)."
)
@flag("--uint8", help="With --int8: uint8 input and output instead of int8.")
@path_option(
    "--data",
    help="Calibration and parity data (default: the model's run data).",
)
@path_option("--out", help="Output .tflite (default: beside the model).")
@click.option(
    "--max-dice-drop",
    type=float,
    default=None,
    help="Parity gate vs the Keras model, exit 1 when exceeded (default: export.max_dice_drop of the run, 0.01); negative: no gate.",
)
@click.option(
    "--calibration-samples",
    type=int,
    default=None,
    help="Calibration images (default: export.representative_samples, 64).",
)
@flag(
    "--onnx",
    help="Write .onnx for ONNX Runtime instead (float32, or --int8: static QDQ); needs kseg[onnx].",
)
@flag(
    "--keep-threshold",
    help="Keep the training threshold instead of choosing the best one on the validation split.",
)
def convert(
    model_path, mode, uint8, data, out, max_dice_drop, calibration_samples, onnx, keep_threshold
) -> None:
    """Convert to TFLite (or ONNX), check Dice parity against Keras, choose the threshold on the
    validation split (TFLite), and write the model card."""
    from kseg.export import export_tflite

    if uint8 and mode != "int8":
        raise KsegError("--uint8 goes with --int8")
    if onnx:
        _convert_onnx(model_path, mode, uint8, data, out, max_dice_drop, calibration_samples)
        return
    card = export_tflite(
        model_path,
        mode,
        data=data,
        out=out,
        io_dtype="uint8" if uint8 else None,
        max_dice_drop=max_dice_drop,
        representative_samples=calibration_samples,
        select_threshold=not keep_threshold,
    )
    t, p = card["tflite"], card["parity"]
    warn_provenance(card["data"].get("provenance"))
    click.echo(f"wrote {t['path']} ({t['size_bytes'] / 1024:.1f} KiB, {t['mode']}) and its card")
    _echo_parity(p, "tflite")
    sel = card.get("threshold_selection")
    if sel:
        click.echo(
            f"threshold {sel['threshold']:.2f} chosen on validation: Dice {sel['dice']:.4f} "
            f"(at {sel['default']}: {sel['dice_at_default']:.4f})"
        )
    if t["mode"] == "int8" and t.get("float_ops"):
        click.echo(
            f"warning: float ops left inside the INT8 graph: {', '.join(t['float_ops'])}", err=True
        )


def _convert_onnx(model_path, mode, uint8, data, out, max_dice_drop, calibration_samples) -> None:
    from kseg.export.onnx import export_onnx

    if mode not in ("float32", "int8") or uint8:
        raise KsegError(
            "--onnx writes float32 or --int8 (QDQ, float32 input); drop --"
            + ("uint8" if uint8 else mode)
        )
    card = export_onnx(
        model_path,
        mode,
        data=data,
        out=out,
        max_dice_drop=max_dice_drop,
        representative_samples=calibration_samples,
    )
    t, p = card["onnx"], card["parity"]
    warn_provenance(card["data"].get("provenance"))
    click.echo(
        f"wrote {t['path']} ({t['size_bytes'] / 1024:.1f} KiB, onnx {t['mode']}, opset {t['opset']}) and its card"
    )
    _echo_parity(p, "onnx")
    if t["float_ops"]:
        click.echo(
            f"warning: float compute ops left in the INT8 graph: {', '.join(t['float_ops'])}",
            err=True,
        )


# ---------------------------------------------------------------------------------- predict


@main.command()
@model_option(".tflite, .onnx (needs kseg[onnx]), .keras or .h5")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@path_option("--out", required=True, help="Folder for masks and overlays.")
@runtime_option("For .tflite: litert, tflite_runtime, tf or auto (.onnx: onnxruntime).")
@click.option("--threads", type=int, default=None, help="Interpreter threads for .tflite/.onnx.")
@flag("--geojson", help="Also write <name>.geojson (one polygon per component).")
@flag("--stats", help="Also write <name>_stats.json (areas, perimeters, components).")
@inference_flags
def predict(model_path, inputs, out, runtime, threads, geojson, stats, **flags) -> None:
    """Write <name>_mask.png and <name>_overlay.png for each input image (or folder).

    Every model kind goes through kseg.inference.segment_image: threshold, tiling, flips and
    postprocessing are the same for .tflite and .keras.
    """
    from kseg.inference import load_predictor, predict_files

    options = options_from_flags(flags)
    files = _expand_inputs(inputs)
    predictor = load_predictor(model_path, runtime=runtime, num_threads=threads)
    rows = predict_files(predictor, files, out, options=options, geojson=geojson, stats=stats)
    extra = "".join(f", {kind}" for kind, on in (("GeoJSON", geojson), ("statistics", stats)) if on)
    click.echo(f"wrote {len(rows)} masks and overlays{extra} to {out}")
    if rows:
        tiled = sum(r["tiled"] for r in rows)
        if "classes" not in rows[0]:
            click.echo(f"threshold {rows[0]['threshold']:.3f}; {tiled} of {len(rows)} images tiled")
            return
        from kseg.inference.classes import class_colour_hex

        click.echo(f"class = argmax; {tiled} of {len(rows)} images tiled")
        for i, name in enumerate(rows[0]["classes"], start=1):
            mean = sum(r["classes"][name]["fraction"] for r in rows) / len(rows)
            click.echo(
                f"  {name:<16} overlay {class_colour_hex(i)}  mean {100 * mean:.2f} % of pixels"
            )


def _expand_inputs(inputs: tuple[Path, ...]) -> list[Path]:
    from kseg.data.io import is_image_file

    files: list[Path] = []
    for p in inputs:
        if p.is_dir():
            files.extend(sorted(f for f in p.iterdir() if is_image_file(f)))
        elif p.exists():
            files.append(p)
        else:
            raise KsegError(f"{p}: input not found")
    if not files:
        raise KsegError(f"no images found in {', '.join(map(str, inputs))} (png, jpg, bmp, tif)")
    return files


# ------------------------------------------------------------------------------------- data


@main.group()
def data() -> None:
    """Synthetic data sets and checks of your own folders."""


@data.command("synth")
@click.option(
    "--kind",
    type=click.Choice(["ultrasound", "vessels", "skin"]),
    default="ultrasound",
    show_default=True,
)
@click.option("--n", type=int, default=200, show_default=True)
@click.option("--size", type=int, default=256, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@path_option(
    "--out",
    required=True,
)
def data_synth(kind, n, size, seed, out) -> None:
    """Write a synthetic set as images/, masks/, clean/ and manifest.csv."""
    from kseg.data.synthetic import write_synthetic

    if n < 1 or size < 16:
        raise KsegError("--n must be >= 1 and --size >= 16")
    path = write_synthetic(kind, n, out, size=size, seed=seed)
    click.echo(f"wrote {n} {kind} samples to {path}")


@data.command("check")
@click.argument("folder", type=click.Path(path_type=Path))
@path_option("--out", help="Report folder (default runs/data-check-<time>).")
@path_option(
    "--fix",
    "fix_out",
    help="Write a cleaned folder here (links to kept files + manifest.csv); originals untouched.",
)
@group_options
@click.option("--max-pixels", type=int, default=100_000_000, show_default=True)
def data_check(folder, out, fix_out, group_regex, group_column, max_pixels) -> None:
    """Corrupt files, NaN, constant images, duplicates and leaks across groups, outliers, mask
    problems, sizes, classes per mask (presence, pixel share, object sizes): writes check.json
    and check.md (and with --fix a cleaned folder that holds what the report's actions say)."""
    import time

    from kseg.atomic import write_json, write_text
    from kseg.data.check import check_folder, classes_line, public, render_markdown, write_fixed

    report = check_folder(
        folder, group_regex=group_regex, group_column=group_column, max_pixels=max_pixels
    )
    out = out or Path("runs") / f"data-check-{time.strftime('%Y%m%d-%H%M%S')}"
    if fix_out is not None:
        write_fixed(report, fix_out)
    write_json(out / "check.json", public(report))
    write_text(out / "check.md", render_markdown(report))
    counts = ", ".join(f"{k} {v}" for k, v in report["counts"].items()) or "no problems found"
    click.echo(f"{report['n_images']} images: {counts}")
    click.echo(classes_line(report["classes"]))
    click.echo(f"wrote {out}/check.json, check.md")
    if fix_out is not None:
        click.echo(f"wrote a cleaned folder with {report['n_kept']} images to {fix_out}")


@data.command("report")
@click.argument("folder", type=click.Path(path_type=Path))
@path_option("--out", required=True, help="Folder for report.png/json.")
@group_options
@click.option("--val-fraction", type=float, default=0.2, show_default=True)
@click.option("--test-fraction", type=float, default=0.0, show_default=True)
@click.option("--seed", type=int, default=42, show_default=True)
def data_report_cmd(
    folder, out, group_regex, group_column, val_fraction, test_fraction, seed
) -> None:
    """EDA sheet: intensity histograms and quantiles per split, sizes, foreground and lesion
    sizes, images per group, examples with masks (report.png + report.json)."""
    from kseg.data.report import data_report

    rep = data_report(
        folder,
        out,
        group_regex=group_regex,
        group_column=group_column,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        seed=seed,
    )
    parts = ", ".join(f"{k} {v['n_images']}" for k, v in rep["splits"].items())
    click.echo(f"{rep['n_images']} images ({parts}); {rep['groups']['n']} groups")
    click.echo(f"wrote {out}/report.png and report.json")


@data.command("from-geojson")
@path_option("--images", required=True, help="Image folder.")
@path_option(
    "--annotations",
    required=True,
    help="Folder of <stem>.geojson files, or one GeoJSON whose features name their image.",
)
@path_option("--out", required=True, help="New dataset folder.")
def data_from_geojson(images, annotations, out) -> None:
    """Polygons and multipolygons (with holes) -> masks, one label per class; writes a kseg folder
    dataset (images/, masks/, classes.json, report.json)."""
    from kseg.data.geojson import from_geojson

    rep = from_geojson(images, annotations, out)
    click.echo(f"wrote {rep['n_masks']} masks to {out}/masks; classes {rep['classes']}")
    for key in ("images_without_annotation", "unmatched_annotations", "invalid_geometries"):
        items = rep[key]
        if items:
            shown = ", ".join(items[:5]) + (f" (+{len(items) - 5} more)" if len(items) > 5 else "")
            click.echo(f"warning: {len(items)} {key.replace('_', ' ')}: {shown}", err=True)


def _add_optional_commands() -> None:
    """Command groups owned by their packages (each imports TensorFlow lazily)."""
    from kseg.bench.cli import bench
    from kseg.deploy.cli import export
    from kseg.gan.cli import gan
    from kseg.models_cli import models
    from kseg.optimize.cli import optimize
    from kseg.plan.cli import plan_command
    from kseg.preprocess.cli import preprocess
    from kseg.serve.cli import serve
    from kseg.sweep.cli import sweep

    for cmd in (models, bench, optimize, export, serve, plan_command, preprocess, sweep, gan):
        main.add_command(cmd)


_add_optional_commands()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
