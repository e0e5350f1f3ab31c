from types import SimpleNamespace

import numpy as np

from ray.tune.schedulers import TrialScheduler

from search.methods.schedulers import RecordingASHA


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


from search.methods.schedulers import MultiObjectiveASHA
from search.methods.schedulers import rung_milestones

OBJECTIVES = {"val_accuracy": "max", "epoch_time_s": "min"}


def _result(epoch, accuracy, seconds):
    return {"epoch": epoch, "val_accuracy": accuracy, "epoch_time_s": seconds}


def test_rungs_follow_grace_period_and_reduction_factor():
    assert rung_milestones(1, 3, 27) == [1, 3, 9]
    assert rung_milestones(2, 3, 8) == [2, 6]
    assert rung_milestones(4, 2, 4) == []


def test_mo_asha_promotes_by_pareto_dominance_not_by_one_metric():
    scheduler = MultiObjectiveASHA(OBJECTIVES, max_t=9, grace_period=1, reduction_factor=3)
    trials = {name: SimpleNamespace(trial_id=name) for name in ("fast", "accurate", "dominated", "late")}
    decide = lambda name, *values: scheduler.on_trial_result(None, trials[name], _result(1, *values))  # noqa: E731
    # The first trial at a rung always goes on.
    assert decide("fast", 0.80, 1.0) == TrialScheduler.CONTINUE
    # Less accurate AND slower than "fast": second of 2, outside the top third, stopped.
    assert decide("dominated", 0.70, 2.0) == TrialScheduler.STOP
    # More accurate but slower: it trades off with "fast" (same front) and, the most accurate
    # of that front, comes first of 3: it goes on.
    assert decide("accurate", 0.95, 3.0) == TrialScheduler.CONTINUE
    # Second of 4 by accuracy alone (ASHA on accuracy would keep it: 1/4 <= 1/3), but
    # "accurate" dominates it, so it sits in the second front, third of 4: stopped.
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
    scheduler = MultiObjectiveASHA(objectives, max_t=9, grace_period=1, reduction_factor=3)
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


def _decide(scheduler, arrivals, epoch):
    return {name: scheduler.on_trial_result(None, SimpleNamespace(trial_id=name), _result(epoch, *values)) for name, values in arrivals}


def test_mo_asha_keeps_both_ends_of_the_tradeoff_whichever_arrives_first():
    # A accurate but slow, B fast but less accurate: neither dominates the other.
    a, b = ("A", (0.97, 1.8)), ("B", (0.95, 0.25))
    for arrivals in ([a, b], [b, a]):
        scheduler = MultiObjectiveASHA(OBJECTIVES, max_t=8, grace_period=2, reduction_factor=2)
        # With reduction factor 2, the top half of 2 goes on: both, in either order.
        assert _decide(scheduler, arrivals, 2) == {"A": TrialScheduler.CONTINUE, "B": TrialScheduler.CONTINUE}


def test_mo_asha_never_stops_a_newcomer_that_dominates_what_the_rung_has_seen():
    scheduler = MultiObjectiveASHA(OBJECTIVES, max_t=9, grace_period=1, reduction_factor=3)
    decisions = _decide(scheduler, [("a", (0.90, 1.0)), ("b", (0.80, 0.3)), ("c", (0.95, 0.9))], 1)
    # b trades off with a but comes second of two (the epsilon-net starts from accuracy), and
    # only the top third goes on; c dominates a and leads the first front: it goes on.
    assert decisions == {"a": TrialScheduler.CONTINUE, "b": TrialScheduler.STOP, "c": TrialScheduler.CONTINUE}
    assert scheduler.stopped_early == {"b"}


def test_mo_asha_decision_does_not_depend_on_the_order_the_rung_was_filled_in():
    rng = np.random.default_rng(0)
    for _ in range(50):
        vectors = [(float(rng.uniform(0.8, 1.0)), float(rng.uniform(0.1, 2.0))) for _ in range(6)]
        newcomer = (float(rng.uniform(0.8, 1.0)), float(rng.uniform(0.1, 2.0)))
        decisions = set()
        for permutation in (rng.permutation(6) for _ in range(4)):
            scheduler = MultiObjectiveASHA(OBJECTIVES, max_t=8, grace_period=1, reduction_factor=3)
            for i in permutation:
                scheduler.promote(1, f"t{i}", _result(1, *vectors[i]))
            decisions.add(scheduler.promote(1, "new", _result(1, *newcomer)))
        # The same recorded vectors, in any order, give the newcomer the same decision.
        assert len(decisions) == 1


