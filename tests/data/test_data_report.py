"""``kseg data report``: statistics computed from known images and masks."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from kseg.cli import main
from kseg.data.report import data_report


def _folder(root):
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rows = ["image,group,split"]
    for i in range(6):
        img = np.full((40, 50 + 10 * (i % 2)), 100 if i < 4 else 200, np.uint8)
        cv2.imwrite(str(root / "images" / f"a{i}.png"), img)
        m = np.zeros(img.shape, np.uint8)
        m[0:10, 0:10] = 255  # 100 px lesion
        if i == 0:
            m[20:24, 30:34] = 255  # a second, 16 px lesion
        if i == 5:
            m[:] = 0  # empty mask
        cv2.imwrite(str(root / "masks" / f"a{i}.png"), m)
        rows.append(f"a{i}.png,p{i // 2},{'val' if i >= 4 else 'train'}")
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    return root


def test_report_numbers(tmp_path):
    rep = data_report(_folder(tmp_path / "ds"), tmp_path / "out")
    assert rep["n_images"] == 6 and rep["n_with_mask"] == 6
    assert rep["splits"]["train"]["n_images"] == 4 and rep["splits"]["val"]["n_images"] == 2
    assert rep["splits"]["train"]["intensity_mean"] == 100.0
    assert rep["splits"]["val"]["intensity_quantiles"]["0.5"] == 200
    assert rep["sizes"]["most_common"] == {"50x40": 3, "60x40": 3}
    assert rep["lesions_per_image"] == {0: 1, 1: 4, 2: 1}
    assert rep["empty_masks"] == 1
    assert (
        min(rep["lesion_area_px_quantiles"]) >= 16 and max(rep["lesion_area_px_quantiles"]) <= 100
    )
    assert rep["groups"] == {
        "n": 3,
        "images_per_group": {2: 3},
        "largest": {"p0": 2, "p1": 2, "p2": 2},
    }
    saved = json.loads((tmp_path / "out" / "report.json").read_text())
    assert saved["n_images"] == 6
    assert (tmp_path / "out" / "report.png").stat().st_size > 10000


def test_cli_report(tmp_path):
    res = CliRunner().invoke(
        main, ["data", "report", str(_folder(tmp_path / "ds")), "--out", str(tmp_path / "o")]
    )
    assert res.exit_code == 0, res.output
    assert "6 images (train 4, val 2); 3 groups" in res.output


def test_report_counts_each_class(tmp_path):
    from PIL import Image

    root = _folder(tmp_path / "ds")
    for i in range(6):  # palette masks: index 1 everywhere, index 2 (12 px) in a0..a2
        lab = np.zeros((40, 50 + 10 * (i % 2)), np.uint8)
        lab[0:10, 0:10] = 1
        if i < 3:
            lab[30:33, 30:34] = 2
        im = Image.fromarray(lab, mode="P")
        im.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0] + [0] * 759)
        im.save(root / "masks" / f"a{i}.png")
    rep = data_report(root, tmp_path / "out")
    c = rep["classes"]
    assert c["kind"] == "palette" and c["multi_class"] and list(c["classes"]) == ["1", "2"]
    assert c["classes"]["1"]["masks"] == 6 and c["classes"]["2"]["masks"] == 3
    total = 3 * 40 * 50 + 3 * 40 * 60
    assert c["classes"]["1"]["pixel_share"] == pytest.approx(600 / total, abs=1e-5)
    assert c["classes"]["2"]["pixel_share"] == pytest.approx(36 / total, abs=1e-5)
    assert c["classes"]["2"]["objects_per_mask"] == 1
    assert rep["lesions_per_image"] == {1: 3, 2: 3}  # all classes together, as before
