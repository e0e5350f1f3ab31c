"""The phases of a study, in the order `run_study` calls them.

Each phase has one job and hands the next what it made: start Ray (`start_compute`), open or
resume the study's record (`open_study`), make the method (`make_method`: searcher and
scheduler), begin the study run (`begin`), run the trials (`run_trials`), then finish
(`finish`: the front, its models, the registry and the summary). `Study` is what they share.

This module imports Ray: `run_study` imports it once the process's settings are in place
(`search.environment`).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import logging
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any

import numpy as np
import optuna
import pandas as pd
import ray
from ray import tune
from ray.tune.schedulers import TrialScheduler
from ray.tune.search import ConcurrencyLimiter

from search import environment
from search.compute import cluster
from search.compute import devices
from search.compute import remeasure
from search.compute.trial import run_trial
from search.compute.trial import ship_space_file_code
from search.errors import SpaceError
from search.methods.schedulers import make_scheduler
from search.methods.schedulers import recording
from search.methods.searchers import journal
from search.methods.searchers import make_searcher
from search.methods import pareto
from search.methods import recipes as recipe_module
from search.methods.searchers import variant_generator
from search.methods.warm_start import trainable_name
from search.record import front as front_module
from search.record.progress import ProgressLines
from search.record.repair import repair_journal
from search.record.tables import HIDDEN_COLUMNS
from search.record.tables import format_table
from search.record.tables import study_table
from search.record.terminal import wrap
from search.record.tracking import TrialRuns
from search.space import SearchSpace
import search.study.resume as resuming
from search.study.lock import StudyLease
from trainables.contract import EPOCH
from trainables.contract import TRAIN_TIME_S
from trainables.contract import epoch_model_dir

if TYPE_CHECKING:
    from search.record.front import Front
    from search.record.front import Remeasured
    from search.methods.warm_start import WarmStart
    from search.record.tracking import StudyRuns
    from search.study.ending import StudyEnding

# The searcher's record in the results directory: every study's Optuna study, by study name.
OPTUNA_JOURNAL = "optuna.journal"
# Studies a study compares itself with at its end (itself, then the newest others; `_compare`).
COMPARED = 20


@dataclasses.dataclass
class Study:
    """What the phases share: the space, where everything goes, and the record in MLflow."""

    space: SearchSpace
    results_dir: Path
    name: str  # the study run's name; names its directories too
    runs: StudyRuns
    resumed: resuming.Resumed | None = None
    parent_run_id: str = ""
    comparison: pd.DataFrame | None = None  # beside the experiment's other studies (`_compare`)

    def directory(self, kind: str) -> Path:
        """Where the study keeps `kind` ("models", "checkpoints", "cache"): its own subdirectory."""
        return self.results_dir / kind / self.name


@dataclasses.dataclass
class Method:
    """How the study searches: who suggests, who stops trials early."""

    scheduler: Any  # a Ray Tune scheduler keeping `stopped_early` and `stopped_at_rung`
    searcher: Any  # the Optuna searcher; None for Ray's variant generator
    search_alg: Any  # what Tune asks for configurations
    param_space: dict[str, Any]  # Ray's own space (variant generator only)
    searcher_name: str  # the space's searcher, or the class of the sampler passed
    warm_start: WarmStart | None = None  # what earlier studies told the searcher

    def stopped_early(self, trial_id: str) -> bool:
        return trial_id in self.scheduler.stopped_early


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What the finish phase produced."""

    front: Front  # over trials, or over recipes (`space.front`)
    remeasured: Remeasured | None
    model_uris: dict[str, str]  # by trial, or by recipe
    stopped_at_rung: dict[int, int]
    trials: pd.DataFrame | None = None  # one row per trial, when the front is over recipes
    targets: pd.DataFrame | None = None  # the fastest recipe per target (`front.fastest_per_target`)


def quiet_loggers(verbose: bool) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if not verbose:
        # Ray Tune logs each failed trial's traceback; the progress line names the error and
        # the trial's MLflow run keeps the traceback (error tag, error.txt).
        logging.getLogger("ray.tune").setLevel(logging.CRITICAL)


def open_record_in_background(tracking_uri: str, experiment: str, results_dir: Path) -> concurrent.futures.Future:
    """The study's MLflow record opening in a thread (importing MLflow and creating a new store
    take seconds), so that it overlaps Ray's start; `.result()` waits for it."""
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    try:
        return pool.submit(_open_study_runs, tracking_uri, experiment, results_dir / "artifacts")
    finally:
        pool.shutdown(wait=False)


