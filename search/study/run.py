"""`run_study`: the study as a short pipeline of phases (`search.study.phases`).

Start Ray, open or resume the study's record, make the method (searcher and scheduler), begin
the study run, run the trials, finish (front, registry, summary); `StudyEnding` owns how it
ends. This module stays free of Ray, MLflow and TensorFlow on import: `run_study` sets the
process's settings first (`search.environment`), which Ray reads as it is imported.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any

from search import environment
from search.errors import SpaceError
from search.space import SearchSpace
from search.study.ending import StudyEnding

if TYPE_CHECKING:
    import optuna
    import pandas as pd
    from ray.tune.schedulers import TrialScheduler

    from search.record.front import Front
    from search.record.front import Remeasured


@dataclasses.dataclass(frozen=True)
class StudyResult:
    """What a finished study produced."""

    name: str  # the parent run's name
    experiment: str
    tracking_uri: str
    parent_run_id: str
    wall_time_s: float
    front: Front
    model_uris: dict[str, str]  # registered model URI of each front trial, by trial name
    stopped_at_rung: dict[int, int]  # trials stopped early, by the epoch of the rung
    started_at: float = 0.0  # when the trials began (epoch seconds; the time budget counts from it)
    optuna_journal: str | None = None  # the searcher's record (`optuna-dashboard PATH` opens it)
    remeasured: Remeasured | None = None  # the front measured again alone (`search.compute.remeasure`)
    table: pd.DataFrame | None = None  # one row per trial when the front is over recipes
    experiment_id: str = ""
    targets: pd.DataFrame | None = None  # the fastest recipe per target (front over recipes)
    comparison: pd.DataFrame | None = None  # beside the other studies of its experiment and its warm start's

    @property
    def trials(self) -> pd.DataFrame:
        """One row per trial, full-budget trials first, best first by the primary objective."""
        return self.table if self.table is not None else self.front.table

    @property
    def recipes(self) -> pd.DataFrame | None:
        """One row per recipe (every epoch of every trial), when the front is over recipes."""
        return self.front.table if self.table is not None else None


def run_study(
    space: SearchSpace,
    *,
    results_dir: Path,
    experiment: str | None = None,
    tracking_uri: str | None = None,
    space_file: Path | None = None,
    verbose: bool = False,
    resume: bool = False,
    first_configs: list[dict[str, Any]] | None = None,
    address: str | None = None,
    remeasure_front: bool = True,
    scheduler: str | TrialScheduler | None = None,
    sampler: optuna.samplers.BaseSampler | None = None,
    warm_start: list[str] | None = None,
    warm_start_front: bool = False,
) -> StudyResult:
    """Run the study `space` describes and record it in MLflow.

    Args:
        space: the validated search space and study settings (searcher, scheduler, budget).
        results_dir: where the default MLflow store (`mlflow.db`), artifacts and Ray's trial
            directories go; created if missing.
        experiment: MLflow experiment name, also the registered model's name; defaults to
            `space.name`.
        tracking_uri: MLflow tracking URI; defaults to the sqlite store in `results_dir`.
        space_file: logged as an artifact of the parent run.
        verbose: show Ray Tune's full status table instead of one line per ended trial.
        resume: carry on the latest interrupted study of this space: same study run; trials
            that ended are kept and not rerun; trials cut off by the interruption run again,
            from their checkpoints, in their own MLflow runs and as their own Optuna trials; the
            searcher continues its Optuna study (`results_dir/optuna.journal`) and the scheduler
            replays the ended trials. Refused if the space changed (`SearchSpace.identity`).
        first_configs: searched-parameter values to try first, in order (known good
            configurations, or a fixed list to measure); the searcher suggests the rest.
        address: an existing Ray cluster to run on ("HOST:PORT", or "auto"); by default a
            local Ray instance is started. On a cluster, `results_dir` and the MLflow store
            must be reachable from every node (checked before the first trial).
        remeasure_front: once the trials have ended, measure the front's configurations again,
            one at a time, alone on the node, and rank them again on those figures
            (`search.compute.remeasure`; only when the trainable can and an objective is among what it
            measures again).
        scheduler: replaces the space's scheduler: a name (`search.space.SCHEDULERS`) or any Ray
            Tune scheduler object deciding CONTINUE or STOP on the trainable's `epoch` (one
            without a metric decides on the first rung objective;
            `search.methods.schedulers.recording` makes it keep the record of whom it stopped).
        sampler: an Optuna sampler object that replaces the space's searcher, used as given.
        warm_start: earlier studies whose trials the searcher learns from before it suggests
            anything: experiment names (every study of it) or "EXPERIMENT/STUDY", in the same
            MLflow store. Only trials that fit the space and measured every objective are told
            (`search.methods.warm_start`); the rest are skipped and counted in the study run's
            tags and `warm_start.csv`.
        warm_start_front: also run the earlier fronts' fitting configurations first.

    Raises:
        StudyInterrupted: on Ctrl-C or SIGTERM, after marking the cut-off trials KILLED.
        SpaceError: a resume that finds nothing to resume, or a changed space.
    """
    environment.prepare(address)
    # Imported now: they import Ray, which reads the settings just made.
    from search.record.tracking import default_tracking_uri
    import search.study.phases as phases

    if resume and space.searcher == "variant" and sampler is None:
        raise SpaceError("searcher 'variant' cannot resume a study (Ray keeps no history of it); use an Optuna searcher.")
    _check_warm_start(space, warm_start, warm_start_front, resume=resume, sampler=sampler)
    phases.quiet_loggers(verbose)
    results_dir = Path(results_dir).resolve()
    results_dir.mkdir(parents=True, exist_ok=True)
    tracking_uri = tracking_uri or default_tracking_uri(results_dir)
    experiment = experiment or space.name
    opening = phases.open_record_in_background(tracking_uri, experiment, results_dir)
    # The study held by this launcher alone (`search.study.lock`) until it returns.
    study, lease = phases.claim_study(opening, space, results_dir, tracking_uri, address, resume)
    with lease:
        method = phases.make_method(study, scheduler, sampler, first_configs, warm_start, warm_start_front)
        trial_runs = phases.begin(study, method, space_file)
        # From here every way out (success, an exception in any phase, Ctrl-C, SIGTERM) ends the
        # study run and the runs of trials still training with a true status.
        with StudyEnding(study.runs, study.parent_run_id, trial_runs, study.name) as ending:
            remaining = phases.carry_on(study, method, trial_runs)
            started_at, wall_time_s = phases.run_trials(study, method, trial_runs, ending, remaining=remaining, verbose=verbose)
            outcome = phases.finish(
                study, method, ending, experiment=experiment, started_at=started_at, wall_time_s=wall_time_s, remeasure_front=remeasure_front
            )
            ending.check()  # a signal during the front phase: it is recorded, but the study was cut
    return StudyResult(
        study.name,
        experiment,
        tracking_uri,
        study.parent_run_id,
        wall_time_s,
        outcome.front,
        outcome.model_uris,
        outcome.stopped_at_rung,
        started_at,
        optuna_journal=str(results_dir / phases.OPTUNA_JOURNAL) if method.searcher is not None else None,
        remeasured=outcome.remeasured,
        table=outcome.trials,
        targets=outcome.targets,
        experiment_id=study.runs.experiment_id,
        comparison=study.comparison,
    )


def _check_warm_start(space: SearchSpace, sources: list[str] | None, front_first: bool, *, resume: bool, sampler: Any) -> None:
    """A warm start starts a new study with an Optuna searcher."""
    if front_first and not sources:
        raise SpaceError("Trying the earlier fronts first needs the studies to start from (--warm-start EXPERIMENT[/STUDY]).")
    if not sources:
        return
    if resume:
        raise SpaceError(
            "--warm-start starts a new study; a resumed study keeps what its searcher was told when it started. "
            "Leave out --resume, or --warm-start."
        )
    if space.searcher == "variant" and sampler is None:
        raise SpaceError("searcher 'variant' (Ray's random search) learns nothing from earlier trials; warm-start an Optuna searcher (tpe, gp, nsga2).")
