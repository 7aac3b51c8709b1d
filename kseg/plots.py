"""PNG figures shared by training, evaluation and parity reports (matplotlib, Agg backend).

- :func:`plot_history`: training curves from ``history.csv`` (loss, Dice, learning rate).
- :func:`plot_prediction_grid`: rows of ``image | truth | prediction``.
- :func:`plot_comparison`: rows of ``image | A | B | difference`` (e.g. float vs int8 masks).

Figures have a fixed size in pixels (no tight bounding box) so reports lay out predictably:
``CELL_PX`` per grid cell, ``CURVE_PX`` per curve panel. Files are written atomically.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from kseg.atomic import atomic_path  # noqa: E402
from kseg.scores import binarize  # noqa: E402

DPI = 100
CELL_PX = 220  #: width and height of one image cell in a grid
CURVE_PX = (420, 320)  #: width, height of one curve panel

_TRUTH_RGB = np.array([0.1, 0.9, 0.2])
_PRED_RGB = np.array([1.0, 0.2, 0.2])
_B_ONLY_RGB = np.array([0.2, 0.4, 1.0])

PathLike = str | os.PathLike[str]


def _save(fig: plt.Figure, out_png: PathLike) -> Path:
    try:
        with atomic_path(out_png) as tmp:
            fig.savefig(tmp, format="png", dpi=DPI)
    finally:
        plt.close(fig)
    return Path(out_png)


# --------------------------------------------------------------------------- training curves


def read_history(path: PathLike) -> dict[str, list[float]]:
    """``history.csv`` (one row per epoch, header of metric names) -> dict of float lists."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    out: dict[str, list[float]] = {}
    for key in rows[0].keys() if rows else []:
        out[key] = [_to_float(r.get(key)) for r in rows]
    return out


def _to_float(value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan


def plot_history(history: PathLike | Mapping[str, Sequence[float]], out_png: PathLike) -> Path:
    """Training curves: ``loss``/``val_loss``, ``dice``/``val_dice``, for several classes a panel
    of Dice per class (``val_dice_NAME`` solid, ``dice_NAME`` dashed, one colour per class) and, if
    logged, the learning rate (``lr`` or ``learning_rate``, log scale). Missing series are skipped.

    Args:
        history: path to ``history.csv`` or a ``{name: [value per epoch]}`` dict (``History.history``).
        out_png: output PNG; ``CURVE_PX`` per panel, panels side by side.
    """
    hist = read_history(history) if isinstance(history, str | os.PathLike) else dict(history)
    n = max((len(v) for v in hist.values()), default=0)
    epochs = hist.get("epoch") or list(range(n))
    epochs = [e + 1 for e in epochs] if epochs and min(epochs) == 0 else list(epochs)
    panels = [("loss", ["loss", "val_loss"], False), ("Dice", ["dice", "val_dice"], False)]
    per_class = [k for k in hist if k.startswith("val_dice_") and k != "val_dice_mean"]
    if per_class:
        panels.append(("Dice per class", per_class, False))
    lr_key = next((k for k in ("lr", "learning_rate") if k in hist), None)
    if lr_key:
        panels.append(("learning rate", [lr_key], True))
    w, h = CURVE_PX
    fig, axes = plt.subplots(1, len(panels), figsize=(w * len(panels) / DPI, h / DPI), dpi=DPI)
    for ax, (title, keys, logy) in zip(np.atleast_1d(axes), panels, strict=True):
        for key in keys:
            if key in hist and len(hist[key]):
                line = ax.plot(epochs[: len(hist[key])], hist[key], marker="o", ms=3, label=key)
                train = key.removeprefix("val_")
                if title == "Dice per class" and train in hist:  # the training side, dashed
                    ax.plot(
                        epochs[: len(hist[train])],
                        hist[train],
                        ls="--",
                        lw=1,
                        color=line[0].get_color(),
                        label=train,
                    )
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if logy and any(v > 0 for v in hist.get(keys[0], [])):
            ax.set_yscale("log")
        if ax.has_data():
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    return _save(fig, out_png)


# --------------------------------------------------------------------------- image grids


def _gray(image: np.ndarray) -> np.ndarray:
    """Image (H, W), (H, W, 1) or (H, W, 3), uint8 or float in [0, 255] -> float RGB in [0, 1]."""
    img = np.asarray(image, np.float32)
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    if img.max(initial=0.0) > 1.0:
        img = img / 255.0
    img = np.clip(img, 0.0, 1.0)
    return np.repeat(img[..., None], 3, axis=-1) if img.ndim == 2 else img[..., :3]


def _mask(arr: np.ndarray, threshold: float) -> np.ndarray:
    """Mask or probability map -> uint8 labels (H, W); K > 1 via argmax."""
    arr = np.asarray(arr)
    if arr.dtype.kind == "f" or (arr.ndim == 3 and arr.shape[-1] > 1):
        return np.asarray(binarize(arr, threshold), np.uint8)
    return (arr[..., 0] if arr.ndim == 3 else arr).astype(np.uint8)


def _overlay(
    rgb: np.ndarray, mask: np.ndarray, color: np.ndarray, alpha: float = 0.45
) -> np.ndarray:
    """Blend ``color`` where ``mask > 0``; label maps with several classes get one colour each."""
    out = rgb.copy()
    labels = [int(v) for v in np.unique(mask) if v > 0]
    palette = plt.get_cmap("tab10")
    for label in labels:
        m = mask == label
        c = color if len(labels) == 1 and label == 1 else np.asarray(palette(label % 10)[:3])
        out[m] = (1 - alpha) * out[m] + alpha * c
    return out


def _grid(n_rows: int, n_cols: int) -> tuple[plt.Figure, np.ndarray]:
    size = CELL_PX / DPI
    fig, axes = plt.subplots(
        n_rows, n_cols, figsize=(n_cols * size, n_rows * size), dpi=DPI, squeeze=False
    )
    fig.subplots_adjust(
        left=0.01, right=0.99, bottom=0.01, top=1 - 0.12 / n_rows, wspace=0.04, hspace=0.16
    )
    for ax in axes.ravel():
        ax.set_axis_off()
    return fig, axes


def _check_lengths(**seqs: Sequence) -> int:
    lengths = {k: len(v) for k, v in seqs.items() if v is not None}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"sequences differ in length: {lengths}")
    n = next(iter(lengths.values()))
    if n == 0:
        raise ValueError("nothing to plot: no images")
    return n


