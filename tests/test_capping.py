"""Capping (`search.methods.capping`): a trial is stopped only once every later recipe of it is
dominated under the gain bound, and never before enough curves were seen."""

from types import SimpleNamespace

import numpy as np
import pytest

from ray.tune.schedulers import TrialScheduler

from search.methods import pareto
from search.methods.capping import RecipeCapping
from search.methods.schedulers import make_scheduler

OBJECTIVES = {"val_accuracy": "max", "train_time_s": "min"}


def _report(epoch, accuracy, seconds):
    return {"epoch": epoch, "val_accuracy": accuracy, "train_time_s": seconds}


def _feed(capping, name, accuracies, epoch_s):
    """Report a whole curve; return the epoch capping stopped it at, or None."""
    for epoch, accuracy in enumerate(accuracies, start=1):
        if capping.capped(name, _report(epoch, accuracy, epoch * epoch_s)):
            return epoch
    return None


SHAPE = np.array([0.80, 0.90, 0.94, 0.95])  # accuracy after each epoch, before an offset


def test_capping_says_nothing_until_enough_curves_ran_to_every_later_epoch():
    capping = RecipeCapping(OBJECTIVES, max_t=4, min_curves=3)
    # Two fast, accurate curves: not yet enough to bound what a trial can still gain.
    for name in ("a", "b"):
        assert _feed(capping, name, SHAPE, 1.0) is None
    # A slow, poor trial goes on though the front already beats everything it could reach.
    assert _feed(capping, "slow", SHAPE - 0.3, 10.0) is None


def test_capping_stops_a_trial_whose_later_recipes_are_all_dominated():
    capping = RecipeCapping(OBJECTIVES, max_t=4, min_curves=3)
    for name in ("a", "b", "c"):
        assert _feed(capping, name, SHAPE, 1.0) is None
    # 0.3 worse at every epoch and 10x slower: after epoch 1 its best possible later recipe
    # (0.50 + the largest gain seen, 0.15, at 20 s or more) is beaten by 0.95 in 4 s.
    assert _feed(capping, "slow", SHAPE - 0.3, 10.0) == 1


def test_capping_never_stops_a_trial_whose_bound_still_reaches_the_front():
    capping = RecipeCapping(OBJECTIVES, max_t=4, min_curves=3)
    for name in ("a", "b", "c"):
        _feed(capping, name, SHAPE, 1.0)
    # Slower per epoch but more accurate at its end than anything seen (0.97 > 0.95): its last
    # recipe would be on the front, so it runs all its epochs.
    assert _feed(capping, "slow-but-best", SHAPE + 0.02, 3.0) is None
    # Faster per epoch than any trial seen: each of its recipes beats what the others had by then.
    assert _feed(capping, "fast", SHAPE - 0.05, 0.4) is None
    # Level with the front at its last epoch (0.90 in 2 s, as "a" after its second): not dominated.
    assert _feed(capping, "level", SHAPE - 0.05, 0.5) is None


def test_slack_widens_the_bound():
    curves = {"a": SHAPE, "b": SHAPE, "c": SHAPE}
    # 0.12 worse, 3x slower: after epoch 3 at 9 s it can still gain at most 0.01 (0.83 at 12 s)
    # against 0.95 at 4 s, so it is stopped without slack... and goes on under a bound 20x wider.
    stops = {}
    for slack in (0.0, 20.0):
        capping = RecipeCapping(OBJECTIVES, max_t=4, min_curves=3, slack=slack)
        for name, curve in curves.items():
            _feed(capping, name, curve, 1.0)
        stops[slack] = _feed(capping, "worse", SHAPE - 0.12, 3.0)
    assert stops[0.0] is not None
    assert stops[20.0] is None


@pytest.mark.parametrize("seed", range(5))
def test_on_curves_of_one_shape_no_capped_trial_would_have_reached_the_front(seed):
    rng = np.random.default_rng(seed)
    # Curves of one shape (so the gains seen bound every trial's gains exactly), offset in
    # accuracy and time per epoch, arriving one after another.
    curves = {f"t{i}": (SHAPE - rng.uniform(0, 0.3), rng.uniform(0.5, 5.0)) for i in range(30)}
    capping = RecipeCapping(OBJECTIVES, max_t=4, min_curves=3)
    stopped = {name: _feed(capping, name, accuracies, epoch_s) for name, (accuracies, epoch_s) in curves.items()}
    # The front over every epoch of every curve, as if nothing had been stopped.
    recipes = [(name, k, _report(k, accuracies[k - 1], k * epoch_s)) for name, (accuracies, epoch_s) in curves.items() for k in range(1, 5)]
    ranks = pareto.nondominated_ranks(pareto.losses([r for _, _, r in recipes], OBJECTIVES))
    on_front = {(name, k) for (name, k, _), rank in zip(recipes, ranks) if rank == 0}
    # Capping stopped some trials, and no recipe it kept from being run is on the front.
    assert any(stopped.values())
    skipped = {(name, k) for name, epoch in stopped.items() if epoch for k in range(epoch + 1, 5)}
    assert not skipped & on_front


def test_capped_scheduler_records_its_stops_and_lets_the_inner_scheduler_decide_first():
    scheduler = make_scheduler("none", OBJECTIVES, max_t=4, grace_period=1, reduction_factor=2, capping={"min_curves": 3})
    trial = lambda name: SimpleNamespace(trial_id=name)  # noqa: E731
    for name in ("a", "b", "c"):
        for epoch, accuracy in enumerate(SHAPE, start=1):
            assert scheduler.on_trial_result(None, trial(name), _report(epoch, accuracy, epoch * 1.0)) == TrialScheduler.CONTINUE
    # A trial capped after its first epoch is stopped and recorded as stopped early there.
    assert scheduler.on_trial_result(None, trial("slow"), _report(1, 0.5, 10.0)) == TrialScheduler.STOP
    assert scheduler.stopped_early == {"slow"}
    assert scheduler.capped_at == {1: 1}
    # A trainable's last report (`complete`) is never stopped early.
    assert scheduler.on_trial_result(None, trial("done"), {**_report(1, 0.5, 10.0), "complete": True}) == TrialScheduler.CONTINUE
    assert "done" not in scheduler.stopped_early


def test_capping_needs_the_training_time_among_the_objectives():
    with pytest.raises(ValueError, match="train_time_s"):
        RecipeCapping({"val_accuracy": "max", "epoch_time_s": "min"}, max_t=4)
