"""Search spaces: declared in plain Python space files, validated before anything runs.

A space file defines `SPACE = SearchSpace(...)`. The parameter domains (`Float`, `Int`,
`Choice`) are declarations only; `SearchSpace.suggest` turns them into Optuna `suggest_*` calls.
This module imports neither TensorFlow nor Ray, so loading a space file is instant.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import sys
from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any

from search.errors import SpaceError

if TYPE_CHECKING:
    import optuna

MODES = ("max", "min")
SPACE_MODULE_PREFIX = "_search_space_"  # space files are imported under this module name prefix
# Optuna samplers, all seeded; "variant" is Ray Tune's own random search (BasicVariantGenerator).
SEARCHERS = ("tpe", "nsga2", "random", "gp", "variant")
SCHEDULERS = ("auto", "mo-asha", "asha", "none")  # auto: mo-asha for 2+ objectives, else asha
FRONTS = ("trials", "recipes")  # what the front is over: full-budget trials, or every epoch of every trial


def _check_range(name: str, low: float, high: float, *, log: bool, stepped: bool) -> None:
    """The rules Float and Int ranges share."""
    if not low < high:
        raise SpaceError(
            f"`{name}`: the range is empty or inverted; `low < high` must hold, "
            f"but got low={low}, high={high}."
        )
    if log and low <= 0:
        raise SpaceError(f"`{name}`: a log-scale range needs `low > 0`, but got low={low}.")
    if log and stepped:
        raise SpaceError(f"`{name}`: `step` and `log=True` cannot be combined.")


def _allowed(values: Any) -> list[Any]:
    """The values a `when` condition allows: one value, or a list of them."""
    return values if isinstance(values, list) else [values]


def _number(name: str, value: Any) -> float:
    """A parameter value read back from a record (a number, or its text) as a float; ValueError if it is none."""
    if isinstance(value, bool):
        raise ValueError(f"{name}={value!r} is not a number")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}={value!r} is not a number") from None
    if not math.isfinite(number):
        raise ValueError(f"{name}={value!r} is not a finite number")
    return number


def _on_grid(number: float, low: float, step: float) -> bool:
    ratio = (number - low) / step
    return abs(ratio - round(ratio)) <= 1e-6 * max(1.0, abs(ratio))


def applies(when: Mapping[str, Any] | None, config: Mapping[str, Any]) -> bool:
    """Whether a conditional parameter applies to `config` (the parameters suggested before it)."""
    if when is None:
        return True
    return all(name in config and config[name] in _allowed(allowed) for name, allowed in when.items())


@dataclasses.dataclass(frozen=True)
class Float:
    """A real number in `[low, high]`, sampled on a log scale when `log=True`, or on a grid of `step`.

    `when={"optimizer": "momentum"}` (or a list of values) makes the parameter conditional: it
    is searched only in trials where the named earlier `Choice` took one of those values, and
    is absent from the others (the trainable's default applies there). `Int` and `Choice` take
    `when` too.
    """

    low: float
    high: float
    log: bool = False
    step: float | None = None
    when: Mapping[str, Any] | None = None

    def validate(self, name: str) -> None:
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            raise SpaceError(f"`{name}`: bounds must be finite, but got low={self.low}, high={self.high}.")
        _check_range(name, self.low, self.high, log=self.log, stepped=self.step is not None)
        if self.step is not None and not 0 < self.step <= self.high - self.low:
            raise SpaceError(
                f"`{name}`: `step` must be in (0, high - low], but got step={self.step}."
            )

    def suggest(self, trial: optuna.Trial, name: str) -> float:
        return trial.suggest_float(name, self.low, self.high, log=self.log, step=self.step)

    def distribution(self) -> optuna.distributions.BaseDistribution:
        import optuna

        return optuna.distributions.FloatDistribution(self.low, self.high, log=self.log, step=self.step)

    def candidates(self) -> tuple[Any, ...]:
        return self.low, self.high

    def inside(self, name: str, value: Any) -> float:
        """`value` (a number, or its text as a record keeps it) as this domain holds it;
        ValueError naming the rule if it is outside the range or off the `step` grid."""
        number = _number(name, value)
        if not self.low - 1e-12 * abs(self.low) <= number <= self.high + 1e-12 * abs(self.high):
            raise ValueError(f"{name}={number:g} is outside [{self.low:g}, {self.high:g}]")
        if self.step is not None and not _on_grid(number, self.low, self.step):
            raise ValueError(f"{name}={number:g} is off the grid of step {self.step:g} from {self.low:g}")
        return min(max(number, self.low), self.high)


@dataclasses.dataclass(frozen=True)
class Int:
    """An integer in `[low, high]`, sampled on a log scale when `log=True`."""

    low: int
    high: int
    log: bool = False
    step: int = 1
    when: Mapping[str, Any] | None = None

    def validate(self, name: str) -> None:
        if not (isinstance(self.low, int) and isinstance(self.high, int)):
            raise SpaceError(f"`{name}`: Int bounds must be integers, but got low={self.low!r}, high={self.high!r}.")
        _check_range(name, self.low, self.high, log=self.log, stepped=self.step != 1)

    def suggest(self, trial: optuna.Trial, name: str) -> int:
        return trial.suggest_int(name, self.low, self.high, log=self.log, step=self.step)

    def distribution(self) -> optuna.distributions.BaseDistribution:
        import optuna

        return optuna.distributions.IntDistribution(self.low, self.high, log=self.log, step=self.step)

    def candidates(self) -> tuple[Any, ...]:
        return self.low, self.high

    def inside(self, name: str, value: Any) -> int:
        """`value` (a number, or its text) as this domain holds it; ValueError naming the rule
        if it is not a whole number in the range on the `step` grid."""
        number = _number(name, value)
        if number != round(number):
            raise ValueError(f"{name}={number:g} is not a whole number")
        if not self.low <= number <= self.high:
            raise ValueError(f"{name}={number:g} is outside [{self.low}, {self.high}]")
        if not _on_grid(number, self.low, self.step):
            raise ValueError(f"{name}={number:g} is off the grid of step {self.step} from {self.low}")
        return int(number)


@dataclasses.dataclass(frozen=True)
class Choice:
    """One of a fixed list of values (numbers, strings or booleans)."""

    options: Sequence[Any]
    when: Mapping[str, Any] | None = None

    def validate(self, name: str) -> None:
        if isinstance(self.options, (str, bytes)) or not isinstance(self.options, Sequence):
            raise SpaceError(f"`{name}`: Choice takes a list of options, but got {self.options!r}.")
        if len(self.options) == 0:
            raise SpaceError(f"`{name}`: Choice needs at least one option, but got an empty list.")
        if len(set(map(repr, self.options))) != len(self.options):
            raise SpaceError(f"`{name}`: Choice options must be distinct, but got {list(self.options)}.")

    def suggest(self, trial: optuna.Trial, name: str) -> Any:
        return trial.suggest_categorical(name, list(self.options))

    def distribution(self) -> optuna.distributions.BaseDistribution:
        import optuna

        return optuna.distributions.CategoricalDistribution(list(self.options))

    def candidates(self) -> tuple[Any, ...]:
        return tuple(self.options)

    def inside(self, name: str, value: Any) -> Any:
        """The option `value` is (the option itself, its text as a record keeps it, or the same
        number); ValueError if it is none of them."""
        for option in self.options:
            if same_value(option, value):
                return option
        raise ValueError(f"{name}={value!r} is not among {list(self.options)}")


def same_value(kept: Any, value: Any) -> bool:
    """Whether `value`, as a record gave it back (MLflow keeps text; pandas makes numbers of
    it), is the configuration value `kept`."""
    if kept == value and type(kept) is type(value):
        return True
    if isinstance(kept, bool) or isinstance(value, bool):
        return str(kept) == str(value)
    if isinstance(kept, (int, float)):
        try:
            return float(value) == float(kept)
        except (TypeError, ValueError):
            return False
    return str(kept) == str(value)


Domain = Float | Int | Choice

def _check_signature(trainable: Callable[..., Any]) -> None:
    """A trainable is called `trainable(config, context)` (`trainables.contract`)."""
    import inspect

    try:
        signature = inspect.signature(trainable)
    except (TypeError, ValueError):  # a builtin or C callable: nothing to check
        return
    names = list(signature.parameters)
    if len(names) > 1 and names[1] in ("report", "should_stop"):
        raise SpaceError(
            f"`trainable` takes ({', '.join(names)}), the form before `trainables.contract`: a trainable "
            "is now `train(config, context)` and calls `context.report(metrics)`, "
            "`context.should_stop()`, and finds `context.checkpoint_dir` / `model_dir` / `cache_dir`."
        )
    try:
        signature.bind({}, None)
    except TypeError:
        raise SpaceError(
            f"`trainable` must accept `(config, context)` (see `trainables.contract`), but its "
            f"signature is {signature}."
        ) from None


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    """What a study searches, what it optimises and how big it is by default.

    Args:
        name: the study's name; also the default MLflow experiment name.
        trainable: `trainable(config, context) -> dict`, run once per trial (the contract is
            `trainables.contract`). It receives every searched parameter, every constant and
            `epochs`, calls `context.report(metrics)` once per epoch with an `epoch` entry, and
            returns its final metrics. If it has a `metrics` attribute (names it reports),
            objectives are checked against it; `check_config` judges the space's values.
        params: parameter name -> `Float`, `Int` or `Choice`.
        objectives: metric name -> "max" or "min", one or more. The first is the primary
            objective: the summary is sorted by it, and plain ASHA ranks trials by it.
        constants: configuration passed unchanged to every trial.
        num_samples: trials in the study.
        max_epochs: epochs of a trial that is never stopped early.
        grace_period: epochs every trial runs before ASHA may stop it.
        reduction_factor: ASHA keeps the top 1/reduction_factor of trials at each rung.
        max_concurrent: trials running at once (each takes `cpus_per_trial` CPUs).
        cpus_per_trial: CPUs Ray reserves for a trial; TensorFlow's thread pools match it.
        gpus_per_trial: GPUs Ray reserves for a trial (fractions pack trials on one GPU).
        workers_per_trial: processes a trial trains on; above 1, a Ray Train
            `TensorflowTrainer` with `MultiWorkerMirroredStrategy`, the trial's CPUs and GPUs
            split evenly between its workers (which may sit on different nodes).
        gpu_memory_mb: GPU memory each trial process may use, per GPU; None: a fraction of a
            GPU gets that fraction of its memory, whole GPUs grow their memory as needed.
        seed: seeds the searcher (and every trial's `seed`, unless a constant sets it).
        searcher: "tpe" (default), "nsga2", "random" or "gp" (needs PyTorch, the `gp` extra): the
            Optuna sampler; or "variant": Ray Tune's BasicVariantGenerator (random draws
            without Optuna; no conditional params).
        scheduler: "auto" (default: "mo-asha" with several objectives, else "asha"), "mo-asha",
            "asha" (on the first objective) or "none" (no early stopping).
        max_retries: times a failed trial is started again before it counts as FAILED.
        reference_point: objective -> value bounding the hypervolume (a point every useful trial
            beats, e.g. accuracy 0.9 and 5 s per epoch). Fix it to compare hypervolumes across
            studies; when None, each study derives one from its own worst full-budget values.
        rung_objectives: metric -> "max"/"min" that early stopping compares at its rungs, when
            it cannot be the objectives themselves: objectives measured only when a trial ends
            (deployed size, latency, TFLite accuracy) do not exist at the rungs. Defaults to the
            objectives.
        time_budget_s: wall-clock seconds after which the study stops starting trials and cuts
            off those running (they end KILLED, tagged `cut_off`; they stay off a front over
            trials, and over recipes only the epochs they finished count);
            None runs all `num_samples` trials.
        front: what the Pareto front is over. "trials" (default): full-budget trials, each
            with its figures after its last epoch; the question "which configuration, trained
            for `max_epochs`, is best" (e.g. throughput of one epoch, `epoch_time_s`).
            "recipes": every epoch of every trial, stopped trials included (a recipe is the
            configuration trained until the end of that epoch; `search.methods.recipes`); with a
            cumulative time objective (`train_time_s`) it answers "which configuration reaches
            the accuracy I need in the least training time". Needs objectives the trainable
            reports after every epoch.
        targets: metric -> values, e.g. {"val_accuracy": [0.95, 0.97]}: the study records each
            trial's training time to each value (`time_to_val_accuracy_0.95_s`) and names the
            fastest recipe per target. The direction is the metric's objective direction
            ("max": at least the value), else "max". Needs a front over recipes.
        capping: also stop a trial once every later recipe of it is dominated
            (`search.methods.capping`): its training time only grows, and the largest gain any
            trial made from that epoch on would not take it to the front. None (default): on
            for a front over recipes whose (rung) objectives minimise `train_time_s`, as
            measured in `python -m benchmarks.simulate --experiment capping`; True needs such a
            front; False: off.
    """

    name: str
    trainable: Callable[..., dict[str, float]]
    params: Mapping[str, Domain]
    objectives: Mapping[str, str]
    constants: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    num_samples: int = 16
    max_epochs: int = 8
    grace_period: int = 1
    reduction_factor: int = 3
    max_concurrent: int = 2
    cpus_per_trial: float = 1
    gpus_per_trial: float = 0
    workers_per_trial: int = 1
    gpu_memory_mb: int | None = None
    seed: int = 0
    searcher: str = "tpe"
    scheduler: str = "auto"
    max_retries: int = 0
    reference_point: Mapping[str, float] | None = None
    rung_objectives: Mapping[str, str] | None = None
    time_budget_s: float | None = None
    front: str = "trials"
    targets: Mapping[str, Sequence[float]] | None = None
    capping: bool | None = None

    def __post_init__(self) -> None:
        self.validate()

    @property
    def trial_constants(self) -> dict[str, Any]:
        """What every trial's config holds besides the searched parameters."""
        return {"seed": self.seed, **self.constants, "epochs": self.max_epochs}

    @property
    def primary_metric(self) -> str:
        return next(iter(self.objectives))

    @property
    def primary_mode(self) -> str:
        return self.objectives[self.primary_metric]

    @property
    def recipe_targets(self) -> list[tuple[str, float]]:
        """`targets` as (metric, value) pairs, in order."""
        return [(metric, float(value)) for metric, values in (self.targets or {}).items() for value in values]

    @property
    def uses_capping(self) -> bool:
        """Whether the study caps trials (`capping`, resolved)."""
        return self._cappable if self.capping is None else bool(self.capping)

    @property
    def _cappable(self) -> bool:
        """A front over recipes whose (rung) objectives minimise the training time."""
        from trainables.contract import TRAIN_TIME_S

        return self.front == "recipes" and (self.rung_objectives or self.objectives).get(TRAIN_TIME_S) == "min"

    @property
    def needed_metrics(self) -> frozenset[str]:
        """What the study decides on (objectives and rung objectives): a trainable may skip
        costly final metrics outside it (`TrialContext.needed`)."""
        return frozenset({*self.objectives, *(self.rung_objectives or {})})

    def validate(self) -> None:
        """Raise `SpaceError` naming the first problem found."""
        if not isinstance(self.name, str) or not self.name.strip():
            raise SpaceError(f"`name` must be a non-empty string, but got name={self.name!r}.")
        if not callable(self.trainable):
            raise SpaceError(f"`trainable` must be callable, but got {self.trainable!r}.")
        _check_signature(self.trainable)
        if not isinstance(self.params, Mapping) or not self.params:
            raise SpaceError("`params` must be a non-empty dict of parameter name -> Float/Int/Choice.")
        for name, domain in self.params.items():
            if not isinstance(domain, (Float, Int, Choice)):
                raise SpaceError(
                    f"`params[{name!r}]` must be Float(...), Int(...) or Choice([...]), "
                    f"but got {domain!r}."
                )
            domain.validate(name)
        self._validate_conditions()
        self._validate_objectives()
        if self.searcher not in SEARCHERS:
            raise SpaceError(f"Unknown searcher {self.searcher!r}; choose one of {SEARCHERS}.")
        if self.searcher == "variant" and any(d.when is not None for d in self.params.values()):
            raise SpaceError("searcher 'variant' cannot search conditional parameters (`when=`); use an Optuna searcher.")
        if self.scheduler not in SCHEDULERS:
            raise SpaceError(f"Unknown scheduler {self.scheduler!r}; choose one of {SCHEDULERS}.")
        if self.reference_point is not None and set(self.reference_point) != set(self.objectives):
            raise SpaceError(
                f"`reference_point` must give a value for each objective {list(self.objectives)}, "
                f"but got {dict(self.reference_point)}."
            )
        overlap = sorted(set(self.params) & set(self.constants))
        if overlap:
            raise SpaceError(f"{overlap} appear in both `params` and `constants`; keep one.")
        if "epochs" in self.params or "epochs" in self.constants:
            raise SpaceError("`epochs` is set by `max_epochs` (and ASHA); remove it from params/constants.")
        for name in ("num_samples", "max_epochs", "grace_period", "max_concurrent"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise SpaceError(f"`{name}` must be an integer >= 1, but got {name}={value!r}.")
        if self.grace_period > self.max_epochs:
            raise SpaceError(
                f"`grace_period` ({self.grace_period}) must not exceed `max_epochs` ({self.max_epochs})."
            )
        if self.time_budget_s is not None and not (
            isinstance(self.time_budget_s, (int, float)) and self.time_budget_s > 0
        ):
            raise SpaceError(f"`time_budget_s` must be a number of seconds > 0, but got {self.time_budget_s!r}.")
        if not isinstance(self.max_retries, int) or self.max_retries < 0:
            raise SpaceError(f"`max_retries` must be an integer >= 0, but got {self.max_retries!r}.")
        if not isinstance(self.reduction_factor, int) or self.reduction_factor < 2:
            raise SpaceError(f"`reduction_factor` must be an integer >= 2, but got {self.reduction_factor!r}.")
        if not self.cpus_per_trial > 0 or self.gpus_per_trial < 0:
            raise SpaceError(
                "`cpus_per_trial` must be > 0 and `gpus_per_trial` >= 0, but got "
                f"cpus_per_trial={self.cpus_per_trial}, gpus_per_trial={self.gpus_per_trial}."
            )
        if not isinstance(self.workers_per_trial, int) or self.workers_per_trial < 1:
            raise SpaceError(f"`workers_per_trial` must be an integer >= 1, but got {self.workers_per_trial!r}.")
        if self.gpu_memory_mb is not None and not (isinstance(self.gpu_memory_mb, int) and self.gpu_memory_mb > 0):
            raise SpaceError(f"`gpu_memory_mb` must be a whole number of MB > 0, but got {self.gpu_memory_mb!r}.")
        if self.gpu_memory_mb is not None and not self.gpus_per_trial:
            raise SpaceError("`gpu_memory_mb` caps GPU memory, but `gpus_per_trial` is 0; set both or neither.")
        self._validate_front()
        self._validate_with_trainable()

    def _validate_front(self) -> None:
        from trainables.contract import TRAIN_TIME_S

        if self.front not in FRONTS:
            raise SpaceError(f"`front` must be one of {FRONTS}, but got front={self.front!r}.")
        if self.capping not in (None, True, False):
            raise SpaceError(f"`capping` must be True, False or None (automatic), but got capping={self.capping!r}.")
        if self.capping and not self._cappable:
            raise SpaceError(
                f'`capping` stops trials whose later recipes are dominated; it needs front="recipes" and {TRAIN_TIME_S!r} '
                f"minimised among the (rung) objectives, but got front={self.front!r}, objectives={dict(self.rung_objectives or self.objectives)!r}."
            )
        if self.targets is None:
            return
        if self.front != "recipes":
            raise SpaceError('`targets` are times to reach a value over recipes; set front="recipes" as well.')
        if not isinstance(self.targets, Mapping) or not self.targets:
            raise SpaceError(f'`targets` must be a dict such as {{"val_accuracy": [0.95, 0.97]}}, but got {self.targets!r}.')
        reported = getattr(self.trainable, "metrics", None)
        for metric, values in self.targets.items():
            if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
                raise SpaceError(f"`targets[{metric!r}]` must be a non-empty list of numbers, but got {values!r}.")
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values):
                raise SpaceError(f"`targets[{metric!r}]` must hold finite numbers, but got {list(values)}.")
            if reported is not None and metric not in reported:
                raise SpaceError(f"Unknown target metric {metric!r}: {self.trainable.__name__} reports {sorted(reported)}.")
        if reported is not None and TRAIN_TIME_S not in reported:
            raise SpaceError(f"`targets` are reached in training time, but {self.trainable.__name__} does not report {TRAIN_TIME_S!r}.")

    def _validate_conditions(self) -> None:
        names = list(self.params)
        for position, (name, domain) in enumerate(self.params.items()):
            if domain.when is None:
                continue
            if not isinstance(domain.when, Mapping) or not domain.when:
                raise SpaceError(f"`{name}`: `when` must be a dict such as {{'architecture': 'cnn'}}, but got {domain.when!r}.")
            for other, allowed in domain.when.items():
                parent = self.params.get(other)
                if not isinstance(parent, Choice) or names.index(other) > position:
                    raise SpaceError(
                        f"`{name}`: `when` refers to {other!r}, which must be a Choice parameter "
                        f"declared before `{name}`; params are {names}."
                    )
                missing = [v for v in _allowed(allowed) if v not in parent.options]
                if missing:
                    raise SpaceError(
                        f"`{name}`: `when` expects {other} in {missing}, which is not among its options {list(parent.options)}."
                    )

    def _validate_with_trainable(self) -> None:
        """Let the trainable's `check_config` judge every range end and option, one at a time.

        This catches, before any trial starts, values the trainable would reject (a learning rate
        range that starts at 0, an unknown architecture, a misspelt constant).
        """
        check = getattr(self.trainable, "check_config", None)
        if check is None:
            return
        base = self.trial_constants
        try:
            check(base)
        except ValueError as error:
            raise SpaceError(f"`constants` are rejected by the trainable: {error}") from error
        for name, domain in self.params.items():
            # A conditional parameter is checked in a configuration where it applies.
            condition = {
                other: _allowed(allowed)[0]
                for other, allowed in (domain.when or {}).items()
            }
            for value in domain.candidates():
                try:
                    check({**base, **condition, name: value})
                except ValueError as error:
                    raise SpaceError(f"`{name}` = {value!r} is rejected by the trainable: {error}") from error

    def _validate_objectives(self) -> None:
        for field, objectives in (("objectives", self.objectives), ("rung_objectives", self.rung_objectives)):
            if objectives is None and field == "rung_objectives":
                continue
            if not isinstance(objectives, Mapping) or not objectives:
                raise SpaceError(f'`{field}` must be a non-empty dict such as {{"val_accuracy": "max"}}.')
            for metric, mode in objectives.items():
                if mode not in MODES:
                    raise SpaceError(f"Objective `{metric}`: direction must be 'max' or 'min', but got {mode!r}.")
            reported = getattr(self.trainable, "metrics", None)
            if reported is not None:
                unknown = [metric for metric in objectives if metric not in reported]
                if unknown:
                    raise SpaceError(
                        f"Unknown objective {unknown}: {self.trainable.__name__} reports {sorted(reported)}."
                    )

    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        """Define-by-run space for Optuna: suggest every parameter that applies, in order (a
        conditional one only where its `when` holds), and return the constants."""
        for name, domain in self.params.items():
            if applies(domain.when, trial.params):
                domain.suggest(trial, name)
        return self.trial_constants

    def describe(self) -> str:
        """The searched parameters as JSON (Optuna's distribution format), for the study record."""
        import json

        import optuna

        return json.dumps(
            {
                name: json.loads(optuna.distributions.distribution_to_json(domain.distribution()))
                for name, domain in self.params.items()
            }
        )

    def identity(self) -> dict[str, str]:
        """What a resumed study must share with the study it continues, each part as text: the
        searched parameters (with their conditions), objectives, constants, trainable, epochs,
        rungs, searcher, scheduler and seed. Trials, budget and resources may change."""
        import json

        import optuna

        def text(value: Any) -> str:
            return json.dumps(value, sort_keys=True, default=repr)

        params = {
            name: {
                "distribution": json.loads(optuna.distributions.distribution_to_json(domain.distribution())),
                "when": dict(domain.when or {}),
            }
            for name, domain in self.params.items()
        }
        fields = ("max_epochs", "grace_period", "reduction_factor", "searcher", "scheduler", "seed")
        return {
            "params": text(params),
            "objectives": text(dict(self.objectives)),
            "rung_objectives": text(dict(self.rung_objectives or {})),
            "constants": text(dict(self.constants)),
            "trainable": getattr(self.trainable, "__qualname__", repr(self.trainable)),
            **{field: text(getattr(self, field)) for field in fields},
            # What Optuna is told depends on it; left out at its default, so studies made before it existed resume.
            **({"front": self.front} if self.front != "trials" else {}),
        }

    def fix(self, values: Mapping[str, Any]) -> SearchSpace:
        """A copy where `values` are constants: fixed parameters leave the search, and so do
        conditional ones whose condition the fixed values rule out (the others lose that part
        of their condition)."""
        params: dict[str, Domain] = {}
        for name, domain in self.params.items():
            if name in values:
                continue
            when = dict(domain.when or {})
            for other in [o for o in when if o in values]:
                if not applies({other: when.pop(other)}, values):
                    break
            else:
                params[name] = dataclasses.replace(domain, when=when or None)
        return self.replace(params=params, constants={**self.constants, **values})

    def replace(self, **changes: Any) -> SearchSpace:
        """A copy with some fields changed (and validated again)."""
        return dataclasses.replace(self, **changes)


def typed_params(
    row: Mapping[str, Any], distributions: Mapping[str, optuna.distributions.BaseDistribution]
) -> tuple[dict[str, Any], dict[str, optuna.distributions.BaseDistribution]]:
    """The parameters a trial had (read back from MLflow), typed, with their distributions.

    A conditional parameter that did not apply to the trial is missing (or NaN) in `row`, and
    is left out of both dicts, as Optuna records it.
    """
    present = {
        name: d for name, d in distributions.items() if name in row and _known(row[name])
    }
    return {name: typed_param(row[name], d) for name, d in present.items()}, present


def _known(value: Any) -> bool:
    import pandas as pd

    return not pd.isna(value)


def typed_param(value: Any, distribution: optuna.distributions.BaseDistribution) -> Any:
    """A parameter read back from MLflow (text, or a number pandas parsed) in its domain's type."""
    import optuna

    if isinstance(distribution, optuna.distributions.CategoricalDistribution):
        return next((c for c in distribution.choices if str(c) == str(value)), value)
    if isinstance(distribution, optuna.distributions.IntDistribution):
        return int(float(value))
    return float(value)


def load_space(path: str | Path) -> SearchSpace:
    """Import a space file and return its validated `SPACE`.

    Raises:
        SpaceError: the file is missing, is not Python, fails to import, or has no valid `SPACE`.
    """
    path = Path(path)
    if not path.is_file():
        raise SpaceError(f"Space file not found: {path} (expected a Python file such as spaces/mnist.py).")
    if path.suffix != ".py":
        raise SpaceError(f"Space file must be a Python file ending in .py, but got {path}.")
    module_name = f"{SPACE_MODULE_PREFIX}{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise SpaceError(f"Cannot import {path} as a Python module.")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except SyntaxError as error:
        raise SpaceError(f"{path}:{error.lineno}: syntax error: {error.msg}.") from error
    except SpaceError as error:
        raise SpaceError(f"{path}: {error}") from error
    except Exception as error:
        raise SpaceError(f"{path} failed to import: {error.__class__.__name__}: {error}") from error
    space = getattr(module, "SPACE", None)
    if not isinstance(space, SearchSpace):
        found = sorted(name for name in vars(module) if not name.startswith("_"))
        raise SpaceError(
            f"{path} must define `SPACE = SearchSpace(...)`; "
            f"found {type(space).__name__ if space is not None else 'no SPACE'} among names {found}."
        )
    sys.modules.setdefault(module_name, module)
    return space
