"""Warm start: what an earlier study's trials tell a new study's searcher, and what is skipped."""

import math

import optuna
import pytest

from search.methods import warm_start
from search.methods.searchers import EPOCHS_MISSING
from search.methods.searchers import make_searcher
from search.methods.warm_start import EarlierStudy
from search.methods.warm_start import EarlierTrial
from search.space import Choice
from search.space import Float
from search.space import Int
from search.space import SearchSpace


def train(config, context):
    return {}


train.metrics = ("epoch", "score", "seconds")

SPACE = SearchSpace(
    name="new",
    trainable=train,
    params={
        "rate": Float(0.01, 0.1, log=True),
        "units": Int(8, 64, step=8),
        "kind": Choice(["a", "b"]),
        "share": Float(0.0, 0.5, step=0.1, when={"kind": "b"}),
    },
    objectives={"score": "max", "seconds": "min"},
    constants={"depth": 2},
    max_epochs=4,
    scheduler="none",
    seed=3,
)


def _config(**changes):
    # As MLflow gives a trial's configuration back: every value as text.
    config = {"rate": "0.05", "units": "16", "kind": "a", "depth": "2", "epochs": "4", "seed": "0"}
    config.update({key: str(value) for key, value in changes.items() if value is not None})
    return {key: value for key, value in config.items() if key not in [k for k, v in changes.items() if v is None]}


@pytest.mark.parametrize(
    "changes, kind, detail",
    [
        ({"rate": 0.2}, "outside the space", "rate=0.2 is outside [0.01, 0.1]"),
        ({"units": 12}, "outside the space", "units=12 is off the grid of step 8 from 8"),
        ({"kind": "c"}, "outside the space", "kind='c' is not among ['a', 'b']"),
        # Trained for other epochs: a schedule over the epochs makes every epoch another recipe.
        ({"epochs": 8}, "other settings", "epochs=8 (this study sets 4)"),
        ({"depth": 3}, "other settings", "depth=3 (this study sets 2)"),
        ({"depth": None}, "other settings", "depth unrecorded (this study sets 2)"),
        ({"width": 5}, "other settings", "width=5 (this study leaves it to the trainable)"),
        ({"units": None}, "other settings", "units unset"),
        # A conditional parameter set where its condition does not hold here.
        ({"share": 0.2}, "other settings", "share=0.2 where this study leaves it unset"),
    ],
)
def test_a_configuration_that_means_something_else_here_does_not_fit(changes, kind, detail):
    with pytest.raises(warm_start.Misfit) as misfit:
        warm_start.fit(_config(**changes), SPACE)
    # The reason names the kind and the value that does not fit.
    assert (misfit.value.kind, misfit.value.detail) == (kind, detail)


def test_a_fitting_configuration_comes_back_typed_whatever_its_seed():
    # Another seed is another draw of the same measurement; numbers come back as the domain holds them.
    assert warm_start.fit(_config(seed=7), SPACE) == {"rate": 0.05, "units": 16, "kind": "a"}
    assert warm_start.fit(_config(kind="b", share="0.2", seed=None), SPACE) == {"rate": 0.05, "units": 16, "kind": "b", "share": 0.2}
    # Numbers pandas made of the text fit too (an int column read as floats).
    assert warm_start.fit({**_config(), "units": 16.0, "depth": 2.0, "epochs": 4.0}, SPACE)["units"] == 16


def _trial(name, status="finished", score=0.9, seconds=2.0, epoch=4, front=False, knee=False, **changes):
    metrics = {"score": score, "seconds": seconds, "epoch": epoch}
    return EarlierTrial(name, status, _config(**changes), {k: v for k, v in metrics.items() if v is not None}, front, knee)


