"""Whole-image probabilities through a fixed-size model: resize the image, or slide a window.

A segmentation model has a fixed input side ``S``. :func:`predict_prob` either brings the whole image
to ``S`` with :func:`kseg.data.io.fit_to_size` and the prediction back with
:func:`~kseg.data.io.restore_size` (the training contract of every kseg model), or works at native
resolution: the image (zero-padded up to ``S`` only when it is smaller) is cut into overlapping
``S x S`` windows, the last one flush with the border, and the window probabilities are averaged
with a weight that falls towards each window's border, so seams do not show (overlap-tile, Ronneberger
et al., "U-Net", MICCAI 2015; Gaussian importance weighting as in Isensee et al., "nnU-Net", Nature
Methods 2021). Windows go to the model in batches; a ``.tflite`` with a fixed batch of 1 runs them
one by one (:meth:`kseg.runtime.TFLiteModel.predict`).

Test-time augmentation averages the probabilities of the input and its flips (each window flipped,
predicted, and flipped back).

numpy + OpenCV only: this runs on a device without TensorFlow or SciPy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from kseg.data.io import fit_to_size, restore_size
from kseg.errors import DataError
from kseg.inference.options import Blend, InferenceOptions, TileMode

BatchFn = Callable[[np.ndarray], np.ndarray]

#: the axis of an (N, S, S, C) batch each flip of the training augmentation reverses
_FLIP_AXES = {"horizontal": 2, "vertical": 1}


def tta_flips(trained: list[str] | None) -> tuple[tuple[int, ...], ...]:
    """The flipped copies test-time augmentation averages: the identity and every combination of
    the flips the training applied (``predictor.flips``); horizontal only when that is unknown.

    A vertical flip is used only when the model was trained with one: ultrasound (the probe at the
    top) and most medical images have a top and a bottom, and a model never shown an image upside
    down predicts nonsense for it.
    """
    names = ["horizontal"] if trained is None else [f for f in trained if f in _FLIP_AXES]
    axes = sorted(_FLIP_AXES[f] for f in set(names))
    out: list[tuple[int, ...]] = [()]
    for a in axes:
        out += [tuple(sorted((*combo, a))) for combo in out]
    return tuple(out)


def as_hwc(image: np.ndarray, channels: int) -> np.ndarray:
    """``(H, W)`` or ``(H, W, C)`` -> ``(H, W, C)``, checking ``C`` against the model."""
    img = np.asarray(image)
    if img.ndim == 2:
        img = img[..., None]
    if img.ndim != 3 or img.shape[0] < 1 or img.shape[1] < 1:
        raise DataError(f"image shape {img.shape} is not (H, W) or (H, W, C)")
    if img.shape[2] != channels:
        raise DataError(
            f"image has {img.shape[2]} channels but the model expects {channels}; "
            f"read it with read_image(path, channels={channels})"
        )
    return img


def tile_starts(length: int, size: int, overlap: float) -> list[int]:
    """Window starts along one axis: stride ``size * (1 - overlap)``, the last window flush with the end."""
    if length <= size:
        return [0]
    stride = max(1, int(round(size * (1.0 - overlap))))
    starts = list(range(0, length - size, stride))
    starts.append(length - size)
    return sorted(set(starts))


def blend_window(size: int, floor: float = 0.05) -> np.ndarray:
    """``(size, size)`` linear weights: a separable triangle peaking at the centre, at least ``floor``."""
    ramp = 1.0 - np.abs(np.linspace(-1.0, 1.0, size, dtype=np.float32))
    ramp = np.maximum(ramp, floor)
    return np.outer(ramp, ramp).astype(np.float32)


def gaussian_window(size: int, sigma_scale: float = 1.0 / 8, floor: float = 1e-3) -> np.ndarray:
    """``(size, size)`` Gaussian weights, 1 at the centre, sigma = ``sigma_scale * size``, at least ``floor``."""
    centre = (size - 1) / 2.0
    sigma = max(sigma_scale * size, 1e-6)
    g = np.exp(-((np.arange(size, dtype=np.float64) - centre) ** 2) / (2 * sigma**2))
    w = np.outer(g, g)
    w /= w.max()
    return np.maximum(w, floor).astype(np.float32)


def window_weights(size: int, blend: Blend | str) -> np.ndarray:
    """The weights of one window for a :class:`~kseg.inference.options.Blend`."""
    return gaussian_window(size) if Blend(blend) is Blend.GAUSSIAN else blend_window(size)


def flip_tta(predict: BatchFn, flips: tuple[tuple[int, ...], ...] = ((), (2,))) -> BatchFn:
    """A batch function that averages ``predict`` over flipped copies of its input (``flips``:
    axes of the batch per copy, as :func:`tta_flips` gives them)."""

    def run(batch: np.ndarray) -> np.ndarray:
        acc = None
        for axes in flips:
            x = np.flip(batch, axis=axes) if axes else batch
            p = np.asarray(predict(np.ascontiguousarray(x)), np.float32)
            p = np.flip(p, axis=axes) if axes else p
            acc = p.copy() if acc is None else acc + p
        return acc / np.float32(len(flips))

    return run


@dataclass(frozen=True)
class ProbInfo:
    """How :func:`predict_prob` ran: ``tiled`` (native resolution) and the number of windows."""

    tiled: bool
    windows: int
    model_calls: int


def sliding_window(
    predict: BatchFn,
    image: np.ndarray,
    size: int,
    *,
    overlap: float = 0.25,
    blend: Blend | str = Blend.GAUSSIAN,
    batch_size: int = 8,
) -> tuple[np.ndarray, int, int]:
    """Probabilities ``(H, W, K)`` of ``image (H, W, C)`` from ``S x S`` windows at native resolution.

    Returns the probabilities, the number of windows and the number of ``predict`` calls.
    """
    h, w = image.shape[:2]
    # windows start flush with the image's own borders, as the whole images the model was trained
    # on did; only an image smaller than a window is padded (zeros, bottom/right, as nnU-Net pads
    # to the patch size). A mirrored margin was measured to cost agreement: the model never saw
    # mirrored content at a window border (docs/benchmarks.md).
    padded = np.pad(image, ((0, max(0, size - h)), (0, max(0, size - w)), (0, 0)))
    ph, pw = padded.shape[:2]
    boxes = [(y, x) for y in tile_starts(ph, size, overlap) for x in tile_starts(pw, size, overlap)]
    weight = window_weights(size, blend)
    acc: np.ndarray | None = None
    norm = np.zeros((ph, pw), dtype=np.float32)
    calls = 0
    for i in range(0, len(boxes), batch_size):
        chunk = boxes[i : i + batch_size]
        batch = np.stack([padded[y : y + size, x : x + size] for y, x in chunk]).astype(np.float32)
        probs = np.asarray(predict(batch), np.float32)
        calls += 1
        if probs.shape[1:3] != (size, size):
            probs = np.stack([restore_size(p, _square(size, p)) for p in probs])
        if acc is None:
            acc = np.zeros((ph, pw, probs.shape[-1]), dtype=np.float32)
        for (y, x), p in zip(chunk, probs, strict=True):
            acc[y : y + size, x : x + size] += p * weight[..., None]
            norm[y : y + size, x : x + size] += weight
    assert acc is not None
    out = acc[:h, :w] / norm[:h, :w, None]
    return out, len(boxes), calls


def _square(size: int, p: np.ndarray):
    # a model whose output side differs from its input (another output stride): scale back to size
    from kseg.data.io import ResizeInfo

    return ResizeInfo((size, size), int(p.shape[0]), "stretch", 0.0, (size, size), (0, 0))


def wants_tiling(predictor, image_hw: tuple[int, int], tile: TileMode | str) -> bool:
    """Whether :func:`predict_prob` works at native resolution for this model and image.

    ``on``/``off`` decide alone. ``auto`` tiles only a model that was trained at native scale
    (``predictor.native_scale`` is True: its training images were no larger than its input, e.g.
    synthetic data at the model size), and then only images larger than the input; a model trained
    on whole images resized to its input (HC18 800x540 -> 256) sees every image resized, as in
    training, because windows at full resolution would show it structures at another scale.
    """
    tile = TileMode(tile)
    if tile is TileMode.ON:
        return True
    if tile is TileMode.OFF:
        return False
    size = int(predictor.input_size)
    larger = image_hw[0] > size or image_hw[1] > size
    return bool(larger and getattr(predictor, "native_scale", None) is True)


def predict_prob(
    predictor, image: np.ndarray, options: InferenceOptions | None = None
) -> tuple[np.ndarray, ProbInfo]:
    """Probabilities float32 ``(H, W, K)`` at the image's own size, and how they were made.

    Args:
        predictor: anything with ``input_size``, ``channels``, ``resize_mode`` and
            ``predict(batch float32 (N, S, S, C) in [0, 255]) -> (N, S, S, K)``.
        image: uint8 ``(H, W)`` or ``(H, W, C)``, C equal to ``predictor.channels``.
        options: tiling, overlap, blend, TTA and batch size (thresholds are not used here).

    Raises:
        DataError: wrong channel count or shape.
    """
    opts = options or InferenceOptions()
    img = as_hwc(image, int(predictor.channels))
    size = int(predictor.input_size)
    predict: BatchFn = predictor.predict
    if opts.tta:
        predict = flip_tta(predict, tta_flips(getattr(predictor, "flips", None)))
    if wants_tiling(predictor, img.shape[:2], opts.tile):
        prob, windows, calls = sliding_window(
            predict,
            img,
            size,
            overlap=opts.overlap,
            blend=opts.blend,
            batch_size=opts.batch_size,
        )
        return prob, ProbInfo(True, windows, calls)
    x, info = fit_to_size(img, size, getattr(predictor, "resize_mode", "stretch"))
    if x.ndim == 2:
        x = x[..., None]
    prob = np.asarray(predict(x[None].astype(np.float32)), np.float32)[0]
    out = restore_size(prob, info)
    return (out[..., None] if out.ndim == 2 else out), ProbInfo(False, 1, 1)


def predict_image(
    predictor,
    image: np.ndarray,
    *,
    tile: bool | str = False,
    overlap: float = 0.25,
    batch_size: int = 8,
    blend: str = "gaussian",
    tta: bool = False,
) -> np.ndarray:
    """Probabilities ``(H, W, K)`` (the :mod:`kseg.runtime` API): ``tile=True`` means ``on``."""
    mode = {True: "on", False: "off"}.get(tile, tile) if isinstance(tile, bool) else tile
    opts = InferenceOptions(tile=mode, overlap=overlap, batch_size=batch_size, blend=blend, tta=tta)
    return predict_prob(predictor, image, opts)[0]
