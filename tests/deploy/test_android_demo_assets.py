"""The committed android_demo_assets/ is consistent: every file is the one the manifest names,
LiteRT reproduces both golden outputs exactly (XNNPACK and builtin kernels), the metadata is embedded and parsable, the samples
carry their attribution, and the bundle stays small."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from kseg.deploy import verify_manifest
from kseg.deploy.metadata import read_metadata

ASSETS = Path(__file__).resolve().parents[2] / "android_demo_assets"


@pytest.fixture(scope="module")
def card():
    if not (ASSETS / "model.tflite").is_file():
        pytest.fail(f"{ASSETS}: missing; make it with tools/make_android_assets.sh")
    return json.loads((ASSETS / "model.json").read_text())


def test_manifest_matches_every_file(card):
    assert verify_manifest(ASSETS) == []
    manifest = json.loads((ASSETS / "manifest.json").read_text())["files"]
    assert sum(f["size_bytes"] for f in manifest.values()) < 2 * 1024 * 1024


def test_golden_outputs_reproduce_with_litert(card):
    from kseg.runtime import TFLiteModel

    m = TFLiteModel(ASSETS / "model.tflite", runtime="litert")
    builtin = TFLiteModel(ASSETS / "model.tflite", runtime="litert", delegate="none")
    assert (m.input_dtype, m.channels) == (np.uint8, 3)
    names = sorted(p.name[: -len(".input.npy")] for p in (ASSETS / "golden").glob("*.input.npy"))
    assert names == sorted(card["bundle"]["samples"]) and len(names) >= 3
    for name in names:
        x = np.load(ASSETS / "golden" / f"{name}.input.npy")
        assert x.dtype == np.uint8 and x.shape == tuple(card["input"]["shape"])
        y = m.invoke_raw(x)
        np.testing.assert_array_equal(y, np.load(ASSETS / "golden" / f"{name}.output.npy"))
        ref = np.load(ASSETS / "golden" / f"{name}.output_builtin.npy")
        np.testing.assert_array_equal(builtin.invoke_raw(x), ref)
        prob = (y.astype(np.float32) - m.output_zero_point) * m.output_scale
        mask = cv2.imread(str(ASSETS / "golden" / f"{name}.mask.png"), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(mask, (prob[0, ..., 0] > card["output"]["threshold"]) * 255)
        png = cv2.cvtColor(cv2.imread(str(ASSETS / "samples" / f"{name}.png")), cv2.COLOR_BGR2RGB)
        np.testing.assert_array_equal(png, x[0])


def test_metadata_is_present_and_parsable(card):
    found = read_metadata(ASSETS / "model.tflite")
    assert found["has_metadata"]
    assert found["associated_files"] == {"labels.txt": (ASSETS / "labels.txt").read_bytes()}
    md = json.loads((ASSETS / "metadata.json").read_text())
    assert md["writer"] == "tflite_support.metadata_writers.image_segmenter"
    sub = md["metadata"]["subgraph_metadata"][0]
    assert sub["input_tensor_metadata"][0]["content"]["content_properties"]["color_space"] == "RGB"
    assert md["metadata"]["name"] in (ASSETS / "README.md").read_text()


def test_demo_model_is_accurate_and_attributed(card):
    assert card["parity"]["passed"] is True and card["tflite_dice"] > 0.9  # HC18 validation
    attribution = (ASSETS / "samples" / "ATTRIBUTION.md").read_text()
    assert "CC BY 4.0" in attribution and "van den Heuvel" in attribution


def test_no_machine_paths_leave_with_the_bundle(card):
    """Cards, README and the metadata inside model.tflite name runs and data by folder name only."""
    import re

    from kseg.deploy.bundle import public_paths

    texts = {p.name: p.read_text() for p in ASSETS.iterdir() if p.suffix in (".json", ".md")}
    texts["model.tflite"] = (ASSETS / "model.tflite").read_bytes().decode("latin-1")
    for name, text in texts.items():
        found = re.findall(r"(?:/tmp/|/work/|/home/|/root/)[^\s\"']*", text)
        assert not found, f"{name} holds machine paths: {found[:3]}"
    assert public_paths({"a": ["/x/y/run1: /d/hc18"]}) == {"a": ["run1: hc18"]}


def test_readme_is_the_template_text_with_the_measured_arm64_figures(card):
    """The README is what `kseg export android` writes from the bundle's own files, with the arm64
    figures tools/bundle_consumer_check.sh measured (LiteRT 2.3.0 on emulated arm64 CPUs)."""
    from kseg.deploy.bundle import readme_from_folder

    text = (ASSETS / "README.md").read_text()
    assert text == readme_from_folder(ASSETS)
    arm64 = card["bundle"]["golden_kernels"]["arm64"]
    assert arm64["xnnpack_exact"] and arm64["xnnpack_max_diff"] == 0
    assert arm64["builtin_min_mask_agreement"] >= 0.998 and arm64["builtin_max_diff_vs_output"] > 0
    assert (
        "| arm64 (phones, boards) | XNNPACK (LiteRT's default, MediaPipe Tasks) | `output.npy` exactly |"
        in text
    )
    assert (
        f"up to {arm64['builtin_max_diff_vs_output_builtin']:.0f} steps from `output_builtin.npy`"
        in text
    )
    assert "should reproduce its tensor exactly" not in text  # the x86-only promise is gone
