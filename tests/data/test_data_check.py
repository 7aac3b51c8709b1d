"""``kseg data check``: every planted fault is found and named, a clean set raises nothing, and
``--fix`` writes a folder kseg trains on without touching the originals."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from kseg.cli import main
from kseg.data.check import check_folder, dhash, render_markdown, write_fixed
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


# ------------------------------------------------------------------ sizes, classes and --fix


def _presets(tmp_path, extra=()):
    """34 synthetic scans at three probe presets (WxH 64x64, 72x64, 96x80) plus ``extra`` sizes."""
    root = write_synthetic("ultrasound", 34 + len(extra), tmp_path / "src", size=96, seed=4)
    sizes = [(64, 64)] * 20 + [(72, 64)] * 10 + [(96, 80)] * 4 + list(extra)
    for (w, h), p in zip(sizes, sorted((root / "images").iterdir()), strict=True):
        for sub in ("images", "masks"):
            f = root / sub / p.name
            a = cv2.imread(str(f), cv2.IMREAD_UNCHANGED)
            cv2.imwrite(str(f), cv2.resize(a, (w, h), interpolation=cv2.INTER_NEAREST))
    return root


def test_probe_presets_are_no_size_outliers_but_a_far_rare_size_is(tmp_path):
    rep = check_folder(_presets(tmp_path / "a"))
    assert rep["sizes"]["n_distinct"] == 3
    assert [f for f in rep["findings"] if f["kind"] == "outlier"] == []
    rep = check_folder(_presets(tmp_path / "b", extra=[(66, 64), (200, 200)]))
    out = [f for f in rep["findings"] if f["kind"] == "outlier"]
    assert len(out) == 1 and out[0]["files"] == ["ultrasound_0035.png"]  # 200x200, not 66x64
    assert out[0]["detail"].startswith("size 200x200 (1 image(s)) differs by more than 1.5x")
    assert "64x64" in out[0]["detail"]


def _multi(tmp_path, n=12):
    """Palette masks with a big class 1 in every mask and a small class 2 in every other one."""
    from PIL import Image

    root = write_synthetic("ultrasound", n, tmp_path / "mc", size=64, seed=6)
    for i, p in enumerate(sorted((root / "masks").iterdir())):
        lab = np.zeros((64, 64), np.uint8)
        lab[8:24, 8:24] = 1  # 256 px = 6.25 % of the image
        if i % 2 == 0:
            lab[40:48, 40:48] = 2  # 64 px
            lab[50:54, 10:14] = 2  # 16 px: a second object
        im = Image.fromarray(lab, mode="P")
        im.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0] + [0] * 759)
        im.save(p)
    return root


def test_classes_per_class_presence_and_sizes(tmp_path):
    rep = check_folder(_multi(tmp_path))
    c = rep["classes"]
    assert c["kind"] == "palette" and c["multi_class"] and c["ids"] == [1, 2]
    assert c["classes"]["1"]["masks"] == 12 and c["classes"]["2"]["masks"] == 6
    assert c["classes"]["1"]["pixel_share"] == pytest.approx(256 / 4096, abs=1e-5)
    assert c["classes"]["2"]["pixel_share"] == pytest.approx(6 * 80 / (12 * 4096), abs=1e-5)
    assert c["classes"]["1"]["objects_per_mask"] == 1 and c["classes"]["2"]["objects_per_mask"] == 2
    assert c["classes"]["2"]["object_area_fraction"][1] == pytest.approx(40 / 4096, rel=1e-3)
    assert [f for f in rep["findings"] if f["kind"] == "stray_mask_values"] == []
    md = render_markdown(rep)
    assert "palette indices 1 in 12/12, 2 in 6/12; 2 foreground classes: train with --set " in md
    assert "model.num_classes=3" in md and "| 2 | 6 (50%) | 0.98 % | 2.00 |" in md
    # a binary folder: one class, no line about training several
    binary = check_folder(write_synthetic("ultrasound", 10, tmp_path / "bin", size=64, seed=1))
    assert not binary["classes"]["multi_class"] and list(binary["classes"]["classes"]) == ["255"]


def test_fix_keeps_its_word_on_masks(tmp_path):
    """Every action the report names is what the --fix folder holds, and kseg trains on it."""
    from kseg.config import DataConfig
    from kseg.data.pipeline import load_splits

    root = write_synthetic("ultrasound", 12, tmp_path / "ds", size=64, seed=2)
    m = cv2.imread(str(root / "masks" / "ultrasound_0003.png"), cv2.IMREAD_UNCHANGED)
    m[:4, :4] = 7  # a stray value in a binary folder
    cv2.imwrite(str(root / "masks" / "ultrasound_0003.png"), m)
    (root / "masks" / "ultrasound_0005.png").unlink()  # an image without a mask
    rep = check_folder(root)
    acts = {f["kind"]: (f["files"], f["action"]) for f in rep["findings"]}
    assert acts["stray_mask_values"] == (
        ["ultrasound_0003.png"],
        "binarise (non-zero = foreground) in the --fix copy",
    )
    assert acts["missing_mask"][0] == ["ultrasound_0005.png"]
    assert acts["missing_mask"][1].startswith("drop")
    assert rep["n_kept"] == 11
    out = write_fixed(rep, tmp_path / "fx")
    fixed = cv2.imread(str(out / "masks" / "ultrasound_0003.png"), cv2.IMREAD_UNCHANGED)
    assert set(np.unique(fixed).tolist()) == {0, 255} and not (out / "masks" / "x").exists()
    assert (m != 0).sum() == (fixed != 0).sum()
    assert cv2.imread(str(root / "masks" / "ultrasound_0003.png"), 0)[0, 0] == 7  # original kept
    sp = load_splits(DataConfig(path=str(out), img_size=32), 0, progress=False, merge_guard=True)
    assert len(sp.train) + len(sp.val) == 11
    again = check_folder(out)
    assert again["findings"] == [] and again["n_kept"] == 11


def test_fix_drops_a_mask_with_a_value_that_is_no_class(tmp_path):
    from PIL import Image

    root = _multi(tmp_path)
    p = root / "masks" / "ultrasound_0004.png"
    lab = np.asarray(Image.open(p)).copy()
    lab[30:36, 30:36] = 5  # an index no other mask has
    im = Image.fromarray(lab, mode="P")
    im.putpalette(Image.open(root / "masks" / "ultrasound_0000.png").getpalette())
    im.save(p)
    rep = check_folder(root)
    stray = [f for f in rep["findings"] if f["kind"] == "stray_mask_values"]
    assert len(stray) == 1 and stray[0]["files"] == ["ultrasound_0004.png"]
    assert stray[0]["detail"] == "values 5 are no class of the folder (classes 1, 2)"
    assert stray[0]["action"].startswith("drop") and rep["n_kept"] == 11
    assert rep["classes"]["stray"] == {"5": ["ultrasound_0004.png"]}


def test_check_on_usgra(usgra_dir):
    rep = check_folder(usgra_dir)
    assert rep["findings"] and {f["kind"] for f in rep["findings"]} == {
        "exact_duplicate",
        "group_leak",
    }
    assert rep["findings"][0]["files"] == ["0043.png", "0077.png"]
    c = rep["classes"]
    assert c["multi_class"] and c["ids"] == [1, 2]
    assert c["classes"]["1"]["masks"] == 204 and c["classes"]["2"]["masks"] == 183
    assert c["classes"]["1"]["pixel_share"] == pytest.approx(0.032, abs=0.0006)
    assert c["classes"]["2"]["pixel_share"] == pytest.approx(0.041, abs=0.0006)


def test_dhash_dead_zone_keeps_black_borders_stable():
    rng = np.random.default_rng(1)
    img = np.zeros((256, 256), np.float32)
    img[:128] = cv2.GaussianBlur(rng.uniform(0, 255, (128, 256)).astype(np.float32), (15, 15), 4)
    noisy = np.clip(img + rng.integers(-3, 4, img.shape), 0, 255)  # black stays near black
    plain = int((dhash(img) != dhash(noisy)).sum())
    dead = int((dhash(img, tol=0.5) != dhash(noisy, tol=0.5)).sum())
    assert plain > 30 and dead <= 3  # half the bits sit in the black half
