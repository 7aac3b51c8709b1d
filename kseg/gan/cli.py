"""The ``kseg gan`` click group: ``train`` and ``sample`` (TensorFlow is imported when they run)."""

from __future__ import annotations

import click

from kseg._cli import path_option


@click.group("gan")
def gan() -> None:
    """Generate extra training scans: DCGAN (images only) or pix2pix (mask -> image, labelled)."""


@gan.command("train")
@click.option(
    "--data",
    required=True,
    help="Folder with images/ (and masks/ for pix2pix) or synthetic:ultrasound:N.",
)
@click.option(
    "--kind",
    default="dcgan",
    show_default=True,
    help="dcgan (unconditional) or pix2pix (mask -> image).",
)
@click.option("--size", default=64, show_default=True, type=int, help="Square size: 64 or 128.")
@click.option("--epochs", default=20, show_default=True, type=int)
@click.option("--batch-size", default=16, show_default=True, type=int)
@click.option("--seed", default=0, show_default=True, type=int)
@path_option("--out", required=True, help="New run folder.")
def train_command(data, kind, size, epochs, batch_size, seed, out) -> None:
    """Train a GAN; writes losses, per-epoch grids and diversity/memorisation JSON to OUT."""
    from kseg.gan import GAN_SIZES
    from kseg.gan.models import check_size
    from kseg.gan.train import check_kind, check_new_out

    check_kind(kind)
    check_size(size, allowed=GAN_SIZES)
    check_new_out(out)
    from kseg.gan.data import load_training_data
    from kseg.gan.train import train_gan

    images, masks = load_training_data(data, size, need_masks=kind == "pix2pix")
    click.echo(f"{kind}: {len(images)} training images at {size} px")
    rec = train_gan(
        images,
        masks,
        out,
        kind=kind,
        epochs=epochs,
        batch_size=batch_size,
        seed=seed,
        data_name=str(data),
        log=click.echo,
    )
    click.echo(
        f"wrote {out} (generator.keras, losses.csv/png, monitor.csv, epochs/); final diversity "
        f"SSIM {rec['diversity_ssim']:.3f}, nearest-train RMSE {rec['nn_rmse_mean']:.3f}"
    )


@gan.command("sample")
@path_option(
    "--model",
    "run",
    required=True,
    help="A kseg gan train run folder.",
)
@click.option("--n", default=100, show_default=True, type=int, help="How many samples.")
@path_option("--out", required=True, help="New folder to write.")
@click.option(
    "--masks",
    default=None,
    help="pix2pix: folder of masks (or a dataset with masks/) or 'synthetic'; jittered copies are used.",
)
@click.option("--seed", default=0, show_default=True, type=int)
def sample_command(run, n, out, masks, seed) -> None:
    """Write generated scans as images/ (+ masks/ for pix2pix) and manifest.csv (generated=1)."""
    from kseg.gan.sample import sample

    path, info = sample(run, n, out, masks=masks, seed=seed)
    if info["masks"]:
        click.echo(
            f"wrote {info['n']} generated image/mask pairs to {path} (kseg train --data {path})"
        )
    else:
        click.echo(
            f"wrote {info['n']} generated images to {path}/images: DCGAN samples have NO masks, "
            f"so they cannot be used as labelled training data (use a pix2pix run for pairs)"
        )
