"""kseg sweep --engine ray on a real Ray cluster on this machine (a head with 2 CPUs on loopback,
so two cells train at once in two worker processes): the same table as the local runner, and a
worker killed mid-cell whose cell is retried from its last completed epoch."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("ray", reason="needs Ray: pip install 'kseg[ray]'")
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
TINY = [
    "--data", "synthetic:ultrasound:24", "--no-int8", "--no-hd95", "--set", "data.img_size=32",
    "--set", "train.batch_size=4", "--set", "model.options={depth: 2, filters: 4}",
]  # fmt: skip
TIMES = ("train_seconds_mean", "train_seconds_std", "cell_seconds_mean", "cell_seconds_std")


@pytest.fixture(scope="module")
def ray_address():
    """``ray start --head --block`` with 2 CPUs; stopped (SIGTERM ends the node's processes)
    however the tests end."""
    temp = tempfile.mkdtemp(prefix="kray-", dir="/tmp")  # short: Ray's socket paths are limited
    log = Path(temp) / "head.log"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    ray_cli = Path(sys.executable).with_name("ray")
    cmd = [
        str(ray_cli), "start", "--head", "--block", "--num-cpus", "2", "--port", "0",
        "--node-ip-address", "127.0.0.1", "--include-dashboard", "false",
        "--disable-usage-stats", "--object-store-memory", str(100 * 2**20), "--temp-dir", temp,
    ]  # fmt: skip
    with log.open("w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env)
    try:
        deadline, port = time.monotonic() + 180, None
        while port is None:
            m = re.search(r"ray start --address='[^':]+:(\d+)'", log.read_text())
            if m:
                port = m.group(1)
            elif proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"ray start did not come up:\n{log.read_text()[-2000:]}")
            else:
                time.sleep(0.5)
        yield f"127.0.0.1:{port}"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)
        shutil.rmtree(temp, ignore_errors=True)


def kseg(*args: str, **env: str) -> subprocess.CompletedProcess:
    """``kseg ARGS`` in a child process (the Ray driver), output captured.

    ``ray start`` turned on token authentication and saved the token in ~/.ray; a driver that
    names the address joins with RAY_AUTH_MODE=token (Ray's rule, read when Ray is imported).
    """
    env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_AUTH_MODE": "token", **env}
    cmd = [sys.executable, "-c", "from kseg.cli import main; main()", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)


def _table(out: Path) -> tuple[list[str], list[dict[str, str]]]:
    with (out / "results.csv").open() as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
    return list(reader.fieldnames or ()), rows


def test_ray_sweep_on_two_workers_gives_the_local_table(tmp_path, ray_address):
    args = ["sweep", "--models", "unet", "--losses", "dice,bce,focal,tversky", "--epochs", "2",
            *TINY, "--set", "train.steps_per_epoch=2"]  # fmt: skip
    ray_args = [*args, "--engine", "ray", "--address", ray_address, "--out", str(tmp_path / "ray")]
    res = kseg(*ray_args)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "submitted 4 cells to Ray (2 CPUs, 0 GPUs on 1 node(s); per cell 1 CPU" in res.stdout

    # the local runner with TensorFlow on one thread, as a cell that reserved 1 CPU runs: float
    # sums then add up in the same order and the metrics agree to the last digit
    local = kseg(
        *args, "--out", str(tmp_path / "local"), TF_NUM_INTRAOP_THREADS="1",
        TF_NUM_INTEROP_THREADS="1",
    )  # fmt: skip
    assert local.returncode == 0, local.stderr[-3000:]

    (ray_cols, ray_rows), (local_cols, local_rows) = (
        _table(tmp_path / "ray"),
        _table(tmp_path / "local"),
    )
    assert ray_cols == local_cols and len(ray_rows) == 4
    for r, lo in zip(ray_rows, local_rows, strict=True):
        assert {k: v for k, v in r.items() if k not in TIMES} == {
            k: v for k, v in lo.items() if k not in TIMES
        }
        assert 0 <= float(r["dice_mean"]) <= 1 and float(r["epochs_mean"]) == 2
    for png in ("heatmap.png", "curves.png"):
        assert (tmp_path / "ray" / png).stat().st_size > 2000

    tasks = json.loads((tmp_path / "ray" / "engine.json").read_text())["tasks"]
    assert len(tasks) == 4 and len({t["pid"] for t in tasks}) == 2  # two worker processes
    spans = sorted((t["started"], t["finished"]) for t in tasks)
    assert any(b[0] < a[1] for a, b in zip(spans, spans[1:], strict=False))  # cells overlapped

    # finished cells are skipped: a second start submits nothing and rewrites the same table
    res = kseg(*ray_args)
    assert res.returncode == 0 and "submitted" not in res.stdout, res.stdout + res.stderr[-2000:]
    assert _table(tmp_path / "ray")[1] == ray_rows


def test_a_killed_ray_worker_is_retried_from_its_last_epoch(tmp_path, ray_address):
    out, victim = tmp_path / "sweep", tmp_path / "sweep" / "cells" / "unet__bce__seed0"
    args = ["sweep", "--models", "unet", "--losses", "dice,bce", "--epochs", "4", *TINY,
            "--set", "train.steps_per_epoch=8", "--engine", "ray", "--address", ray_address,
            "--out", str(out)]  # fmt: skip
    killed: list[int] = []
    stop = threading.Event()

    def kill_after_first_epoch() -> None:
        """SIGKILL the victim's worker once its first epoch is in history.csv."""
        while not stop.is_set():
            try:
                rows = (victim / "history.csv").read_text().strip().splitlines()
                worker = json.loads((victim / "engine.json").read_text())
            except (OSError, ValueError):
                rows, worker = [], {}
            if len(rows) >= 2 and worker.get("attempt") == 1:
                os.kill(worker["pid"], signal.SIGKILL)
                killed.append(worker["pid"])
                return
            time.sleep(0.02)

    killer = threading.Thread(target=kill_after_first_epoch, daemon=True)
    killer.start()
    try:
        res = kseg(*args)
    finally:
        stop.set()
        killer.join(timeout=10)
    assert res.returncode == 0, res.stderr[-3000:]
    assert killed, "the victim cell finished before its worker could be killed"
    cell = json.loads((victim / "cell.json").read_text())
    assert cell["attempts"] == 2 and cell["epochs"] == 4
    with (victim / "history.csv").open() as fh:
        assert [int(r["epoch"]) for r in csv.DictReader(fh)] == [0, 1, 2, 3]  # each epoch once
    second = json.loads((victim / "engine.json").read_text())
    assert second["attempt"] == 2 and second["pid"] != killed[0]
    assert "unet__bce__seed0 done on" in res.stdout and "(attempt 2," in res.stdout
    other = json.loads((out / "cells" / "unet__dice__seed0" / "cell.json").read_text())
    assert other["attempts"] == 1 and other["epochs"] == 4
    assert [r["loss"] for r in _table(out)[1]] == ["dice", "bce"]
