"""In-memory arrays and the tf.data input pipeline.

:func:`load_splits` turns a :class:`~kseg.config.DataConfig` into decoded, resized uint8 arrays
split by group (synthetic data when ``cfg.path`` is ``None``, else a folder dataset).
:func:`make_dataset` streams them as ``(x, y)`` batches following the pixel contract of
``docs/ARCHITECTURE.md``: ``x`` float32 ``(B, S, S, C)`` raw pixels in ``[0, 255]`` (the model
normalizes in its first layer), ``y`` float32 ``(B, S, S, 1)`` masks in ``{0, 1}``.

Everything is decoded once and held in memory (``cfg.cache`` is therefore always honoured); only
augmentation runs per step, in parallel ``tf.numpy_function`` calls with a deterministic seed per
element, and batches are prefetched.

Example:
    >>> splits = load_splits(cfg.data, seed=cfg.train.seed, split_file=run / "split.csv")
    >>> aug = build_augment(cfg.data.augment, cfg.data.img_size)
    >>> train_ds = make_dataset(splits.train, 16, augment=aug, shuffle=True, seed=1)
    >>> val_ds = make_dataset(splits.val, 16)
"""

from __future__ import annotations

import copy
import os
import threading
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from kseg._keras import tf
from kseg.config import DataConfig, Task
from kseg.data.classes import merge_guard_message, merged_classes
from kseg.data.folder import Sample, _listing, scan_folder
from kseg.data.io import (
    fit_to_size,
    foreground_ids,
    mask_to_ids,
    read_image,
    read_stored_mask,
)
from kseg.data.split import (
    group_split,
    load_split,
    save_split,
    shard_indices,
    stratified_group_split,
)
from kseg.data.synthetic import synthesize
from kseg.errors import ConfigError, DataError

_SHOW = 5


@dataclass
class ArrayData:
    """Decoded samples at the model input size.

    Attributes:
        images: uint8 ``(N, S, S, C)``.
        masks: uint8 ``(N, S, S)`` in ``{0, 1}``.
        names: sample names (file stems or synthetic names).
        groups: group of each sample.
        originals: source image files (folder data), else ``None``.
        clean: uint8 ``(N, S, S, C)`` noise-free images (synthetic data, or a folder with a
            ``clean/`` subfolder), else ``None``; needed for ``task="denoise"``.
        extent: native arrays only (``load_splits(native=True)``): int ``(N, 2)`` height and
            width of each image in its canvas; images and masks are then ``(N, H, W, ...)``
            canvases as large as the largest image (and at least the input size), zero-padded
            below and to the right. ``None``: every array is the whole image.
    """

    images: np.ndarray
    masks: np.ndarray
    names: list[str]
    groups: list[str]
    originals: list[Path] | None = None
    clean: np.ndarray | None = None
    extent: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.names)

    def subset(self, index: Sequence[int]) -> ArrayData:
        idx = np.asarray(index, dtype=np.int64)
        return ArrayData(
            images=self.images[idx],
            masks=self.masks[idx],
            names=[self.names[i] for i in idx],
            groups=[self.groups[i] for i in idx],
            originals=None if self.originals is None else [self.originals[i] for i in idx],
            clean=None if self.clean is None else self.clean[idx],
            extent=None if self.extent is None else self.extent[idx],
        )


@dataclass
class Splits:
    """Train/validation/test arrays and the rows of ``split.csv`` (``name, group, split``).

    ``channels`` is the concrete channel count (``data.channels: auto`` resolved) and
    ``channels_reason`` says how it was chosen.
    """

    train: ArrayData
    val: ArrayData
    test: ArrayData | None
    rows: list[dict[str, str]]
    channels: int = 1
    channels_reason: str = ""


# ---------------------------------------------------------------------------------------------
# loading


def _convert_channels(images: np.ndarray, channels: int) -> np.ndarray:
    have = images.shape[-1]
    if have == channels:
        return images
    if channels == 3:
        return np.repeat(images, 3, axis=-1)
    gray = [cv2.cvtColor(im, cv2.COLOR_RGB2GRAY) for im in images]
    return np.stack(gray)[..., None]


