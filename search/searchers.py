"""Searchers: Optuna samplers behind Ray Tune, told only what is true.

Ray's `OptunaSearch` tells Optuna that a trial the scheduler stopped early COMPLETED with its
partial values: a trial cut after one epoch then looks fast, and the sampler learns from it as if
it were a full-budget result. `TruthfulOptunaSearch` tells such trials as PRUNED (Optuna's own
word for "stopped early by a pruner"; TPE ranks pruned trials below every complete one, NSGA-II
leaves them out of its population), and trials whose objectives are NaN or infinite as FAILED.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import optuna
from optuna.trial import TrialState
from ray.tune.search.optuna import OptunaSearch

from search.errors import SpaceError
from search.space import SEARCHERS
from search.space import SearchSpace
from search.space import typed_params


class TruthfulOptunaSearch(OptunaSearch):
    """`OptunaSearch` that reports early-stopped trials as PRUNED and NaN results as FAILED.

    Args:
        stopped_early: tells, by Ray trial id, whether the scheduler stopped the trial early.
        **kwargs: passed to `OptunaSearch` (space, metric, mode, sampler).
    """

    def __init__(self, *, stopped_early: Callable[[str], bool], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._stopped_early = stopped_early

    def on_trial_complete(
        self, trial_id: str, result: dict | None = None, error: bool = False
    ) -> None:
        if result and self._stopped_early(trial_id):
            result = None  # no values and no error: OptunaSearch tells it as PRUNED
        elif result and not all(_finite(result.get(m)) for m in self.metric):
            result, error = None, True  # told as FAIL
        super().on_trial_complete(trial_id, result, error)

    def tell_history(self, rows: list[dict[str, Any]], space: SearchSpace) -> None:
        """Teach Optuna what an interrupted study measured, as it would have been told live:
        full-budget trials COMPLETE with their objectives, early-stopped ones PRUNED, failed
        ones FAIL."""
        distributions = {name: domain.distribution() for name, domain in space.params.items()}
        for row in rows:
            params, present = typed_params(row, distributions)
            values = [row.get(metric) for metric in space.objectives]
            state = {"stopped": TrialState.PRUNED, "failed": TrialState.FAIL}.get(row["status"], TrialState.COMPLETE)
            if state == TrialState.COMPLETE and not all(_finite(v) for v in values):
                state = TrialState.FAIL
            self._ot_study.add_trial(
                optuna.trial.create_trial(
                    params=params,
                    distributions=present,
                    values=[float(v) for v in values] if state == TrialState.COMPLETE else None,
                    state=state,
                )
            )

    def enqueue(self, configs: list[dict[str, Any]], space: SearchSpace) -> None:
        """Suggest these configurations first (trials an interruption cut off, to run again)."""
        distributions = {name: domain.distribution() for name, domain in space.params.items()}
        for config in configs:
            self._ot_study.enqueue_trial(typed_params(config, distributions)[0])


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def variant_generator(space: SearchSpace, first_configs: list[dict[str, Any]] | None = None) -> tuple[Any, dict[str, Any]]:
    """Ray Tune's own random search: its BasicVariantGenerator and the `param_space` it samples
    (the searched parameters as Tune distributions, plus the constants)."""
    from ray import tune
    from ray.tune.search.basic_variant import BasicVariantGenerator

    from search.space import Choice
    from search.space import Float

    def distribution(domain: Any) -> Any:
        if isinstance(domain, Choice):
            return tune.choice(list(domain.options))
        if isinstance(domain, Float):
            if domain.log:
                return tune.loguniform(domain.low, domain.high)
            if domain.step is not None:
                return tune.quniform(domain.low, domain.high, domain.step)
            return tune.uniform(domain.low, domain.high)
        if domain.log:
            return tune.lograndint(domain.low, domain.high + 1)  # upper bound exclusive
        return tune.qrandint(domain.low, domain.high, domain.step)  # upper bound inclusive

    param_space = {name: distribution(domain) for name, domain in space.params.items()}
    param_space.update(space.trial_constants)
    generator = BasicVariantGenerator(
        points_to_evaluate=list(first_configs or []) or None,
        max_concurrent=space.max_concurrent,
        random_state=space.seed,
    )
    return generator, param_space


def make_sampler(kind: str, seed: int) -> optuna.samplers.BaseSampler:
    """A seeded Optuna sampler: "tpe" (default), "nsga2" or "random"."""
    if kind == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if kind == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    if kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise SpaceError(f"Unknown searcher {kind!r}; choose one of {SEARCHERS}.")
