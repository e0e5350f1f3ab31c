import optuna
import pytest
from optuna.trial import TrialState

from search.errors import SpaceError
from search.methods.searchers import TruthfulOptunaSearch
from search.methods.searchers import make_sampler
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

    from search.methods.searchers import variant_generator
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
def test_a_stopped_trial_is_told_as_chosen_and_never_reaches_optunas_front(told):
    from search.methods.searchers import make_searcher

    space = _space().replace(max_epochs=8)
    searcher = make_searcher(space, {"s"}.__contains__, stopped_trials=told)
    results = {"f": {"epoch": 8, "val_accuracy": 0.9, "epoch_time_s": 2.0}, "s": {"epoch": 2, "val_accuracy": 0.6, "epoch_time_s": 0.1}}
    for trial_id, result in results.items():
        searcher.suggest(trial_id)
        searcher.on_trial_complete(trial_id, result)
    stopped = searcher.optuna_study.trials[1]
    assert stopped.state == {"infeasible": TrialState.COMPLETE, "pruned": TrialState.PRUNED, "ignored": TrialState.FAIL}[told]
    if told == "infeasible":
        # Its rung values, and a violated constraint: it ran 2 of 8 epochs.
        assert stopped.values == [0.6, 0.1] and stopped.constraints == {"epochs_missing": pytest.approx(0.75)}
    # Whatever the mode, Optuna's front holds only the full-budget trial.
    assert [t.number for t in searcher.optuna_study.best_trials] == [0]


def test_over_recipes_a_stopped_trial_is_a_complete_observation_and_may_reach_optunas_front():
    from search.methods.searchers import make_searcher

    # A front over recipes with cumulative training time: a trial stopped after 2 epochs ran two
    # real recipes, so by default it is told COMPLETE with the values it reached.
    space = _space().replace(max_epochs=8, objectives={"val_accuracy": "max", "train_time_s": "min"}, front="recipes")
    searcher = make_searcher(space, {"s"}.__contains__)
    results = {"f": {"epoch": 8, "val_accuracy": 0.9, "train_time_s": 16.0}, "s": {"epoch": 2, "val_accuracy": 0.6, "train_time_s": 0.4}}
    for trial_id, result in results.items():
        searcher.suggest(trial_id)
        searcher.on_trial_complete(trial_id, result)
    stopped = searcher.optuna_study.trials[1]
    assert stopped.state == TrialState.COMPLETE and stopped.values == [0.6, 0.4] and not stopped.constraints
    # Faster and less accurate: both are on Optuna's front.
    assert sorted(t.number for t in searcher.optuna_study.best_trials) == [0, 1]


def _interrupted_study(path, space, suggested=6, ended=3):
    """A study in the journal at `path` killed with `suggested - ended` trials running."""
    from search.methods.searchers import journal
    from search.methods.searchers import make_searcher

    live = make_searcher(space, lambda trial_id: False, storage=journal(path), study_name="s")
    configs = [live.suggest(f"t{i}") for i in range(suggested)]
    for i in range(ended):
        live.on_trial_complete(f"t{i}", {"epoch": space.max_epochs, "val_accuracy": 0.5 + i / 10, "epoch_time_s": 1.0})
    return configs


def test_a_resumed_searcher_continues_its_optuna_study_and_never_repeats_a_configuration(tmp_path):
    from search.methods.searchers import journal
    from search.methods.searchers import make_searcher

    space = _space().replace(seed=7)
    before = _interrupted_study(tmp_path / "optuna.journal", space)
    resumed = make_searcher(space, lambda trial_id: False, storage=journal(tmp_path / "optuna.journal"), study_name="s", resume=True)
    # The three trials the kill cut off come back first, as the same Optuna trials...
    again = [resumed.suggest(f"r{i}") for i in range(3)]
    assert again == before[3:]
    assert [resumed.optuna_trial(f"r{i}").number for i in range(3)] == [3, 4, 5]
    # ...then new configurations only, although the sampler has the study's seed: a sampler
    # seeded as before would draw the first study's configurations again.
    new = [resumed.suggest(f"n{i}") for i in range(8)]
    assert not {c["learning_rate"] for c in new} & {c["learning_rate"] for c in before}
    fresh = make_searcher(space, lambda trial_id: False)
    assert fresh.suggest("x") == before[0]
    assert len(resumed.optuna_study.trials) == 6 + 8


@pytest.mark.parametrize(
    "change, message",
    [
        ({"max_epochs": 10}, r"its max_epochs changed \(was 8, now 10\)"),
        ({"params": {"learning_rate": Float(1e-5, 1e-2, log=True)}}, r"its params changed \(learning_rate\)"),
        ({"objectives": {"val_accuracy": "max"}}, r"its objectives changed \(epoch_time_s\)"),
        ({"constants": {"data_source": "bundled"}}, r"its constants changed \(data_source\)"),
    ],
)
def test_resume_refuses_a_space_that_changed_and_names_what_changed(tmp_path, change, message):
    from search.methods.searchers import journal
    from search.methods.searchers import make_searcher

    space = _space().replace(max_epochs=8)
    _interrupted_study(tmp_path / "optuna.journal", space)
    with pytest.raises(SpaceError, match="Cannot resume study 's': " + message):
        make_searcher(space.replace(**change), lambda trial_id: False, storage=journal(tmp_path / "optuna.journal"), study_name="s", resume=True)
    # What may change between launches does not stop a resume: trials, budget, resources.
    make_searcher(space.replace(num_samples=99, max_concurrent=1, time_budget_s=60.0), lambda trial_id: False, storage=journal(tmp_path / "optuna.journal"), study_name="s", resume=True)