def _title(names: Sequence[str] | None, i: int) -> str:
    """Image ``i``'s title: its name, else ``#i``."""
    return names[i] if names is not None else f"#{i}"


def _cell(ax: plt.Axes, image: np.ndarray, title: str, **imshow: object) -> None:
    """One grid cell: ``image`` under a small ``title``."""
    ax.imshow(image, **imshow)
    ax.set_title(title, fontsize=8)


def _cases(
    images: Sequence[np.ndarray],
    truths: Sequence[np.ndarray],
    probs_or_masks: Sequence[np.ndarray],
    names: Sequence[str] | None,
    threshold: float,
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, str]]:
    """``(RGB image, true labels, predicted labels, title)`` per image, the lengths checked."""
    n = _check_lengths(images=images, truths=truths, preds=probs_or_masks, names=names)
    return [
        (
            _gray(images[i]),
            _mask(truths[i], 0.5),
            _mask(probs_or_masks[i], threshold),
            _title(names, i),
        )
        for i in range(n)
    ]


def plot_prediction_grid(
    images: Sequence[np.ndarray],
    truths: Sequence[np.ndarray],
    probs_or_masks: Sequence[np.ndarray],
    out_png: PathLike,
    names: Sequence[str] | None = None,
    threshold: float = 0.5,
) -> Path:
    """One row per image: ``image | truth (green) | prediction (red, truth outlined)``.

    Args:
        images: uint8 ``(H, W[, C])`` images (float in [0, 255] also accepted).
        truths: masks ``(H, W)`` (labels for multi-class).
        probs_or_masks: probability maps ``(H, W[, K])`` (thresholded / argmax) or integer masks.
        out_png: output PNG, ``3 * CELL_PX`` wide and ``rows * CELL_PX`` high.
        names: row titles (e.g. ``"case_3  dice=0.81"``).
        threshold: foreground threshold for K = 1 probability maps.
    """
    cases = _cases(images, truths, probs_or_masks, names, threshold)
    fig, axes = _grid(len(cases), 3)
    for row, (rgb, truth, pred, title) in zip(axes, cases, strict=True):
        _cell(row[0], rgb, title)
        _cell(row[1], _overlay(rgb, truth, _TRUTH_RGB), "truth")
        _cell(row[2], _overlay(rgb, pred, _PRED_RGB), "prediction")
        if truth.any() and min(truth.shape) >= 2:
            row[2].contour(truth > 0, levels=[0.5], colors=[tuple(_TRUTH_RGB)], linewidths=0.8)
    return _save(fig, out_png)