def _open_study_runs(tracking_uri: str, experiment: str, artifact_root: Path) -> StudyRuns:
    import mlflow  # its import configures its loggers; quieten them afterwards

    from search.record.tracking import StudyRuns

    logging.getLogger(mlflow.__name__).setLevel(logging.WARNING)
    # It logs each store error with its traceback (a thousand lines for a full disk), then
    # raises it: the study reports what it raises (`search.launch`).
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
    return StudyRuns(tracking_uri, experiment, artifact_root=artifact_root)


def start_compute(space: SearchSpace, results_dir: Path, tracking_uri: str, address: str | None) -> None:
    """Start a local Ray instance, or join the cluster at `address`, unless Ray already runs in
    this process; then refuse a trial no node can hold, before any run or trial exists."""
    ship_space_file_code(space)
    if not ray.is_initialized():
        # A new local Ray gets a dashboard only for multi-worker trials: Ray Train's clean-up
        # after a trial stopped early asks Ray's state API. A cluster has its own settings.
        settings: dict[str, Any] = {
            "logging_level": logging.ERROR,
            "log_to_driver": True,
            "runtime_env": {
                "env_vars": {**environment.for_workers(), devices.WORKER_IMPORTS: ",".join(getattr(space.trainable, "worker_imports", ()))},
                "worker_process_setup_hook": "search.compute.devices.quiet_worker",
            },
        }
        reaped = cluster.reap_orphaned_agents()
        if reaped:
            print(f"Ended {len(reaped)} Ray agent processes a killed launch left behind.", flush=True)
        if address:
            cluster.connect(address, **settings)
            cluster.check_shared(results_dir, tracking_uri)
        else:
            # "local": a new instance, never a cluster some earlier `ray start` left behind.
            ray.init(address="local", include_dashboard=space.workers_per_trial > 1, **settings)
    note = cluster.check_resources(space)
    if note:
        print(wrap(note), flush=True)


def open_study(runs: StudyRuns, space: SearchSpace, results_dir: Path, resume: bool) -> Study:
    """A new study, named after its space and the time, or the latest interrupted one."""
    if not resume:
        return Study(space, results_dir, f"{space.name}-{time.strftime('%Y%m%d-%H%M%S')}", runs)
    resumed = resuming.find_interrupted_study(runs, space, results_dir)
    return Study(space, results_dir, resumed.study_name, runs, resumed=resumed)


def claim_study(
    opening: concurrent.futures.Future, space: SearchSpace, results_dir: Path, tracking_uri: str, address: str | None, resume: bool
) -> tuple[Study, StudyLease]:
    """The study opened (`open_study`) and held by this launcher (`StudyLease`), and Ray
    started. A resume finds its study first, so that one already held elsewhere is refused
    (`StudyHeld`) before anything starts; a new study's record opens while Ray starts."""
    if resume:
        study = open_study(opening.result(), space, results_dir, resume)
        lease = StudyLease(results_dir, study.name).take()
        try:
            start_compute(space, results_dir, tracking_uri, address)
        except BaseException:
            lease.release()
            raise
        return study, lease
    start_compute(space, results_dir, tracking_uri, address)
    study = open_study(opening.result(), space, results_dir, resume)
    return study, StudyLease(results_dir, study.name).take()


