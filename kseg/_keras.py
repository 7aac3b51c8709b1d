"""The one place that chooses Keras.

tensorflow-model-optimization supports only Keras 2, so kseg uses ``tf_keras`` and tells
TensorFlow to do the same (``TF_USE_LEGACY_KERAS=1``) before TensorFlow is imported. Every other
module imports ``tf`` and ``keras`` from here, never ``tensorflow.keras`` or ``keras`` directly.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ["TF_USE_LEGACY_KERAS"] = "1"

import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

__all__ = ["tf", "keras"]
