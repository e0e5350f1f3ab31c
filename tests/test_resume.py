"""An interrupted study carries on with --resume: nothing measured is lost or measured twice."""

import os
import re
import signal
import subprocess
import sys
import time

import pytest
from mlflow import MlflowClient

# A quick trainable (no TensorFlow) that takes a little while per epoch, so the study can be
# killed while some trials have finished and others are still running.
SPACE = """
import json
import os
import time

from search.space import Float, SearchSpace


def train(config, context):
    # Checkpoints each epoch's report in its checkpoint directory and, like the real trainables,
    # continues from it: the saved epoch is reported again first, then training goes on.
    saved = os.path.join(context.checkpoint_dir, "last_report.json")
    start = 0
    if os.path.exists(saved):
        last = json.load(open(saved))
        start = last["epoch"]
        context.report({**last, "resumed_from_epoch": start})
    for epoch in range(start + 1, config["epochs"] + 1):
        time.sleep(config["seconds_per_epoch"])
        metrics = {"epoch": epoch, "score": config["x"] * epoch}
        with open(saved + ".partial", "w") as partial:  # whole, or not at all
            json.dump(metrics, partial)
        os.replace(saved + ".partial", saved)
        context.report(metrics)
    return {"epoch": config["epochs"], "score": config["x"] * config["epochs"]}


train.metrics = ("epoch", "score", "resumed_from_epoch")

SPACE = SearchSpace(
    name="resumable",
    trainable=train,
    params={"x": Float(0.0, 1.0)},
    objectives={"score": "max"},
    constants={"seconds_per_epoch": 0.7},
    num_samples=8,
    max_epochs=3,
    scheduler="none",
    seed=0,
)
"""


def _left_behind(session_id):
    """Processes still running in the session a launcher was started in (its Ray processes)."""
    import psutil

    left = []
    for process in psutil.process_iter(["pid"]):
        try:
            if os.getsid(process.pid) == session_id and process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                left.append(process.pid)
        except (OSError, psutil.Error):
            continue
    return left


def _trial_runs(client, experiment_id):
    runs = client.search_runs([experiment_id])
    return [r for r in runs if "mlflow.parentRunId" in r.data.tags], [r for r in runs if r.data.tags.get("role") == "study"]


# The first launch, its front phase slowed down so that a kill can land in it: it leaves a
# marker file when the phase begins.
SLOW_FRONT = """
import sys, time, search.record.front
record = search.record.front.record
def slow_record(*args, **kwargs):
    open({marker!r}, "w").close()
    time.sleep(30)
    return record(*args, **kwargs)
search.record.front.record = slow_record
from search.launch import main
sys.exit(main({arguments!r}))
"""


def _killed_when(when, trials, marker):
    """Whether the study is where `when` says the kill should land."""
    finished = sum(r.info.status == "FINISHED" for r in trials)
    if when == "before any trial ended":
        return len(trials) >= 1 and finished == 0
    if when == "mid-study":
        return finished >= 2
    return marker.exists()  # "in the front phase"


