"""Recipes: every epoch of every trial, time to a target, and the front over recipes (made-up curves)."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from search.methods import recipes
from search.record import front as front_module
from search.space import Float
from search.space import SearchSpace
from search.errors import SpaceError

OBJECTIVES = {"val_accuracy": "max", "train_time_s": "min"}


def _history(accuracy: list[float], seconds: list[float]) -> pd.DataFrame:
    return pd.DataFrame({"epoch": range(1, len(accuracy) + 1), "val_accuracy": accuracy, "train_time_s": seconds})


# A slow-per-epoch trial that learns fast, a fast-per-epoch one that learns slowly, and one the
# scheduler stopped after two epochs.
HISTORIES = {
    "fast-learner": _history([0.95, 0.97, 0.975, 0.972], [2.0, 3.5, 5.0, 6.5]),
    "fast-epochs": _history([0.80, 0.90, 0.94, 0.955, 0.96], [1.0, 1.8, 2.6, 3.4, 4.2]),
    "stopped": _history([0.96, 0.965], [1.5, 2.9]),
}
TRIALS = pd.DataFrame(
    {
        "trial": list(HISTORIES),
        "status": ["finished", "finished", "stopped"],
        "run_id": ["r1", "r2", "r3"],
        "learning_rate": [0.01, 0.001, 0.003],
    }
)


def test_time_to_target_is_the_training_time_of_the_first_epoch_that_reaches_it():
    history = HISTORIES["fast-epochs"].to_dict("records")
    # 0.94 is first reached after epoch 3, when 2.6 s of training had passed.
    assert recipes.time_to_target(history, "val_accuracy", 0.94) == (3, 2.6)
    # Reached exactly counts (at least the target).
    assert recipes.time_to_target(history, "val_accuracy", 0.955) == (4, 3.4)
    # Not reached in the epochs it ran: None, not its last epoch.
    assert recipes.time_to_target(history, "val_accuracy", 0.97) is None
    # A "min" target (a loss) is reached from above.
    losses = [{"epoch": 1, "val_loss": 0.5, "train_time_s": 1.0}, {"epoch": 2, "val_loss": 0.2, "train_time_s": 2.0}]
    assert recipes.time_to_target(losses, "val_loss", 0.3, "min") == (2, 2.0)
    # An epoch without a finite training time cannot be an answer.
    broken = [{"epoch": 1, "val_accuracy": 0.99, "train_time_s": math.nan}, {"epoch": 2, "val_accuracy": 0.99, "train_time_s": 4.0}]
    assert recipes.time_to_target(broken, "val_accuracy", 0.9) == (2, 4.0)


def test_the_fastest_recipe_per_target_comes_from_any_epoch_of_any_trial_stopped_ones_included():
    table = recipes.table(TRIALS, HISTORIES, keep=["trial", "status", "run_id", "learning_rate"])
    # One row per epoch of every trial, each named and carrying its trial's columns.
    assert len(table) == 4 + 5 + 2
    assert table.loc[table["recipe"] == "fast-epochs@3", "learning_rate"].item() == 0.001
    fastest = front_module.fastest_per_target(table, [("val_accuracy", 0.95), ("val_accuracy", 0.97), ("val_accuracy", 0.99)], OBJECTIVES)
    by_target = fastest.set_index("target")
    # 0.95: the stopped trial's first epoch (0.96 after 1.5 s) beats 2.0 s and 3.4 s.
    assert by_target.loc[0.95, "recipe"] == "stopped@1" and by_target.loc[0.95, "train_time_s"] == 1.5
    # 0.97: the learner's second epoch, not its last (which is slower and less accurate).
    assert by_target.loc[0.97, "recipe"] == "fast-learner@2" and by_target.loc[0.97, "epoch"] == 2
    # Nobody reached 0.99.
    assert pd.isna(by_target.loc[0.99, "recipe"]) and math.isnan(by_target.loc[0.99, "train_time_s"])
    # What the terminal says of it.
    text = front_module.describe_targets(fastest, {"stopped@1": "models:/x/7"}, {"stopped@1", "fast-learner@2"})
    assert "val_accuracy >= 0.95: stopped trained 1 epoch, 1.5 s of training" in text and "models:/x/7" in text
    assert "val_accuracy >= 0.99: no recipe reached it." in text
    # A recipe trained again alone shows that figure and its range over the runs beside the study's.
    retimed = {"stopped@1": {"train_time_s_alone": 1.4, "train_time_s_alone_min": 1.3, "train_time_s_alone_max": 1.6}}
    again = front_module.with_retimed(front_module.fastest_per_target(table, [("val_accuracy", 0.95)], OBJECTIVES), retimed)
    assert again.loc[0, "train_time_s_alone"] == 1.4
    assert "1.5 s of training; alone 1.4 s (1.3-1.6 s over its runs)" in front_module.describe_targets(again, {}, set())


def test_the_front_over_recipes_holds_epochs_of_every_trial_and_the_answer_to_every_target():
    table = recipes.table(TRIALS, HISTORIES, keep=["trial", "status", "run_id"])
    table["ended_at"] = range(len(table))
    front = front_module.analyse(table, OBJECTIVES, eligible=pd.Series(True, index=table.index))
    on_front = set(front.points["recipe"])
    # Non-dominated recipes, from three trials; a stopped trial's epoch is on it.
    assert on_front == {"fast-epochs@1", "stopped@1", "stopped@2", "fast-learner@2", "fast-learner@3"}
    # A trial's last epoch is not on it when an earlier one of its epochs dominates it.
    assert "fast-learner@4" not in on_front
    # The fastest recipe to any target is on the front.
    for target in (0.8, 0.9, 0.95, 0.96, 0.965, 0.97, 0.975):
        assert recipes.fastest(table, "val_accuracy", target)["recipe"] in on_front
    # The knee is one of the front's points.
    assert front.points.iloc[0]["knee"] and front.points.iloc[0]["recipe"] in on_front


def test_a_trial_records_its_time_to_each_target_or_that_it_missed_it():
    reached, missed = recipes.per_trial(HISTORIES["fast-epochs"].to_dict("records"), [("val_accuracy", 0.9), ("val_accuracy", 0.97)], OBJECTIVES)
    assert reached == {"time_to_val_accuracy_0.9_s": 1.8}
    assert missed == ["val_accuracy>=0.97"]


def _space(**changes):
    def train(config, context=None):
        return {}

    train.metrics = ("epoch", "val_accuracy", "train_time_s", "epoch_time_s")
    return SearchSpace(name="s", trainable=train, params={"x": Float(0, 1)}, objectives=OBJECTIVES, **changes)


def test_a_space_declares_its_front_over_recipes_and_its_targets_in_one_line_each():
    space = _space(front="recipes", targets={"val_accuracy": [0.95, 0.97]})
    assert space.recipe_targets == [("val_accuracy", 0.95), ("val_accuracy", 0.97)]
    # The front's kind is part of what a resumed study must share; the default leaves old studies resumable.
    assert space.identity()["front"] == "recipes" and "front" not in _space().identity()
    with pytest.raises(SpaceError, match="`front` must be one of"):
        _space(front="epochs")
    with pytest.raises(SpaceError, match='set front="recipes"'):
        _space(targets={"val_accuracy": [0.9]})
    with pytest.raises(SpaceError, match="Unknown target metric 'accuracy'"):
        _space(front="recipes", targets={"accuracy": [0.9]})
    with pytest.raises(SpaceError, match="non-empty list of numbers"):
        _space(front="recipes", targets={"val_accuracy": 0.9})


def test_a_study_whose_budget_ended_before_any_epoch_still_draws_its_recipes(tmp_path):
    from search.record.plots import recipes_plot

    # Trials started, none reported an epoch: the table of recipes has no objective columns.
    table = recipes.table(TRIALS, {}, keep=["trial", "status", "run_id"])
    front = front_module.analyse(table, OBJECTIVES, eligible=pd.Series(True, index=table.index))
    path = recipes_plot(front.table, OBJECTIVES, [("val_accuracy", 0.95)], tmp_path / "pareto.png")
    assert path.stat().st_size > 0 and front.points.empty
