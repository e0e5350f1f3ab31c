"""A simulated-time backend: the product's scheduler and searcher run a study on a table.

`simulate(problem, policy, seed)` runs a study the way Ray Tune runs one, except that trials do
not train: each suggested configuration is looked up in the problem's table (`Problem.curve`),
and its epochs "take" the seconds the table says on a simulated clock, on `problem.workers`
simulated workers. Every decision comes from the policy:

- `ProductPolicy` builds the product's own objects, exactly as `search.study.run_study` does
  (`search.methods.schedulers.make_scheduler`, `search.methods.searchers.make_searcher` behind Ray's
  `ConcurrencyLimiter`), and calls them in the order Ray's `TuneController` does: the
  scheduler's `on_trial_result` decides first, the searcher hears the result only if the trial
  goes on, and when a trial ends (stopped, or its last epoch) the scheduler's and the searcher's
  `on_trial_complete` get its last result.
  With `earlier` studies it is warm-started as `--warm-start` starts it
  (`search.methods.warm_start.tell`; `earlier_study` makes one of a simulated study).
- `SyneTunePolicy` runs Syne Tune's own `MOASHA` (random suggestions, its multi-objective
  successive halving) through the same loop, on the same table and workers: the peer.

Deterministic per seed: the clock is simulated and every random choice is seeded.
"""

from __future__ import annotations

import dataclasses
import heapq
from collections.abc import Callable
from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any
from typing import Protocol

import numpy as np

STOP = "STOP"  # the value of Ray's and Syne Tune's decision to stop a trial


@dataclasses.dataclass(frozen=True)
class Curve:
    """One configuration's course: its report after each epoch, and the simulated seconds each
    epoch takes (the first includes the trial's start-up; the last its final measurements)."""

    reports: tuple[Mapping[str, float], ...]
    seconds: tuple[float, ...]
    fails: bool = False  # the trial raises after its last report (e.g. it diverged)


class Problem(Protocol):
    """A table to search: its space (parameters, objectives, epochs, rungs) and its curves."""

    name: str
    source: str
    third_party: bool
    space: Any  # search.space.SearchSpace
    workers: int
    budget_s: float

    def curve(self, config: Mapping[str, Any]) -> Curve: ...

    def final_losses(self) -> np.ndarray:
        """Every configuration's full-budget objectives as losses (the table's truth)."""
        ...


class Policy(Protocol):
    def suggest(self, trial_id: int) -> dict[str, Any] | None: ...

    def on_result(self, trial_id: int, result: dict[str, Any]) -> str: ...

    def on_end(self, trial_id: int, result: dict[str, Any] | None, error: bool) -> None: ...


@dataclasses.dataclass(frozen=True)
class Ended:
    """A trial that ended before the budget ran out."""

    trial_id: int
    ended_at: float  # simulated seconds since the study started
    status: str  # "finished" (every epoch, or ended on its own), "stopped" or "failed"
    epochs: int
    result: Mapping[str, float]
    config: Mapping[str, Any]


def simulate(problem: Problem, policy: Policy, *, budget_s: float | None = None) -> list[Ended]:
    """Run one simulated study; return the trials that ended within the budget, in order.

    Trials still running when the budget runs out are cut off and not returned, as in a real
    study with `time_budget_s`.
    """
    budget_s = problem.budget_s if budget_s is None else budget_s
    max_t = problem.space.max_epochs
    events: list[tuple[float, int, int]] = []  # (time the epoch ends, trial id, epoch index)
    running: dict[int, tuple[dict[str, Any], Curve]] = {}
    ended: list[Ended] = []
    next_id = 0
    now = 0.0
    exhausted = False
    while True:
        while not exhausted and len(running) < problem.workers:
            config = policy.suggest(next_id)
            if config is None:
                exhausted = not running  # a searcher with nothing running and nothing to offer
                break
            curve = problem.curve(config)
            running[next_id] = (config, curve)
            heapq.heappush(events, (now + curve.seconds[0], next_id, 0))
            next_id += 1
        if not events:
            return ended
        now, trial_id, index = heapq.heappop(events)
        if now > budget_s:
            return ended
        config, curve = running[trial_id]
        last = index == len(curve.reports) - 1
        result = {**curve.reports[index], "epoch": index + 1}
        if last and not curve.fails:
            result["complete"] = True  # what the trainable's last report says
        decision = policy.on_result(trial_id, result)
        if last and curve.fails:
            policy.on_end(trial_id, None, error=True)
            status = "failed"
        elif decision == STOP or last:
            policy.on_end(trial_id, result, error=False)
            status = "finished" if last or index + 1 >= max_t else "stopped"
        else:
            heapq.heappush(events, (now + curve.seconds[index + 1], trial_id, index + 1))
            continue
        del running[trial_id]
        ended.append(Ended(trial_id, now, status, index + 1, result, config))