EARLIER = EarlierStudy(
    "old/old-1",
    f"{__name__}.train",
    (
        _trial("trial-000", front=True),
        _trial("trial-001", status="stopped", score=0.5, seconds=0.5, epoch=1, units=32),
        _trial("trial-002", status="failed", units=40),
        _trial("trial-003", status="interrupted", units=48),
        _trial("trial-004", rate=0.5),
        _trial("trial-005", seconds=None, units=56),
        _trial("trial-006", score=math.nan, units=64),
        _trial("trial-007", front=True, knee=True, units=24, kind="b", share=0.3),
    ),
)


@pytest.mark.parametrize("front, stopped_as", [("trials", "infeasible"), ("recipes", "complete")])
def test_earlier_trials_are_told_as_this_study_tells_its_own_and_the_rest_is_counted(front, stopped_as):
    space = SPACE.replace(front=front)
    searcher = make_searcher(space, lambda trial_id: False)
    warm = warm_start.tell(searcher, space, [EARLIER], front_first=True)
    trials = searcher.optuna_study.get_trials(states=(optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED))
    # The two that finished and the one stopped early are told; nothing else is told.
    assert [t.user_attrs[warm_start.WARM_START_ATTR] for t in trials] == ["old/old-1/trial-000", "old/old-1/trial-001", "old/old-1/trial-007"]
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert trials[0].values == [0.9, 2.0] and trials[1].params == {"rate": 0.05, "units": 32, "kind": "a"}
    # A stopped trial is what this study would make of its own: infeasible over trials (3 of 4
    # epochs missing), a recipe like any other over recipes.
    constraint = trials[1].system_attrs.get(f"constraints:{EPOCHS_MISSING}")
    assert constraint == (0.75 if stopped_as == "infeasible" else None)
    assert [row["told_as"] for row in warm.rows] == ["complete", stopped_as, "", "", "", "", "", "complete"]
    # Each skipped trial says why.
    assert [(row["skipped"], row["detail"]) for row in warm.rows if row["skipped"]] == [
        ("failed", ""),
        ("did not end", "interrupted"),
        ("outside the space", "rate=0.5 is outside [0.01, 0.1]"),
        ("objective missing", "seconds unmeasured"),
        ("objective missing", "score = nan"),
    ]
    assert (warm.told, warm.skipped) == (3, 5)
    assert "3 earlier trials told to the searcher" in warm.summary() and "5 skipped: 1 outside the space" in warm.summary()
    # The earlier front, knee first, runs first: the searcher's first suggestions.
    assert warm.first == [{"rate": 0.05, "units": 24, "kind": "b", "share": 0.3}, {"rate": 0.05, "units": 16, "kind": "a"}]
    suggested = [searcher.suggest(trial_id) for trial_id in ("a", "b")]
    assert [{name: config[name] for name in first} for config, first in zip(suggested, warm.first)] == warm.first


def test_a_study_of_another_trainable_teaches_nothing():
    searcher = make_searcher(SPACE, lambda trial_id: False)
    other = EarlierStudy("old/other", "trainables.mnist.train", EARLIER.trials)
    warm = warm_start.tell(searcher, SPACE, [other])
    # Its trials are all skipped, and say so; the searcher starts cold.
    assert warm.told == 0 and {row["skipped"] for row in warm.rows} == {"other trainable"}
    assert searcher.optuna_study.get_trials() == []


def test_the_searcher_explores_the_new_space_first_then_suggests_from_everything_it_was_told():
    space = SPACE.replace(params={"rate": Float(0.0, 1.0)}, constants={})

    def outcome(rate):
        return {"score": -abs(rate - 0.8), "seconds": abs(rate - 0.8), "epoch": 4}

    told = [EarlierTrial(f"trial-{i:03d}", "finished", {"rate": str(i / 20), "epochs": "4"}, outcome(i / 20)) for i in range(20)]
    cold, warm = (make_searcher(space, lambda trial_id: False) for _ in range(2))
    warm_start.tell(warm, space, [EarlierStudy("old/old-1", None, tuple(told))])
    # TPE's random start-up still draws in the new space, as a cold start's would: told trials
    # cover only where the spaces overlap.
    first = [warm.suggest(str(k))["rate"] for k in range(10)]
    assert first == [cold.suggest(str(k))["rate"] for k in range(10)]
    for k, rate in enumerate(first):
        warm.on_trial_complete(str(k), result=outcome(rate))
    # Then its model learns from both: its suggestions are close to the best told ones.
    suggested = [warm.suggest(str(k))["rate"] for k in range(10, 14)]
    assert all(abs(rate - 0.8) < 0.25 for rate in suggested), suggested


