"""Searchers: Optuna samplers behind Ray Tune, told only what is true.

Ray's `OptunaSearch` tells Optuna that a trial the scheduler stopped early COMPLETED with its
partial values: a trial cut after one epoch then looks fast, and the sampler learns from it as if
it were a full-budget result. `TruthfulOptunaSearch` tells such trials so that they never count
as full-budget results (by default as infeasible: see the class), and trials whose objectives
are NaN or infinite as FAILED.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState
from ray.tune.search.optuna import OptunaSearch

from search.errors import SpaceError
from search.methods.pareto import losses
from search.space import SEARCHERS
from search.space import SearchSpace
from search.space import typed_params
from trainables.contract import EPOCH


# How a trial the scheduler stopped early is told to Optuna (see `TruthfulOptunaSearch`).
STOPPED_TRIALS = ("infeasible", "pruned", "ignored", "complete")
# Which of an ended trial's recipes (its epochs' results) Optuna is told as the trial's values:
# "last" (its last result, as Ray tells it), or "best" (the one the fewest recipes of the study
# dominate; ties: the latest). See `TruthfulOptunaSearch`.
TOLD_RECIPES = ("last", "best")
TOLD_EPOCH = "told_epoch"  # the Optuna user attribute naming the epoch whose recipe was told
# The constraint a trial stopped early violates under "infeasible": the share of its epochs it
# did not run (0 < value < 1; a full-budget trial has none and is feasible).
EPOCHS_MISSING = "epochs_missing"


class TruthfulOptunaSearch(OptunaSearch):
    """`OptunaSearch` that never tells a trial stopped early as a full-budget result.

    Ray's `OptunaSearch` tells Optuna that a trial the scheduler stopped COMPLETED with its
    partial values, so a trial cut after one epoch looks fast and lands on Optuna's front. Here
    a trial stopped early is told one of three ways (`stopped_trials`):

    - "infeasible": COMPLETE with the values it reached, and an Optuna constraint
      `epochs_missing` = the share of `max_t` it did not run. Infeasible trials never dominate a
      feasible (full-budget) one: TPE fills its "good" group from them only after every
      feasible trial, ordered by how far they got, and NSGA-II ranks them behind every feasible
      trial. Needs every objective at the rung; a trial without one is told PRUNED.
    - "pruned": PRUNED, without values. Optuna 5's TPE fills its "good" group with pruned trials
      in arbitrary order when it has too few complete ones (multi-objective trials carry no
      intermediate values to order them by).
    - "ignored": FAIL: the searcher learns nothing from it.
    - "complete": COMPLETE with the values it reached, like a full-budget trial. True for a
      front over recipes (`SearchSpace.front`): the epochs a stopped trial ran are recipes as
      real as any other, and a cumulative time objective does not reward being stopped.

    Trials whose objectives are NaN or infinite are told FAIL.

    Over recipes every epoch a trial ran is a recipe, and its last is not always its best: a
    trial that peaks at epoch 3 and then overfits or only grows slower is, by its last result,
    dominated. `told_recipe="best"` tells Optuna the trial's recipe that the fewest recipes of
    the study (every epoch of every trial reported so far) dominate, the latest on a tie, and
    names its epoch in the Optuna trial's user attribute `told_epoch`; the model then learns
    which configurations reach the front at some epoch. Measured in `python -m
    benchmarks.simulate --experiment recipes` (BENCHMARKS.md).

    Args:
        stopped_early: tells, by Ray trial id, whether the scheduler stopped the trial early.
        stopped_trials: one of `STOPPED_TRIALS`.
        max_t: epochs of a full-budget trial (for `epochs_missing`).
        time_attr: the result entry that counts epochs.
        told_recipe: one of `TOLD_RECIPES`: "last" (Ray's way) or "best".
        **kwargs: passed to `OptunaSearch` (space, metric, mode, sampler).
    """

    def __init__(
        self,
        *,
        stopped_early: Callable[[str], bool],
        stopped_trials: str = "infeasible",
        max_t: int = 1,
        time_attr: str = EPOCH,
        told_recipe: str = "last",
        **kwargs: Any,
    ) -> None:
        if stopped_trials not in STOPPED_TRIALS:
            raise SpaceError(f"Unknown way to tell stopped trials {stopped_trials!r}; choose one of {STOPPED_TRIALS}.")
        if told_recipe not in TOLD_RECIPES:
            raise SpaceError(f"Unknown recipe to tell {told_recipe!r}; choose one of {TOLD_RECIPES}.")
        super().__init__(**kwargs)
        self.told_recipe = told_recipe
        self._curves: dict[str, dict[int, dict[str, float]]] = {}  # trial -> epoch -> objectives
        self._recipe_losses: list[np.ndarray] = []  # every recipe reported, as losses
        self._stopped_early = stopped_early
        self.stopped_trials = stopped_trials
        self._max_t = max_t
        self._time_attr = time_attr
        # Trials whose error says nothing of their configuration (a full disk cut them short):
        # not told, so they stay RUNNING in the record and run again on resume.
        self.cut_short: Callable[[str], bool] = lambda trial_id: False
        self._settled_stopped: set[str] = set()  # trials `tell_ended` told as stopped early
        self.seed: int | None = None  # the seed `make_searcher` gave its sampler
        # Trials of the Optuna study an interruption left RUNNING, to be suggested again first.
        self.interrupted: list[optuna.trial.FrozenTrial] = [
            t for t in self._ot_study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        ]

    def suggest(self, trial_id: str) -> dict | None:
        """The next configuration: first each trial an interruption cut off, as the same Optuna
        trial (so it is never suggested twice), then what the sampler suggests."""
        if self.interrupted and trial_id not in self._ot_trials:
            self._ot_trials[trial_id] = optuna.Trial(self._ot_study, self.interrupted.pop(0)._trial_id)
        return super().suggest(trial_id)

    def save(self, checkpoint_path: str) -> None:
        """What Tune's experiment snapshot keeps of the searcher: all but `cut_short` (it reads
        the study's live record; a resumed study is rebuilt from Optuna's journal anyway)."""
        import pickle

        with open(checkpoint_path, "wb") as output:
            pickle.dump({key: value for key, value in self.__dict__.items() if key != "cut_short"}, output)

    def tell_ended(
        self, trial: optuna.trial.FrozenTrial, trial_id: str, result: dict | None, *, error: bool, stopped: bool, user_attrs: dict[str, Any]
    ) -> None:
        """Tell an interrupted trial of the record that in fact ended (another record says so;
        what told the searcher was lost) as `on_trial_complete` tells one, as Ray trial
        `trial_id` (`stopped`: the scheduler stopped it early), with `user_attrs` set first: it
        is no longer suggested again."""
        if stopped:
            self._settled_stopped.add(trial_id)
        self.interrupted = [t for t in self.interrupted if t.number != trial.number]
        self._ot_trials[trial_id] = optuna.Trial(self._ot_study, trial._trial_id)
        for key, value in user_attrs.items():
            self._ot_trials[trial_id].set_user_attr(key, value)
        self.on_trial_complete(trial_id, result, error)

    @property
    def optuna_study(self) -> optuna.Study:
        return self._ot_study

    def optuna_trial(self, trial_id: str) -> optuna.Trial | None:
        """The Optuna trial behind a Ray trial (None before it was suggested)."""
        return self._ot_trials.get(trial_id)

    def on_trial_complete(
        self, trial_id: str, result: dict | None = None, error: bool = False
    ) -> None:
        if error and self.cut_short(trial_id):
            return
        stopped = bool(result) and (self._stopped_early(trial_id) or trial_id in self._settled_stopped)
        if result:
            self._keep_recipe(trial_id, result)
        result, error, missing = self._verdict(result, error, stopped=stopped)
        if missing is not None:
            self._ot_trials[trial_id].set_constraint(EPOCHS_MISSING, missing)
        if result is not None and not error and missing is None and self.told_recipe == "best":
            result = self._best_recipe(trial_id, result)
            if TOLD_EPOCH in result and trial_id in self._ot_trials:
                self._ot_trials[trial_id].set_user_attr(TOLD_EPOCH, result[TOLD_EPOCH])
        self._curves.pop(trial_id, None)
        super().on_trial_complete(trial_id, result, error)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self._keep_recipe(trial_id, result)
        super().on_trial_result(trial_id, result)

    def _keep_recipe(self, trial_id: str, result: dict) -> None:
        """Keep a report's objectives as one of the trial's recipes (by its epoch)."""
        if self.told_recipe != "best" or not all(_finite(result.get(m)) for m in self.metric) or self._time_attr not in result:
            return
        epoch = int(result[self._time_attr])
        curve = self._curves.setdefault(trial_id, {})
        if epoch not in curve:
            curve[epoch] = {m: float(result[m]) for m in self.metric}
            self._recipe_losses.append(losses([curve[epoch]], dict(zip(self.metric, self.mode)))[0])

    def _best_recipe(self, trial_id: str, result: dict) -> dict:
        """`result` with the objectives of the trial's best recipe: the one the fewest recipes
        of the study dominate (ties: the latest epoch), and that epoch as `TOLD_EPOCH`."""
        curve = self._curves.get(trial_id, {})
        if not curve:
            return result
        epochs = sorted(curve)
        mine = losses([curve[e] for e in epochs], dict(zip(self.metric, self.mode)))
        study = np.array(self._recipe_losses)
        dominated_by = [int(np.sum(np.all(study <= row, axis=1) & np.any(study < row, axis=1))) for row in mine]
        best = max(range(len(epochs)), key=lambda k: (-dominated_by[k], epochs[k]))
        return {**result, **curve[epochs[best]], TOLD_EPOCH: epochs[best]}

    def _verdict(self, result: dict | None, error: bool, *, stopped: bool) -> tuple[dict | None, bool, float | None]:
        """How an ended trial is told, as `OptunaSearch.on_trial_complete` reads it: values
        (None: PRUNED, unless `error`: FAIL) and the `epochs_missing` constraint, if any."""
        finite = bool(result) and all(_finite(result.get(m)) for m in self.metric)
        if result and stopped:
            if self.stopped_trials == "infeasible" and finite:
                return result, error, self._epochs_missing(result.get(self._time_attr, 0))
            if self.stopped_trials == "ignored":
                return None, True, None  # told as FAIL
            if self.stopped_trials == "complete" and finite:
                return result, error, None  # told as COMPLETE with its values, as OptunaSearch tells it
            return None, error, None  # no values and no error: OptunaSearch tells it as PRUNED
        if result and not finite:
            return None, True, None  # told as FAIL
        return result, error, None

    def tell_earlier(
        self, params: dict[str, Any], distributions: dict[str, Any], result: dict[str, Any], *, stopped: bool, user_attrs: dict[str, Any]
    ) -> str:
        """Tell a trial an earlier study ran (`search.methods.warm_start`) as one of this
        study's ended trials is told, `stopped` early or not: a prior observation the sampler
        learns from, added to the Optuna study with `user_attrs`. Returns how it was told
        ("complete", "infeasible", "pruned"; "ignored": not added, as FAIL teaches nothing)."""
        values, error, missing = self._verdict(result, False, stopped=stopped)
        if error:
            return "ignored"
        self._ot_study.add_trial(
            optuna.trial.create_trial(
                state=TrialState.COMPLETE if values is not None else TrialState.PRUNED,
                values=[float(values[m]) for m in self.metric] if values is not None else None,
                params=params,
                distributions=distributions,
                user_attrs=user_attrs,
                constraints={EPOCHS_MISSING: missing} if missing is not None else None,
            )
        )
        return "pruned" if values is None else "infeasible" if missing is not None else "complete"

    def _epochs_missing(self, epochs: float) -> float:
        """The share of `max_t` a stopped trial did not run; above 0 even for one stopped at
        `max_t`, so it stays infeasible."""
        return max(1.0 - float(epochs) / self._max_t, 1e-9)

    def enqueue(self, configs: list[dict[str, Any]], space: SearchSpace) -> None:
        """Suggest these configurations first, in order."""
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


def journal(path: Path) -> optuna.storages.BaseStorage:
    """Optuna's journal storage in the file `path` (one file holds many studies; it takes
    concurrent writers, and `optuna-dashboard PATH` opens it)."""
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    path.parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(path)))


def make_searcher(
    space: SearchSpace,
    stopped_early: Callable[[str], bool],
    *,
    storage: optuna.storages.BaseStorage | None = None,
    study_name: str | None = None,
    resume: bool = False,
    stopped_trials: str | None = None,
    first_configs: list[dict[str, Any]] | None = None,
    sampler_options: dict[str, Any] | None = None,
    sampler: optuna.samplers.BaseSampler | None = None,
    told_recipe: str | None = None,
) -> TruthfulOptunaSearch:
    """The study's Optuna searcher: `space.searcher`'s sampler, seeded, over `space.suggest`,
    optimising `space.objectives`; `first_configs` are suggested first. `sampler_options` go to
    the sampler; Optuna's defaults are kept otherwise (measured against the alternatives in
    `python -m benchmarks.simulate --experiment tpe`).

    Optuna keeps its study, named `study_name`, in `storage` (in memory when None). With
    `resume` that study must exist and have been started with the same space
    (`SearchSpace.identity`); the searcher continues it: the trials an interruption cut off are
    suggested again first, as the same Optuna trials, and the sampler is seeded anew from the
    seed and the study's length, so it does not draw the configurations it drew before.

    `stopped_trials` says how a trial the scheduler stopped is told (`TruthfulOptunaSearch`);
    by default "complete" when the front is over recipes, else "infeasible". `told_recipe`
    says which of a trial's recipes Optuna is told; by default its best over recipes, else its
    last (`TruthfulOptunaSearch`).

    `sampler`, an Optuna sampler object, replaces `space.searcher`'s and is used as given (its
    seed, its options; a resumed study should get one seeded anew).
    """
    seed = space.seed
    if resume:
        seed = int(np.random.SeedSequence([space.seed, len(_recorded_study(storage, study_name, space).trials)]).generate_state(1)[0])
    elif storage is not None and study_name in {s.study_name for s in storage.get_all_studies()}:
        raise SpaceError(f"An Optuna study named {study_name!r} already exists; start the study again (names carry the time) or --resume it.")
    searcher = TruthfulOptunaSearch(
        space=space.suggest,
        metric=list(space.objectives),
        mode=list(space.objectives.values()),
        sampler=sampler if sampler is not None else make_sampler(space.searcher, seed, **(sampler_options or {})),
        storage=storage,
        study_name=study_name,
        stopped_early=stopped_early,
        stopped_trials=stopped_trials or default_stopped_trials(space),
        max_t=space.max_epochs,
        told_recipe=told_recipe or default_told_recipe(space),
    )
    searcher.seed = seed  # what its sampler was seeded with (a sampler made anew takes it: `warm_start`)
    if searcher._ot_study.metric_names is None:  # objectives by name in Optuna's own tools (optuna-dashboard)
        import warnings

        with warnings.catch_warnings():  # experimental since Optuna 3.2, still in 5.0; its warning is noise on the terminal
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            searcher._ot_study.set_metric_names(list(space.objectives))
    if not resume:
        searcher._ot_study.set_user_attr(SPACE_ATTR, space.identity())
        if first_configs:
            searcher.enqueue(first_configs, space)
    return searcher


def default_stopped_trials(space: SearchSpace) -> str:
    """How a stopped trial is told by default: as complete for a front over recipes (its epochs
    are recipes like any other), else as infeasible (its partial values are no full-budget result)."""
    return "complete" if space.front == "recipes" else "infeasible"


def default_told_recipe(space: SearchSpace) -> str:
    """Which of a trial's recipes Optuna is told by default: over recipes its best (measured on
    two tables: never behind its last, ahead on one seed set of each), else its last (the
    full-budget result)."""
    return "best" if space.front == "recipes" else "last"


# The Optuna study's user attribute that keeps `SearchSpace.identity()` of the study's space.
SPACE_ATTR = "space"


def _recorded_study(storage: optuna.storages.BaseStorage | None, study_name: str | None, space: SearchSpace) -> optuna.Study:
    """The Optuna study a resumed study continues; refused if missing or made by another space."""
    try:
        study = optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:
        raise SpaceError(
            f"Cannot resume: the searcher's record of study {study_name!r} is missing (a study started by an "
            "older version, or its optuna.journal was removed). Start a new study without --resume."
        ) from None
    recorded = study.user_attrs.get(SPACE_ATTR, {})
    for part, now in space.identity().items():
        if recorded.get(part) != now:
            raise SpaceError(
                f"Cannot resume study {study_name!r}: its {part} changed ({_difference(recorded.get(part), now)}). "
                "Resume with the space the study started with, or start a new study without --resume."
            )
    return study


def _difference(was: str | None, now: str) -> str:
    """How one part of a space's identity changed, for the refusal's one line."""
    import json

    try:
        before, after = json.loads(was or "null"), json.loads(now)
    except json.JSONDecodeError:
        before, after = was, now
    if isinstance(before, dict) and isinstance(after, dict):
        return ", ".join(sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k)))
    return f"was {before}, now {after}"


def make_sampler(kind: str, seed: int, **options: Any) -> optuna.samplers.BaseSampler:
    """A seeded Optuna sampler: "tpe" (default), "nsga2", "random" or "gp" (Gaussian-process
    logEHVI; needs PyTorch); `options` go to its constructor."""
    if kind == "tpe":
        return optuna.samplers.TPESampler(seed=seed, **options)
    if kind == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, **options)
    if kind == "random":
        return optuna.samplers.RandomSampler(seed=seed, **options)
    if kind == "gp":
        try:
            import torch  # noqa: F401  (Optuna's GPSampler fits its Gaussian process with PyTorch)
        except ImportError:
            raise SpaceError('The "gp" searcher (Optuna\'s GPSampler) needs PyTorch: pip install -e ".[gp]".') from None
        return optuna.samplers.GPSampler(seed=seed, **options)
    raise SpaceError(f"Unknown searcher {kind!r}; choose one of {SEARCHERS}.")
