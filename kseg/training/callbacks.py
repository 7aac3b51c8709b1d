"""Optimizers, learning-rate schedules and callbacks built from a :class:`TrainConfig`."""

from __future__ import annotations

import csv
import math
from pathlib import Path

from kseg._keras import keras, tf
from kseg.config import Optimizer, Schedule, TrainConfig
from kseg.training.rundir import RunDir


@keras.saving.register_keras_serializable(package="kseg")
class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up to ``base_lr`` over ``warmup_steps``, then cosine decay to ``min_ratio * base_lr``.

    Step-based, so a resumed run (the optimizer's iteration count is restored) continues the curve.
    The length lives in a variable, so a run fitted to a time budget can stretch or shorten the
    curve while it trains (:meth:`set_total_steps`).

    Reference: Loshchilov & Hutter, "SGDR: Stochastic Gradient Descent with Warm Restarts", ICLR 2017.
    """

    def __init__(
        self, base_lr: float, total_steps: int, warmup_steps: int = 0, min_ratio: float = 0.01
    ):
        self.base_lr = float(base_lr)
        self.total_steps = max(int(total_steps), 1)
        self.warmup_steps = max(int(warmup_steps), 0)
        self.min_ratio = float(min_ratio)
        self._total = tf.Variable(float(self.total_steps), trainable=False, dtype=tf.float32)

    def set_total_steps(self, total_steps: int) -> None:
        """Change the curve's length from now on (the traced training step reads the variable)."""
        self.total_steps = max(int(total_steps), 1)
        self._total.assign(float(self.total_steps))

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        warm = tf.cast(max(self.warmup_steps, 1), tf.float32)
        warm_lr = self.base_lr * (step + 1.0) / warm
        decay_steps = tf.maximum(self._total - float(self.warmup_steps), 1.0)
        progress = tf.clip_by_value((step - self.warmup_steps) / decay_steps, 0.0, 1.0)
        cosine = 0.5 * (1.0 + tf.cos(math.pi * progress))
        lr = self.base_lr * (self.min_ratio + (1.0 - self.min_ratio) * cosine)
        return tf.where(step < self.warmup_steps, warm_lr, lr)

    def get_config(self):
        return {
            "base_lr": self.base_lr,
            "total_steps": self.total_steps,
            "warmup_steps": self.warmup_steps,
            "min_ratio": self.min_ratio,
        }


def make_optimizer(cfg: TrainConfig, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    lr: float | WarmupCosine = cfg.learning_rate
    if cfg.schedule is Schedule.COSINE:
        lr = WarmupCosine(
            cfg.learning_rate,
            total_steps=cfg.epochs * steps_per_epoch,
            warmup_steps=cfg.warmup_epochs * steps_per_epoch,
        )
    if cfg.optimizer is Optimizer.ADAM:
        return keras.optimizers.Adam(learning_rate=lr)
    if cfg.optimizer is Optimizer.ADAMW:
        return keras.optimizers.AdamW(learning_rate=lr, weight_decay=cfg.weight_decay)
    return keras.optimizers.SGD(learning_rate=lr, momentum=0.9, nesterov=True)


def best_so_far(history_csv: Path, monitor: str = "val_dice") -> float | None:
    """Best monitored value in an earlier run's history (for a resumed best-checkpoint callback)."""
    if not history_csv.is_file():
        return None
    values = []
    with history_csv.open(newline="") as fh:
        for row in csv.DictReader(fh):
            try:
                values.append(float(row[monitor]))
            except (KeyError, TypeError, ValueError):
                continue
    return max(values) if values else None


class TimeLimit(keras.callbacks.Callback):
    """Stop training at the end of the epoch during which ``minutes`` of wall-clock time ran out."""

    def __init__(self, minutes: float) -> None:
        super().__init__()
        self.seconds = float(minutes) * 60.0
        self.started = 0.0
        self.stopped_epoch: int | None = None

    def on_train_begin(self, logs=None):
        import time

        self.started = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        import time

        if time.monotonic() - self.started >= self.seconds:
            self.stopped_epoch = epoch
            self.model.stop_training = True
            print(f"time limit of {self.seconds / 60:.1f} min reached after epoch {epoch + 1}")


class WorkerBackupAndRestore(keras.callbacks.BackupAndRestore):
    """``BackupAndRestore`` for a multi-worker job's non-chief worker.

    Every worker must take part in each backup (reading the synchronised variables is a collective
    step), but only the chief's copy is kept. Keras would write a worker's copy into a
    ``workertemp_N`` folder inside the chief's backup folder; this one writes it into the worker's
    own ``backup_dir`` (a private folder, emptied after each save) and restores from the chief's.

    Args:
        backup_dir: the worker's private backup folder.
        restore_from: the chief's backup folder (``RUN/backup``, on storage every worker reads).
    """

    def __init__(self, backup_dir: str, restore_from: str, **kwargs) -> None:
        super().__init__(backup_dir, **kwargs)
        self.restore_from = restore_from

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)  # restores nothing: the private folder is new
        state = self._training_state
        state.read_checkpoint_manager = tf.train.CheckpointManager(
            state.read_checkpoint_manager.checkpoint,
            directory=str(Path(self.restore_from) / "chief"),
            max_to_keep=1,
        )
        state.restore()


def make_callbacks(
    cfg: TrainConfig, run: RunDir, *, monitor: str = "val_dice", shared: RunDir | None = None
) -> list[keras.callbacks.Callback]:
    """Backup for ``--resume``, best and last checkpoints, CSV and TensorBoard logs, early stopping, LR.

    ``shared`` is the chief's run directory when ``run`` is a multi-worker job's private folder for
    a non-chief worker: the best value so far and the backup to restore come from it, so every
    worker makes the same checkpoint decisions as the chief.
    """
    shared = shared or run
    callbacks: list[keras.callbacks.Callback] = [
        keras.callbacks.ModelCheckpoint(
            str(run.best_model),
            monitor=monitor,
            mode="max",
            save_best_only=True,
            initial_value_threshold=best_so_far(shared.history, monitor),
        ),
        keras.callbacks.ModelCheckpoint(str(run.last_model), save_best_only=False),
        keras.callbacks.CSVLogger(str(run.history), append=True),
        keras.callbacks.TensorBoard(str(run.tensorboard), histogram_freq=0, write_graph=False),
        keras.callbacks.EarlyStopping(
            monitor=monitor, mode="max", patience=cfg.early_stopping_patience, min_delta=1e-4
        ),
        keras.callbacks.TerminateOnNaN(),
    ]
    if cfg.schedule is Schedule.PLATEAU:
        callbacks.append(
            keras.callbacks.ReduceLROnPlateau(
                monitor="val_loss",
                factor=0.5,
                patience=max(cfg.early_stopping_patience // 3, 2),
                min_lr=1e-6,
            )
        )
    if cfg.time_limit_minutes is not None:
        callbacks.append(TimeLimit(cfg.time_limit_minutes))
    # Saves model, optimizer and epoch at each epoch end and restores them when fit() starts again
    # after a crash or SIGKILL. Last in the list: an epoch is backed up only after its history row
    # and checkpoints are written, so a kill in between repeats that epoch (its row is de-duplicated)
    # instead of losing it.
    if shared is run:
        backup = keras.callbacks.BackupAndRestore(str(run.backup), delete_checkpoint=False)
    else:
        backup = WorkerBackupAndRestore(
            str(run.backup), str(shared.backup), delete_checkpoint=False
        )
    callbacks.append(backup)
    return callbacks