def test_resume_without_the_searchers_record_is_refused_and_a_name_is_never_reused(tmp_path):
    from search.methods.searchers import journal
    from search.methods.searchers import make_searcher

    storage = journal(tmp_path / "optuna.journal")
    with pytest.raises(SpaceError, match="the searcher's record of study 'gone' is missing"):
        make_searcher(_space(), lambda trial_id: False, storage=storage, study_name="gone", resume=True)
    make_searcher(_space(), lambda trial_id: False, storage=storage, study_name="taken")
    with pytest.raises(SpaceError, match="already exists"):
        make_searcher(_space(), lambda trial_id: False, storage=storage, study_name="taken")


def test_sampler_options_reach_the_sampler_and_optunas_defaults_stay_otherwise():
    from search.methods.searchers import make_searcher

    never = lambda trial_id: False  # noqa: E731
    # Optuna's 10 random draws before TPE models, for one objective or several, unless told.
    assert make_searcher(_space(), never)._sampler._n_startup_trials == 10
    assert make_searcher(_space().replace(objectives={"val_accuracy": "max"}), never)._sampler._n_startup_trials == 10
    assert make_searcher(_space(), never, sampler_options={"n_startup_trials": 3})._sampler._n_startup_trials == 3


# A study run through the Python API with a scheduler and a sampler passed as objects.
OBJECTS = """
import json, sys

import optuna
from ray.tune.schedulers import ASHAScheduler

from search.space import Float, SearchSpace
from search.study import run_study


def train(config, context):
    for epoch in range(1, config["epochs"] + 1):
        context.report({"epoch": epoch, "score": config["x"] * epoch, "complete": epoch == config["epochs"]})


train.metrics = ("epoch", "score", "complete")
space = SearchSpace(
    name="objects", trainable=train, params={"x": Float(0.0, 1.0)}, objectives={"score": "max"},
    num_samples=8, max_epochs=4, max_concurrent=1, seed=0,
)
scheduler = ASHAScheduler(time_attr="epoch", max_t=4, grace_period=1, reduction_factor=2)
result = run_study(space, results_dir=sys.argv[1], scheduler=scheduler, sampler=optuna.samplers.RandomSampler(seed=5))
print(json.dumps({"stopped_early": sorted(scheduler.stopped_early), "parent": result.parent_run_id}))
"""


@pytest.mark.timeout(300)
def test_a_scheduler_and_a_sampler_passed_as_objects_run_the_study(tmp_path):
    import json
    import subprocess
    import sys

    from mlflow import MlflowClient

    (tmp_path / "objects.py").write_text(OBJECTS)
    done = subprocess.run([sys.executable, str(tmp_path / "objects.py"), str(tmp_path / "results")], capture_output=True, text=True, timeout=280, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    client = MlflowClient(f"sqlite:///{tmp_path / 'results' / 'mlflow.db'}")
    study = client.get_run(outcome["parent"])
    # The study run names the objects' classes as its scheduler and searcher.
    assert study.data.params["scheduler"] == "AsyncHyperBandScheduler" and study.data.params["searcher"] == "RandomSampler"
    trials = client.search_runs([study.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{outcome['parent']}'")
    assert len(trials) == 8
    # The trials the user's scheduler stopped early end KILLED; the others ran every epoch.
    killed = {run.data.tags["ray_trial_id"] for run in trials if run.info.status == "KILLED"}
    assert killed and killed == set(outcome["stopped_early"])
    assert all(run.info.status == "FINISHED" and run.data.metrics["epoch"] == 4 for run in trials if run.data.tags["ray_trial_id"] not in killed)


def test_told_the_best_recipe_a_trial_is_judged_by_its_least_dominated_epoch_not_its_last():
    from search.methods.searchers import make_searcher

    space = _space().replace(max_epochs=4, objectives={"val_accuracy": "max", "train_time_s": "min"}, front="recipes")
    searcher = make_searcher(space, lambda trial_id: False)  # over recipes: told the best by default
    # "a" peaks at epoch 2 and then overfits; "b" reaches 0.8 in 1.8 s at its last epoch, which
    # dominates a's last recipe (0.7 in 4 s) but not its epoch-2 recipe (0.85 in 2 s).
    curves = {
        "a": [(0.6, 1.0), (0.85, 2.0), (0.75, 3.0), (0.7, 4.0)],
        "b": [(0.5, 0.5), (0.6, 1.0), (0.7, 1.5), (0.8, 1.8)],
    }
    for trial_id, curve in curves.items():
        searcher.suggest(trial_id)
        for epoch, (accuracy, seconds) in enumerate(curve, 1):
            result = {"epoch": epoch, "val_accuracy": accuracy, "train_time_s": seconds}
            if epoch < len(curve):
                searcher.on_trial_result(trial_id, result)
        searcher.on_trial_complete(trial_id, result)
    a, b = searcher.optuna_study.trials
    assert a.values == [0.85, 2.0] and a.user_attrs["told_epoch"] == 2
    # Every recipe of "b" is on the study's front; of those, its latest is told.
    assert b.values == [0.8, 1.8] and b.user_attrs["told_epoch"] == 4
    # Told its last recipe (Ray's way), "a" would look dominated by "b".
    last = make_searcher(space, lambda trial_id: False, told_recipe="last")
    last.suggest("a")
    last.on_trial_complete("a", {"epoch": 4, "val_accuracy": 0.7, "train_time_s": 4.0})
    assert last.optuna_study.trials[0].values == [0.7, 4.0]
