"""kseg sweep --engine: the engine flag, Ray missing, the resources a cell declares, the driver's
collection of results and errors (with a stand-in for Ray that runs tasks in this process; the
real Ray cluster is in test_sweep_ray.py)."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from kseg.cli import main
from kseg.errors import ConfigError, DataError
from kseg.sweep.engines import CellJob, CellResources, Engine, parse_engine

ARGS = [
    "sweep", "--models", "unet", "--losses", "dice,bce", "--data", "synthetic:ultrasound:24",
    "--epochs", "1", "--no-int8", "--no-hd95", "--set", "data.img_size=32",
    "--set", "train.steps_per_epoch=2", "--set", "train.batch_size=4",
    "--set", "model.options={depth: 2, filters: 4}",
]  # fmt: skip


def test_engine_names_and_cell_resources():
    assert parse_engine("ray") is Engine.RAY and parse_engine(Engine.LOCAL) is Engine.LOCAL
    with pytest.raises(
        ConfigError, match="--engine dask: unknown engine; valid engines: local, ray"
    ):
        parse_engine("dask")
    res = CellResources(cpus=2, gpus=0.5, retries=5)
    assert res.task_options() == {
        "num_cpus": 2,
        "num_gpus": 0.5,
        "max_retries": 5,
        "retry_exceptions": False,
    }
    assert res.threads() == 2 and CellResources(cpus=0.5).threads() == 1
    CellResources().check(Engine.LOCAL)  # the defaults are the local engine's
    res.check(Engine.RAY)
    for bad, needle in [
        (CellResources(cpus=0), "--cpus-per-cell 0: give a number of CPUs > 0"),
        (CellResources(gpus=-1), "--gpus-per-cell -1: give a number of GPUs >= 0"),
        (CellResources(retries=-1), "--retries -1: give 0 or more"),
    ]:
        with pytest.raises(ConfigError, match=needle):
            bad.check(Engine.RAY)


def _one_line_error(res) -> str:
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1, res.output
    return lines[0]


def test_without_ray_the_ray_engine_is_one_line_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    out = tmp_path / "sweep"
    res = CliRunner().invoke(main, [*ARGS, "--engine", "ray", "--out", str(out)])
    assert _one_line_error(res) == "error: --engine ray needs Ray: pip install 'kseg[ray]'"
    assert not out.exists()


@pytest.mark.parametrize(
    "flags", [["--cpus-per-cell", "2"], ["--address", "10.0.0.5:6379"], ["--retries", "1"]]
)
def test_the_local_engine_refuses_ray_flags(tmp_path, flags):
    out = tmp_path / "sweep"
    res = CliRunner().invoke(main, [*ARGS, *flags, "--out", str(out)])
    assert "need --engine ray" in _one_line_error(res)
    assert not out.exists()


def test_sweep_cli_does_not_import_ray():
    import subprocess

    code = "import sys, kseg.cli, kseg.sweep; kseg.cli.main.commands; print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


class FakeRay:
    """Stands for the ``ray`` module: tasks run in this process when their result is fetched, in
    submission order; it records ``init``/``shutdown`` and every task's options."""

    __version__ = "fake"

    class exceptions:
        class RayError(Exception):
            pass

        class RayTaskError(RayError):
            def __init__(self, cause):
                self.cause = cause

        class WorkerCrashedError(RayError):
            pass

    def __init__(self, nodes=({"CPU": 2.0},), crash=()):
        self.nodes_ = [{"Alive": True, "Resources": dict(n)} for n in nodes]
        self.crash = set(crash)  # cell names whose worker "dies" every time
        self.initialized, self.inits, self.shutdowns, self.tasks = False, [], 0, []

    def is_initialized(self):
        return self.initialized

    def init(self, **kw):
        self.initialized = True
        self.inits.append(kw)

    def shutdown(self):
        self.initialized = False
        self.shutdowns += 1

    def nodes(self):
        return self.nodes_

    def remote(self, **declared):
        """``ray.remote(**options)(fn)``; ``.options(name=...)`` per call adds to them."""
        fake = self

        class Remote:
            def __init__(self, fn, opts):
                self.fn, self.opts = fn, opts

            def options(self, **kw):
                return Remote(self.fn, {**self.opts, **kw})

            def remote(self, *args):
                fake.tasks.append(self.opts)
                return Ref(self.fn, args, self.opts["name"])

        return lambda fn: Remote(fn, dict(declared))

    def wait(self, refs, num_returns=1):
        return refs[:num_returns], refs[num_returns:]

    def get(self, ref):
        fn, args, name = ref.fn, ref.args, ref.name
        if name.split(":", 1)[1] in self.crash:
            raise self.exceptions.WorkerCrashedError("worker died")
        try:
            return fn(*args)
        except Exception as e:
            raise self.exceptions.RayTaskError(e) from e