def _load_synthetic(cfg: DataConfig, seed: int) -> tuple[ArrayData, str]:
    s = synthesize(cfg.synthetic_kind, cfg.synthetic_n, cfg.img_size, seed)
    channels = cfg.channels
    reason = f"data.channels = {channels}"
    if channels == "auto":
        channels = s.images.shape[-1]
        reason = f"data.channels: auto -> {channels} (synthetic {cfg.synthetic_kind} is " + (
            "RGB)" if channels == 3 else "grayscale)"
        )
    elif s.images.shape[-1] == 3 and channels == 1:
        warnings.warn(
            f"synthetic {cfg.synthetic_kind} images are RGB; converting to grayscale because "
            f"data.channels = 1 (set data.channels: 3 or auto to keep colour)",
            stacklevel=3,
        )
    data = ArrayData(
        images=_convert_channels(s.images, channels),
        masks=s.masks,
        names=list(s.names),
        groups=list(s.names),
        originals=None,
        clean=_convert_channels(s.clean, channels),
    )
    return data, reason


def _progress(iterable: Any, total: int, desc: str, enabled: bool) -> Any:
    if not enabled:
        return iterable
    try:
        from tqdm import tqdm
    except ImportError:  # progress is cosmetic
        return iterable
    return tqdm(iterable, total=total, desc=desc, unit="img", leave=False, dynamic_ncols=True)


def _decode(
    sample: Sample, cfg: DataConfig, clean_dir: Path | None, num_classes: int, native: bool = False
) -> tuple[Any, ...]:
    """``(image, mask, clean, mismatch, mask_values, fg)`` at the model input size (``native``:
    at the image's own size).

    With ``channels: auto`` images are read as RGB (grey files replicated); the caller reduces
    them to one channel when no image has colour. ``mask_values`` lists the stored values of a
    (lossless) mask that has more than two; ``fg`` is :func:`~kseg.data.io.foreground_ids` of
    the mask (``None`` without a mask).
    """
    channels = 3 if cfg.channels == "auto" else int(cfg.channels)
    img = read_image(sample.image, channels, max_pixels=cfg.max_pixels)
    values = fg = None
    if sample.mask is not None:
        stored = read_stored_mask(sample.mask, max_pixels=cfg.max_pixels)
        if stored.kind != "lossy":
            uniq = np.unique(stored.values)
            values = uniq.tolist() if len(uniq) > 2 else None
            fg = foreground_ids(stored)
        mask = mask_to_ids(stored, sample.mask, num_classes, cfg.classes)
    else:
        mask = np.zeros(img.shape[:2], np.uint8)
    if mask.shape != img.shape[:2]:
        mismatch = (
            f"{sample.image.name} {img.shape[0]}x{img.shape[1]} vs mask "
            f"{sample.mask.name} {mask.shape[0]}x{mask.shape[1]}"  # type: ignore[union-attr]
        )
        return None, None, None, mismatch, values, fg
    if native:
        c = None
        if clean_dir is not None:
            c = read_image(clean_dir / sample.image.name, channels, max_pixels=cfg.max_pixels)
        return img, mask, c, None, values, fg
    x, _ = fit_to_size(img, cfg.img_size, str(cfg.resize))
    y, _ = fit_to_size(mask, cfg.img_size, str(cfg.resize), is_mask=True)
    c = None
    if clean_dir is not None:
        c_img = read_image(clean_dir / sample.image.name, channels, max_pixels=cfg.max_pixels)
        c, _ = fit_to_size(c_img, cfg.img_size, str(cfg.resize))
    return x, y, c, None, values, fg


def _has_colour(images: np.ndarray) -> list[int]:
    """Indices of RGB images whose channels differ somewhere (real colour)."""
    if images.shape[-1] != 3:
        return []
    flat = images.reshape(len(images), -1, 3)
    grey = (flat[..., 0] == flat[..., 1]).all(axis=1) & (flat[..., 1] == flat[..., 2]).all(axis=1)
    return [int(i) for i in np.flatnonzero(~grey)]