def make_method(
    study: Study,
    scheduler: str | TrialScheduler | None = None,
    sampler: optuna.samplers.BaseSampler | None = None,
    first_configs: list[dict[str, Any]] | None = None,
    warm_start: list[str] | None = None,
    warm_start_front: bool = False,
) -> Method:
    """The study's scheduler (`scheduler`, else the space's) and searcher (an Optuna searcher
    with `sampler`, else the space's; or Ray's variant generator), told first what the
    `warm_start` studies ran (`search.methods.warm_start`)."""
    space = study.space
    if scheduler is None or isinstance(scheduler, str):
        scheduler = make_scheduler(
            scheduler or space.scheduler,
            space.rung_objectives or space.objectives,
            max_t=space.max_epochs,
            grace_period=space.grace_period,
            reduction_factor=space.reduction_factor,
            capping={} if space.uses_capping else None,
        )
    else:  # a user's Ray scheduler; one without a metric decides on the first rung objective
        scheduler = recording(scheduler, max_t=space.max_epochs)
        if scheduler.metric is None:
            scheduler.set_search_properties(*next(iter((space.rung_objectives or space.objectives).items())))
    if sampler is not None and not isinstance(sampler, optuna.samplers.BaseSampler):
        raise SpaceError(
            f"Expected an Optuna sampler (optuna.samplers.BaseSampler). Received: sampler={sampler!r} (of type {type(sampler).__name__})."
        )
    stopped_early = scheduler.stopped_early.__contains__
    if space.searcher == "variant" and sampler is None:
        search_alg, param_space = variant_generator(space, first_configs)
        return Method(scheduler, None, search_alg, param_space, space.searcher)
    # Optuna keeps the searcher's state (every trial it suggested, and what it was told) in
    # its journal, so a resumed study continues it instead of starting over. A torn last entry
    # (a crash or a full disk mid-write) is cut off first; `carry_on` settles what it said.
    repaired = repair_journal(study.results_dir / OPTUNA_JOURNAL)
    if repaired:
        print(wrap(repaired), flush=True)
    searcher = make_searcher(
        space,
        stopped_early,
        storage=journal(study.results_dir / OPTUNA_JOURNAL),
        study_name=study.name,
        resume=study.resumed is not None,
        first_configs=first_configs,
        sampler=sampler,
    )
    name = type(sampler).__name__ if sampler is not None else space.searcher
    if study.resumed is not None and sampler is None:  # a warm-started study keeps its own start-up
        from search.methods.warm_start import keep_own_start_up

        keep_own_start_up(searcher, space)
    warm = _warm_start(study, searcher, warm_start, warm_start_front, own_start_up=sampler is None) if warm_start else None
    return Method(scheduler, searcher, ConcurrencyLimiter(searcher, max_concurrent=space.max_concurrent), {}, name, warm)


def _warm_start(study: Study, searcher: Any, sources: list[str], front_first: bool, *, own_start_up: bool) -> WarmStart:
    """Tell the new searcher the earlier studies' trials that fit its space; with `front_first`
    their front configurations run first. Says on the terminal what was told and skipped."""
    from search.methods import warm_start
    from search.record.results import earlier_studies

    earlier = earlier_studies(study.runs.client, sources)
    warm = warm_start.tell(searcher, study.space, earlier, front_first=front_first, own_start_up=own_start_up)
    print(wrap(warm.summary()), flush=True)
    return warm


def begin(study: Study, method: Method, space_file: Path | None) -> TrialRuns:
    """The study run, started or (resumed) reopened, and the callback that gives each trial
    its nested run."""
    runs = study.runs
    trial_runs = TrialRuns(runs, stopped_early=method.stopped_early, optuna_trial=method.searcher.optuna_trial if method.searcher else None)
    if method.searcher is not None:  # a trial a full disk cut short runs again on resume
        method.searcher.cut_short = lambda trial_id: trial_runs.disk_full(trial_id) is not None
    if study.resumed:
        study.parent_run_id = runs.reopen_parent(study.resumed.parent_run_id)
    else:
        study.parent_run_id = _start_study_run(study, method, space_file)
    return trial_runs


def carry_on(study: Study, method: Method, trial_runs: TrialRuns) -> int:
    """For a resumed study: settle the trials that ended as it was killed, rebuild the
    scheduler's rungs and give the interrupted trials their runs back. Returns how many trials
    are left to run."""
    space = study.space
    if study.resumed is None:
        return space.num_samples
    study.resumed = resuming.settle(study.runs, study.resumed, method.searcher, space, study.results_dir)
    resuming.replay(method.scheduler, study.runs, study.resumed.ended, space.rung_objectives or space.objectives)
    study.resumed = resuming.settle_searcher(method.searcher, study.runs, study.resumed, space)
    trial_runs.carry_on(study.resumed.table, method.searcher.interrupted)
    return space.num_samples - len(study.resumed.ended)


