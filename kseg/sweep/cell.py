"""One cell of a sweep: a kseg run directory trained from the sweep's config and split, and the
``cell.json`` record that marks it finished.

Both engines run :func:`train` (``local`` in the sweep's process, ``ray`` in a Ray worker:
:mod:`kseg.sweep.ray_engine`); :mod:`kseg.sweep.runner` plans the cells and collects the records.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kseg.atomic import write_json

CELL_FILE = "cell.json"
ATTEMPTS_FILE = "attempts.json"
ENGINE_FILE = "engine.json"  # --engine ray: where and when each cell of the last start ran


def train(
    base,
    cell: Path,
    split: Path,
    model: str,
    loss: str,
    seed: int,
    plan,
    *,
    on_start: Callable[[Path, int], None] | None = None,
) -> None:
    """Train one cell (fresh, or from its last completed epoch) and write its ``cell.json``.

    ``on_start(cell, attempt)`` is called once the cell's folder is ready, before training.
    """
    from kseg.config import save_config
    from kseg.training import train as train_run

    cfg = dataclasses.replace(
        base,
        model=dataclasses.replace(base.model, name=model),
        train=dataclasses.replace(base.train, loss=loss, seed=seed),
    )
    started = time.perf_counter()
    if not (cell / "config.yaml").is_file():
        # a fresh cell: the sweep's split, then a "resume" that starts at epoch 0; a cell killed
        # mid-way has its config and backup and continues from its last completed epoch
        if cell.exists():
            shutil.rmtree(cell)
        cell.mkdir(parents=True)
        shutil.copyfile(split, cell / "split.csv")
        save_config(cfg, cell / "config.yaml")
    attempts = count_attempt(cell)
    if on_start is not None:
        on_start(cell, attempts)
    metrics = train_run(None, cell, resume=True, verbose=0)
    seconds = time.perf_counter() - started
    record = _cell_record(cell, model, loss, seed, metrics, seconds, plan)
    record["attempts"] = attempts
    record["cell_seconds"] = time.perf_counter() - started
    write_json(cell / CELL_FILE, record)


def count_attempt(cell: Path) -> int:
    """Count this start of ``cell`` (``ATTEMPTS_FILE``); more than 1 means it was resumed, and its
    times then cover the last start only."""
    path = cell / ATTEMPTS_FILE
    n = json.loads(path.read_text(encoding="utf-8"))["attempts"] + 1 if path.is_file() else 1
    write_json(path, {"attempts": n})
    return n


def _cell_record(cell: Path, model_name, loss, seed, metrics, seconds, plan) -> dict[str, Any]:
    from kseg.models import load_model
    from kseg.models.complexity import count_macs, count_params

    best = cell / "best.keras"
    model = load_model(best)
    rec: dict[str, Any] = {
        "cell": cell.name,
        "model": model_name,
        "loss": loss,
        "seed": seed,
        "dice": metrics.get("dice"),
        "iou": metrics.get("iou"),
        "precision": metrics.get("precision"),
        "recall": metrics.get("recall"),
        "params": int(count_params(model)),
        "macs": int(count_macs(model)),
        "train_seconds": seconds,
        "train_precision": metrics.get("train_precision"),
        "epochs": epochs_done(cell),
        "hd95": None,
        "int8_dice": None,
    }
    if metrics.get("per_class"):  # multi-class: each class by name, from the run's metrics.json
        rec["per_class"] = {
            n: {"dice": c["dice"], "iou": c["iou"]} for n, c in metrics["per_class"].items()
        }
    if plan.hd95:
        from kseg.evaluate import evaluate_model

        t = time.perf_counter()
        ev = evaluate_model(best, split="val", out_dir=cell / "eval")
        rec["hd95"] = ev.get("hd95_mean")
        rec["hd95_seconds"] = time.perf_counter() - t
    if plan.int8:
        from kseg.errors import KsegError
        from kseg.export import export_tflite

        t = time.perf_counter()
        try:
            card = export_tflite(best, "int8", out=cell / "best.int8.tflite", max_dice_drop=-1)
            rec["int8_dice"] = card["tflite_dice"]
            for n, c in (card["parity"].get("per_class") or {}).items():
                rec.get("per_class", {}).get(n, {})["int8_dice"] = c["tflite_dice"]
        except KsegError as e:  # a model that does not convert is a result, not a crash
            rec["int8_error"] = str(e)
        rec["int8_seconds"] = time.perf_counter() - t
    return rec


def epochs_done(cell: Path) -> int:
    hist = cell / "history.csv"
    if not hist.is_file():
        return 0
    return max(0, len(hist.read_text(encoding="utf-8").strip().splitlines()) - 1)
