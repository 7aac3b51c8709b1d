"""Embedded synthetic data: ultrasound B-mode, retinal fundus vessels, dermoscopy (numpy + OpenCV).

Used in memory when ``kseg train`` gets no ``--data`` and written to disk by
``kseg data synth``. Every sample comes with its mask and its noise-free image, and sample ``i`` of
a given ``seed`` is the same whatever ``n`` is (one :class:`numpy.random.SeedSequence` per index).

**Ultrasound** (1 channel, mask = lesion). Tissue is a field of scatterer amplitudes (layers,
smooth texture, specular interfaces, optional hypoechoic vessel as a distractor, one or two
irregular lesions that are hypo-, hyper- or nearly iso-echoic, some with a hypoechoic halo, with
posterior acoustic enhancement or shadowing along the beam). Fully developed speckle follows the
classic model: circular complex Gaussian scatterers convolved with a Gaussian point spread function,
so the envelope is Rayleigh distributed (envelope SNR ``sqrt(pi / (4 - pi)) = 1.91``, and the
standard deviation of the log-compressed envelope is 5.57 dB). Then depth attenuation, partial
time-gain compensation, log compression to a random dynamic range and, for half the images,
scan conversion to a sector (fan) geometry. The clean image is the expected log-compressed
intensity without speckle (so it equals the local mean of the noisy image).

**Vessels** (RGB, mask = vessels). Fundus background with choroidal texture, optic disc and
macula on a circular field of view with vignetting; a vessel tree grown from the disc by a
random walk with branching (widths follow Murray's law, ``w0^3 = w1^3 + w2^3``) and tapering,
rendered anti-aliased at 4x and area-downsampled. Noise: Gaussian sensor noise.

**Skin** (RGB, mask = lesion). Skin texture with surface lines; an irregular pigmented lesion
with colour variation (brown, dark brown, blue-grey), a pigment network and soft borders; hairs
(dark anti-aliased curves) and sensor noise are artifacts, absent from the clean image (so the
clean image is also the target of hair removal).

References:
    J. W. Goodman, "Some fundamental properties of speckle", JOSA 66(11), 1976.
    R. F. Wagner et al., "Statistics of speckle in ultrasound B-scans", IEEE Trans. Sonics
    Ultrason. 30(3), 1983 (Rayleigh SNR 1.91).
    C. D. Murray, "The physiological principle of minimum work", PNAS 12(3), 1926.
    T. Lee et al., "DullRazor: a software approach to hair removal from images", Comput. Biol.
    Med. 27(6), 1997 (hair artifacts in dermoscopy).

Example:
    >>> s = synthesize("ultrasound", n=8, size=128, seed=0)
    >>> s.images.shape, s.masks.shape, s.clean.shape
    ((8, 128, 128, 1), (8, 128, 128), (8, 128, 128, 1))
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from kseg.atomic import atomic_dir
from kseg.config import SyntheticKind
from kseg.data.io import encode_png
from kseg.errors import ConfigError, DataError

#: log-compressed Rayleigh speckle: E[20 log10 R] = 10 log10 E[R^2] - 2.507 dB (Euler's gamma)
LOG_SPECKLE_BIAS_DB = 10.0 * 0.5772156649 / math.log(10.0)
#: mean / std of a Rayleigh envelope
RAYLEIGH_SNR = math.sqrt(math.pi / (4.0 - math.pi))

_KIND_ID = {SyntheticKind.ULTRASOUND: 1, SyntheticKind.VESSELS: 2, SyntheticKind.SKIN: 3}
CHANNELS = {SyntheticKind.ULTRASOUND: 1, SyntheticKind.VESSELS: 3, SyntheticKind.SKIN: 3}


@dataclass(frozen=True)
class SyntheticSet:
    """Synthetic images with masks and noise-free references.

    Attributes:
        images: uint8 ``(N, S, S, C)``.
        masks: uint8 ``(N, S, S)`` in ``{0, 1}``.
        clean: uint8 ``(N, S, S, C)``, the same scene without noise (and without hairs for skin).
        names: ``"<kind>_<index>"``, unique.
    """

    images: np.ndarray
    masks: np.ndarray
    clean: np.ndarray
    names: list[str]


# ---------------------------------------------------------------------------------------------
# shared helpers


def _smooth_noise(rng: np.random.Generator, h: int, w: int, sigma: float) -> np.ndarray:
    """Zero-mean, unit-std Gaussian random field with correlation length ``sigma`` pixels."""
    f = max(1, int(sigma // 2))
    sh, sw = h // f + 2, w // f + 2
    small = rng.standard_normal((sh, sw)).astype(np.float32)
    small = cv2.GaussianBlur(small, (0, 0), max(sigma / f, 0.5), borderType=cv2.BORDER_REFLECT)
    field = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR) if f > 1 else small[:h, :w]
    field = field - field.mean()
    return field / (field.std() + 1e-6)


def _blob(
    h: int, w: int, cy: float, cx: float, r: float, rng: np.random.Generator, roughness: float
) -> np.ndarray:
    """Irregular star-shaped region: radius ``r(theta)`` with random harmonics, random elongation."""
    ang = rng.uniform(0, np.pi)
    elong = rng.uniform(1.0, 1.8)
    table_theta = np.linspace(-np.pi, np.pi, 721, dtype=np.float32)
    rad = np.ones_like(table_theta)
    for k in range(2, 9):
        amp = roughness * rng.uniform(0.0, 1.0) / k**0.9
        rad += amp * np.cos(k * table_theta + rng.uniform(0, 2 * np.pi))
    rad = r * np.clip(rad, 0.35, None)
    # only the bounding box of the largest radius is evaluated
    reach = float(rad.max()) * math.sqrt(elong) + 2.0
    y0, y1 = max(0, int(cy - reach)), min(h, int(cy + reach) + 2)
    x0, x1 = max(0, int(cx - reach)), min(w, int(cx + reach) + 2)
    out = np.zeros((h, w), bool)
    if y0 >= y1 or x0 >= x1:
        return out
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    dy, dx = yy - cy, xx - cx
    u = (dx * np.cos(ang) + dy * np.sin(ang)) / math.sqrt(elong)
    v = (-dx * np.sin(ang) + dy * np.cos(ang)) * math.sqrt(elong)
    idx = np.rint((np.arctan2(v, u) + np.pi) * (720 / (2 * np.pi))).astype(np.int32)
    out[y0:y1, x0:x1] = np.hypot(u, v) <= rad[idx]
    return out


def _rng(seed: int, kind: SyntheticKind, index: int) -> np.random.Generator:
    return np.random.default_rng(
        np.random.SeedSequence([int(seed) & 0xFFFFFFFF, _KIND_ID[kind], index])
    )


def _to_u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------------
# ultrasound


def speckle_envelope(
    amplitude: np.ndarray,
    rng: np.random.Generator,
    sigma_axial: float,
    sigma_lateral: float,
    noise: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Fully developed speckle over a scatterer amplitude map (rows = depth, columns = lateral).

    Circular complex Gaussian scatterers with strength ``amplitude`` are convolved with a
    Gaussian point spread function normalised to unit energy, plus complex electronic noise of
    standard deviation ``noise``; the envelope is the magnitude (Rayleigh where the amplitude is
    homogeneous).

    Returns:
        ``(envelope, mean_power)``: the envelope and its expected square ``E[R^2]`` per pixel.
    """
    h, w = amplitude.shape

    def kern(sigma: float) -> np.ndarray:
        k = cv2.getGaussianKernel(2 * int(math.ceil(3 * sigma)) + 1, sigma).astype(np.float32)
        return k / np.sqrt((k**2).sum())

    ka, kl = kern(sigma_axial), kern(sigma_lateral)
    amp = amplitude.astype(np.float32)
    re = amp * rng.standard_normal((h, w), dtype=np.float32) / np.float32(math.sqrt(2.0))
    im = amp * rng.standard_normal((h, w), dtype=np.float32) / np.float32(math.sqrt(2.0))
    re = cv2.sepFilter2D(re, -1, kl, ka, borderType=cv2.BORDER_REFLECT)
    im = cv2.sepFilter2D(im, -1, kl, ka, borderType=cv2.BORDER_REFLECT)
    power = cv2.sepFilter2D(amp * amp, -1, kl**2, ka**2, borderType=cv2.BORDER_REFLECT)
    if noise > 0:
        re += rng.standard_normal((h, w), dtype=np.float32) * np.float32(noise / math.sqrt(2.0))
        im += rng.standard_normal((h, w), dtype=np.float32) * np.float32(noise / math.sqrt(2.0))
        power = power + np.float32(noise**2)
    return np.sqrt(re * re + im * im), power


