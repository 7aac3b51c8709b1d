"""kseg sweep: every cell on the same split and protocol, resumable after a kill, results table
equal to the cells' own metrics, heat-map and curves written, a changed plan refused."""

from __future__ import annotations

import csv
import json

import pytest
import yaml
from click.testing import CliRunner

from kseg.cli import main


class Killed(BaseException):
    """Stands for SIGKILL: nothing in kseg or click catches it."""


ARGS = [
    "sweep", "--models", "unet", "--losses", "dice,bce", "--data", "synthetic:ultrasound:24",
    "--epochs", "1", "--no-int8", "--set", "data.img_size=32", "--set", "train.steps_per_epoch=2",
    "--set", "train.batch_size=4", "--set", "model.options={depth: 2, filters: 4}",
]  # fmt: skip


def test_sweep_resumes_after_a_kill_and_tabulates_the_cells(tmp_path, monkeypatch):
    import kseg.sweep.runner as runner

    out = tmp_path / "sweep"
    real, calls = runner._run_cell, []

    def killed_at_second(*a, **kw):
        calls.append(a[1].name)
        if len(calls) == 2:
            raise Killed  # the sweep is killed while its second cell trains
        return real(*a, **kw)

    monkeypatch.setattr(runner, "_run_cell", killed_at_second)
    with pytest.raises(Killed):
        CliRunner().invoke(main, [*ARGS, "--out", str(out)], catch_exceptions=False)
    done = sorted(p.parent.name for p in out.glob("cells/*/cell.json"))
    assert done == ["unet__dice__seed0"]
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("cells/*/cell.json")}

    monkeypatch.setattr(runner, "_run_cell", real)
    res = CliRunner().invoke(main, [*ARGS, "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "resuming sweep" in res.output and "unet__dice__seed0" not in res.output
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # finished cells not retrained
    cells = {p.parent.name: json.loads(p.read_text()) for p in out.glob("cells/*/cell.json")}
    assert len(cells) == 2

    # one split and one protocol: only model, loss (and seed) differ between cells
    split = (out / "split.csv").read_bytes()
    configs = {}
    for name in cells:
        assert (out / "cells" / name / "split.csv").read_bytes() == split
        cfg = yaml.safe_load((out / "cells" / name / "config.yaml").read_text())
        assert cfg["data"]["img_size"] == 32 and cfg["train"]["epochs"] == 1
        assert cfg["train"]["schedule"] == "plateau" and cfg["train"]["optimizer"] == "adam"
        cfg["model"].pop("name"), cfg["train"].pop("loss")
        configs[name] = json.dumps(cfg, sort_keys=True)
    assert len(set(configs.values())) == 1

    table = json.loads((out / "results.json").read_text())["table"]
    assert [(r["model"], r["loss"]) for r in table] == [("unet", "dice"), ("unet", "bce")]
    for r in table:
        cell = cells[f"{r['model']}__{r['loss']}__seed0"]
        assert r["dice_mean"] == pytest.approx(cell["dice"]) and 0 <= cell["dice"] <= 1
        assert r["dice_std"] == 0.0 and r["params"] == cell["params"] > 0
        assert cell["hd95"] is None or cell["hd95"] >= 0
        assert cell["epochs"] == 1
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert len(rows) == 2 and float(rows[0]["dice_mean"]) == pytest.approx(table[0]["dice_mean"])
    md = (out / "results.md").read_text()
    assert f"{table[0]['dice_mean']:.4f}" in md and "| unet | bce |" in md
    for png in ("heatmap.png", "curves.png"):
        assert (out / png).stat().st_size > 2000
    assert len(list((out / "tensorboard").iterdir())) == 2

    changed = [a if a != "dice,bce" else "dice" for a in ARGS]
    res = CliRunner().invoke(main, [*changed, "--out", str(out)])
    assert res.exit_code == 2 and "holds a sweep with another plan" in res.output
