"""The planner for several small classes and thin structures: classes and their sizes from the
masks, a multi-class model with a loss for rare classes, native-resolution patches where resizing
would erase thin structures, and a budget that is used (no epoch cap)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from kseg.config import load_config
from kseg.plan import planner
from kseg.plan.planner import (
    MAX_EPOCHS,
    Probe,
    choose_recipe,
    choose_size,
    class_profile,
    class_weights,
    fit_epochs,
    plan,
    to_yaml,
    wanted_epochs,
)

PROBES = {
    (4, 16): Probe(4, 16, 96, 0.01, 0.003, 5.0),
    (3, 8): Probe(3, 8, 96, 0.004, 0.001, 5.0),
}


def _palette_png(path, lab: np.ndarray) -> None:
    from PIL import Image

    im = Image.fromarray(lab.astype(np.uint8), mode="P")
    im.putpalette([0, 0, 0, 255, 255, 0, 255, 0, 0] + [0] * 759)
    im.save(path)


def write_two_class_folder(root, n=10, h=64, w=80, line=2, seed=0):
    """Gray images with a bright disc (palette index 1, radius 10) and a dark horizontal band
    ``line`` px wide (index 2, in every other image), on noise."""
    import cv2

    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(n):
        lab = np.zeros((h, w), np.uint8)
        cy, cx = int(rng.integers(15, h - 15)), int(rng.integers(15, w - 15))
        cv2.circle(lab, (cx, cy), 10, 1, -1)
        if i % 2 == 0:
            y = int(rng.integers(2, h - 2 - line))
            lab[y : y + line, 5 : w - 5][lab[y : y + line, 5 : w - 5] == 0] = 2
        img = rng.normal(110, 12, (h, w))
        img[lab == 1] += 70
        img[lab == 2] -= 70
        cv2.imwrite(str(root / "images" / f"s{i:02d}.png"), np.clip(img, 0, 255).astype(np.uint8))
        _palette_png(root / "masks" / f"s{i:02d}.png", lab)
    return root


def test_class_profile_counts_classes_sizes_and_widths(tmp_path):
    root = write_two_class_folder(tmp_path / "d", n=10, h=64, w=80, line=3)
    prof = class_profile(str(root))
    assert prof["multi_class"] and prof["kind"] == "palette"
    assert prof["table"] == {"class_1": 1, "class_2": 2}
    disc, band = prof["classes"]["class_1"], prof["classes"]["class_2"]
    assert disc["images_fraction"] == 1.0 and band["images_fraction"] == 0.5
    # a disc of radius 10: ~317 px, equivalent diameter ~20 px; width = 2 area / boundary = D/2
    assert disc["object_px"]["median"] == pytest.approx(20.0, abs=1.0)
    assert disc["width_px"]["median"] == pytest.approx(10.0, rel=0.25)
    # a band 3 px wide (minus where it crosses the disc): 2 x area / boundary ~ 3
    assert band["width_px"]["median"] == pytest.approx(3.0, rel=0.15)
    assert disc["pixel_share"] == pytest.approx(317 / (64 * 80), rel=0.05)
    # the user's table wins; merging gives one binary foreground
    named = class_profile(str(root), classes={"organ": 1, "duct": 2})
    assert list(named["classes"]) == ["organ", "duct"] and named["table"]["duct"] == 2
    merged = class_profile(str(root), merge_classes=True)
    assert not merged["multi_class"] and list(merged["classes"]) == ["foreground"]


def test_class_weights_lift_rare_classes():
    prof = {
        "multi_class": True,
        "classes": {"a": {"pixel_share": 0.04}, "b": {"pixel_share": 0.0001}},
    }
    w = class_weights(prof)
    assert w[0] == 1.0
    assert w[1] == pytest.approx(np.sqrt(0.9599 / 0.04), abs=0.01)  # 4.9
    assert w[2] == planner.MAX_CLASS_WEIGHT  # capped
    assert class_weights({"multi_class": False, "classes": {}}) is None


def _fp(short, long=None):
    return {
        "height": {"median": short},
        "width": {"median": long or short},
        "object_diameter": {"p10": 0.3, "median": 0.3},
    }


def _classes(**per_class):
    """name=(object p10 px, median width px)."""
    return {
        "classes": {
            n: {"object_px": {"p10": d, "median": d}, "width_px": {"p10": w, "median": w}}
            for n, (d, w) in per_class.items()
        }
    }


def test_thin_structures_are_trained_on_native_patches():
    # retinal vessels: 565 x 584 images, vessels ~3 px wide -> resizing to 256 would make
    # them 1.4 px: native windows instead
    size = choose_size(_fp(565, 584), _classes(vessel=(40.0, 3.2)))
    assert size.patch and (size.smallest, size.largest) == (256, 256)
    assert "data.sampling: patch" in size.why and "3.2 px wide" in size.why
    # usgra-like: nerves and vessels tens of pixels across stay whole images, 192..256 px;
    # as several classes, at most 224 px (more epochs rather than more pixels)
    usgra = _classes(nerve=(43.0, 30.0), vessel=(50.0, 38.0))
    size = choose_size(_fp(512, 534), usgra)
    assert not size.patch and (size.smallest, size.largest) == (192, 256)
    size = choose_size(_fp(512, 534), {**usgra, "multi_class": True})
    assert not size.patch and (size.smallest, size.largest) == (192, 224)
    assert "several classes: at most 224 px" in size.why
    # ... never when their objects need more: 43 px objects in 1024 px images need 384 px
    size = choose_size(_fp(1024, 1024), {**usgra, "multi_class": True})
    assert "at most 224" not in size.why and size.patch and size.largest == 256
    size = choose_size(_fp(640, 640), {**usgra, "multi_class": True})  # need 256 px
    assert "at most 224" not in size.why and (size.smallest, size.largest) == (256, 256)
    # small images are never patched: 200 px images with thin lines are used whole
    size = choose_size(_fp(200), _classes(line=(30.0, 2.0)))
    assert not size.patch and size.largest == 192


def test_the_budget_is_used_no_epoch_cap():
    # 16 training images (the retinal case): 200 epochs were a cap that idled a third of 13 min
    p = Probe(4, 16, 256, 0.05, 0.02, 10.0)
    epochs, cost = fit_epochs(p, 16, 4, 13 * 60.0)
    assert epochs > MAX_EPOCHS
    assert cost["total_s"] <= 13 * 60.0 * (1 - planner.MARGIN)
    # ... and an ample budget now reaches the wider networks
    probes = {
        (4, 16): Probe(4, 16, 96, 0.002, 0.001, 5.0),
        (3, 16): Probe(3, 16, 96, 0.0015, 0.001, 5.0),
        (3, 8): Probe(3, 8, 96, 0.001, 0.0005, 5.0),
        (4, 24): Probe(4, 24, 96, 0.004, 0.002, 5.0),
        (4, 32): Probe(4, 32, 96, 0.006, 0.003, 5.0),
    }
    chosen, epochs, _, why = choose_recipe(probes, (256, 256), 16, 4, 13 * 60.0)
    assert chosen.filters > 16 and "widened" in why and epochs >= wanted_epochs(16)


def test_several_classes_keep_the_default_network():
    probes = {
        (4, 16): Probe(4, 16, 96, 0.010, 0.003, 15.0),
        (3, 16): Probe(3, 16, 96, 0.008, 0.002, 15.0),
        (3, 8): Probe(3, 8, 96, 0.004, 0.001, 15.0),
    }
    # a short budget: binary falls back to 8 filters, several classes keep depth 4, 16 filters
    # at the smallest size the objects allow, with the epochs that fit
    chosen, *_ = choose_recipe(probes, (192, 256), 163, 41, 3 * 60.0)
    assert (chosen.depth, chosen.filters, chosen.size) == (3, 8, 192)
    chosen, epochs, cost, why = choose_recipe(
        probes, (192, 256), 163, 41, 3 * 60.0, nets=planner.MULTI_CLASS_NETS
    )
    assert (chosen.depth, chosen.filters, chosen.size) == (4, 16, 192)
    assert 1 <= epochs < wanted_epochs(163) and cost["total_s"] <= 3 * 60.0
    assert "for several classes (depth 4, 16 filters) at 192 px fits only" in why
    # an ample budget: the same default network either way
    a = choose_recipe(probes, (192, 256), 163, 41, 60 * 60.0)[0]
    b = choose_recipe(probes, (192, 256), 163, 41, 60 * 60.0, nets=planner.MULTI_CLASS_NETS)[0]
    assert (a.depth, a.filters) == (b.depth, b.filters) == (4, 16)


def test_plan_for_several_classes(tmp_path):
    root = write_two_class_folder(tmp_path / "d", n=10, h=64, w=64, line=3)
    p = plan(str(root), 5.0, probes=PROBES, log=lambda m: None)
    c = p.config
    assert c.model.num_classes == 3 and c.data.classes == {"class_1": 1, "class_2": 2}
    assert c.train.loss == "combo"
    assert c.train.loss_options["second"] == "dice"
    assert c.train.loss_options["second_options"] == {"include_background": False}
    weights = c.train.loss_options["first_options"]["class_weights"]
    assert weights == class_weights(p.classes)
    assert weights[0] == 1.0 and weights[2] > weights[1] > 1.0  # the band is the rarer class
    assert "2 foreground classes" in p.reasons["data.classes"]
    assert "foreground classes only" in p.reasons["train.loss"]
    # several small classes are regularised: AdamW weight decay, dropout, zoom-in crops
    reg = planner.MULTI_CLASS_REGULARISATION
    assert c.train.optimizer == "adamw" and c.train.weight_decay == reg["weight_decay"]
    assert c.model.options["dropout"] == reg["dropout"]
    assert c.data.augment.crop_p == reg["crop_p"]
    assert list(c.data.augment.crop_scale) == reg["crop_scale"]
    assert c.data.augment.hflip_p == 0.5  # the other augmentations keep their defaults
    assert "overfit" in p.reasons["train.optimizer"] and "dropout 0.1" in p.reasons["model.options"]
    assert set(p.classes["classes"]) == {"class_1", "class_2"}
    assert "from the palette labels the masks hold" in p.reasons["data.classes"]
    text = to_yaml(p)
    assert "# class class_2: in 50 % of the images" in text
    path = tmp_path / "plan.yaml"
    path.write_text(text)
    assert load_config(path) == p.config
    # names given by the user are kept
    p = plan(str(root), 5.0, probes=PROBES, classes={"disc": 1, "band": 2}, log=lambda m: None)
    assert p.config.data.classes == {"disc": 1, "band": 2} and p.config.model.num_classes == 3
    # names stored with the data (labelme2voc's class_names.txt), as kseg train reads them
    (root / "class_names.txt").write_text("_background_\ndisc\nband\n")
    p = plan(str(root), 5.0, probes=PROBES, log=lambda m: None)
    assert p.config.data.classes == {"disc": 1, "band": 2}
    assert "class_names.txt in the data folder" in p.reasons["data.classes"]
    assert p.classes["classes"]["band"]["images_fraction"] == 0.5
    # merged on request: binary with the default loss
    p = plan(str(root), 5.0, probes=PROBES, merge_classes=True, log=lambda m: None)
    assert p.config.model.num_classes == 1 and p.config.data.merge_classes
    assert p.config.train.loss_options == {}
    assert p.config.train.optimizer == "adam" and "dropout" not in p.config.model.options


def test_plan_for_thin_structures_uses_patches(tmp_path, monkeypatch):
    monkeypatch.setattr(planner, "MAX_SIZE", 64)
    monkeypatch.setattr(planner, "MIN_SIZE", 32)
    root = write_two_class_folder(tmp_path / "d", n=8, h=128, w=160, line=2)
    p = plan(str(root), 5.0, probes=PROBES, log=lambda m: None)
    c = p.config
    assert str(c.data.sampling) == "patch" and c.data.img_size == 64
    assert c.data.patch_foreground == planner.PATCH_FOREGROUND
    # 128 x 160 px images: 5 windows of 64 px per training image, 2 x 3 tiles per validation one
    assert "5 window(s) of 64 px" in p.reasons["data.sampling"]
    assert "6 tiles" in p.reasons["data.sampling"]
    path = tmp_path / "plan.yaml"
    path.write_text(to_yaml(p))
    assert load_config(path) == c


def _fake_probe(depth, filters, size, channels, batch, **kw):
    return Probe(depth, filters, size, 0.002 * filters / 16, 0.0005, 3.0)


@pytest.mark.slow
def test_train_budget_plans_and_trains_several_classes(tmp_path, monkeypatch):
    from kseg.cli import main

    monkeypatch.setattr(planner, "probe_speed", _fake_probe)
    root = write_two_class_folder(tmp_path / "d", n=12, h=64, w=64, line=3)
    out = tmp_path / "run"
    res = CliRunner().invoke(
        main,
        [
            "train",
            "--data",
            str(root),
            "--budget",
            "3",
            "--out",
            str(out),
            "--set",
            "data.classes={disc: 1, band: 2}",
        ],
    )
    assert res.exit_code == 0, res.output
    saved = load_config(out / "config.yaml")
    assert saved.model.num_classes == 3 and saved.data.classes == {"disc": 1, "band": 2}
    assert saved.train.loss_options["second_options"] == {"include_background": False}
    plan_yaml = (out / "plan.yaml").read_text()
    assert "# class band: in 50 % of the images" in plan_yaml
    info = json.loads((out / "plan.json").read_text())
    assert set(info["classes"]["classes"]) == {"disc", "band"}
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["dice"] <= 1.0
    assert json.loads((out / "budget.json").read_text())["epochs_done"] >= 1


@pytest.mark.slow
def test_thin_vessels_train_on_patches_and_predict_tiled(tmp_path, monkeypatch):
    """Synthetic vessels at 128 px with the CPU cap at 64 px: native 64-px windows, validation
    on tiles, and a model whose predictor tiles whole images (native_scale)."""
    from kseg.cli import main
    from kseg.data.synthetic import write_synthetic
    from kseg.inference.tiling import wants_tiling
    from kseg.runtime.keras_model import KerasPredictor

    monkeypatch.setattr(planner, "probe_speed", _fake_probe)
    monkeypatch.setattr(planner, "MAX_SIZE", 64)
    monkeypatch.setattr(planner, "MIN_SIZE", 32)
    root = write_synthetic("vessels", 10, tmp_path / "v", size=128)
    out = tmp_path / "run"
    res = CliRunner().invoke(
        main, ["train", "--data", str(root), "--budget", "1.2", "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    assert "data.sampling: patch: 4 window(s) of 64 px" in res.output
    saved = load_config(out / "config.yaml")
    assert str(saved.data.sampling) == "patch" and saved.data.img_size == 64
    assert saved.model.num_classes == 1
    assert "sampling: patch" in (out / "plan.yaml").read_text()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_images"] == 2 * 4  # 2 validation images x 2 x 2 tiles
    predictor = KerasPredictor.from_file(out / "best.keras")
    assert predictor.native_scale is True
    assert wants_tiling(predictor, (128, 128), "auto")
