"""The one place that opens a model file: ``.tflite``, ``.onnx``, ``.keras`` / ``.h5`` or a run
directory, behind the :class:`~kseg.runtime.protocol.Predictor` protocol.

The interpreter packages are imported by the class that needs them: LiteRT (or tflite-runtime)
for ``.tflite``, ONNX Runtime (an optional extra) for ``.onnx``, TensorFlow for ``.keras`` only,
so a device that has only numpy, OpenCV and an interpreter opens its ``.tflite`` files here too.

Example:
    >>> from kseg.runtime import open_model
    >>> model = open_model("runs/demo/best.int8.tflite", num_threads=1)
    >>> prob = model.predict(pixels)                     # (N, S, S, K) float32
    >>> open_model("runs/demo").threshold                # the run's best.keras, its config's threshold
"""

from __future__ import annotations

import os
from pathlib import Path

from kseg.config import StrEnum
from kseg.errors import ConfigError, ModelError
from kseg.filters.chain import set_model_opener
from kseg.runtime.protocol import Predictor


class ModelKind(StrEnum):
    """The model files :func:`open_model` opens, by suffix."""

    TFLITE = "tflite"  #: ``.tflite``: LiteRT, tflite-runtime or tf.lite
    ONNX = "onnx"  #: ``.onnx``: ONNX Runtime (``pip install 'kseg[onnx]'``)
    KERAS = "keras"  #: ``.keras``, ``.h5``, ``.hdf5`` or a run directory: TensorFlow


_SUFFIXES = {
    ".tflite": ModelKind.TFLITE,
    ".onnx": ModelKind.ONNX,
    ".keras": ModelKind.KERAS,
    ".h5": ModelKind.KERAS,
    ".hdf5": ModelKind.KERAS,
}


def resolve_model_path(path: str | os.PathLike[str]) -> tuple[Path, ModelKind]:
    """The model file behind ``path`` (a run directory means its ``best.keras``) and its kind.

    Raises:
        ModelError: a missing file, a folder that is not a run directory, or an unknown suffix.
    """
    p = Path(path)
    if p.is_dir():
        best = p / "best.keras"
        if not best.is_file():
            raise ModelError(
                f"{p}: a folder but not a run directory (no best.keras); give a model file"
            )
        p = best
    if not p.exists():
        raise ModelError(f"{p}: model file not found")
    kind = _SUFFIXES.get(p.suffix.lower())
    if kind is None:
        raise ModelError(
            f"{p}: unknown model kind {p.suffix!r}; use a .tflite, .onnx, .keras or .h5 file "
            f"or a run directory"
        )
    return p, kind


def open_model(
    path: str | os.PathLike[str],
    *,
    runtime: str | None = "auto",
    num_threads: int | None = None,
    delegate: str | None = None,
) -> Predictor:
    """Open any kseg model file (see the module docstring) as a predictor.

    Args:
        path: ``.tflite``, ``.onnx``, ``.keras`` / ``.h5``, or a run directory (its ``best.keras``).
        runtime: the TFLite interpreter (``auto``, ``litert``, ``tflite_runtime``, ``tf``); an
            ``.onnx`` file always runs on ONNX Runtime, a Keras file on TensorFlow.
        num_threads: interpreter / ONNX Runtime threads (None: their default).
        delegate: TFLite delegate (``xnnpack``, ``none``, ``external:/lib.so``).

    Raises:
        ModelError: missing, corrupt or unknown model file.
        ConfigError: an option the model kind cannot take.
    """
    p, kind = resolve_model_path(path)
    runtime = runtime or "auto"
    if kind is ModelKind.TFLITE:
        from kseg.runtime.model import TFLiteModel

        return TFLiteModel(p, runtime=runtime, num_threads=num_threads, delegate=delegate)
    if delegate not in (None, "none", "xnnpack", "cpu"):
        runs_on = "ONNX Runtime's CPU provider" if kind is ModelKind.ONNX else "TensorFlow"
        raise ConfigError(f"--delegate {delegate}: {p.suffix} models run on {runs_on}")
    if kind is ModelKind.ONNX:
        from kseg.runtime.onnx_model import ONNXModel

        # --runtime names a TFLite interpreter; an .onnx file beside .tflite files in one bench
        # report always runs on onnxruntime
        return ONNXModel(p, num_threads=num_threads)
    from kseg.runtime.keras_model import KerasPredictor

    return KerasPredictor.from_file(p)


# a chain's denoising_ae stage is a model: opened here (the filters sit below and never import us)
set_model_opener(open_model)

__all__ = ["ModelKind", "open_model", "resolve_model_path"]
