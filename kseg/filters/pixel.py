"""Speckle and contrast filters for ultrasound (numpy box filters and OpenCV; no TensorFlow).

Every filter takes one image ``(H, W)`` or ``(H, W, C)`` (uint8 or float) and returns an array of
the same shape and dtype; channels are filtered independently. The adaptive speckle filters
(Lee, enhanced Lee, Kuan, Frost) use local statistics over a ``size x size`` window computed with
box filters, so their cost does not grow with the window (Frost: one pass per window offset).

The noise level of the multiplicative speckle model, the squared coefficient of variation
``Cu^2 = var/mean^2`` of a homogeneous region (``1 / ENL``), is given with ``looks`` (equivalent
number of looks) or, by default (``looks=None``), estimated per image as the median of the local
``Ci^2 = var/mean^2`` (most windows of a B-mode scan lie inside homogeneous tissue).

The filters are registered by name in :data:`FILTERS`; a chain of them is built from the config
by :func:`kseg.filters.chain.parse_chain`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import cv2
import numpy as np

from kseg.errors import ConfigError
from kseg.registry import Registry

FILTERS: Registry[Callable[..., np.ndarray]] = Registry("preprocess filter")
_EPS = 1e-6


def _per_channel(fn: Callable[[np.ndarray], np.ndarray], image: np.ndarray) -> np.ndarray:
    """Apply a 2D float32 filter to each channel; return the input's shape and dtype."""
    arr = np.asarray(image)
    if arr.ndim not in (2, 3):
        raise ValueError(f"expected an image (H, W) or (H, W, C), got shape {arr.shape}")
    planes = [arr] if arr.ndim == 2 else [arr[..., c] for c in range(arr.shape[2])]
    out = [fn(np.ascontiguousarray(p, dtype=np.float32)) for p in planes]
    res = out[0] if arr.ndim == 2 else np.stack(out, axis=-1)
    return _cast_like(res, arr)


def _per_channel_u8(fn: Callable[[np.ndarray], np.ndarray], image: np.ndarray) -> np.ndarray:
    """Apply a 2D uint8-only OpenCV filter to each channel (float input is rounded to uint8)."""
    arr = np.asarray(image)
    if arr.ndim not in (2, 3):
        raise ValueError(f"expected an image (H, W) or (H, W, C), got shape {arr.shape}")
    planes = [arr] if arr.ndim == 2 else [arr[..., c] for c in range(arr.shape[2])]
    out = [fn(np.ascontiguousarray(_cast_like(p.astype(np.float32), np.uint8))) for p in planes]
    res = out[0] if arr.ndim == 2 else np.stack(out, axis=-1)
    return _cast_like(res, arr)


def _cast_like(res: np.ndarray, like: np.ndarray | type) -> np.ndarray:
    dtype = np.dtype(like.dtype if isinstance(like, np.ndarray) else like)
    if dtype.kind in "ui":
        info = np.iinfo(dtype)
        return np.clip(np.rint(res), info.min, info.max).astype(dtype)
    return res.astype(dtype, copy=False)


def _odd(size: int, name: str, key: str = "size") -> int:
    if int(size) != size or size < 3 or size % 2 == 0:
        raise ConfigError(f"preprocess {name}.{key} = {size!r}; use an odd window size >= 3")
    return int(size)


def _positive(value: float, name: str, key: str) -> float:
    if not value > 0:
        raise ConfigError(f"preprocess {name}.{key} = {value!r}; use a number > 0")
    return float(value)


def _box(x: np.ndarray, size: int) -> np.ndarray:
    return cv2.blur(x, (size, size), borderType=cv2.BORDER_REFLECT)


