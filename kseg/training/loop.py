"""``train(config, out_dir)``: compile and fit a model from a :class:`~kseg.config.Config`.

The run directory (``docs/ARCHITECTURE.md``) is written as training goes: resolved config and
split first, then history, checkpoints and TensorBoard logs each epoch, and finally
``metrics.json`` and the PNGs. ``resume=True`` continues an interrupted run (even one killed with
SIGKILL mid-epoch) from its last completed epoch with Keras' ``BackupAndRestore``.

With ``train.strategy: multi_worker`` every worker runs :func:`train` with the same ``out_dir``:
the chief alone fills it, the others train on their shard of the training files and write to a
private folder that is removed (``docs/scaling.md``).
"""

from __future__ import annotations

import csv
import math
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from kseg import config as cfgmod
from kseg._keras import keras, tf
from kseg.atomic import write_json, write_text
from kseg.config import Config, Sampling, Task
from kseg.errors import ClusterError, ConfigError
from kseg.training import budget as budget_mod
from kseg.training import finetune
from kseg.training.callbacks import make_callbacks, make_optimizer
from kseg.training.cluster import ClusterRole
from kseg.training.precision import precision_policy, resolve_precision
from kseg.training.rundir import RunDir, record_data_source
from kseg.training.strategy import cluster_role, make_strategy


def prepare(config: Config) -> None:
    """Check names and options that would otherwise fail after data loading (fail early)."""
    from kseg.losses import LOSSES
    from kseg.models import MODELS, model_task

    MODELS.get(config.model.name)
    task = str(model_task(config.model.name))
    if task != str(config.train.task):
        raise ConfigError(
            f"model.name = {config.model.name} is a {task} model but train.task = {config.train.task}; "
            + (
                "use --set train.task=denoise"
                if task == "denoise"
                else "pick a segmentation model (kseg models list)"
            )
        )
    if config.train.task is Task.SEGMENT:
        LOSSES.get(config.train.loss)
    if config.data.channels not in (1, 3, "auto"):
        raise ConfigError(
            f"data.channels = {config.data.channels}; use 1 (grayscale), 3 (RGB) or auto"
        )
    for key in ("val_fraction", "test_fraction"):
        value = getattr(config.data, key)
        if not 0.0 <= value < 1.0:
            raise ConfigError(f"data.{key} = {value}; use a fraction in [0, 1)")
    if not 0.0 <= config.data.patch_foreground <= 1.0:
        raise ConfigError(
            f"data.patch_foreground = {config.data.patch_foreground}; use a share in [0, 1]"
        )
    if config.data.sampling is Sampling.PATCH and config.train.task is Task.DENOISE:
        raise ConfigError(
            "data.sampling: patch is for segmentation; use resize with train.task=denoise"
        )
    if config.train.epochs < 1 or config.train.batch_size < 1:
        raise ConfigError("train.epochs and train.batch_size must be at least 1")


def build_model(config: Config) -> keras.Model:
    from kseg.models import create_model

    d = config.data
    return create_model(
        config.model.name,
        input_shape=(d.img_size, d.img_size, d.channels),
        num_classes=config.model.num_classes,
        mean=d.mean,
        std=d.std,
        **config.model.options,
    )


def compile_model(model: keras.Model, config: Config, steps_per_epoch: int) -> None:
    """Compile with the config's optimizer, loss and metrics (and XLA if ``train.jit_compile``)."""
    from kseg.losses import get_loss
    from kseg.metrics import default_metrics, denoise_metrics

    t = config.train
    if t.task is Task.DENOISE:
        # L1 in pixel units: robust to the heavy-tailed speckle residue, sharper than L2.
        loss, metrics = keras.losses.MeanAbsoluteError(), denoise_metrics()
    else:
        loss = get_loss(t.loss, **t.loss_options)
        metrics = default_metrics(
            threshold=t.threshold,
            num_classes=config.model.num_classes,
            class_names=cfgmod.class_names(config),  # dice_NAME, iou_NAME per class for K > 1
        )
    model.compile(
        optimizer=make_optimizer(t, steps_per_epoch),
        loss=loss,
        metrics=metrics,
        jit_compile=bool(t.jit_compile),
    )


def monitor_for(config: Config) -> str:
    """The validation metric that picks the best checkpoint and drives early stopping."""
    return "val_psnr" if config.train.task is Task.DENOISE else "val_dice"