class ProductPolicy:
    """The product's searcher and scheduler for `space`, wired as `run_study` wires them."""

    def __init__(
        self,
        space: Any,
        *,
        stopped_trials: str | None = None,
        sampler_options: dict[str, Any] | None = None,
        capping_options: dict[str, Any] | None = None,
        earlier: list[Any] | None = None,
        front_first: bool = False,
        own_start_up: bool = True,
        told_recipe: str = "last",
    ) -> None:
        from ray.tune.search import ConcurrencyLimiter

        from search.methods import warm_start
        from search.methods.schedulers import make_scheduler
        from search.methods.searchers import make_searcher

        self.scheduler = make_scheduler(
            space.scheduler,
            space.rung_objectives or space.objectives,
            max_t=space.max_epochs,
            grace_period=space.grace_period,
            reduction_factor=space.reduction_factor,
            capping=(capping_options or {}) if space.uses_capping else None,
        )
        stopped_early = self.scheduler.stopped_early.__contains__
        searcher = make_searcher(space, stopped_early, stopped_trials=stopped_trials, sampler_options=sampler_options, told_recipe=told_recipe)
        if earlier:  # a warm start, as `search.study.phases.make_method` makes one (`earlier`: EarlierStudy)
            self.warm = warm_start.tell(searcher, space, earlier, front_first=front_first, own_start_up=own_start_up)
        self.searcher = ConcurrencyLimiter(searcher, max_concurrent=space.max_concurrent)
        self.trials: dict[int, Any] = {}

    def suggest(self, trial_id: int) -> dict[str, Any] | None:
        config = self.searcher.suggest(str(trial_id))
        if config is None:
            return None
        self.trials[trial_id] = SimpleNamespace(trial_id=str(trial_id))
        self.scheduler.on_trial_add(None, self.trials[trial_id])
        return config

    def on_result(self, trial_id: int, result: dict[str, Any]) -> str:
        decision = self.scheduler.on_trial_result(None, self.trials[trial_id], result)
        if decision != STOP:
            self.searcher.on_trial_result(str(trial_id), result)
        return decision

    def on_end(self, trial_id: int, result: dict[str, Any] | None, error: bool) -> None:
        trial = self.trials.pop(trial_id)
        if error:
            self.scheduler.on_trial_error(None, trial)
            self.searcher.on_trial_complete(str(trial_id), error=True)
        else:
            self.scheduler.on_trial_complete(None, trial, result)
            self.searcher.on_trial_complete(str(trial_id), result=result)


class SyneTunePolicy:
    """Syne Tune 0.16's `MOASHA` (random search + its multi-objective successive halving) on
    the same space, rungs and objectives. It minimises, so "max" objectives are negated."""

    def __init__(self, space: Any, seed: int) -> None:
        from syne_tune.optimizer.schedulers.multiobjective.moasha import MOASHA

        np.random.seed(seed)  # Syne Tune's random suggestions and bracket choice use numpy's global state
        self.objectives = dict(space.objectives)
        self.scheduler = MOASHA(
            config_space={**syne_tune_space(space), **space.trial_constants},
            metrics=list(self.objectives),
            do_minimize=True,
            time_attr="epoch",
            max_t=space.max_epochs,
            grace_period=space.grace_period,
            reduction_factor=space.reduction_factor,
        )
        self.trials: dict[int, Any] = {}

    def suggest(self, trial_id: int) -> dict[str, Any] | None:
        from datetime import datetime

        from syne_tune.backend.trial_status import Trial

        config = self.scheduler.suggest().config
        self.trials[trial_id] = Trial(trial_id=trial_id, config=config, creation_time=datetime(2026, 1, 1))
        self.scheduler.on_trial_add(self.trials[trial_id])
        return config

    def _losses(self, result: Mapping[str, Any]) -> dict[str, Any]:
        signs = {name: -1.0 if mode == "max" else 1.0 for name, mode in self.objectives.items()}
        return {**result, **{name: signs[name] * float(result[name]) for name in self.objectives}}

    def on_result(self, trial_id: int, result: dict[str, Any]) -> str:
        return str(self.scheduler.on_trial_result(self.trials[trial_id], self._losses(result)))

    def on_end(self, trial_id: int, result: dict[str, Any] | None, error: bool) -> None:
        trial = self.trials.pop(trial_id)
        if error or result is None:
            self.scheduler.on_trial_remove(trial)
        else:
            self.scheduler.on_trial_complete(trial, self._losses(result))


