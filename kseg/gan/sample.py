"""Write generated images (pix2pix: with their masks) as a folder kseg can train on.

Layout (same as ``kseg data synth``)::

    OUT/images/gan_0000.png    generated scan (uint8 grayscale)
    OUT/masks/gan_0000.png     the mask it was generated from (0/255; pix2pix only)
    OUT/manifest.csv           image,mask,group,split,generated,source (generated = 1)

A DCGAN draws images without labels: its folder has ``images/`` and ``manifest.csv`` only, which
kseg can read as unlabelled data (``scan_folder(..., require_masks=False)``) but not train on.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np

from kseg.atomic import atomic_dir
from kseg.data.io import encode_png
from kseg.errors import DataError, ModelError
from kseg.gan.train import check_new_out


def load_run(run: str | Path):
    """``(info, generator)`` of a finished ``kseg gan train`` run."""
    from kseg._keras import keras

    run = Path(run).expanduser()
    meta = run / "gan.json"
    if not meta.is_file():
        raise ModelError(f"{run}: no gan.json; pass a finished `kseg gan train` run folder")
    info = json.loads(meta.read_text(encoding="utf-8"))
    try:
        gen = keras.models.load_model(run / "generator.keras", compile=False)
    except (OSError, ValueError) as exc:
        raise ModelError(f"{run / 'generator.keras'}: cannot load generator ({exc})") from None
    return info, gen


def generate(
    info: dict, gen, n: int, masks01: np.ndarray | None = None, seed: int = 0
) -> np.ndarray:
    """``n`` images in ``[-1, 1]`` ``(n, S, S, 1)``; pix2pix needs ``masks01`` ``(n, S, S)``."""
    out = []
    rng = np.random.default_rng(seed)
    for i in range(0, n, 32):
        k = min(32, n - i)
        if info["kind"] == "dcgan":
            z = rng.standard_normal((k, info["latent_dim"])).astype(np.float32)
            out.append(gen(z, training=False).numpy())
        else:
            m = np.where(masks01[i : i + k] > 0, 1.0, -1.0).astype(np.float32)[..., None]
            out.append(gen(m, training=False).numpy())
    return np.concatenate(out)


def write_sample_folder(
    out: str | Path,
    images: np.ndarray,
    masks01: np.ndarray | None,
    source: str,
    prefix: str = "gan",
) -> Path:
    """Write the folder under a temporary name beside ``out`` and rename it when complete."""
    out = check_new_out(Path(out))
    with atomic_dir(out) as tmp:  # an existing out is empty, checked above
        (tmp / "images").mkdir()
        if masks01 is not None:
            (tmp / "masks").mkdir()
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["image", "mask", "group", "split", "generated", "source"])
        u8 = np.clip((np.asarray(images)[..., 0] + 1.0) * 127.5, 0, 255).round().astype(np.uint8)
        for i, im in enumerate(u8):
            name = f"{prefix}_{i:04d}.png"
            (tmp / "images" / name).write_bytes(encode_png(im))
            if masks01 is not None:
                mask = (masks01[i] > 0).astype(np.uint8) * 255
                (tmp / "masks" / name).write_bytes(encode_png(mask))
            w.writerow(
                [name, name if masks01 is not None else "", f"{prefix}_{i:04d}", "", 1, source]
            )
        (tmp / "manifest.csv").write_text(buf.getvalue(), encoding="utf-8")
    return out


def sample(
    run: str | Path, n: int, out: str | Path, masks: str | None = None, seed: int = 0
) -> tuple[Path, dict]:
    """Generate ``n`` samples from ``run`` into ``out``; returns the folder and a summary."""
    from kseg.gan.data import masks_for_sampling

    if n < 1:
        raise DataError(f"--n {n} must be at least 1")
    check_new_out(Path(out))
    info, gen = load_run(run)
    m01 = None
    if info["kind"] == "dcgan":
        if masks:
            raise DataError(
                "--masks works with a pix2pix run only; a DCGAN draws images without masks"
            )
    else:
        if not masks:
            raise DataError("a pix2pix run turns masks into images: give --masks DIR or synthetic")
        m01 = masks_for_sampling(masks, info["size"], n, seed=seed)
    images = generate(info, gen, n, m01, seed=seed)
    path = write_sample_folder(out, images, m01, source=f"gan-{info['kind']}:{Path(run).name}")
    return path, {"kind": info["kind"], "n": n, "size": info["size"], "masks": m01 is not None}


__all__ = ["generate", "load_run", "sample", "write_sample_folder"]
