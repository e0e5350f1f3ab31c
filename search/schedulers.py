"""Early-stopping schedulers that remember whom they stopped.

A trial stopped early ran fewer epochs than planned; its MLflow run ends KILLED and its metrics
are partial. The scheduler is the one authority on that, so it keeps the record.
"""

from __future__ import annotations

from typing import Any

from ray.tune.schedulers import ASHAScheduler
from ray.tune.schedulers import TrialScheduler


class RecordingASHA(ASHAScheduler):
    """Ray's asynchronous successive halving, plus `stopped_early`: ids of trials it cut short.

    Args:
        time_attr: the result entry that counts training progress (the trainable's `epoch`).
        max_t: epochs of a trial that is never stopped.
        **kwargs: passed to `ASHAScheduler` (metric, mode, grace_period, reduction_factor).
    """

    def __init__(self, *, time_attr: str = "epoch", max_t: int, **kwargs: Any) -> None:
        super().__init__(time_attr=time_attr, max_t=max_t, **kwargs)
        self.stopped_early: set[str] = set()

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        decision = super().on_trial_result(tune_controller, trial, result)
        if decision == TrialScheduler.STOP and result.get(self._time_attr, 0) < self._max_t:
            self.stopped_early.add(trial.trial_id)
        return decision