def run_trials(
    study: Study, method: Method, trial_runs: TrialRuns, ending: StudyEnding, *, remaining: int, verbose: bool
) -> tuple[float, float]:
    """Tune's loop over the remaining trials, with progress lines unless `verbose`. Returns when
    the trials began and how long they took (epoch seconds, seconds)."""
    space = study.space
    callbacks: list = [trial_runs, ending.callback()]
    trial_runs.on_disk_full = ending.stop  # a trial that found no room to write stops the study
    if not verbose:
        resumed = study.resumed
        callbacks.append(
            ProgressLines(
                total=space.num_samples,
                objectives=dict(space.objectives),
                rung_objectives=dict(space.rung_objectives or {}),
                cut_off=trial_runs.cut_off.__contains__,
                name_of=trial_runs.trial_name,
                stopped_early=method.stopped_early,
                already_ended=dict(resumed.ended["status"].value_counts()) if resumed else None,
                time_budget_s=space.time_budget_s,
                max_epochs=space.max_epochs,
            )
        )
    tuner = _tuner(study, method, callbacks, verbose, remaining)
    started_at = time.time()
    if space.time_budget_s is not None:
        trial_runs.budget_ends_at = started_at + space.time_budget_s
    if remaining > 0:
        tuner.fit()
    ending.check()  # a signal that came as Tune's loop ended
    if space.time_budget_s is not None:
        trial_runs.cut_off_running()
    return started_at, time.time() - started_at


def finish(
    study: Study, method: Method, ending: StudyEnding, *, experiment: str, started_at: float, wall_time_s: float, remeasure_front: bool
) -> Outcome:
    """The front of full-budget trials, measured again alone (`remeasure_front`), its models
    registered, the study's directories cleared and its summary logged."""
    space, runs = study.space, study.runs
    if space.front == "recipes":
        return _finish_recipes(study, method, ending, experiment=experiment, started_at=started_at, wall_time_s=wall_time_s, again=remeasure_front)
    front = front_module.analyse(
        study_table(runs, study.parent_run_id, space, study.directory("models")),
        space.objectives,
        reference_point=space.reference_point,
        started_at=started_at,
    )
    remeasured = remeasure.measure_front(
        front, space, runs, cache_dir=study.directory("cache"), again=remeasure_front, should_stop=ending.stop_requested
    )
    ending.check()
    model_uris = front_module.record(
        front,
        runs,
        parent_run_id=study.parent_run_id,
        objectives=space.objectives,
        model_registry_name=experiment,
        started_at=started_at,
        remeasured=remeasured,
    )
    stopped_at_rung = _clear_and_summarise(study, method, front.table, wall_time_s, front.hypervolume)
    return Outcome(front, remeasured, model_uris, stopped_at_rung)


def _finish_recipes(
    study: Study, method: Method, ending: StudyEnding, *, experiment: str, started_at: float, wall_time_s: float, again: bool
) -> Outcome:
    """The front over every epoch of every trial (`search.methods.recipes`): what the front's
    recipes' models left out measured on them, the recipes that answer the targets trained again
    alone (`again`), the models registered, the fastest recipe per target named; then as `finish`."""
    from search.methods.recipes import RECIPE
    from search.record.results import histories

    space, runs = study.space, study.runs
    models = study.directory("models")
    trials = study_table(runs, study.parent_run_id, space, models)
    wanted = [m for m in dict.fromkeys([*space.objectives, *(m for m, _ in space.recipe_targets), TRAIN_TIME_S]) if m != EPOCH]
    ran = trials[trials["run_id"].notna()]
    courses = histories(runs.client, dict(zip(ran["trial"], ran["run_id"])), wanted)
    table = recipe_module.table(trials, courses, keep=["trial", "status", "run_id", "trial_id", *space.params])
    table["config_file"] = [str(models / str(t)) + remeasure.CONFIG_SUFFIX for t in table["trial_id"]]
    table["model_dir"] = [epoch_model_dir(str(models / str(t)), e) for t, e in zip(table["trial_id"], table[EPOCH])]
    table["ended_at"] = table.pop("reported_at") if "reported_at" in table else np.nan
    finite = np.isfinite(pareto.losses(table.to_dict("records"), space.objectives)).all(axis=1)
    front = front_module.analyse(
        table, space.objectives, reference_point=space.reference_point, started_at=started_at, eligible=pd.Series(finite, index=table.index)
    )
    remeasure.measure_front(front, space, runs, cache_dir=study.directory("cache"), again=False, should_stop=ending.stop_requested, key=RECIPE)
    fastest = front_module.fastest_per_target(front.table, space.recipe_targets, space.objectives)
    answers = front.table[front.table[RECIPE].isin(fastest[RECIPE])]
    retimed = remeasure.retime_recipes(answers, space, runs, cache_dir=study.directory("cache"), should_stop=ending.stop_requested) if again else {}
    fastest = front_module.with_retimed(fastest, retimed)
    ending.check()
    model_uris = front_module.record_recipes(
        front,
        runs,
        parent_run_id=study.parent_run_id,
        objectives=space.objectives,
        model_registry_name=experiment,
        started_at=started_at,
        targets=space.recipe_targets,
        fastest=fastest,
    )
    trials["on_front"] = trials["trial"].isin(set(front.points["trial"]))
    trials["knee"] = trials["trial"].isin(set(front.points.loc[front.points["knee"].astype(bool), "trial"]))
    stopped_at_rung = _clear_and_summarise(study, method, trials, wall_time_s, front.hypervolume)
    return Outcome(front, None, model_uris, stopped_at_rung, trials=trials, targets=fastest)


