"""``kseg models list`` in seconds: .tflite sizes estimated from the weights and op count are
within 10 % of real conversions, the list does not convert without ``--measure``, and no
converter log line reaches the terminal."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from kseg.export.measure import profile_architecture
from kseg.models import create_model
from kseg.models_cli import models

REPO = Path(__file__).resolve().parents[2]
TOLERANCE = 0.10  # relative; the zoo's models at their defaults are within 1 %


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("unet", {"depth": 2, "filters": 4}),
        pytest.param("mobile_unet", {"depth": 2, "width": 0.5}, marks=pytest.mark.slow),
    ],
)
def test_estimate_is_within_tolerance_of_the_converted_size(name, options, capfd):
    model = create_model(name, input_shape=(32, 32, 1), **options)
    row = profile_architecture(name, size=32, model=model, calibration=2)
    for kind in ("float32", "int8"):
        measured, estimated = row[f"{kind}_bytes"], row[f"est_{kind}_bytes"]
        assert measured > 0
        assert abs(estimated - measured) <= TOLERANCE * measured, (kind, estimated, measured)
    # the converter wrote nothing to the terminal (its native lines go to file descriptor 2)
    out, err = capfd.readouterr()
    assert "fully_quantize" not in out + err and "W0000" not in out + err, err[-500:]
    assert err.strip() == "", err[-500:]


def test_list_estimates_without_converting(monkeypatch, tmp_path):
    import kseg.export.convert as conv

    def refuse(*args, **kwargs):
        raise AssertionError("kseg models list converted a model without --measure")

    monkeypatch.setattr(conv, "convert_model", refuse)
    result = CliRunner().invoke(
        models, ["list", "--size", "64", "--json", str(tmp_path / "z.json")]
    )
    assert result.exit_code == 0, result.output
    rows = json.loads((tmp_path / "z.json").read_text())["models"]
    assert len(rows) == 10
    for row in rows:
        assert row["float32_bytes"] is None and row["int8_bytes"] is None  # not measured
        # float32 stores 4 bytes per weight (BatchNorm folded away), int8 about 1
        assert 3.0 * row["params"] < row["est_float32_bytes"] < 4.6 * row["params"] + 60_000
        assert 0.7 * row["params"] < row["est_int8_bytes"] < 1.6 * row["params"] + 60_000
    assert "~" in result.output and "--measure" in result.output
    assert "fully_quantize" not in result.output
    # against the converted sizes of the default models published in docs/benchmarks/models.json
    # (sizes do not depend on the input size; only rows whose options still match are compared)
    published = json.loads((REPO / "docs" / "benchmarks" / "models.json").read_text())["models"]
    measured = {r["name"]: r for r in published if r.get("int8_bytes")}
    compared = 0
    for row in rows:
        ref = measured.get(row["name"])
        if ref is None or ref.get("options") != row["options"]:
            continue
        compared += 1
        for kind in ("float32", "int8"):
            est, real = row[f"est_{kind}_bytes"], ref[f"{kind}_bytes"]
            assert abs(est - real) <= 0.05 * real, (row["name"], kind, est, real)
    assert compared >= 3
