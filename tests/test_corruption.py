"""Nobody can corrupt a study: one driver per study, a torn journal repaired, reports that break
the contract named."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from search.record.repair import JournalDamaged
from search.record.repair import repair_journal
from search.study.lock import StudyHeld
from search.study.lock import StudyLease
from trainables.contract import ContractError
from trainables.contract import ReportCheck

ROOT = Path(__file__).parents[1]

# A process that holds a study's lease until it is killed (or stopped), saying when it holds it.
HOLDER = """
import sys, time
sys.path.insert(0, {root!r})
from search.study.lock import StudyLease
lease = StudyLease({results!r}, "study-1", lease_s={lease_s}).take()
print("held", flush=True)
time.sleep(600)
"""


def _hold(results: Path, *, lease_s: float = 60.0, prefix: tuple[str, ...] = ()) -> subprocess.Popen:
    code = HOLDER.format(root=str(ROOT), results=str(results), lease_s=lease_s)
    holder = subprocess.Popen([*prefix, sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_a_study_held_by_a_live_launcher_is_refused_and_taken_over_once_it_dies(tmp_path):
    holder = _hold(tmp_path)
    try:
        # A second launcher is refused at once, with one message naming the holder.
        with pytest.raises(StudyHeld, match=rf"Study study-1 is being run by another launcher \(process {holder.pid} on .+, since .+\)"):
            StudyLease(tmp_path, "study-1").take()
    finally:
        holder.kill()  # SIGKILL: the holder cannot give the lease back
        holder.wait()
    # Its holder gone, the study is taken over at once, and given back on release.
    lease = StudyLease(tmp_path, "study-1").take()
    assert json.loads(lease.holder_file.read_text())["pid"] == os.getpid()
    lease.release()
    StudyLease(tmp_path, "study-1").take().release()


def test_a_holder_on_another_node_is_taken_over_only_once_its_heartbeat_stops(tmp_path):
    # Another node: a process that calls its machine "node-b" (its own UTS namespace).
    if subprocess.run(["unshare", "-u", "true"], capture_output=True).returncode != 0:
        pytest.skip("needs unshare -u (root) to play another node")
    holder = _hold(tmp_path, lease_s=1.5, prefix=("unshare", "-u", "sh", "-c", 'hostname node-b && exec "$0" "$@"'))
    try:
        # While its heartbeat goes on, the study is refused after one lease period of watching.
        started = time.monotonic()
        with pytest.raises(StudyHeld, match="on node-b"):
            StudyLease(tmp_path, "study-1", lease_s=1.5).take()
        assert time.monotonic() - started >= 1.5
        # A node that stops answering (its process frozen, as by a lost network): its lease
        # expires and the study is taken over.
        os.kill(holder.pid, signal.SIGSTOP)
        StudyLease(tmp_path, "study-1", lease_s=1.5).take().release()
    finally:
        holder.kill()
        holder.wait()


def _journal_with_trials(path: Path, n: int) -> None:
    import optuna

    from search.methods.searchers import journal

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="s", storage=journal(path), load_if_exists=True)
    study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=n)


def test_a_torn_journal_is_cut_back_to_its_last_whole_entry_and_carries_on(tmp_path):
    import optuna

    from search.methods.searchers import journal

    path = tmp_path / "optuna.journal"
    _journal_with_trials(path, 3)
    whole = path.read_bytes()
    # A whole journal is left as it is.
    assert repair_journal(path) is None and path.read_bytes() == whole
    # A crash in the middle of an append leaves its last entry cut short.
    path.write_bytes(whole + b'{"op_code":5,"worker_id":"x","trial_id":3,"par')
    note = repair_journal(path)
    # The torn tail is dropped, kept beside the journal, and said in one line.
    assert path.read_bytes() == whole
    (aside,) = tmp_path.glob("optuna.journal.torn-*")
    assert aside.read_bytes() == b'{"op_code":5,"worker_id":"x","trial_id":3,"par' and aside.name in note
    # Optuna appends to it again and reads it back whole (unrepaired, the next append would
    # continue the torn line and every later read would fail).
    _journal_with_trials(path, 2)
    assert len(optuna.load_study(study_name="s", storage=journal(path)).trials) == 5
    # An entry cut short whose newline was written is torn too.
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:-1]) + lines[-1][:20] + b"\n")
    assert repair_journal(path) and path.read_bytes() == b"".join(lines[:-1])


def test_a_journal_damaged_before_its_last_entry_is_refused_untouched(tmp_path):
    path = tmp_path / "optuna.journal"
    _journal_with_trials(path, 2)
    lines = path.read_bytes().splitlines(keepends=True)
    damaged = b"".join([*lines[:2], b"garbage\n", *lines[2:]])
    path.write_bytes(damaged)
    # No torn write: refused with the file and the entry named, nothing changed.
    with pytest.raises(JournalDamaged, match=rf"{path} is damaged at entry 3 of {len(lines) + 1}"):
        repair_journal(path)
    assert path.read_bytes() == damaged and not list(tmp_path.glob("*.torn-*"))


def test_reports_are_held_to_the_contract():
    check = ReportCheck(objectives=("score",))
    assert check({"epoch": 1, "score": 0.5}) == {"epoch": 1, "score": 0.5}
    # A whole float epoch is an epoch; objectives may be NumPy numbers, and NaN (a diverged trial).
    import numpy as np

    assert check({"epoch": 2.0, "score": np.float32(0.5)})["epoch"] == 2
    assert check({"epoch": 3, "score": float("nan")})["epoch"] == 3
    # An epoch that goes back or repeats fails, naming the key and the rule.
    with pytest.raises(ContractError, match=r"report 4 has epoch=3 after epoch=3: each report's 'epoch' must be above"):
        check({"epoch": 3, "score": 0.5})
    # ... unless the report continues from a checkpoint.
    assert check({"epoch": 2, "score": 0.5, "resumed_from_epoch": 2})["epoch"] == 2
    # A report without epoch once others had one fails.
    with pytest.raises(ContractError, match="report 6 has no 'epoch' but earlier reports had one"):
        check({"score": 0.5})
    # Objectives must be numbers: text, a bool or None fail; other keys may be text (tags).
    for value in ("0.5", True, None):
        with pytest.raises(ContractError, match=r"objective 'score' must be a number"):
            ReportCheck(objectives=("score",))({"epoch": 1, "score": value, "note": "text is a tag"})
    # An epoch that is no whole number >= 1 fails.
    for epoch in (0, 1.5, "1", True):
        with pytest.raises(ContractError, match=r"'epoch' must be a whole number >= 1"):
            ReportCheck()({"epoch": epoch})


def test_reports_without_any_epoch_are_numbered_by_the_study_which_says_so_once():
    said = []
    check = ReportCheck(objectives=("score",), on_numbering=said.append)
    numbered = [check({"score": 0.1 * k}) for k in range(1, 4)]
    # Numbered 1, 2, 3, each tagged as numbered by the study; said once.
    assert [r["epoch"] for r in numbered] == [1, 2, 3]
    assert all(r["epoch_numbering"].startswith("by the study") for r in numbered)
    assert len(said) == 1 and "carry no 'epoch'" in said[0]
    # Reports that then start carrying an epoch are ambiguous: the trial fails.
    with pytest.raises(ContractError, match="earlier reports had none"):
        check({"epoch": 4, "score": 0.4})
    # A resumed report must say where it continues from.
    with pytest.raises(ContractError, match="no 'epoch' but it continues from a checkpoint"):
        ReportCheck()({"score": 0.1, "resumed_from_epoch": 2})


# A trainable (no TensorFlow) whose reports break the contract in the way its `mode` says.
CONTRACT_SPACE = """
from search.space import Choice, SearchSpace