def _classes_from_data(config: Config) -> Config:
    """Class names stored with the data (``labelmap.txt``, ``class_names.txt``, ``classes.json``)
    fill an empty ``data.classes`` (and ``model.num_classes`` follows), said in one line."""
    d = config.data
    if d.path is None or d.classes or d.merge_classes:
        return config
    from kseg.data.classes import read_class_table

    found = read_class_table(d.path)
    if found is None:
        return config
    table, source = found
    k = config.model.num_classes
    if k not in (1, len(table) + 1):
        print(
            f"{source} names {len(table)} classes but model.num_classes = {k}: not used",
            file=sys.stderr,
        )
        return config
    config = cfgmod.replace(config, data={"classes": table})
    shown = ", ".join(f"{n}: {list(v) if isinstance(v, tuple) else v}" for n, v in table.items())
    print(
        f"data.classes from {source}: {shown} (model.num_classes = {config.model.num_classes})",
        file=sys.stderr,
    )
    return config


def train(
    config: Config,
    out_dir: str | Path | None = None,
    *,
    resume: bool = False,
    verbose: int | None = None,
    notes: dict[str, str] | None = None,
    clock_start: float | None = None,
) -> dict[str, Any]:
    """Train a segmentation model and fill the run directory.

    Args:
        config: the resolved configuration (``kseg.config.load_config``).
        out_dir: run directory; for ``resume=True`` an existing one whose ``config.yaml`` is used.
        resume: continue an interrupted run from its last completed epoch.
        verbose: Keras verbosity; default: progress bar on a terminal, one line per epoch otherwise.
        notes: extra files for the run directory, name -> text (e.g. ``kseg plan``'s reasons).
        clock_start: when ``train.budget_minutes`` started counting (``time.time()`` seconds;
            ``kseg train`` passes its process's start); default: now.

    Returns:
        The validation metrics also written to ``metrics.json``.
    """
    clock = None
    if resume:
        run = RunDir.for_resume(out_dir)
        config = cfgmod.load_config(run.config)
        role = cluster_role(config.train.strategy)
        if config.train.budget_minutes:  # keep the count the budget settled on; the clock is gone
            epochs = budget_mod.resumed_epochs(run.root, config.train.epochs)
            print(
                f"resuming a budget run: {epochs} epochs as fitted before the interruption "
                "(the budget is not re-applied)",
                file=sys.stderr,
            )
            config = cfgmod.replace(config, train={"epochs": epochs})
    else:
        role = cluster_role(config.train.strategy)
        if role is not None:
            check_multi_worker(config, out_dir)
        if config.train.budget_minutes:
            clock = budget_mod.BudgetClock(
                config.train.budget_minutes, started_at=clock_start or time.time()
            )
        out = out_dir or default_out(config)
        # a worker never looks at --out while the chief may be filling it
        worker = role is not None and not role.is_chief
        run = RunDir(Path(out)) if worker else RunDir.for_new_run(out)
    prepare(config)  # names and options fail here, before a multi-worker job waits for its peers
    finetune.check(config.train)
    # multi_worker: MultiWorkerMirroredStrategy configures the process's collective ops, so it is
    # built before TensorFlow runs anything (seeding, datasets, the device list); it waits until
    # every worker of TF_CONFIG has started
    strategy = make_strategy(config.train.strategy)
    if role is None or role.is_chief:
        return _train(config, run, run, strategy, role, resume, verbose, notes, clock)
    # a worker writes its (unused) copies of the run's files to a private folder, and reads the
    # chief's run directory only to restore a backup or resume (--out on storage all can read)
    print(f"multi_worker: {role.describe()}; the chief writes {run.root}", file=sys.stderr)
    scratch = Path(tempfile.mkdtemp(prefix=f"kseg-worker{role.worker_index}-"))
    try:
        return _train(config, RunDir(scratch), run, strategy, role, resume, verbose, notes, clock)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def check_multi_worker(config: Config, out_dir: str | Path | None) -> None:
    """Refuse what ``train.strategy = multi_worker`` cannot do (before any data is loaded)."""
    t = config.train
    if out_dir is None:
        raise ConfigError(
            "train.strategy = multi_worker: give every worker the same --out (the chief writes "
            "it; a restarted worker resumes from it)"
        )
    for key, value in (
        ("budget_minutes", t.budget_minutes),
        ("time_limit_minutes", t.time_limit_minutes),
    ):
        if value:
            raise ConfigError(
                f"train.{key} is not supported with train.strategy = multi_worker (each worker "
                "would stop on its own clock and the others would wait for it); set train.epochs"
            )


