import numpy as np
import pandas as pd
import pytest

from search.record import front
from search.methods import pareto

OBJECTIVES = {"val_accuracy": "max", "epoch_time_s": "min"}


def test_losses_turn_every_objective_into_one_to_minimise():
    loss = pareto.losses([{"val_accuracy": 0.9, "epoch_time_s": 2.0}, {"val_accuracy": None, "epoch_time_s": float("nan")}], OBJECTIVES)
    # Maximised objectives are negated; missing or NaN values become the worst possible.
    np.testing.assert_array_equal(loss, [[-0.9, 2.0], [np.inf, np.inf]])


def test_nondominated_ranks_on_hand_made_points():
    #            accuracy, time
    points = [(0.95, 2.0), (0.90, 1.0), (0.85, 3.0), (0.97, 5.0), (0.80, 4.0)]
    loss = pareto.losses([dict(zip(OBJECTIVES, p)) for p in points], OBJECTIVES)
    # (0.95, 2), (0.90, 1) and (0.97, 5) trade off; (0.85, 3) is beaten by (0.95, 2);
    # (0.80, 4) is beaten by (0.85, 3) as well, so it sits one front further back.
    np.testing.assert_array_equal(pareto.nondominated_ranks(loss), [0, 0, 1, 0, 2])


def test_epsilon_net_starts_from_the_first_objective_and_then_takes_the_farthest_point():
    #                 accuracy loss, seconds
    loss = np.array([[-0.90, 1.0], [-0.97, 1.8], [-0.80, 0.2], [-0.85, 0.5]])
    # The most accurate point first; then the point farthest from it (the fastest); then the
    # one farthest from both, once the objectives are scaled to [0, 1].
    np.testing.assert_array_equal(pareto.epsilon_net_order(loss), [1, 2, 0, 3])
    # Scaling makes the order independent of units: milliseconds instead of seconds.
    np.testing.assert_array_equal(pareto.epsilon_net_order(loss * [1, 1000]), [1, 2, 0, 3])


def test_promotion_rank_sorts_by_front_then_epsilon_net_and_ignores_arrival_order():
    recorded = np.array([[-0.90, 1.0], [-0.80, 0.3], [-0.70, 2.0]])
    # A newcomer dominating (0.90, 1.0) shares the first front with (0.80, 0.3) and is the
    # most accurate of it, so it comes first; the dominated (0.70, 2.0) comes last.
    assert pareto.promotion_rank(np.array([-0.95, 0.9]), recorded) == 0
    assert pareto.promotion_rank(np.array([-0.60, 3.0]), recorded) == 3
    # The same vectors recorded in any order give the same rank.
    for order in ([0, 1, 2], [2, 1, 0], [1, 2, 0]):
        assert pareto.promotion_rank(np.array([-0.85, 0.6]), recorded[order]) == pareto.promotion_rank(
            np.array([-0.85, 0.6]), recorded
        )
    # A tie (an identical vector) is resolved in the newcomer's favour.
    assert pareto.promotion_rank(np.array([-0.90, 1.0]), np.array([[-0.90, 1.0]])) == 0


def test_knee_is_the_balanced_point_of_the_front():
    loss = np.array([[0.0, 10.0], [1.0, 1.0], [10.0, 0.0]])
    # Scaled to [0, 1], (1, 1) is far closer to the ideal corner than either extreme.
    assert pareto.knee_index(loss) == 1


def test_hypervolume_of_known_points():
    loss = np.array([[1.0, 3.0], [2.0, 1.0]])
    # Two rectangles against (4, 4): 3*1 + 2*3 - overlap 2*1 = 7.
    assert pareto.hypervolume(loss, np.array([4.0, 4.0])) == pytest.approx(7.0)
    # Points outside the reference box add nothing.
    assert pareto.hypervolume(np.array([[5.0, 5.0]]), np.array([4.0, 4.0])) == 0.0


def _table():
    return pd.DataFrame(
        [
            # A stopped trial with unbeatable partial values: it must never join the front.
            {"trial": "t1", "status": "stopped", "val_accuracy": 0.99, "epoch_time_s": 0.1, "ended_at": 101.0},
            {"trial": "t2", "status": "finished", "val_accuracy": 0.95, "epoch_time_s": 2.0, "ended_at": 102.0},
            {"trial": "t3", "status": "finished", "val_accuracy": 0.90, "epoch_time_s": 1.0, "ended_at": 104.0},
            {"trial": "t4", "status": "finished", "val_accuracy": 0.85, "epoch_time_s": 3.0, "ended_at": 103.0},
            {"trial": "t5", "status": "failed", "val_accuracy": None, "epoch_time_s": None, "ended_at": 105.0},
        ]
    )


def test_front_is_made_of_full_budget_trials_only():
    result = front.analyse(_table(), OBJECTIVES, started_at=100.0)
    table = result.table.set_index("trial")
    # The early-stopped trial is not ranked and not on the front, however good it looks.
    assert not table.loc["t1", "on_front"] and np.isnan(table.loc["t1", "pareto_rank"])
    assert set(result.points["trial"]) == {"t2", "t3"}
    assert table.loc["t4", "pareto_rank"] == 1
    # Exactly one knee, on the front.
    assert table["knee"].sum() == 1 and table.loc[table["knee"], "on_front"].all()


def test_hypervolume_curve_uses_a_fixed_reference_and_never_falls():
    result = front.analyse(
        _table(), OBJECTIVES, reference_point={"val_accuracy": 0.8, "epoch_time_s": 4.0}, started_at=100.0
    )
    # The reference point is the declared one, in the objectives' own units.
    assert result.reference_point == {"val_accuracy": 0.8, "epoch_time_s": 4.0}
    # One point per finished trial, in the order they ended, seconds after the start.
    assert [elapsed for elapsed, _ in result.curve] == [2.0, 3.0, 4.0]
    values = [value for _, value in result.curve]
    assert values == sorted(values) and values[-1] == pytest.approx(result.hypervolume)
    # (0.95, 2) and (0.90, 1) against (0.8, 4): 0.15*2 + 0.10*3 - 0.10*2 = 0.4.
    assert result.hypervolume == pytest.approx(0.4)


def test_the_hypervolume_curve_is_the_hypervolume_of_every_prefix():
    from search.methods.pareto import hypervolume
    from search.methods.pareto import hypervolume_curve

    rng = np.random.default_rng(3)
    for objectives in (2, 3):
        # Integer losses make ties and duplicates; a few points lie beyond the reference point.
        loss = rng.integers(0, 12, size=(60, objectives)).astype(float)
        reference = np.full(objectives, 10.0)
        expected = [hypervolume(loss[: k + 1], reference) for k in range(len(loss))]
        assert np.allclose(hypervolume_curve(loss, reference), expected)