def _canvas(arrays: list[np.ndarray], least: int) -> tuple[np.ndarray, np.ndarray]:
    """Zero-padded stack of differently sized arrays, at least ``least`` on each side, and the
    ``(N, 2)`` extents (height, width) of each."""
    extent = np.array([a.shape[:2] for a in arrays], np.int64)
    h, w = max(int(extent[:, 0].max()), least), max(int(extent[:, 1].max()), least)
    out = np.zeros((len(arrays), h, w, *arrays[0].shape[2:]), arrays[0].dtype)
    for i, a in enumerate(arrays):
        out[i, : a.shape[0], : a.shape[1]] = a
    return out, extent


def _scan(cfg: DataConfig) -> list[Sample]:
    return scan_folder(
        cfg.path, cfg.group_regex, group_column=cfg.group_column, stratify=cfg.stratify
    )


def _load_folder(
    cfg: DataConfig,
    progress: bool,
    num_classes: int = 1,
    merge_guard: bool = False,
    native: bool = False,
    samples: list[Sample] | None = None,
) -> tuple[ArrayData, list[Sample], str]:
    """Decode ``samples`` (default: every sample of the folder)."""
    if samples is None:
        samples = _scan(cfg)
    clean_dir = Path(cfg.path) / "clean"  # type: ignore[arg-type]
    if not (clean_dir.is_dir() and all((clean_dir / s.image.name).is_file() for s in samples)):
        clean_dir = None  # type: ignore[assignment]
    workers = min(8, (os.cpu_count() or 1) + 2)
    with ThreadPoolExecutor(workers) as pool:
        results = list(
            _progress(
                pool.map(lambda s: _decode(s, cfg, clean_dir, num_classes, native), samples),
                len(samples),
                f"decoding {Path(cfg.path).name}",  # type: ignore[arg-type]
                progress,
            )
        )
    bad = [r[3] for r in results if r[3] is not None]
    if bad:
        raise DataError(
            f"mask size differs from its image for {len(bad)} file(s): {_listing(bad)}; "
            f"masks must have the image's height and width"
        )
    if merge_guard and num_classes <= 1 and not cfg.merge_classes and not cfg.classes:
        found = merged_classes(
            [(s.mask.name, r[5]) for s, r in zip(samples, results, strict=True) if s.mask]
        )
        if found is not None:
            raise DataError(merge_guard_message(str(cfg.path), found))
    multi = [(s.mask.name, r[4]) for s, r in zip(samples, results, strict=True) if r[4]]  # type: ignore[union-attr]
    if multi and num_classes <= 1:  # class ids in a multi-class run are what is expected: no word
        shown = "; ".join(f"{n}: {', '.join(map(str, v[:6]))}" for n, v in multi[:_SHOW])
        more = f" (+{len(multi) - _SHOW} more)" if len(multi) > _SHOW else ""
        use = (
            "merged into one foreground (data.merge_classes: true)"
            if cfg.merge_classes
            else "binarised (non-zero = foreground); set model.num_classes to use them as class ids"
        )
        warnings.warn(
            f"{len(multi)} mask(s) hold more than two values ({shown}{more}); {use}", stacklevel=3
        )
    extent = None
    if native:
        images, extent = _canvas([r[0] for r in results], int(cfg.img_size))
        masks = _canvas([r[1] for r in results], int(cfg.img_size))[0]
        clean = _canvas([r[2] for r in results], int(cfg.img_size))[0] if clean_dir else None
    else:
        images = np.stack([r[0] for r in results])
        masks = np.stack([r[1] for r in results])
        clean = np.stack([r[2] for r in results]) if clean_dir is not None else None
    if cfg.channels == "auto":
        colour = _has_colour(images)
        if colour:
            channels = 3
            reason = (
                f"data.channels: auto -> 3 (RGB: {len(colour)} of {len(images)} images have colour, "
                f"e.g. {samples[colour[0]].image.name})"
            )
        else:
            channels = 1
            reason = f"data.channels: auto -> 1 (grayscale: no colour in {len(images)} images)"
            images = np.ascontiguousarray(images[..., :1])
            clean = None if clean is None else np.ascontiguousarray(clean[..., :1])
    else:
        channels = int(cfg.channels)
        reason = f"data.channels = {channels}"
    data = ArrayData(
        images=images,
        masks=masks,
        names=[s.name for s in samples],
        groups=[s.group for s in samples],
        originals=[s.image for s in samples],
        clean=clean,
        extent=extent,
    )
    return data, samples, reason