def test_mo_asha_resolves_a_tie_in_the_newcomers_favour():
    scheduler = MultiObjectiveASHA(OBJECTIVES, max_t=8, grace_period=1, reduction_factor=2)
    # An identical vector ties with the first: the newcomer ranks first of 2 and goes on,
    # as in Syne Tune, where equal priorities go to the newcomer.
    assert _decide(scheduler, [("x", (0.9, 1.0)), ("y", (0.9, 1.0)), ("z", (0.9, 1.0))], 1) == {
        "x": TrialScheduler.CONTINUE,
        "y": TrialScheduler.CONTINUE,
        "z": TrialScheduler.CONTINUE,
    }


# --- Against the reference implementation: Syne Tune 0.16's MOASHA ----------------------------

def _syne_tune_moasha(metrics, max_t, grace_period, reduction_factor, corrected):
    from syne_tune.optimizer.schedulers.multiobjective.moasha import MOASHA
    from syne_tune.optimizer.schedulers.multiobjective.multiobjective_priority import MOPriority
    from syne_tune.optimizer.schedulers.multiobjective.non_dominated_priority import compute_epsilon_net
    from syne_tune.optimizer.schedulers.multiobjective.non_dominated_priority import pareto_efficient

    class PriorityPerVector(MOPriority):
        """Syne Tune's own pieces (pareto_efficient, compute_epsilon_net from objective 0),
        composed so that each vector gets its own priority, on objectives scaled to [0, 1]
        within each front: the two intended differences of ours (see MultiObjectiveASHA)."""

        def priority_unsafe(self, objectives):
            priority = np.empty(len(objectives))
            remaining, offset = np.arange(len(objectives)), 0
            while remaining.size:
                front = remaining[pareto_efficient(objectives[remaining])]
                points = objectives[front]
                span = np.where(np.ptp(points, axis=0) > 0, np.ptp(points, axis=0), 1.0)
                priority[front] = offset + compute_epsilon_net((points - points.min(axis=0)) / span, dim=0)
                offset += len(front)
                remaining = np.setdiff1d(remaining, front)
            return priority

    return MOASHA(
        config_space={},
        metrics=metrics,
        do_minimize=True,
        time_attr="epoch",
        max_t=max_t,
        grace_period=grace_period,
        reduction_factor=reduction_factor,
        multiobjective_priority=PriorityPerVector() if corrected else None,
    )


def test_mo_asha_decides_as_syne_tunes_moasha_on_random_asynchronous_studies():
    from datetime import datetime

    from syne_tune.backend.trial_status import Trial

    rng = np.random.default_rng(1)
    compared = stopped = 0
    for _ in range(60):
        rf, grace = int(rng.choice([2, 3, 4])), int(rng.choice([1, 2, 3]))
        max_t = grace * rf ** int(rng.integers(1, 4))
        objectives = dict(list({"val_accuracy": "max", "epoch_time_s": "min", "bytes": "min"}.items())[: int(rng.integers(1, 4))])
        ours = MultiObjectiveASHA(objectives, max_t=max_t, grace_period=grace, reduction_factor=rf)
        reference = _syne_tune_moasha(list(objectives), max_t, grace, rf, corrected=True)
        trials = {i: Trial(trial_id=i, config={}, creation_time=datetime.now()) for i in range(int(rng.integers(3, 16)))}
        for trial in trials.values():
            reference.on_trial_add(trial)
        epoch = dict.fromkeys(trials, 0)
        running = list(trials)
        while running:  # trials report in a random interleaving, as asynchronous workers do
            i = running[int(rng.integers(len(running)))]
            epoch[i] += 1
            values = {name: float(rng.uniform(0, 1)) for name in objectives}
            result = {"epoch": epoch[i], **values}
            loss_result = {"epoch": epoch[i], **{n: -v if objectives[n] == "max" else v for n, v in values.items()}}
            decision = ours.on_trial_result(None, SimpleNamespace(trial_id=str(i)), result)
            # Both stop a trial at the same reports, for the same reasons.
            assert decision == reference.on_trial_result(trials[i], loss_result)
            compared += 1
            if decision == TrialScheduler.STOP:
                running.remove(i)
                stopped += epoch[i] < max_t
    # The comparison covered many decisions, early stops among them.
    assert compared > 500 and stopped > 50