def local_stats(x: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Local mean and variance over a ``size x size`` window (box filters, reflected border)."""
    mean = _box(x, size)
    var = np.maximum(_box(x * x, size) - mean * mean, 0.0)
    return mean, var


def _median(x: np.ndarray) -> float:
    """Median of a large map from a regular subsample (every 2nd row and column): the noise
    level it estimates is a smooth statistic, and this makes it 4x cheaper."""
    sub = x[::2, ::2] if x.shape[0] >= 64 and x.shape[1] >= 64 else x
    return float(np.median(sub))


def _cu2(ci2: np.ndarray, looks: float | None) -> float:
    """Squared noise coefficient of variation: ``1/looks``, else the median local ``Ci^2``."""
    if looks is not None:
        return 1.0 / float(looks)
    return _median(ci2)


def _ci2(mean: np.ndarray, var: np.ndarray) -> np.ndarray:
    return var / np.maximum(mean * mean, _EPS)


@FILTERS.register("lee")
def lee(image: np.ndarray, *, size: int = 5, looks: float | None = None) -> np.ndarray:
    """Lee filter: local linear MMSE estimate under multiplicative speckle.

    ``out = m + k (I - m)`` with ``k = clip(1 - Cu^2 / Ci^2, 0, 1)``: the local mean in
    homogeneous regions (``Ci ~ Cu``), the pixel itself on edges (``Ci >> Cu``).

    Args:
        size: odd window side.
        looks: equivalent number of looks of the speckle (``Cu^2 = 1/looks``); ``None``
            estimates ``Cu^2`` per image (median local ``Ci^2``).

    Reference:
        J.-S. Lee, "Digital image enhancement and noise filtering by use of local statistics",
        IEEE Trans. PAMI 2(2):165-168, 1980.
    """
    size = _odd(size, "lee")

    def run(x: np.ndarray) -> np.ndarray:
        m, v = local_stats(x, size)
        ci2 = _ci2(m, v)
        cu2 = _cu2(ci2, looks)
        k = np.clip(1.0 - cu2 / np.maximum(ci2, _EPS), 0.0, 1.0)
        return m + k * (x - m)

    return _per_channel(run, image)


@FILTERS.register("kuan")
def kuan(image: np.ndarray, *, size: int = 5, looks: float | None = None) -> np.ndarray:
    """Kuan filter: the exact local LMMSE estimate of the multiplicative speckle model.

    Lee without the first-order approximation: ``k = clip((1 - Cu^2/Ci^2) / (1 + Cu^2), 0, 1)``.

    Args:
        size: odd window side.
        looks: equivalent number of looks (``None``: estimated per image).

    Reference:
        D. T. Kuan, A. A. Sawchuk, T. C. Strand, P. Chavel, "Adaptive noise smoothing filter for
        images with signal-dependent noise", IEEE Trans. PAMI 7(2):165-177, 1985.
    """
    size = _odd(size, "kuan")

    def run(x: np.ndarray) -> np.ndarray:
        m, v = local_stats(x, size)
        ci2 = _ci2(m, v)
        cu2 = _cu2(ci2, looks)
        k = np.clip((1.0 - cu2 / np.maximum(ci2, _EPS)) / (1.0 + cu2), 0.0, 1.0)
        return m + k * (x - m)

    return _per_channel(run, image)


@FILTERS.register("enhanced_lee")
def enhanced_lee(
    image: np.ndarray, *, size: int = 5, looks: float | None = None, damping: float = 1.0
) -> np.ndarray:
    """Enhanced Lee filter: three classes of pixel by their local coefficient of variation.

    ``Ci <= Cu``: homogeneous, the local mean; ``Ci >= Cmax = sqrt(1 + 2/L)``: a point target
    or edge, kept; in between ``out = m k + I (1 - k)`` with
    ``k = exp(-damping (Ci - Cu) / (Cmax - Ci))``.

    Args:
        size: odd window side.
        looks: equivalent number of looks ``L`` (``None``: ``L = 1 / Cu^2`` estimated per image).
        damping: how quickly smoothing falls off above ``Cu``.

    Reference:
        A. Lopes, R. Touzi, E. Nezry, "Adaptive speckle filters and scene heterogeneity",
        IEEE Trans. Geoscience and Remote Sensing 28(6):992-1000, 1990.
    """
    size = _odd(size, "enhanced_lee")
    damping = _positive(damping, "enhanced_lee", "damping")

    def run(x: np.ndarray) -> np.ndarray:
        m, v = local_stats(x, size)
        ci2 = _ci2(m, v)
        cu2 = max(_cu2(ci2, looks), _EPS)
        cu, ci = np.sqrt(cu2), np.sqrt(ci2)
        cmax = np.sqrt(1.0 + 2.0 * cu2)  # 1/L = Cu^2
        k = np.exp(-damping * (ci - cu) / np.maximum(cmax - ci, _EPS))
        out = m * k + x * (1.0 - k)
        out = np.where(ci <= cu, m, out)
        return np.where(ci >= cmax, x, out)

    return _per_channel(run, image)


@FILTERS.register("frost")
def frost(image: np.ndarray, *, size: int = 5, damping: float = 1.0) -> np.ndarray:
    """Frost filter: an adaptive exponential kernel ``exp(-damping Ci^2 |t|)`` per pixel.

    In homogeneous regions (small ``Ci``) the kernel is wide (a local mean); on edges it
    narrows to the pixel itself. ``|t|`` is the Euclidean distance to the window centre.

    Args:
        size: odd window side.
        damping: the kernel's damping factor ``K``, relative to the image's median ``Ci^2``
            (so 1.0 means ``exp(-|t|)`` in a typical homogeneous region).

    Reference:
        V. S. Frost, J. A. Stiles, K. S. Shanmugan, J. C. Holtzman, "A model for radar images and
        its application to adaptive digital filtering of multiplicative noise",
        IEEE Trans. PAMI 4(2):157-166, 1982.
    """
    size = _odd(size, "frost")
    damping = _positive(damping, "frost", "damping")
    r = size // 2

    def run(x: np.ndarray) -> np.ndarray:
        m, v = local_stats(x, size)
        # normalised by the image's median Ci^2 so the damping does not depend on the noise level
        ci2 = _ci2(m, v)
        a = damping * ci2 / max(_median(ci2), _EPS)
        pad = cv2.copyMakeBorder(x, r, r, r, r, cv2.BORDER_REFLECT)
        h, w = x.shape
        num = np.zeros_like(x)
        den = np.zeros_like(x)
        weights: dict[float, np.ndarray] = {}  # one exp per distinct distance, not per offset
        for dy in range(-r, r + 1):
            for dx in range(-r, r + 1):
                d = float(np.hypot(dy, dx))
                wgt = weights.get(d)
                if wgt is None:
                    wgt = weights[d] = np.exp(-a * np.float32(d))
                num += wgt * pad[r + dy : r + dy + h, r + dx : r + dx + w]
                den += wgt
        return num / den

    return _per_channel(run, image)


@FILTERS.register("srad")
def srad(image: np.ndarray, *, iterations: int = 20, dt: float = 0.15) -> np.ndarray:
    """Speckle reducing anisotropic diffusion (SRAD).

    Diffusion coefficient ``c(q) = 1 / (1 + (q^2 - q0^2) / (q0^2 (1 + q0^2)))`` from the
    instantaneous coefficient of variation ``q`` (an edge detector for speckle); ``q0``, the
    speckle scale, is re-estimated each iteration as the median local (5x5) coefficient of
    variation of the imaged area (the paper's homogeneous-region estimate, without picking a
    region by hand; it decays as the speckle is smoothed). Explicit scheme with replicated
    borders; ``dt <= 0.25`` keeps it stable.

    Args:
        iterations: diffusion steps.
        dt: time step.

    Reference:
        Y. Yu, S. T. Acton, "Speckle reducing anisotropic diffusion", IEEE Trans. Image
        Processing 11(11):1260-1270, 2002.
    """
    if int(iterations) != iterations or iterations < 1:
        raise ConfigError(f"preprocess srad.iterations = {iterations!r}; use a whole number >= 1")
    if not 0 < dt <= 0.25:
        raise ConfigError(f"preprocess srad.dt = {dt!r}; use 0 < dt <= 0.25 (stability)")

    def run(x: np.ndarray) -> np.ndarray:
        scale = max(float(x.max()), _EPS)
        img = x / scale + 1e-3  # q is scale-free; keep I > 0
        for _ in range(int(iterations)):
            p = np.pad(img, 1, mode="edge")
            dn = p[:-2, 1:-1] - img
            ds = p[2:, 1:-1] - img
            dw = p[1:-1, :-2] - img
            de = p[1:-1, 2:] - img
            g2 = (dn * dn + ds * ds + dw * dw + de * de) / (img * img)
            lap = (dn + ds + dw + de) / img
            q2 = (0.5 * g2 - lap * lap / 16.0) / np.square(1.0 + 0.25 * lap)
            q2 = np.maximum(q2, 0.0)
            # speckle scale: median local (5x5) Ci^2 of the imaged area (black outside a sector
            # scan would otherwise pull it to 0 and stop all diffusion); it falls as speckle goes
            m, v = local_stats(img, 5)
            lit = m > 0.05
            q02 = max(float(np.median(_ci2(m, v)[lit])) if lit.any() else _median(q2), _EPS)
            c = 1.0 / (1.0 + (q2 - q02) / (q02 * (1.0 + q02)))
            c = np.clip(c, 0.0, 1.0)
            cp = np.pad(c, 1, mode="edge")
            div = c * dn + cp[2:, 1:-1] * ds + c * dw + cp[1:-1, 2:] * de
            img = img + (dt / 4.0) * div
        return (img - 1e-3) * scale

    return _per_channel(run, image)


@FILTERS.register("median")
def median(image: np.ndarray, *, size: int = 5) -> np.ndarray:
    """Median filter (OpenCV ``medianBlur``).

    Reference:
        J. W. Tukey, "Exploratory Data Analysis", Addison-Wesley, 1977 (running medians).
    """
    size = _odd(size, "median")
    return _per_channel_u8(lambda x: cv2.medianBlur(x, size), image)


@FILTERS.register("gaussian")
def gaussian(image: np.ndarray, *, sigma: float = 1.0) -> np.ndarray:
    """Gaussian low-pass filter (OpenCV ``GaussianBlur``, kernel side ``2 ceil(3 sigma) + 1``)."""
    sigma = _positive(sigma, "gaussian", "sigma")
    k = 2 * int(np.ceil(3 * sigma)) + 1
    return _per_channel(
        lambda x: cv2.GaussianBlur(x, (k, k), sigma, borderType=cv2.BORDER_REFLECT), image
    )


@FILTERS.register("bilateral")
def bilateral(
    image: np.ndarray, *, size: int = 5, sigma_color: float = 25.0, sigma_space: float = 3.0
) -> np.ndarray:
    """Bilateral filter: Gaussian weights in space and in intensity (OpenCV ``bilateralFilter``).

    Args:
        size: neighbourhood diameter.
        sigma_color: intensity sigma in pixel units (0..255).
        sigma_space: spatial sigma in pixels.

    Reference:
        C. Tomasi, R. Manduchi, "Bilateral filtering for gray and color images", ICCV 1998.
    """
    size = _odd(size, "bilateral")
    sigma_color = _positive(sigma_color, "bilateral", "sigma_color")
    sigma_space = _positive(sigma_space, "bilateral", "sigma_space")
    return _per_channel(lambda x: cv2.bilateralFilter(x, size, sigma_color, sigma_space), image)


@FILTERS.register("nlm")
def nlm(image: np.ndarray, *, h: float = 12.0, template: int = 7, search: int = 21) -> np.ndarray:
    """Non-local means (OpenCV ``fastNlMeansDenoising`` on uint8, per channel).

    Args:
        h: filter strength in pixel units (larger removes more noise and more detail).
        template: odd patch side.
        search: odd search window side.

    Reference:
        A. Buades, B. Coll, J.-M. Morel, "A non-local algorithm for image denoising", CVPR 2005.
    """
    h = _positive(h, "nlm", "h")
    template = _odd(template, "nlm", "template")
    search = _odd(search, "nlm", "search")
    return _per_channel_u8(lambda x: cv2.fastNlMeansDenoising(x, None, h, template, search), image)


@FILTERS.register("clahe")
def clahe(image: np.ndarray, *, clip: float = 2.0, tiles: int = 8) -> np.ndarray:
    """Contrast limited adaptive histogram equalization (OpenCV, on uint8, per channel).

    Args:
        clip: contrast limit (histogram clip relative to a uniform bin).
        tiles: the image is divided into ``tiles x tiles`` regions.

    Reference:
        K. Zuiderveld, "Contrast limited adaptive histogram equalization", Graphics Gems IV,
        Academic Press, 1994, pp. 474-485.
    """
    clip = _positive(clip, "clahe", "clip")
    if int(tiles) != tiles or tiles < 1:
        raise ConfigError(f"preprocess clahe.tiles = {tiles!r}; use a whole number >= 1")
    op = cv2.createCLAHE(clipLimit=clip, tileGridSize=(int(tiles), int(tiles)))
    return _per_channel_u8(op.apply, image)


def filter_params(name: str) -> dict[str, Any]:
    """The keyword parameters of filter ``name`` and their defaults."""
    import inspect

    fn = FILTERS.get(name)
    sig = inspect.signature(fn)
    return {
        k: p.default for k, p in sig.parameters.items() if p.kind is inspect.Parameter.KEYWORD_ONLY
    }


__all__ = [
    "FILTERS",
    "bilateral",
    "clahe",
    "enhanced_lee",
    "filter_params",
    "frost",
    "gaussian",
    "kuan",
    "lee",
    "local_stats",
    "median",
    "nlm",
    "srad",
]