def _assign(
    names: list[str],
    groups: list[str],
    fixed: list[str | None],
    cfg: DataConfig,
    seed: int,
    strata: list[str] | None = None,
) -> list[str]:
    """Manifest splits win; the remaining groups are split by :func:`group_split`."""
    by_group: dict[str, str] = {}
    for name, g, s in zip(names, groups, fixed, strict=True):
        if s is None:
            continue
        if by_group.setdefault(g, s) != s:
            raise DataError(
                f"manifest.csv puts group {g!r} in both {by_group[g]!r} and {s!r} (e.g. {name!r}); "
                f"give all images of a group the same split"
            )
    free = [i for i, g in enumerate(groups) if g not in by_group]
    if strata is not None:
        auto = stratified_group_split(
            [groups[i] for i in free],
            [strata[i] for i in free],
            cfg.val_fraction,
            cfg.test_fraction,
            seed,
        )
    else:
        auto = group_split([groups[i] for i in free], cfg.val_fraction, cfg.test_fraction, seed)
    out = [by_group.get(g, "") for g in groups]
    for i, s in zip(free, auto, strict=True):
        out[i] = s
    return out


def load_splits(
    cfg: DataConfig,
    seed: int,
    split_file: str | os.PathLike[str] | None = None,
    progress: bool = True,
    *,
    num_classes: int = 1,
    preprocess: bool = True,
    merge_guard: bool = False,
    shard: tuple[int, int] | None = None,
    native: bool = False,
) -> Splits:
    """Load a data set into memory and split it by group.

    Args:
        cfg: data section of the config (synthetic when ``cfg.path`` is ``None``).
        seed: seed of the synthetic data, and of the split unless ``cfg.split_seed`` is set.
        split_file: a run's ``split.csv``. If it exists the split is reused (its names must all
            still exist; new files not in it are left out with a warning); if it is given but does
            not exist, the new split is written there.
        progress: show a progress bar while decoding a folder.
        num_classes: ``model.num_classes``; above 1, mask values are class ids.
        preprocess: apply ``cfg.preprocess`` (the filter chain) to the images. Pass ``False``
            when the arrays go to a predictor, which applies the chain itself.
        merge_guard: refuse a folder whose masks hold several foreground classes when
            ``num_classes`` is 1 (binary), unless ``cfg.merge_classes`` or ``cfg.classes`` says
            what to do (:func:`kseg.data.classes.merged_classes`); ``kseg train`` sets it.
        shard: ``(index, count)`` for multi-worker training: the split (and ``rows``) are those
            of the whole set, but only this worker's share of the training files (every
            ``count``-th, from ``index``) and the validation files are decoded; ``test`` is
            ``None``. With ``channels: auto`` the decision covers only the decoded files (the
            workers agree on it afterwards, :func:`kseg.training.loop.train`).
        native: keep folder images at their own resolution (zero-padded canvases with
            :attr:`ArrayData.extent`) for ``data.sampling: patch``; synthetic data is generated
            at the input size either way. The filter chain then runs on the canvases.

    Raises:
        DataError: bad folder (see :func:`~kseg.data.folder.scan_folder`), unreadable image,
            mask size mismatch, stale split file, no validation data, several foreground
            classes in masks for a binary model (``merge_guard``).
    """
    if cfg.channels not in (1, 3, "auto"):
        raise ConfigError(f"data.channels = {cfg.channels} is not valid; use 1, 3 or auto")
    strata: list[str] | None = None
    data: ArrayData | None = None
    samples: list[Sample] = []
    if cfg.path is None:
        if cfg.stratify:
            raise ConfigError(
                "data.stratify needs a folder with manifest.csv; the synthetic set has no columns"
            )
        data, reason = _load_synthetic(cfg, seed)
        names, groups = data.names, data.groups
        fixed: list[str | None] = [None] * len(data)
    else:
        if shard is None:  # decode everything first (the errors of bad files come first)
            data, samples, reason = _load_folder(
                cfg, progress, num_classes, merge_guard, native=native
            )
        else:  # split on the file list; decode only this worker's files below
            samples = _scan(cfg)
        names, groups = [s.name for s in samples], [s.group for s in samples]
        fixed = [s.split for s in samples]
        if cfg.stratify:
            strata = [s.meta.get(cfg.stratify, "") for s in samples]
    if preprocess and cfg.preprocess and shard is None:
        from kseg.filters import Chain

        data.images = Chain.parse(cfg.preprocess)(data.images)  # type: ignore[union-attr]

    split_path = Path(split_file) if split_file is not None else None
    if split_path is not None and split_path.is_file():
        saved = load_split(split_path)
        present = set(names)
        gone = [n for n in saved if n not in present]
        if gone:
            raise DataError(
                f"{split_path}: names {len(gone)} sample(s) no longer in the data "
                f"({_listing(gone)}); restore them or start a new run"
            )
        new = [n for n in names if n not in saved]
        if new:
            warnings.warn(
                f"{split_path}: {len(new)} sample(s) not in the saved split are left out "
                f"(e.g. {', '.join(new[:_SHOW])})",
                stacklevel=2,
            )
        assigned = [saved.get(n, "") for n in names]
    else:
        split_seed = seed if cfg.split_seed is None else cfg.split_seed
        assigned = _assign(names, groups, fixed, cfg, split_seed, strata)

    parts = {k: [i for i, s in enumerate(assigned) if s == k] for k in ("train", "val", "test")}
    where = cfg.path or f"synthetic {cfg.synthetic_kind}"
    if not parts["train"]:
        raise DataError(
            f"{where}: no training images after the split; lower data.val_fraction/test_fraction"
        )
    if not parts["val"]:
        n_groups = len(set(groups))
        raise DataError(
            f"{where}: no validation images ({len(names)} images in {n_groups} group(s)); "
            f"use at least 2 groups and data.val_fraction > 0"
        )
    rows = [
        {"name": n, "group": g, "split": s}
        for n, g, s in zip(names, groups, assigned, strict=True)
        if s
    ]
    if split_path is not None and not split_path.is_file():
        save_split(split_path, rows)
    if shard is not None:
        return _shard_splits(
            cfg,
            data,
            samples,
            parts,
            rows,
            shard,
            progress,
            num_classes,
            preprocess,
            reason if data is not None else "",
            merge_guard,
        )
    assert data is not None
    return Splits(
        train=data.subset(parts["train"]),
        val=data.subset(parts["val"]),
        test=data.subset(parts["test"]) if parts["test"] else None,
        rows=rows,
        channels=int(data.images.shape[-1]),
        channels_reason=reason,
    )