def _train(
    config: Config,
    run: RunDir,
    shared: RunDir,
    strategy: Any,
    role: ClusterRole | None,
    resume: bool,
    verbose: int | None,
    notes: dict[str, str] | None,
    clock: budget_mod.BudgetClock | None,
) -> dict[str, Any]:
    """Fit into ``run``; ``shared`` is the run directory a restarted worker restores from (the
    chief's; ``run`` itself for a single process and for the chief)."""
    chief = role is None or role.is_chief
    denoise = config.train.task is Task.DENOISE

    from kseg.data.augment import build_augment
    from kseg.data.pipeline import grid_tiles, load_splits, make_dataset, patches_per_image
    from kseg.data.split import save_split

    t = config.train
    keras.utils.set_random_seed(t.seed)
    config = _classes_from_data(config)
    patch = config.data.sampling is Sampling.PATCH
    splits = load_splits(
        config.data,
        seed=t.seed,
        split_file=shared.split if shared.split.is_file() else None,
        num_classes=config.model.num_classes,
        merge_guard=True,  # several foreground classes are never trained as binary unasked
        shard=None if role is None else (role.worker_index, role.num_workers),
        native=patch,
    )
    if config.data.channels == "auto":  # the run stores the concrete value for convert/predict
        if role is not None:  # each worker decided from its own files: RGB if any saw colour
            splits = _agree_channels(splits, strategy)
        print(splits.channels_reason, file=sys.stderr)
        config = cfgmod.replace(config, data={"channels": splits.channels})
    if config.data.preprocess:
        from kseg.filters import Chain

        print(f"data.preprocess: {Chain.parse(config.data.preprocess).describe()}", file=sys.stderr)
    if len(splits.val.images) == 0:
        raise ConfigError("the validation split is empty; raise data.val_fraction or add images")

    n_train = sum(r["split"] == "train" for r in splits.rows)  # all workers' shards
    size = config.data.img_size
    per_image = patches_per_image(splits.train, size) if patch else 1
    steps = t.steps_per_epoch or max(math.ceil(n_train * per_image / t.batch_size), 1)
    # denoising keeps the clean target aligned: geometric augmentation only
    augment = build_augment(config.data.augment, size, geometric_only=denoise)
    train_ds = make_dataset(
        splits.train,
        t.batch_size,
        augment=augment,
        shuffle=True,
        seed=t.seed + (role.worker_index if role is not None else 0),
        repeat=True,
        task=str(t.task),
        patch=size if patch else None,
        patch_foreground=config.data.patch_foreground,
    )
    val = splits.val
    if patch:  # validation: the tiles that cover each validation image at native resolution
        val = grid_tiles(splits.val, size)
        print(
            f"data.sampling: patch: {per_image} window(s) of {size} px per training image and "
            f"epoch ({100 * config.data.patch_foreground:.0f} % centred on foreground); "
            f"validation on the {len(val)} tiles covering {len(splits.val)} images",
            file=sys.stderr,
        )
    replicas = strategy.num_replicas_in_sync
    if t.batch_size < replicas:
        raise ConfigError(
            f"train.batch_size = {t.batch_size} is smaller than the {replicas} replicas of "
            f"train.strategy = {t.strategy}; use a batch size of at least {replicas} "
            "(a multiple of it splits evenly)"
        )
    val_batch = eval_batch_size(len(val.images), t.batch_size, replicas)
    val_ds = make_dataset(val, val_batch, task=str(t.task))
    if denoise:  # the pipeline's clean target is in [0, 1]; denoising models output pixels
        train_ds, val_ds = (ds.map(lambda x, y: (x, y * 255.0)) for ds in (train_ds, val_ds))
    if role is not None:
        train_ds, val_ds = _shard_policies(train_ds, val_ds)

    precision = resolve_precision(t.precision)
    with strategy.scope():
        with precision_policy(precision.policy):  # the layers compute in the policy's dtype
            model = build_model(config)  # bad options or input size fail here, before any file
        # metrics and losses are built under float32 (a metric created under a mixed policy holds
        # auto-casting variables, which MirroredStrategy cannot read back); --init weights and a
        # frozen encoder come before compiling (None without them)
        init = finetune.prepare(model, t, lambda: compile_model(model, config, steps))

    if not resume and chief:
        run.root.mkdir(parents=True, exist_ok=True)
        cfgmod.save_config(config, run.config)
        save_split(run.split, splits.rows)
        for name, text in (notes or {}).items():
            write_text(run.root / name, text)
    # a new run writes these records; so does a run directory made ready by another command
    # (kseg sweep writes a cell's config and split, then starts it as a resume) on its first start
    if chief and not (run.root / PRECISION_FILE).is_file():
        write_json(run.root / PRECISION_FILE, {**precision.as_dict(), "jit_compile": t.jit_compile})
    if chief and not run.data_source.is_file():
        record_data_source(run, config, splits.rows)
    if init is not None:
        if chief:
            finetune.write_report(run.init, init)
        print(init.summary(), file=sys.stderr)
    if verbose is None:
        verbose = 1 if sys.stdout.isatty() else 2
    started = time.perf_counter()
    callbacks = make_callbacks(t, run, monitor=monitor_for(config), shared=shared)
    callbacks += finetune.callbacks(t)
    fit_epochs = t.epochs
    if clock is not None:  # the count is re-planned from measured epochs; the budget ends it
        fit_epochs = budget_mod.FIT_EPOCHS
        progbar = keras.callbacks.ProgbarLogger(count_mode="steps")
        fitter = budget_mod.BudgetFit(
            clock,
            planned_epochs=t.epochs,
            steps_per_epoch=steps,
            max_epochs=None,
            record=run.root / budget_mod.BUDGET_FILE,
            progbar=progbar,
            log=lambda m: print(m, file=sys.stderr),
        )
        callbacks = [fitter, *callbacks, progbar]
    try:
        model.fit(
            train_ds,
            validation_data=val_ds,
            epochs=fit_epochs,
            steps_per_epoch=steps,
            callbacks=callbacks,
            verbose=verbose,
        )
    except tf.errors.OpError as exc:
        if role is None:
            raise
        # TensorFlow prefixes the op's name in {{...}}; the rest says what happened
        why = re.sub(r"\{\{.*?\}\}", "", str(exc.message)).strip().splitlines()[0][:160]
        raise ClusterError(
            f"multi_worker: training stopped ({type(exc).__name__}: {why}); "
            "a worker was lost or unreachable. Restart "
            f"every worker with `kseg train --resume {shared.root}` (same TF_CONFIG): training "
            "continues from the last completed epoch"
        ) from None
    seconds = time.perf_counter() - started
    if not chief:
        history = _read_history(run.history)
        return {
            "worker": role.worker_index,
            "run": str(shared.root),
            "epochs_completed": len(history),
        }  # type: ignore[union-attr]
    _dedupe_history(run.history)
    if precision.policy != "float32":
        _save_float32(run)
    metrics = finish_run(run, config, val, train_seconds=seconds)
    if clock is not None:
        budget_mod.finish_record(run.root / budget_mod.BUDGET_FILE, clock)
    return metrics


