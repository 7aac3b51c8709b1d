"""The optimize steps (distill, prune, cluster, qat, convert): functions that write their artifacts.

Each step takes the current model and the data, writes its model file, report and metrics into
``out_dir``, and returns a :class:`StepResult` whose ``record`` is the JSON-ready summary that
recipes and model cards chain (``{"step": "prune", "settings": {...}, "metrics": {...}, ...}``).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from kseg._keras import keras
from kseg.atomic import write_json
from kseg.config import StrEnum
from kseg.errors import DataError
from kseg.optimize._train import FitBudget, FitData, evaluate, steps_per_epoch
from kseg.optimize.distill import LEARNING_RATE


class Step(StrEnum):
    TRAIN = "train"
    DISTILL = "distill"
    PRUNE = "prune"
    CLUSTER = "cluster"
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

    ``data``: a folder with ``images/`` and ``masks/``, a run directory, or ``synthetic:KIND[:N]``
    (e.g. ``synthetic:ultrasound:200``); ``None`` reuses the config and split of the run directory
    the model was trained in (``RUN/config.yaml``, ``RUN/split.csv``). The same resolution as
    ``kseg convert`` and ``kseg evaluate`` (:func:`kseg.training.rundir.resolve_data`): a folder the
    model's run trained on reuses that run's split; any other folder sets
    ``FitData.provenance["warning"]`` (its validation images may be training images).
    """
    from kseg.data.pipeline import load_splits
    from kseg.models import model_spec
    from kseg.training.rundir import find_run_dir, resolve_data

    spec = model_spec(model)
    h, _, c = spec["input_shape"]
    if data is None and (model_path is None or find_run_dir(model_path) is None):
        raise DataError(
            f"{model_path}: no RUN/config.yaml beside the model; pass --data DIR or --data synthetic:ultrasound"
        )
    resolved = resolve_data(model_path, h, c, data, seed=seed)
    splits = load_splits(
        resolved.config.data,
        seed=resolved.seed,
        split_file=resolved.split_file,
        progress=False,
        num_classes=int(spec.get("num_classes", 1)),  # class-id masks stay class ids
    )
    fit = FitData.from_splits(splits)
    fit.provenance = resolved.provenance(splits, "val")
    return fit, f"{resolved.description} at {h}x{h}"


UNLABELED_SEED_OFFSET = 10_007  # synthetic transfer images never repeat the labeled ones


def load_unlabeled(
    spec: str | Path, size: int, channels: int, *, seed: int = 42, progress: bool = True
) -> tuple[Any, str]:
    """Images without masks for distillation (a transfer set), at the model's size and channels.

    ``spec`` is a folder of images (its ``images/`` subfolder when it has one; masks are not
    needed and not read) or ``synthetic:KIND:N`` (``N`` images of the embedded generator, drawn
    with another seed than the labeled synthetic set). Returns ``(uint8 (N, S, S, C), text)``.

    Raises:
        DataError: the folder is missing or holds no image files, or an image cannot be read.
        ConfigError: a malformed ``synthetic:`` spec.
    """
    import numpy as np

    from kseg.data.io import fit_to_size, is_image_file, read_image
    from kseg.data.pipeline import _convert_channels, _progress
    from kseg.data.synthetic import parse_synthetic_spec, synthesize

    text = str(spec)
    if text.startswith("synthetic:"):
        kind, n = parse_synthetic_spec(text, "--unlabeled", usage="synthetic:KIND:N")
        images = synthesize(kind, n, size, seed + UNLABELED_SEED_OFFSET).images
        return _convert_channels(images, channels), f"synthetic {kind} n={n} (unlabeled)"
    folder = Path(text)
    if (folder / "images").is_dir():
        folder = folder / "images"
    if not folder.is_dir():
        raise DataError(f"--unlabeled {text}: no such folder; give a folder of images")
    files = sorted(p for p in folder.iterdir() if is_image_file(p))
    if not files:
        raise DataError(f"--unlabeled {folder}: no image files in it (png, jpg, tif, bmp ...)")
    out = np.empty((len(files), size, size, channels), np.uint8)
    for i, path in enumerate(_progress(files, len(files), "unlabeled", progress)):
        image, _ = fit_to_size(read_image(path, channels), size)
        out[i] = image.reshape(size, size, channels)
    return out, f"folder {folder} n={len(files)} (unlabeled)"