def _shard_splits(
    cfg: DataConfig,
    data: ArrayData | None,
    samples: list[Sample],
    parts: dict[str, list[int]],
    rows: list[dict[str, str]],
    shard: tuple[int, int],
    progress: bool,
    num_classes: int,
    preprocess: bool,
    reason: str,
    merge_guard: bool = False,
) -> Splits:
    """One worker's splits: its share of the training files and all validation files (the
    binary-merge guard looks at this worker's files)."""
    index, count = shard
    train = [
        parts["train"][i] for i in shard_indices(len(parts["train"]), num_shards=count, index=index)
    ]
    if not train:
        raise DataError(
            f"{cfg.path or 'the synthetic set'}: {len(parts['train'])} training image(s) for "
            f"{count} workers leave worker {index} none; add images or use fewer workers"
        )
    keep = train + parts["val"]
    if data is None:  # a folder: decode only these files
        data, _, reason = _load_folder(
            cfg, progress, num_classes, merge_guard, samples=[samples[i] for i in keep]
        )
    else:
        data = data.subset(keep)
    if preprocess and cfg.preprocess:
        from kseg.filters import Chain

        data.images = Chain.parse(cfg.preprocess)(data.images)
    n = len(train)
    return Splits(
        train=data.subset(range(n)),
        val=data.subset(range(n, len(keep))),
        test=None,
        rows=rows,
        channels=int(data.images.shape[-1]),
        channels_reason=reason,
    )


