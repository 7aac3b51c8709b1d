"""``kseg export``: deployment bundles (TensorFlow is imported when a command runs)."""

from __future__ import annotations

import click

from kseg._cli import flag, model_option, path_option


@click.group()
def export() -> None:
    """Deployment bundles for mobile apps and NPU toolchains."""


@export.command("android")
@model_option(".keras/.h5 segmentation model or its run directory.")
@path_option("--out", required=True, help="Bundle folder.")
@click.option(
    "--int8", "mode", flag_value="int8", default=True, help="INT8, uint8 in/out (default)."
)
@click.option("--fp16", "mode", flag_value="fp16", help="Float16 weights, uint8 in, float out.")
@click.option("--float32", "mode", flag_value="float32", help="Float32, uint8 in, float out.")
@path_option("--data", help="Calibration, parity and sample data (default: the model's run data).")
@click.option("--samples", type=int, default=4, show_default=True, help="Golden samples.")
@click.option(
    "--labels", help="Comma-separated class names, one per output channel (default: foreground)."
)
@click.option("--max-dice-drop", type=float, default=None, help="Parity gate (as kseg convert).")
@click.option(
    "--bench-runs", type=int, default=30, show_default=True, help="Timed runs (0: no latency)."
)
@flag("--force", help="Replace an existing bundle folder.")
def android(model_path, out, mode, data, samples, labels, max_dice_drop, bench_runs, force) -> None:
    """Write an Android bundle: uint8 RGB model.tflite with metadata, card, samples, golden files."""
    from kseg.deploy.bundle import export_android

    summary = export_android(
        model_path,
        out,
        mode=mode,
        data=data,
        samples=samples,
        force=force,
        max_dice_drop=max_dice_drop,
        bench_runs=bench_runs,
        labels=[s.strip() for s in labels.split(",")] if labels else None,
    )
    card, p = summary["card"], summary["card"]["parity"]
    click.echo(
        f"wrote {out}: {summary['files']} files, {summary['bytes'] / 1024:.0f} KiB "
        f"(model.tflite {card['size_bytes'] / 1024:.0f} KiB, {card['tflite']['mode']}) "
        f"in {summary['export_seconds']:.1f} s"
    )
    click.echo(
        f"float Dice {p['float_dice']:.4f}  bundle Dice {p['tflite_dice']:.4f}  "
        f"drop {p['dice_drop']:+.4f}  ({p['n_images']} images)"
    )
