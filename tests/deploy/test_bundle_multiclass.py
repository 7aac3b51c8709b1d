"""``kseg export android`` on a tiny 3-class model (background, nerve, vessel): names in
``labels.txt``, the metadata and the card, golden files per class (the category mask MediaPipe
gives), the README's category-mask instructions, and a manifest that lists it all."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from kseg.deploy import export_android, verify_manifest
from kseg.deploy.metadata import read_metadata
from kseg.runtime import TFLiteModel
from kseg.runtime.model import dequantize

pytestmark = pytest.mark.slow  # trains a tiny model (~1 min on 2 shared cores), then converts

NAMES = ["background", "nerve", "vessel"]


def _three_class_folder(root, n=48, size=64):
    """Speckle frames with a bright disc (class 1, "nerve") and a dark box (class 2, "vessel")."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        img = rng.normal(110, 18, (size, size)).clip(0, 255)
        m = np.zeros((size, size), np.uint8)
        cx, cy = (int(v) for v in rng.integers(14, 50, 2))
        r = int(rng.integers(6, 11))
        cv2.circle(m, (cx, cy), r, 1, -1)
        x, y = (int(v) for v in rng.integers(4, 44, 2))
        box = np.zeros_like(m)
        box[y : y + 14, x : x + 14] = 1
        m[(box > 0) & (m == 0)] = 2
        img[m == 1] += 90
        img[m == 2] -= 80
        cv2.imwrite(str(root / "images" / f"s{i:02d}.png"), img.clip(0, 255).astype(np.uint8))
        cv2.imwrite(str(root / "masks" / f"s{i:02d}.png"), m)  # a label image: 0, 1, 2
    return root


@pytest.fixture(scope="module")
def bundle(metadata_env, tmp_path_factory):
    from kseg.config import load_config
    from kseg.training import train

    data = _three_class_folder(tmp_path_factory.mktemp("three") / "ds")
    cfg = load_config(
        None,
        {
            "data.path": str(data),
            "data.classes": {"nerve": 1, "vessel": 2},
            "data.img_size": 64,
            "model.name": "unet",
            "model.options": {"depth": 2, "filters": 8},
            "train.epochs": 12,
            "train.batch_size": 8,
            "train.learning_rate": 0.005,
            "train.seed": 3,
        },
    )
    run = tmp_path_factory.mktemp("runs") / "three"
    train(cfg, run, verbose=0)
    out = tmp_path_factory.mktemp("bundle") / "android"
    summary = export_android(run, out, samples=3, bench_runs=3)
    return out, summary


def test_labels_metadata_and_card_name_the_classes(bundle):
    out, summary = bundle
    assert (out / "labels.txt").read_text() == "background\nnerve\nvessel\n"
    card = json.loads((out / "model.json").read_text())
    assert card["output"]["shape"] == [1, 64, 64, 3] and card["output"]["activation"] == "softmax"
    assert card["bundle"]["labels"] == NAMES and card["bundle"]["category_mask"] is True
    found = read_metadata(out / "model.tflite")
    assert found["has_metadata"]
    assert found["associated_files"] == {"labels.txt": b"background\nnerve\nvessel\n"}
    md = json.loads((out / "metadata.json").read_text())["metadata"]
    # the data set by its folder's name (no machine path), not by the run folder's
    assert card["data"]["source"] == "ds"
    n_val = card["data"]["n_val"]
    assert f"trained with kseg on ds (checked on {n_val} held-out" in md["description"]
    out_md = md["subgraph_metadata"][0]["output_tensor_metadata"][0]
    assert "argmax" in out_md["description"] and "category mask" in out_md["description"]
    assert out_md["associated_files"][0]["name"] == "labels.txt"


def test_golden_category_masks_are_the_argmax_of_the_golden_outputs(bundle):
    out, summary = bundle
    card = json.loads((out / "model.json").read_text())
    m = TFLiteModel(out / "model.tflite", runtime="litert")
    names = card["bundle"]["samples"]
    assert len(names) == 3
    seen = np.zeros(3, int)
    for name in names:
        x = np.load(out / "golden" / f"{name}.input.npy")
        y = np.load(out / "golden" / f"{name}.output.npy")
        np.testing.assert_array_equal(m.invoke_raw(x), y)
        category = cv2.imread(str(out / "golden" / f"{name}.category.png"), cv2.IMREAD_UNCHANGED)
        want = dequantize(y, m.output_scale, m.output_zero_point)[0].argmax(-1)
        np.testing.assert_array_equal(category, want)
        mask = cv2.imread(str(out / "golden" / f"{name}.mask.png"), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(mask, category.astype(np.uint16) * 127)
        fractions = card["bundle"]["sample_classes"][name]
        assert list(fractions) == NAMES
        for c, n in enumerate(NAMES):
            assert fractions[n] == pytest.approx(float((category == c).mean()))
        seen += np.bincount(category.ravel(), minlength=3)
    assert (seen > 0).all(), seen  # the trained model finds both classes in the samples
    assert card["parity"]["passed"] is True and card["tflite_dice"] > 0.3


def test_manifest_readme_and_summary_cover_the_category_files(bundle):
    out, summary = bundle
    manifest = json.loads((out / "manifest.json").read_text())["files"]
    golden = sorted(n for n in manifest if n.startswith("golden/"))
    assert len(golden) == 3 * 5  # input, 2 outputs, mask, category per sample
    assert sum(n.endswith(".category.png") for n in golden) == 3
    assert verify_manifest(out) == []
    readme = (out / "README.md").read_text()
    assert (
        "setOutputCategoryMask(true)" in readme and "0: background\n1: nerve\n2: vessel" in readme
    )
    assert "| sample | background | nerve | vessel |" in readme
    assert "argmax" in readme and "confidence > 0.5" not in readme
    assert summary["files"] == len(manifest)