def syne_tune_space(space: Any) -> dict[str, Any]:
    """The searched parameters of a `SearchSpace` as Syne Tune domains (no conditions)."""
    from syne_tune.config_space import choice
    from syne_tune.config_space import finrange
    from syne_tune.config_space import loguniform
    from syne_tune.config_space import lograndint
    from syne_tune.config_space import randint
    from syne_tune.config_space import uniform

    from search.space import Choice
    from search.space import Float

    domains = {}
    for name, domain in space.params.items():
        if domain.when is not None:
            raise ValueError(f"Syne Tune's MOASHA cannot search the conditional parameter {name!r}.")
        if isinstance(domain, Choice):
            domains[name] = choice(list(domain.options))
        elif isinstance(domain, Float) and domain.step is not None:
            domains[name] = finrange(domain.low, domain.high, round((domain.high - domain.low) / domain.step) + 1)
        elif isinstance(domain, Float):
            domains[name] = (loguniform if domain.log else uniform)(domain.low, domain.high)
        else:
            domains[name] = (lograndint if domain.log else randint)(domain.low, domain.high)
    return domains


def anytime_hypervolume(
    ended: list[Ended], objectives: Mapping[str, str], scale: Callable[[np.ndarray], np.ndarray], reference: np.ndarray, times: np.ndarray
) -> np.ndarray:
    """Hypervolume of the full-budget trials ended by each of `times` (losses mapped by `scale`)."""
    from search.methods import pareto

    finished = [trial for trial in ended if trial.status == "finished"]
    loss = scale(pareto.losses([trial.result for trial in finished], objectives)) if finished else np.zeros((0, len(objectives)))
    ended_at = np.array([trial.ended_at for trial in finished])
    values = np.zeros(len(times))
    previous_count, previous = -1, 0.0
    for k, time in enumerate(times):
        count = int(np.sum(ended_at <= time))
        if count != previous_count:
            mask = ended_at <= time
            previous = pareto.hypervolume(loss[mask], reference) if count else 0.0
            previous_count = count
        values[k] = previous
    return values


def earlier_study(problem: Problem, ended: list[Ended], name: str = "earlier") -> Any:
    """A simulated study as the record gives an earlier study to a warm start
    (`search.methods.warm_start.EarlierStudy`): each ended trial with its configuration, its
    last report and whether it holds a point of the study's front (over recipes: any epoch)."""
    from search.methods import pareto
    from search.methods.warm_start import EarlierStudy
    from search.methods.warm_start import EarlierTrial
    from search.methods.warm_start import trainable_name

    space = problem.space
    points = []  # (trial index, report) of every point the study's front is over
    for index, trial in enumerate(ended):
        if space.front == "recipes":
            points += [(index, report) for report in problem.curve(trial.config).reports[: trial.epochs]]
        elif trial.status == "finished":
            points.append((index, trial.result))
    on_front, knee = set(), None
    if points:
        loss = pareto.losses([report for _, report in points], space.objectives)
        front = np.flatnonzero(pareto.nondominated_ranks(loss) == 0)
        on_front = {points[k][0] for k in front}
        knee = points[front[pareto.knee_index(loss[front])]][0]
    trials = tuple(
        EarlierTrial(f"trial-{trial.trial_id:03d}", trial.status, dict(trial.config), dict(trial.result), index in on_front, index == knee)
        for index, trial in enumerate(ended)
    )
    return EarlierStudy(name, trainable_name(space), trials)