def train(config, context):
    for epoch in range(1, config["epochs"] + 1):
        report = {"epoch": epoch, "score": 0.1 * epoch}
        if config["mode"] == "no epoch":
            del report["epoch"]
        elif config["mode"] == "backwards" and epoch == 3:
            report["epoch"] = 1
        elif config["mode"] == "text" and epoch == 2:
            report["score"] = "high"
        context.report(report)
    return report


train.metrics = ("epoch", "score")

SPACE = SearchSpace(
    name="contract",
    trainable=train,
    params={"mode": Choice(["no epoch", "backwards", "text"])},
    objectives={"score": "max"},
    num_samples=3,
    max_epochs=3,
    grace_period=1,
    seed=0,
)
"""

RUN_MODES = """
import sys
from pathlib import Path
from search.space import load_space
from search.study import run_study
run_study(load_space(Path({space!r})), results_dir=Path({results!r}), first_configs=[{{"mode": m}} for m in ("no epoch", "backwards", "text")])
"""


@pytest.mark.timeout(600)
def test_a_study_fails_the_trials_whose_reports_break_the_contract_and_numbers_epochs_left_out(tmp_path):
    from mlflow import MlflowClient

    (tmp_path / "contract.py").write_text(CONTRACT_SPACE)
    code = RUN_MODES.format(space=str(tmp_path / "contract.py"), results=str(tmp_path / "results"))
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{tmp_path / 'results' / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("contract").experiment_id])
    trials = {r.data.params["mode"]: r for r in runs if "mlflow.parentRunId" in r.data.tags}
    # Reports without any epoch: numbered 1, 2, 3 by the study, which tags the run and says so
    # once; the scheduler's rungs saw those epochs, and the trial finished.
    numbered = trials["no epoch"]
    assert numbered.info.status == "FINISHED" and numbered.data.tags["epoch_numbering"].startswith("by the study")
    assert sorted(m.step for m in client.get_metric_history(numbered.info.run_id, "score")) == [1, 2, 3]
    assert done.stdout.count("carry no 'epoch'") == 1
    assert "finished at epoch 3" in done.stdout
    # An epoch going back and a text objective: FAILED, the key, the value and the rule named
    # in the run's error and on the terminal; what they reported before is kept.
    assert trials["backwards"].info.status == "FAILED"
    assert "ContractError: report 3 has epoch=1 after epoch=2" in trials["backwards"].data.tags["error"]
    assert trials["text"].info.status == "FAILED"
    assert "ContractError: report 2 has score='high' (str): objective 'score' must be a number" in trials["text"].data.tags["error"]
    terminal = " ".join(done.stdout.split())  # lines folded to the terminal's width joined
    assert "FAILED: trainables.contract.ContractError: report 3 has epoch=1 after epoch=2: each report's 'epoch' must be above" in terminal
    assert "FAILED: trainables.contract.ContractError: report 2 has score='high' (str): objective 'score' must be a number" in terminal
    assert [m.step for m in client.get_metric_history(trials["text"].info.run_id, "score")] == [1]


# The resumable space of the resume tests, its trials writing a megabyte into their checkpoint
# directory each epoch (kept until the trial ends), so that a small disk fills up.
def _filling_space() -> str:
    from tests.test_resume import SPACE

    filling = SPACE.replace(
        "        time.sleep(config[\"seconds_per_epoch\"])\n",
        "        time.sleep(config[\"seconds_per_epoch\"])\n"
        "        with open(os.path.join(context.checkpoint_dir, f\"payload-{epoch}.bin\"), \"wb\") as payload:\n"
        "            payload.write(bytes(1_000_000))\n",
    )
    assert filling != SPACE
    return filling.replace("num_samples=8", "num_samples=6").replace("0.7", "0.3")


@pytest.mark.timeout(600)
@pytest.mark.parametrize(
    "full, size",
    [
        ("checkpoints", "3m"),  # the trials' checkpoints: a trial finds no room
        ("", "4m"),  # the whole results directory: MLflow's store, the journal, artifacts, checkpoints
    ],
    ids=["checkpoints", "results directory"],
)
def test_a_full_disk_stops_the_study_cleanly_and_resume_carries_on_once_there_is_room(tmp_path, full, size):
    from mlflow import MlflowClient

    disk = tmp_path / "results" / full
    disk.mkdir(parents=True)
    # A small disk, a little more than two trials' first epochs.
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(disk)], capture_output=True).returncode != 0:
        pytest.skip("needs to mount a small tmpfs (root)")
    try:
        (tmp_path / "resumable.py").write_text(_filling_space())
        command = [sys.executable, "-m", "search.launch", str(tmp_path / "resumable.py"), "--results-dir", str(tmp_path / "results")]
        first = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
        # One line names the full disk and says how to carry on; exit 1.
        assert first.returncode == 1, first.stdout[-2000:] + first.stderr[-3000:]
        assert f"error: No space left on device on the filesystem of {disk}" in first.stderr, first.stderr[-3000:]
        assert "--resume" in first.stderr and len(first.stderr.splitlines()) == 2, first.stderr[-3000:]
        client = MlflowClient(f"sqlite:///{tmp_path / 'results' / 'mlflow.db'}")
        if full == "checkpoints":  # MLflow's store had room: every run ended with a true status
            runs = client.search_runs([client.get_experiment_by_name("resumable").experiment_id])
            trials = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
            (study,) = [r for r in runs if r.data.tags.get("role") == "study"]
            # The study FAILED, saying why; the trial that found no room and those still
            # training KILLED and tagged to run again; none FAILED.
            assert study.info.status == "FAILED" and "No space left on device" in study.data.tags["error"]
            assert {r.info.status for r in trials} <= {"FINISHED", "KILLED"}
            killed = [r for r in trials if r.info.status == "KILLED"]
            assert killed and all("interrupted" in r.data.tags for r in killed)
            assert any("No space left on device" in r.data.tags["interrupted"] for r in killed)

        # Room again: --resume carries the study on to its end, nothing lost or run twice.
        subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True)
        resumed = subprocess.run([*command, "--resume"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-3000:]
        runs = client.search_runs([client.get_experiment_by_name("resumable").experiment_id])
        trials = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
        assert [r.info.status for r in runs if r.data.tags.get("role") == "study"] == ["FINISHED"]
        assert len(trials) == 6 and all(r.info.status == "FINISHED" for r in trials), [(r.info.run_name, r.info.status, r.data.tags.get("error")) for r in trials]
        assert len({r.data.params["x"] for r in trials}) == 6
        for run in trials:
            assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "score")) == [1, 2, 3]
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def _two_objective_space():
    from search.space import Float
    from search.space import SearchSpace

    def train(config, context):
        return {"epoch": 3, "score": 0.5, "time": 1.0}

    train.metrics = ("epoch", "score", "time")
    return SearchSpace(name="settled", trainable=train, params={"x": Float(0.0, 1.0)}, objectives={"score": "max", "time": "min"}, max_epochs=3, seed=0)


def test_the_searchers_record_is_settled_from_mlflows_where_its_tail_was_lost(tmp_path):
    from types import SimpleNamespace

    import optuna
    import pandas as pd

    from search.methods.searchers import EPOCHS_MISSING
    from search.methods.searchers import journal
    from search.methods.searchers import make_searcher
    from search.study.resume import Resumed
    from search.study.resume import settle_searcher

    space = _two_objective_space()
    storage = journal(tmp_path / "optuna.journal")
    first = make_searcher(space, lambda trial_id: False, storage=storage, study_name="s")
    configs = [first.suggest(f"ray-{i}") for i in range(3)]
    # What the journal kept: three trials suggested, none told (the entries telling them were
    # lost). What MLflow kept: trial 0 finished, trial 1 stopped at epoch 1, trial 2 still
    # training, and a fourth run still training whose Optuna trial was lost altogether.
    table = pd.DataFrame(
        [
            {"status": "finished", "optuna_trial": 0, "trial_id": "ray-0", "run_id": "r0", "epoch": 3, "score": 0.9, "time": 3.0, "x": configs[0]["x"]},
            {"status": "stopped", "optuna_trial": 1, "trial_id": "ray-1", "run_id": "r1", "epoch": 1, "score": 0.5, "time": 1.0, "x": configs[1]["x"]},
            {"status": "running", "optuna_trial": 2, "trial_id": "ray-2", "run_id": "r2", "epoch": 1, "score": 0.6, "time": 1.0, "x": configs[2]["x"]},
            {"status": "running", "optuna_trial": 7, "trial_id": "ray-7", "run_id": "r7", "epoch": 2, "score": 0.7, "time": 2.0, "x": 0.25},
        ]
    )
    tags = []
    runs = SimpleNamespace(client=SimpleNamespace(set_tag=lambda *tag: tags.append(tag)))
    resumed = make_searcher(space, lambda trial_id: False, storage=storage, study_name="s", resume=True)
    settled = settle_searcher(resumed, runs, Resumed("s", "parent", table), space)

    trials = optuna.load_study(study_name="s", storage=storage).trials
    # The finished trial is told with its values; the stopped one as stopped (infeasible, its
    # epochs missing), though the new scheduler never saw it; both point at their runs.
    assert trials[0].state == optuna.trial.TrialState.COMPLETE and trials[0].values == [0.9, 3.0]
    assert trials[1].state == optuna.trial.TrialState.COMPLETE and trials[1].system_attrs[f"constraints:{EPOCHS_MISSING}"] == pytest.approx(2 / 3)
    assert [trials[0].user_attrs["mlflow_run_id"], trials[1].user_attrs["mlflow_run_id"]] == ["r0", "r1"]
    # The trial still training and the lost one are suggested again first: the lost one as a
    # new Optuna trial with its configuration, its run tagged with the new number.
    assert [t.number for t in resumed.interrupted] == [2, 3]
    assert trials[3].state == optuna.trial.TrialState.RUNNING and trials[3].params == {"x": 0.25}
    assert tags == [("r7", "optuna_trial", "3")] and settled.table["optuna_trial"].tolist() == [0, 1, 2, 3]
