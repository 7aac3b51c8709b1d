"""A Keras model behind the same :class:`kseg.runtime.Predictor` interface as a ``.tflite``.

``kseg predict``, the parity gate and the service therefore pre- and post-process every model kind
with the same code (:func:`kseg.inference.segment_image`). This module imports no TensorFlow:
:meth:`KerasPredictor.from_file` loads it (through :mod:`kseg.models`) when a ``.keras`` file is
opened, and the run directory's config is read only then.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from kseg.errors import ModelError


def native_scale(data_cfg, max_images: int = 8) -> bool | None:
    """Whether a model was trained on images no larger than its input (no downscaling), so windows
    of an image at full resolution show it structures at the scale it learned.

    Synthetic data is generated at the model size and ``data.sampling: patch`` trains on windows
    of images at their own size (True); for a folder, the first ``max_images`` images are
    measured; None when that cannot be told.
    """
    if data_cfg.path is None or str(getattr(data_cfg, "sampling", "resize")) == "patch":
        return True  # synthetic data at the model size; patches of images at their own size
    try:
        import cv2

        from kseg.data.folder import scan_folder  # a folder's images: numpy + OpenCV

        samples = scan_folder(data_cfg.path, data_cfg.group_regex, require_masks=False)[:max_images]
        sizes = []
        for s in samples:
            img = cv2.imread(str(s.image), cv2.IMREAD_UNCHANGED)
            if img is None:
                return None
            sizes.append(max(img.shape[:2]))
    except Exception:  # a moved or unreadable data folder: unknown, not an error at inference
        return None
    return bool(sizes) and max(sizes) <= int(data_cfg.img_size)


def trained_flips(data_cfg) -> list[str]:
    """The flips the training augmentation applied (``horizontal``, ``vertical``): test-time
    augmentation averages over these only, since a model never shown an image upside down (most
    ultrasound: the probe at the top) predicts nonsense for it."""
    aug = data_cfg.augment
    if not aug.enabled:
        return []
    return [name for name, p in (("horizontal", aug.hflip_p), ("vertical", aug.vflip_p)) if p > 0]


def read_stored_threshold(model_path: str | Path) -> float | None:
    """The validated threshold in ``MODEL.threshold.json`` (``kseg evaluate --store-threshold``)."""
    p = Path(model_path).with_suffix(".threshold.json")
    if not p.is_file():
        return None
    try:
        t = float(json.loads(p.read_text(encoding="utf-8"))["threshold"])
    except (OSError, ValueError, KeyError, TypeError):
        raise ModelError(
            f"{p}: unreadable threshold file; delete it or run kseg evaluate --store-threshold"
        ) from None
    if not 0.0 <= t < 1.0:
        raise ModelError(f"{p}: threshold {t} is not in [0, 1); delete the file")
    return t


class KerasPredictor:
    """Wraps a Keras segmentation model (raw pixels in, probabilities out).

    Args:
        model: a loaded Keras model.
        threshold: foreground probability threshold.
        resize_mode: ``stretch`` or ``letterbox`` (as in training).
        native_scale: trained on images no larger than the input (see :func:`native_scale`);
            ``tile="auto"`` tiles larger images only then.
        flips: the flips the training augmentation applied (:func:`trained_flips`; None:
            unknown), the ones test-time augmentation uses.
        threshold_source: where ``threshold`` comes from (``config``, ``validation``, ``default``).
        preprocess: the run's filter chain (``data.preprocess``), applied to every input batch.
    """

    #: the model takes any batch size, so tiles go to it in batches
    dynamic_batch = True

    def __init__(
        self,
        model,
        *,
        threshold: float = 0.5,
        resize_mode: str = "stretch",
        native_scale: bool | None = None,
        flips: list[str] | None = None,
        threshold_source: str = "default",
        preprocess=None,
    ) -> None:
        from kseg.filters import Chain

        self.model = model
        self.filters = Chain.parse(preprocess)
        self.input_size = int(model.input_shape[1])
        self.channels = int(model.input_shape[3])
        self.num_classes = int(model.output_shape[-1])
        self.threshold = float(threshold)
        self.resize_mode = str(resize_mode)
        self.native_scale = native_scale
        self.flips = None if flips is None else list(flips)
        self.threshold_source = threshold_source
        #: the model card's counterpart for a Keras file: None (no card)
        self.card: dict[str, Any] | None = None
        self.path: Path | None = None

    @classmethod
    def from_file(cls, path: str | Path) -> KerasPredictor:
        """Load a model; threshold and resize mode come from its run directory when it has one,
        a validated threshold from ``MODEL.threshold.json`` when present."""
        from kseg.config import load_run_config
        from kseg.models import load_model  # TensorFlow: only here
        from kseg.runs import find_run_dir

        model = load_model(path)
        run = find_run_dir(path)
        kw: dict[str, Any] = {}
        if run is not None:
            cfg = load_run_config(run.config)
            kw = {
                "threshold": cfg.train.threshold,
                "resize_mode": str(cfg.data.resize),
                "native_scale": native_scale(cfg.data),
                "flips": trained_flips(cfg.data),
                "threshold_source": "config",
                "preprocess": cfg.data.preprocess,
            }
        stored = read_stored_threshold(path)
        if stored is not None:
            kw.update(threshold=stored, threshold_source="validation")
        predictor = cls(model, **kw)
        predictor.path = Path(path)
        return predictor

    def predict(self, batch: np.ndarray) -> np.ndarray:
        batch = np.asarray(batch, np.float32)
        if batch.ndim == 3:
            batch = batch[None]
        if self.filters:
            batch = self.filters.apply_pixels(batch)
        return np.asarray(self.model(batch, training=False), np.float32)

    __call__ = predict

    def __repr__(self) -> str:
        return (
            f"KerasPredictor({str(self.path or self.model.name)!r}, input={self.input_size}x"
            f"{self.input_size}x{self.channels}, classes={self.num_classes})"
        )
