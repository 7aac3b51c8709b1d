"""The one place that chooses Keras.

tensorflow-model-optimization supports only Keras 2, so kseg uses ``tf_keras`` and tells
TensorFlow to do the same (``TF_USE_LEGACY_KERAS=1``) before TensorFlow is imported. Every other
module imports ``tf`` and ``keras`` from here, never ``tensorflow.keras`` or ``keras`` directly.

On a machine without a GPU the TensorFlow wheel prints CUDA-probe lines ("Could not find cuda
drivers", "failed call to cuInit") from C++ before its logging is configured; they say nothing a
user can act on, so stderr is silenced at the file-descriptor level while TensorFlow loads and C++
logs below FATAL are hidden. Set ``KSEG_TF_LOGS=1`` to see everything TensorFlow prints.
"""

from __future__ import annotations

import os
import sys

os.environ["TF_USE_LEGACY_KERAS"] = "1"
_VERBOSE = os.environ.get("KSEG_TF_LOGS") == "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if _VERBOSE else "3")


def _import_quietly():
    if _VERBOSE:
        import tensorflow as tf
        import tf_keras as keras

        return tf, keras
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        import tensorflow as tf
        import tf_keras as keras
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
    return tf, keras


tf, keras = _import_quietly()

__all__ = ["tf", "keras"]