#: what ``train.precision`` resolved to and why (in the run directory)
PRECISION_FILE = "precision.json"


def _agree_channels(splits: Any, strategy: Any) -> Any:
    """``data.channels: auto`` on a shard: every worker takes RGB if any worker saw colour."""
    import dataclasses

    from kseg.data.pipeline import with_channels
    from kseg.training.strategy import all_workers_max

    channels = int(all_workers_max(strategy, splits.channels))
    if channels == splits.channels:
        return splits
    return dataclasses.replace(
        splits,
        train=with_channels(splits.train, channels),
        val=with_channels(splits.val, channels),
        channels=channels,
        channels_reason=f"data.channels: auto -> {channels} (another worker's files have colour)",
    )


def _shard_policies(train_ds: Any, val_ds: Any) -> tuple[Any, Any]:
    """Multi-worker input: each worker's training set is already its own shard of files (no
    further sharding; TensorFlow takes 1/N of each global batch from it); the validation set is
    the same on every worker and split batch by batch, so the metrics are those of one process."""
    policy = tf.data.experimental.AutoShardPolicy
    out = []
    for ds, shard in ((train_ds, policy.OFF), (val_ds, policy.DATA)):
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = shard
        out.append(ds.with_options(options))
    return out[0], out[1]


def _save_float32(run: RunDir) -> None:
    """Rewrite the checkpoints of a mixed-precision run as float32 models (same weights)."""
    from kseg.models import load_model

    for path in (run.best_model, run.last_model):
        if path.is_file():
            model = load_model(path)  # rebuilt in float32 by load_model
            tmp = path.with_name(path.stem + ".f32.tmp.keras")
            model.save(tmp)
            tmp.replace(path)


