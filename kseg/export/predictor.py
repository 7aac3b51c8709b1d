"""A Keras model behind the same :class:`kseg.runtime.Predictor` interface as a ``.tflite``.

``kseg predict`` and the parity gate therefore pre- and post-process both model kinds with the
same code (``kseg.runtime.predict_files`` / ``predict_image``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kseg.training.rundir import find_run_dir


class KerasPredictor:
    """Wraps a Keras segmentation model (raw pixels in, probabilities out).

    Args:
        model: a loaded Keras model.
        threshold: foreground probability threshold.
        resize_mode: ``stretch`` or ``letterbox`` (as in training).
        preprocess: the run's filter chain (``data.preprocess``), applied to every input batch.
    """

    def __init__(
        self, model, *, threshold: float = 0.5, resize_mode: str = "stretch", preprocess=None
    ) -> None:
        from kseg.preprocess import Chain

        self.model = model
        self.filters = Chain.parse(preprocess)
        self.input_size = int(model.input_shape[1])
        self.channels = int(model.input_shape[3])
        self.num_classes = int(model.output_shape[-1])
        self.threshold = float(threshold)
        self.resize_mode = str(resize_mode)

    @classmethod
    def from_file(cls, path: str | Path) -> KerasPredictor:
        """Load a model; threshold and resize mode come from its run directory when it has one."""
        from kseg.config import load_config
        from kseg.models import load_model

        model = load_model(path)
        run = find_run_dir(path)
        if run is None:
            return cls(model)
        cfg = load_config(run.config)
        return cls(
            model,
            threshold=cfg.train.threshold,
            resize_mode=str(cfg.data.resize),
            preprocess=cfg.data.preprocess,
        )

    def predict(self, batch: np.ndarray) -> np.ndarray:
        batch = np.asarray(batch, np.float32)
        if batch.ndim == 3:
            batch = batch[None]
        if self.filters:
            batch = self.filters.apply_pixels(batch)
        return np.asarray(self.model(batch, training=False), np.float32)