def with_channels(data: ArrayData, channels: int) -> ArrayData:
    """``data`` with ``channels`` image channels (grey replicated to RGB, or RGB to grey)."""
    if data.images.shape[-1] == channels:
        return data
    clean = None if data.clean is None else _convert_channels(data.clean, channels)
    return ArrayData(
        images=_convert_channels(data.images, channels),
        masks=data.masks,
        names=data.names,
        groups=data.groups,
        originals=data.originals,
        clean=clean,
    )


# ---------------------------------------------------------------------------------------------
# tf.data


class _Augmenter:
    """Thread-safe, seeded application of an albumentations pipeline to element ``index``."""

    def __init__(self, aug: Any, images: np.ndarray, target: np.ndarray, denoise: bool) -> None:
        self.aug, self.images, self.target, self.denoise = aug, images, target, denoise
        self.local = threading.local()

    def __call__(self, index: np.int64, seed: np.int64) -> tuple[np.ndarray, np.ndarray]:
        aug = getattr(self.local, "aug", None)
        if aug is None:  # each worker thread owns a copy: transforms hold their own RNG state
            aug = self.local.aug = copy.deepcopy(self.aug)
        aug.set_random_seed(int(seed) & 0x7FFFFFFF)
        img = self.images[int(index)]
        if self.denoise:
            out = aug(image=img, clean=self.target[int(index)])
            return out["image"], out["clean"]
        out = aug(image=img, mask=self.target[int(index)])
        return out["image"], out["mask"]