def _check_no_validation_leak(unlabeled: Any, x_val: Any, spec: str) -> None:
    """Refuse a transfer set that holds validation images: the teacher would label them for the
    student, and the student's validation Dice would no longer be a held-out score."""
    import hashlib

    import numpy as np

    def digest(image: Any) -> bytes:
        return hashlib.sha1(np.ascontiguousarray(image, np.uint8).tobytes()).digest()

    val = {digest(im) for im in np.asarray(x_val)}
    leaked = sum(digest(im) in val for im in unlabeled)
    if leaked:
        raise DataError(
            f"--unlabeled {spec}: {leaked} of its images are validation images (same pixels); "
            "the student's score would not be held out. Give images outside the labeled data"
        )


def _metrics(model: keras.Model, data: FitData) -> dict[str, float]:
    return evaluate(model, data.x_val, data.y_val)


#: The fine-tuning budget of each step that trains: the :class:`FitBudget` its ``**fit`` keyword
#: arguments (recipe keys of the same names) change. They may name the fields in :func:`fit_keys`.
STEP_BUDGETS = {
    Step.QAT: FitBudget(epochs=3),
    Step.PRUNE: FitBudget(epochs=4),
    Step.CLUSTER: FitBudget(epochs=3),
    Step.DISTILL: FitBudget(epochs=10, learning_rate=LEARNING_RATE),
}
_FIT_KEYS = ("epochs", "batch_size", "learning_rate", "loss", "seed")


def fit_keys(step: Step) -> tuple[str, ...]:
    """The :class:`FitBudget` fields a step takes: the distiller also schedules the learning rate
    and augments."""
    return (*_FIT_KEYS, "lr_schedule", "augment") if step == Step.DISTILL else _FIT_KEYS


def _budget(step: Step, fit: dict[str, Any]) -> FitBudget:
    """The step's budget with the ``fit`` keyword arguments of ``run_<step>``."""
    for key in fit:
        if key not in fit_keys(step):
            raise TypeError(f"run_{step}() got an unexpected keyword argument {key!r}")
    return dataclasses.replace(STEP_BUDGETS[step], **fit)


def _save_step(
    step: Step,
    model: keras.Model,
    data: FitData,
    out_dir: Path,
    files: tuple[str, str],
    report: dict[str, Any],
    *,
    settings: dict[str, Any],
    before: dict[str, float],
    history: Any,
    t0: float,
    **extra: Any,
) -> StepResult:
    """Score the fine-tuned ``model`` (``metrics.after``), write it (``.h5``, reloadable with its
    wrappers) and its report (``files``), then ``metrics.json``: ``{"step", "settings", "model",
    "metrics", **extra, "history", "seconds"}``."""
    from kseg.optimize.qat import save_qat_model

    after = _metrics(model, data)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = save_qat_model(model, out_dir / files[0])
    write_json(out_dir / files[1], report)
    record = {
        "step": step.value,
        "settings": settings,
        "model": str(path),
        "metrics": {"before": before, "after": after},
        **extra,
        "history": history,
        "seconds": round(time.time() - t0, 1),
    }
    write_json(out_dir / "metrics.json", record)
    return StepResult(model, path, record)


def run_qat(
    model: keras.Model,
    data: FitData,
    out_dir: Path,
    *,
    preserve_sparsity: bool = False,
    leave_float: tuple[str, ...] = (),
    **fit: Any,
) -> StepResult:
    """Quantization-aware fine-tuning; writes ``qat.h5``, ``qat_report.json``, ``metrics.json``.

    ``fit``: the fine-tuning budget (:data:`STEP_BUDGETS`, :func:`fit_keys`; 3 epochs).
    """
    from kseg.optimize.qat import calibration_images, quantize_model

    t0 = time.time()
    budget = _budget(Step.QAT, fit)
    before = _metrics(model, data)
    scheme = "prune_preserve" if preserve_sparsity else "default"
    qat_model, report = quantize_model(
        model,
        scheme=scheme,
        leave_float=tuple(leave_float),
        calibration=calibration_images(data.x_train, seed=budget.seed),
    )
    history = budget.fit(qat_model, data)
    settings = {
        "epochs": budget.epochs,
        "batch_size": budget.batch_size,
        "learning_rate": budget.learning_rate,
        "scheme": scheme,
        "calibration_batches": report.calibration_batches,
        "leave_float": list(leave_float),
        "seed": budget.seed,
    }
    return _save_step(
        Step.QAT, qat_model, data, out_dir, ("qat.h5", "qat_report.json"), report.to_dict(),
        settings=settings, before=before, history=history, t0=t0,
        left_float=report.left_float,
        output_only_layers=sorted(report.output_only),
        sparsity_not_preserved=report.sparsity_not_preserved,
    )  # fmt: skip