def plot_contours(
    images: Sequence[np.ndarray],
    truths: Sequence[np.ndarray],
    probs_or_masks: Sequence[np.ndarray],
    out_png: PathLike,
    names: Sequence[str] | None = None,
    threshold: float = 0.5,
    columns: int = 4,
) -> Path:
    """One cell per image: the image with the true outline (green, dashed) and the predicted
    outline (red) drawn over it, ``columns`` cells per row; the quickest look at what a model does.

    Multi-class masks are outlined class by class (truth dashed, prediction solid, one colour per
    class from ``tab10``). Arguments as in :func:`plot_prediction_grid`.

    Example:
        >>> plot_contours(val.images[:8], val.masks[:8], probs[:8], "run/contours.png")
    """
    cases = _cases(images, truths, probs_or_masks, names, threshold)
    cols = max(1, min(columns, len(cases)))
    rows = -(-len(cases) // cols)
    fig, axes = _grid(rows, cols)
    palette = plt.get_cmap("tab10")
    for ax, (rgb, truth, pred, title) in zip(axes.ravel(), cases, strict=False):
        _cell(ax, rgb, title)
        labels = sorted(
            {int(v) for v in np.unique(truth) if v > 0} | {int(v) for v in np.unique(pred) if v > 0}
        )
        for label in labels:
            multi = len(labels) > 1 or label > 1
            t_col = tuple(palette(label % 10)[:3]) if multi else tuple(_TRUTH_RGB)
            p_col = tuple(palette(label % 10)[:3]) if multi else tuple(_PRED_RGB)
            if (truth == label).any() and min(truth.shape) >= 2:
                ax.contour(
                    truth == label,
                    levels=[0.5],
                    colors=[t_col],
                    linewidths=1.0,
                    linestyles="dashed",
                )
            if (pred == label).any() and min(pred.shape) >= 2:
                ax.contour(pred == label, levels=[0.5], colors=[p_col], linewidths=1.0)
    return _save(fig, out_png)


def plot_comparison(
    images: Sequence[np.ndarray],
    a_masks: Sequence[np.ndarray],
    b_masks: Sequence[np.ndarray],
    out_png: PathLike,
    titles: tuple[str, str] = ("float", "int8"),
    names: Sequence[str] | None = None,
    threshold: float = 0.5,
) -> Path:
    """One row per image: ``image | A | B | difference`` (e.g. float vs int8 predictions).

    The difference column shows pixels only in A in red, only in B in blue; its title gives the
    number of differing pixels and the Dice between A and B.

    Args:
        images: uint8 images.
        a_masks, b_masks: masks or probability maps to compare.
        out_png: output PNG, ``4 * CELL_PX`` wide and ``rows * CELL_PX`` high.
        titles: column titles for A and B.
        names: row titles.
    """
    n = _check_lengths(images=images, a=a_masks, b=b_masks, names=names)
    fig, axes = _grid(n, 4)
    for i in range(n):
        rgb = _gray(images[i])
        a = _mask(a_masks[i], threshold)
        b = _mask(b_masks[i], threshold)
        a_only = (a > 0) & (a != b)
        b_only = (b > 0) & (a != b)
        differ = int(np.count_nonzero(a != b))
        inter = int(np.count_nonzero((a > 0) & (b > 0) & (a == b)))
        total = int(np.count_nonzero(a > 0) + np.count_nonzero(b > 0))
        dice = 1.0 if total == 0 else 2 * inter / total
        diff = _overlay(_overlay(rgb * 0.5, a_only, _PRED_RGB, 1.0), b_only, _B_ONLY_RGB, 1.0)
        _cell(axes[i, 0], rgb, _title(names, i))
        _cell(axes[i, 1], _overlay(rgb, a, _PRED_RGB), titles[0])
        _cell(axes[i, 2], _overlay(rgb, b, _B_ONLY_RGB), titles[1])
        _cell(axes[i, 3], diff, f"diff {differ} px, dice {dice:.3f}")
    return _save(fig, out_png)


def plot_denoising(
    noisy: Sequence[np.ndarray],
    clean: Sequence[np.ndarray],
    denoised: Sequence[np.ndarray],
    out_png: PathLike,
    names: Sequence[str] | None = None,
) -> Path:
    """One row per image: ``noisy | clean | denoised | |denoised - clean|`` (pixel units)."""
    n = _check_lengths(noisy=noisy, clean=clean, denoised=denoised, names=names)
    fig, axes = _grid(n, 4)
    for i in range(n):
        c = np.asarray(clean[i], np.float32)
        d = np.clip(np.asarray(denoised[i], np.float32), 0, 255)
        err = np.abs(d - c).mean(axis=-1) if d.ndim == 3 else np.abs(d - c)
        _cell(axes[i, 0], _gray(noisy[i]), _title(names, i))
        _cell(axes[i, 1], _gray(np.asarray(clean[i], np.uint8)), "clean")
        _cell(axes[i, 2], _gray(d.astype(np.uint8)), "denoised")
        _cell(axes[i, 3], err, f"|error| mean {err.mean():.1f}", cmap="magma", vmin=0, vmax=64)
    return _save(fig, out_png)


__all__ = [
    "plot_denoising",
    "plot_history",
    "plot_prediction_grid",
    "plot_comparison",
    "plot_contours",
    "read_history",
    "CELL_PX",
    "CURVE_PX",
]
