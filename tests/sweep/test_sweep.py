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
