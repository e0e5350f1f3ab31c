"""Warm start: a new study's searcher learns from the trials earlier studies ran.

An earlier trial is told to the new searcher (`TruthfulOptunaSearch.tell_earlier`) only where
what it measured means the same in the new study; what does not fit is skipped and counted,
never guessed:

- its configuration fits the new space: every parameter the new space searches (and whose
  condition holds) was set and lies in the new range or among the new options; it set no
  parameter the new space leaves to the trainable; and every constant the new study passes
  (`epochs` included: a learning-rate or pruning schedule spans the epochs) is the one it ran
  with. Only `seed` may differ: another seed is another draw of the same measurement.
- it ended: finished, or stopped early (told as this study tells its own stopped trials);
  failed and unfinished trials are skipped;
- it measured every objective of the new study, as a finite number;
- it comes from a study of the same trainable (when the record names it).

`configurations_to_try_first` gives the fitting configurations of the earlier fronts, knee
first, for a study that tries them before the searcher suggests.
"""

from __future__ import annotations

import collections
import dataclasses
import inspect
import math
from collections.abc import Iterable
from collections.abc import Mapping
from typing import TYPE_CHECKING
from typing import Any

import optuna

from search.space import SPACE_MODULE_PREFIX
from search.space import SearchSpace
from search.space import applies
from search.space import same_value

if TYPE_CHECKING:
    from search.methods.searchers import TruthfulOptunaSearch

# Configuration entries that may differ between an earlier trial and the new study.
FREE_CONSTANTS = ("seed",)
# Why an earlier trial was skipped, in the order the summary lists them.
SKIPS = ("outside the space", "other settings", "objective missing", "failed", "did not end", "other trainable")
# The Optuna user attribute naming where a told trial came from ("experiment/study/trial").
WARM_START_ATTR = "warm_start_from"
# Searchers whose Optuna sampler draws random start-up trials (`n_startup_trials`), by name.
START_UP = {"tpe": "TPESampler", "gp": "GPSampler"}


@dataclasses.dataclass(frozen=True)
class EarlierTrial:
    """A trial of an earlier study, as its record keeps it."""

    trial: str  # its name in that study, e.g. "trial-003"
    status: str  # finished, stopped, failed, running, interrupted, cut off
    config: Mapping[str, Any]  # what it was run with (values, or their text as MLflow keeps them)
    metrics: Mapping[str, float]  # its final values (`epoch`: the epochs it ran)
    on_front: bool = False
    knee: bool = False


@dataclasses.dataclass(frozen=True)
class EarlierStudy:
    """An earlier study to start from: "experiment/study", its trainable (None if unrecorded)
    and its trials."""

    name: str
    trainable: str | None
    trials: tuple[EarlierTrial, ...]


class Misfit(Exception):
    """Why an earlier trial cannot be told: `kind` is one of `SKIPS`."""

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(detail or kind)
        self.kind = kind
        self.detail = detail


@dataclasses.dataclass
class WarmStart:
    """What a warm start told the searcher and what it skipped: one row per earlier trial
    (`source`, `trial`, `status`, `told_as` or "", `skipped` kind or "", `detail`)."""

    sources: list[str]
    rows: list[dict[str, str]] = dataclasses.field(default_factory=list)
    first: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # front configurations enqueued to run first

    @property
    def told(self) -> int:
        return sum(1 for row in self.rows if row["told_as"])

    @property
    def skipped(self) -> int:
        return len(self.rows) - self.told

    def summary(self) -> str:
        """One paragraph for the terminal: the sources, what was told and what was skipped, why."""
        told = collections.Counter(row["told_as"] for row in self.rows if row["told_as"])
        how = ", ".join(f"{n} {kind}" for kind, n in told.most_common())
        text = f"Warm start from {', '.join(self.sources)}: {self.told} earlier trials told to the searcher" + (f" ({how})" if how else "")
        if self.skipped:
            reasons = []
            for kind in SKIPS:
                details = collections.Counter(row["detail"] for row in self.rows if row["skipped"] == kind)
                if details:
                    example, _ = details.most_common(1)[0]
                    reasons.append(f"{sum(details.values())} {kind}" + (f" (e.g. {example})" if example else ""))
            text += f"; {self.skipped} skipped: " + "; ".join(reasons)
        if self.first:
            text += f". {len(self.first)} of their front configurations run first"
        return text + "."

    def table(self) -> Any:
        import pandas as pd

        return pd.DataFrame(self.rows, columns=["source", "trial", "status", "told_as", "skipped", "detail"])