def _clear_and_summarise(study: Study, method: Method, trials: pd.DataFrame, wall_time_s: float, hypervolume: float) -> dict[int, int]:
    """The study's directories removed (its kept models are in MLflow now) and its summary
    logged; returns how many trials the scheduler stopped at each rung."""
    # Each trial's configuration file (a few hundred bytes) stays: a study carried on past its
    # end trains earlier front recipes again alone from them (`remeasure.retime_recipes`).
    front_module.discard_models(study.directory("models"), keep=(remeasure.CONFIG_SUFFIX,))
    shutil.rmtree(study.directory("checkpoints"), ignore_errors=True)
    shutil.rmtree(study.directory("cache"), ignore_errors=True)
    stopped_at_rung = dict(sorted(method.scheduler.stopped_at_rung.items()))
    _log_study_summary(study, trials, wall_time_s, stopped_at_rung, hypervolume)
    study.comparison = _compare(study, method)
    capped = sum(getattr(method.scheduler, "capped_at", {}).values())
    if capped:  # of the stops above, those capping made (their later recipes were all dominated)
        study.runs.log_metrics(study.parent_run_id, {"trials_capped": float(capped)})
    return stopped_at_rung


def _tuner(study: Study, method: Method, callbacks: list, verbose: bool, remaining: int) -> tune.Tuner:
    """Ray Tune's Tuner for the study's trials: `run_trial` on the resources each trial asks."""
    space = study.space
    multi_worker = space.workers_per_trial > 1
    trainable = tune.with_resources(
        functools.partial(
            run_trial,
            trainable=space.trainable,
            cpus=space.cpus_per_trial,
            gpus=space.gpus_per_trial,
            workers=space.workers_per_trial,
            gpu_memory_mb=space.gpu_memory_mb,
            models_dir=str(study.directory("models")),
            checkpoints_dir=str(study.directory("checkpoints")),
            cache_dir=str(study.directory("cache")),
            train_runs_dir=str(study.results_dir / "ray" / "train" / study.name),
            session=uuid.uuid4().hex,
            needed=space.needed_metrics,
            environment=environment.for_workers(),
            epoch_models=space.front == "recipes",
        ),
        # A multi-worker trial only drives its Train workers, which reserve the rest of its CPUs.
        {"cpu": devices.DRIVER_CPUS} if multi_worker else {"cpu": space.cpus_per_trial, "gpu": space.gpus_per_trial},
    )
    return tune.Tuner(
        trainable,
        param_space=method.param_space,
        tune_config=tune.TuneConfig(
            search_alg=method.search_alg,
            scheduler=method.scheduler,
            num_samples=max(remaining, 1),
            # A stopped multi-worker trial must end its process to end its Train run.
            reuse_actors=not multi_worker,
            time_budget_s=space.time_budget_s,
        ),
        run_config=tune.RunConfig(
            name=f"{study.name}-resumed-{time.strftime('%H%M%S')}" if study.resumed else study.name,
            storage_path=str(study.results_dir / "ray"),
            callbacks=callbacks,
            verbose=2 if verbose else 0,
            failure_config=tune.FailureConfig(max_failures=space.max_retries),
        ),
    )