def eval_batch_size(n: int, batch_size: int, replicas: int) -> int:
    """The largest batch size <= ``batch_size`` (else the smallest larger one) whose every batch
    of ``n`` images, the last one included, gives each of ``replicas`` replicas at least one image.

    A distributed strategy splits each batch over its replicas, so a last batch smaller than the
    replica count leaves a replica an empty slice, and TensorFlow 2.21's oneDNN fused convolution
    fails on an empty batch ("input depth must be evenly divisible by filter depth: 1 vs 4", seen
    on Intel CPUs). Training batches are always full (the training set repeats), so only
    validation needs this. With one replica ``batch_size`` is returned unchanged.

        >>> eval_batch_size(5, 4, 2)  # 4 + 1 would leave a replica empty; 3 + 2 does not
        3
        >>> eval_batch_size(80, 16, 1)
        16
    """
    if replicas <= 1 or n <= 0:
        return batch_size
    if n < replicas:
        raise ConfigError(
            f"the validation split has {n} image(s), fewer than the {replicas} replicas of the "
            "distribution strategy; raise data.val_fraction or add images"
        )
    smaller = range(min(batch_size, n), replicas - 1, -1)
    larger = range(batch_size + 1, n + 1)  # only when no smaller one works; n itself always does
    return next(b for b in (*smaller, *larger) if n % b == 0 or n % b >= replicas)


def finish_run(
    run: RunDir, config: Config, val, *, train_seconds: float | None = None
) -> dict[str, Any]:
    """Score the best checkpoint on the validation split; write metrics.json and the PNGs."""
    from kseg.models import load_model
    from kseg.plots import plot_history, plot_prediction_grid

    best = load_model(run.best_model if run.best_model.is_file() else run.last_model)
    probs = best.predict(
        val.images.astype(np.float32), batch_size=config.train.batch_size, verbose=0
    )
    if config.train.task is Task.DENOISE:
        metrics = score_denoising(probs, val.clean, val.images)
    else:
        metrics = score_split(
            probs,
            val.masks,
            threshold=config.train.threshold,
            class_names=cfgmod.class_names(config),
        )
    history = _read_history(run.history)
    metrics.update(
        {
            "split": "val",
            "model": str(run.best_model),
            "epochs_completed": len(history),
            "best_epoch": _best_epoch(history, monitor_for(config)),
            "train_seconds": round(train_seconds, 1) if train_seconds is not None else None,
            "train_precision": _read_precision(run),
        }
    )
    write_json(run.metrics, metrics)
    plot_history(run.history, run.curves)
    k = min(8, len(val.images))
    if config.train.task is Task.DENOISE:
        from kseg.plots import plot_denoising

        plot_denoising(
            val.images[:k], val.clean[:k], probs[:k], run.predictions, names=list(val.names[:k])
        )
    else:
        plot_prediction_grid(
            val.images[:k],
            val.masks[:k],
            probs[:k],
            run.predictions,
            names=list(val.names[:k]),
            threshold=config.train.threshold,
        )
    return metrics


def score_denoising(denoised: np.ndarray, clean: np.ndarray, noisy: np.ndarray) -> dict[str, Any]:
    """PSNR (dB) and SSIM of the denoised images against the clean ones, and of the noisy input
    (the baseline a denoiser must beat)."""
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    def both(a: np.ndarray) -> tuple[float, float]:
        p, s = [], []
        for x, c in zip(a, clean, strict=True):
            x = np.clip(x, 0, 255).astype(np.float64)
            c = c.astype(np.float64)
            p.append(peak_signal_noise_ratio(c, x, data_range=255))
            s.append(structural_similarity(c, x, data_range=255, channel_axis=-1))
        return float(np.mean(p)), float(np.mean(s))

    psnr, ssim = both(denoised)
    psnr_in, ssim_in = both(noisy)
    return {
        "psnr": psnr,
        "ssim": ssim,
        "psnr_noisy_input": psnr_in,
        "ssim_noisy_input": ssim_in,
        "n_images": len(clean),
    }


