"""Sweep results: ``results.csv|json|md`` (mean and spread over seeds), a models x losses heat-map,
every cell's learning curves on one sheet, and TensorBoard HParams logs.

Multi-class cells (records with ``per_class``, from each run's ``metrics.json``) add, per
foreground class, ``dice_NAME``, ``iou_NAME`` and ``int8_dice_NAME`` columns (mean and std over
seeds; NAME as in :func:`kseg.scores.class_suffixes`), a per-class table in ``results.md`` and
``heatmap_per_class.png`` (one models x losses panel per class). The top-level ``dice`` of such a
cell is the foreground mean.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

import numpy as np

from kseg.atomic import atomic_path, write_json, write_text
from kseg.scores import class_suffixes

METRICS = (
    "dice",
    "iou",
    "precision",
    "recall",
    "hd95",
    "int8_dice",
    "epochs",
    "train_seconds",
    "cell_seconds",
)


def _stats(values: list[float | None]) -> tuple[float | None, float | None]:
    vals = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if not vals:
        return None, None
    return float(np.mean(vals)), float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0


#: per-class keys of a cell record's ``per_class`` entries, in column order
CLASS_METRICS = ("dice", "iou", "int8_dice")


def class_columns(records: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """``(class name, column suffix)`` of every class in the records' ``per_class``, first-seen
    order (empty for binary sweeps, whose tables keep their columns)."""
    names: list[str] = []
    for r in records:
        for n in r.get("per_class") or {}:
            if n not in names:
                names.append(n)
    return list(zip(names, class_suffixes(names), strict=True))


def aggregate(records: list[dict[str, Any]], plan) -> list[dict[str, Any]]:
    """One row per (model, loss): mean and std over seeds of every metric, params, MACs, and of
    each class's Dice, IoU and INT8 Dice for multi-class cells (``dice_NAME_mean`` ...)."""
    classes = class_columns(records)
    rows = []
    for model in plan.models:
        for loss in plan.losses:
            cells = [r for r in records if r["model"] == model and r["loss"] == loss]
            if not cells:
                continue
            row: dict[str, Any] = {
                "model": model,
                "loss": loss,
                "seeds": len(cells),
                "params": cells[0]["params"],
                "macs": cells[0]["macs"],
            }
            for key in METRICS:
                row[f"{key}_mean"], row[f"{key}_std"] = _stats([c.get(key) for c in cells])
            for name, suffix in classes:
                for key in CLASS_METRICS:
                    values = [((c.get("per_class") or {}).get(name) or {}).get(key) for c in cells]
                    col = f"{key}_{suffix}"
                    row[f"{col}_mean"], row[f"{col}_std"] = _stats(values)
            rows.append(row)
    return rows


def _f(v: Any, nd: int = 4) -> str:
    return "-" if v is None else f"{v:.{nd}f}"


def _ms(row: dict[str, Any], key: str, nd: int = 4) -> str:
    """``mean ± std`` (``mean`` alone for one seed, ``-`` when missing)."""
    m, s = row[f"{key}_mean"], row[f"{key}_std"]
    if m is None:
        return "-"
    return f"{m:.{nd}f}" if not s else f"{m:.{nd}f} ± {s:.{nd}f}"