def test_syne_tunes_moasha_reads_the_front_order_as_priorities_and_stops_a_dominating_newcomer():
    # The intended difference, shown: with reduction factor 4, a newcomer that dominates both
    # recorded trials is first of 3 and must go on (0/3 <= 1/4). Syne Tune 0.16 passes
    # `nondominated_sort`'s order [2, 0, 1] (indices, best first) where `Bracket` expects one
    # priority per vector, so it reads the newcomer's priority as 1 and stops it.
    from datetime import datetime

    from syne_tune.backend.trial_status import Trial

    arrivals = [(0.90, 1.0), (0.80, 2.0), (0.95, 0.5)]
    syne_tune = _syne_tune_moasha(list(OBJECTIVES), 16, 1, 4, corrected=False)
    decisions = []
    for i, (accuracy, seconds) in enumerate(arrivals):
        trial = Trial(trial_id=i, config={}, creation_time=datetime.now())
        syne_tune.on_trial_add(trial)
        decisions.append(syne_tune.on_trial_result(trial, {"epoch": 1, "val_accuracy": -accuracy, "epoch_time_s": seconds}))
    assert decisions == ["CONTINUE", "STOP", "STOP"]
    ours = MultiObjectiveASHA(OBJECTIVES, max_t=16, grace_period=1, reduction_factor=4)
    assert list(_decide(ours, [(f"t{i}", v) for i, v in enumerate(arrivals)], 1).values()) == ["CONTINUE", "STOP", "CONTINUE"]


def test_a_users_own_ray_scheduler_is_made_to_record_whom_it_stops_early():
    """Any Ray Tune scheduler passed as an object keeps the study's record of early stops."""
    import pytest
    from ray.tune.schedulers import ASHAScheduler

    from search.errors import SpaceError
    from search.methods.schedulers import recording

    theirs = ASHAScheduler(time_attr="epoch", metric="val_accuracy", mode="max", max_t=3, grace_period=1, reduction_factor=2)
    name = type(theirs).__name__
    scheduler = recording(theirs, max_t=3)
    # It is still the scheduler it was, under its name, with its own settings, now keeping the record.
    assert scheduler is theirs and isinstance(scheduler, ASHAScheduler) and type(scheduler).__name__ == name
    good, bad = SimpleNamespace(trial_id="good"), SimpleNamespace(trial_id="bad")
    for trial in (good, bad):
        scheduler.on_trial_add(None, trial)
    assert scheduler.on_trial_result(None, good, {"epoch": 1, "val_accuracy": 0.9}) == TrialScheduler.CONTINUE
    assert scheduler.on_trial_result(None, bad, {"epoch": 1, "val_accuracy": 0.5}) == TrialScheduler.STOP
    # A stop before the last epoch is recorded, with its rung; the end of the last epoch is not.
    scheduler.on_trial_result(None, good, {"epoch": 2, "val_accuracy": 0.95})
    assert scheduler.on_trial_result(None, good, {"epoch": 3, "val_accuracy": 0.96}) == TrialScheduler.STOP
    assert scheduler.stopped_early == {"bad"} and dict(scheduler.stopped_at_rung) == {1: 1}
    # The study's own schedulers already keep the record and are left as they are.
    own = RecordingASHA(metric="val_accuracy", mode="max", max_t=3)
    assert recording(own, max_t=3) is own and type(own) is RecordingASHA
    # Anything else is refused with what was expected and what came.
    with pytest.raises(SpaceError, match=r"Ray Tune TrialScheduler\. Received: scheduler='fifo' \(of type str\)"):
        recording("fifo", max_t=3)
