"""Capping: stop a trial once none of its later recipes can reach the front over recipes.

A trial's training time only grows, so its recipe after a later epoch `j` costs at least its
time now plus `j - k` more epochs. What it can still gain by then is bounded by the largest
gain any trial observed so far made from epoch `k` to epoch `j` (widened by `slack`). If the
front already holds, for every later epoch `j`, a recipe at most that time that beats this
bound in every other objective, every later recipe of the trial is dominated: training it on
buys nothing the study does not already have. This is adaptive capping (ParamILS, SMAC: stop a
run once it is slower than the incumbent) turned to a front over recipes.

The rule never stops a trial while any of its later epochs could still reach the front as far
as the curves seen so far can tell, and it says nothing (the trial goes on) until at least
`min_curves` trials have run from epoch `k` to each later epoch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from search.methods.pareto import losses
from trainables.contract import EPOCH
from trainables.contract import TRAIN_TIME_S

# Chosen on held-out seeds (100-119) of the simulated MNIST and breast-cancer tables
# (`python -m benchmarks.simulate --experiment capping`, BENCHMARKS.md).
SLACK = 0.5
MIN_CURVES = 5
TIE = 1e-9  # a recipe only level with the bound (up to rounding) does not dominate it


class RecipeCapping:
    """The capping rule over a study's reports (one per trial per epoch).

    Args:
        objectives: metric -> "max" or "min"; one of them is `time_metric` (minimised).
        max_t: the epochs of a trial that is never stopped.
        time_metric: the cumulative training time each report carries.
        slack: the gain bound is the largest observed gain times `1 + slack`.
        min_curves: trials that must have run from epoch `k` to a later epoch `j` before the
            rule judges epoch `k` against epoch `j`.
    """

    def __init__(
        self,
        objectives: Mapping[str, str],
        *,
        max_t: int,
        time_metric: str = TRAIN_TIME_S,
        slack: float = SLACK,
        min_curves: int = MIN_CURVES,
    ) -> None:
        if objectives.get(time_metric) != "min":
            raise ValueError(f"Capping needs {time_metric!r} among the objectives, minimised; got objectives={dict(objectives)!r}.")
        if slack < 0 or min_curves < 1:
            raise ValueError(f"Capping needs slack >= 0 and min_curves >= 1, but got {slack=}, {min_curves=}.")
        # Quality objectives first, the time last.
        self.objectives = {**{m: d for m, d in objectives.items() if m != time_metric}, time_metric: "min"}
        self.max_t = max_t
        self.slack = slack
        self.min_curves = min_curves
        self.curves: dict[str, dict[int, np.ndarray]] = {}  # trial -> epoch -> losses (time last)
        self._recipes: list[np.ndarray] = []

    def record(self, trial_id: str, result: Mapping[str, Any]) -> np.ndarray | None:
        """Record a report; return its losses, or None if it lacks an objective or an epoch."""
        if EPOCH not in result or any(not isinstance(result.get(m), (int, float)) for m in self.objectives):
            return None
        vector = losses([result], self.objectives)[0]
        if not np.all(np.isfinite(vector)):
            return None
        self.curves.setdefault(trial_id, {})[int(result[EPOCH])] = vector
        self._recipes.append(vector)
        return vector

    def gain(self, k: int, j: int) -> np.ndarray | None:
        """The largest decrease of each quality loss from epoch `k` to epoch `j` seen in any
        trial, or None while fewer than `min_curves` trials ran both."""
        drops = [curve[k][:-1] - curve[j][:-1] for curve in self.curves.values() if k in curve and j in curve]
        if len(drops) < self.min_curves:
            return None
        return np.max(drops, axis=0)

    def epoch_time(self, trial_id: str, k: int) -> float:
        """A low estimate of the trial's time per later epoch: its fastest epoch after the first;
        after only its first (which includes start-up), that times the lowest ratio of second to
        first epoch any trial showed (0 until `min_curves` trials show one)."""
        curve = self.curves[trial_id]
        times = [curve[e][-1] for e in range(1, k + 1) if e in curve]
        steps = np.diff(times)
        if len(steps):
            return float(max(np.min(steps), 0.0))
        ratios = [c[2][-1] / c[1][-1] - 1 for c in self.curves.values() if 1 in c and 2 in c and c[1][-1] > 0]
        if len(ratios) < self.min_curves:
            return 0.0
        return float(max(min(ratios), 0.0) * times[0]) if times else 0.0

    def capped(self, trial_id: str, result: Mapping[str, Any]) -> bool:
        """Record `result` and say whether every later recipe of the trial is dominated."""
        vector = self.record(trial_id, result)
        if vector is None:
            return False
        k = int(result[EPOCH])
        if k >= self.max_t:
            return False
        recipes = np.array(self._recipes)
        step = self.epoch_time(trial_id, k)
        for j in range(k + 1, self.max_t + 1):
            gain = self.gain(k, j)
            if gain is None:
                return False
            bound = vector[:-1] - np.maximum(gain, 0.0) * (1 + self.slack) - np.minimum(gain, 0.0)
            earliest = vector[-1] + (j - k) * step
            faster = recipes[recipes[:, -1] <= earliest]
            if not np.any(np.all(faster[:, :-1] < bound - TIE, axis=1)):
                return False  # epoch j could still reach the front
        return True
