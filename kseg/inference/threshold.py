"""Choose the foreground threshold on held-out data: the best pixel-total Dice over a grid.

A sigmoid model trained with Dice or focal losses is often not calibrated, so 0.5 is not always its
best operating point. :class:`ThresholdSweep` counts, for every threshold of a grid at once, the
true and false positives of ``p > t`` over any number of images (one pass, memory independent of
the number of images); :meth:`ThresholdSweep.best` returns the threshold with the highest Dice
(ties: the one closest to 0.5). ``kseg convert`` runs it on the validation split and stores the
result in the model card (``output.threshold``, ``output.threshold_source = "validation"`` and a
``threshold_selection`` block); ``kseg evaluate`` reports it.

numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from kseg._attrs import dataclass_dict
from kseg.errors import DataError

#: 0.05, 0.10, ..., 0.95
DEFAULT_GRID: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(1, 20))


@dataclass(frozen=True)
class ThresholdChoice:
    """The chosen threshold and the Dice curve it came from."""

    threshold: float
    dice: float
    dice_at_default: float
    default: float
    grid: tuple[float, ...]
    dice_per_threshold: tuple[float, ...]
    n_images: int
    n_pixels: int

    def to_dict(self) -> dict[str, Any]:
        """The card's ``threshold_selection`` block: the fields (``default`` third, tuples as
        lists) and the criterion."""
        return {
            **dataclass_dict(self, first=("threshold", "dice", "default")),
            "criterion": "pixel-total Dice of p > t, best over the grid (ties: closest to 0.5)",
        }


class ThresholdSweep:
    """Accumulate ``p > t`` confusion counts for every ``t`` of a grid over many images.

    Args:
        grid: candidate thresholds in (0, 1); ``default`` is always added.
        default: the threshold reported alongside the best (0.5).

    Example:
        >>> sweep = ThresholdSweep()
        >>> for prob, true in pairs:
        ...     sweep.add(prob, true)
        >>> sweep.best().threshold
    """

    def __init__(self, grid: tuple[float, ...] | list[float] = DEFAULT_GRID, default: float = 0.5):
        g = sorted({float(t) for t in grid} | {float(default)})
        if not g or g[0] < 0.0 or g[-1] >= 1.0:
            raise DataError(f"threshold grid {grid} must lie in [0, 1)")
        self.grid = np.asarray(g, np.float64)
        self._grid32 = self.grid.astype(np.float32)
        self.default = float(default)
        # tp[i], fp[i]: pixels with p > grid[i] that are foreground / background
        self._tp = np.zeros(len(g), np.int64)
        self._fp = np.zeros(len(g), np.int64)
        self._pos = 0
        self.n_images = 0
        self.n_pixels = 0

    def _counts_above(self, p: np.ndarray) -> np.ndarray:
        # k = number of grid thresholds strictly below p  ->  p > grid[i] for i < k; compared in
        # float32 like `prob > threshold` on a float32 map (0.4 as float32 is not above 0.4)
        k = np.searchsorted(self._grid32, p.astype(np.float32, copy=False), side="left")
        hist = np.bincount(k, minlength=len(self.grid) + 1)
        return hist[::-1].cumsum()[::-1][1:]  # pixels with k > i

    def add(self, prob: np.ndarray, true: np.ndarray) -> None:
        """One image: ``prob`` ``(H, W)`` or ``(H, W, 1)``, ``true`` ``(H, W)`` (> 0 is foreground)."""
        p = np.asarray(prob, np.float32)
        if p.ndim == 3:
            if p.shape[-1] != 1:
                raise DataError("threshold selection is for one-class (sigmoid) models")
            p = p[..., 0]
        t = np.asarray(true)
        if t.ndim == 3 and t.shape[-1] == 1:
            t = t[..., 0]
        if p.shape != t.shape:
            raise DataError(f"probabilities {p.shape} and mask {t.shape} differ in size")
        fg = t > 0
        self._tp += self._counts_above(p[fg])
        self._fp += self._counts_above(p[~fg])
        self._pos += int(fg.sum())
        self.n_images += 1
        self.n_pixels += int(p.size)

    def add_batch(self, probs: np.ndarray, masks: np.ndarray) -> None:
        """Images ``(N, H, W[, 1])`` with masks ``(N, H, W)``."""
        for p, t in zip(probs, masks, strict=True):
            self.add(p, t)

    def dice(self) -> np.ndarray:
        """Pixel-total Dice for each grid threshold (1.0 where nothing is to be found nor found)."""
        tp, fp = self._tp.astype(np.float64), self._fp.astype(np.float64)
        fn = self._pos - tp
        den = 2 * tp + fp + fn
        return np.where(den > 0, 2 * tp / np.maximum(den, 1), 1.0)

    def best(self) -> ThresholdChoice:
        """The grid threshold with the highest Dice (ties: closest to ``default``)."""
        if self.n_images == 0:
            raise DataError("no validation images to choose a threshold on")
        d = self.dice()
        order = np.lexsort((np.abs(self.grid - self.default), -np.round(d, 12)))
        i = int(order[0])
        j = int(np.argmin(np.abs(self.grid - self.default)))
        return ThresholdChoice(
            threshold=float(round(self.grid[i], 6)),
            dice=float(d[i]),
            dice_at_default=float(d[j]),
            default=self.default,
            grid=tuple(float(round(g, 6)) for g in self.grid),
            dice_per_threshold=tuple(float(x) for x in d),
            n_images=self.n_images,
            n_pixels=self.n_pixels,
        )


def choose_threshold(
    probs, masks, grid: tuple[float, ...] | list[float] = DEFAULT_GRID, default: float = 0.5
) -> ThresholdChoice:
    """:class:`ThresholdSweep` over ``probs`` and ``masks`` (sequences of images), best Dice."""
    sweep = ThresholdSweep(grid, default)
    for p, t in zip(probs, masks, strict=True):
        sweep.add(p, t)
    return sweep.best()