class Ref:
    """Stands for a Ray ObjectRef (hashable by identity)."""

    def __init__(self, fn, args, name):
        self.fn, self.args, self.name = fn, args, name


def _fake_cell(calls):
    """Stands for kseg.sweep.cell.train: writes a cell record as a trained cell would."""

    def run_cell(base, cell, split, model, loss, seed, plan, *, on_start=None):
        from kseg.atomic import write_json
        from kseg.sweep import cell as one_cell

        cell.mkdir(parents=True, exist_ok=True)
        attempt = one_cell.count_attempt(cell)
        on_start(cell, attempt)
        calls.append((cell.name, Path.cwd(), split.is_absolute()))
        dice = {"dice": 0.5, "bce": 0.25}[loss]
        record = {"cell": cell.name, "model": model, "loss": loss, "seed": seed, "dice": dice,
                  "iou": dice / 2, "precision": None, "recall": None, "params": 10, "macs": 20,
                  "train_seconds": 1.0, "epochs": 1, "hd95": None, "int8_dice": None,
                  "attempts": attempt, "cell_seconds": 1.5}  # fmt: skip
        write_json(cell / one_cell.CELL_FILE, record)

    return run_cell


def test_ray_driver_declares_resources_and_collects_the_same_results(tmp_path, monkeypatch):
    import kseg.sweep.cell as one_cell

    fake, calls = FakeRay(nodes=[{"CPU": 2.0}, {"CPU": 4.0, "GPU": 1.0}]), []
    monkeypatch.setitem(sys.modules, "ray", fake)
    monkeypatch.setattr(one_cell, "train", _fake_cell(calls))
    monkeypatch.chdir(tmp_path)
    flags = ["--engine", "ray", "--cpus-per-cell", "3", "--gpus-per-cell", "0.5"]
    res = CliRunner().invoke(main, [*ARGS, *flags, "--out", "sweep"])  # a relative --out
    assert res.exit_code == 0, res.output
    out = tmp_path / "sweep"
    assert fake.tasks == [
        {"num_cpus": 3.0, "num_gpus": 0.5, "max_retries": 3, "retry_exceptions": False,
         "name": f"kseg-sweep:unet__{loss}__seed0"}
        for loss in ("dice", "bce")
    ]  # fmt: skip
    assert fake.inits == [{"include_dashboard": False, "logging_level": 30}]
    assert fake.shutdowns == 1 and not fake.initialized  # its own connection, closed
    # each task ran in the driver's working directory on absolute paths
    assert calls == [(f"unet__{lo}__seed0", tmp_path, True) for lo in ("dice", "bce")]
    assert "submitted 2 cells to Ray (6 CPUs, 1 GPUs on 2 node(s); per cell 3 CPU" in res.output
    assert "[2/2] unet__bce__seed0 done on " in res.output

    rows = list(csv.DictReader((out / "results.csv").open()))
    assert [(r["model"], r["loss"], float(r["dice_mean"])) for r in rows] == [
        ("unet", "dice", 0.5),
        ("unet", "bce", 0.25),
    ]
    assert (out / "heatmap.png").stat().st_size > 2000 and (out / "results.md").is_file()
    engine = json.loads((out / "engine.json").read_text())
    assert engine["cluster"] == {"nodes": 2, "CPU": 6.0, "GPU": 1.0}
    assert [t["cell"] for t in engine["tasks"]] == ["unet__dice__seed0", "unet__bce__seed0"]
    for t in engine["tasks"]:
        assert t["submitted"] <= t["entered"] <= t["started"] <= t["finished"] <= t["collected"]
        cell = json.loads((out / "cells" / t["cell"] / "engine.json").read_text())
        assert cell["pid"] == t["pid"] and cell["attempt"] == t["attempt"] == 1

    # finished cells are not submitted again; a missing one is, alone
    (out / "cells" / "unet__bce__seed0" / "cell.json").unlink()
    fake.tasks.clear()
    res = CliRunner().invoke(main, [*ARGS, *flags, "--out", "sweep"])
    assert res.exit_code == 0, res.output
    assert [t["name"] for t in fake.tasks] == ["kseg-sweep:unet__bce__seed0"]
    assert json.loads((out / "cells/unet__bce__seed0/cell.json").read_text())["attempts"] == 2
    assert len(list(csv.DictReader((out / "results.csv").open()))) == 2


