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


from search.schedulers import MultiObjectiveASHA
from search.schedulers import rung_milestones

OBJECTIVES = {"val_accuracy": "max", "epoch_time_s": "min"}


def _result(epoch, accuracy, seconds):
    return {"epoch": epoch, "val_accuracy": accuracy, "epoch_time_s": seconds}


def test_rungs_follow_grace_period_and_reduction_factor():
    assert rung_milestones(1, 3, 27) == [1, 3, 9]
    assert rung_milestones(2, 3, 8) == [2, 6]
    assert rung_milestones(4, 2, 4) == []


def test_mo_asha_promotes_by_pareto_dominance_not_by_one_metric():
    scheduler = MultiObjectiveASHA(OBJECTIVES, max_t=4, grace_period=1, reduction_factor=2)
    trials = {name: SimpleNamespace(trial_id=name) for name in ("fast", "accurate", "dominated", "late")}
    decide = lambda name, *values: scheduler.on_trial_result(None, trials[name], _result(1, *values))  # noqa: E731
    # The first trial at a rung always goes on.
    assert decide("fast", 0.80, 1.0) == TrialScheduler.CONTINUE
    # Less accurate AND slower than "fast": dominated, in the bottom half, stopped.
    assert decide("dominated", 0.70, 2.0) == TrialScheduler.STOP
    # More accurate but slower: it trades off with "fast" (same front) and beats "dominated";
    # with three recorded, the top ceil(3/2) = 2 go on, so it does.
    assert decide("accurate", 0.95, 3.0) == TrialScheduler.CONTINUE
    # ASHA on accuracy alone would keep this one (0.9 is above the median of 0.95, 0.8, 0.7),
    # but "accurate" dominates it; with four recorded only the two on the front go on.
    assert decide("late", 0.90, 3.5) == TrialScheduler.STOP
    assert scheduler.stopped_early == {"dominated", "late"}
    assert scheduler.stopped_at_rung == {1: 2}


def test_mo_asha_judges_each_rung_once_and_does_not_count_the_last_epoch_as_early():
    scheduler = MultiObjectiveASHA(OBJECTIVES, max_t=3, grace_period=1, reduction_factor=3)
    good = SimpleNamespace(trial_id="good")
    assert scheduler.on_trial_result(None, good, _result(1, 0.9, 1.0)) == TrialScheduler.CONTINUE
    assert scheduler.on_trial_result(None, good, _result(2, 0.9, 1.0)) == TrialScheduler.CONTINUE
    # Reaching max_t ends the trial, but it is a full-budget trial, not an early stop.
    assert scheduler.on_trial_result(None, good, _result(3, 0.9, 1.0)) == TrialScheduler.STOP
    assert scheduler.stopped_early == set()
    # Results without the objectives are not judged.
    assert scheduler.on_trial_result(None, SimpleNamespace(trial_id="x"), {"epoch": 1}) == TrialScheduler.CONTINUE


def test_mo_asha_judges_end_only_objectives_as_ties_at_the_rungs():
    objectives = {"val_accuracy": "max", "inference_ms": "min"}  # latency is measured at the end
    scheduler = MultiObjectiveASHA(objectives, max_t=4, grace_period=1, reduction_factor=2)
    first, second = SimpleNamespace(trial_id="a"), SimpleNamespace(trial_id="b")
    assert scheduler.on_trial_result(None, first, {"epoch": 1, "val_accuracy": 0.9}) == TrialScheduler.CONTINUE
    # Without latency at the rung, accuracy alone decides: the worse trial is stopped.
    assert scheduler.on_trial_result(None, second, {"epoch": 1, "val_accuracy": 0.5}) == TrialScheduler.STOP


def test_a_trial_that_ends_on_its_own_at_a_rung_is_not_stopped_early():
    # In-trial early stopping can end a trial exactly at a rung it would lose; its last report
    # says `complete`, so it ran to its own end and joins the front, stopped by nobody.
    for scheduler in (
        MultiObjectiveASHA(OBJECTIVES, max_t=8, grace_period=2, reduction_factor=2),
        RecordingASHA(metric="val_accuracy", mode="max", max_t=8, grace_period=2, reduction_factor=2),
    ):
        first, second = SimpleNamespace(trial_id="first"), SimpleNamespace(trial_id="second")
        for trial in (first, second):
            scheduler.on_trial_add(None, trial)
        scheduler.on_trial_result(None, first, _result(2, 0.9, 0.5))
        ended = {**_result(2, 0.5, 0.9), "complete": True}  # worse on both objectives
        assert scheduler.on_trial_result(None, second, ended) == TrialScheduler.CONTINUE
        assert scheduler.stopped_early == set()
