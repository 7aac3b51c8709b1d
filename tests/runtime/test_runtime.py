"""kseg.runtime: backend parity, quantization against the card, tiling, files, bad inputs."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from kseg.errors import ConfigError, DataError, ModelError
from kseg.inference import predict_files, predict_image
from kseg.inference.tiling import blend_window, tile_starts
from kseg.runtime import (
    Predictor,
    TFLiteModel,
    available_runtimes,
    dequantize,
    quantize,
)

REPO = Path(__file__).resolve().parents[2]


def _pixels(n: int = 3, size: int = 32, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, (n, size, size, 1)).astype(np.float32)


def test_runtime_and_bench_import_without_tensorflow():
    code = (
        "import sys, kseg.runtime, kseg.bench.cli, kseg.bench.run, kseg.bench.npu, kseg.bench.report;"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'tf_keras', 'keras'));"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("kind", ["int8", "float"])
def test_backend_parity(tiny_tflite, kind):
    runtimes = [r for r in available_runtimes() if r != "auto"]
    assert "litert" in runtimes
    x = _pixels()
    ref = TFLiteModel(tiny_tflite[kind], runtime="litert").predict(x)
    assert ref.shape == (3, 32, 32, 1) and ref.dtype == np.float32
    others = [r for r in runtimes if r != "litert"]
    if not others:
        pytest.skip("only LiteRT is installed")
    for rt in others:
        m = TFLiteModel(tiny_tflite[kind], runtime=rt)
        assert m.backend == rt
        out = m.predict(x)
        # same flatbuffer, same kernels family: at most one output quantization step apart
        tol = 1.0 / 256 + 1e-6 if kind == "int8" else 1e-5
        assert np.abs(out - ref).max() <= tol, rt


def test_int8_quantization_follows_card(tiny_tflite):
    path = tiny_tflite["int8"]
    card = json.loads(path.with_suffix(".json").read_text())
    m = TFLiteModel(path)
    assert m.input_dtype == np.int8
    assert m.input_scale == pytest.approx(card["input"]["scale"])
    assert m.input_zero_point == card["input"]["zero_point"] == -128
    assert m.output_scale == pytest.approx(card["output"]["scale"])
    assert m.output_zero_point == card["output"]["zero_point"]
    # pixel contract: scale ~1, zero point -128 -> the quantized input is the pixel shifted by 128
    pixels = np.arange(256, dtype=np.float32).reshape(1, 16, 16, 1)
    q = quantize(pixels, m.input_scale, m.input_zero_point, np.int8)
    np.testing.assert_array_equal(q.astype(np.int32), np.arange(256).reshape(1, 16, 16, 1) - 128)
    back = dequantize(q, m.input_scale, m.input_zero_point)
    assert np.abs(back - pixels).max() <= m.input_scale / 2 + 1e-3
    # predict == hand dequantization of the raw int8 output with the card's scale/zero point
    x = _pixels(1)
    raw = m.invoke_raw(m.preprocess(x))
    assert raw.dtype == np.int8
    by_hand = (raw.astype(np.float32) - card["output"]["zero_point"]) * card["output"]["scale"]
    np.testing.assert_allclose(m.predict(x), by_hand, atol=1e-7)
    # sigmoid output with scale 1/256, zp -128 covers [0, 1)
    assert m.output_scale == pytest.approx(1 / 256)


def test_quantize_clips_and_rounds():
    q = quantize(np.array([-1000.0, -0.6, 0.4, 2.5, 1000.0]), 0.5, 3, np.int8)
    np.testing.assert_array_equal(q, [-128, 2, 4, 8, 127])
    assert dequantize(np.array([3, 5], np.int8), 0.5, 3).tolist() == [0.0, 1.0]


def test_card_fields_and_defaults(tiny_tflite, tmp_path):
    m = TFLiteModel(tiny_tflite["int8"])
    assert (m.input_size, m.channels, m.threshold, m.resize_mode) == (32, 1, 0.5, "stretch")
    assert m.output_activation == "sigmoid" and m.card is not None
    bare = tmp_path / "bare.tflite"
    shutil.copy(tiny_tflite["int8"], bare)
    b = TFLiteModel(bare)  # no card: interpreter details, threshold 0.5, stretch
    assert b.card is None and b.threshold == 0.5 and b.resize_mode == "stretch"
    assert isinstance(b, Predictor)


def test_external_normalization_from_card(tiny_tflite, tmp_path):
    path = tmp_path / "ext.tflite"
    shutil.copy(tiny_tflite["float"], path)
    card = json.loads(tiny_tflite["float"].with_suffix(".json").read_text())
    card["input"]["normalization"] = {"mean": [0.25], "std": [0.5], "applied": "external"}
    path.with_suffix(".json").write_text(json.dumps(card))
    m = TFLiteModel(path)
    x = np.array([0.0, 127.5, 255.0], np.float32).reshape(1, 1, 3, 1)
    np.testing.assert_allclose(
        m.preprocess(x).ravel(), [(0 - 0.25) / 0.5, (0.5 - 0.25) / 0.5, (1 - 0.25) / 0.5]
    )


def test_dynamic_batch_model_runs_batches(tiny_tflite):
    m = TFLiteModel(tiny_tflite["int8_dynamic"])
    assert m.dynamic_batch
    x = _pixels(3)
    batched = m.predict(x)
    single = np.concatenate([m.predict(x[i : i + 1]) for i in range(3)])
    np.testing.assert_array_equal(batched, single)


class _PixelPredictor:
    """prob = pixel / 255: tiling and resizing must give back the image itself."""

    input_size = 16
    channels = 1
    resize_mode = "stretch"
    threshold = 0.5

    def __init__(self):
        self.calls = []

    def predict(self, batch):
        self.calls.append(batch.shape)
        return (batch / 255.0).astype(np.float32)


def test_tiling_reconstructs_identity_predictor():
    img = np.random.default_rng(0).integers(0, 256, (41, 37, 1)).astype(np.uint8)
    p = _PixelPredictor()
    prob = predict_image(p, img, tile=True, overlap=0.25)
    assert prob.shape == (41, 37, 1)
    np.testing.assert_allclose(prob, img / 255.0, atol=1e-5)
    # starts with stride 12 (16 * 0.75), last window flush with the end: 0, 12, 24, 25
    assert tile_starts(41, 16, 0.25) == [0, 12, 24, 25]
    assert sum(c[0] for c in p.calls) == len(tile_starts(41, 16, 0.25)) * len(
        tile_starts(37, 16, 0.25)
    )
    w = blend_window(16)
    assert w.min() > 0 and w[7:9, 7:9].min() == w.max()


def test_predict_image_any_size_and_channel_check(tiny_tflite):
    m = TFLiteModel(tiny_tflite["int8"])
    img = np.random.default_rng(0).integers(0, 256, (70, 50, 1)).astype(np.uint8)
    assert predict_image(m, img).shape == (70, 50, 1)
    assert predict_image(m, img[..., 0], tile=True).shape == (70, 50, 1)
    same = img[:32, :32]
    np.testing.assert_allclose(
        predict_image(m, same)[None], m.predict(same[None].astype(np.float32)), atol=1e-6
    )
    with pytest.raises(DataError, match="3 channels but the model expects 1"):
        predict_image(m, np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(DataError, match="does not match the model"):
        m.predict(np.zeros((1, 16, 16, 1), np.float32))


def test_predict_files_writes_masks_and_overlays(tmp_path):
    img = np.tile(np.arange(0, 256, 8, dtype=np.uint8), (20, 1))  # 20 x 32, left dark, right bright
    src = tmp_path / "in" / "scan.png"
    src.parent.mkdir()
    cv2.imwrite(str(src), img)
    recs = predict_files(_PixelPredictor(), [src], tmp_path / "out")
    mask = cv2.imread(recs[0]["mask"], cv2.IMREAD_UNCHANGED)
    overlay = cv2.imread(recs[0]["overlay"], cv2.IMREAD_UNCHANGED)
    assert set(np.unique(mask)) == {0, 255}
    # prob = pixel/255 resized to 16x16 and back: foreground exactly where pixel >= 128
    # up to the interpolation at the boundary column
    expected = (img >= 128) * 255
    assert (mask != expected).mean() < 0.05
    assert overlay.shape == (20, 32, 3)
    assert recs[0]["height"] == 20 and recs[0]["width"] == 32
    assert abs(recs[0]["foreground_fraction"] - 0.5) < 0.05
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "scan_mask.png",
        "scan_overlay.png",
    ]


def test_bad_model_files(tiny_tflite, tmp_path):
    not_tfl = tmp_path / "model.tflite"
    not_tfl.write_bytes(b"PK\x03\x04 this is a zip, not a flatbuffer")
    with pytest.raises(
        ModelError, match=r"model.tflite: not a TFLite model \(missing TFL3 identifier\)"
    ):
        TFLiteModel(not_tfl)
    truncated = tmp_path / "trunc.tflite"
    truncated.write_bytes(tiny_tflite["int8"].read_bytes()[:2000])
    with pytest.raises(ModelError, match="trunc.tflite: truncated"):
        TFLiteModel(truncated)
    with pytest.raises(ModelError, match="model file not found"):
        TFLiteModel(tmp_path / "missing.tflite")


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_bad_runtime_and_delegate(tiny_tflite, tmp_path):
    with pytest.raises(ConfigError, match="unknown runtime 'onnx'"):
        TFLiteModel(tiny_tflite["int8"], runtime="onnx")
    fake = tmp_path / "libfake_delegate.so"
    fake.write_bytes(b"\x7fELF not really")
    with pytest.raises(ModelError, match="libfake_delegate.so: delegate failed to load"):
        TFLiteModel(tiny_tflite["int8"], delegate=f"external:{fake}")
    with pytest.raises(ModelError, match="delegate library not found"):
        TFLiteModel(tiny_tflite["int8"], delegate="external:/nonexistent/lib.so")
    with pytest.raises(ConfigError, match="unknown delegate 'gpu'"):
        TFLiteModel(tiny_tflite["int8"], delegate="gpu")
    # "none" really disables XNNPACK but gives the same answer up to rounding
    a = TFLiteModel(tiny_tflite["float"], delegate="none").predict(_pixels(1))
    b = TFLiteModel(tiny_tflite["float"]).predict(_pixels(1))
    np.testing.assert_allclose(a, b, atol=1e-5)


@pytest.mark.parametrize(("name", "per_call"), [("int8", 1), ("int8_dynamic", 8)])
def test_windows_batched_where_the_model_allows(tiny_tflite, name, per_call):
    """A fixed-batch-1 .tflite runs the windows one by one; a dynamic-batch one 8 at a time."""
    from kseg.inference import InferenceOptions, segment_image

    m = TFLiteModel(tiny_tflite[name])
    calls = []
    raw = m.invoke_raw
    m.invoke_raw = lambda x: calls.append(len(x)) or raw(x)
    img = np.random.default_rng(0).integers(0, 256, (120, 100)).astype(np.uint8)
    res = segment_image(m, img, InferenceOptions(tile="on", overlap=0.25, batch_size=8))
    assert res.tiled and res.prob.shape == (120, 100, 1) and res.windows == 5 * 4
    assert sum(calls) == res.windows and max(calls) == per_call
    assert len(calls) == (res.windows if per_call == 1 else -(-res.windows // 8))
