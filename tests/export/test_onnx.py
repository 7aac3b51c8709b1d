"""ONNX export: the float graph matches Keras, INT8 QDQ passes the same Dice gate on the same
calibration images as TFLite, the gate fails a bad calibration, and a missing extra is one line."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from click.testing import CliRunner

pytest.importorskip(
    "onnxruntime",
    reason="ONNX extra not installed (pip install 'kseg[onnx]'; tools/setup_env.sh does)",
)
pytest.importorskip("tf2onnx", reason="ONNX extra not installed (pip install 'kseg[onnx]')")

from kseg.cli import main  # noqa: E402
from kseg.errors import ModelError  # noqa: E402
from kseg.export import ParityError  # noqa: E402
from kseg.export.onnx import convert_onnx, export_onnx, onnx_graph_facts  # noqa: E402
from kseg.runtime import ONNXModel  # noqa: E402


@pytest.fixture(scope="module")
def onnx_int8_card(trained_run):
    return export_onnx(trained_run / "best.keras", "int8", out=trained_run / "m.int8.onnx")


@pytest.mark.parametrize("name", ["unet", "attention_unet"])
def test_float_onnx_matches_keras(tmp_path, name):
    from kseg.models import create_model

    model = create_model(name, input_shape=(32, 32, 1), depth=2, filters=4, mean=0.3, std=0.2)
    path = tmp_path / f"{name}.onnx"
    path.write_bytes(convert_onnx(model))
    onnx_model = ONNXModel(path, num_threads=1)
    assert (onnx_model.input_size, onnx_model.channels, onnx_model.dynamic_batch) == (32, 1, True)
    x = np.random.default_rng(0).uniform(0, 255, (3, 32, 32, 1)).astype(np.float32)
    got = onnx_model.predict(x)  # one call with batch 3: the batch dimension is free
    want = model(x, training=False).numpy()
    assert got.shape == want.shape == (3, 32, 32, 1)
    assert float(np.max(np.abs(got - want))) < 1e-5
    assert float(np.std(want)) > 1e-3  # the comparison is not between two constants
    facts = onnx_graph_facts(path.read_bytes())
    assert facts["opset"] == 17 and facts["quantize_nodes"] == 0


def test_int8_onnx_passes_gate_on_the_tflite_calibration(onnx_int8_card, trained_run):
    card = onnx_int8_card
    assert card["onnx"]["format"] == "onnx" and card["onnx"]["mode"] == "int8"
    assert card["onnx"]["quantization"]["format"] == "QDQ"
    assert card["onnx"]["quantize_nodes"] > 5 and card["onnx"]["float_ops"] == []
    assert card["float_dice"] > 0.4  # a model that learned: parity on noise would mean nothing
    assert abs(card["dice_drop"]) <= 0.02 and card["parity"]["passed"] is True
    assert card["parity"]["pixel_agreement"] > 0.97
    assert card["onnx_dice"] == pytest.approx(card["float_dice"] - card["dice_drop"])
    # the same calibration images a TFLite INT8 export of the same model uses (export_tflite
    # selects them with prepare_export too)
    from kseg.export.card import sha256_bytes
    from kseg.export.tflite import prepare_export
    from kseg.models import load_model

    prep = prepare_export(trained_run / "best.keras", load_model(trained_run / "best.keras"), None)
    assert card["calibration"]["sha256"] == sha256_bytes(prep.calibration.tobytes())
    assert card["calibration"]["n_images"] == len(prep.calibration) > 0
    # split-faithful: parity on the run's validation images, calibration from its training split
    assert card["data"]["names"] == list(prep.splits.val.names)
    assert set(card["calibration"]["names"]) <= set(prep.splits.train.names)
    assert card["data"]["provenance"]["split"] == "val"
    assert card["input"]["preprocess"] == []
    on_disk = json.loads((trained_run / "m.int8.json").read_text())
    assert on_disk["onnx"]["sha256"] == card["onnx"]["sha256"]
    assert on_disk["size_bytes"] == (trained_run / "m.int8.onnx").stat().st_size
    md = (trained_run / "m.int8.md").read_text()
    assert "PASSED" in md and "ONNX Runtime" in md and f"{card['onnx_dice']:.4f}" in md


def test_gate_fails_on_bad_calibration_and_keeps_the_file(trained_run):
    out = trained_run / "bad.int8.onnx"
    black = np.zeros(
        (8, 64, 64, 1), np.uint8
    )  # every activation range collapses: real images saturate
    with pytest.raises(ParityError, match="exceeds --max-dice-drop"):
        export_onnx(
            trained_run / "best.keras", "int8", out=out, calibration=black, max_dice_drop=0.01
        )
    card = json.loads(out.with_suffix(".json").read_text())
    assert out.stat().st_size > 0 and card["parity"]["passed"] is False and card["dice_drop"] > 0.01
    assert "FAILED" in out.with_suffix(".md").read_text()


def test_cli_convert_float_onnx_and_bad_flags(trained_run, onnx_int8_card):
    out = trained_run / "cli.float32.onnx"
    res = CliRunner().invoke(
        main, ["convert", "--model", str(trained_run / "best.keras"), "--onnx", "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    assert "onnx float32, opset 17" in res.output and out.is_file()
    f32 = json.loads(out.with_suffix(".json").read_text())
    assert f32["onnx"]["mode"] == "float32" and f32["calibration"] is None
    assert f32["parity"]["max_abs_prob_diff"] < 1e-4 and abs(f32["dice_drop"]) < 1e-3
    assert onnx_int8_card["size_bytes"] < 0.5 * f32["size_bytes"]
    for extra in (["--fp16"], ["--int8", "--uint8"]):
        res = CliRunner().invoke(
            main, ["convert", "--model", str(trained_run / "best.keras"), "--onnx", *extra]
        )
        assert res.exit_code == 2 and res.output.startswith(
            "error: --onnx writes float32 or --int8"
        )
    res = CliRunner().invoke(
        main, ["convert", "--model", str(trained_run / "best.keras"), "--onnx", "--out", "x.tflite"]
    )
    assert res.exit_code == 2 and "use a file name ending in .onnx" in res.output


@pytest.mark.parametrize("module", ["tf2onnx", "onnxruntime"])
def test_missing_extra_is_one_clear_line(trained_run, monkeypatch, module):
    monkeypatch.setitem(sys.modules, module, None)  # import raises ImportError
    with pytest.raises(
        ModelError, match=rf"needs {module}, which is not installed; pip install 'kseg\[onnx\]'"
    ):
        export_onnx(trained_run / "best.keras", out=trained_run / "never.onnx")
    res = CliRunner().invoke(
        main, ["convert", "--model", str(trained_run / "best.keras"), "--onnx"]
    )
    assert res.exit_code == 2
    assert res.output.strip().splitlines() == [
        f"error: ONNX export needs {module}, which is not installed; pip install 'kseg[onnx]'"
    ]
    assert not (trained_run / "never.onnx").exists()
