"""Train a DCGAN or a pix2pix generator and write a readable run folder.

Run folder::

    RUN/gan.json            kind, size, latent_dim, epochs, data (written last: the run is complete)
    RUN/generator.keras     the generator (sampling needs only this)
    RUN/discriminator.keras
    RUN/losses.csv|png      discriminator / generator (/ L1) loss per step
    RUN/monitor.csv         one line per epoch: losses, diversity, nearest-neighbour distance
    RUN/epochs/epoch_NNN.png   real (top) vs generated (bottom) grid
    RUN/epochs/epoch_NNN.json  diversity and memorisation figures (kseg.gan.monitor.report)
"""

from __future__ import annotations

import csv
import io
import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from kseg import atomic
from kseg._keras import keras, tf
from kseg.data.io import encode_png
from kseg.errors import ConfigError, DataError
from kseg.gan import GAN_KINDS, GAN_SIZES
from kseg.gan import losses as L
from kseg.gan import models as M
from kseg.gan.monitor import report, to_unit

LATENT_DIM = 100
_MONITOR_N = 16


def check_kind(kind: str) -> str:
    if kind not in GAN_KINDS:
        raise ConfigError(f"--kind {kind!r} is not valid; use one of: {', '.join(GAN_KINDS)}")
    return kind


def check_new_out(out: Path, flag: str = "--out") -> Path:
    out = Path(out).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(f"{out}: exists and is not empty; choose a new {flag} folder or delete it")
    return out


def _grid(rows: list[np.ndarray]) -> np.ndarray:
    """Rows of ``(k, S, S, 1)`` images in ``[-1, 1]`` -> one uint8 picture with 2 px gaps."""
    pics = []
    for r in rows:
        u8 = (to_unit(r)[..., 0] * 255).round().astype(np.uint8)
        gap = np.full((u8.shape[1], 2), 255, np.uint8)
        pics.append(np.concatenate([c for im in u8 for c in (im, gap)][:-1], axis=1))
    hgap = np.full((2, pics[0].shape[1]), 255, np.uint8)
    return np.concatenate([c for p in pics for c in (p, hgap)][:-1], axis=0)