def _start_study_run(study: Study, method: Method, space_file: Path | None) -> str:
    space, runs = study.space, study.runs
    search_space = space.describe()
    parent_run_id = runs.start_parent(
        study.name,
        params={
            "objectives": dict(space.objectives),
            "rung_objectives": dict(space.rung_objectives or space.objectives),
            "search_space": search_space,
            "constants": dict(space.constants),
            "searcher": method.searcher_name,
            "scheduler": type(method.scheduler).__name__,
            **{
                field: getattr(space, field)
                for field in (
                    "num_samples",
                    "max_epochs",
                    "grace_period",
                    "reduction_factor",
                    "max_concurrent",
                    "cpus_per_trial",
                    "gpus_per_trial",
                    "workers_per_trial",
                    "gpu_memory_mb",
                    "seed",
                )
            },
        },
        tags={"study": study.name, "space": space.name, "role": "study", "trainable": trainable_name(space), **_warm_start_tags(method.warm_start)},
    )
    runs.client.log_text(parent_run_id, search_space, "search_space.json")
    if method.warm_start is not None:
        runs.client.log_text(parent_run_id, method.warm_start.table().to_csv(index=False), "warm_start.csv")
    if space_file is not None:
        runs.client.log_artifact(parent_run_id, str(space_file))
    return parent_run_id


def _compare(study: Study, method: Method) -> pd.DataFrame | None:
    """This study beside the other studies of its experiment, those it started from and (carried
    on) itself as it stood before this launch (`search.record.compare`), `COMPARED` studies at
    most, logged on its run as `studies.csv` and `studies.png`; None when there is no other."""
    from search.record.compare import Comparison
    from search.record.results import studies_of

    runs = study.runs
    experiment = runs.client.get_experiment(runs.experiment_id).name
    sources = [experiment, *(method.warm_start.sources if method.warm_start else [])]
    # This study first, then the newest others: reading each study costs a query of its trials.
    studies = studies_of(runs.client, sources, runs.tracking_uri, first=study.parent_run_id, limit=COMPARED)
    ended_before = set(study.resumed.ended["trial"]) if study.resumed is not None else set()
    if len(studies) < 2 and not ended_before:
        return None
    comparison = Comparison.of(studies, before={study.name: ended_before} if ended_before else None)
    with tempfile.TemporaryDirectory() as scratch:
        comparison.table.to_csv(Path(scratch) / "studies.csv", index=False)
        comparison.plot(Path(scratch) / "studies.png")
        for name in ("studies.csv", "studies.png"):
            runs.client.log_artifact(study.parent_run_id, str(Path(scratch) / name))
    return comparison.table


def _warm_start_tags(warm: WarmStart | None) -> dict[str, str]:
    """What a study started from, on its run: the earlier studies and how many trials each way."""
    if warm is None:
        return {}
    return {
        "warm_start": ", ".join(warm.sources),
        "warm_start_told": str(warm.told),
        "warm_start_skipped": str(warm.skipped),
        "warm_start_first": str(len(warm.first)),
    }


def _log_study_summary(study: Study, table: pd.DataFrame, wall_time_s: float, stopped_at_rung: dict[int, int], hypervolume: float) -> None:
    space, runs = study.space, study.runs
    counts = table["status"].value_counts() if not table.empty else {}
    metrics: dict[str, float] = {
        "wall_time_s": wall_time_s,
        "trials_total": float(len(table)),
        "front_hypervolume": hypervolume,
        **{f"trials_{state}": float(counts.get(state, 0)) for state in ("finished", "stopped", "failed")},
        **{f"stopped_at_epoch_{rung}": float(n) for rung, n in stopped_at_rung.items()},
    }
    ran = table[table["status"] != "failed"] if not table.empty else table
    if not ran.empty:
        if TRAIN_TIME_S in ran:
            metrics["summed_train_time_s"] = float(ran[TRAIN_TIME_S].fillna(0).sum())
        finished = ran[ran["status"] == "finished"]
        if not finished.empty:
            best = finished.iloc[0]
            metrics[f"best_{space.primary_metric}"] = float(best[space.primary_metric])
    runs.log_metrics(study.parent_run_id, metrics)
    shown = table.drop(columns=[c for c in HIDDEN_COLUMNS if c in table and c != "pareto_rank"])
    runs.client.log_text(study.parent_run_id, shown.to_csv(index=False), "summary.csv")
    runs.client.log_text(study.parent_run_id, format_table(shown), "summary.txt")
