"""kseg plan: fingerprint numbers on constructed data, the budget arithmetic (epochs x measured
time fits the budget), and the written YAML loads back as the planned config."""

from __future__ import annotations

import math

import numpy as np
import pytest
from click.testing import CliRunner

from kseg.config import load_config
from kseg.errors import ConfigError
from kseg.plan.fingerprint import fingerprint, image_stats
from kseg.plan.planner import (
    MARGIN,
    Probe,
    choose_recipe,
    choose_size,
    epoch_seconds,
    fit_epochs,
    plan,
    to_yaml,
    wanted_epochs,
)


def _write_folder(root, n=6, h=60, w=80):
    """n gray images (value 100 + i) with masks holding two squares of 10x10 and 20x20 px."""
    import cv2

    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(n):
        img = np.full((h, w), 100 + i, np.uint8)
        mask = np.zeros((h, w), np.uint8)
        mask[5:15, 5:15] = 255
        mask[30:50, 40:60] = 255
        cv2.imwrite(str(root / "images" / f"p{i // 2}_{i}.png"), img)
        cv2.imwrite(str(root / "masks" / f"p{i // 2}_{i}.png"), mask)
    return root


def test_image_stats_objects_and_gray():
    img = np.zeros((40, 50, 3), np.uint8)
    img[..., :] = 7
    mask = np.zeros((40, 50), np.uint8)
    mask[0:4, 0:4] = 1  # 16 px
    mask[10:20, 10:20] = 1  # 100 px
    s = image_stats(img, mask)
    assert s["gray"] is True and s["objects"] == 2
    assert s["foreground"] == pytest.approx(116 / 2000)
    assert sorted(s["diameters"]) == pytest.approx(
        [2 * math.sqrt(16 / math.pi) / 40, 2 * math.sqrt(100 / math.pi) / 40]
    )
    img[..., 2] = 9
    assert image_stats(img, mask)["gray"] is False


def test_fingerprint_numbers(tmp_path):
    root = _write_folder(tmp_path / "d")
    fp = fingerprint(root, group_regex=r"^(p\d+)_")
    assert fp["n_images"] == 6 and fp["n_groups"] == 3 and fp["sampled"] == 6
    assert fp["height"]["median"] == 60 and fp["width"]["max"] == 80
    assert fp["channels"] == 1
    # pixel values 100..105 -> mean 102.5/255, std of a uniform spread over 6 values
    assert fp["intensity"]["mean"][0] == pytest.approx(102.5 / 255, abs=2e-3)
    assert fp["intensity"]["std"][0] == pytest.approx(np.std(np.arange(100, 106)) / 255, abs=2e-3)
    assert fp["foreground_fraction"]["mean"] == pytest.approx(500 / 4800)
    assert fp["objects_per_image"]["median"] == 2 and fp["empty_masks"] == 0
    small = 2 * math.sqrt(100 / math.pi) / 60
    assert fp["object_diameter"]["min"] == pytest.approx(small)
    assert fp["object_diameter"]["median"] == pytest.approx(
        (small + 2 * math.sqrt(400 / math.pi) / 60) / 2
    )