def to_markdown(rows: list[dict[str, Any]], plan) -> str:
    lines = [
        "# kseg sweep",
        "",
        f"{len(plan.models)} models x {len(plan.losses)} losses x {len(plan.seeds)} seed(s); "
        "validation metrics of each cell's best epoch, mean ± std over seeds; HD95 in pixels at "
        "the original image size; INT8 Dice after full-integer TFLite conversion; epochs run "
        "(early stopping or a time limit may end a cell early); train s = training, cell s = the "
        "whole cell (training, HD95 evaluation, INT8 conversion), both per seed.",
        "",
        "| model | loss | Dice | IoU | precision | recall | HD95 px | INT8 Dice | params | GMACs "
        "| epochs | train s | cell s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['loss']} | {_ms(r, 'dice')} | {_ms(r, 'iou')} "
            f"| {_ms(r, 'precision')} | {_ms(r, 'recall')} | {_ms(r, 'hd95', 1)} "
            f"| {_ms(r, 'int8_dice')} | {r['params']:,} "
            f"| {r['macs'] / 1e9:.2f} | {_f(r['epochs_mean'], 0)} "
            f"| {_f(r['train_seconds_mean'], 0)} | {_f(r['cell_seconds_mean'], 0)} |"
        )
    suffixes = _row_suffixes(rows)
    if suffixes:
        lines += [
            "",
            "## Per class",
            "",
            "Dice of each class over all validation pixels (Dice above is their mean); "
            "INT8 after full-integer conversion.",
            "",
            "| model | loss | "
            + " | ".join(f"{s} Dice | {s} IoU | {s} INT8 Dice" for s in suffixes)
            + " |",
            "|---|---|" + "---:|" * (3 * len(suffixes)),
        ]
        for r in rows:
            cells = [_ms(r, f"{key}_{s}") for s in suffixes for key in CLASS_METRICS]
            lines.append(f"| {r['model']} | {r['loss']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _row_suffixes(rows: list[dict[str, Any]]) -> list[str]:
    """Class suffixes present in the aggregated rows (``dice_NAME_mean`` columns)."""
    if not rows:
        return []
    return [k[len("dice_") : -len("_mean")] for k in rows[0] if _is_class_dice(k)]


def _is_class_dice(key: str) -> bool:
    base = ("dice_mean", "int8_dice_mean")
    return key.startswith("dice_") and key.endswith("_mean") and key not in base


def to_csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    if rows:
        w = csv.DictWriter(buf, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return buf.getvalue()


def dice_matrix(rows: list[dict[str, Any]], plan, key: str = "dice_mean") -> np.ndarray:
    """models x losses, NaN where a cell has not finished."""
    m = np.full((len(plan.models), len(plan.losses)), np.nan)
    for r in rows:
        if r[key] is not None:
            m[plan.models.index(r["model"]), plan.losses.index(r["loss"])] = r[key]
    return m


def write_results(records: list[dict[str, Any]], out: Path, plan) -> list[Path]:
    rows = aggregate(records, plan)
    written = [
        write_json(out / "results.json", {"cells": records, "table": rows}),
        write_text(out / "results.csv", to_csv(rows)),
        write_text(out / "results.md", to_markdown(rows, plan)),
    ]
    written += _plots(rows, out, plan)
    _hparams(records, out)
    return written


def _plots(rows: list[dict[str, Any]], out: Path, plan) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    panels = [("validation Dice (mean over seeds)", dice_matrix(rows, plan))]
    targets = [(out / "heatmap.png", panels)]
    suffixes = _row_suffixes(rows)
    if suffixes:
        per_class = [(f"{s} Dice", dice_matrix(rows, plan, f"dice_{s}_mean")) for s in suffixes]
        targets.append((out / "heatmap_per_class.png", per_class))
    for target, panels in targets:
        w = 1.3 * len(plan.losses) + 2.5
        fig, axes = plt.subplots(
            1, len(panels), figsize=(w * len(panels), 0.6 * len(plan.models) + 1.8), squeeze=False
        )
        for ax, (title, mat) in zip(axes[0], panels, strict=True):
            _heatmap(fig, ax, mat, plan, title)
        with atomic_path(target) as tmp:
            fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
        plt.close(fig)
        written.append(target)

    cells = sorted((out / "cells").glob("*/history.csv"))
    if cells:
        n = len(cells)
        cols = min(4, n)
        nrows = math.ceil(n / cols)
        fig, axes = plt.subplots(nrows, cols, figsize=(3.2 * cols, 2.4 * nrows), squeeze=False)
        for ax, hist in zip(axes.flat, cells, strict=False):
            data = np.genfromtxt(hist, delimiter=",", names=True)
            data = np.atleast_1d(data)
            for key, style in (("dice", "-"), ("val_dice", "--")):
                if key in (data.dtype.names or ()):
                    ax.plot(data["epoch"], data[key], style, label=key)
            ax.set_title(hist.parent.name, fontsize=7)
            ax.set_ylim(0, 1)
            ax.grid(alpha=0.3)
        for ax in list(axes.flat)[n:]:
            ax.axis("off")
        axes.flat[0].legend(fontsize=6)
        fig.tight_layout()
        target = out / "curves.png"
        with atomic_path(target) as tmp:
            fig.savefig(tmp, dpi=90, format="png")
        plt.close(fig)
        written.append(target)
    return written


def _heatmap(fig, ax, mat: np.ndarray, plan, title: str) -> None:
    im = ax.imshow(mat, cmap="viridis", vmin=np.nanmin(mat) if np.isfinite(mat).any() else 0)
    ax.set_xticks(range(len(plan.losses)), plan.losses)
    ax.set_yticks(range(len(plan.models)), plan.models)
    for i in range(mat.shape[0]):
        for j in range(mat.shape[1]):
            txt = "-" if np.isnan(mat[i, j]) else f"{mat[i, j]:.3f}"
            ax.text(j, i, txt, ha="center", va="center", color="w", fontsize=8)
    ax.set_title(title)
    fig.colorbar(im, ax=ax)


def _hparams(records: list[dict[str, Any]], out: Path) -> None:
    """One TensorBoard HParams run per cell under ``SWEEP/tensorboard/`` (skipped without TF)."""
    try:
        from tensorboard.plugins.hparams import api as hp

        from kseg._keras import tf
    except ImportError:
        return
    for r in records:
        logdir = out / "tensorboard" / r["cell"]
        if logdir.exists():
            continue
        with tf.summary.create_file_writer(str(logdir)).as_default():
            hp.hparams(
                {"model": r["model"], "loss": r["loss"], "seed": r["seed"]}, trial_id=r["cell"]
            )
            for key in ("dice", "iou", "precision", "recall", "hd95", "int8_dice"):
                if r.get(key) is not None:
                    tf.summary.scalar(f"sweep/{key}", float(r[key]), step=0)