def test_a_warm_started_study_resumed_keeps_its_own_start_up(tmp_path):
    from search.methods.searchers import journal

    storage = journal(tmp_path / "optuna.journal")
    first = make_searcher(SPACE, lambda trial_id: False, storage=storage, study_name="new-1")
    warm_start.tell(first, SPACE, [EARLIER])
    resumed = make_searcher(SPACE, lambda trial_id: False, storage=storage, study_name="new-1", resume=True)
    warm_start.keep_own_start_up(resumed, SPACE)
    # The sampler made anew on resume still adds the 3 told trials to TPE's 10 random ones
    # (Optuna keeps the start-up count in the sampler, which a resume rebuilds).
    assert resumed.optuna_study.sampler._n_startup_trials == 13 and resumed.seed != first.seed


# Two spaces of one pure-Python trainable: the earlier searched x in [0, 0.6] with y fixed at
# 0.5; the new one searches x in [0.35, 1] and y too. Score against seconds: every x >= 0.3 is
# on the front.
SPACE_FILE = """
from search.space import Float, SearchSpace


def train(config, context):
    report = {{"epoch": 1, "score": config["x"] + config["y"], "seconds": (config["x"] - 0.3) ** 2, "complete": True}}
    context.report(report)
    return report


train.metrics = ("epoch", "score", "seconds", "complete")

SPACE = SearchSpace(
    name="{name}",
    trainable=train,
    params={params},
    constants={constants},
    objectives={{"score": "max", "seconds": "min"}},
    num_samples=4,
    max_epochs=1,
    scheduler="none",
    seed={seed},
)
"""