def _plot_losses(rows: list[dict], out_png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    steps = [r["step"] for r in rows]
    for key in ("d_loss", "g_loss", "l1"):
        if key in rows[0]:
            ax.plot(steps, [r[key] for r in rows], label=key, lw=0.8)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend()
    fig.tight_layout()
    try:
        with atomic.atomic_path(out_png) as tmp:
            fig.savefig(tmp, format="png", dpi=100)
    finally:
        plt.close(fig)


def _csv_text(rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def _save_model(model: keras.Model, path: Path) -> None:
    with atomic.atomic_path(path) as tmp:
        tmp.unlink()
        model.save(tmp.with_suffix(".keras"))
        tmp.with_suffix(".keras").rename(tmp)


def train_gan(
    images: np.ndarray,
    masks: np.ndarray | None,
    out: str | Path,
    *,
    kind: str = "dcgan",
    epochs: int = 20,
    batch_size: int = 16,
    seed: int = 0,
    steps_per_epoch: int | None = None,
    data_name: str = "",
    allowed_sizes: tuple[int, ...] | None = GAN_SIZES,
    log: Callable[[str], None] = print,
) -> dict:
    """Train on ``images`` (``[-1, 1]``, ``(N, S, S, 1)``) and, for pix2pix, ``masks``.

    Returns the last epoch's monitor record.
    """
    check_kind(kind)
    out = check_new_out(Path(out))
    size = M.check_size(images.shape[1], allowed=allowed_sizes)
    if kind == "pix2pix" and masks is None:
        raise DataError("pix2pix needs masks: give --data a folder with images/ and masks/")
    if epochs < 1:
        raise ConfigError(f"--epochs {epochs} must be at least 1")
    keras.utils.set_random_seed(seed)
    n = len(images)
    steps = steps_per_epoch or max(1, math.ceil(n / batch_size))
    if kind == "dcgan":
        gen, disc = M.dcgan_generator(size, LATENT_DIM), M.dcgan_discriminator(size)
    else:
        gen, disc = M.pix2pix_generator(size), M.patchgan_discriminator(size)
    g_opt = keras.optimizers.Adam(2e-4, beta_1=0.5)
    d_opt = keras.optimizers.Adam(2e-4, beta_1=0.5)

    @tf.function
    def dcgan_step(real):
        z = tf.random.normal((tf.shape(real)[0], LATENT_DIM))
        with tf.GradientTape() as gt, tf.GradientTape() as dt:
            fake = gen(z, training=True)
            d_real = disc(real, training=True)
            d_fake = disc(fake, training=True)
            d_loss = L.discriminator_loss(d_real, d_fake)
            g_loss = L.generator_loss(d_fake)
        d_opt.apply_gradients(
            zip(
                dt.gradient(d_loss, disc.trainable_variables), disc.trainable_variables, strict=True
            )
        )
        g_opt.apply_gradients(
            zip(gt.gradient(g_loss, gen.trainable_variables), gen.trainable_variables, strict=True)
        )
        return d_loss, g_loss, tf.constant(0.0)

    @tf.function
    def pix2pix_step(real, mask):
        with tf.GradientTape() as gt, tf.GradientTape() as dt:
            fake = gen(mask, training=True)
            d_real = disc([mask, real], training=True)
            d_fake = disc([mask, fake], training=True)
            d_loss = L.discriminator_loss(d_real, d_fake)
            l1 = L.l1_loss(real, fake)
            g_loss = L.generator_loss(d_fake) + L.L1_WEIGHT * l1
        d_opt.apply_gradients(
            zip(
                dt.gradient(d_loss, disc.trainable_variables), disc.trainable_variables, strict=True
            )
        )
        g_opt.apply_gradients(
            zip(gt.gradient(g_loss, gen.trainable_variables), gen.trainable_variables, strict=True)
        )
        return d_loss, g_loss, l1

    rng = np.random.default_rng(seed)
    mon_idx = rng.choice(n, min(_MONITOR_N, n), replace=False)
    fixed_z = rng.standard_normal((_MONITOR_N, LATENT_DIM)).astype(np.float32)
    (out / "epochs").mkdir(parents=True, exist_ok=True)
    loss_rows: list[dict] = []
    mon_rows: list[dict] = []
    step = 0
    t0 = time.perf_counter()
    for epoch in range(1, epochs + 1):
        order = np.concatenate(
            [rng.permutation(n) for _ in range(math.ceil(steps * batch_size / n) + 1)]
        )
        for k in range(steps):
            idx = order[k * batch_size : (k + 1) * batch_size]
            if kind == "dcgan":
                d, g, l1 = dcgan_step(tf.constant(images[idx]))
            else:
                d, g, l1 = pix2pix_step(tf.constant(images[idx]), tf.constant(masks[idx]))
            step += 1
            row = {"step": step, "epoch": epoch, "d_loss": float(d), "g_loss": float(g)}
            if kind == "pix2pix":
                row["l1"] = float(l1)
            loss_rows.append(row)
        # monitor: fixed z (DCGAN) or fixed training masks (pix2pix), generated in inference mode
        if kind == "dcgan":
            fake = gen(fixed_z, training=False).numpy()
            grid = _grid([images[mon_idx[:8]], fake[:8]])
        else:
            fake = gen(masks[mon_idx], training=False).numpy()
            grid = _grid([masks[mon_idx[:8]], images[mon_idx[:8]], fake[:8]])
        rec = report(to_unit(fake), to_unit(images), to_unit(images[mon_idx]))
        ep_rows = [r for r in loss_rows if r["epoch"] == epoch]
        rec = {
            "epoch": epoch,
            "step": step,
            "d_loss": float(np.mean([r["d_loss"] for r in ep_rows])),
            "g_loss": float(np.mean([r["g_loss"] for r in ep_rows])),
            **rec,
            "seconds": round(time.perf_counter() - t0, 1),
        }
        mon_rows.append({k: v for k, v in rec.items() if not isinstance(v, str)})
        atomic.write_bytes(out / "epochs" / f"epoch_{epoch:03d}.png", encode_png(grid))
        atomic.write_json(out / "epochs" / f"epoch_{epoch:03d}.json", rec)
        atomic.write_text(out / "losses.csv", _csv_text(loss_rows))
        atomic.write_text(out / "monitor.csv", _csv_text(mon_rows))
        log(
            f"epoch {epoch}/{epochs}: d {rec['d_loss']:.3f} g {rec['g_loss']:.3f} "
            f"diversity(SSIM) {rec['diversity_ssim']:.3f} (real {rec['real_diversity_ssim']:.3f}) "
            f"nn-RMSE {rec['nn_rmse_mean']:.3f} (train-train {rec['train_nn_rmse_median']:.3f})"
        )
    _plot_losses(loss_rows, out / "losses.png")
    _save_model(gen, out / "generator.keras")
    _save_model(disc, out / "discriminator.keras")
    atomic.write_json(
        out / "gan.json",
        {
            "kind": kind,
            "size": size,
            "latent_dim": LATENT_DIM if kind == "dcgan" else None,
            "epochs": epochs,
            "steps": step,
            "batch_size": batch_size,
            "seed": seed,
            "n_train": n,
            "data": data_name,
            "real_label": L.REAL_LABEL,
            "l1_weight": L.L1_WEIGHT if kind == "pix2pix" else None,
            "final": mon_rows[-1],
        },
    )
    return rec


__all__ = ["LATENT_DIM", "check_kind", "check_new_out", "train_gan"]
