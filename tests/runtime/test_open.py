"""kseg.runtime.open_model: the one place that opens .tflite, .onnx, .keras files and run folders."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kseg.errors import ConfigError, ModelError
from kseg.runtime import (
    KerasPredictor,
    ModelKind,
    Predictor,
    TFLiteModel,
    open_model,
    resolve_model_path,
)

REPO = Path(__file__).resolve().parents[2]


def _keras_file(folder: Path) -> Path:
    """The tiny 32x32 model of tests/runtime/tiny_models.py (same seed as the .tflite files)."""
    spec = importlib.util.spec_from_file_location(
        "kseg_tiny", Path(__file__).with_name("tiny_models.py")
    )
    tiny_models = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tiny_models)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "best.keras"
    tiny_models._build(batch=None).save(path)
    return path


def test_resolve_model_path_kinds_and_errors(tmp_path):
    for suffix, kind in (
        (".tflite", ModelKind.TFLITE),
        (".ONNX", ModelKind.ONNX),
        (".h5", ModelKind.KERAS),
    ):
        f = tmp_path / f"m{suffix}"
        f.write_bytes(b"x")
        assert resolve_model_path(f) == (f, kind)
    run = tmp_path / "run"
    run.mkdir()
    with pytest.raises(ModelError, match="not a run directory"):
        resolve_model_path(run)
    (run / "best.keras").write_bytes(b"x")
    assert resolve_model_path(run) == (run / "best.keras", ModelKind.KERAS)
    with pytest.raises(ModelError, match="model file not found"):
        resolve_model_path(tmp_path / "missing.tflite")
    odd = tmp_path / "m.pt"
    odd.write_bytes(b"x")
    with pytest.raises(ModelError, match=r"unknown model kind '\.pt'"):
        resolve_model_path(odd)


def test_every_kind_opens_behind_one_protocol(tiny_tflite, tmp_path):
    """The same pixels through a .tflite and its Keras source: same protocol, same probabilities."""
    keras_path = _keras_file(tmp_path / "run")
    (tmp_path / "run" / "best.threshold.json").write_text(json.dumps({"threshold": 0.3}))
    tfl = open_model(tiny_tflite["float"], num_threads=1)
    ker = open_model(tmp_path / "run")  # a run folder means its best.keras
    assert isinstance(tfl, TFLiteModel) and isinstance(ker, KerasPredictor)
    for m in (tfl, ker):
        assert isinstance(m, Predictor)
        assert (m.input_size, m.channels, m.num_classes) == (32, 1, 1)
    assert ker.path == keras_path
    assert (ker.threshold, ker.threshold_source) == (0.3, "validation")
    assert tfl.threshold_source in ("config", "validation")
    x = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 1)).astype(np.float32)
    np.testing.assert_allclose(tfl.predict(x), ker.predict(x), atol=1e-4)
    with pytest.raises(ConfigError, match="run on TensorFlow"):
        open_model(keras_path, delegate="external:/x.so")


def test_opening_a_tflite_imports_no_tensorflow(tiny_tflite):
    code = (
        "import sys; from kseg.runtime import open_model; "
        f"m = open_model({str(tiny_tflite['int8'])!r}); "
        "assert 'tensorflow' not in sys.modules and 'tf_keras' not in sys.modules, 'TF imported'; "
        "print(type(m).__name__)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "TFLiteModel"
