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
    import kseg.sweep.cell as one_cell

    out = tmp_path / "sweep"
    real, calls = one_cell.train, []

    def killed_at_second(*a, **kw):
        calls.append(a[1].name)
        if len(calls) == 2:
            raise Killed  # the sweep is killed while its second cell trains
        return real(*a, **kw)

    monkeypatch.setattr(one_cell, "train", killed_at_second)
    with pytest.raises(Killed):
        CliRunner().invoke(main, [*ARGS, "--out", str(out)], catch_exceptions=False)
    done = sorted(p.parent.name for p in out.glob("cells/*/cell.json"))
    assert done == ["unet__dice__seed0"]
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("cells/*/cell.json")}

    monkeypatch.setattr(one_cell, "train", real)
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


@pytest.mark.parametrize(
    ("kill_at", "rerun"),
    [
        ("epoch_end", [2]),  # killed once epoch 2 was backed up: only epoch 3 is left
        ("mid_epoch", [1, 2]),  # killed in epoch 2's first step: epoch 2 again, then epoch 3
    ],
)
def test_sweep_continues_a_cell_killed_inside_from_its_last_epoch(
    tmp_path, monkeypatch, kill_at, rerun
):
    import kseg.training.loop as loop
    from kseg._keras import keras

    out, victim = tmp_path / "sweep", "unet__bce__seed0"
    args = [*ARGS[: ARGS.index("--epochs") + 1], "3", *ARGS[ARGS.index("--epochs") + 2 :]]
    args += ["--out", str(out)]
    trained: list[tuple[str, int]] = []  # (cell, epoch index) of every epoch that ran to its end
    kill = [True]

    class Spy(keras.callbacks.Callback):
        """Last callback, after BackupAndRestore: sees the epochs fit() really runs."""

        def __init__(self, cell: str) -> None:
            super().__init__()
            self.cell = cell

        def on_train_batch_end(self, batch, logs=None):
            if kill[0] and kill_at == "mid_epoch" and self.cell == victim and self.epoch == 1:
                raise Killed

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_epoch_end(self, epoch, logs=None):
            trained.append((self.cell, epoch))
            if kill[0] and kill_at == "epoch_end" and self.cell == victim and epoch == 1:
                raise Killed

    real = loop.make_callbacks
    monkeypatch.setattr(
        loop, "make_callbacks", lambda cfg, run, **kw: [*real(cfg, run, **kw), Spy(run.root.name)]
    )
    with pytest.raises(Killed):
        CliRunner().invoke(main, args, catch_exceptions=False)
    first = out / "cells" / "unet__dice__seed0"
    done_epochs = [0, 1] if kill_at == "epoch_end" else [0]
    assert trained == [(first.name, e) for e in (0, 1, 2)] + [(victim, e) for e in done_epochs]
    assert not (out / "cells" / victim / "cell.json").exists()
    stamps = {p: p.stat().st_mtime_ns for p in first.rglob("*") if p.is_file()}

    kill[0], trained[:] = False, []
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    assert trained == [(victim, e) for e in rerun]  # epochs done before the kill are not redone
    with (out / "cells" / victim / "history.csv").open() as fh:
        assert [int(r["epoch"]) for r in csv.DictReader(fh)] == [0, 1, 2]
    cell = json.loads((out / "cells" / victim / "cell.json").read_text())
    assert cell["epochs"] == 3 and cell["attempts"] == 2 and 0 <= cell["dice"] <= 1
    assert {p: p.stat().st_mtime_ns for p in first.rglob("*") if p.is_file()} == stamps
    assert json.loads((first / "cell.json").read_text())["attempts"] == 1
    table = json.loads((out / "results.json").read_text())["table"]
    assert [r["epochs_mean"] for r in table] == [3, 3]


TINY_RECIPE = {
    "data": {"img_size": 32, "synthetic_n": 24},
    "model": {"options": {"depth": 2, "filters": 4}},
    "train": {"epochs": 1, "batch_size": 4, "steps_per_epoch": 2},
}


