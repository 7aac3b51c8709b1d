"""Fit a training run to a wall-clock budget from its own epoch times (``train.budget_minutes``).

``kseg plan`` prices an epoch from probes of a few steps on one repeated batch; they miss the
input pipeline, augmentation, checkpointing and validation overheads and scale imperfectly with
the input size (off by 1.5x both ways on HC18 and synthetic ultrasound, docs/benchmarks.md). The
run itself is the exact measurement, so :class:`BudgetFit` re-plans the epoch count while it
trains:

1. After every epoch from epoch :data:`FIRST_REFIT` on (epoch 1 also pays for tracing), it takes
   the median time of the last :data:`RECENT` epochs (so a machine that gets busier or quieter
   is followed within a few epochs; the first epoch is left out) and the time the final scoring
   will take (reloading the best checkpoint, one validation pass and the plots:
   :data:`FINAL_FIXED_S` plus the median validation pass).
2. The new count is the number of epochs that ends the command at the budget less
   :data:`MARGIN`, at least the epochs done + 1 and with no upper cap (a fixed cap of 200
   epochs once ended a 13-minute run on 20 images after 9.3 minutes, leaving a third of the
   budget idle; the best checkpoint by validation score guards against over-training); a cosine
   schedule is stretched or shortened to the new count (:meth:`WarmupCosine.set_total_steps`).
3. A safety stop ends the run early if the next epoch would finish after the budget (the machine
   got slower).

What it decided goes to ``RUN/budget.json`` (each re-fit, the stop, and the command's actual
wall-clock time once the run is scored), so a budget miss can be traced to its cause.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kseg._keras import keras
from kseg.atomic import write_json

MARGIN = 0.03  #: share of the budget held back: epoch-time jitter, process exit
FINAL_FIXED_S = 20.0  #: reload the best checkpoint, trace its predict, plots, float32 rewrite
FIRST_REFIT = 2  #: epochs before the first re-fit (the first one traces the training step)
RECENT = 5  #: epochs whose median prices the rest of the run
#: epochs given to ``model.fit`` in a budget run: never reached, the budget ends the run
FIT_EPOCHS = 1_000_000
BUDGET_FILE = "budget.json"


@dataclass
class BudgetClock:
    """A wall-clock budget that started at ``started_at`` (``time.time()`` seconds).

    ``kseg train`` starts it when the command's process started, so imports and planning count.
    """

    minutes: float
    started_at: float = field(default_factory=time.time)

    @property
    def deadline(self) -> float:
        return self.started_at + self.minutes * 60.0

    def elapsed(self, now: float | None = None) -> float:
        return (time.time() if now is None else now) - self.started_at


def process_start_time() -> float:
    """When this process started (``time.time()`` seconds); now if the OS will not say."""
    try:
        import psutil

        return float(psutil.Process().create_time())
    except Exception:  # noqa: BLE001 - a budget measured from slightly later is still a budget
        return time.time()


def fitted_epochs(
    *,
    done: int,
    now: float,
    deadline: float,
    budget_s: float,
    epoch_s: float,
    final_s: float,
    max_epochs: int | None = None,
) -> int:
    """Total epochs that end the run by ``deadline - MARGIN x budget``: at least ``done + 1``,
    at most ``max_epochs`` (``None``: no cap).

    >>> fitted_epochs(done=2, now=100.0, deadline=1000.0, budget_s=1000.0, epoch_s=10.0,
    ...               final_s=40.0)
    85
    """
    cap = FIT_EPOCHS if max_epochs is None else int(max_epochs)
    usable = deadline - MARGIN * budget_s - final_s - now
    more = math.floor(usable / epoch_s) if epoch_s > 0 else cap
    return int(min(done + max(more, 1), cap))


def schedule_of(optimizer: Any) -> Any:
    """The optimizer's learning-rate schedule object, or ``None`` for a constant rate."""
    opt = getattr(optimizer, "inner_optimizer", optimizer)  # a loss-scale wrapper (float16)
    # tf-keras keeps the schedule object (not its current value) in this attribute
    lr = getattr(opt, "_learning_rate", None)
    return lr if hasattr(lr, "set_total_steps") else None


