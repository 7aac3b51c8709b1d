"""Training: a short real run learns; the run directory describes it; --resume survives SIGKILL;
the mirrored strategy trains over two logical CPUs."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from kseg.config import load_config
from kseg.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    return env


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_short_run_learns(trained_run):
    metrics = json.loads((trained_run / "metrics.json").read_text())
    trivial = max(metrics["baseline_dice_all_foreground"], metrics["baseline_dice_all_background"])
    # an all-foreground guess gets ~0.12 on these lesions; a model that learned nothing gets about that
    assert metrics["dice"] > trivial + 0.25, metrics
    assert metrics["dice"] > 0.4
    for key in ("dice", "iou", "precision", "recall", "dice_mean"):
        assert 0.0 <= metrics[key] <= 1.0
    assert metrics["iou"] < metrics["dice"]  # IoU = D / (2 - D) < D for 0 < D < 1


def test_run_directory_is_self_describing(trained_run):
    for name in (
        "config.yaml",
        "split.csv",
        "history.csv",
        "best.keras",
        "last.keras",
        "metrics.json",
        "curves.png",
        "predictions.png",
    ):
        assert (trained_run / name).stat().st_size > 0, name
    assert list((trained_run / "tensorboard").rglob("events.out.tfevents*"))
    cfg = load_config(trained_run / "config.yaml")
    assert cfg.data.img_size == 64 and cfg.model.options == {"depth": 3, "filters": 8}
    history = _rows(trained_run / "history.csv")
    assert [int(r["epoch"]) for r in history] == list(range(len(history)))
    assert {"loss", "val_loss", "dice", "val_dice"} <= set(history[0])
    # a binary run's columns stay as they were (per-class columns are for K > 1 only)
    metric_cols = {"loss", "dice", "iou", "precision", "recall", "dice_mean"}
    assert set(history[0]) - {"epoch", "learning_rate", "lr"} == (
        metric_cols | {f"val_{c}" for c in metric_cols}
    )
    assert "per_class" not in json.loads((trained_run / "metrics.json").read_text())
    split = _rows(trained_run / "split.csv")
    assert len(split) == 96
    by_group: dict[str, set[str]] = {}
    for r in split:
        by_group.setdefault(r["group"], set()).add(r["split"])
    assert all(len(s) == 1 for s in by_group.values())
    metrics = json.loads((trained_run / "metrics.json").read_text())
    assert metrics["n_images"] == sum(r["split"] == "val" for r in split)
    # best.keras is the epoch with the highest val_dice
    best = max(float(r["val_dice"]) for r in history)
    assert metrics["best_epoch"] == 1 + max(
        range(len(history)), key=lambda i: float(history[i]["val_dice"])
    )
    assert abs(metrics["dice"] - best) < 0.02


def test_new_run_never_overwrites_a_run(trained_run):
    from kseg.training import train

    digest = hashlib.sha256((trained_run / "best.keras").read_bytes()).hexdigest()
    before = sorted(p.name for p in trained_run.iterdir())
    with pytest.raises(ConfigError, match="--resume"):
        train(load_config(trained_run / "config.yaml"), trained_run)
    assert sorted(p.name for p in trained_run.iterdir()) == before
    assert hashlib.sha256((trained_run / "best.keras").read_bytes()).hexdigest() == digest


def test_resume_after_sigkill_continues_from_last_completed_epoch(tmp_path):
    run = tmp_path / "run"
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(
        textwrap.dedent("""
        data: {synthetic_n: 48, img_size: 32, augment: {enabled: false}}
        model: {options: {depth: 2, filters: 4}}
        train: {epochs: 4, batch_size: 4, steps_per_epoch: 60, seed: 3}
    """)
    )
    cmd = [sys.executable, "-m", "kseg.cli", "train", "--config", str(cfg), "--out", str(run)]
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    history = run / "history.csv"
    deadline = time.time() + 300
    try:
        # wait for epoch 1 to be logged, then kill in the middle of epoch 2
        while time.time() < deadline and not (history.is_file() and len(_rows(history)) >= 1):
            assert proc.poll() is None, "training exited before the first epoch"
            time.sleep(0.2)
        # and for the epoch's backup (written after the history row; on a loaded machine the
        # kill could otherwise land before it, and the resume would rightly start again)
        while time.time() < deadline and not list((run / "backup").rglob("checkpoint")):
            assert proc.poll() is None, "training exited before its first backup"
            time.sleep(0.2)
        time.sleep(1.0)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    done = len(_rows(history))
    assert 1 <= done < 4, f"kill came too late ({done} epochs logged)"
    first_rows = _rows(history)

    out = subprocess.run(
        [sys.executable, "-m", "kseg.cli", "train", "--resume", str(run)],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    rows = _rows(history)
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2, 3]  # no epoch repeated, none missing
    assert rows[: len(first_rows)] == first_rows  # earlier epochs kept, not retrained
    assert "Epoch 1/4" not in out.stdout  # resumed, not restarted
    assert json.loads((run / "metrics.json").read_text())["epochs_completed"] == 4


MIRRORED = """
import sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from kseg.config import load_config
from kseg.training import train
from kseg.training.strategy import make_strategy
strategy = make_strategy("mirrored")
assert strategy.num_replicas_in_sync == 2, strategy.num_replicas_in_sync
cfg = load_config(None, {"data.synthetic_n": 24, "data.img_size": 32, "train.epochs": 2,
    "train.batch_size": 4, "train.strategy": "mirrored", "model.options": {"depth": 2, "filters": 4}})
