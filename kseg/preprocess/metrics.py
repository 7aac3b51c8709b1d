"""Speckle-filter quality measures (numpy + OpenCV; PSNR/SSIM through scikit-image).

Regions come from the segmentation mask: the *lesion* is the mask eroded by ``margin`` pixels, the
*background* a ring outside it (between ``margin`` and ``margin + ring`` pixels from the mask),
both restricted to the imaged area (the sector of a B-mode scan, i.e. the pixels that are not
black in the unfiltered image).

References:
    ENL: J.-S. Lee, "Speckle analysis and smoothing of synthetic aperture radar images", CGIP
    17:24-32, 1981 (``mean^2 / var`` of a homogeneous region; gamma-distributed intensity with
    shape ``L`` has ENL ``L``).
    Speckle index: J. Crimmins, "Geometric filter for speckle reduction", Applied Optics
    24(10):1438-1443, 1985 (mean of local ``std / mean``).
    EPI: F. Sattar, L. Floreby, G. Salomonsson, B. Lovstrom, "Image enhancement based on a
    nonlinear multiscale method", IEEE Trans. Image Processing 6(6):888-895, 1997 (correlation of
    the high-pass (Laplacian) images of the filtered and reference images).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from kseg.filters.pixel import local_stats


def _gray(image: np.ndarray) -> np.ndarray:
    a = np.asarray(image, np.float32)
    return a.mean(axis=-1) if a.ndim == 3 else a


def enl(values: np.ndarray) -> float:
    """Equivalent number of looks ``mean^2 / var`` of a (homogeneous) set of pixel values."""
    v = np.asarray(values, np.float64).ravel()
    var = v.var()
    return float(v.mean() ** 2 / var) if var > 0 else float("inf")


def speckle_index(image: np.ndarray, region: np.ndarray | None = None, size: int = 5) -> float:
    """Mean of the local ``std / mean`` over ``size x size`` windows (inside ``region``)."""
    x = _gray(image)
    m, v = local_stats(x, size)
    ratio = np.sqrt(v) / np.maximum(m, 1e-6)
    sel = ratio[region.astype(bool)] if region is not None else ratio
    sel = sel[np.isfinite(sel)]
    return float(sel.mean()) if sel.size else float("nan")


def cnr(image: np.ndarray, lesion: np.ndarray, background: np.ndarray) -> float:
    """Contrast-to-noise ratio ``|mu_l - mu_b| / sqrt(var_l + var_b)``."""
    x = _gray(image)
    a, b = x[lesion.astype(bool)], x[background.astype(bool)]
    if a.size < 2 or b.size < 2:
        return float("nan")
    den = np.sqrt(a.var() + b.var())
    return float(abs(a.mean() - b.mean()) / den) if den > 0 else float("inf")


def epi(filtered: np.ndarray, reference: np.ndarray, region: np.ndarray | None = None) -> float:
    """Edge preservation index: correlation of the Laplacians of ``filtered`` and ``reference``.

    1 means the reference's edges are kept exactly; smoothing edges away lowers it.
    """
    lf = cv2.Laplacian(_gray(filtered), cv2.CV_32F, ksize=3)
    lr = cv2.Laplacian(_gray(reference), cv2.CV_32F, ksize=3)
    if region is not None:
        sel = region.astype(bool)
        lf, lr = lf[sel], lr[sel]
    lf = lf.ravel().astype(np.float64) - lf.mean()
    lr = lr.ravel().astype(np.float64) - lr.mean()
    den = np.sqrt((lf * lf).sum() * (lr * lr).sum())
    return float((lf * lr).sum() / den) if den > 0 else float("nan")


def psnr(image: np.ndarray, clean: np.ndarray) -> float:
    """Peak signal-to-noise ratio (dB, peak 255) against the clean image."""
    from skimage.metrics import peak_signal_noise_ratio

    return float(
        peak_signal_noise_ratio(
            np.asarray(clean, np.float64), np.asarray(image, np.float64), data_range=255
        )
    )


def ssim(image: np.ndarray, clean: np.ndarray) -> float:
    """Structural similarity (Wang et al., IEEE TIP 2004) against the clean image."""
    from skimage.metrics import structural_similarity

    a, b = _gray(clean).astype(np.float64), _gray(image).astype(np.float64)
    return float(structural_similarity(a, b, data_range=255))


@dataclass(frozen=True)
class Regions:
    """Boolean ``(H, W)`` masks of the lesion, the background ring and the imaged area."""

    lesion: np.ndarray
    background: np.ndarray
    content: np.ndarray


def regions(
    mask: np.ndarray, image: np.ndarray | None = None, *, margin: int = 3, ring: int = 12
) -> Regions:
    """Lesion (mask eroded by ``margin``) and background ring, inside the imaged area.

    The imaged area is where the unfiltered ``image`` is not black after a small closing (the
    fan of a sector scan); everything when ``image`` is None.
    """
    m = (np.asarray(mask) > 0).astype(np.uint8)
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * margin + 1, 2 * margin + 1))
    lesion = cv2.erode(m, k) > 0
    inner = cv2.dilate(m, k)
    k2 = cv2.getStructuringElement(
        cv2.MORPH_ELLIPSE, (2 * (margin + ring) + 1, 2 * (margin + ring) + 1)
    )
    outer = cv2.dilate(m, k2)
    background = (outer > 0) & (inner == 0)
    if image is not None:
        g = (_gray(image) > 0).astype(np.uint8)
        content = cv2.morphologyEx(g, cv2.MORPH_CLOSE, np.ones((7, 7), np.uint8)) > 0
        content = cv2.erode(content.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    else:
        content = np.ones(m.shape, bool)
    if not m.any():  # no lesion: the whole imaged area is background
        background = content.copy()
    return Regions(lesion & content, background & content, content)


__all__ = ["Regions", "cnr", "enl", "epi", "psnr", "regions", "speckle_index", "ssim"]