@pytest.mark.timeout(600)
@pytest.mark.parametrize("when", ["before any trial ended", "mid-study", "in the front phase"])
def test_a_killed_study_resumes_without_losing_or_repeating_trials(tmp_path, when):
    (tmp_path / "resumable.py").write_text(SPACE)
    arguments = [str(tmp_path / "resumable.py"), "--results-dir", str(tmp_path / "results")]
    command = [sys.executable, "-m", "search.launch", *arguments]
    marker = tmp_path / "front-phase-began"
    launch = [sys.executable, "-c", SLOW_FRONT.format(marker=str(marker), arguments=arguments)] if when == "in the front phase" else command
    first = subprocess.Popen(launch, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    client = MlflowClient(f"sqlite:///{tmp_path / 'results' / 'mlflow.db'}")
    deadline = time.monotonic() + 300
    ready = False
    while time.monotonic() < deadline and first.poll() is None and not ready:
        time.sleep(0.2)
        experiment = (tmp_path / "results" / "mlflow.db").exists() and client.get_experiment_by_name("resumable")
        ready = bool(experiment) and _killed_when(when, _trial_runs(client, experiment.experiment_id)[0], marker)
    # Kill the launcher without any warning (below). The local Ray it started goes down with
    # it, but for its agents, which would linger for a minute.
    if not ready:
        os.kill(first.pid, signal.SIGKILL)
    assert ready, f"the study ended or stalled before it could be killed {when}"
    trials, studies = _trial_runs(client, experiment.experiment_id)
    finished_before = {r.info.run_id: r for r in trials if r.info.status == "FINISHED"}
    cut_off = {r.info.run_id for r in trials if r.info.status == "RUNNING"}
    assert studies[0].info.status == "RUNNING"  # what a kill leaves; the resume must end it
    parent_id = studies[0].info.run_id
    if when == "in the front phase":
        # The study is held by the launcher that runs it: a second one is refused before it
        # starts anything, naming the holder (the first is asleep in its front phase).
        assert first.poll() is None
        refused = subprocess.run([*command, "--resume"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert refused.returncode == 2 and f"is being run by another launcher (process {first.pid} on" in refused.stderr, refused.stderr
        assert not re.search("Ended .* Ray agent processes", refused.stdout)  # it started nothing
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    journal_path = tmp_path / "results" / "optuna.journal"
    if when == "mid-study":
        # The searcher's journal lost its tail in the middle of telling a finished trial (a
        # crash or a full disk mid-write; later entries, trials suggested since among them,
        # never written), while MLflow's record has it all.
        lines = journal_path.read_bytes().splitlines(keepends=True)
        told = max(i for i, line in enumerate(lines) if b'"op_code":6' in line and b'"state":1' in line)
        journal_path.write_bytes(b"".join(lines[:told]) + lines[told][: len(lines[told]) // 2])

    resumed = subprocess.run([*command, "--resume"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    if when == "mid-study":
        # The torn entry was cut off, kept aside and said; the searcher's record was settled
        # from MLflow's (the checks below: nothing run twice, every trial once in Optuna).
        assert "ended in a torn entry" in resumed.stdout and len(list(journal_path.parent.glob("optuna.journal.torn-*"))) == 1
    # The resumed launch ended the agents the killed one left behind.
    assert re.search(r"Ended [12] Ray agent processes a killed launch left behind.", resumed.stdout)
    assert _left_behind(first.pid) == []

    trials, studies = _trial_runs(client, experiment.experiment_id)
    # The same study run carries on and finishes; it has exactly the trials asked for, one run each.
    assert [s.info.run_id for s in studies] == [parent_id] and studies[0].info.status == "FINISHED"
    assert len(trials) == 8 and len({r.info.run_name for r in trials}) == 8, [(r.info.run_name, r.info.status, r.data.tags.get("optuna_trial"), r.data.tags.get("resumed"), r.data.params.get("x")) for r in trials]
    assert all(r.info.status == "FINISHED" for r in trials)
    # No configuration ran twice: the resumed searcher continued its Optuna study, which holds
    # the 8 trials, each suggested once, each pointing at its run.
    assert len({r.data.params["x"] for r in trials}) == 8
    import optuna

    from search.methods.searchers import journal

    (record,) = optuna.get_all_study_summaries(journal(tmp_path / "results" / "optuna.journal"))
    optuna_trials = optuna.load_study(study_name=record.study_name, storage=journal(tmp_path / "results" / "optuna.journal")).trials
    assert len(optuna_trials) == 8 and all(t.state == optuna.trial.TrialState.COMPLETE for t in optuna_trials)
    assert sorted(t.user_attrs["mlflow_run_id"] for t in optuna_trials) == sorted(r.info.run_id for r in trials)
    by_id = {r.info.run_id: r for r in trials}
    for run_id, before in finished_before.items():
        # Trials that had finished were not run again: same Ray trial, one value per epoch.
        after = by_id[run_id]
        assert after.data.tags["ray_trial_id"] == before.data.tags["ray_trial_id"]
        assert len(client.get_metric_history(run_id, "score")) == 3
        assert "resumed" not in after.data.tags
    for run_id in cut_off:
        # Trials cut off by the kill ran again in their own run, which says whether it continued
        # from the trial's checkpoint; every epoch is recorded exactly once, including one that
        # was saved but whose report had not reached MLflow when the kill came.
        assert by_id[run_id].data.tags["resumed"].startswith(("continued from its checkpoint", "rerun from scratch"))
        steps = [m.step for m in client.get_metric_history(run_id, "score")]
        assert sorted(steps) == [1, 2, 3]
    # Checkpoints are gone once the study has finished.
    assert not any((tmp_path / "results" / "checkpoints").glob("*/*"))
    if when == "mid-study":  # (once: a launch costs CI time)
        # With nothing left to resume, --resume says so and exits 2.
        again = subprocess.run([*command, "--resume"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert again.returncode == 2 and "Nothing to resume" in again.stderr


@pytest.mark.timeout(600)
@pytest.mark.parametrize(
    "signal_number, whole_group",
    [
        (signal.SIGINT, True),  # Ctrl-C in a terminal signals the whole foreground process group
        (signal.SIGTERM, False),  # a cluster scheduler or `docker stop` signals the launcher alone
    ],
    ids=["ctrl-c", "sigterm"],
)
def test_ctrl_c_or_sigterm_stops_cleanly_and_says_how_to_resume(tmp_path, signal_number, whole_group):
    (tmp_path / "resumable.py").write_text(SPACE)
    command = [sys.executable, "-m", "search.launch", str(tmp_path / "resumable.py"), "--results-dir", str(tmp_path / "results")]
    first = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    client = MlflowClient(f"sqlite:///{tmp_path / 'results' / 'mlflow.db'}")
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        time.sleep(0.5)
        experiment = (tmp_path / "results" / "mlflow.db").exists() and client.get_experiment_by_name("resumable")
        if experiment and sum(r.info.status == "FINISHED" for r in _trial_runs(client, experiment.experiment_id)[0]) >= 1:
            break
    if whole_group:
        os.killpg(first.pid, signal_number)
    else:
        os.kill(first.pid, signal_number)
    out, err = first.communicate(timeout=120)
    # Exit code 128 + the signal (130, 143), the trials so far, and the command that resumes.
    assert first.returncode == 128 + signal_number, out + err
    # Its Ray went down with it.
    time.sleep(2)
    assert _left_behind(first.pid) == []
    assert "interrupted" in out and "Resume it with:  python -m search.launch" in out and "--resume" in out
    trials, studies = _trial_runs(client, experiment.experiment_id)
    # Nothing is left RUNNING: cut-off trials and the study are KILLED; finished ones stay.
    assert studies[0].info.status == "KILLED"
    assert {r.info.status for r in trials} <= {"FINISHED", "KILLED"}
    assert all(r.data.tags.get("interrupted") == "true" for r in trials if r.info.status == "KILLED")
    if signal_number == signal.SIGTERM:
        return  # the record is the same as after Ctrl-C, whose resume follows
    resumed = subprocess.run([*command, "--resume"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    trials, _ = _trial_runs(client, experiment.experiment_id)
    assert len(trials) == 8 and all(r.info.status == "FINISHED" for r in trials)
    assert len({r.data.params["x"] for r in trials}) == 8  # no configuration ran twice


@pytest.mark.timeout(600)
def test_a_study_that_fails_after_its_trials_ends_every_run_and_resume_finishes_it(tmp_path):
    (tmp_path / "resumable.py").write_text(SPACE.replace("num_samples=8", "num_samples=3").replace("0.7", "0.05"))
    arguments = [str(tmp_path / "resumable.py"), "--results-dir", str(tmp_path / "results")]
    # The model registry fails in the front phase, after every trial has ended.
    failing = (
        "import sys, search.record.front\n"
        "def record(*args, **kwargs): raise RuntimeError('model registry unreachable')\n"
        "search.record.front.record = record\n"
        "from search.launch import main\n"
        f"sys.exit(main({arguments!r}))\n"
    )
    first = subprocess.run([sys.executable, "-c", failing], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert first.returncode != 0 and "model registry unreachable" in first.stderr
    client = MlflowClient(f"sqlite:///{tmp_path / 'results' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("resumable")
    trials, studies = _trial_runs(client, experiment.experiment_id)
    # The study run says it failed and why; no run is left RUNNING; the trials' results stay.
    assert studies[0].info.status == "FAILED" and "model registry unreachable" in studies[0].data.tags["error"]
    assert len(trials) == 3 and all(r.info.status == "FINISHED" for r in trials)
    # A resume with an edited space is refused, with what changed, before anything is touched.
    edited = tmp_path / "edited" / "resumable.py"
    edited.parent.mkdir()
    edited.write_text((tmp_path / "resumable.py").read_text().replace("max_epochs=3", "max_epochs=4"))
    refused = subprocess.run(
        [sys.executable, "-m", "search.launch", str(edited), *arguments[1:], "--resume"], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert refused.returncode == 2 and "its max_epochs changed (was 3, now 4)" in refused.stderr
    assert _trial_runs(client, experiment.experiment_id)[1][0].info.status == "FAILED"
    # Resuming runs no trial again and finishes the study.
    resumed = subprocess.run([sys.executable, "-m", "search.launch", *arguments, "--resume"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    trials, studies = _trial_runs(client, experiment.experiment_id)
    assert [s.info.status for s in studies] == ["FINISHED"] and len(trials) == 3


def _claim(args):
    from search.compute.trial import claim_checkpoint_dir

    root, session, trial_id = args
    return claim_checkpoint_dir(root, {"x": 0.5}, session, trial_id).name


def test_checkpoint_directories_are_claimed_once_even_when_trials_race(tmp_path):
    from concurrent.futures import ProcessPoolExecutor

    from search.compute.trial import claim_checkpoint_dir

    # An earlier launch left a checkpoint of this configuration behind.
    earlier = claim_checkpoint_dir(tmp_path, {"x": 0.5}, "earlier", "t0")
    with ProcessPoolExecutor(4) as pool:
        claimed = list(pool.map(_claim, [(tmp_path, "now", f"t{i}") for i in range(8)]))
    # Eight trials of this launch with the same configuration, claiming at once: exactly one
    # takes over the earlier launch's directory, the others get directories of their own.
    assert sorted(claimed) == sorted({*claimed}) and earlier.name in claimed
    # A trial claiming again (a retry) gets its own directory back.
    assert _claim((tmp_path, "now", "t3")) == claimed[3]


def test_a_run_killed_before_its_configuration_was_written_gets_it_when_its_trial_runs_again(tmp_path):
    """A kill can land between creating a trial's run and writing its parameters: the resumed
    study gives the run back to its Optuna trial and writes the configuration it lacks."""
    from types import SimpleNamespace

    import optuna
    import pandas as pd

    from search.record.tracking import StudyRuns, TrialRuns

    runs = StudyRuns(f"sqlite:///{tmp_path / 'mlflow.db'}", "killed", tmp_path / "artifacts")
    runs.start_parent("study", {}, {"role": "study"})
    interrupted = optuna.create_study().ask({"x": optuna.distributions.FloatDistribution(0.0, 1.0)})
    # What the kill left: a run tagged with its Optuna trial, without parameters.
    bare = runs.client.create_run(
        runs.experiment_id, run_name="trial-001", tags={"mlflow.parentRunId": runs.parent_run_id, "optuna_trial": "0"}
    ).info.run_id
    table = pd.DataFrame([{"run_id": bare, "trial": "trial-001", "status": "running", "optuna_trial": 0, "trial_id": "old"}])
    trial_runs = TrialRuns(runs, stopped_early=lambda trial_id: False, optuna_trial=lambda trial_id: interrupted)
    trial_runs.carry_on(table, [interrupted])

    again = SimpleNamespace(trial_id="new", config={"x": interrupted.params["x"], "epochs": 3})
    trial_runs.on_trial_start(0, [], again)

    run = runs.client.get_run(bare)
    assert trial_runs.run_ids["new"] == bare and run.info.status == "RUNNING"
    assert run.data.params == {"x": str(interrupted.params["x"]), "epochs": "3"}
    assert interrupted.user_attrs["mlflow_run_id"] == bare
    # Writing it again when the run already had its configuration changes nothing.
    trial_runs.run_ids.clear()
    trial_runs.rerun[0] = (bare, 1)
    trial_runs.on_trial_start(0, [], again)
    assert runs.client.get_run(bare).data.params == run.data.params


# A study with a real front (score against seconds, best at x >= 0.3) whose trials save a model.
EXTENDED_SPACE = """
import os

from search.space import Float, SearchSpace


def train(config, context):
    os.makedirs(context.model_dir, exist_ok=True)
    with open(os.path.join(context.model_dir, "model.txt"), "w") as model:
        model.write(str(config["x"]))
    report = {"epoch": 1, "score": config["x"], "seconds": (config["x"] - 0.3) ** 2, "complete": True}
    context.report(report)
    return report


train.metrics = ("epoch", "score", "seconds", "complete")

SPACE = SearchSpace(
    name="extended",
    trainable=train,
    params={"x": Float(0.0, 1.0)},
    objectives={"score": "max", "seconds": "min"},
    num_samples=4,
    max_epochs=1,
    scheduler="none",
    seed=0,
)
"""


@pytest.mark.timeout(600)
def test_a_finished_study_is_carried_on_with_more_trials_twice(tmp_path):
    import optuna
    import pandas as pd

    from search.methods.searchers import journal

    (tmp_path / "extended.py").write_text(EXTENDED_SPACE)
    command = [sys.executable, "-m", "search.launch", str(tmp_path / "extended.py"), "--results-dir", str(tmp_path / "results")]
    client = MlflowClient(f"sqlite:///{tmp_path / 'results' / 'mlflow.db'}")
    assert subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300).returncode == 0
    # With no more trials asked for, there is nothing to carry on, and it says how to ask.
    same = subprocess.run([*command, "--resume"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert same.returncode == 2 and "finished with 4 trials. Ask for more (--resume --trials 6)" in same.stderr
    experiment = client.get_experiment_by_name("extended").experiment_id
    for total in (6, 8):
        more = subprocess.Popen([*command, "--resume", "--trials", str(total)], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # While it runs again, the study run says so.
        seen_running, deadline = False, time.monotonic() + 300
        while more.poll() is None and time.monotonic() < deadline and not seen_running:
            (study,) = _trial_runs(client, experiment)[1]
            seen_running = study.info.status == "RUNNING"
            time.sleep(0.1)
        out, err = more.communicate(timeout=300)
        assert more.returncode == 0 and seen_running, out[-2000:] + err[-2000:]
        trials, studies = _trial_runs(client, experiment)
        # The same study run, FINISHED again, counting every trial; no configuration twice.
        assert len(studies) == 1 and studies[0].info.status == "FINISHED"
        assert studies[0].data.metrics["trials_total"] == total and f"ended in" in out and f": {total} trials" in out
        assert len(trials) == total and len({r.data.params["x"] for r in trials}) == total
        assert all(r.info.status == "FINISHED" for r in trials)
        # The searcher continued its own record: one Optuna trial per trial, each told once.
        (record,) = optuna.get_all_study_summaries(journal(tmp_path / "results" / "optuna.journal"))
        optuna_trials = optuna.load_study(study_name=record.study_name, storage=journal(tmp_path / "results" / "optuna.journal")).trials
        assert len(optuna_trials) == total and all(t.state == optuna.trial.TrialState.COMPLETE for t in optuna_trials)
        # The front is over every trial, and the registry's aliases follow it: each names a
        # model of a trial on it (earlier ones keep the versions registered the first time).
        front = pd.read_csv(client.download_artifacts(studies[0].info.run_id, "pareto.csv"))
        on_front = set(front["trial"])
        assert on_front == {r.info.run_name for r in trials if float(r.data.params["x"]) >= 0.3}
        model = client.get_registered_model("extended")
        assert {"knee", "best-score", "best-seconds"} <= set(model.aliases)
        for alias, version in model.aliases.items():
            assert client.get_model_version("extended", version).tags["trial"] in on_front, alias
        best = front.loc[front["score"].idxmax(), "trial"]
        assert client.get_model_version("extended", model.aliases["best-score"]).tags["trial"] == best
        # What the extension gained: the study beside itself as it stood before (its front then).
        compared = pd.read_csv(client.download_artifacts(studies[0].info.run_id, "studies.csv"))
        name = studies[0].info.run_name
        assert list(compared["study"]) == [name, f"{name} before ({total - 2} trials)"] and list(compared["trials"]) == [total, total - 2]
        assert compared["hypervolume"][0] >= compared["hypervolume"][1] > 0
