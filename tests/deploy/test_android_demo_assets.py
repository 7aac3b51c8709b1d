"""The committed android_demo_assets/ bundles (hc18: one class; usgra: background, nerve, vessel)
are consistent: every file is the one the manifest names, LiteRT reproduces both golden outputs
exactly (XNNPACK and builtin kernels), the golden masks (and usgra's category masks) follow from
them, the metadata is embedded and parsable with the labels inside, the samples carry their
attribution, and each bundle stays small."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from kseg.deploy import verify_manifest
from kseg.deploy.metadata import read_metadata

ROOT = Path(__file__).resolve().parents[2] / "android_demo_assets"
#: bundle -> (labels.txt lines, minimum INT8 validation Dice, words the attribution must hold,
#: largest bundle in MiB)
BUNDLES = {
    "hc18": (["fetal_head"], 0.9, ("CC BY 4.0", "van den Heuvel"), 2),
    # the 25-minute budget-planned U-Net (1.9 M parameters) of tools/bench_usgra.py
    "usgra": (["background", "nerve", "vessel"], 0.6, ("CC BY 4.0", "Kandaouroff"), 5),
}


@pytest.fixture(scope="module", params=sorted(BUNDLES))
def bundle(request):
    assets = ROOT / request.param
    if not (assets / "model.tflite").is_file():
        pytest.fail(f"{assets}: missing; make it with tools/make_android_assets.sh {request.param}")
    return request.param, assets, json.loads((assets / "model.json").read_text())


def test_manifest_matches_every_file(bundle):
    name, assets, _ = bundle
    assert verify_manifest(assets) == []
    manifest = json.loads((assets / "manifest.json").read_text())["files"]
    assert sum(f["size_bytes"] for f in manifest.values()) < BUNDLES[name][3] * 1024 * 1024


def test_golden_outputs_reproduce_with_litert(bundle):
    from kseg.runtime import TFLiteModel

    name_, assets, card = bundle
    m = TFLiteModel(assets / "model.tflite", runtime="litert")
    builtin = TFLiteModel(assets / "model.tflite", runtime="litert", delegate="none")
    assert (m.input_dtype, m.channels) == (np.uint8, 3)
    k = int(card["output"]["shape"][-1])
    assert k == (1 if name_ == "hc18" else 3)
    names = sorted(p.name[: -len(".input.npy")] for p in (assets / "golden").glob("*.input.npy"))
    assert names == sorted(card["bundle"]["samples"]) and len(names) >= 3
    for name in names:
        x = np.load(assets / "golden" / f"{name}.input.npy")
        assert x.dtype == np.uint8 and x.shape == tuple(card["input"]["shape"])
        y = m.invoke_raw(x)
        np.testing.assert_array_equal(y, np.load(assets / "golden" / f"{name}.output.npy"))
        ref = np.load(assets / "golden" / f"{name}.output_builtin.npy")
        np.testing.assert_array_equal(builtin.invoke_raw(x), ref)
        prob = (y.astype(np.float32) - m.output_zero_point) * m.output_scale
        mask = cv2.imread(str(assets / "golden" / f"{name}.mask.png"), cv2.IMREAD_UNCHANGED)
        if k == 1:
            want = (prob[0, ..., 0] > card["output"]["threshold"]) * 255
            np.testing.assert_array_equal(mask, want)
        else:
            category = cv2.imread(
                str(assets / "golden" / f"{name}.category.png"), cv2.IMREAD_UNCHANGED
            )
            np.testing.assert_array_equal(category, prob[0].argmax(-1))
            np.testing.assert_array_equal(mask, category.astype(np.uint16) * (255 // (k - 1)))
        png = cv2.cvtColor(cv2.imread(str(assets / "samples" / f"{name}.png")), cv2.COLOR_BGR2RGB)
        np.testing.assert_array_equal(png, x[0])


def test_metadata_is_present_and_parsable(bundle):
    name_, assets, _ = bundle
    labels = (assets / "labels.txt").read_text().splitlines()
    assert labels == BUNDLES[name_][0]
    found = read_metadata(assets / "model.tflite")
    assert found["has_metadata"]
    assert found["associated_files"] == {"labels.txt": (assets / "labels.txt").read_bytes()}
    md = json.loads((assets / "metadata.json").read_text())
    assert md["writer"] == "tflite_support.metadata_writers.image_segmenter"
    sub = md["metadata"]["subgraph_metadata"][0]
    assert sub["input_tensor_metadata"][0]["content"]["content_properties"]["color_space"] == "RGB"
    assert md["metadata"]["name"] in (assets / "README.md").read_text()


def test_demo_model_is_accurate_enough_and_attributed(bundle):
    name_, assets, card = bundle
    _, min_dice, words, _ = BUNDLES[name_]
    assert card["parity"]["passed"] is True and card["tflite_dice"] > min_dice
    attribution = (assets / "samples" / "ATTRIBUTION.md").read_text()
    for word in words:
        assert word in attribution


def test_no_machine_paths_leave_with_the_bundle(bundle):
    """Cards, README and the metadata inside model.tflite name runs and data by folder name only."""
    import re

    from kseg.deploy.bundle import public_paths

    _, assets, _ = bundle
    texts = {p.name: p.read_text() for p in assets.iterdir() if p.suffix in (".json", ".md")}
    texts["model.tflite"] = (assets / "model.tflite").read_bytes().decode("latin-1")
    for name, text in texts.items():
        found = re.findall(r"(?:/tmp/|/work/|/home/|/root/)[^\s\"']*", text)
        assert not found, f"{name} holds machine paths: {found[:3]}"
    assert public_paths({"a": ["/x/y/run1: /d/hc18"]}) == {"a": ["run1: hc18"]}


def test_readme_is_the_template_text_with_the_measured_arm64_figures(bundle):
    """The README is what `kseg export android` writes from the bundle's own files, with the arm64
    figures tools/bundle_consumer_check.sh measured (LiteRT 2.3.0 on emulated arm64 CPUs). XNNPACK
    is exact on arm64 except where an int8 SOFTMAX head runs on the builtin kernels (usgra)."""
    from kseg.deploy.bundle import readme_from_folder

    name, assets, card = bundle
    text = (assets / "README.md").read_text()
    assert text == readme_from_folder(assets)
    arm64 = card["bundle"]["golden_kernels"]["arm64"]
    # the bar: 0.998, lower only where x86-64's own builtin kernels agree less (less 0.002)
    bar = arm64.get("mask_bar", 0.998)
    assert bar == 0.998 or bar == round(arm64["x86_builtin_min_mask_agreement"] - 0.002, 4)
    assert arm64["builtin_min_mask_agreement"] >= bar
    assert arm64["xnnpack_min_mask_agreement"] >= bar
    if name == "hc18":  # sigmoid head: every op on XNNPACK
        assert arm64["xnnpack_exact"] and arm64["xnnpack_max_diff"] == 0
        assert arm64["builtin_max_diff_vs_output"] > 0
        assert (
            "| arm64 (phones, boards) | XNNPACK (LiteRT's default, MediaPipe Tasks) | `output.npy` exactly |"
            in text
        )
    assert (
        f"up to {arm64['builtin_max_diff_vs_output_builtin']:.0f} steps from `output_builtin.npy`"
        in text
    )
    assert "should reproduce its tensor exactly" not in text  # the x86-only promise is gone
