"""The exporters' shared card ending: parity figures named after the format, last in the card, the
card written before the gate, and a failed gate a one-line ParityError that keeps file and card."""

from __future__ import annotations

import json

import pytest

from kseg.export.card import CARD_FORMAT, sha256_bytes
from kseg.export.parity import ParityError
from kseg.export.pipeline import file_card, write_gated_card


def _card(out, data: bytes, kind: str) -> dict:
    return {
        "format": CARD_FORMAT,
        kind: {**file_card(out, data), "mode": "int8", "description": "test"},
        "source": {"path": "m.keras", "name": "unet", "sha256": "0" * 64},
        "input": {
            "shape": [1, 8, 8, 1],
            "dtype": "int8",
            "pixel_range": [0, 255],
            "normalization": {"applied": "in_model"},
            "resize": "stretch",
        },
        "output": {
            "shape": [1, 8, 8, 1],
            "dtype": "int8",
            "activation": "sigmoid",
            "threshold": 0.5,
        },
    }


def _parity(kind: str, drop: float, passed: bool | None) -> dict:
    return {
        "float_dice": 0.9,
        f"{kind}_dice": 0.9 - drop,
        "dice_drop": drop,
        "max_dice_drop": 0.01,
        "passed": passed,
    }


def test_file_card_describes_the_bytes(tmp_path):
    data = b"\x00" * 1000
    fc = file_card(tmp_path / "m.onnx", data)
    assert fc["path"] == str(tmp_path / "m.onnx") and fc["size_bytes"] == 1000
    assert fc["sha256"] == sha256_bytes(data)
    assert 0 < fc["gzip_bytes"] < 100  # zeros compress


@pytest.mark.parametrize("kind", ["tflite", "onnx"])
def test_a_passing_card_ends_with_the_parity_figures_of_its_format(tmp_path, kind):
    out = tmp_path / f"m.int8.{kind}"
    parity = _parity(kind, 0.004, True)
    card = write_gated_card(
        _card(out, b"abc", kind), out, parity, kind=kind, max_dice_drop=0.01, hint="try QAT"
    )
    assert list(card)[-5:] == ["float_dice", f"{kind}_dice", "dice_drop", "size_bytes", "parity"]
    assert card[f"{kind}_dice"] == pytest.approx(0.896) and card["size_bytes"] == 3
    on_disk = json.loads(out.with_suffix(".json").read_text())
    assert list(on_disk) == list(card) and on_disk["parity"]["passed"] is True
    assert "PASSED" in out.with_suffix(".md").read_text()


def test_a_failed_gate_writes_the_card_then_raises_one_line(tmp_path):
    out = tmp_path / "m.int8.onnx"
    with pytest.raises(ParityError) as err:
        write_gated_card(
            _card(out, b"abcd", "onnx"),
            out,
            _parity("onnx", 0.05, False),
            kind="onnx",
            max_dice_drop=0.01,
            hint="try more calibration images or QAT",
        )
    assert str(err.value) == (
        f"{out}: Dice drop 0.0500 exceeds --max-dice-drop 0.01; file kept, card marked failed "
        "(try more calibration images or QAT)"
    )
    assert json.loads(out.with_suffix(".json").read_text())["parity"]["passed"] is False
    assert "FAILED" in out.with_suffix(".md").read_text()


def test_an_ungated_card_does_not_raise(tmp_path):
    out = tmp_path / "m.tflite"
    parity = _parity("tflite", 0.5, None)
    card = write_gated_card(
        _card(out, b"x", "tflite"), out, parity, kind="tflite", max_dice_drop=None, hint="unused"
    )
    assert card["parity"]["passed"] is None
    assert "not gated" in out.with_suffix(".md").read_text()