def run_prune(
    model: keras.Model,
    data: FitData,
    out_dir: Path,
    *,
    sparsity: float = 0.5,
    schedule: str = "polynomial",
    policy: Any = None,
    structured_2_4: bool = False,
    **fit: Any,
) -> StepResult:
    """Prune, fine-tune, strip; writes ``pruned.h5`` (float, zeros in the kernels) and reports.

    ``fit``: the fine-tuning budget (:data:`STEP_BUDGETS`, :func:`fit_keys`; 4 epochs).
    """
    from kseg.optimize.prune import (
        PrunePolicy,
        prune_model,
        pruning_callbacks,
        sparsity_report,
        strip,
    )

    t0 = time.time()
    budget = _budget(Step.PRUNE, fit)
    if policy is None:
        policy = PrunePolicy()
    elif isinstance(policy, (str, Path)):
        policy = PrunePolicy.from_file(policy)
    elif isinstance(policy, dict):
        policy = PrunePolicy.from_dict(policy)
    m_by_n = (2, 4) if structured_2_4 else None
    before = _metrics(model, data)
    total = max(1, budget.epochs) * steps_per_epoch(data, budget.batch_size)
    wrapped, plan = prune_model(
        model, sparsity, total_steps=total, policy=policy, schedule=schedule, m_by_n=m_by_n
    )
    history = budget.fit(wrapped, data, callbacks=pruning_callbacks())
    stripped = strip(wrapped)
    report = sparsity_report(stripped, plan, m_by_n=m_by_n)
    settings = {
        "sparsity": sparsity,
        "epochs": budget.epochs,
        "schedule": str(schedule),
        "structured": "2:4" if m_by_n else None,
        "policy": policy.to_dict(),
        "batch_size": budget.batch_size,
        "learning_rate": budget.learning_rate,
        "seed": budget.seed,
    }
    return _save_step(
        Step.PRUNE, stripped, data, out_dir, ("pruned.h5", "sparsity.json"), report,
        settings=settings, before=before, history=history, t0=t0,
        sparsity={"overall_pruned": report["overall_pruned"], "overall": report["overall"]},
    )  # fmt: skip


def run_cluster(
    model: keras.Model,
    data: FitData,
    out_dir: Path,
    *,
    clusters: int = 16,
    init: str = "kmeans_plus_plus",
    preserve_sparsity: bool = True,
    dense: Any = None,
    **fit: Any,
) -> StepResult:
    """Cluster the kernels to ``clusters`` values each, fine-tune, strip; writes ``clustered.h5``
    (float, each clustered kernel holding only its centroids; a pruned model keeps its zeros with
    ``preserve_sparsity``), ``clusters.json`` and ``metrics.json``.

    ``dense``: layer-name patterns left unclustered (default: first conv and head, see
    :mod:`kseg.optimize.cluster`). ``fit``: the fine-tuning budget (:data:`STEP_BUDGETS`,
    :func:`fit_keys`; 3 epochs).
    """
    from kseg.optimize.cluster import (
        DEFAULT_DENSE,
        check_clusters,
        check_init,
        cluster_model,
        cluster_report,
        plan_clusters,
        strip,
    )
    from kseg.optimize.prune import sparsity_report

    t0 = time.time()
    budget = _budget(Step.CLUSTER, fit)
    clusters = check_clusters(clusters, preserve_sparsity=preserve_sparsity)
    init = check_init(init)
    dense = DEFAULT_DENSE if dense is None else tuple([dense] if isinstance(dense, str) else dense)
    _, skipped = plan_clusters(model, clusters, dense=dense)
    sparsity_before = sparsity_report(model)["overall"]
    before = _metrics(model, data)
    wrapped, plan = cluster_model(
        model, clusters, preserve_sparsity=preserve_sparsity, dense=dense, init=init
    )
    history = budget.fit(wrapped, data)
    stripped = strip(wrapped)
    report = cluster_report(stripped, plan)
    report["not_clustered"] = [{"layer": k, "reason": v} for k, v in skipped.items()]
    settings = {
        "clusters": clusters,
        "epochs": budget.epochs,
        "init": init.value,
        "preserve_sparsity": preserve_sparsity,
        "dense": list(dense),
        "batch_size": budget.batch_size,
        "learning_rate": budget.learning_rate,
        "seed": budget.seed,
    }
    clustering = {k: report[k] for k in ("clustered_layers", "clustered_share", "max_unique")}
    return _save_step(
        Step.CLUSTER, stripped, data, out_dir, ("clustered.h5", "clusters.json"), report,
        settings=settings, before=before, history=history, t0=t0,
        clustering={**clustering, "not_clustered": report["not_clustered"]},
        # same keys as the prune step's, over the same (prunable) kernels
        sparsity={"before": sparsity_before, "overall": sparsity_report(stripped)["overall"]},
    )  # fmt: skip


