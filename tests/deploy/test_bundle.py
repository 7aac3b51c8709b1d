"""``kseg export android`` on a trained model: what the bundle holds, that its golden files are
what LiteRT computes, and one clear line (nothing left behind) for what cannot be exported."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from kseg.cli import main
from kseg.deploy import export_android, verify_manifest
from kseg.deploy.metadata import read_metadata
from kseg.runtime import TFLiteModel
from kseg.runtime.model import dequantize


@pytest.fixture(scope="module")
def bundle(trained_run, metadata_env, tmp_path_factory):
    out = tmp_path_factory.mktemp("bundle") / "android"
    summary = export_android(trained_run, out, samples=3, bench_runs=5)
    return out, summary


def test_bundle_model_takes_uint8_rgb_and_passes_the_parity_gate(bundle):
    out, summary = bundle
    card = json.loads((out / "model.json").read_text())
    assert card["input"]["shape"] == [1, 64, 64, 3] and card["input"]["dtype"] == "uint8"
    assert card["input"]["zero_point"] == 0 and card["output"]["dtype"] == "uint8"
    assert card["tflite"]["builtin_only"] and not card["tflite"]["float_ops"]
    assert card["parity"]["passed"] is True and card["float_dice"] > 0.4
    assert abs(card["dice_drop"]) <= 0.02
    assert card["bundle"]["rgb_to_gray_in_graph"] is True
    m = TFLiteModel(out / "model.tflite", runtime="litert")
    assert (m.input_dtype, m.channels, m.input_size) == (np.uint8, 3, 64)


def test_manifest_lists_every_file_and_detects_a_change(bundle, tmp_path):
    out, summary = bundle
    manifest = json.loads((out / "manifest.json").read_text())["files"]
    expected = {
        "model.tflite",
        "labels.txt",
        "model.json",
        "model.md",
        "README.md",
        "metadata.json",
    }
    assert expected <= set(manifest) and summary["files"] == len(manifest)
    assert len([n for n in manifest if n.startswith("golden/")]) == 3 * 4  # in, 2 out, mask
    assert verify_manifest(out) == []
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    (copy / "labels.txt").write_text("other\n")
    (copy / "extra.txt").write_text("x")
    problems = verify_manifest(copy)
    assert any(p.startswith("labels.txt") for p in problems)
    assert any(p.startswith("extra.txt") for p in problems)


def test_golden_files_are_what_litert_computes(bundle):
    out, summary = bundle
    threshold = summary["card"]["output"]["threshold"]  # chosen on validation by the export
    m = TFLiteModel(out / "model.tflite", runtime="litert")
    builtin = TFLiteModel(out / "model.tflite", runtime="litert", delegate="none")
    names = sorted(p.name[: -len(".input.npy")] for p in (out / "golden").glob("*.input.npy"))
    assert len(names) == 3
    for name in names:
        x = np.load(out / "golden" / f"{name}.input.npy")
        ref = np.load(out / "golden" / f"{name}.output_builtin.npy")
        np.testing.assert_array_equal(builtin.invoke_raw(x), ref)
        x = np.load(out / "golden" / f"{name}.input.npy")
        png = cv2.cvtColor(cv2.imread(str(out / "samples" / f"{name}.png")), cv2.COLOR_BGR2RGB)
        np.testing.assert_array_equal(png, x[0])  # the sample PNG holds the exact input pixels
        y = m.invoke_raw(x)
        np.testing.assert_array_equal(y, np.load(out / "golden" / f"{name}.output.npy"))
        prob = dequantize(y, m.output_scale, m.output_zero_point)[0, ..., 0]
        mask = cv2.imread(str(out / "golden" / f"{name}.mask.png"), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(mask, (prob > threshold) * 255)
        assert 0 < (mask > 0).mean() < 1  # a real segmentation, not an empty or full mask


def test_metadata_is_embedded_with_labels_and_read_back(bundle):
    out, _ = bundle
    found = read_metadata(out / "model.tflite")
    assert found["has_metadata"] and found["metadata_bytes"] > 100
    assert found["associated_files"] == {"labels.txt": (out / "labels.txt").read_bytes()}
    md = json.loads((out / "metadata.json").read_text())["metadata"]
    inp = md["subgraph_metadata"][0]["input_tensor_metadata"][0]
    assert inp["content"]["content_properties"]["color_space"] == "RGB"
    assert inp["process_units"][0]["options"] == {"mean": [0.0] * 3, "std": [1.0] * 3}
    outp = md["subgraph_metadata"][0]["output_tensor_metadata"][0]
    assert outp["associated_files"][0]["name"] == "labels.txt"
    assert md["name"].startswith("kseg unet") and md["version"] == "1"


def test_readme_states_io_threshold_and_measured_latency(bundle):
    out, summary = bundle
    text = (out / "README.md").read_text()
    threshold = summary["card"]["output"]["threshold"]
    assert summary["card"]["output"]["threshold_source"] == "validation"
    assert "uint8 [1, 64, 64, 3]" in text and f"confidence > {threshold}" in text
    p50 = summary["bench"]["cpu"]["latency_ms"]["p50"]
    assert f"p50 {p50:.2f} ms" in text
    assert "kseg estimate, not a compiler result" in text
    assert "MediaPipe Tasks" in text and "LiteRT Interpreter" in text


def test_existing_folder_gets_one_line_and_is_kept(trained_run, metadata_env, tmp_path):
    out = tmp_path / "b"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    r = CliRunner().invoke(
        main, ["export", "android", "--model", str(trained_run), "--out", str(out)]
    )
    assert r.exit_code == 2 and r.output.count("\n") == 1
    assert "folder exists" in r.output and "--force" in r.output
    assert (out / "keep.txt").read_text() == "mine"


@pytest.mark.parametrize("case", ["denoiser", "missing_writer", "not_a_model"])
def test_refusals_are_one_line_and_leave_nothing(case, tmp_path, monkeypatch, metadata_env):
    from kseg.models import create_model

    model = tmp_path / "m.keras"
    if case == "denoiser":
        create_model("denoising_ae", input_shape=(32, 32, 1), depth=2, filters=4).save(model)
        expect = "outputs an image"
    elif case == "missing_writer":
        create_model("unet", input_shape=(32, 32, 1), depth=2, filters=4).save(model)
        monkeypatch.setenv("KSEG_METADATA_PYTHON", str(tmp_path / "nope" / "python"))
        expect = "setup_deploy_env.sh"
    else:
        model = tmp_path / "m.txt"
        model.write_text("x")
        expect = "expected a .keras or .h5"
    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["export", "android", "--model", str(model), "--out", str(out)])
    assert r.exit_code == 2, r.output
    assert r.output.startswith("error: ") and r.output.count("\n") == 1 and expect in r.output
    assert not out.exists() and not list(tmp_path.glob(".out*"))  # no half-written bundle


def test_force_swaps_the_folder_in_one_rename(tmp_path):
    from kseg.deploy.bundle import _replace_dir

    old, new = tmp_path / "b", tmp_path / ".b.tmp"
    old.mkdir()
    (old / "a.txt").write_text("old")
    new.mkdir()
    (new / "b.txt").write_text("new")
    _replace_dir(new, old)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]
    assert [p.name for p in old.iterdir()] == ["b.txt"]