def _layers(rng: np.random.Generator, s: int) -> np.ndarray:
    """Tissue scatterer amplitude: layers separated by wavy interfaces, texture, specular lines."""
    depth = np.linspace(0.0, 1.0, s, dtype=np.float32)[:, None]
    x = np.linspace(0.0, 1.0, s, dtype=np.float32)[None, :]
    amp = np.full((s, s), rng.uniform(0.6, 1.3), np.float32)
    for b in np.sort(rng.uniform(0.05, 0.7, rng.integers(1, 4))):
        wave = b + rng.uniform(0.01, 0.05) * np.sin(
            2 * np.pi * rng.uniform(0.3, 1.5) * x + rng.uniform(0, 6.3)
        )
        wave = wave + rng.uniform(-0.15, 0.15) * (x - 0.5)
        below = depth > wave
        amp = np.where(below, np.float32(rng.uniform(0.55, 1.35)), amp)
        if rng.random() < 0.6:  # specular fascia line at the interface
            line = np.abs(depth - wave) < rng.uniform(0.6, 1.4) / s
            amp = np.where(line, amp * np.float32(rng.uniform(1.8, 3.0)), amp)
    texture = np.exp(0.25 * _smooth_noise(rng, s, s, s / rng.uniform(10, 25)))
    return (amp * texture).astype(np.float32)


