"""``kseg preprocess``: list the speckle/contrast filters and compare chains on a data set.

Importable without TensorFlow (``kseg.cli`` adds this group at start-up); only ``--ablation``
(training) imports it.
"""

from __future__ import annotations

import click

from kseg._cli import KsegGroup, flag, path_option


@click.group(cls=KsegGroup)
def preprocess() -> None:
    """Ultrasound speckle and contrast filters (data.preprocess)."""


@preprocess.command("list")
def list_filters() -> None:
    """Filter names, their parameters with defaults, and what they do."""
    from kseg.filters.chain import DENOISER
    from kseg.filters.pixel import FILTERS, filter_params

    for name in FILTERS.names():
        params = ", ".join(f"{k}={v}" for k, v in filter_params(name).items())
        click.echo(f"{name:13s} {params:38s} {FILTERS.description(name)}")
    click.echo(
        f"{DENOISER:13s} {'model=FILE (.keras or .tflite)':38s} trained denoising autoencoder"
    )


@preprocess.command("compare")
@click.argument("source")
@click.option(
    "--filters",
    "filters",
    multiple=True,
    metavar="CHAIN",
    help="A chain to compare, e.g. lee:size=7+clahe:clip=2 (repeat; 'none' = no filter). "
    "Default: none and every filter with default parameters, lee+clahe, srad+clahe.",
)
@path_option("--out", help="Output folder (new or empty).")
@click.option("--n", type=int, default=None, help="Images to score (default: 24 synthetic / all).")
@click.option(
    "--size",
    type=int,
    default=None,
    help="Resize to SIZE x SIZE (default: own size; synthetic 256).",
)
@click.option("--seed", type=int, default=0, show_default=True)
@flag("--ablation", help="Also train the same short recipe per chain and report Dice.")
@click.option("--epochs", type=int, default=8, show_default=True, help="Ablation: epochs per run.")
@click.option(
    "--img-size", type=int, default=96, show_default=True, help="Ablation: model input size."
)
@click.option(
    "--train-n",
    type=int,
    default=None,
    help="Ablation: synthetic images to train on (default 200).",
)
def compare_cmd(source, filters, out, n, size, seed, ablation, epochs, img_size, train_n) -> None:
    """Speckle metrics, PSNR/SSIM and time per filter chain on SOURCE (a folder with images/ and
    masks/, or synthetic:ultrasound[:N]); writes compare.json, compare.md and compare.png."""
    from kseg.preprocess.compare import compare

    report = compare(
        source,
        list(filters) or None,
        out,
        n=n,
        size=size,
        seed=seed,
        ablation=ablation,
        ablation_options={"epochs": epochs, "img_size": img_size, "n_train": train_n},
    )
    click.echo(f"{report['data']}")
    click.echo(f"{'chain':22s} {'ENL':>7s} {'CNR':>6s} {'EPI':>6s} {'SSIM':>6s} {'ms':>8s}")
    for r in report["chains"]:
        ssim = f"{r['ssim']:.3f}" if r.get("ssim") is not None else "n/a"
        click.echo(
            f"{r['chain'][:22]:22s} {r['enl']:7.1f} {r['cnr']:6.2f} {r['epi']:6.3f} {ssim:>6s} "
            f"{r['ms_per_image']:8.1f}"
        )
    for a in report.get("ablation", []):
        click.echo(f"ablation {a['chain']:20s} val Dice {a['dice']:.4f}")
    click.echo(f"wrote {report['out']}/compare.json, compare.md, compare.png")
