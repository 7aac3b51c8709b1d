"""The fine-tuning budget shared by ``fit``, the distiller and the optimize steps: which keyword
goes where, each step's defaults, and the recipe keys read from them."""

from __future__ import annotations

import numpy as np
import pytest

from kseg._keras import keras
from kseg.errors import ConfigError
from kseg.optimize import steps
from kseg.optimize._train import FitBudget, FitData
from kseg.optimize.recipe import step_keys, validate_recipe


def _data(n: int) -> FitData:
    return FitData(
        np.zeros((n, 8, 8, 1)), np.zeros((n, 8, 8)), np.zeros((2, 8, 8, 1)), np.zeros((2, 8, 8))
    )


def test_split_takes_the_budget_fields_and_leaves_the_rest():
    budget, rest = FitBudget.split(
        {"epochs": 2, "seed": 7, "alpha": 0.3, "beta": 1.0}, learning_rate=1e-3, seed=1
    )
    # given > defaults > class defaults
    assert (budget.epochs, budget.seed, budget.learning_rate, budget.batch_size) == (2, 7, 1e-3, 8)
    assert rest == {"alpha": 0.3, "beta": 1.0}
    assert budget.keywords() == {
        "epochs": 2, "batch_size": 8, "learning_rate": 1e-3, "lr_schedule": "constant",
        "loss": None, "seed": 7, "augment": False, "verbose": 0, "run_eagerly": False,
    }  # fmt: skip


def test_of_refuses_an_unknown_name_and_a_missing_epoch_count():
    with pytest.raises(TypeError, match="lerning_rate"):
        FitBudget.of({"epochs": 1, "lerning_rate": 1e-3})
    with pytest.raises(TypeError, match="epochs"):
        FitBudget.of({"batch_size": 4})


def test_optimizer_schedule_spans_the_budget_and_at_least_one_epoch():
    # 10 images in batches of 4: 3 steps per epoch
    cosine = FitBudget(epochs=2, batch_size=4, learning_rate=1e-2, lr_schedule="cosine")
    lr = cosine.optimizer(_data(10)).get_config()["learning_rate"]
    assert lr["config"]["decay_steps"] == 6
    assert lr["config"]["initial_learning_rate"] == pytest.approx(1e-2)
    optimizer = FitBudget(epochs=0, batch_size=4, lr_schedule="cosine").optimizer(_data(10))
    assert optimizer.get_config()["learning_rate"]["config"]["decay_steps"] == 3


def test_inputs_pair_unlabeled_images_only_when_there_are_some():
    budget = FitBudget(epochs=1, batch_size=4)
    plain = {"x", "y", "batch_size", "shuffle"}
    assert set(budget.inputs(_data(10))) == plain
    assert set(budget.inputs(_data(10), np.zeros((0, 8, 8, 1)))) == plain
    (x,) = budget.inputs(_data(10), np.zeros((3, 8, 8, 1))).values()
    (labeled, unlabeled) = next(iter(x))
    assert len(labeled[0]) == 4 and len(unlabeled) == 4


def test_zero_epochs_compiles_only():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(1, 1)])
    weights = [w.copy() for w in model.get_weights()]
    assert FitBudget(epochs=0, learning_rate=0.5).fit(model, _data(4)) == {}
    assert model.optimizer is not None
    for a, b in zip(weights, model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_each_step_starts_from_its_own_budget():
    assert steps._budget(steps.Step.PRUNE, {}).epochs == 4
    assert steps._budget(steps.Step.QAT, {}).epochs == 3
    assert steps._budget(steps.Step.CLUSTER, {"batch_size": 2}) == FitBudget(3, batch_size=2)
    distill = steps._budget(steps.Step.DISTILL, {"lr_schedule": "cosine", "augment": True})
    assert (distill.epochs, distill.learning_rate, distill.lr_schedule, distill.augment) == (
        10, 1e-3, "cosine", True,
    )  # fmt: skip
    # only the distiller schedules the learning rate and augments
    with pytest.raises(TypeError, match="run_prune\\(\\) got an unexpected keyword .*'augment'"):
        steps._budget(steps.Step.PRUNE, {"augment": True})


def test_recipe_keys_are_the_step_options_then_its_budget():
    assert step_keys("prune") == [
        "sparsity", "schedule", "policy", "structured_2_4",
        "epochs", "batch_size", "learning_rate", "loss",
    ]  # fmt: skip
    fit = ["epochs", "batch_size", "learning_rate", "loss", "lr_schedule", "augment"]
    assert step_keys("distill")[-6:] == fit
    assert "seed" not in step_keys("qat")  # the recipe's seed
    recipe = {"model": "m.keras", "steps": [{"step": "distill", "student": "mobile_unet",
                                             "lr_schedule": "cosine", "epochs": 2}]}  # fmt: skip
    assert validate_recipe(recipe)["steps"][0]["lr_schedule"] == "cosine"
    with pytest.raises(ConfigError, match="\\(qat\\) has no option 'lr_schedule'; valid: .*epochs"):
        validate_recipe({"model": "m.keras", "steps": [{"step": "qat", "lr_schedule": "cosine"}]})
