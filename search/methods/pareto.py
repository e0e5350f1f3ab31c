"""Pareto arithmetic on objective vectors: non-dominated sorting, epsilon-net order, knee, hypervolume.

Objectives come as a mapping metric -> "max"/"min"; everything here first turns the values into
losses (smaller is better; a missing or non-finite value is the worst possible), so one code path
serves every direction. Non-dominated sorting and hypervolume are Optuna's implementations.
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Sequence

import numpy as np
from optuna._hypervolume import compute_hypervolume
from optuna.study._multi_objective import _fast_non_domination_rank


def losses(rows: Sequence[Mapping[str, float | None]], objectives: Mapping[str, str]) -> np.ndarray:
    """An (n_rows, n_objectives) array to minimise: "max" objectives are negated; NaN -> inf."""
    values = np.array(
        [[_number(row.get(metric)) for metric in objectives] for row in rows], dtype=float
    ).reshape(len(rows), len(objectives))
    signs = np.array([-1.0 if mode == "max" else 1.0 for mode in objectives.values()])
    values = values * signs
    values[~np.isfinite(values)] = np.inf
    return values


def _number(value: object) -> float:
    return float(value) if isinstance(value, (int, float)) else float("nan")


def nondominated_ranks(loss: np.ndarray) -> np.ndarray:
    """Rank 0 for the Pareto front, 1 for the front once rank 0 is removed, and so on."""
    if len(loss) == 0:
        return np.zeros(0, dtype=int)
    finite = np.where(np.isfinite(loss), loss, np.finfo(float).max)
    return _fast_non_domination_rank(finite)


def epsilon_net_order(loss: np.ndarray, first: int = 0) -> np.ndarray:
    """Indices of the points in farthest-first order: the point best on objective `first`, then
    each time the point farthest from all points already chosen (Clarkson's epsilon-net, as
    Salinas et al. 2021 order a Pareto front; Syne Tune's `compute_epsilon_net`).

    Distances are measured after scaling each objective to [0, 1] over these points, so the order
    does not depend on the objectives' units (seconds or milliseconds). Ties go to the point that
    comes first in `loss`.
    """
    n = len(loss)
    if n == 0:
        return np.zeros(0, dtype=int)
    scaled = _unit_scaled(loss)
    order = [int(np.argmin(scaled[:, first]))]
    nearest = np.linalg.norm(scaled - scaled[order[0]], axis=1)
    nearest[order[0]] = -1.0
    for _ in range(n - 1):
        chosen = int(np.argmax(nearest))
        order.append(chosen)
        nearest = np.minimum(nearest, np.linalg.norm(scaled - scaled[chosen], axis=1))
        nearest[order] = -1.0
    return np.array(order)


def _unit_scaled(loss: np.ndarray) -> np.ndarray:
    """Each column mapped to [0, 1] over its finite values; a non-finite value (a missing or NaN
    objective) counts as 1 unit worse than the worst, and a column with no finite value as 0."""
    scaled = np.zeros(loss.shape)
    for j in range(loss.shape[1]):
        column = loss[:, j]
        finite = np.isfinite(column)
        if not finite.any():
            continue
        low, high = column[finite].min(), column[finite].max()
        span = high - low if high > low else 1.0
        scaled[:, j] = np.where(finite, (column - low) / span, 2.0)
    return scaled


def promotion_order(loss: np.ndarray, first: int = 0) -> np.ndarray:
    """Indices best first: by non-dominated front, then within each front in epsilon-net order
    starting from the point best on objective `first` (Syne Tune's `NonDominatedPriority`)."""
    ranks = nondominated_ranks(loss)
    order: list[int] = []
    for rank in np.unique(ranks):
        members = np.flatnonzero(ranks == rank)
        order.extend(members[epsilon_net_order(loss[members], first)].tolist())
    return np.array(order, dtype=int)


def promotion_rank(newcomer: np.ndarray, recorded: np.ndarray, first: int = 0) -> int:
    """How many of the `recorded` vectors come before `newcomer` in `promotion_order` (0 = best).

    The answer depends only on the vectors, never on the order they were recorded in: the
    recorded vectors are sorted by value first, and the newcomer goes ahead of them, so a tie
    (an identical vector, or an equal distance in the epsilon-net) is resolved in its favour.
    """
    recorded = np.asarray(recorded, dtype=float).reshape(-1, len(newcomer))
    by_value = recorded[np.lexsort(recorded.T[::-1])] if len(recorded) else recorded
    points = np.vstack([np.asarray(newcomer, dtype=float)[None, :], by_value])
    return int(np.flatnonzero(promotion_order(points, first) == 0)[0])


def knee_index(loss: np.ndarray) -> int:
    """The front point closest to the ideal point after scaling each objective to [0, 1].

    Call it with front points only. With one objective it is simply the best point.
    """
    low, high = loss.min(axis=0), loss.max(axis=0)
    span = np.where(high > low, high - low, 1.0)
    scaled = (loss - low) / span
    return int(np.argmin(np.linalg.norm(scaled, axis=1)))


def reference_point(loss: np.ndarray, margin: float = 0.1) -> np.ndarray:
    """The nadir (worst value of each objective) pushed out by `margin` of the range."""
    finite = loss[np.all(np.isfinite(loss), axis=1)]
    worst, best = finite.max(axis=0), finite.min(axis=0)
    span = np.where(worst > best, worst - best, np.maximum(np.abs(worst), 1.0))
    return worst + margin * span


def hypervolume(loss: np.ndarray, reference: np.ndarray) -> float:
    """Volume dominated by the points and bounded by `reference` (in loss space).

    Points that do not dominate the reference point contribute nothing.
    """
    inside = loss[np.all(loss <= reference, axis=1)] if len(loss) else loss
    if len(inside) == 0:
        return 0.0
    return float(compute_hypervolume(inside, np.asarray(reference, dtype=float)))


def hypervolume_curve(loss: np.ndarray, reference: np.ndarray) -> list[float]:
    """The hypervolume of every prefix of `loss` (rows in the order the points came): element k
    is the hypervolume of the first k + 1 points.

    Only a point that no earlier point weakly dominates can change it, and then only the
    prefix's non-dominated points count: the curve costs one hypervolume of the current front
    per change of the front, not one of the whole prefix per point.
    """
    curve: list[float] = []
    front = np.empty((0, loss.shape[1]))
    value = 0.0
    for point in loss:
        if not np.any(np.all(front <= point, axis=1)):
            front = np.vstack([front[~np.all(point <= front, axis=1)], point])
            value = hypervolume(front, reference)
        curve.append(value)
    return curve