class PatchSampler:
    """Seeded ``size`` x ``size`` windows of native-resolution images (``data.sampling: patch``).

    A share ``foreground`` of the windows is centred on a foreground pixel: a class is drawn
    uniformly among those the image holds (so a rare class is centred as often as a common one),
    then one of its pixels; the window is shifted inside the image where the centre is near an
    edge. The other windows are drawn uniformly over the image.

    Args:
        images: uint8 ``(N, H, W, C)`` canvases; masks: uint8 ``(N, H, W)`` class ids.
        extent: ``(N, 2)`` height and width of each image in its canvas (each >= ``size``
            or the canvas side).
        size: window side (the model input size).
        foreground: share of windows centred on foreground, in [0, 1].

    Example:
        >>> x, y = PatchSampler(d.images, d.masks, d.extent, 256, 0.5)(index=3, seed=7)
    """

    def __init__(
        self,
        images: np.ndarray,
        masks: np.ndarray,
        extent: np.ndarray | None,
        size: int,
        foreground: float = 0.5,
    ) -> None:
        if not 0.0 <= foreground <= 1.0:
            raise ConfigError(f"data.patch_foreground = {foreground}; use a share in [0, 1]")
        self.images, self.masks, self.size, self.foreground = images, masks, int(size), foreground
        n, h, w = masks.shape[:3]
        self.extent = np.tile([h, w], (n, 1)) if extent is None else np.asarray(extent)
        self._fg: dict[int, dict[int, np.ndarray]] = {}

    def _classes(self, i: int) -> dict[int, np.ndarray]:
        """Flat indices (within the image's extent) of each foreground class's pixels, cached."""
        found = self._fg.get(i)
        if found is None:
            h, w = self.extent[i]
            m = self.masks[i, :h, :w].ravel()
            found = {int(k): np.flatnonzero(m == k) for k in np.unique(m) if k != 0}
            self._fg[i] = found  # one dict per image; a race only computes it twice
        return found

    def origin(self, i: int, rng: np.random.Generator) -> tuple[int, int]:
        """Top-left corner of a window of image ``i``."""
        h, w = (int(v) for v in self.extent[i])
        s = self.size
        classes = self._classes(i) if rng.random() < self.foreground else {}
        if classes:
            pixels = classes[list(classes)[rng.integers(len(classes))]]
            cy, cx = divmod(int(pixels[rng.integers(len(pixels))]), w)
            y0, x0 = cy - s // 2, cx - s // 2
        else:
            y0, x0 = (
                int(rng.integers(0, max(h - s, 0) + 1)),
                int(rng.integers(0, max(w - s, 0) + 1)),
            )
        # inside the image where it is large enough, else at the canvas origin (zero padding)
        return int(np.clip(y0, 0, max(h - s, 0))), int(np.clip(x0, 0, max(w - s, 0)))

    def __call__(self, index: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(int(seed) & 0x7FFFFFFF)
        y0, x0 = self.origin(int(index), rng)
        s = self.size
        return self.images[int(index), y0 : y0 + s, x0 : x0 + s], self.masks[
            int(index), y0 : y0 + s, x0 : x0 + s
        ]


def patches_per_image(data: ArrayData, size: int) -> int:
    """Windows per image and epoch so that an epoch covers about the training pixels once."""
    if data.extent is None:
        return 1
    area = float(np.mean(data.extent[:, 0] * data.extent[:, 1]))
    return max(1, round(area / (size * size)))


def tile_starts(length: int, size: int) -> list[int]:
    """Starts of windows of ``size`` that cover ``0..length`` (the last one flush with the end)."""
    if length <= size:
        return [0]
    starts = list(range(0, length - size, size))
    return [*starts, length - size]


def grid_tiles(data: ArrayData, size: int) -> ArrayData:
    """The ``size`` windows that cover every image of native ``data`` (validation in patch mode).

    The windows of an image touch (the last row and column overlap their neighbour so they end
    flush with the image), so scores pooled over the tiles count every pixel of the image at
    native resolution once or, near the right and bottom edges, twice. Names are
    ``NAME@y,x``; arrays that are not native are returned unchanged.
    """
    if data.extent is None:
        return data
    idx, boxes = [], []
    for i, (h, w) in enumerate(data.extent):
        for y in tile_starts(int(h), size):
            for x in tile_starts(int(w), size):
                idx.append(i)
                boxes.append((y, x))

    def cut(a: np.ndarray | None) -> np.ndarray | None:
        if a is None:
            return None
        return np.stack(
            [a[i, y : y + size, x : x + size] for i, (y, x) in zip(idx, boxes, strict=True)]
        )

    return ArrayData(
        images=cut(data.images),  # type: ignore[arg-type]
        masks=cut(data.masks),  # type: ignore[arg-type]
        names=[f"{data.names[i]}@{y},{x}" for i, (y, x) in zip(idx, boxes, strict=True)],
        groups=[data.groups[i] for i in idx],
        originals=None if data.originals is None else [data.originals[i] for i in idx],
        clean=cut(data.clean),
    )


def _seeded_elements(idx, fn, seed: int | None, x_shape: tuple, y_shape: tuple):
    """``idx`` mapped one element at a time through ``fn(index, element_seed) -> (x, y)`` uint8
    (a patch window or an augmented image), each element with its own seed from one seeded
    stream, so a run is reproducible whatever the parallelism."""

    def load(index, elem_seed):
        x, y = tf.numpy_function(fn, [index, elem_seed], [tf.uint8, tf.uint8], stateful=False)
        x.set_shape(x_shape)
        y.set_shape(y_shape)
        return x, y

    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
    return tf.data.Dataset.zip((idx, seeds)).map(
        load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
    )


def make_dataset(
    data: ArrayData,
    batch_size: int,
    *,
    augment: Any = None,
    shuffle: bool = False,
    seed: int = 0,
    repeat: bool = False,
    task: str = "segment",
    drop_remainder: bool = False,
    patch: int | None = None,
    patch_foreground: float = 0.5,
) -> tf.data.Dataset:
    """A ``tf.data.Dataset`` of ``(x, y)`` batches from in-memory arrays.

    Args:
        data: arrays from :func:`load_splits`.
        batch_size: images per batch.
        augment: an albumentations pipeline from :func:`~kseg.data.augment.build_augment`
            (``None`` for validation: every pass then yields identical batches). For
            ``task="denoise"`` pass one built with ``geometric_only=True``.
        shuffle: reshuffle every epoch (seeded).
        seed: seed of the shuffle and of the per-element augmentation seeds; each element gets a
            seed from ``tf.data.Dataset.random(seed, rerandomize_each_iteration=True)``, so runs
            are reproducible and every epoch sees new augmentations.
        repeat: repeat forever (use with ``steps_per_epoch``).
        task: ``"segment"``: ``y`` float32 ``(B, S, S, 1)`` mask in ``{0, 1}``; ``"denoise"``:
            ``y`` float32 ``(B, S, S, C)`` clean image scaled to ``[0, 1]`` (clean / 255).
        drop_remainder: drop a last, smaller batch.
        patch: train on ``patch`` x ``patch`` windows of native ``data`` (``load_splits(native=
            True)``), drawn by :class:`PatchSampler` with ``patch_foreground``, one per element;
            ``augment`` then works on the window. Segmentation only.

    Returns:
        ``x`` float32 ``(B, S, S, C)`` raw pixels in ``[0, 255]`` and ``y`` as above.
    """
    task = str(task)
    if task not in Task.values():
        raise ConfigError(f"task {task!r} is not valid; use one of: {', '.join(Task.values())}")
    denoise = task == Task.DENOISE.value
    if denoise and data.clean is None:
        raise DataError(
            "task 'denoise' needs clean images: use synthetic data or a folder with clean/"
        )
    if len(data) == 0:
        raise DataError("no images to make a dataset from")
    images = np.ascontiguousarray(data.images)
    target = np.ascontiguousarray(data.clean if denoise else data.masks)
    n, s, _, c = images.shape
    sampler = None
    if patch is not None:
        if denoise:
            raise ConfigError("data.sampling: patch is for segmentation; use resize for denoise")
        sampler = PatchSampler(images, target, data.extent, patch, patch_foreground)
        s = int(patch)
    y_shape = (s, s, c) if denoise else (s, s)
    y_scale = 1.0 / 255.0 if denoise else 1.0

    idx = tf.data.Dataset.range(n)
    if shuffle:
        idx = idx.shuffle(n, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        idx = idx.repeat()

    if sampler is not None:
        local = threading.local()

        def window(index: np.int64, elem_seed: np.int64) -> tuple[np.ndarray, np.ndarray]:
            x, y = sampler(index, elem_seed)
            if augment is None:
                return np.ascontiguousarray(x), np.ascontiguousarray(y)
            aug = getattr(local, "aug", None)
            if aug is None:  # each worker thread owns a copy (transforms hold RNG state)
                aug = local.aug = copy.deepcopy(augment)
            aug.set_random_seed(int(elem_seed) & 0x7FFFFFFF)
            out = aug(image=np.ascontiguousarray(x), mask=np.ascontiguousarray(y))
            return out["image"], out["mask"]

        ds = _seeded_elements(idx, window, seed, (s, s, c), y_shape)
        ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    elif augment is None:

        def gather(index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            return images[index], target[index]

        def load_batch(index: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            x, y = tf.numpy_function(gather, [index], [tf.uint8, tf.uint8], stateful=False)
            x.set_shape((None, s, s, c))
            y.set_shape((None,) + y_shape)
            return x, y

        ds = idx.batch(batch_size, drop_remainder=drop_remainder).map(load_batch)
    else:
        fn = _Augmenter(augment, images, target, denoise)
        ds = _seeded_elements(idx, fn, seed, (s, s, c), y_shape)
        ds = ds.batch(batch_size, drop_remainder=drop_remainder)

    def to_float(x: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        y = tf.cast(y, tf.float32) * y_scale
        if not denoise:
            y = y[..., None]
        return tf.cast(x, tf.float32), y

    return ds.map(to_float, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def compute_mean_std(data: ArrayData) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and standard deviation of ``pixel / 255`` (for ``mean/std: auto``)."""
    c = data.images.shape[-1]
    flat = data.images.reshape(-1, c)
    total = np.zeros(c, np.float64)
    sq = np.zeros(c, np.float64)
    for start in range(0, len(flat), 1 << 20):
        chunk = flat[start : start + (1 << 20)].astype(np.float64) / 255.0
        total += chunk.sum(axis=0)
        sq += (chunk**2).sum(axis=0)
    mean = total / len(flat)
    std = np.sqrt(np.maximum(sq / len(flat) - mean**2, 1e-12))
    return tuple(float(m) for m in mean), tuple(float(v) for v in std)


__all__ = [
    "ArrayData",
    "PatchSampler",
    "Splits",
    "compute_mean_std",
    "grid_tiles",
    "load_splits",
    "make_dataset",
    "patches_per_image",
    "tile_starts",
    "with_channels",
]
