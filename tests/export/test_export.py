"""TFLite export: INT8 file agrees with Keras, has integer IO, builtin ops and a fixed batch; the
parity gate fails a bad calibration and keeps the file; cards carry real values."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kseg.export import ParityError, export_tflite
from kseg.runtime import TFLiteModel

DYNAMIC_SHAPE_OPS = {"SHAPE", "PACK", "STRIDED_SLICE"}


@pytest.fixture(scope="module")
def int8_card(trained_run):
    return export_tflite(trained_run / "best.keras", "int8", out=trained_run / "m.int8.tflite")


def test_int8_agrees_with_keras_and_is_all_integer(int8_card, trained_run):
    card = int8_card
    assert card["input"]["dtype"] == "int8" and card["output"]["dtype"] == "int8"
    # the pixel contract: the quantized input is the pixel itself (scale 1, zero point -128)
    assert card["input"]["scale"] == pytest.approx(1.0, rel=0.02)
    assert card["input"]["zero_point"] == -128
    assert card["input"]["shape"][0] == 1
    assert abs(card["dice_drop"]) <= 0.02
    assert card["float_dice"] > 0.4  # a model that learned: parity on noise would mean nothing
    assert card["parity"]["pixel_agreement"] > 0.97
    assert card["parity"]["passed"] is True
    t = card["tflite"]
    assert t["builtin_only"] and not t["float_ops"] and not t["dynamic_shape_ops"]
    assert not DYNAMIC_SHAPE_OPS & set(t["ops"])
    assert card["size_bytes"] == (trained_run / "m.int8.tflite").stat().st_size


def test_int8_is_much_smaller_than_float32(int8_card, trained_run):
    f32 = export_tflite(trained_run / "best.keras", "float32", out=trained_run / "m.f32.tflite")
    assert f32["dice_drop"] == pytest.approx(0.0, abs=0.005)
    assert f32["input"]["dtype"] == "float32"
    assert int8_card["size_bytes"] < 0.4 * f32["size_bytes"]


def test_uint8_io_has_zero_point_zero(trained_run):
    card = export_tflite(
        trained_run / "best.keras", "int8", io_dtype="uint8", out=trained_run / "m.u8.tflite"
    )
    assert card["input"]["dtype"] == "uint8" and card["output"]["dtype"] == "uint8"
    assert card["input"]["zero_point"] == 0
    assert abs(card["dice_drop"]) <= 0.02


@pytest.mark.parametrize("mode", ["fp16", "dynamic", "int16x8"])
def test_other_modes_convert_and_say_which_they_are(trained_run, mode):
    card = export_tflite(
        trained_run / "best.keras", mode, out=trained_run / f"m.{mode}.tflite", max_dice_drop=0.05
    )
    assert card["tflite"]["mode"] == mode
    assert card["parity"]["passed"] is True
    model = TFLiteModel(trained_run / f"m.{mode}.tflite")
    assert model.input_size == 64


def test_card_files_and_fields(int8_card, trained_run):
    on_disk = json.loads((trained_run / "m.int8.json").read_text())
    assert on_disk["tflite"]["sha256"] == int8_card["tflite"]["sha256"]
    assert (
        on_disk["source"]["params"] > 1000
        and on_disk["source"]["macs"] > on_disk["source"]["params"]
    )
    assert on_disk["calibration"]["n_images"] > 0 and len(on_disk["calibration"]["sha256"]) == 64
    assert on_disk["input"]["normalization"]["applied"] == "in_model"
    # the flips the training applied travel to the card and to the runtime's TTA
    from kseg.config import load_config
    from kseg.runtime import open_model
    from kseg.runtime.keras_model import trained_flips

    aug = load_config(trained_run / "config.yaml").data.augment
    expect = [n for n, p in (("horizontal", aug.hflip_p), ("vertical", aug.vflip_p)) if p > 0]
    assert on_disk["input"]["flips"] == trained_flips(load_config(trained_run / "config.yaml").data)
    assert on_disk["input"]["flips"] == (expect if aug.enabled else [])
    assert open_model(trained_run / "m.int8.tflite").flips == on_disk["input"]["flips"]
    # a one-class card keeps its keys and says how pixels are decided
    assert on_disk["output"]["decision"] == "threshold"
    assert on_disk["output"]["classes"] == ["background", "foreground"]
    assert "per_class" not in on_disk["parity"] and "threshold" in on_disk["output"]
    md = (trained_run / "m.int8.md").read_text()
    assert "PASSED" in md and f"{int8_card['tflite_dice']:.4f}" in md
    assert (trained_run / "m.int8.parity.png").stat().st_size > 1000


def test_gate_fails_on_bad_calibration_and_keeps_the_file(trained_run):
    out = trained_run / "bad.int8.tflite"
    # Calibrating on black images squeezes every activation range to ~0: real images saturate.
    black = np.zeros((8, 64, 64, 1), np.uint8)
    with pytest.raises(ParityError, match="exceeds --max-dice-drop"):
        export_tflite(
            trained_run / "best.keras", "int8", out=out, calibration=black, max_dice_drop=0.01
        )
    assert out.stat().st_size > 0
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["parity"]["passed"] is False
    assert card["dice_drop"] > 0.01
    assert "FAILED" in out.with_suffix(".md").read_text()
    assert card["calibration"]["description"].startswith("8 images given")