def run_distill(
    teacher: keras.Model,
    data: FitData,
    out_dir: Path,
    *,
    student: str = "mobile_unet",
    student_options: dict[str, Any] | None = None,
    alpha: float = 0.5,
    temperature: float = 2.0,
    attention: bool = False,
    beta: float = 100.0,
    unlabeled: str | None = None,
    **fit: Any,
) -> StepResult:
    """Distill ``student`` from ``teacher`` and train the same student alone; writes both.

    ``fit``: the budget of both students (:data:`STEP_BUDGETS`, :func:`fit_keys`; 10 epochs at
    a learning rate of 1e-3): ``lr_schedule`` ``constant`` or ``cosine``; ``augment``: on-line
    flips and intensity changes (the teacher labels every augmented view).
    ``unlabeled``: a folder of images or ``synthetic:KIND:N`` (:func:`load_unlabeled`) that the
    teacher labels for the distilled student (the student alone cannot use them).
    """
    from kseg.models import create_model, model_spec
    from kseg.optimize.distill import distill_with_baseline

    t0 = time.time()
    budget = _budget(Step.DISTILL, fit)
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

    transfer, transfer_text = (None, None)
    if unlabeled:
        h, _, c = spec["input_shape"]
        transfer, transfer_text = load_unlabeled(unlabeled, h, c, seed=budget.seed)
        _check_no_validation_leak(transfer, data.x_val, str(unlabeled))
    result = distill_with_baseline(
        teacher,
        make,
        data,
        unlabeled=transfer,
        alpha=alpha,
        temperature=temperature,
        attention_pairs="auto" if attention else (),
        beta=beta if attention else 0.0,
        **budget.keywords(),
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
            "epochs": budget.epochs,
            "batch_size": budget.batch_size,
            "learning_rate": budget.learning_rate,
            "lr_schedule": budget.lr_schedule,
            "alpha": alpha,
            "temperature": temperature,
            "augment": budget.augment,
            "unlabeled": transfer_text,
            "attention": attention,
            "beta": beta if attention else 0.0,
            "seed": budget.seed,
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
    """Convert with ``kseg.export`` (parity gate with LiteRT + model card), and add the sparsity the
    ``.tflite`` kept. ``data_arg`` is the recipe's data (folder, run or ``synthetic:...``)."""
    from kseg.export.tflite import export_tflite
    from kseg.optimize._convert import tflite_weight_sparsity

    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"model.{mode}.tflite"
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
    p = card["parity"]
    record = {
        "step": "convert",
        "settings": {
            "mode": mode,
            "max_dice_drop": max_dice_drop,
            "representative_samples": representative_samples,
        },
        "model": str(out),
        "metrics": {
            "float": {"dice": p["float_dice"], "iou": p["float_iou"]},
            "tflite": {"dice": p["tflite_dice"], "iou": p["tflite_iou"]},
            "dice_drop": p["dice_drop"],
        },
        "size_bytes": card["size_bytes"],
        "gzip_bytes": card["tflite"]["gzip_bytes"],
        "float_ops": card["tflite"]["float_ops"] if mode == "int8" else None,
        "tflite_sparsity": tflite_weight_sparsity(out.read_bytes())["overall"],
        "params": card["source"]["params"],
        "card": str(out.with_suffix(".json")),
    }
    write_json(out_dir / "metrics.json", record)
    return StepResult(None, out, record)


def _card_step(record: dict[str, Any]) -> dict[str, Any]:
    """The compact form of a step record for a model card (no histories)."""
    keep = {
        k: v
        for k, v in record.items()
        if k
        in (
            "step",
            "settings",
            "model",
            "metrics",
            "sparsity",
            "clustering",
            "params",
            "left_float",
        )
    }
    return keep