def fit(config: Mapping[str, Any], space: SearchSpace) -> dict[str, Any]:
    """The searched parameters of `config` as `space` holds them; `Misfit` if `config` does
    not mean the same in `space` (see the module's rules)."""
    params: dict[str, Any] = {}
    for name, domain in space.params.items():
        value = config.get(name)
        if applies(domain.when, params):
            if _missing(value):
                raise Misfit("other settings", f"{name} unset")
            try:
                params[name] = domain.inside(name, value)
            except ValueError as error:
                raise Misfit("outside the space", str(error)) from None
        elif not _missing(value):
            raise Misfit("other settings", f"{name}={value} where this study leaves it unset")
    constants = space.trial_constants
    for key, value in constants.items():
        if key in FREE_CONSTANTS:
            continue
        if _missing(config.get(key)):
            raise Misfit("other settings", f"{key} unrecorded (this study sets {value!r})")
        if not same_value(value, config[key]):
            raise Misfit("other settings", f"{key}={config[key]} (this study sets {value!r})")
    for key, value in config.items():
        if key not in space.params and key not in constants and not _missing(value):
            raise Misfit("other settings", f"{key}={value} (this study leaves it to the trainable)")
    return params


def measured(trial: EarlierTrial, objectives: Iterable[str]) -> tuple[dict[str, float], bool]:
    """What the searcher hears of an ended earlier trial: its objectives (and `epoch`), and
    whether it was stopped early; `Misfit` if it did not end or lacks an objective."""
    if trial.status == "failed":
        raise Misfit("failed")
    if trial.status not in ("finished", "stopped"):
        raise Misfit("did not end", trial.status)
    result: dict[str, float] = {}
    for metric in objectives:
        value = trial.metrics.get(metric)
        if value is None:
            raise Misfit("objective missing", f"{metric} unmeasured")
        if not math.isfinite(float(value)):
            raise Misfit("objective missing", f"{metric} = {value}")
        result[metric] = float(value)
    if not _missing(trial.metrics.get("epoch")):
        result["epoch"] = float(trial.metrics["epoch"])
    return result, trial.status == "stopped"


def tell(
    searcher: TruthfulOptunaSearch, space: SearchSpace, studies: Iterable[EarlierStudy], *, front_first: bool = False, own_start_up: bool = True
) -> WarmStart:
    """Tell `searcher` every earlier trial that fits `space`, before it suggests anything; with
    `front_first`, also enqueue the fitting configurations of the earlier fronts (knee first,
    each once) to be suggested first (after any enqueued before).

    With `own_start_up` (for the space's own sampler, not one a user passed), a TPE or GP
    sampler still draws its random start-up trials in the new space: the told trials are added
    to its `n_startup_trials`. Told trials cover only where the spaces overlap; counted towards
    the start-up, they left the new part of the space unexplored and made the warm start lose to
    a cold one (`python -m benchmarks.simulate --experiment warm-start`)."""
    studies = list(studies)
    warm = WarmStart([study.name for study in studies])
    trainable = trainable_name(space)
    distributions = {name: domain.distribution() for name, domain in space.params.items()}
    front: list[tuple[bool, dict[str, Any]]] = []
    for study in studies:
        for trial in study.trials:
            row = {"source": study.name, "trial": trial.trial, "status": trial.status, "told_as": "", "skipped": "", "detail": ""}
            try:
                if study.trainable is not None and study.trainable != trainable:
                    raise Misfit("other trainable", study.trainable)
                params = fit(trial.config, space)
                result, stopped = measured(trial, space.objectives)
            except Misfit as misfit:
                row.update(skipped=misfit.kind, detail=misfit.detail)
            else:
                present = {name: distributions[name] for name in params}
                row["told_as"] = searcher.tell_earlier(
                    params, present, result, stopped=stopped, user_attrs={WARM_START_ATTR: f"{study.name}/{trial.trial}"}
                )
                if trial.on_front:
                    front.append((trial.knee, params))
            warm.rows.append(row)
    if own_start_up:
        keep_own_start_up(searcher, space)
    if front_first:
        seen: list[dict[str, Any]] = []
        for _, params in sorted(front, key=lambda pair: not pair[0]):  # knees first, then in order
            if params not in seen:
                seen.append(params)
        warm.first = seen
        searcher.enqueue(seen, space)
    return warm


def keep_own_start_up(searcher: TruthfulOptunaSearch, space: SearchSpace) -> None:
    """Give a TPE or GP sampler (the space's, seeded as `searcher.seed`) a random start-up of
    its own in a warm-started study: the told trials in its Optuna study are added to
    `n_startup_trials`. Also for a warm-started study resumed, whose sampler is made anew."""
    told = sum(1 for trial in searcher.optuna_study.get_trials(deepcopy=False) if WARM_START_ATTR in trial.user_attrs)
    if told and space.searcher in START_UP:
        from search.methods.searchers import make_sampler

        start_up = inspect.signature(getattr(optuna.samplers, START_UP[space.searcher])).parameters["n_startup_trials"].default
        searcher.optuna_study.sampler = make_sampler(space.searcher, searcher.seed, n_startup_trials=start_up + told)


def trainable_name(space: SearchSpace) -> str:
    """How a study records its trainable, for a later warm start to check: `module.qualname`,
    or the bare name of one defined in a space file (imported under a name of the file's)."""
    name = getattr(space.trainable, "__qualname__", repr(space.trainable))
    module = getattr(space.trainable, "__module__", None) or ""
    return name if not module or module.startswith(SPACE_MODULE_PREFIX) else f"{module}.{name}"


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))
