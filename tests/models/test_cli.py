"""``kseg models list`` / ``info`` through click's CliRunner."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from kseg.models_cli import models


def test_cli_module_and_models_package_import_without_tensorflow():
    code = "import sys, kseg.models_cli, kseg.models; print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_list_without_conversion_shows_every_model_with_params_and_macs(tmp_path):
    result = CliRunner().invoke(
        models, ["list", "--size", "64", "--no-convert", "--json", str(tmp_path / "zoo.json")]
    )
    assert result.exit_code == 0, result.output
    rows = json.loads((tmp_path / "zoo.json").read_text())["models"]
    assert [r["name"] for r in rows][:3] == ["attention_unet", "denoising_ae", "dilated_unet"]
    assert len(rows) == 10
    unet = next(r for r in rows if r["name"] == "unet")
    assert unet["params"] > 1_000_000 and unet["macs"] > 0
    assert "MACs@64" in result.output and "segnet" in result.output


def test_info_prints_doc_options_and_summary_without_conversion():
    result = CliRunner().invoke(
        models,
        ["info", "segnet", "-o", "depth=2", "-o", "filters=4", "--size", "32", "--no-convert"],
    )
    assert result.exit_code == 0, result.output
    assert "Badrinarayanan" in result.output
    assert '"filters": 4' in result.output
    assert "Total params" in result.output and "MaxUnpool2D" in result.output


@pytest.mark.slow
def test_info_converts_and_reports_int8_ops():
    result = CliRunner().invoke(
        models,
        [
            "info",
            "unet",
            "-o",
            "depth=2",
            "-o",
            "filters=4",
            "--size",
            "32",
            "--png",
            "/nonexistent/x.png",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "Ronneberger" in result.output
    assert '"depth": 2' in result.output
    assert "yes" in result.output  # INT8 convertible
    assert "int8 ops: " in result.output and "CONV_2D" in result.output
    assert "Total params" in result.output


def test_info_bad_option_is_a_one_line_error():
    result = CliRunner().invoke(models, ["info", "unet", "-o", "colour=red", "--no-convert"])
    assert result.exit_code == 2
    lines = [ln for ln in result.output.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "has no option 'colour'" in lines[0]
    assert "Traceback" not in result.output
