"""train.budget_minutes: the run re-fits its epoch count from its own epoch times, stretches or
shortens the cosine schedule with it, stops before the budget, and records what it decided."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kseg._keras import keras, tf
from kseg.config import load_config
from kseg.training import budget
from kseg.training.budget import BudgetClock, BudgetFit, fitted_epochs
from kseg.training.callbacks import WarmupCosine

TINY = {
    "data.synthetic_n": 24,
    "data.img_size": 32,
    "train.steps_per_epoch": 2,
    "train.batch_size": 4,
    "train.schedule": "cosine",
    "train.early_stopping_patience": 50,
    "model.options": {"depth": 2, "filters": 4},
}


def test_fitted_epochs_arithmetic():
    # 1000 s budget, 100 s gone, 3 % margin (30 s), 40 s final scoring: 830 s for 10-s epochs
    kw = dict(now=100.0, deadline=1000.0, budget_s=1000.0, final_s=40.0)
    assert fitted_epochs(done=2, epoch_s=10.0, **kw) == 2 + 83
    assert fitted_epochs(done=2, epoch_s=10.0, max_epochs=50, **kw) == 50  # an explicit cap
    # no cap by default: 1-s epochs fill the 830 s (a 200-epoch cap once idled a third of a budget)
    assert fitted_epochs(done=2, epoch_s=1.0, **kw) == 2 + 830
    assert fitted_epochs(done=2, epoch_s=1000.0, **kw) == 3  # always one more; the stop decides


class FakeTime:
    """A clock the test moves by hand (only kseg.training.budget reads it)."""

    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def time(self) -> float:
        return self.t


def _compiled(total_steps: int) -> keras.Model:
    inp = keras.Input((4,))
    model = keras.Model(inp, keras.layers.Dense(1)(inp))
    model.compile(optimizer=keras.optimizers.Adam(WarmupCosine(1e-2, total_steps, 0)), loss="mse")
    return model


def test_budget_fit_stretches_the_schedule_and_stops_before_the_budget(monkeypatch, tmp_path):
    clock = FakeTime()
    monkeypatch.setattr(budget, "time", clock)
    model = _compiled(total_steps=10 * 5)
    sched = model.optimizer._learning_rate
    progbar = keras.callbacks.ProgbarLogger(count_mode="steps")
    fit = BudgetFit(
        BudgetClock(10.0, started_at=clock.t),  # 600 s
        planned_epochs=10,
        steps_per_epoch=5,
        max_epochs=200,
        record=tmp_path / "budget.json",
        progbar=progbar,
        log=lambda m: None,
    )
    fit.set_model(model)
    traced = tf.function(lambda step: sched(step))  # as the training step sees it
    before = float(traced(tf.constant(40)))
    fit.on_train_begin()
    assert progbar.epochs == 10
    durations = [30.0, 20.0]  # the first epoch traces; 20 s is the steady state
    for epoch, d in enumerate(durations):
        fit.on_test_begin()
        clock.t += 2.0  # 2 s of validation inside each epoch
        fit.on_test_end()
        clock.t += d - 2.0
        fit.on_epoch_end(epoch)
    # after 2 epochs (50 s): 600 - 18 (3 %) - 22 (final: 20 + 2) - 50 = 510 s -> 25 more epochs
    assert fit.epochs == 27 and progbar.epochs == 27
    assert sched.total_steps == 27 * 5
    assert float(sched(0)) == pytest.approx(1e-2)
    # the curve now ends at step 135, not 50: half-way down at step 67.5
    want = 1e-2 * (0.01 + 0.99 * 0.5 * (1 + np.cos(np.pi * 67 / 135)))
    assert float(sched(67)) == pytest.approx(want, rel=1e-5)
    # the already traced function reads the new length (a variable, not a baked-in constant)
    assert float(traced(tf.constant(40))) > before * 2
    assert not model.stop_training
    rec = json.loads((tmp_path / "budget.json").read_text())
    assert rec["refits"][0] == {
        "after_epoch": 2,
        "elapsed_s": 50.0,
        "epoch_s": 20.0,
        "final_s": 22.0,
        "epochs_before": 10,
        "epochs_after": 27,
    }
    # the machine gets slower: 60-s epochs; the re-fits after each epoch shrink the
    # count, and the safety stop ends the run once another epoch would cross the budget
    epoch = 2
    while not model.stop_training:
        clock.t += 60.0
        fit.on_epoch_end(epoch)
        epoch += 1
    assert fit.epochs < 27
    assert clock.t + 20.0 <= 1000.0 + 600.0  # the final scoring still fits
    rec = json.loads((tmp_path / "budget.json").read_text())
    assert rec["epochs_done"] == epoch and len(rec["refits"]) >= 2


def test_budget_run_extends_its_planned_epochs_and_records_them(tmp_path, monkeypatch):
    from kseg.training import train

    # an ample budget stretches 3 planned epochs as far as fit goes (here 4, to keep the test short)
    monkeypatch.setattr(budget, "FIT_EPOCHS", 4)
    cfg = load_config(None, {**TINY, "train.epochs": 3, "train.budget_minutes": 60})
    m = train(cfg, tmp_path / "run", verbose=0)
    rec = json.loads((tmp_path / "run" / "budget.json").read_text())
    assert rec["epochs"] == 4 and rec["epochs_done"] == 4 and m["epochs_completed"] == 4
    assert rec["refits"][0]["epochs_before"] == 3 and rec["refits"][0]["epochs_after"] == 4
    assert 0 < rec["of_budget"] < 1 and rec["stop"] is None


def test_budget_run_stops_when_no_further_epoch_fits(tmp_path):
    from kseg.training import train

    # 3 s: already spent before the first epoch ends, and less than the final scoring needs
    cfg = load_config(None, {**TINY, "train.epochs": 5, "train.budget_minutes": 0.05})
    m = train(cfg, tmp_path / "run", verbose=0)
    rec = json.loads((tmp_path / "run" / "budget.json").read_text())
    assert m["epochs_completed"] == 1 and rec["stop"]["after_epoch"] == 1
    assert (tmp_path / "run" / "metrics.json").is_file()  # still scored and complete


def test_a_resumed_budget_run_keeps_the_fitted_count(tmp_path):
    from kseg.training.budget import resumed_epochs

    assert resumed_epochs(tmp_path, 30) == 30  # no record: the config's count
    (tmp_path / "budget.json").write_text(json.dumps({"epochs": 47, "budget_minutes": 15}))
    assert resumed_epochs(tmp_path, 30) == 47
    (tmp_path / "budget.json").write_text("{}")
    assert resumed_epochs(tmp_path, 30) == 30