def test_fingerprint_counts_classes_and_their_objects(tmp_path):
    import cv2

    root = _write_folder(tmp_path / "bin")
    fp = fingerprint(root)
    assert fp["n_classes"] == 1 and not fp["multi_class"] and list(fp["classes"]) == ["255"]
    assert fp["classes"]["255"]["objects_per_image"] == 2
    # colour masks: the small square red (class 1), the big one green (class 2) in half of them
    for i, p in enumerate(sorted((root / "masks").iterdir())):
        rgb = np.zeros((60, 80, 3), np.uint8)
        rgb[5:15, 5:15] = (255, 0, 0)
        rgb[30:50, 40:60] = (0, 255, 0) if i % 2 else (255, 0, 0)
        cv2.imwrite(str(p), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    fp = fingerprint(root, classes={"tumour": [255, 0, 0], "cyst": [0, 255, 0]})
    assert fp["n_classes"] == 2 and fp["multi_class"]
    red, green = fp["classes"]["[255, 0, 0]"], fp["classes"]["[0, 255, 0]"]
    assert (red["name"], green["name"]) == ("tumour", "cyst")
    assert red["masks"] == 6 and green["masks"] == 3 and green["masks_fraction"] == 0.5
    assert red["pixel_share"] == pytest.approx((6 * 100 + 3 * 400) / (6 * 4800), abs=1e-5)
    assert red["objects_per_image"] == 1.5 and green["objects_per_image"] == 1
    assert green["object_diameter"]["median"] == pytest.approx(2 * math.sqrt(400 / math.pi) / 60)
    assert red["object_diameter"]["min"] == pytest.approx(2 * math.sqrt(100 / math.pi) / 60)
    # the foreground numbers keep taking all classes together
    assert fp["foreground_fraction"]["mean"] == pytest.approx(500 / 4800)


def test_fingerprint_of_usgra_has_nerve_and_vessel(usgra_dir):
    fp = fingerprint(usgra_dir, classes={"nerve": 1, "vessel": 2})
    assert fp["n_classes"] == 2 and fp["n_images"] == 204
    assert fp["classes"]["1"]["name"] == "nerve" and fp["classes"]["1"]["masks"] == 204
    assert fp["classes"]["2"]["name"] == "vessel" and fp["classes"]["2"]["masks"] == 183


def _fp(short=540, d10=0.4, n=400):
    return {
        "path": "x",
        "n_images": n,
        "n_groups": n,
        "height": {"median": short},
        "width": {"median": 800},
        "object_diameter": {"p10": d10, "median": d10},
    }


def test_size_follows_objects_and_images():
    assert choose_size(_fp(540, 0.4))[:2] == (96, 256)  # big objects: any size works
    assert choose_size(_fp(540, 0.05))[:2] == (256, 256)  # would need 320 px: capped at 256
    assert choose_size(_fp(150, 0.2))[:2] == (96, 128)  # small images: 150 -> 128
    assert choose_size(_fp(512, 0.1))[:2] == (160, 256)  # 16 px / 0.1 = 160


def test_budget_arithmetic_fits_and_uses_the_budget():
    p = Probe(4, 16, 128, train_s_per_image=0.02, eval_s_per_image=0.005, startup_s=20.0)
    budget = 15 * 60.0
    epochs, cost = fit_epochs(p, 320, 80, budget, load_s=10.0)
    per_epoch = 320 * 0.02 + 80 * 0.005
    assert cost["epoch_s"] == pytest.approx(per_epoch)
    assert cost["fixed_s"] == pytest.approx(20 + 10 + 80 * 0.005 + 10)
    assert cost["fixed_s"] + epochs * per_epoch <= budget * (1 - MARGIN)
    assert cost["fixed_s"] + (epochs + 1) * per_epoch > budget * (1 - MARGIN)  # no room wasted
    # scaling to a larger input grows the cost with the pixel count
    assert p.scaled(256).train_s_per_image == pytest.approx(0.08)


def test_recipe_prefers_default_net_at_largest_size_that_reaches_wanted_epochs():
    probes = {
        (4, 16): Probe(4, 16, 96, 0.010, 0.003, 15.0),
        (3, 16): Probe(3, 16, 96, 0.008, 0.002, 15.0),
        (3, 8): Probe(3, 8, 96, 0.004, 0.001, 15.0),
        (4, 32): Probe(4, 32, 96, 0.030, 0.008, 15.0),
        (4, 24): Probe(4, 24, 96, 0.020, 0.005, 15.0),
    }
    want = wanted_epochs(320)
    assert want == math.ceil(12000 / 320)
    chosen, epochs, cost, why = choose_recipe(probes, (96, 256), 320, 80, 15 * 60.0)
    assert (chosen.depth, chosen.filters) == (4, 16) and epochs >= want
    # the next larger size would not reach the wanted epochs
    if chosen.size < 256:
        bigger = probes[(4, 16)].scaled(chosen.size + 32)
        assert fit_epochs(bigger, 320, 80, 15 * 60.0)[0] < want
    assert cost["total_s"] <= 15 * 60.0
    # a tiny budget falls back to the cheapest network at the smallest size
    chosen, epochs, _, why = choose_recipe(probes, (96, 256), 320, 80, 60.0)
    assert (chosen.depth, chosen.filters, chosen.size) == (3, 8, 96) and "short budget" in why
    with pytest.raises(ConfigError, match="does not fit one epoch"):
        choose_recipe(probes, (96, 256), 320, 80, 20.0)
    # a generous budget widens the network
    chosen, epochs, _, why = choose_recipe(probes, (96, 128), 320, 80, 120 * 60.0)
    assert chosen.filters > 16 and "widened" in why


def test_a_wider_network_is_timed_at_its_size_before_it_is_chosen():
    # at 96 px a step is mostly fixed cost: 32 filters probe as fast as 16 (usgra: 20 s per epoch
    # estimated, 47 s run), so the widening is decided on a time measured at the chosen size
    probes = {
        (4, 16): Probe(4, 16, 96, 0.010, 0.003, 15.0),
        (4, 32): Probe(4, 32, 96, 0.010, 0.003, 15.0),
        (4, 24): Probe(4, 24, 96, 0.010, 0.003, 15.0),
    }
    budget = 40 * 60.0
    base, base_epochs, _, _ = choose_recipe(probes, (96, 128), 320, 80, budget, nets=((4, 16),))
    want = wanted_epochs(320)
    assert base_epochs >= 2 * want  # without a measurement this budget widens to 32 filters
    assert "widened to 32" in choose_recipe(probes, (96, 128), 320, 80, budget)[3]
    asked = []
    slow = {32: 20.0, 24: 1.5}  # times the 16-filter network's per-image seconds

    def measure(depth, filters, size):
        asked.append((depth, filters, size))
        return Probe(
            depth,
            filters,
            size,
            base.train_s_per_image * slow[filters],
            base.eval_s_per_image * slow[filters],
            15.0,
        )

    chosen, epochs, cost, why = choose_recipe(
        probes, (96, 128), 320, 80, budget, nets=((4, 16),), measure=measure
    )
    assert asked == [(4, 32, 128), (4, 24, 128)]  # timed at the size chosen, widest first
    assert (chosen.filters, chosen.size) == (24, 128) and epochs >= want
    assert f"widened to 24 filters, {epochs} epochs" in why and "measured at 128 px" in why
    assert cost["epoch_s"] == pytest.approx(epoch_seconds(chosen, 320, 80))
    # both too slow when measured: the default network stays, and the plan says why
    asked.clear()
    chosen, epochs, _, why = choose_recipe(
        probes,
        (96, 128),
        320,
        80,
        budget,
        nets=((4, 16),),
        measure=lambda d, f, s: Probe(d, f, s, 1.0, 0.5, 15.0),
    )
    assert (chosen.filters, epochs) == (16, base_epochs)
    assert "not widened: 32 filters" in why and f"fewer than the {want} wanted" in why


def test_plan_writes_yaml_that_loads_back(tmp_path):
    root = _write_folder(tmp_path / "d", n=10, h=64, w=64)
    probes = {
        (4, 16): Probe(4, 16, 96, 0.01, 0.003, 5.0),
        (3, 8): Probe(3, 8, 96, 0.004, 0.001, 5.0),
    }
    p = plan(str(root), 5.0, probes=probes, log=lambda m: None)
    text = to_yaml(p)
    assert "# " in text and "s per epoch probed" in text and "budget_minutes" in text
    path = tmp_path / "plan.yaml"
    path.write_text(text)
    assert load_config(path) == p.config
    c = p.config
    assert c.data.img_size % 32 == 0 and c.data.channels == 1
    assert c.train.epochs * p.estimate["epoch_seconds"] + p.estimate["fixed_seconds"] <= 5 * 60
    assert c.train.budget_minutes == 5.0 and c.train.time_limit_minutes is None
    assert c.model.options["upsampling"] == "transpose"


def test_plan_cli_refuses_existing_out_and_bad_budget(tmp_path):
    from kseg.cli import main

    root = _write_folder(tmp_path / "d")
    existing = tmp_path / "x.yaml"
    existing.write_text("a: 1\n")
    res = CliRunner().invoke(main, ["plan", str(root), "--out", str(existing)])
    assert res.exit_code == 2 and "exists" in res.output
    res = CliRunner().invoke(main, ["plan", str(root), "--budget-minutes", "0"])
    assert res.exit_code == 2 and "positive" in res.output


def test_train_budget_needs_a_folder_and_no_config(tmp_path):
    from kseg.cli import main

    res = CliRunner().invoke(main, ["train", "--budget", "5"])
    assert res.exit_code == 2 and "--data DIR" in res.output
    root = _write_folder(tmp_path / "d")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("train: {epochs: 1}\n")
    res = CliRunner().invoke(
        main, ["train", "--data", str(root), "--budget", "5", "--config", str(cfg)]
    )
    assert res.exit_code == 2 and "drop --config" in res.output


@pytest.mark.slow
def test_train_budget_end_to_end_writes_plan_into_run(tmp_path, monkeypatch):
    import json

    from kseg.cli import main
    from kseg.plan import planner

    def fake_probe(depth, filters, size, channels, batch, **kw):
        return Probe(depth, filters, size, 0.002 * filters / 16, 0.0005, 3.0)

    monkeypatch.setattr(planner, "probe_speed", fake_probe)
    root = _write_folder(tmp_path / "d", n=16, h=96, w=96)
    out = tmp_path / "run"
    res = CliRunner().invoke(
        main, ["train", "--data", str(root), "--budget", "1.5", "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    saved = load_config(out / "config.yaml")
    planned = load_config(out / "plan.yaml")
    assert saved == planned
    info = json.loads((out / "plan.json").read_text())
    assert info["budget_minutes"] == 1.5 and info["estimate"]["minutes"] <= 1.5
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train_seconds"] <= 1.5 * 60


def test_unmeasured_networks_priced_linearly_in_macs():
    from kseg.plan.planner import interpolate_probes

    measured = {
        (4, 16): Probe(4, 16, 96, 0.010, 0.004, 9.0),
        (3, 8): Probe(3, 8, 96, 0.002, 0.001, 5.0),
    }
    macs = {(4, 16): 1000, (3, 8): 200, (3, 16): 600, (4, 32): 3400}
    probes = interpolate_probes(measured, macs)
    assert probes[(4, 16)] is measured[(4, 16)]
    assert probes[(3, 16)].train_s_per_image == pytest.approx(0.006)  # halfway in MACs
    assert probes[(3, 16)].eval_s_per_image == pytest.approx(0.0025)
    assert probes[(4, 32)].train_s_per_image == pytest.approx(0.010 + 0.008 * 3)  # extrapolated
    assert probes[(4, 32)].startup_s == 9.0


def test_noisy_probes_never_make_a_bigger_network_cheaper():
    from kseg.plan.planner import interpolate_probes

    # on a loaded machine the larger network measured faster than the smaller one
    measured = {
        (4, 16): Probe(4, 16, 96, 0.002, 0.001, 9.0),
        (3, 8): Probe(3, 8, 96, 0.010, 0.004, 5.0),
    }
    macs = {(4, 16): 1000, (3, 8): 200, (4, 32): 3400}
    probes = interpolate_probes(measured, macs)
    assert probes[(4, 32)].train_s_per_image == pytest.approx(0.010)
    assert probes[(4, 32)].eval_s_per_image == pytest.approx(0.004)
    # and a short budget falls back to the smallest network, not the one that measured fastest
    chosen, *_ = choose_recipe(probes, (96, 96), 320, 80, 30.0)
    assert (chosen.depth, chosen.filters) == (3, 8)


@pytest.mark.slow
def test_target_profile_picks_the_fastest_upsampling_there():
    from kseg.plan.planner import choose_upsampling

    up = choose_upsampling("ethos_u", 2, 4, 32, 1)
    assert up["target"] == "ethos_u"
    assert set(up["estimated_ms"]) == {"transpose", "nearest", "bilinear"}
    assert all(v > 0 for v in up["estimated_ms"].values())
    assert up["choice"] == min(up["estimated_ms"], key=up["estimated_ms"].get)
