"""Pareto arithmetic on objective vectors: non-dominated sorting, crowding, knee, hypervolume.

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


def crowding_distance(loss: np.ndarray) -> np.ndarray:
    """NSGA-II crowding distance within one set of points: larger means more isolated.

    Boundary points of each objective get infinity, so extremes of a front are kept.
    """
    n, m = loss.shape
    distance = np.zeros(n)
    if n <= 2:
        return np.full(n, np.inf)
    for j in range(m):
        order = np.argsort(loss[:, j], kind="stable")
        column = loss[order, j]
        span = column[-1] - column[0]
        distance[order[0]] = distance[order[-1]] = np.inf
        if span > 0 and np.isfinite(span):
            distance[order[1:-1]] += (column[2:] - column[:-2]) / span
    return distance


def promotion_order(loss: np.ndarray) -> np.ndarray:
    """Indices best first: by non-domination rank, then by crowding distance within a rank."""
    ranks = nondominated_ranks(loss)
    crowding = np.zeros(len(loss))
    for rank in np.unique(ranks):
        members = np.flatnonzero(ranks == rank)
        crowding[members] = crowding_distance(loss[members])
    return np.lexsort((-crowding, ranks))


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
