import re
import io
from types import SimpleNamespace

from search.record.progress import ProgressLines


def _progress(stream, **kwargs):
    return ProgressLines(
        total=4,
        objectives={"val_accuracy": "max", "epoch_time_s": "min"},
        name_of=lambda trial: f"trial-{trial.trial_id}",
        stopped_early=lambda trial_id: trial_id == "2",
        stream=stream,
        **{"width": 1000, **kwargs},
    )


def test_one_line_per_ended_trial_with_totals_best_and_time_left():
    stream = io.StringIO()
    progress = _progress(stream)
    running = SimpleNamespace(trial_id="3", status="RUNNING")
    done = SimpleNamespace(trial_id="1", status="RUNNING", last_result={"epoch": 4, "val_accuracy": 0.9, "epoch_time_s": 1.5})
    stopped = SimpleNamespace(trial_id="2", status="RUNNING", last_result={"epoch": 1, "val_accuracy": 0.95, "epoch_time_s": 0.2})
    progress.on_trial_complete(0, [done, running], done)
    progress.on_trial_complete(0, [stopped, running], stopped)
    first, second = stream.getvalue().splitlines()
    # What ended, how, its objectives; the counts; the best *full-budget* value; time left.
    assert "trial-1 finished at epoch 4: val_accuracy=0.9 epoch_time_s=1.5" in first
    assert "1/4 ended (1 finished, 0 stopped, 0 failed), 1 running" in first
    assert "best val_accuracy=0.9 (trial-1)" in second and "left" in second
    assert "trial-2 stopped at epoch 1" in second


def test_heartbeat_while_no_trial_ends():
    stream = io.StringIO()
    progress = _progress(stream, heartbeat_s=0.0, already_ended={"finished": 2})
    progress.on_step_begin(0, [SimpleNamespace(trial_id="5", status="RUNNING")])
    # A resumed study counts the trials that ended before the interruption.
    assert "still running | 2/4 ended (2 finished, 0 stopped, 0 failed), 1 running" in stream.getvalue()


def test_time_left_never_goes_beyond_the_time_budget():
    stream = io.StringIO()
    progress = ProgressLines(
        total=1000, objectives={"score": "max"}, name_of=lambda trial: "t", stopped_early=lambda trial_id: False,
        stream=stream, time_budget_s=120.0,
    )  # fmt: skip
    progress.start -= 60  # one trial ended after a minute; 999 more would take 16 hours
    trial = SimpleNamespace(trial_id="1", status="RUNNING", last_result={"epoch": 1, "score": 1.0})
    progress.on_trial_complete(0, [trial], trial)
    assert re.search(r"~00:5\d left|~01:00 left", stream.getvalue())


def test_once_every_trial_has_started_time_left_is_the_slowest_running_trials_last_epochs():
    stream = io.StringIO()
    progress = ProgressLines(
        total=3, objectives={"score": "max"}, name_of=lambda trial: "t", stopped_early=lambda trial_id: False,
        stream=stream, max_epochs=10, width=1000,
    )  # fmt: skip
    progress.start -= 30  # two small trials ended within 30 s; the average says 15 s for the third
    small = SimpleNamespace(trial_id="1", status="RUNNING", last_result={"epoch": 10, "score": 1.0})
    progress.on_trial_complete(0, [small], small)
    # The third trial has started: 2 of its 10 epochs in 40 s, so 160 s to go, not 15 s.
    large = SimpleNamespace(trial_id="3", status="RUNNING", last_result={"training_iteration": 2, "time_total_s": 40.0})
    progress.on_trial_complete(0, [small, large], small)
    first, second = stream.getvalue().splitlines()
    assert "~01:00 left" in first  # a trial still to start: the average of the ended ones
    assert "~02:40 left" in second


def test_a_line_too_long_for_the_window_folds_between_what_ended_and_the_counts():
    stream = io.StringIO()
    progress = _progress(stream, width=100)
    running = SimpleNamespace(trial_id="3", status="RUNNING")
    done = SimpleNamespace(trial_id="1", status="RUNNING", last_result={"epoch": 4, "val_accuracy": 0.9, "epoch_time_s": 1.5})
    progress.on_trial_complete(0, [done, running], done)
    lines = stream.getvalue().splitlines()
    # Each line fits; the counts start the next line, indented, whole.
    assert all(len(line) <= 100 for line in lines) and len(lines) >= 2
    assert lines[0].endswith("val_accuracy=0.9 epoch_time_s=1.5")
    assert lines[1].startswith("        | 1/4 ended (1 finished, 0 stopped, 0 failed), 1 running")
