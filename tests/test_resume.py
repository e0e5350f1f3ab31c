"""An interrupted study carries on with --resume: nothing measured is lost or measured twice."""

import os
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


def train(config, report=None, should_stop=None):
    # Checkpoints each epoch's report in its checkpoint directory and, like the real trainables,
    # continues from it: the saved epoch is reported again first, then training goes on.
    saved = os.path.join(config["checkpoint_dir"], "last_report.json")
    start = 0
    if os.path.exists(saved):
        last = json.load(open(saved))
        start = last["epoch"]
        report({**last, "resumed_from_epoch": start})
    for epoch in range(start + 1, config["epochs"] + 1):
        time.sleep(config["seconds_per_epoch"])
        metrics = {"epoch": epoch, "score": config["x"] * epoch}
        json.dump(metrics, open(saved, "w"))
        report(metrics)
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


def _trial_runs(client, experiment_id):
    runs = client.search_runs([experiment_id])
    return [r for r in runs if "mlflow.parentRunId" in r.data.tags], [r for r in runs if r.data.tags.get("role") == "study"]


@pytest.mark.timeout(600)
def test_a_killed_study_resumes_without_losing_or_repeating_trials(tmp_path):
    (tmp_path / "resumable.py").write_text(SPACE)
    command = [sys.executable, "-m", "search.launch", str(tmp_path / "resumable.py"), "--results-dir", str(tmp_path / "results")]
    first = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    client = MlflowClient(f"sqlite:///{tmp_path / 'results' / 'mlflow.db'}")
    deadline = time.monotonic() + 300
    finished_before = []
    while time.monotonic() < deadline and first.poll() is None:
        time.sleep(0.5)
        experiment = (tmp_path / "results" / "mlflow.db").exists() and client.get_experiment_by_name("resumable")
        if experiment:
            trials, _ = _trial_runs(client, experiment.experiment_id)
            finished_before = [r for r in trials if r.info.status == "FINISHED"]
            if len(finished_before) >= 2:
                break
    # Kill the whole study (driver and the Ray processes it started) without any warning.
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    assert len(finished_before) >= 2, "the study ended or stalled before it could be killed"
    trials, studies = _trial_runs(client, experiment.experiment_id)
    finished_before = {r.info.run_id: r for r in trials if r.info.status == "FINISHED"}
    cut_off = {r.info.run_id for r in trials if r.info.status == "RUNNING"}
    parent_id = studies[0].info.run_id

    resumed = subprocess.run([*command, "--resume"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr

    trials, studies = _trial_runs(client, experiment.experiment_id)
    # The same study run carries on and finishes; it has exactly the trials asked for, one run each.
    assert [s.info.run_id for s in studies] == [parent_id] and studies[0].info.status == "FINISHED"
    assert len(trials) == 8 and len({r.info.run_name for r in trials}) == 8
    assert all(r.info.status == "FINISHED" for r in trials)
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
    # With nothing left to resume, --resume says so and exits 2.
    again = subprocess.run([*command, "--resume"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert again.returncode == 2 and "Nothing to resume" in again.stderr


@pytest.mark.timeout(600)
def test_ctrl_c_stops_cleanly_and_says_how_to_resume(tmp_path):
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
    # Ctrl-C in a terminal signals the whole foreground process group.
    os.killpg(first.pid, signal.SIGINT)
    out, err = first.communicate(timeout=120)
    # Exit code 130, the trials so far, and the exact command that resumes.
    assert first.returncode == 130, out + err
    assert "interrupted" in out and "Resume it with:  python -m search.launch" in out and "--resume" in out
    trials, studies = _trial_runs(client, experiment.experiment_id)
    # Nothing is left RUNNING: cut-off trials and the study are KILLED; finished ones stay.
    assert studies[0].info.status == "KILLED"
    assert {r.info.status for r in trials} <= {"FINISHED", "KILLED"}
    assert all(r.data.tags.get("interrupted") == "true" for r in trials if r.info.status == "KILLED")
    resumed = subprocess.run([*command, "--resume"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    trials, _ = _trial_runs(client, experiment.experiment_id)
    assert len(trials) == 8 and all(r.info.status == "FINISHED" for r in trials)