def score_split(
    probs: np.ndarray,
    masks: np.ndarray,
    *,
    threshold: float = 0.5,
    class_names: tuple[str, ...] | list[str] | None = None,
) -> dict[str, Any]:
    """Dice/IoU/precision/recall over all pixels and per-image mean, plus the trivial baselines.

    The baselines (all background, all foreground) say what a model that learned nothing gets.
    Multi-class probabilities ``(N, H, W, K>1)`` are scored against label masks: the top-level
    scores are foreground means (classes ``1..K-1``), ``per_class`` holds each class by name
    (``class_names``, index = class id; default ``class_1`` ...), ``per_class_convention`` says
    how absent classes count (:data:`kseg.scores.ABSENT_CLASS_CONVENTION`), and the all-foreground
    baseline marks every pixel as the scored class, class by class.
    """
    from kseg.scores import (
        ABSENT_CLASS_CONVENTION,
        aggregate,
        aggregate_classes,
        image_scores,
        label_scores,
        nan_to_none,
    )

    pred = _to_labels(probs, threshold)
    k = int(probs.shape[-1]) if probs.ndim == 4 else 1
    if k == 1:
        per_image = [image_scores(p, m) for p, m in zip(pred, masks, strict=True)]
        out = aggregate(per_image)
        out["baseline_dice_all_foreground"] = aggregate(
            [image_scores(np.ones_like(m), m) for m in masks]
        )["dice"]
        out["baseline_dice_all_background"] = aggregate(
            [image_scores(np.zeros_like(m), m) for m in masks]
        )["dice"]
        return out
    masks = np.asarray(masks)
    if masks.ndim == 4:
        masks = masks[..., 0]
    names = list(class_names) if class_names is not None and len(class_names) == k else None
    names = names or ["background", *(f"class_{c}" for c in range(1, k))]
    per_image = [label_scores(p, m, k) for p, m in zip(pred, masks, strict=True)]
    out = aggregate(per_image)
    out["per_class"] = nan_to_none(aggregate_classes(per_image, names))  # JSON has no NaN
    out["per_class_convention"] = ABSENT_CLASS_CONVENTION
    out["classes"] = names
    out["baseline_dice_all_foreground"] = float(
        np.mean(
            [
                aggregate([image_scores(np.ones_like(m, bool), m == c) for m in masks])["dice"]
                for c in range(1, k)
            ]
        )
    )
    out["baseline_dice_all_background"] = aggregate(
        [label_scores(np.zeros_like(m), m, k) for m in masks]
    )["dice"]
    return out


def _to_labels(probs: np.ndarray, threshold: float) -> np.ndarray:
    from kseg.scores import binarize

    return np.stack([binarize(p, threshold) for p in probs]).astype(np.uint8)


def default_out(config: Config) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{config.model.name}-{stamp}"


def _read_precision(run: RunDir) -> str | None:
    import json

    path = run.root / PRECISION_FILE
    try:
        return json.loads(path.read_text())["policy"] if path.is_file() else None
    except (ValueError, KeyError, OSError):
        return None


def _read_history(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def _best_epoch(history: list[dict[str, str]], monitor: str = "val_dice") -> int | None:
    scored = [
        (float(r[monitor]), int(r["epoch"])) for r in history if r.get(monitor) not in (None, "")
    ]
    return max(scored)[1] + 1 if scored else None


def _dedupe_history(path: Path) -> None:
    """Keep the last row of each epoch (a run killed after logging but before its backup repeats one)."""
    rows = _read_history(path)
    if not rows:
        return
    by_epoch: dict[int, dict[str, str]] = {}
    for row in rows:
        by_epoch[int(row["epoch"])] = row
    if len(by_epoch) == len(rows):
        return
    fields = list(rows[0].keys())
    lines = [",".join(fields)]
    for epoch in sorted(by_epoch):
        lines.append(",".join(by_epoch[epoch].get(f, "") for f in fields))
    write_text(path, "\n".join(lines) + "\n")


__all__ = [
    "train",
    "build_model",
    "compile_model",
    "finish_run",
    "score_split",
    "prepare",
    "default_out",
]
