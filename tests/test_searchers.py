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
    # A full-budget trial is COMPLETE with its values; a stopped one is COMPLETE with the values
    # it reached but infeasible (it missed epochs); a NaN result is FAIL.
    assert states == [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.FAIL]
    assert searcher._ot_study.trials[0].values == [0.9, 2.0] and not searcher._ot_study.trials[0].constraints
    assert searcher._ot_study.trials[1].constraints["epochs_missing"] > 0
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


def test_ray_tunes_own_random_search_samples_the_declared_space():
    import random

    from ray.tune.search.sample import Domain

    from search.searchers import variant_generator
    from search.space import Choice, Float, Int, SearchSpace
    from trainables.mnist import train

    space = SearchSpace(
        name="v", trainable=train, searcher="variant", seed=3, max_epochs=4,
        params={
            "learning_rate": Float(1e-4, 1e-2, log=True),
            "final_sparsity": Float(0.0, 0.8, step=0.1),
            "width": Int(16, 256, log=True),
            "depth": Int(1, 3),
            "architecture": Choice(["mlp", "cnn"]),
        },
        objectives={"val_accuracy": "max"}, constants={"data_source": "bundled"},
    )  # fmt: skip
    _, param_space = variant_generator(space)
    # Constants, the seed and the epochs travel as fixed values; parameters as Tune domains.
    assert {k: v for k, v in param_space.items() if not isinstance(v, Domain)} == {"seed": 3, "data_source": "bundled", "epochs": 4}
    rng = random.Random(0)
    for _ in range(200):
        sample = {name: param_space[name].sample(random_state=rng.randint(0, 10**6)) for name in space.params}
        assert 1e-4 <= sample["learning_rate"] <= 1e-2
        assert 16 <= sample["width"] <= 256 and 1 <= sample["depth"] <= 3
        assert round(sample["final_sparsity"] * 10) == pytest.approx(sample["final_sparsity"] * 10)
        train.check_config(sample)


def test_ray_tunes_random_search_refuses_conditional_parameters():
    from search.errors import SpaceError
    from search.space import Choice, SearchSpace
    from trainables.mnist import train

    with pytest.raises(SpaceError, match="cannot search conditional parameters"):
        SearchSpace(
            name="v", trainable=train, searcher="variant", objectives={"val_accuracy": "max"},
            params={"architecture": Choice(["mlp", "cnn"]), "kernel_size": Choice([3, 5], when={"architecture": "cnn"})},
        )  # fmt: skip


@pytest.mark.parametrize("told", ["infeasible", "pruned", "ignored"])
def test_a_resumed_study_tells_optuna_its_history_as_it_was_told_live(told):
    from search.searchers import make_searcher

    space = _space().replace(max_epochs=8)
    stopped = {"s"}
    live = make_searcher(space, stopped.__contains__, stopped_trials=told)
    results = {"f": {"epoch": 8, "val_accuracy": 0.9, "epoch_time_s": 2.0}, "s": {"epoch": 2, "val_accuracy": 0.6, "epoch_time_s": 0.1}}
    configs = {trial_id: live.suggest(trial_id) for trial_id in results}
    for trial_id, result in results.items():
        live.on_trial_complete(trial_id, result)
    resumed = make_searcher(space, stopped.__contains__, stopped_trials=told)
    rows = [
        {"status": "finished" if trial_id == "f" else "stopped", "learning_rate": configs[trial_id]["learning_rate"], **results[trial_id]}
        for trial_id in results
    ]
    resumed.tell_history(rows, space)

    def told_as(searcher):
        return [(t.state, t.values, t.constraints) for t in searcher._ot_study.trials]

    # The same states, values and constraints, whether told live or from the record.
    assert told_as(resumed) == told_as(live)
    state, values, constraints = told_as(live)[1]
    expected = {"infeasible": TrialState.COMPLETE, "pruned": TrialState.PRUNED, "ignored": TrialState.FAIL}[told]
    assert state == expected
    if told == "infeasible":
        # Its rung values, and a violated constraint: it ran 2 of 8 epochs.
        assert values == [0.6, 0.1] and constraints == {"epochs_missing": pytest.approx(0.75)}
    # Whatever the mode, Optuna's front holds only the full-budget trial.
    assert [t.number for t in live._ot_study.best_trials] == [0]


def test_sampler_options_reach_the_sampler_and_optunas_defaults_stay_otherwise():
    from search.searchers import make_searcher

    never = lambda trial_id: False  # noqa: E731
    # Optuna's 10 random draws before TPE models, for one objective or several, unless told.
    assert make_searcher(_space(), never)._sampler._n_startup_trials == 10
    assert make_searcher(_space().replace(objectives={"val_accuracy": "max"}), never)._sampler._n_startup_trials == 10
    assert make_searcher(_space(), never, sampler_options={"n_startup_trials": 3})._sampler._n_startup_trials == 3
