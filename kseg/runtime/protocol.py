"""What every opened model offers: the predictor protocol of :func:`kseg.runtime.open_model`.

:class:`~kseg.runtime.TFLiteModel`, :class:`~kseg.runtime.ONNXModel` and
:class:`~kseg.runtime.KerasPredictor` all satisfy it, so whole-image inference, evaluation, the
parity gate, the service and the deploy bundle treat every model kind alike.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Predictor(Protocol):
    """A segmentation model behind the kseg pixel contract.

    ``predict`` takes raw pixels float32 ``(N, S, S, C)`` in [0, 255] (the model's filter chain,
    ``filters``, is applied inside) and returns probabilities float32 ``(N, S, S, K)``
    (K = 1: sigmoid, K > 1: softmax).

    Attributes:
        input_size: the side S of the square input.
        channels: C, 1 (grayscale) or 3 (RGB).
        num_classes: K, the output channels.
        resize_mode: ``stretch`` or ``letterbox``, as in training.
        threshold: the foreground threshold for K = 1 (the card's or the run's).
        threshold_source: ``validation``, ``config`` or ``default``.
        native_scale: trained on images no larger than the input (None: unknown).
        flips: the flips the training augmentation applied (``horizontal``, ``vertical``; None:
            unknown); test-time augmentation averages over these.
        dynamic_batch: True when ``predict`` takes any batch in one call.
        card: the model card (``FILE.json``), or None.
        filters: the filter chain (``data.preprocess``) applied inside ``predict``.
    """

    input_size: int
    channels: int
    num_classes: int
    resize_mode: str
    threshold: float
    threshold_source: str
    native_scale: bool | None
    flips: list[str] | None
    dynamic_batch: bool
    card: dict[str, Any] | None
    filters: Any

    def predict(self, batch: np.ndarray) -> np.ndarray: ...


__all__ = ["Predictor"]
