"""``kseg preprocess compare`` and ``list`` through click's CliRunner."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from kseg.cli import main


def _run(*args):
    return CliRunner().invoke(main, ["preprocess", *args], catch_exceptions=False)


def test_compare_synthetic_writes_table_json_png(tmp_path):
    out = tmp_path / "cmp"
    res = _run(
        "compare",
        "synthetic:ultrasound:4",
        "--size",
        "96",
        "--filters",
        "none",
        "--filters",
        "median:size=7",
        "--filters",
        "lee:size=7+clahe",
        "--out",
        str(out),
    )
    assert res.exit_code == 0, res.output
    rep = json.loads((out / "compare.json").read_text())
    rows = {r["chain"]: r for r in rep["chains"]}
    assert list(rows) == ["none", "median:size=7", "lee:size=7+clahe"]
    assert rep["has_clean"] and rep["n_images"] == 4
    # a 7x7 median smooths speckle: more looks, closer to the clean image
    assert rows["median:size=7"]["enl"] > 1.5 * rows["none"]["enl"]
    assert rows["median:size=7"]["ssim"] > rows["none"]["ssim"]
    assert rows["median:size=7"]["psnr"] > rows["none"]["psnr"]
    assert rows["none"]["ms_per_image"] < 1.0  # no filter, nothing to time
    assert rows["lee:size=7+clahe"]["stages"][1] == {"clahe": {"clip": 2.0, "tiles": 8}}
    md = (out / "compare.md").read_text()
    assert "| `median:size=7` |" in md and "SSIM" in md
    assert (out / "compare.png").stat().st_size > 5000
    assert "wrote" in res.output


def test_compare_folder_without_clean_has_no_psnr(tmp_path):
    from kseg.data.synthetic import write_synthetic

    root = write_synthetic("ultrasound", 3, tmp_path / "ds", size=64, seed=1)
    import shutil

    shutil.rmtree(root / "clean")
    res = _run(
        "compare", str(root), "--filters", "none", "--filters", "lee", "--out", str(tmp_path / "o")
    )
    assert res.exit_code == 0, res.output
    rep = json.loads((tmp_path / "o" / "compare.json").read_text())
    assert not rep["has_clean"] and rep["epi_reference"] == "unfiltered input"
    assert rep["chains"][0]["psnr"] is None and rep["chains"][0]["epi"] == pytest.approx(1.0)


def test_compare_errors_are_one_line(tmp_path):
    res = CliRunner().invoke(
        main, ["preprocess", "compare", "synthetic:ultrasound:2", "--filters", "lea"]
    )
    assert res.exit_code == 2
    assert "error: --filters lea: unknown filter 'lea' (did you mean 'lee'?)" in res.output
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    res = CliRunner().invoke(
        main, ["preprocess", "compare", "synthetic:ultrasound:2", "--out", str(tmp_path / "full")]
    )
    assert res.exit_code == 2 and "not an empty folder" in res.output


def test_list_names_every_filter_with_defaults():
    res = _run("list")
    assert res.exit_code == 0
    assert "lee           size=5, looks=None" in res.output
    assert "denoising_ae" in res.output and "clahe" in res.output


@pytest.mark.slow
def test_ablation_trains_one_run_per_chain(tmp_path):
    out = tmp_path / "abl"
    res = _run(
        "compare",
        "synthetic:ultrasound:4",
        "--size",
        "64",
        "--filters",
        "none",
        "--filters",
        "median",
        "--filters",
        "gaussian",
        "--out",
        str(out),
        "--ablation",
        "--epochs",
        "1",
        "--img-size",
        "32",
        "--train-n",
        "16",
    )
    assert res.exit_code == 0, res.output
    rep = json.loads((out / "compare.json").read_text())
    chains = [a["chain"] for a in rep["ablation"]]
    assert chains[0] == "none" and sorted(chains[1:]) == ["gaussian", "median"]
    assert all(0.0 <= a["dice"] <= 1.0 for a in rep["ablation"])
    for a in rep["ablation"]:
        cfg = (out / "ablation" / a["chain"] / "config.yaml").read_text()
        assert ("preprocess: []" in cfg) == (a["chain"] == "none")