def _posterior(mask: np.ndarray, factor: float, s: int) -> np.ndarray:
    """Multiplicative map below a structure along the beam (columns), smooth at its edges."""
    cols = mask.any(axis=0)
    if not cols.any():
        return np.ones_like(mask, np.float32)
    rows = np.arange(mask.shape[0])[:, None]
    bottom = np.where(cols, mask.shape[0] - 1 - np.argmax(mask[::-1], axis=0), mask.shape[0])
    # fraction of the lesion's lateral profile, smoothed so the shadow edge is soft
    width = cv2.GaussianBlur(
        mask.sum(axis=0).astype(np.float32)[None, :], (0, 0), max(1.0, s / 100)
    )[0]
    cover = np.clip(width / (width.max() + 1e-6) * 1.6, 0, 1)
    below = np.clip((rows - bottom[None, :] + 2) / max(2.0, s / 40), 0, 1)
    fade = np.exp(-np.clip(rows - bottom[None, :], 0, None) / (1.5 * s))  # slow recovery with depth
    return (1.0 + (factor - 1.0) * cover[None, :] * below * fade).astype(np.float32)


def _ultrasound(rng: np.random.Generator, s: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    amp = _layers(rng, s)
    mask = np.zeros((s, s), bool)
    post = np.ones((s, s), np.float32)

    if rng.random() < 0.35:  # hypoechoic vessel: a distractor that is not in the mask
        cy, cx = rng.uniform(0.2, 0.85) * s, rng.uniform(0.1, 0.9) * s
        yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
        ang = rng.uniform(-0.3, 0.3)
        u = (xx - cx) * np.cos(ang) + (yy - cy) * np.sin(ang)
        v = -(xx - cx) * np.sin(ang) + (yy - cy) * np.cos(ang)
        half = rng.uniform(0.015, 0.035) * s
        tube = (np.abs(v) < half) & (np.abs(u) < rng.uniform(0.2, 0.5) * s)
        wall = (
            (np.abs(v) < half + max(1.0, s / 110)) & ~tube & (np.abs(u) < rng.uniform(0.2, 0.5) * s)
        )
        amp = np.where(tube, amp * np.float32(rng.uniform(0.05, 0.2)), amp)
        amp = np.where(wall, amp * np.float32(rng.uniform(1.3, 2.0)), amp)
        post *= _posterior(tube, rng.uniform(1.1, 1.4), s)

    for _ in range(1 + int(rng.random() < 0.3)):
        r = rng.uniform(0.08, 0.19) * s
        cy, cx = rng.uniform(0.25, 0.72) * s, rng.uniform(0.22, 0.78) * s
        blob = _blob(s, s, cy, cx, r, rng, roughness=rng.uniform(0.1, 0.6))
        u = rng.random()
        if u < 0.5:  # hypoechoic (cyst-like or solid): enhancement or, for solid, shadow
            level = rng.uniform(0.08, 0.5)
            factor = rng.uniform(1.3, 1.8) if rng.random() < 0.65 else rng.uniform(0.4, 0.7)
            halo = rng.random() < 0.2
        elif u < 0.87:  # hyperechoic (calcified, fatty): shadowing or nothing
            level = rng.uniform(1.8, 3.2)
            factor = rng.uniform(0.25, 0.6) if rng.random() < 0.6 else 1.0
            halo = rng.random() < 0.3
        else:  # nearly iso-echoic, the hard ones: found by halo, texture and posterior change
            level = rng.uniform(0.55, 0.72) if rng.random() < 0.5 else rng.uniform(1.4, 1.7)
            factor = rng.uniform(0.5, 0.75) if rng.random() < 0.5 else rng.uniform(1.3, 1.6)
            halo = rng.random() < 0.85
        inner = np.exp(0.3 * _smooth_noise(rng, s, s, max(1.5, s / 30)))
        amp = np.where(blob, amp * np.float32(level) * inner, amp)
        if halo:
            k = 2 * max(1, round(s / 90)) + 1
            ring = cv2.dilate(blob.astype(np.uint8), np.ones((k, k), np.uint8)).astype(bool) & ~blob
            amp = np.where(ring, amp * np.float32(rng.uniform(0.2, 0.45)), amp)
        if factor != 1.0:
            post *= _posterior(blob & ~mask, factor, s)
        mask |= blob

    amp = amp * post
    # attenuation over the depth, partly compensated by time-gain compensation
    depth = np.linspace(0.0, 1.0, s, dtype=np.float32)[:, None]
    atten_db = rng.uniform(10.0, 30.0)
    tgc_db = atten_db * rng.uniform(0.7, 1.05)
    amp = amp * (10.0 ** ((tgc_db - atten_db) * depth / 20.0)).astype(np.float32)

    scale = s / 128.0
    sig_ax, sig_lat = rng.uniform(0.6, 0.9) * scale, rng.uniform(1.2, 2.0) * scale
    env, power = speckle_envelope(amp, rng, sig_ax, sig_lat, noise=rng.uniform(0.01, 0.04))

    dyn = rng.uniform(45.0, 60.0)  # dynamic range of the log compression, dB
    # overall gain: the median tissue echo lands on a mid grey level
    ref_db = 10.0 * np.log10(np.median(power)) + dyn * (1.0 - rng.uniform(95.0, 150.0) / 255.0)
    noisy = 255.0 * (20.0 * np.log10(env + 1e-12) - ref_db + dyn) / dyn
    clean = 255.0 * (10.0 * np.log10(power) - LOG_SPECKLE_BIAS_DB - ref_db + dyn) / dyn
    noisy, clean = np.clip(noisy, 0, 255), np.clip(clean, 0, 255)

    if rng.random() < 0.5:
        noisy, clean, mask = _sector(rng, s, noisy, clean, mask)
    return _to_u8(noisy)[..., None], mask.astype(np.uint8), _to_u8(clean)[..., None]


def _sector(rng: np.random.Generator, s: int, *planes: np.ndarray) -> tuple[np.ndarray, ...]:
    """Scan conversion of beam data (rows = depth, columns = beam angle) to a fan."""
    apex = rng.uniform(0.05, 0.35) * s
    r0, r1 = apex + 0.02 * s, apex + 0.98 * s
    half = min(math.radians(rng.uniform(30, 40)), math.asin(min(0.49 * s / r1, 1.0)))
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
    dx, dy = xx - (s - 1) / 2.0, yy + apex
    r = np.hypot(dx, dy)
    th = np.arctan2(dx, dy)
    map_y = ((r - r0) / (r1 - r0) * (s - 1)).astype(np.float32)
    map_x = ((th + half) / (2 * half) * (s - 1)).astype(np.float32)
    out = []
    for p in planes:
        interp = cv2.INTER_NEAREST if p.dtype == bool else cv2.INTER_LINEAR
        src = p.astype(np.uint8) if p.dtype == bool else p.astype(np.float32)
        res = cv2.remap(src, map_x, map_y, interp, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        out.append(res.astype(bool) if p.dtype == bool else res)
    return tuple(out)


# ---------------------------------------------------------------------------------------------
# retinal fundus


def _vessel_tree(
    rng: np.random.Generator, s: int, disc: tuple[float, float], side: int
) -> tuple[np.ndarray, np.ndarray]:
    """Coverage (0..1) and darkness of a vessel tree, rendered at 4x and area-downsampled."""
    up = 4
    cov = np.zeros((s * up, s * up), np.uint8)
    dark = np.zeros((s * up, s * up), np.uint8)
    step = max(1.0, s / 90.0)
    w_min = 0.6 * s / 128.0
    fov_c, fov_r = (s - 1) / 2.0, 0.47 * s
    # four arcades: temporal ones curve around the macula, nasal ones are shorter
    stack = []
    temporal = 0.0 if side < 0 else np.pi  # direction pointing toward the macula
    for sign in (-1, 1):
        stack.append(
            (
                disc[0],
                disc[1],
                temporal + sign * rng.uniform(0.6, 1.0),
                rng.uniform(2.2, 3.0) * s / 128,
                -sign * rng.uniform(0.012, 0.03),
                0,
            )
        )
        stack.append(
            (
                disc[0],
                disc[1],
                temporal + np.pi + sign * rng.uniform(0.4, 1.0),
                rng.uniform(1.6, 2.4) * s / 128,
                sign * rng.uniform(0.0, 0.015),
                0,
            )
        )
    segments = 0
    while stack and segments < 4000:
        y, x, th, w, curv, depth = stack.pop()
        tone = int(
            np.clip(
                255 * (0.35 + 0.25 * min(w / (2.6 * s / 128), 1.0) + rng.uniform(-0.08, 0.08)),
                1,
                255,
            )
        )
        next_branch = rng.integers(8, 20)
        for i in range(400):
            if w < w_min or math.hypot(y - fov_c, x - fov_c) > fov_r + 2:
                break
            th += curv + rng.normal(0.0, 0.12)
            ny, nx = y + step * math.sin(th), x + step * math.cos(th)
            t = max(1, int(round(w * up)))
            p0 = (int(round(x * up)), int(round(y * up)))
            p1 = (int(round(nx * up)), int(round(ny * up)))
            cv2.line(cov, p0, p1, 255, t, cv2.LINE_8)
            cv2.line(dark, p0, p1, tone, t, cv2.LINE_8)
            segments += 1
            y, x = ny, nx
            w *= 0.993
            if i == next_branch and depth < 6:
                wc = w * rng.uniform(0.55, 0.85)
                w = max((w**3 - wc**3), 1e-6) ** (1.0 / 3.0)  # Murray's law
                turn = rng.choice([-1.0, 1.0]) * rng.uniform(0.45, 1.1)
                stack.append((y, x, th + turn, wc, rng.normal(0.0, 0.02), depth + 1))
                th -= 0.3 * turn
                next_branch = i + rng.integers(8, 22)
    cov_s = cv2.resize(cov, (s, s), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    dark_s = cv2.resize(dark, (s, s), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    tone_s = np.where(cov_s > 0, dark_s / np.maximum(cov_s, 1e-6), 0.0)
    return cov_s, tone_s


def _vessels(rng: np.random.Generator, s: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
    c = (s - 1) / 2.0
    rad = np.hypot(yy - c, xx - c) / (0.47 * s)
    fov = rad <= 1.0
    base = np.array(
        [rng.uniform(0.72, 0.9), rng.uniform(0.3, 0.42), rng.uniform(0.1, 0.18)], np.float32
    )
    texture = 1.0 + 0.06 * _smooth_noise(rng, s, s, s / 12) + 0.025 * _smooth_noise(rng, s, s, 1.5)
    img = base[None, None, :] * texture[..., None]
    side = int(rng.choice([-1, 1]))
    disc = (c + rng.uniform(-0.06, 0.06) * s, c + side * rng.uniform(0.22, 0.3) * s)
    macula = (c + rng.uniform(-0.04, 0.04) * s, c - side * rng.uniform(0.02, 0.08) * s)
    d_mac = np.hypot(yy - macula[0], xx - macula[1]) / (0.12 * s)
    img *= (1.0 - rng.uniform(0.2, 0.4) * np.exp(-(d_mac**2)))[..., None]
    d_disc = np.hypot(yy - disc[0], (xx - disc[1]) * rng.uniform(0.85, 1.0)) / (
        rng.uniform(0.065, 0.085) * s
    )
    disc_a = cv2.GaussianBlur((d_disc <= 1).astype(np.float32), (0, 0), max(0.8, s / 100))
    disc_col = np.array([1.0, rng.uniform(0.78, 0.9), rng.uniform(0.5, 0.65)], np.float32)
    img = img * (1 - disc_a[..., None]) + disc_col * disc_a[..., None]

    cov, tone = _vessel_tree(rng, s, disc, side)
    vessel_col = img * np.array([0.62, 0.42, 0.55], np.float32)[None, None, :]
    alpha = (cov * (0.55 + 0.6 * tone))[..., None]
    img = img * (1 - np.clip(alpha, 0, 1)) + vessel_col * np.clip(alpha, 0, 1)

    vign = 1.0 - rng.uniform(0.3, 0.6) * np.clip(rad, 0, 1) ** rng.uniform(2.0, 4.0)
    edge = np.clip((1.0 - rad) * 0.47 * s + 0.5, 0, 1)  # one-pixel soft FOV border
    img = img * (vign * edge)[..., None] * rng.uniform(0.85, 1.1)
    clean = np.clip(img * 255.0, 0, 255)
    sigma = rng.uniform(2.0, 6.0)
    noisy = clean + rng.normal(0.0, sigma, clean.shape).astype(np.float32) * edge[..., None]
    mask = (cov >= 0.5) & fov
    return _to_u8(noisy), mask.astype(np.uint8), _to_u8(clean)


# ---------------------------------------------------------------------------------------------
# dermoscopy


def _skin(rng: np.random.Generator, s: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    base = np.array(
        [rng.uniform(0.8, 0.95), rng.uniform(0.58, 0.74), rng.uniform(0.48, 0.64)], np.float32
    )
    low = 1.0 + 0.05 * _smooth_noise(rng, s, s, s / 6)
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
    ang = rng.uniform(0, np.pi)
    lines = np.abs(
        np.sin(
            (xx * np.cos(ang) + yy * np.sin(ang)) * rng.uniform(0.25, 0.5) * 128 / s
            + 3 * _smooth_noise(rng, s, s, s / 10)
        )
    )
    fine = 1.0 - 0.04 * (lines < 0.15) + 0.02 * _smooth_noise(rng, s, s, 1.0)
    skin = base[None, None, :] * (low * fine)[..., None]

    c = (s - 1) / 2.0
    r = rng.uniform(0.15, 0.32) * s
    cy, cx = c + rng.uniform(-0.1, 0.1) * s, c + rng.uniform(-0.1, 0.1) * s
    blob = _blob(s, s, cy, cx, r, rng, roughness=rng.uniform(0.2, 0.8))
    alpha = cv2.GaussianBlur(blob.astype(np.float32), (0, 0), rng.uniform(0.6, 2.5) * s / 128)

    brown = np.array([0.45, 0.28, 0.18], np.float32) * rng.uniform(0.65, 1.15)
    second = (
        np.array([0.2, 0.12, 0.1], np.float32)
        if rng.random() < 0.6
        else np.array([0.38, 0.42, 0.52], np.float32)
    ) * rng.uniform(0.8, 1.1)
    mix = np.clip(_smooth_noise(rng, s, s, s / 14) * 0.8 + rng.uniform(-0.6, 0.3), 0, 1)
    centre = np.exp(-(((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * (0.6 * r) ** 2)))
    lesion = brown[None, None, :] * (1 - mix[..., None]) + second[None, None, :] * mix[..., None]
    lesion = lesion * (1.0 - rng.uniform(0.0, 0.35) * centre)[..., None]
    net = np.abs(_smooth_noise(rng, s, s, max(1.0, 1.4 * s / 128))) < 0.25
    lesion = lesion * (1.0 - rng.uniform(0.05, 0.25) * net)[..., None]
    # lighter lesions are closer to skin, so the border is not a simple threshold
    lesion = lesion * (1 - (fade := rng.uniform(0.0, 0.35))) + skin * fade
    img = skin * (1 - alpha[..., None]) + lesion * alpha[..., None]
    img = img * rng.uniform(0.85, 1.1)
    mask = blob.copy()
    clean = np.clip(img * 255.0, 0, 255)

    hair_alpha = np.zeros((s, s), np.float32)
    n_hairs = 0 if rng.random() < 0.3 else int(rng.integers(1, 10))
    hair_col = np.array([0.12, 0.08, 0.06], np.float32) * rng.uniform(0.5, 1.5)
    for _ in range(n_hairs):
        p0 = rng.uniform(-0.1, 1.1, 2) * s
        p2 = rng.uniform(-0.1, 1.1, 2) * s
        p1 = (p0 + p2) / 2 + rng.normal(0, 0.15 * s, 2)
        t = np.linspace(0, 1, 40)[:, None]
        pts = (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2
        canvas = np.zeros((s * 4, s * 4), np.uint8)
        thick = max(1, int(round(rng.uniform(0.6, 1.8) * s / 128 * 4)))
        cv2.polylines(canvas, [np.round(pts * 4).astype(np.int32)], False, 255, thick, cv2.LINE_AA)
        hair_alpha = np.maximum(
            hair_alpha, cv2.resize(canvas, (s, s), interpolation=cv2.INTER_AREA) / 255.0
        )
    noisy = clean * (1 - hair_alpha[..., None]) + 255.0 * hair_col * hair_alpha[..., None]
    noisy = noisy + rng.normal(0.0, rng.uniform(2.0, 5.0), noisy.shape)

    if rng.random() < 0.3:  # circular dermoscope border
        rad = np.hypot(yy - c, xx - c) / (rng.uniform(0.5, 0.6) * s)
        inside = rad <= 1.0
        noisy, clean = noisy * inside[..., None], clean * inside[..., None]
        mask &= inside
    return _to_u8(noisy), mask.astype(np.uint8), _to_u8(clean)


_GENERATORS: dict[
    SyntheticKind, Callable[[np.random.Generator, int], tuple[np.ndarray, np.ndarray, np.ndarray]]
] = {
    SyntheticKind.ULTRASOUND: _ultrasound,
    SyntheticKind.VESSELS: _vessels,
    SyntheticKind.SKIN: _skin,
}


def _kind(kind: str | SyntheticKind) -> SyntheticKind:
    try:
        return SyntheticKind(str(kind))
    except ValueError:
        raise ConfigError(
            f"synthetic kind {kind!r} is not valid; use one of: {', '.join(SyntheticKind.values())}"
        ) from None


def synthesize(kind: str | SyntheticKind, n: int, size: int = 128, seed: int = 0) -> SyntheticSet:
    """Generate ``n`` synthetic samples of ``kind`` (``ultrasound``, ``vessels``, ``skin``).

    Sample ``i`` depends only on ``(kind, seed, i, size)``, so ``synthesize(k, 10)`` is the first
    ten samples of ``synthesize(k, 100)``.
    """
    k = _kind(kind)
    if int(n) < 1:
        raise ConfigError(f"data.synthetic_n = {n} must be at least 1")
    if int(size) < 16:
        raise ConfigError(f"data.img_size = {size} is too small for synthetic data; use 64 or more")
    gen = _GENERATORS[k]
    ch = CHANNELS[k]
    images = np.empty((n, size, size, ch), np.uint8)
    masks = np.empty((n, size, size), np.uint8)
    clean = np.empty((n, size, size, ch), np.uint8)
    for i in range(n):
        images[i], masks[i], clean[i] = gen(_rng(seed, k, i), int(size))
    names = [f"{k.value}_{i:04d}" for i in range(n)]
    return SyntheticSet(images, masks, clean, names)


def _imwrite(path: Path, arr: np.ndarray) -> None:
    path.write_bytes(encode_png(arr, rgb=arr.ndim == 3 and arr.shape[2] == 3))


def parse_synthetic_spec(
    text: str, flag: str, usage: str = "synthetic:KIND[:N]", default_n: int = 200
) -> tuple[SyntheticKind, int]:
    """``synthetic:KIND[:N]`` -> ``(kind, n)`` (KIND defaults to ultrasound, N to ``default_n``).

    Raises:
        ConfigError: unknown KIND or a non-integer N, naming ``flag`` and ``usage``.
    """
    parts = text.split(":")
    try:
        kind = SyntheticKind(parts[1] if len(parts) > 1 and parts[1] else "ultrasound")
        n = int(parts[2]) if len(parts) > 2 else default_n
    except ValueError:
        kinds = f" with KIND one of {', '.join(SyntheticKind.values())}" if "KIND" in usage else ""
        raise ConfigError(f"{flag} {text}: use {usage}{kinds}") from None
    return kind, n


def write_synthetic(
    kind: str | SyntheticKind,
    n: int,
    out_dir: str | os.PathLike[str],
    size: int = 256,
    seed: int = 0,
) -> Path:
    """Write a synthetic folder dataset: ``images/``, ``masks/`` (0/255), ``clean/``, ``manifest.csv``.

    The folder is written under a temporary name beside ``out_dir`` and renamed when complete.

    Raises:
        DataError: ``out_dir`` exists and is not empty (nothing is overwritten).
    """
    out = Path(out_dir).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(f"{out}: exists and is not empty; choose a new --out folder or delete it")
    data = synthesize(kind, n, size, seed)
    with atomic_dir(out) as tmp:  # an existing out is empty, checked above
        for sub in ("images", "masks", "clean"):
            (tmp / sub).mkdir()
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["image", "mask", "group", "split"])
        for i, name in enumerate(data.names):
            _imwrite(tmp / "images" / f"{name}.png", data.images[i])
            _imwrite(tmp / "masks" / f"{name}.png", data.masks[i] * np.uint8(255))
            _imwrite(tmp / "clean" / f"{name}.png", data.clean[i])
            writer.writerow([f"{name}.png", f"{name}.png", name, ""])
        (tmp / "manifest.csv").write_text(buf.getvalue(), encoding="utf-8")
    return out


__all__ = [
    "CHANNELS",
    "LOG_SPECKLE_BIAS_DB",
    "RAYLEIGH_SNR",
    "SyntheticSet",
    "speckle_envelope",
    "parse_synthetic_spec",
    "synthesize",
    "write_synthetic",
]
