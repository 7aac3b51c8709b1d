"""``kseg data check``: every planted fault is found and named, a clean set raises nothing, and
``--fix`` writes a folder kseg trains on without touching the originals."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from kseg.cli import main
from kseg.data.check import check_folder, dhash, write_fixed
from kseg.data.synthetic import write_synthetic


@pytest.fixture
def planted(tmp_path):
    """24 synthetic ultrasound images (groups by name) and one of each fault."""
    root = write_synthetic("ultrasound", 24, tmp_path / "ds", size=64, seed=3)
    img, msk = root / "images", root / "masks"
    (img / "ultrasound_0001.png").write_bytes(b"\x89PNG\r\n\x1a\nthis is not a png")  # corrupt
    nan = cv2.imread(str(img / "ultrasound_0002.png"), cv2.IMREAD_UNCHANGED).astype(np.float32)
    nan[0, :5] = np.nan  # 5 of 4096 pixels: filled by --fix
    (img / "ultrasound_0002.png").unlink()
    cv2.imwrite(str(img / "ultrasound_0002.tif"), nan)
    broken = nan.copy()
    broken[:40] = np.nan  # mostly NaN: dropped
    (img / "ultrasound_0003.png").unlink()
    cv2.imwrite(str(img / "ultrasound_0003.tif"), broken)
    cv2.imwrite(str(img / "ultrasound_0004.png"), np.full((64, 64), 77, np.uint8))  # constant
    # exact duplicate of 0005 under another name (and, by the manifest, another group: a leak)
    (img / "ultrasound_0006.png").write_bytes((img / "ultrasound_0005.png").read_bytes())
    # near duplicate: 0007 = 0008 with a little noise
    base = cv2.imread(str(img / "ultrasound_0008.png"), cv2.IMREAD_UNCHANGED)
    noisy = np.clip(base.astype(int) + np.random.default_rng(0).integers(-2, 3, base.shape), 0, 255)
    cv2.imwrite(str(img / "ultrasound_0007.png"), noisy.astype(np.uint8))
    cv2.imwrite(
        str(img / "ultrasound_0009.png"), np.full((64, 64), 250, np.uint8) - base // 20
    )  # outlier
    m = cv2.imread(str(msk / "ultrasound_0010.png"), cv2.IMREAD_UNCHANGED)
    m[:4, :4] = 7  # stray value
    cv2.imwrite(str(msk / "ultrasound_0010.png"), m)
    cv2.imwrite(str(msk / "ultrasound_0011.png"), np.zeros((64, 64), np.uint8))  # empty mask
    rows = ["image,group,site"] + [
        f"{p.name},{'g' + p.stem[-4:]},{'a' if i % 2 else 'b'}"
        for i, p in enumerate(sorted(img.iterdir()))
    ]
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    return root


def _by_kind(report):
    out = {}
    for f in report["findings"]:
        out.setdefault(f["kind"], []).append(f)
    return out


def test_every_planted_fault_is_found(planted):
    rep = check_folder(planted)
    k = _by_kind(rep)
    assert [f["files"] for f in k["corrupt"]] == [["ultrasound_0001.png"]]
    nan = {f["files"][0]: f["action"] for f in k["nan"]}
    assert nan == {"ultrasound_0002.tif": "fill with median", "ultrasound_0003.tif": "drop"}
    assert [f["files"] for f in k["constant"]] == [["ultrasound_0004.png"]]
    assert [f["files"] for f in k["exact_duplicate"]] == [
        ["ultrasound_0005.png", "ultrasound_0006.png"]
    ]
    assert ["ultrasound_0005.png", "ultrasound_0006.png"] in [f["files"] for f in k["group_leak"]]
    assert [f["files"] for f in k["near_duplicate"]] == [
        ["ultrasound_0007.png", "ultrasound_0008.png"]
    ]
    assert "ultrasound_0009.png" in [f["files"][0] for f in k["outlier"]]
    assert k["stray_mask_values"][0]["files"] == ["ultrasound_0010.png"]
    assert (
        "0, 1, 7" in k["stray_mask_values"][0]["detail"]
        or "7" in k["stray_mask_values"][0]["detail"]
    )
    assert [f["files"] for f in k["empty_mask"]] == [["ultrasound_0011.png"]]
    # nothing else is flagged: no false alarm on the untouched images
    flagged = {n for f in rep["findings"] for n in f["files"]}
    planted_names = {f"ultrasound_{i:04d}" for i in range(1, 12)}
    assert {n.split(".")[0] for n in flagged} <= planted_names
    # dropped: corrupt, mostly-NaN, constant, the second copy of the exact duplicate
    assert rep["n_kept"] == 24 - 4


def test_fix_writes_a_trainable_folder_and_keeps_originals(planted, tmp_path):
    before = sorted((p.name, p.stat().st_size) for p in (planted / "images").iterdir())
    rep = check_folder(planted)
    out = write_fixed(rep, tmp_path / "clean")
    assert sorted((p.name, p.stat().st_size) for p in (planted / "images").iterdir()) == before
    lines = (out / "manifest.csv").read_text().splitlines()
    assert lines[0] == "image,mask,group,site" and len(lines) == 1 + 20
    kept = {ln.split(",")[0] for ln in lines[1:]}
    assert (
        "ultrasound_0001.png" not in kept
        and "ultrasound_0004.png" not in kept
        and "ultrasound_0006.png" not in kept
    )
    filled = cv2.imread(str(out / "images" / "ultrasound_0002.tif"), cv2.IMREAD_UNCHANGED)
    assert np.isfinite(filled).all()
    from kseg.data.folder import scan_folder

    samples = scan_folder(out)
    assert len(samples) == 20 and {s.meta["site"] for s in samples} == {"a", "b"}
    with pytest.raises(Exception, match="not empty"):
        write_fixed(rep, out)


def test_clean_synthetic_set_has_no_findings(tmp_path):
    root = write_synthetic("ultrasound", 30, tmp_path / "ok", size=64, seed=5)
    rep = check_folder(root)
    assert rep["findings"] == [] and rep["n_kept"] == 30
    assert rep["sizes"]["most_common"] == {"64x64": 30}


def test_dhash_is_stable_under_noise_and_differs_between_images():
    rng = np.random.default_rng(0)
    a = cv2.GaussianBlur(rng.uniform(0, 255, (80, 80)).astype(np.float32), (9, 9), 3)
    b = cv2.GaussianBlur(rng.uniform(0, 255, (80, 80)).astype(np.float32), (9, 9), 3)
    assert (dhash(a) != dhash(a + rng.normal(0, 0.5, a.shape))).sum() <= 10
    assert (dhash(a) != dhash(b)).sum() > 60


def test_cli_check_writes_report(planted, tmp_path):
    res = CliRunner().invoke(
        main,
        [
            "data",
            "check",
            str(planted),
            "--out",
            str(tmp_path / "rep"),
            "--fix",
            str(tmp_path / "fx"),
        ],
    )
    assert res.exit_code == 0, res.output
    rep = json.loads((tmp_path / "rep" / "check.json").read_text())
    assert rep["counts"]["corrupt"] == 1 and rep["n_kept"] == 20
    assert "| corrupt | 1 |" in (tmp_path / "rep" / "check.md").read_text()
    assert "cleaned folder with 20 images" in res.output


@pytest.mark.slow
def test_no_false_alarm_on_hc18(hc18_dir):
    rep = check_folder(hc18_dir)
    assert rep["findings"] == [] and rep["n_kept"] == 400
