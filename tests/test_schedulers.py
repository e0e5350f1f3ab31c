from types import SimpleNamespace

from ray.tune.schedulers import TrialScheduler

from search.schedulers import RecordingASHA


def test_asha_records_only_trials_it_stops_before_their_last_epoch():
    scheduler = RecordingASHA(metric="val_accuracy", mode="max", max_t=3, grace_period=1, reduction_factor=2)
    good, bad = SimpleNamespace(trial_id="good"), SimpleNamespace(trial_id="bad")
    for trial in (good, bad):
        scheduler.on_trial_add(None, trial)
    # At the first rung the better trial goes on; the worse one is stopped and recorded.
    assert scheduler.on_trial_result(None, good, {"epoch": 1, "val_accuracy": 0.9}) == TrialScheduler.CONTINUE
    assert scheduler.on_trial_result(None, bad, {"epoch": 1, "val_accuracy": 0.5}) == TrialScheduler.STOP
    assert scheduler.stopped_early == {"bad"}
    # Reaching the last epoch ends a trial too, but that is not an early stop.
    scheduler.on_trial_result(None, good, {"epoch": 2, "val_accuracy": 0.95})
    assert scheduler.on_trial_result(None, good, {"epoch": 3, "val_accuracy": 0.96}) == TrialScheduler.STOP
    assert scheduler.stopped_early == {"bad"}
