"""Early-stopping schedulers that remember whom they stopped.

A trial stopped early ran fewer epochs than planned; its MLflow run ends KILLED and its metrics
are partial. The scheduler is the one authority on that, so it keeps the record.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

import numpy as np
from ray.tune.schedulers import ASHAScheduler
from ray.tune.schedulers import FIFOScheduler
from ray.tune.schedulers import TrialScheduler

from search.errors import SpaceError
from search.methods.capping import RecipeCapping
from search.methods.pareto import losses
from search.methods.pareto import promotion_rank
from search.space import SCHEDULERS
from trainables.contract import COMPLETE
from trainables.contract import EPOCH


# A trainable's last report carries `complete: True`: the trial ends on its own there (all its
# epochs, or its own early stopping). A rung it reaches then cannot stop it early.


class RecordingASHA(ASHAScheduler):
    """Ray's asynchronous successive halving, plus `stopped_early`: ids of trials it cut short.

    Args:
        time_attr: the result entry that counts training progress (the trainable's `epoch`).
        max_t: epochs of a trial that is never stopped.
        **kwargs: passed to `ASHAScheduler` (metric, mode, grace_period, reduction_factor).
    """

    def __init__(self, *, time_attr: str = EPOCH, max_t: int, **kwargs: Any) -> None:
        super().__init__(time_attr=time_attr, max_t=max_t, **kwargs)
        self.stopped_early: set[str] = set()
        self.stopped_at_rung: Counter[int] = Counter()

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        decision = super().on_trial_result(tune_controller, trial, result)
        if result.get(COMPLETE):
            return TrialScheduler.CONTINUE  # recorded at its rung, and ending anyway
        if decision == TrialScheduler.STOP and result.get(self._time_attr, 0) < self._max_t:
            self.stopped_early.add(trial.trial_id)
            self.stopped_at_rung[int(result[self._time_attr])] += 1
        return decision


class NoEarlyStopping(FIFOScheduler):
    """Every trial runs all its epochs (first in, first out); nothing is ever stopped early."""

    def __init__(self) -> None:
        super().__init__()
        self.stopped_early: set[str] = set()
        self.stopped_at_rung: Counter[int] = Counter()


def rung_milestones(grace_period: int, reduction_factor: int, max_t: int) -> list[int]:
    """Epochs at which successive halving compares trials: grace_period * rf**k below max_t."""
    milestones = []
    milestone = grace_period
    while milestone < max_t:
        milestones.append(milestone)
        milestone *= reduction_factor
    return milestones


class MultiObjectiveASHA(FIFOScheduler):
    """Asynchronous successive halving that promotes by Pareto dominance (MO-ASHA).

    When a trial reaches a rung (`grace_period * reduction_factor**k` epochs), its objective
    vector is ranked among the vectors recorded at that rung before it, and recorded there. The
    ranking is Syne Tune's `NonDominatedPriority` (Schmucker et al. 2021; Salinas et al. 2021):
    non-dominated fronts first, and within a front an epsilon-net order that starts from the
    point best on the first objective (`search.methods.pareto.promotion_order`). The trial goes on if
    its 0-based position `p` among the `n` vectors (itself included) satisfies
    `p / n <= 1 / reduction_factor`, so the first trial at a rung always goes on, and a tie is
    resolved in the newcomer's favour. Decisions are never revisited.

    The ranking depends only on the vectors at the rung, never on the order they arrived in.
    Two differences from Syne Tune 0.16's `MOASHA`, both intended (see `tests/test_schedulers.py`):
    Syne Tune uses the epsilon-net's *order* (which index comes first) as if it were each
    vector's *priority*, so in rungs of three or more it can rank the newcomer by another
    trial's place; and it measures epsilon-net distances in the objectives' own units, which
    lets seconds outweigh accuracy. Here each vector gets its own position, and distances are
    taken after scaling each objective to [0, 1] within the front.

    Args:
        objectives: metric -> "max" or "min", two or more (one works too and is plain ASHA).
        time_attr: the result entry that counts progress (the trainable's `epoch`).
        max_t: epochs of a trial that is never stopped.
        grace_period: the first rung.
        reduction_factor: keep the top 1/reduction_factor at each rung.
    """

    def __init__(
        self,
        objectives: Mapping[str, str],
        *,
        time_attr: str = EPOCH,
        max_t: int,
        grace_period: int = 1,
        reduction_factor: int = 3,
    ) -> None:
        super().__init__()
        self.objectives = dict(objectives)
        self.time_attr = time_attr
        self.max_t = max_t
        self.reduction_factor = reduction_factor
        self.milestones = rung_milestones(grace_period, reduction_factor, max_t)
        self.rungs: dict[int, dict[str, np.ndarray]] = {m: {} for m in self.milestones}
        self.stopped_early: set[str] = set()
        self.stopped_at_rung: Counter[int] = Counter()

    def promote(self, rung: int, trial_id: str, result: Mapping[str, Any]) -> bool:
        """Rank `result` among the vectors recorded at `rung`, record it, and say whether the
        trial may go on."""
        recorded = self.rungs[rung]
        vector = losses([result], self.objectives)[0]
        position = promotion_rank(vector, np.array(list(recorded.values())))
        recorded[trial_id] = vector
        return position / len(recorded) <= 1 / self.reduction_factor

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        # Objectives a trainable measures only at the end (model size, latency) are absent at
        # the rungs; they count as equal for every trial there, so the others decide.
        if self.time_attr not in result or not any(m in result for m in self.objectives):
            return TrialScheduler.CONTINUE
        progress = result[self.time_attr]
        if progress >= self.max_t:
            return TrialScheduler.STOP
        for rung in reversed(self.milestones):
            if progress < rung or trial.trial_id in self.rungs[rung]:
                continue
            if not self.promote(rung, trial.trial_id, result) and not result.get(COMPLETE):
                self.stopped_early.add(trial.trial_id)
                self.stopped_at_rung[rung] += 1
                return TrialScheduler.STOP
            break
        return TrialScheduler.CONTINUE

    def debug_string(self) -> str:
        counts = ", ".join(f"epoch {r}: {len(self.rungs[r])}" for r in self.milestones)
        return f"MultiObjectiveASHA: trials recorded per rung ({counts})"


class Capped(TrialScheduler):
    """`inner`, a scheduler of the study's, whose trials are also stopped once capping
    (`search.methods.capping.RecipeCapping`) finds every later recipe of theirs dominated.

    Every report reaches both: `inner` decides first; a trial it lets go on is stopped if it is
    capped. The record of whom it stopped is `inner`'s, so the study reads one; `capped_at`
    counts the stops capping made, per epoch.
    """

    def __init__(self, inner: Any, capping: RecipeCapping) -> None:
        super().__init__()
        self.inner = inner
        self.capping = capping
        self.stopped_early: set[str] = inner.stopped_early
        self.stopped_at_rung: Counter[int] = inner.stopped_at_rung
        self.capped_at: Counter[int] = Counter()

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        return self.inner.set_search_properties(metric, mode, **spec)

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        self.inner.on_trial_add(tune_controller, trial)

    def on_trial_error(self, tune_controller: Any, trial: Any) -> None:
        self.inner.on_trial_error(tune_controller, trial)

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        decision = self.inner.on_trial_result(tune_controller, trial, result)
        capped = self.capping.capped(trial.trial_id, result)
        if decision == TrialScheduler.STOP or not capped or result.get(COMPLETE):
            return decision
        epoch = int(result[EPOCH])
        self.stopped_early.add(trial.trial_id)
        self.stopped_at_rung[epoch] += 1
        self.capped_at[epoch] += 1
        return TrialScheduler.STOP

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict) -> None:
        self.inner.on_trial_complete(tune_controller, trial, result)

    def on_trial_remove(self, tune_controller: Any, trial: Any) -> None:
        self.inner.on_trial_remove(tune_controller, trial)

    def choose_trial_to_run(self, tune_controller: Any) -> Any:
        return self.inner.choose_trial_to_run(tune_controller)

    def debug_string(self) -> str:
        stops = sum(self.capped_at.values())
        return f"{self.inner.debug_string()}; capping stopped {stops} trial{'s' * (stops != 1)}"


def make_scheduler(
    kind: str,
    objectives: Mapping[str, str],
    *,
    max_t: int,
    grace_period: int,
    reduction_factor: int,
    capping: Mapping[str, Any] | None = None,
) -> MultiObjectiveASHA | RecordingASHA | NoEarlyStopping | Capped:
    """"mo-asha" (the default, "auto", when there are several objectives), "asha" on the first
    objective (the default for one objective), or "none"; with `capping` (the options of
    `RecipeCapping`, `{}` for its defaults), that scheduler `Capped`."""
    if capping is not None:
        inner = make_scheduler(kind, objectives, max_t=max_t, grace_period=grace_period, reduction_factor=reduction_factor)
        return Capped(inner, RecipeCapping(objectives, max_t=max_t, **capping))
    if kind == "auto":
        kind = "mo-asha" if len(objectives) > 1 else "asha"
    if kind == "mo-asha":
        return MultiObjectiveASHA(
            objectives, max_t=max_t, grace_period=grace_period, reduction_factor=reduction_factor
        )
    if kind == "asha":
        metric, mode = next(iter(objectives.items()))
        return RecordingASHA(
            metric=metric,
            mode=mode,
            max_t=max_t,
            grace_period=grace_period,
            reduction_factor=reduction_factor,
        )
    if kind == "none":
        return NoEarlyStopping()
    raise SpaceError(f"Unknown scheduler {kind!r}; choose one of {SCHEDULERS}.")


class _RecordsStops:
    """Mixed into the class of a user's own Ray Tune scheduler: records whom it stops before
    their last epoch, as the study's own schedulers do (`recording`)."""

    stopped_early: set[str]
    stopped_at_rung: Counter[int]
    recorded_max_t: int

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        decision = super().on_trial_result(tune_controller, trial, result)  # type: ignore[misc]
        epoch = result.get(EPOCH, 0)
        if decision == TrialScheduler.STOP and not result.get(COMPLETE) and epoch < self.recorded_max_t:
            self.stopped_early.add(trial.trial_id)
            self.stopped_at_rung[int(epoch)] += 1
        return decision


def recording(scheduler: TrialScheduler, *, max_t: int) -> TrialScheduler:
    """`scheduler`, any Ray Tune scheduler a user passes (`run_study(scheduler=...)`), as the
    study needs it: keeping `stopped_early` and `stopped_at_rung`, so the trials it stops end
    KILLED and the searcher hears they ran short. The study's own schedulers keep them already;
    another scheduler's class is extended in place with `_RecordsStops` (it stays an instance
    of its class, with its settings and state).

    Its time attribute should be the trainable's `epoch`, and its decisions CONTINUE or STOP
    (a scheduler that pauses trials, such as PBT, is not supported).
    """
    if hasattr(scheduler, "stopped_early") and hasattr(scheduler, "stopped_at_rung"):
        return scheduler
    if not isinstance(scheduler, TrialScheduler):
        raise SpaceError(
            f"Expected a scheduler name (one of {SCHEDULERS}) or a Ray Tune TrialScheduler. "
            f"Received: scheduler={scheduler!r} (of type {type(scheduler).__name__})."
        )
    kind = type(scheduler)
    # The same name (the study run records it), with the record-keeping mixed in.
    scheduler.__class__ = type(kind.__name__, (_RecordsStops, kind), {"__module__": __name__})
    scheduler.stopped_early = set()  # type: ignore[attr-defined]
    scheduler.stopped_at_rung = Counter()  # type: ignore[attr-defined]
    scheduler.recorded_max_t = max_t  # type: ignore[attr-defined]
    return scheduler
