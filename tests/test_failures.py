"""A trial that crashes is marked FAILED and the study goes on; if all crash, the study fails."""

import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient

# A space whose trainable (defined in the space file, no TensorFlow) crashes for one option.
CRASHING_SPACE = '''
from search.space import Choice, SearchSpace


def train(config, context):
    if config["mode"] in {MODES}:
        raise RuntimeError(f"boom: mode {{config['mode']}} cannot train")
    for epoch in range(1, config["epochs"] + 1):
        context.report({{"epoch": epoch, "score": 0.5}})
    return {{"epoch": config["epochs"], "score": 0.5}}


train.metrics = ("epoch", "score")

SPACE = SearchSpace(
    name="crashing",
    trainable=train,
    params={{"mode": Choice(["ok", "crash"])}},
    objectives={{"score": "max"}},
    num_samples=6,
    max_epochs=2,
    scheduler="none",
    searcher="random",
    seed=0,
)
'''


def _run(tmp_path: Path, crashing_modes: set[str], *options: str):
    space = tmp_path / "crashing.py"
    space.write_text(CRASHING_SPACE.format(MODES=crashing_modes))
    command = [sys.executable, "-m", "search.launch", str(space), "--results-dir", str(tmp_path / "results"), *options]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    client = MlflowClient(f"sqlite:///{tmp_path / 'results' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("crashing")
    trials = client.search_runs([experiment.experiment_id])
    study = client.search_runs([experiment.experiment_id], filter_string="tags.role = 'study'")
    return done, [t for t in trials if "mlflow.parentRunId" in t.data.tags], study[0]


@pytest.mark.timeout(600)
def test_crashing_trials_are_retried_then_failed_and_the_study_goes_on(tmp_path):
    done, trials, study = _run(tmp_path, {"crash"}, "--max-retries", "1")
    statuses = sorted(t.info.status for t in trials)
    # The study completes (exit 0) with every trial recorded, once: the crashes as FAILED, with
    # the exception as a tag, and the others FINISHED with their metrics.
    assert done.returncode == 0, done.stderr
    assert len(trials) == 6 and "FAILED" in statuses and "FINISHED" in statuses
    assert set(statuses) == {"FAILED", "FINISHED"}
    for trial in trials:
        if trial.info.status == "FAILED":
            assert "RuntimeError: boom: mode crash cannot train" in trial.data.tags["error"]
            # Retried once in the same run; both errors are kept.
            assert trial.data.tags["retries"] == "1"
            assert "boom" in trial.data.tags["error_before_retry_1"]
        else:
            assert trial.data.metrics["score"] == 0.5
    # The terminal says which trials failed and why; the study run is FINISHED.
    assert "FAILED: RuntimeError: boom" in done.stdout
    assert study.info.status == "FINISHED" and study.data.metrics["trials_failed"] == statuses.count("FAILED")


@pytest.mark.timeout(600)
def test_a_study_whose_trials_all_fail_fails_loudly(tmp_path):
    done, trials, _ = _run(tmp_path, {"ok", "crash"}, "--trials", "3")
    # Exit code 1 and one clear line, after every failure was recorded.
    assert done.returncode == 1
    assert "every trial failed" in done.stderr
    assert len(trials) == 3 and all(t.info.status == "FAILED" for t in trials)


@pytest.mark.timeout(600)
def test_a_diverging_trial_is_failed_with_the_reason(tmp_path):
    # The real MNIST trainable with a learning rate that sends the loss to NaN/inf.
    mnist = (Path(__file__).parents[1] / "spaces" / "mnist.py").read_text()
    space = tmp_path / "diverging.py"
    space.write_text(mnist.replace("Float(3e-4, 1e-2, log=True)", "Choice([1e12])").replace('name="mnist"', 'name="diverging"'))
    command = [
        sys.executable, "-m", "search.launch", str(space), "--trials", "1", "--max-epochs", "1",
        "--set", "data_source=bundled", "--set", "train_examples=256", "--results-dir", str(tmp_path / "results"),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    client = MlflowClient(f"sqlite:///{tmp_path / 'results' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("diverging")
    trials = [r for r in client.search_runs([experiment.experiment_id]) if "mlflow.parentRunId" in r.data.tags]
    # The only trial failed, with the divergence named; so the study fails (exit 1).
    assert done.returncode == 1
    assert [r.info.status for r in trials] == ["FAILED"]
    assert "FloatingPointError: Training diverged: loss became" in trials[0].data.tags["error"]


@pytest.mark.timeout(600)
def test_a_time_budget_ends_the_study_and_cuts_off_running_trials(tmp_path):
    command = [
        sys.executable, "-m", "search.launch", str(Path(__file__).parents[1] / "spaces" / "mnist.py"),
        "--trials", "100", "--max-epochs", "40", "--scheduler", "none", "--time-budget", "25",
        "--set", "data_source=bundled", "--set", "train_examples=256", "--set", "architecture=mlp",
        "--results-dir", str(tmp_path / "results"), "--experiment", "budget",
    ]  # fmt: skip
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    # Far fewer than 100 trials ran: the budget, not the trial count, ended the study.
    assert time.monotonic() - started < 200
    client = MlflowClient(f"sqlite:///{tmp_path / 'results' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("budget")
    trials = [r for r in client.search_runs([experiment.experiment_id]) if "mlflow.parentRunId" in r.data.tags]
    assert 0 < len(trials) < 100
    # Trials still training when it ran out end KILLED and tagged; none is left RUNNING.
    cut = [r for r in trials if r.data.tags.get("cut_off") == "time budget"]
    assert cut and all(r.info.status == "KILLED" for r in cut)
    assert all(r.info.status in ("FINISHED", "KILLED") for r in trials)
    # The front is over recipes: a cut-off trial's epochs that it finished and reported count like
    # any other, and the epoch it was cut off in (never reported) is on no front.
    parent = next(r for r in client.search_runs([experiment.experiment_id]) if "mlflow.parentRunId" not in r.data.tags)
    front = pd.read_csv(client.download_artifacts(parent.info.run_id, "pareto.csv"))
    for run in cut:
        reported = {int(m.value) for m in client.get_metric_history(run.info.run_id, "epoch")}
        assert set(front.loc[front["trial"] == run.info.run_name, "epoch"].astype(int)) <= reported
    assert "cut off by the time budget" in done.stdout


@pytest.mark.timeout(600)
def test_a_trial_whose_worker_process_is_killed_is_retried_from_its_checkpoint(tmp_path):
    import os
    import signal

    import psutil

    from tests.test_resume import SPACE

    space = tmp_path / "resumable.py"
    space.write_text(SPACE.replace("num_samples=8", "num_samples=4").replace("0.7", "1.0"))
    command = [sys.executable, "-m", "search.launch", str(space), "--results-dir", str(tmp_path / "results"), "--max-retries", "1"]
    launcher = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    client = MlflowClient(f"sqlite:///{tmp_path / 'results' / 'mlflow.db'}")
    killed = None
    deadline = time.monotonic() + 300
    while killed is None and time.monotonic() < deadline and launcher.poll() is None:
        time.sleep(0.2)
        experiment = (tmp_path / "results" / "mlflow.db").exists() and client.get_experiment_by_name("resumable")
        runs = [r for r in client.search_runs([experiment.experiment_id]) if "mlflow.parentRunId" in r.data.tags] if experiment else []
        if not any(r.info.status == "RUNNING" and r.data.metrics.get("epoch") == 1 for r in runs):
            continue
        # A trial has trained an epoch: kill a training worker process of this study outright.
        for process in psutil.process_iter(["pid", "name"]):
            try:
                if process.info["name"] == "ray::ImplicitFunc.train" and os.getsid(process.pid) == launcher.pid:
                    os.kill(process.pid, signal.SIGKILL)
                    killed = process.pid
                    break
            except (OSError, psutil.Error):
                continue
    out, err = launcher.communicate(timeout=300)
    assert killed is not None, "no training worker was found to kill"
    assert launcher.returncode == 0, out[-2000:] + err[-2000:]
    trials = [r for r in client.search_runs([experiment.experiment_id]) if "mlflow.parentRunId" in r.data.tags]
    # The study went on: every trial finished, one of them after a retry that says why it was
    # needed, and every trial's epochs are recorded once each.
    assert len(trials) == 4 and all(r.info.status == "FINISHED" for r in trials)
    assert len({r.data.params["x"] for r in trials}) == 4
    retried = [r for r in trials if r.data.tags.get("retries") == "1"]
    assert len(retried) == 1 and retried[0].data.tags["error_before_retry_1"].startswith("its process was lost")
    for run in trials:
        assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "score")) == [1, 2, 3]