def test_sweep_plan_from_the_config_file_flags_win(tmp_path):
    from kseg.config import load_config, to_dict

    cfg = tmp_path / "sweep.yaml"
    section = {"models": ["unet"], "losses": ["dice", "bce"], "seeds": [3], "int8": False}
    cfg.write_text(yaml.safe_dump({"sweep": section, **TINY_RECIPE}))
    assert "sweep" not in to_dict(load_config(cfg))  # every other command reads the file too
    out = tmp_path / "sweep"
    res = CliRunner().invoke(
        main,
        ["sweep", "--config", str(cfg), "--losses", "bce", "--data", "synthetic:ultrasound:24",
         "--out", str(out)],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    plan = json.loads((out / "sweep.json").read_text())["plan"]
    assert plan == {
        "models": ["unet"],
        "losses": ["bce"],
        "seeds": [3],
        "int8": False,
        "hd95": True,
    }
    (cell,) = out.glob("cells/*/config.yaml")
    assert cell.parent.name == "unet__bce__seed3"
    saved = yaml.safe_load(cell.read_text())
    assert "sweep" not in saved and saved["train"]["seed"] == 3 and saved["data"]["img_size"] == 32
    assert "sweep" not in yaml.safe_load((out / "base_config.yaml").read_text())
    rec = json.loads((cell.parent / "cell.json").read_text())
    assert rec["int8_dice"] is None and rec["hd95"] is not None and rec["epochs"] == 1
    assert rec["cell_seconds"] >= rec["train_seconds"] > 0


@pytest.mark.parametrize(
    ("section", "flags", "needle"),
    [
        (None, [], "--models not given and CFG has no sweep.models; pass --models A,B"),
        ({"models": ["unet"]}, [], "--losses not given and CFG has no sweep.losses"),
        ({"models": ["unet"], "loss": ["dice"]}, [], "unknown key 'sweep.loss' (did you mean 'losses'?)"),
        ({"models": ["unet"], "losses": ["dice"], "seeds": ["a"]}, [], "sweep.seeds ['a']: give comma"),
        ({"models": ["unet"], "losses": ["dice"], "int8": "yes"}, [], "sweep.int8 must be true or false"),
        ({"models": ["unet"], "losses": ["dice"]}, ["--models", "unetx"], "did you mean"),
        ({"models": [], "losses": ["dice"]}, [], "sweep.models: give comma-separated names"),
    ],
)  # fmt: skip
def test_sweep_config_errors_are_one_line(tmp_path, section, flags, needle):
    cfg = tmp_path / "s.yaml"
    cfg.write_text(yaml.safe_dump({**({"sweep": section} if section else {}), **TINY_RECIPE}))
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["sweep", "--config", str(cfg), *flags, "--out", str(out)])
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and needle.replace("CFG", str(cfg)) in lines[0], res.output
    assert not out.exists()  # nothing written before the plan is valid


@pytest.mark.parametrize("name", ["hc18_classic", "synthetic_classic"])
def test_shipped_sweep_configs_hold_the_classic_table(name):
    from pathlib import Path

    from kseg.config import Optimizer, Schedule, load_config
    from kseg.sweep import make_plan

    path = Path(__file__).resolve().parents[2] / "configs" / "sweeps" / f"{name}.yaml"
    plan = make_plan(path)
    plan.validate()
    assert plan.models == ("segnet", "unet", "unet2", "dilated_unet")
    assert plan.losses == ("bce", "focal", "dice", "tversky", "combo")
    assert plan.seeds == (0,) and plan.int8 and plan.hd95 and len(plan.cells()) == 20
    cfg = load_config(path)
    t = cfg.train
    assert t.optimizer is Optimizer.ADAM and t.schedule is Schedule.PLATEAU
    assert t.early_stopping_patience >= t.epochs  # one budget: no cell stops early
    assert cfg.data.img_size % 2 ** cfg.model.options["depth"] == 0
    assert make_plan(path, models="unet", seeds="1,2").cells() == [
        ("unet", loss, s) for loss in plan.losses for s in (1, 2)
    ]
