"""Sweep tables from cell records: binary columns unchanged, per-class columns and heat-map for
multi-class cells (records as the runner writes them from each run's metrics.json)."""

from __future__ import annotations

import csv
import io

import pytest

from kseg.sweep.results import _plots, aggregate, to_csv, to_markdown
from kseg.sweep.runner import SweepPlan

PLAN = SweepPlan(models=("unet",), losses=("dice", "bce"), seeds=(0, 1), int8=True, hd95=False)
BINARY_HEADER = ["model", "loss", "seeds", "params", "macs"] + [
    f"{k}_{s}"
    for k in ("dice", "iou", "precision", "recall", "hd95", "int8_dice", "epochs",
              "train_seconds", "cell_seconds")
    for s in ("mean", "std")
]  # fmt: skip


def _record(loss: str, seed: int, nerve: float | None, vessel: float) -> dict:
    rec = {"cell": f"unet-{loss}-s{seed}", "model": "unet", "loss": loss, "seed": seed,
           "dice": 0.5, "iou": 0.4, "precision": 0.6, "recall": 0.5, "params": 1000,
           "macs": 2 * 10**9, "train_seconds": 10.0, "epochs": 2, "hd95": None,
           "int8_dice": 0.49, "cell_seconds": 12.0}  # fmt: skip
    if nerve is not None:
        rec["per_class"] = {
            "nerve": {"dice": nerve, "iou": nerve / 2, "int8_dice": nerve - 0.01},
            "blood vessel": {"dice": vessel, "iou": vessel / 2, "int8_dice": vessel},
        }
    return rec


def test_binary_records_keep_the_columns():
    rows = aggregate([_record("dice", 0, None, 0), _record("bce", 0, None, 0)], PLAN)
    header = next(csv.reader(io.StringIO(to_csv(rows))))
    assert header == BINARY_HEADER
    assert "Per class" not in to_markdown(rows, PLAN)


def test_per_class_columns_mean_std_and_heatmap(tmp_path):
    records = [
        _record("dice", 0, 0.6, 0.2), _record("dice", 1, 0.8, 0.4),
        _record("bce", 0, 0.5, 0.1), _record("bce", 1, 0.5, 0.3),
    ]  # fmt: skip
    rows = aggregate(records, PLAN)
    header = next(csv.reader(io.StringIO(to_csv(rows))))
    assert header[: len(BINARY_HEADER)] == BINARY_HEADER
    assert header[len(BINARY_HEADER) :] == [
        f"{k}_{c}_{s}"
        for c in ("nerve", "blood_vessel")
        for k in ("dice", "iou", "int8_dice")
        for s in ("mean", "std")
    ]
    dice_row = rows[0]
    assert dice_row["dice_nerve_mean"] == pytest.approx(0.7)
    assert dice_row["dice_nerve_std"] == pytest.approx(0.1414214, rel=1e-6)  # sample std of .6, .8
    assert dice_row["iou_blood_vessel_mean"] == pytest.approx(0.15)
    assert dice_row["int8_dice_nerve_mean"] == pytest.approx(0.69)
    md = to_markdown(rows, PLAN)
    assert (
        "## Per class" in md and "| unet | bce | 0.5000 | 0.2500 | 0.4900 | 0.2000 ± 0.1414 |" in md
    )
    written = _plots(rows, tmp_path, PLAN)
    assert tmp_path / "heatmap_per_class.png" in written
    assert (tmp_path / "heatmap_per_class.png").stat().st_size > 2000