class BudgetFit(keras.callbacks.Callback):
    """Re-plan the epoch count from measured epoch times so the run ends within its budget.

    Args:
        clock: the budget and when it started.
        planned_epochs: the count to start from (``train.epochs``).
        steps_per_epoch: training steps per epoch (to re-size the cosine schedule).
        max_epochs: the count never goes beyond it (``None``: no cap, the budget alone decides;
            ``fit`` is then given :data:`FIT_EPOCHS`).
        record: file that receives what was decided (``RUN/budget.json``).
        progbar: the run's progress bar, whose ``Epoch k/N`` is kept in step with the count.
        log: where the one-line decisions go.
    """

    def __init__(
        self,
        clock: BudgetClock,
        *,
        planned_epochs: int,
        steps_per_epoch: int,
        max_epochs: int | None = None,
        record: Path | None = None,
        progbar: keras.callbacks.ProgbarLogger | None = None,
        log=print,
    ) -> None:
        super().__init__()
        self.clock = clock
        self.epochs = int(planned_epochs)
        self.steps_per_epoch = int(steps_per_epoch)
        self.max_epochs = None if max_epochs is None else int(max_epochs)
        self.record_path = record
        self.progbar = progbar
        self.log = log
        self.epoch_s: list[float] = []
        self.val_s: list[float] = []
        self.refits: list[dict[str, Any]] = []
        self.stop: dict[str, Any] | None = None
        self._t_epoch = 0.0
        self._t_val = 0.0

    # -------------------------------------------------------------------------- measuring

    def on_train_begin(self, logs=None):
        self._t_epoch = time.time()
        self._set_epochs(self.epochs)
        self._write()

    def on_test_begin(self, logs=None):
        self._t_val = time.time()

    def on_test_end(self, logs=None):
        self.val_s.append(time.time() - self._t_val)

    def on_epoch_end(self, epoch, logs=None):
        now = time.time()
        self.epoch_s.append(now - self._t_epoch)  # end to end: checkpoints and logs included
        self._t_epoch = now
        done = epoch + 1
        if FIRST_REFIT <= done < self.epochs:
            self._refit(done, now)
        if done >= self.epochs:
            self.model.stop_training = True
        elif now + self.epoch_estimate() + self.final_estimate() > self.clock.deadline:
            self.model.stop_training = True
            self.stop = {
                "after_epoch": done,
                "why": "the next epoch would end after the budget",
                "elapsed_s": round(self.clock.elapsed(now), 1),
            }
            self.log(
                f"budget: stopping after epoch {done} of {self.epochs}: another epoch "
                f"(~{self.epoch_estimate():.0f} s) would end after the {self.clock.minutes:g}-min budget"
            )
        self._write()

    def epoch_estimate(self) -> float:
        steady = self.epoch_s[1:] or self.epoch_s
        return float(np.median(steady[-RECENT:])) if steady else 0.0

    def final_estimate(self) -> float:
        return FINAL_FIXED_S + (float(np.median(self.val_s)) if self.val_s else 0.0)

    # -------------------------------------------------------------------------- deciding

    def _refit(self, done: int, now: float) -> None:
        epoch_s, final_s = self.epoch_estimate(), self.final_estimate()
        new = fitted_epochs(
            done=done,
            now=now,
            deadline=self.clock.deadline,
            budget_s=self.clock.minutes * 60.0,
            epoch_s=epoch_s,
            final_s=final_s,
            max_epochs=self.max_epochs,
        )
        if new == self.epochs and self.refits:
            return
        self.refits.append(
            {
                "after_epoch": done,
                "elapsed_s": round(self.clock.elapsed(now), 1),
                "epoch_s": round(epoch_s, 2),
                "final_s": round(final_s, 1),
                "epochs_before": self.epochs,
                "epochs_after": new,
            }
        )
        # a line for the first fit and for real changes, not for every +-1 epoch of jitter
        if len(self.refits) == 1 or abs(new - self.epochs) >= max(2, 0.05 * self.epochs):
            self.log(
                f"budget: {epoch_s:.1f} s per epoch measured after {done} epochs: "
                f"{new} epochs fit the {self.clock.minutes:g}-min budget (was {self.epochs})"
            )
        self._set_epochs(new)

    def _set_epochs(self, epochs: int) -> None:
        self.epochs = int(epochs)
        schedule = schedule_of(self.model.optimizer) if self.model is not None else None
        if schedule is not None:
            schedule.set_total_steps(self.epochs * self.steps_per_epoch)
        if self.progbar is not None:
            self.progbar.epochs = self.epochs

    def as_dict(self) -> dict[str, Any]:
        return {
            "budget_minutes": self.clock.minutes,
            "started_at": self.clock.started_at,
            "epochs": self.epochs,
            "epochs_done": len(self.epoch_s),
            "epoch_seconds": [round(s, 2) for s in self.epoch_s],
            "val_seconds": [round(s, 2) for s in self.val_s],
            "refits": self.refits,
            "stop": self.stop,
            "margin": MARGIN,
        }

    def _write(self) -> None:
        if self.record_path is not None:
            write_json(self.record_path, self.as_dict())


def finish_record(path: Path, clock: BudgetClock) -> dict[str, Any] | None:
    """Add the run's actual wall-clock time, once scored, to ``RUN/budget.json``."""
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    elapsed = clock.elapsed()
    record["elapsed_s"] = round(elapsed, 1)
    record["elapsed_minutes"] = round(elapsed / 60.0, 2)
    record["of_budget"] = round(elapsed / (clock.minutes * 60.0), 3)
    write_json(path, record)
    return record


def resumed_epochs(run_root: Path, configured: int) -> int:
    """The epoch count a budget run had settled on before it was interrupted (else ``configured``)."""
    path = Path(run_root) / BUDGET_FILE
    if not path.is_file():
        return configured
    try:
        return int(json.loads(path.read_text())["epochs"])
    except (ValueError, KeyError, TypeError):
        return configured


__all__ = [
    "BUDGET_FILE",
    "FIT_EPOCHS",
    "BudgetClock",
    "BudgetFit",
    "finish_record",
    "fitted_epochs",
    "process_start_time",
    "resumed_epochs",
    "schedule_of",
]