@pytest.mark.timeout(300)
def test_a_new_study_on_a_changed_space_starts_from_an_earlier_ones_trials(tmp_path):
    import subprocess
    import sys

    import pandas as pd
    from mlflow import MlflowClient

    from search.methods.searchers import journal

    (tmp_path / "old.py").write_text(SPACE_FILE.format(name="old", params='{"x": Float(0.0, 0.6)}', constants='{"y": 0.5}', seed=0))
    (tmp_path / "new.py").write_text(SPACE_FILE.format(name="new", params='{"x": Float(0.35, 1.0), "y": Float(0.0, 1.0)}', constants="{}", seed=1))
    results = tmp_path / "results"

    def launch(space, *options):
        command = [sys.executable, "-m", "search.launch", str(tmp_path / space), "--results-dir", str(results), "--no-remeasure", *options]
        return subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=240)

    assert launch("old.py").returncode == 0
    client = MlflowClient(f"sqlite:///{results / 'mlflow.db'}")
    (old_study,) = client.search_runs([client.get_experiment_by_name("old").experiment_id], "tags.role = 'study'")
    old = client.search_runs([old_study.info.experiment_id], f"tags.mlflow.parentRunId = '{old_study.info.run_id}'")
    fitting = sorted(float(r.data.params["x"]) for r in old if float(r.data.params["x"]) >= 0.35)
    assert 0 < len(fitting) < 4  # seed 0 draws trials on both sides of 0.35

    # A source that does not exist, or a warm start on a resume: one line, exit 2.
    missing = launch("new.py", "--warm-start", "nope")
    assert missing.returncode == 2 and "Cannot warm-start from 'nope': no experiment 'nope'" in missing.stderr
    resumed = launch("new.py", "--warm-start", "old", "--resume")
    assert resumed.returncode == 2 and "--warm-start starts a new study" in resumed.stderr

    done = launch("new.py", "--warm-start", "old", "--warm-start-front")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    # The terminal says what the study started from, what was told and what was skipped.
    name = f"old/{old_study.info.run_name}"
    assert f"Warm start from {name}: {len(fitting)} earlier trials told to the searcher ({len(fitting)} complete); {4 - len(fitting)} skipped: {4 - len(fitting)} outside the space (e.g. x=" in " ".join(done.stdout.split())
    (study,) = client.search_runs([client.get_experiment_by_name("new").experiment_id], "tags.role = 'study'")
    # So does the study run: tags, and a table of every earlier trial.
    tags = study.data.tags
    assert (tags["warm_start"], tags["warm_start_told"], tags["warm_start_skipped"], tags["warm_start_first"]) == (name, str(len(fitting)), str(4 - len(fitting)), str(len(fitting)))
    table = pd.read_csv(client.download_artifacts(study.info.run_id, "warm_start.csv"))
    assert len(table) == 4 and set(table.loc[table["told_as"].notna(), "trial"]) == {r.info.run_name for r in old if float(r.data.params["x"]) >= 0.35}
    # The searcher's record holds the told trials, marked, before the study's own 4.
    storage = journal(results / "optuna.journal")
    optuna_trials = optuna.load_study(study_name=study.info.run_name, storage=storage).trials
    told = [t for t in optuna_trials if warm_start.WARM_START_ATTR in t.user_attrs]
    assert len(told) == len(fitting) and len(optuna_trials) == len(fitting) + 4
    assert sorted(t.params["x"] for t in told) == fitting and {t.params["y"] for t in told} == {0.5}
    # The earlier front's configurations ran first, as trials of the new study.
    new = client.search_runs([study.info.experiment_id], f"tags.mlflow.parentRunId = '{study.info.run_id}'")
    assert len(new) == 4
    ran = {(float(r.data.params["x"]), float(r.data.params["y"])) for r in new}
    assert {(x, 0.5) for x in fitting} <= ran
    # Its run compares it with the study it started from: fronts on one set of axes, a row each.
    studies = pd.read_csv(client.download_artifacts(study.info.run_id, "studies.csv"))
    assert list(studies["study"]) == [study.info.run_name, old_study.info.run_name]
    assert list(studies["trials"]) == [4, 4] and (studies["hypervolume"] > 0).all()
    assert "studies.png" in {a.path for a in client.list_artifacts(study.info.run_id)}
    # The results API compares any studies of the store the same way.
    from search.record.compare import compare_studies

    comparison = compare_studies("new", "old", results_dir=results)
    pd.testing.assert_frame_equal(comparison.table, studies, check_dtype=False)
    assert set(comparison.fronts["study"]) == set(studies["study"]) and comparison.plot(tmp_path / "studies.png").stat().st_size > 0


def test_the_studies_compared_are_this_one_first_then_the_newest_up_to_a_limit(tmp_path):
    import time

    from mlflow import MlflowClient

    from search.record.results import studies_of

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment = client.create_experiment("e")
    ids = []
    for k in range(3):
        run = client.create_run(experiment, run_name=f"e-{k}", tags={"role": "study"}, start_time=int(time.time() * 1000) + k)
        client.log_param(run.info.run_id, "objectives", "{'score': 'max'}")
        ids.append(run.info.run_id)
    # Newest first; the study named `first` leads even when it is the oldest; `limit` cuts the rest.
    assert [s.name for s in studies_of(client, ["e"], uri)] == ["e-2", "e-1", "e-0"]
    assert [s.name for s in studies_of(client, ["e", "e/e-1"], uri, first=ids[0], limit=2)] == ["e-0", "e-2"]
    with pytest.raises(ValueError, match="Cannot compare 'nope': no experiment 'nope' in the MLflow store; experiments are"):
        studies_of(client, ["nope"], uri)
