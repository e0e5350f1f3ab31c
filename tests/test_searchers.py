import optuna
import pytest
from optuna.trial import TrialState

from search.errors import SpaceError
from search.searchers import TruthfulOptunaSearch
from search.searchers import make_sampler
from search.space import Float
from search.space import SearchSpace
from trainables.mnist import train


def _space():
    return SearchSpace(
        name="t",
        trainable=train,
        params={"learning_rate": Float(1e-4, 1e-2, log=True)},
        objectives={"val_accuracy": "max", "epoch_time_s": "min"},
    )


def test_optuna_is_told_the_truth_about_stopped_and_nan_trials():
    space = _space()
    searcher = TruthfulOptunaSearch(
        space=space.suggest,
        metric=list(space.objectives),
        mode=list(space.objectives.values()),
        sampler=make_sampler("tpe", 0),
        stopped_early=lambda trial_id: trial_id == "stopped",
    )
    for trial_id in ("full", "stopped", "nan"):
        assert "learning_rate" in searcher.suggest(trial_id)
    searcher.on_trial_complete("full", {"val_accuracy": 0.9, "epoch_time_s": 2.0})
    searcher.on_trial_complete("stopped", {"val_accuracy": 0.5, "epoch_time_s": 0.1})
    searcher.on_trial_complete("nan", {"val_accuracy": float("nan"), "epoch_time_s": 1.0})
    states = [trial.state for trial in searcher._ot_study.trials]
    # A full-budget trial is COMPLETE with its values; a stopped one is PRUNED (its partial,
    # "fast" values are not told); a NaN result is FAIL.
    assert states == [TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL]
    assert searcher._ot_study.trials[0].values == [0.9, 2.0]
    # Only the full-budget trial can be on Optuna's own Pareto front.
    assert [t.number for t in searcher._ot_study.best_trials] == [0]


@pytest.mark.parametrize("kind, sampler", [("tpe", optuna.samplers.TPESampler), ("nsga2", optuna.samplers.NSGAIISampler), ("random", optuna.samplers.RandomSampler)])
def test_samplers_are_seeded_and_reproducible(kind, sampler):
    assert isinstance(make_sampler(kind, 3), sampler)
    first = optuna.create_study(sampler=make_sampler(kind, 3)).ask().suggest_float("x", 0, 1)
    again = optuna.create_study(sampler=make_sampler(kind, 3)).ask().suggest_float("x", 0, 1)
    assert first == again


def test_unknown_searcher_is_rejected():
    with pytest.raises(SpaceError, match="Unknown searcher 'cmaes'"):
        make_sampler("cmaes", 0)
