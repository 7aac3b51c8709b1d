"""kseg: 2D medical image segmentation, from raw images to a verified, benchmarked INT8 ``.tflite``.

Importing ``kseg`` is cheap; TensorFlow loads only when a training, model or export function is
first used, so the runtime works on devices without it.

Example:
    >>> import kseg
    >>> cfg = kseg.load_config("configs/default.yaml", {"train.epochs": 5})
    >>> metrics = kseg.train(cfg, "runs/demo")
    >>> card = kseg.export_tflite("runs/demo/best.keras", "int8")
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "load_config": "kseg.config",
    "Config": "kseg.config",
    "KsegError": "kseg.errors",
    "train": "kseg.training",
    "create_model": "kseg.models",
    "load_model": "kseg.models",
    "get_loss": "kseg.losses",
    "export_tflite": "kseg.export",
    "TFLiteModel": "kseg.runtime",
    "synthesize": "kseg.data.synthetic",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'kseg' has no attribute {name!r}")


__all__ = ["__version__", *_LAZY]