def test_ray_driver_errors(tmp_path, monkeypatch):
    import kseg.sweep.cell as one_cell

    calls = []
    monkeypatch.setattr(one_cell, "train", _fake_cell(calls))

    # no node can hold a cell: refused before any task instead of waiting forever
    monkeypatch.setitem(sys.modules, "ray", FakeRay(nodes=[{"CPU": 2.0}]))
    res = CliRunner().invoke(
        main, [*ARGS, "--engine", "ray", "--gpus-per-cell", "1", "--out", str(tmp_path / "a")]
    )
    assert _one_line_error(res) == (
        "error: no node of the Ray cluster has 1 CPUs and 1 GPUs for one cell (largest node: "
        "2 CPUs, 0 GPUs); lower --cpus-per-cell / --gpus-per-cell"
    )

    # a worker lost more often than retried: the other cell still finishes, then one line
    fake = FakeRay(crash={"unet__dice__seed0"})
    monkeypatch.setitem(sys.modules, "ray", fake)
    out = tmp_path / "b"
    res = CliRunner().invoke(main, [*ARGS, "--engine", "ray", "--retries", "1", "--out", str(out)])
    assert res.output.strip().splitlines()[-1] == (
        "error: unet__dice__seed0: its Ray worker was lost 2 times (WorkerCrashedError); run the "
        "same command again to continue the cell from its last completed epoch"
    )
    assert res.exit_code == 2 and (out / "cells/unet__bce__seed0/cell.json").is_file()
    assert fake.shutdowns == 1

    # a user error inside a cell: not retried, the same one line in the driver after the others
    fake_cell = _fake_cell(calls)

    def bad_data(base, cell, *a, **kw):
        if "dice" in cell.name:
            raise DataError(f"{cell.name}: masks/x.png is not a mask")
        return fake_cell(base, cell, *a, **kw)

    monkeypatch.setattr(one_cell, "train", bad_data)
    monkeypatch.setitem(sys.modules, "ray", FakeRay())
    out = tmp_path / "c"
    res = CliRunner().invoke(main, [*ARGS, "--engine", "ray", "--out", str(out)])
    assert res.exit_code == 2
    assert res.output.strip().splitlines()[-1] == (
        "error: unet__dice__seed0: masks/x.png is not a mask"
    )
    assert (out / "cells/unet__bce__seed0/cell.json").is_file()
    assert not (out / "results.csv").exists()  # written once every cell is done


def test_a_worker_that_cannot_see_the_sweep_folder_says_so(tmp_path):
    from kseg.sweep import SweepPlan
    from kseg.sweep.ray_engine import cell_task

    job = CellJob(
        None, tmp_path / "cells" / "c", tmp_path / "split.csv", "unet", "dice", 0,
        SweepPlan(models=("unet",), losses=("dice",)),
    )  # fmt: skip
    info = cell_task(job, 1, str(tmp_path))
    assert info["error"] == DataError.__name__
    assert (
        "cannot see the sweep folder" in info["message"]
        and "mounts at the same path" in (info["message"])
    )
