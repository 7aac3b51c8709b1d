"""Images (and masks) for GAN training, and masks for pix2pix sampling, at one square size.

Images are returned in ``[-1, 1]`` float32 ``(N, S, S, 1)`` (grayscale), masks in ``{-1, 1}``.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from kseg.errors import ConfigError, DataError


def _synthetic_spec(spec: str) -> tuple[str, int]:
    from kseg.data.synthetic import parse_synthetic_spec

    kind, n = parse_synthetic_spec(spec, "--data", usage="synthetic:ultrasound:N")
    if kind != "ultrasound":
        raise ConfigError(f"--data {spec!r}: GANs here are grayscale; use synthetic:ultrasound:N")
    return kind, n


def _resize(arr: np.ndarray, size: int, *, is_mask: bool) -> np.ndarray:
    interp = cv2.INTER_NEAREST if is_mask else cv2.INTER_AREA
    return cv2.resize(arr, (size, size), interpolation=interp)


def _img(u8: np.ndarray) -> np.ndarray:
    return (u8.astype(np.float32) / 127.5 - 1.0)[..., None] if u8.ndim == 2 else u8


def _msk(m01: np.ndarray) -> np.ndarray:
    return (np.where(m01 > 0, 1.0, -1.0).astype(np.float32))[..., None]


def load_training_data(
    source: str | Path, size: int, *, need_masks: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    """``source``: a folder with ``images/`` (and ``masks/``) or ``synthetic:ultrasound:N``."""
    from kseg.data.io import read_image, read_mask

    spec = str(source)
    if spec.startswith("synthetic"):
        from kseg.data.synthetic import synthesize

        kind, n = _synthetic_spec(spec)
        s = synthesize(kind, n, size, seed=0)
        return np.stack([_img(im[..., 0]) for im in s.images]), np.stack([_msk(m) for m in s.masks])
    from kseg.data.folder import scan_folder

    samples = scan_folder(spec, require_masks=need_masks)
    images = np.stack(
        [_img(_resize(read_image(x.image, 1)[..., 0], size, is_mask=False)) for x in samples]
    )
    masks = None
    if need_masks:
        masks = np.stack([_msk(_resize(read_mask(x.mask), size, is_mask=True)) for x in samples])
    return images, masks


def jitter_mask(mask01: np.ndarray, rng: np.random.Generator, strength: float = 1.0) -> np.ndarray:
    """Random flip, rotation (+-15 deg), scale (0.85-1.15) and shift (+-8 %) of a 0/1 mask."""
    s = mask01.shape[0]
    m = mask01[:, ::-1] if rng.random() < 0.5 else mask01
    ang = rng.uniform(-15, 15) * strength
    scale = 1.0 + rng.uniform(-0.15, 0.15) * strength
    mat = cv2.getRotationMatrix2D((s / 2, s / 2), ang, scale)
    mat[:, 2] += rng.uniform(-0.08, 0.08, 2) * s * strength
    out = cv2.warpAffine(
        np.ascontiguousarray(m, np.uint8), mat, (s, s), flags=cv2.INTER_NEAREST, borderValue=0
    )
    return out


def masks_for_sampling(
    spec: str | Path, size: int, n: int, *, seed: int = 0, jitter: bool = True
) -> np.ndarray:
    """``n`` masks (0/1 uint8 ``(n, S, S)``) from ``synthetic[:ultrasound]`` or a folder.

    A folder is either a dataset (its ``masks/`` subfolder is used) or a folder of mask files.
    Masks are cycled to reach ``n``, each copy jittered (``jitter_mask``) unless ``jitter=False``.
    """
    from kseg.data.io import is_image_file, read_mask

    text = str(spec)
    rng = np.random.default_rng(seed)
    if text.startswith("synthetic"):
        from kseg.data.synthetic import synthesize

        kind = text.split(":")[1] if ":" in text else "ultrasound"
        return synthesize(kind, n, size, seed=seed + 1000).masks  # fresh masks, no jitter needed
    root = Path(text).expanduser()
    folder = root / "masks" if (root / "masks").is_dir() else root
    if not folder.is_dir():
        raise DataError(f"{root}: masks folder not found; pass a folder of masks or 'synthetic'")
    files = sorted(p for p in folder.iterdir() if is_image_file(p))
    if not files:
        raise DataError(f"{folder}: no mask files (png, jpg, bmp, tif)")
    base = [_resize(read_mask(p), size, is_mask=True) for p in files]
    out = np.empty((n, size, size), np.uint8)
    for i in range(n):
        m = base[i % len(base)]
        out[i] = jitter_mask(m, rng) if jitter else m
    return out


__all__ = ["jitter_mask", "load_training_data", "masks_for_sampling"]
