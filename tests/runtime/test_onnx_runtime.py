"""The ONNX backend: same Predictor contract as TFLite, predict/bench through the CLI, errors on
bad files and a missing onnxruntime, and the TFLite path never importing onnxruntime."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from kseg.cli import main
from kseg.errors import ConfigError, ModelError
from kseg.inference import predict_image
from kseg.runtime import ONNXModel, Predictor, TFLiteModel, open_model

REPO = Path(__file__).resolve().parents[2]
NEEDS_EXTRA = "ONNX extra not installed (pip install 'kseg[onnx]'; tools/setup_env.sh does)"


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory, tiny_tflite) -> dict:
    """The tiny Keras model of tests/runtime/tiny_models.py as .onnx (with a card) and its Keras model."""
    pytest.importorskip("onnxruntime", reason=NEEDS_EXTRA)
    pytest.importorskip("tf2onnx", reason=NEEDS_EXTRA)
    import importlib.util

    from kseg.export.onnx import convert_onnx

    spec = importlib.util.spec_from_file_location(
        "kseg_tiny_models_onnx", Path(__file__).with_name("tiny_models.py")
    )
    tiny_models = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tiny_models)
    keras_model = tiny_models._build(None)
    d = tmp_path_factory.mktemp("onnx")
    path = d / "tiny.onnx"
    path.write_bytes(convert_onnx(keras_model))
    card = json.loads(tiny_tflite["float"].with_suffix(".json").read_text())
    card["output"]["threshold"] = 0.4
    (d / "tiny.json").write_text(json.dumps(card))
    return {"path": path, "keras": keras_model, "dir": d}


def test_runtime_import_does_not_load_onnxruntime():
    code = (
        "import sys, kseg.runtime, kseg.bench.run, kseg.bench.cli;"
        "from kseg.runtime import TFLiteModel, open_model;"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('onnxruntime', 'onnx', 'tf2onnx', 'tensorflow'));"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_onnx_model_follows_the_predictor_contract(tiny_onnx):
    m = ONNXModel(tiny_onnx["path"], num_threads=1)
    assert isinstance(m, Predictor)
    assert (m.input_size, m.channels, m.num_classes) == (32, 1, 1)
    assert m.threshold == 0.4 and m.resize_mode == "stretch"  # from the card beside the file
    x = np.random.default_rng(3).uniform(0, 255, (5, 32, 32, 1)).astype(np.float32)
    got = m.predict(x)
    want = tiny_onnx["keras"](x, training=False).numpy()
    assert got.dtype == np.float32 and got.shape == (5, 32, 32, 1)
    assert float(np.max(np.abs(got - want))) < 1e-5
    prob = predict_image(m, np.full((50, 70), 128, np.uint8))
    assert prob.shape == (50, 70, 1)
    assert m.describe()["backend"] == "onnxruntime" and m.describe()["num_threads"] == 1


def test_cli_predict_onnx_writes_the_keras_masks(tiny_onnx, tmp_path):
    rng = np.random.default_rng(5)
    img = rng.uniform(0, 255, (32, 32)).astype(np.uint8)
    img[:, :16] = 0
    cv2.imwrite(str(tmp_path / "scan.png"), img)
    res = CliRunner().invoke(
        main, ["predict", "--model", str(tiny_onnx["path"]), str(tmp_path / "scan.png"),
               "--out", str(tmp_path / "out"), "--threads", "1"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    mask = cv2.imread(str(tmp_path / "out" / "scan_mask.png"), cv2.IMREAD_GRAYSCALE)
    prob = tiny_onnx["keras"](img[None, ..., None].astype(np.float32), training=False).numpy()
    want = np.where(prob[0, ..., 0] > 0.4, 255, 0)  # the card's threshold, not 0.5
    assert 0 < (want > 0).mean() < 1
    assert np.mean(mask == want) > 0.99


def test_cli_bench_onnx_and_tflite_side_by_side(tiny_onnx, tiny_tflite, tmp_path):
    out = tmp_path / "bench.json"
    res = CliRunner().invoke(
        main, ["bench", str(tiny_tflite["float"]), str(tiny_onnx["path"]), "--runs", "5",
               "--warmup", "1", "--no-calibrate", "--no-isolate", "--npu", "edgetpu",
               "--json", str(out)],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    rep = json.loads(out.read_text())
    backends = {Path(r["file"]).suffix: r["backend"] for r in rep["results"]}
    assert backends == {".tflite": "litert", ".onnx": "onnxruntime"}
    onnx_row = next(r for r in rep["results"] if r["file"].endswith(".onnx"))
    assert onnx_row["threads"] == 1 and len(onnx_row["runs_ms"]) == 5
    assert onnx_row["latency_ms"]["p50"] > 0 and onnx_row["input_dtype"] == "float32"
    assert [n["file"] for n in rep["npu"]] == [str(tiny_tflite["float"])]  # emulation: tflite only
    assert "| tiny.onnx | 1 |" in res.output and "onnxruntime" in res.output


def test_bench_isolated_onnx(tiny_onnx, tmp_path):
    res = CliRunner().invoke(
        main, ["bench", str(tiny_onnx["path"]), "--runs", "3", "--warmup", "1", "--no-calibrate",
               "--json", str(tmp_path / "b.json")],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    r = json.loads((tmp_path / "b.json").read_text())["results"][0]
    assert r["backend"] == "onnxruntime" and r["peak_rss_mb"] > 10


def test_bad_onnx_files_and_options(tiny_onnx, tmp_path):
    pytest.importorskip("onnxruntime", reason=NEEDS_EXTRA)
    with pytest.raises(ModelError, match="model file not found"):
        ONNXModel(tmp_path / "missing.onnx")
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(ModelError, match="empty ONNX file"):
        ONNXModel(empty)
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(tiny_onnx["path"].read_bytes()[:300])
    with pytest.raises(ModelError, match="corrupt or unsupported ONNX model"):
        ONNXModel(cut)
    with pytest.raises(ConfigError, match="num_threads must be >= 1"):
        ONNXModel(tiny_onnx["path"], num_threads=0)
    with pytest.raises(ConfigError, match="CPU provider"):
        open_model(tiny_onnx["path"], delegate="external:/x.so")
    res = CliRunner().invoke(
        main, ["predict", "--model", str(cut), str(tmp_path), "--out", str(tmp_path / "o")]
    )
    assert res.exit_code == 2 and res.output.startswith("error: ")


def test_missing_onnxruntime_is_one_line(tiny_onnx, tiny_tflite, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(
        ModelError, match=r"needs ONNX Runtime, which is not installed; pip install 'kseg\[onnx\]'"
    ):
        ONNXModel(tiny_onnx["path"])
    assert isinstance(open_model(tiny_tflite["float"]), TFLiteModel)  # TFLite needs no onnxruntime
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((32, 32), np.uint8))
    res = CliRunner().invoke(
        main,
        [
            "predict",
            "--model",
            str(tiny_onnx["path"]),
            str(tmp_path / "a.png"),
            "--out",
            str(tmp_path / "o"),
        ],
    )
    assert res.exit_code == 2
    assert res.output.strip().splitlines() == [
        "error: running .onnx models needs ONNX Runtime, which is not installed; pip install 'kseg[onnx]'"
    ]
