"""The optimize steps (distill, prune, qat, convert) as functions that write their artifacts.

Each step takes the current model and the data, writes its model file, report and metrics into
``out_dir``, and returns a :class:`StepResult` whose ``record`` is the JSON-ready summary that
recipes and model cards chain (``{"step": "prune", "settings": {...}, "metrics": {...}, ...}``).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np

from kseg._keras import keras
from kseg.atomic import write_json
from kseg.config import StrEnum
from kseg.errors import ConfigError, DataError
from kseg.optimize._train import FitData, count_params, evaluate, fit, steps_per_epoch


class Step(StrEnum):
    TRAIN = "train"
    DISTILL = "distill"
    PRUNE = "prune"
    QAT = "qat"
    CONVERT = "convert"


@dataclasses.dataclass
class StepResult:
    model: keras.Model | None
    path: Path
    record: dict[str, Any]


def load_data(
    model_path: Path | None, model: keras.Model, data: str | Path | None, *, seed: int = 42
) -> tuple[FitData, str]:
    """Training/validation arrays for fine-tuning ``model``.

    ``data``: a folder with ``images/`` and ``masks/``, or ``synthetic:KIND[:N]`` (e.g.
    ``synthetic:ultrasound:200``); ``None`` reuses the config and split of the run directory the
    model was trained in (``RUN/config.yaml``, ``RUN/split.csv``).
    """
    from kseg.config import from_dict, load_config
    from kseg.data.pipeline import load_splits
    from kseg.models import model_spec

    spec = model_spec(model)
    h, _, c = spec["input_shape"]
    if data is None:
        run = model_path.parent if model_path is not None else None
        if run is None or not (run / "config.yaml").is_file():
            raise DataError(
                f"{model_path}: no RUN/config.yaml beside the model; pass --data DIR or --data synthetic:ultrasound"
            )
        cfg = load_config(run / "config.yaml")
        split_file = run / "split.csv"
        splits = load_splits(
            cfg.data,
            seed=cfg.train.seed,
            split_file=split_file if split_file.is_file() else None,
            progress=False,
        )
        desc = f"run {run} ({cfg.data.path or 'synthetic ' + str(cfg.data.synthetic_kind)})"
    else:
        text = str(data)
        if text.startswith("synthetic:"):
            parts = text.split(":")
            kind = parts[1] if len(parts) > 1 and parts[1] else "ultrasound"
            n = int(parts[2]) if len(parts) > 2 else 200
            raw = {
                "path": None,
                "synthetic_kind": kind,
                "synthetic_n": n,
                "img_size": h,
                "channels": c,
            }
            desc = f"synthetic {kind} n={n} seed={seed}"
        else:
            if not Path(text).is_dir():
                raise DataError(
                    f"--data {text}: folder not found; give a folder with images/ and masks/"
                )
            raw = {"path": text, "img_size": h, "channels": c}
            desc = f"folder {text}"
        dcfg = from_dict({"data": raw}, source="--data").data
        splits = load_splits(dcfg, seed=seed, progress=False)
        desc += f" at {h}x{h}"
    fd = FitData.from_splits(splits)
    if fd.x_train.shape[1:3] != tuple(spec["input_shape"][:2]):
        raise ConfigError(
            f"data size {fd.x_train.shape[1:3]} differs from the model input {spec['input_shape'][:2]}"
        )
    return fd, desc


def _metrics(model: keras.Model, data: FitData) -> dict[str, float]:
    return evaluate(model, data.x_val, data.y_val)


def run_qat(
    model: keras.Model,
    data: FitData,
    out_dir: Path,
    *,
    epochs: int = 3,
    batch_size: int = 8,
    learning_rate: float = 1e-4,
    loss: Any = None,
    preserve_sparsity: bool = False,
    leave_float: tuple[str, ...] = (),
    seed: int = 0,
) -> StepResult:
    """Quantization-aware fine-tuning; writes ``qat.h5``, ``qat_report.json``, ``metrics.json``."""
    from kseg.optimize.qat import quantize_model, save_qat_model

    t0 = time.time()
    before = _metrics(model, data)
    scheme = "prune_preserve" if preserve_sparsity else "default"
    qat_model, report = quantize_model(model, scheme=scheme, leave_float=tuple(leave_float))
    history = fit(
        qat_model,
        data,
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        loss=loss,
        seed=seed,
    )
    after = _metrics(qat_model, data)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = save_qat_model(qat_model, out_dir / "qat.h5")
    write_json(out_dir / "qat_report.json", report.to_dict())
    record = {
        "step": "qat",
        "settings": {
            "epochs": epochs,
            "batch_size": batch_size,
            "learning_rate": learning_rate,
            "scheme": scheme,
            "leave_float": list(leave_float),
            "seed": seed,
        },
        "model": str(path),
        "metrics": {"before": before, "after": after},
        "left_float": report.left_float,
        "output_only_layers": sorted(report.output_only),
        "sparsity_not_preserved": report.sparsity_not_preserved,
        "history": history,
        "seconds": round(time.time() - t0, 1),
    }
    write_json(out_dir / "metrics.json", record)
    return StepResult(qat_model, path, record)


def run_prune(
    model: keras.Model,
    data: FitData,
    out_dir: Path,
    *,
    sparsity: float = 0.5,
    epochs: int = 4,
    schedule: str = "polynomial",
    policy: Any = None,
    structured_2_4: bool = False,
    batch_size: int = 8,
    learning_rate: float = 1e-4,
    loss: Any = None,
    seed: int = 0,
) -> StepResult:
    """Prune, fine-tune, strip; writes ``pruned.h5`` (float, zeros in the kernels) and reports."""
    from kseg.optimize.prune import (
        PrunePolicy,
        prune_model,
        pruning_callbacks,
        sparsity_report,
        strip,
    )
    from kseg.optimize.qat import save_qat_model

    t0 = time.time()
    if policy is None:
        policy = PrunePolicy()
    elif isinstance(policy, (str, Path)):
        policy = PrunePolicy.from_file(policy)
    elif isinstance(policy, dict):
        policy = PrunePolicy.from_dict(policy)
    m_by_n = (2, 4) if structured_2_4 else None
    before = _metrics(model, data)
    total = max(1, epochs) * steps_per_epoch(data, batch_size)
    wrapped, plan = prune_model(
        model, sparsity, total_steps=total, policy=policy, schedule=schedule, m_by_n=m_by_n
    )
    history = fit(
        wrapped,
        data,
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        loss=loss,
        callbacks=pruning_callbacks(),
        seed=seed,
    )
    stripped = strip(wrapped)
    report = sparsity_report(stripped, plan, m_by_n=m_by_n)
    after = _metrics(stripped, data)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = save_qat_model(stripped, out_dir / "pruned.h5")
    write_json(out_dir / "sparsity.json", report)
    record = {
        "step": "prune",
        "settings": {
            "sparsity": sparsity,
            "epochs": epochs,
            "schedule": str(schedule),
            "structured": "2:4" if m_by_n else None,
            "policy": policy.to_dict(),
            "batch_size": batch_size,
            "learning_rate": learning_rate,
            "seed": seed,
        },
        "model": str(path),
        "metrics": {"before": before, "after": after},
        "sparsity": {"overall_pruned": report["overall_pruned"], "overall": report["overall"]},
        "history": history,
        "seconds": round(time.time() - t0, 1),
    }
    write_json(out_dir / "metrics.json", record)
    return StepResult(stripped, path, record)


def run_distill(
    teacher: keras.Model,
    data: FitData,
    out_dir: Path,
    *,
    student: str = "mobile_unet",
    student_options: dict[str, Any] | None = None,
    epochs: int = 10,
    batch_size: int = 8,
    learning_rate: float = 1e-3,
    loss: Any = None,
    alpha: float = 0.5,
    temperature: float = 2.0,
    attention: bool = False,
    beta: float = 100.0,
    seed: int = 0,
) -> StepResult:
    """Distill ``student`` from ``teacher`` and train the same student alone; writes both."""
    from kseg.models import create_model, model_spec
    from kseg.optimize.distill import distill_with_baseline

    t0 = time.time()
    spec = model_spec(teacher)
    opts = dict(student_options or {})

    def make() -> keras.Model:
        return create_model(
            student,
            input_shape=spec["input_shape"],
            num_classes=spec["num_classes"],
            mean=spec["mean"] or (0.0,),
            std=spec["std"] or (1.0,),
            **opts,
        )

    result = distill_with_baseline(
        teacher,
        make,
        data,
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        loss=loss,
        seed=seed,
        alpha=alpha,
        temperature=temperature,
        attention_pairs="auto" if attention else (),
        beta=beta if attention else 0.0,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    from kseg.atomic import atomic_path

    path = out_dir / "student.keras"
    with atomic_path(path) as tmp:
        result["student"].save(tmp)
    with atomic_path(out_dir / "baseline.keras") as tmp:
        result["baseline"].save(tmp)
    record = {
        "step": "distill",
        "settings": {
            "student": student,
            "student_options": opts,
            "epochs": epochs,
            "batch_size": batch_size,
            "learning_rate": learning_rate,
            "alpha": alpha,
            "temperature": temperature,
            "attention": attention,
            "beta": beta if attention else 0.0,
            "seed": seed,
        },
        "model": str(path),
        "baseline_model": str(out_dir / "baseline.keras"),
        "metrics": result["metrics"],
        "params": result["params"],
        "history": result["history"],
        "seconds": round(time.time() - t0, 1),
    }
    write_json(out_dir / "metrics.json", record)
    return StepResult(result["student"], path, record)


def run_convert(
    model: keras.Model,
    model_path: Path,
    data: FitData,
    out_dir: Path,
    *,
    mode: str = "int8",
    data_arg: str | None = None,
    max_dice_drop: float | None = 0.01,
    steps: list[dict[str, Any]] | None = None,
    representative_samples: int = 64,
    seed: int = 0,
) -> StepResult:
    """Convert to ``.tflite`` with ``kseg.export`` (parity gate + model card) when it can resolve
    the data, else with the local converter, reporting Dice of both and the sparsity kept."""
    from kseg.optimize._convert import (
        convert_int8,
        float_ops,
        gzip_size,
        tflite_predict,
        tflite_weight_sparsity,
    )
    from kseg.optimize._train import dice_iou

    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"model.{mode}.tflite"
    card = None
    try:
        from kseg.export.tflite import export_tflite
    except ImportError:
        export_tflite = None
    if export_tflite is not None and data_arg is not None:
        card = export_tflite(
            model_path,
            mode,
            data=data_arg,
            out=out,
            max_dice_drop=max_dice_drop,
            representative_samples=representative_samples,
            seed=seed,
            steps=[_card_step(s) for s in steps or []],
            model=model,
        )
        flat = out.read_bytes()
    else:
        rng = np.random.default_rng(seed)
        calib = data.x_train[np.sort(rng.permutation(len(data.x_train))[:representative_samples])]
        if mode == "int8":
            flat = convert_int8(model, calib)
        else:
            from kseg.export.convert import convert_model

            flat = convert_model(model, mode, representative=calib)
        from kseg.atomic import write_bytes

        write_bytes(out, flat)
    f = dice_iou(model.predict(data.x_val, batch_size=8, verbose=0), data.y_val)
    q = dice_iou(tflite_predict(flat, data.x_val), data.y_val)
    record = {
        "step": "convert",
        "settings": {
            "mode": mode,
            "max_dice_drop": max_dice_drop,
            "representative_samples": representative_samples,
        },
        "model": str(out),
        "metrics": {
            "float": {"dice": f["dice"], "iou": f["iou"]},
            "tflite": {"dice": q["dice"], "iou": q["iou"]},
            "dice_drop": f["dice"] - q["dice"],
        },
        "size_bytes": len(flat),
        "gzip_bytes": gzip_size(flat),
        "float_ops": float_ops(flat) if mode == "int8" else None,
        "tflite_sparsity": tflite_weight_sparsity(flat)["overall"],
        "params": count_params(model),
        "card": str(out.with_suffix(".json")) if card is not None else None,
    }
    write_json(out_dir / "metrics.json", record)
    return StepResult(None, out, record)


def _card_step(record: dict[str, Any]) -> dict[str, Any]:
    """The compact form of a step record for a model card (no histories)."""
    keep = {
        k: v
        for k, v in record.items()
        if k in ("step", "settings", "model", "metrics", "sparsity", "params", "left_float")
    }
    return keep
