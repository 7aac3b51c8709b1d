"""Training augmentation with albumentations, applied to image and mask together.

Geometric transforms (flips, rotation within ``rotate_limit``, random resized crop) move the mask
with the image (nearest-neighbour for the mask, zero fill outside); photometric transforms
(brightness/contrast, gamma, CLAHE, Gaussian blur, additive Gaussian noise, multiplicative speckle
noise) touch the image only. Input and output are uint8 of the model input size.

An optional image target ``clean`` (the noise-free image of the denoising task) receives the
geometric transforms only: :func:`build_augment` with ``geometric_only=True`` is what the
pipeline uses for ``task="denoise"``, so input and target stay aligned and the target stays clean.

Reference:
    A. Buslaev et al., "Albumentations: fast and flexible image augmentations", Information
    11(2), 2020.

Example:
    >>> aug = build_augment(AugmentConfig(), img_size=128)
    >>> out = aug(image=img, mask=mask)   # img uint8 (128, 128, C), mask uint8 (128, 128)
    >>> out["image"], out["mask"]
"""

from __future__ import annotations

import dataclasses
import warnings

import cv2

from kseg.config import AugmentConfig
from kseg.errors import ConfigError

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import albumentations as A


def build_augment(
    cfg: AugmentConfig, img_size: int, *, geometric_only: bool = False
) -> A.Compose | None:
    """Albumentations pipeline from an :class:`~kseg.config.AugmentConfig`.

    Args:
        cfg: probabilities (``*_p``; 0 turns a transform off) and limits.
        img_size: output side; the random resized crop returns to it.
        geometric_only: leave out photometric transforms (denoising targets).

    Returns:
        ``None`` when augmentation is disabled or every probability is 0.
    """
    if not cfg.enabled:
        return None
    geometric = [
        (cfg.hflip_p, lambda p: A.HorizontalFlip(p=p)),
        (cfg.vflip_p, lambda p: A.VerticalFlip(p=p)),
        (
            cfg.rotate_p,
            lambda p: A.Rotate(
                limit=(-cfg.rotate_limit, cfg.rotate_limit),
                interpolation=cv2.INTER_LINEAR,
                mask_interpolation=cv2.INTER_NEAREST,
                border_mode=cv2.BORDER_CONSTANT,
                fill=0,
                fill_mask=0,
                p=p,
            ),
        ),
        (
            cfg.crop_p,
            lambda p: A.RandomResizedCrop(
                size=(img_size, img_size),
                scale=tuple(cfg.crop_scale),
                ratio=(0.8, 1.25),
                interpolation=cv2.INTER_LINEAR,
                mask_interpolation=cv2.INTER_NEAREST,
                p=p,
            ),
        ),
    ]
    photometric = [
        (cfg.brightness_contrast_p, lambda p: A.RandomBrightnessContrast(0.2, 0.2, p=p)),
        (cfg.gamma_p, lambda p: A.RandomGamma(gamma_limit=(80, 120), p=p)),
        (cfg.clahe_p, lambda p: A.CLAHE(clip_limit=(1.0, 3.0), tile_grid_size=(8, 8), p=p)),
        (cfg.blur_p, lambda p: A.GaussianBlur(blur_limit=(3, 5), sigma_limit=(0.3, 1.2), p=p)),
        (cfg.gauss_noise_p, lambda p: A.GaussNoise(std_range=(0.01, 0.05), p=p)),
        # speckle: elementwise multiplicative noise, x * U(0.8, 1.2), the same for all channels
        (
            cfg.speckle_p,
            lambda p: A.MultiplicativeNoise(multiplier=(0.8, 1.2), elementwise=True, p=p),
        ),
    ]
    chosen = geometric if geometric_only else geometric + photometric
    transforms = []
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if f.name.endswith("_p") and not 0.0 <= value <= 1.0:
            raise ConfigError(f"data.augment.{f.name} = {value} must be a probability in [0, 1]")
    if not 0.0 < cfg.crop_scale[0] <= cfg.crop_scale[1] <= 1.0:
        raise ConfigError(
            f"data.augment.crop_scale = {list(cfg.crop_scale)} must satisfy 0 < min <= max <= 1"
        )
    for p, make in chosen:
        if p > 0:
            transforms.append(make(float(p)))
    if not transforms:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return A.Compose(
            transforms, additional_targets={"clean": "image"} if geometric_only else None
        )


__all__ = ["build_augment"]