m = train(cfg, sys.argv[1], verbose=0)
print("REPLICAS", strategy.num_replicas_in_sync, "DICE", m["dice"])
"""


def test_mirrored_strategy_over_two_logical_cpus(tmp_path):
    out = subprocess.run(
        [sys.executable, "-c", MIRRORED, str(tmp_path / "run")],
        env={**_env(), "TF_USE_LEGACY_KERAS": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "REPLICAS 2" in out.stdout
    assert len(_rows(tmp_path / "run" / "history.csv")) == 2


@pytest.mark.parametrize("replicas", [1, 2, 3, 4])
def test_validation_batches_never_leave_a_replica_empty(replicas):
    # A last batch smaller than the replica count gives a replica an empty slice, on which
    # TensorFlow's oneDNN fused convolution fails (the mirrored test above hit it with 5
    # validation images in batches of 4 over 2 replicas).
    from kseg.training.loop import eval_batch_size

    for n in range(replicas, 70):
        for batch in range(replicas, 20):
            b = eval_batch_size(n, batch, replicas)
            sizes = [min(b, n - i) for i in range(0, n, b)]
            assert min(sizes) >= replicas, (n, batch, b, sizes)
            if replicas == 1:
                assert b == batch
            elif b > batch:  # larger only when no smaller batch size works
                assert all(0 < n % s < replicas for s in range(replicas, batch + 1))
    assert eval_batch_size(5, 4, 2) == 3
    with pytest.raises(ConfigError, match="fewer than the 2 replicas"):
        eval_batch_size(1, 4, 2)


def test_multi_worker_needs_tf_config(monkeypatch):
    from kseg.training.strategy import make_strategy

    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ConfigError, match="TF_CONFIG"):
        make_strategy("multi_worker")


def test_warmup_cosine_schedule_values():
    from kseg.training.callbacks import WarmupCosine

    s = WarmupCosine(1.0, total_steps=110, warmup_steps=10, min_ratio=0.0)
    assert float(s(0)) == pytest.approx(0.1)  # (0 + 1) / 10
    assert float(s(9)) == pytest.approx(1.0)
    assert float(s(10)) == pytest.approx(1.0)
    assert float(s(60)) == pytest.approx(0.5, abs=1e-6)  # half-way: (1 + cos(pi/2)) / 2
    assert float(s(110)) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.slow
def test_denoise_task_beats_the_noisy_input(tmp_path):
    from kseg.training import train

    cfg = load_config(
        None,
        {
            "train.task": "denoise",
            "model.name": "denoising_ae",
            "data.synthetic_n": 64,
            "data.img_size": 64,
            "train.epochs": 12,
            "train.batch_size": 8,
            "train.steps_per_epoch": 15,
            "train.learning_rate": 0.003,
            "model.options": {"depth": 2, "filters": 8},
        },
    )
    m = train(cfg, tmp_path / "dn", verbose=0)
    assert m["psnr"] > m["psnr_noisy_input"] + 0.5, m
    history = _rows(tmp_path / "dn" / "history.csv")
    assert float(history[-1]["val_psnr"]) > float(history[0]["val_psnr"]) + 3.0


def test_task_and_model_must_agree(tmp_path):
    from kseg.training import train

    with pytest.raises(ConfigError, match="train.task=denoise"):
        train(load_config(None, {"model.name": "denoising_ae"}), tmp_path / "x")
    assert not (tmp_path / "x").exists()
