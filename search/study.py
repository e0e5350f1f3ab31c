"""Run a study: Optuna suggests, (MO-)ASHA stops weak trials early, Ray runs trials, MLflow records.

`run_study(space, ...)` is the whole pipeline; `search.launch` is its command line.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import logging
import hashlib
import itertools
import json
import os
import shutil
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any

from search.space import SearchSpace
from trainables.contract import COMPLETE
from trainables.contract import EPOCH
from trainables.contract import TRAIN_TIME_S
from trainables.contract import TrialContext

if TYPE_CHECKING:
    import pandas as pd

    from search.front import Front
    from search.remeasure import Remeasured
    from search.tracking import StudyRuns

# Quiet defaults for the driver and every Ray worker (a user's own setting wins). Which Keras
# `tf.keras` is stays the trainable's choice: the Keras kit asks for Keras 2 itself
# (`trainables._keras`), a user's trainable gets what the user's environment says.
QUIET_ENV = {
    "TF_CPP_MIN_LOG_LEVEL": "3",
    # The local Ray instance a study starts needs no authentication; a cluster's own mode is
    # kept (`ray start` enables token authentication by default; see `cluster.connect`).
    "RAY_AUTH_MODE": "disabled",
    "RAY_DEDUP_LOGS": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_AIR_NEW_OUTPUT": "0",
    "RAY_TRAIN_V2_ENABLED": "1",
    # A reused worker waits this long for a stopped trial's thread before taking the next trial
    # (Ray's default, 2 s, is shorter than one epoch of many models and then fails the trial).
    "TUNE_FUNCTION_THREAD_TIMEOUT_S": "600",
    # Ctrl-C is taken by the study's own handler (`_StudyEnding`); Ray's would end the run as if it
    # had completed. The study then marks cut-off trials KILLED and says how to resume.
    "TUNE_DISABLE_SIGINT_HANDLER": "1",
    # Objectives measured only when a trial ends (deployed size, latency) are absent from the
    # per-epoch results; Tune would otherwise fail the study on the first such result.
    "TUNE_DISABLE_STRICT_METRIC_CHECKING": "1",
    # Ray Train's watcher for preempted (spot) nodes serves elastic Train runs; a trial's run
    # is not elastic (a study retries failed trials itself, `max_retries`).
    "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
    # The autoscaler's "No available node types can fulfill resource request" lines: a request
    # no node can hold is refused before the study starts (`cluster.check_resources`).
    "RAY_SCHEDULER_EVENTS": "0",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    # MLflow prints "View run ... at: URL" as each run ends on a tracking server; the study prints
    # the UI command once at its end.
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    "PYTHONWARNINGS": "ignore::DeprecationWarning,ignore::FutureWarning",
}
# The searcher's record in the results directory: every study's Optuna study, by study name.
OPTUNA_JOURNAL = "optuna.journal"
USER_SET = frozenset(name for name in QUIET_ENV if name in os.environ)  # a user's setting wins
for _name, _value in QUIET_ENV.items():
    os.environ.setdefault(_name, _value)


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
    remeasured: Remeasured | None = None  # the front measured again alone (`search.remeasure`)

    @property
    def trials(self) -> pd.DataFrame:
        """One row per trial, full-budget trials first, best first by the primary objective."""
        return self.front.table


def _run_trial(
    config: dict[str, Any],
    *,
    trainable: Callable[..., Any],
    cpus: float,
    gpus: float,
    workers: int,
    gpu_memory_mb: int | None,
    models_dir: str,
    checkpoints_dir: str,
    cache_dir: str,
    train_runs_dir: str,
    session: str,
    needed: frozenset[str] | None = None,
) -> None:
    """The Tune function: train one configuration, forwarding each report to Tune.

    The trainable saves its final model under `models_dir/<trial id>` (the study keeps the
    Pareto front's models), checkpoints every epoch in a directory claimed for this
    configuration (a run of the same configuration after an interruption continues from it),
    may keep what the study's trials share in `cache_dir` (e.g. a distillation teacher, trained
    by the first trial that needs it), and polls `should_stop` between batches. The checkpoint
    goes once the trial ends; if it raises, the checkpoint stays for a retry.

    With `workers` > 1 the trial drives a Ray Train run of that many workers sharing its
    `cpus` and `gpus` (`search.devices.run_workers`), recorded by Ray Train under
    `train_runs_dir`; a trial stopped early ends with its process, which takes the Train run
    down with it.
    """
    from ray import tune

    from search import devices
    from search import remeasure

    sys.unraisablehook = _unraisable_but_shutdown
    trial_id = tune.get_context().get_trial_id()
    checkpoint_dir = _claim_checkpoint_dir(Path(checkpoints_dir), config, session, trial_id)
    directories = {"model_dir": os.path.join(models_dir, trial_id), "checkpoint_dir": str(checkpoint_dir), "cache_dir": cache_dir}
    remeasure.save_config(directories["model_dir"], config)  # the front is measured again from it
    if workers > 1:
        devices.run_workers(
            trainable,
            config,
            {**directories, "needed": needed},
            workers=workers,
            cpus=cpus,
            gpus=gpus,
            gpu_memory_mb=gpu_memory_mb,
            storage_path=train_runs_dir,
            name=trial_id,
        )
    else:
        devices.prepare_process(cpus, gpu_memory_mb)
        pinned = devices.pin_to_free_cores(cpus)
        reported = []

        def report(metrics: dict[str, Any]) -> None:
            if not reported and pinned is not None:  # a tag of the trial's run
                metrics = {**metrics, "pinned_cores": ",".join(map(str, pinned.cores))}
            reported.append(True)
            tune.report(metrics)

        try:
            returned = trainable(config, TrialContext(report=report, should_stop=_stop_requested, needed=needed, **directories))
        finally:
            if pinned is not None:
                pinned.release()
        if not reported and returned:  # the contract's "report nothing, return the metrics"
            tune.report({EPOCH: config.get("epochs", 1), **returned, COMPLETE: True})
    shutil.rmtree(checkpoint_dir, ignore_errors=True)


def _unraisable_but_shutdown(unraisable: Any) -> None:
    """Stay quiet about Ray ending a worker at the end of the study.

    Ray's SIGTERM handler raises SystemExit; when the signal lands inside a garbage-collection
    callback, Python prints "Exception ignored in ..." with a traceback to the user's terminal.
    """
    if not isinstance(unraisable.exc_value, SystemExit):
        sys.__unraisablehook__(unraisable)


def _claim_checkpoint_dir(root: Path, config: dict[str, Any], session: str, trial_id: str) -> Path:
    """The checkpoint directory of this configuration: `<config hash>-<n>`, with an `owner` file.

    A directory owned by an earlier launch of the study holds what an interrupted run of this
    configuration saved: take it over and continue. One owned by another live trial of this
    launch (the same configuration suggested twice) is left alone for the next `n`. One owned by
    this very trial is its own, kept from before a retry. Each claim reads and writes the owner
    under an exclusive lock on the directory's `owner.lock`, so two trials never both own it.
    """
    import fcntl

    digest = hashlib.sha1(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]
    me = f"{session} {trial_id}"
    for n in itertools.count():
        path = root / f"{digest}-{n}"
        path.mkdir(parents=True, exist_ok=True)
        owner = path / "owner"
        with open(path / "owner.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            current = owner.read_text() if owner.exists() else ""
            if current == me or current.split(" ")[0] != session:  # its own, free or an earlier launch's
                owner.write_text(me)
                return path
    raise AssertionError("unreachable")


def _ship_space_file_code(space: SearchSpace) -> None:
    """Let Ray workers run a trainable defined in the space file itself.

    Space files are imported under a private module name workers cannot import, so such a
    trainable travels by value; trainables from installed packages travel by reference.
    """
    import ray.cloudpickle

    from search.space import SPACE_MODULE_PREFIX

    module = sys.modules.get(getattr(space.trainable, "__module__", ""))
    if module is not None and module.__name__.startswith(SPACE_MODULE_PREFIX):
        ray.cloudpickle.register_pickle_by_value(module)


def _stop_requested() -> bool:
    """True once Tune has asked this trial to stop (the scheduler stopped it early).

    Without this the trial trains to the end of its epoch before it notices, wasting that time,
    and a reused worker cannot take the next trial until it does.
    """
    from ray.train._internal.session import get_session

    session = get_session()
    return bool(session is not None and session.stop_event.is_set())


def summary_table(table: pd.DataFrame, space: SearchSpace) -> pd.DataFrame:
    """Trials as a table: full-budget trials first, then those stopped early (their metrics are
    partial), then failed ones; within each, best first by the primary objective."""
    if table.empty:
        return table
    ascending = space.primary_mode == "min"
    table["_order"] = table["status"].map({"finished": 0, "stopped": 1}).fillna(2)
    table = table.sort_values(
        ["_order", space.primary_metric], ascending=[True, ascending], na_position="last"
    )
    return table.drop(columns="_order").reset_index(drop=True)


def shown_metrics(space: SearchSpace) -> list[str]:
    """Columns of the summary table after the objectives: the epochs a trial ran, then what the
    trainable declares worth showing (`train.shown_metrics`, see `trainables.contract`)."""
    return [EPOCH, *getattr(space.trainable, "shown_metrics", ())]


# Columns kept in the table for bookkeeping but not printed.
HIDDEN_COLUMNS = ("trial_id", "optuna_trial", "run_id", "ended_at", "model_dir", "pareto_rank", "on_front", "knee")


def _study_table(runs: Any, parent_run_id: str, space: SearchSpace, models_dir: Path) -> pd.DataFrame:
    """Every trial of the study, read back from MLflow (the record that survives interruptions)."""
    import pandas as pd

    from search.results import trials_frame

    frame = trials_frame(runs.client, runs.experiment_id, parent_run_id)
    reported = [TRAIN_TIME_S] if TRAIN_TIME_S in frame else []  # a contract key: summed by the study
    columns = ["trial", "status", *dict.fromkeys([*space.objectives, *shown_metrics(space), *reported]), *space.params]
    table = pd.DataFrame({column: frame.get(column) for column in columns}, index=frame.index)
    table["trial_id"] = frame.get("trial_id")
    table["optuna_trial"] = frame.get("optuna_trial")
    table["run_id"] = frame.get("run_id")
    table["ended_at"] = frame.get("ended_at")
    table["model_dir"] = [str(models_dir / str(trial_id)) for trial_id in frame.get("trial_id", [])]
    return summary_table(table, space)


@dataclasses.dataclass(frozen=True)
class _Resumed:
    """What an interrupted study had recorded, to carry on from."""

    study_name: str
    parent_run_id: str
    table: pd.DataFrame  # its trials so far (see `_study_table`)

    @property
    def ended(self) -> pd.DataFrame:
        from search.results import ENDED

        return self.table[self.table["status"].isin(ENDED)]

    @property
    def interrupted(self) -> pd.DataFrame:
        return self.table.drop(self.ended.index)


def _find_interrupted_study(runs: Any, space: SearchSpace, results_dir: Path) -> _Resumed:
    from search.errors import SpaceError

    studies = runs.client.search_runs(
        [runs.experiment_id],
        filter_string=f"tags.role = 'study' and tags.space = '{space.name}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if not studies or studies[0].info.status == "FINISHED":
        raise SpaceError(
            f"Nothing to resume: the latest study of space '{space.name}' in {runs.tracking_uri} "
            "finished (or there is none). Run it again without --resume to start a new study."
        )
    parent = studies[0]
    study_name = parent.info.run_name
    table = _study_table(runs, parent.info.run_id, space, results_dir / "models" / study_name)
    return _Resumed(study_name, parent.info.run_id, table)


def _settle(runs: Any, resumed: _Resumed, searcher: Any, space: SearchSpace, results_dir: Path) -> _Resumed:
    """End the runs of trials that ended as the study was killed, after the searcher was told
    but before their run was (Tune tells the searcher first): Optuna's record says how they
    ended, so they are neither run again nor lost. Returns the study's trials as they now are."""
    import pandas as pd
    from optuna.trial import TrialState

    from search.searchers import EPOCHS_MISSING

    told = {trial.number: trial for trial in searcher.optuna_study.get_trials(deepcopy=False) if trial.state.is_finished()}
    settled = False
    for _, row in resumed.interrupted.iterrows():
        trial = told.get(int(row["optuna_trial"])) if pd.notna(row["optuna_trial"]) else None
        if trial is None:
            continue
        stopped = trial.state == TrialState.PRUNED or f"constraints:{EPOCHS_MISSING}" in trial.system_attrs
        runs.client.set_tag(row["run_id"], "settled_on_resume", "ended as the study was killed; status from the searcher's record")
        if trial.state == TrialState.FAIL:
            runs.end(row["run_id"], "FAILED")
        else:
            runs.client.set_tag(row["run_id"], "stopped_early", str(stopped).lower())
            runs.end(row["run_id"], "KILLED" if stopped else "FINISHED")
        settled = True
    if not settled:
        return resumed
    return _Resumed(resumed.study_name, resumed.parent_run_id, _study_table(runs, resumed.parent_run_id, space, results_dir / "models" / resumed.study_name))


def _replay(scheduler: Any, runs: Any, ended: pd.DataFrame, objectives: Any) -> None:
    """Feed the per-epoch results of trials that ended before an interruption to a new scheduler,
    so its rungs hold what the interrupted study had seen (Ray does not save scheduler state)."""
    from types import SimpleNamespace

    for _, row in ended.sort_values("ended_at").iterrows():
        if row["status"] == "failed" or not row["trial_id"]:
            continue
        history: dict[int, dict[str, float]] = {}
        for metric in objectives:
            for point in runs.client.get_metric_history(row["run_id"], metric):
                history.setdefault(point.step, {EPOCH: point.step})[metric] = point.value
        trial = SimpleNamespace(trial_id=row["trial_id"])
        scheduler.on_trial_add(None, trial)
        for step in sorted(history):
            if scheduler.on_trial_result(None, trial, history[step]) == "STOP":
                break
        scheduler.on_trial_remove(None, trial)
        if row["status"] == "stopped":
            scheduler.stopped_early.add(row["trial_id"])


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
            (`search.remeasure`; only when the trainable can and an objective is among what it
            measures again).

    Raises:
        StudyInterrupted: on Ctrl-C or SIGTERM, after marking the cut-off trials KILLED.
        SpaceError: a resume that finds nothing to resume, or a changed space.
    """
    if address and "RAY_AUTH_MODE" not in USER_SET:  # read when Ray is imported
        from search.cluster import auth_mode

        os.environ["RAY_AUTH_MODE"] = auth_mode()
    import optuna
    import ray
    from ray.tune.search import ConcurrencyLimiter

    from search import front as front_module
    from search import remeasure
    from search.progress import ProgressLines
    from search.schedulers import make_scheduler
    from search.searchers import journal
    from search.searchers import make_searcher
    from search.searchers import variant_generator
    from search.tracking import TrialRuns
    from search.tracking import default_tracking_uri

    if resume and space.searcher == "variant":
        from search.errors import SpaceError

        raise SpaceError("searcher 'variant' cannot resume a study (Ray keeps no history of it); use an Optuna searcher.")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if not verbose:
        # Ray Tune logs each failed trial's traceback; the progress line names the error and
        # the trial's MLflow run keeps the traceback (error tag, error.txt).
        logging.getLogger("ray.tune").setLevel(logging.CRITICAL)
    results_dir = Path(results_dir).resolve()
    results_dir.mkdir(parents=True, exist_ok=True)
    tracking_uri = tracking_uri or default_tracking_uri(results_dir)
    _ship_space_file_code(space)
    experiment = experiment or space.name
    # Importing MLflow and opening its store (creating a new one takes seconds) overlap Ray's start.
    opening = _in_background(_open_study_runs, tracking_uri, experiment, artifact_root=results_dir / "artifacts")
    if not ray.is_initialized():
        # A new local Ray gets a dashboard only for multi-worker trials: Ray Train's clean-up
        # after a trial stopped early asks Ray's state API. A cluster has its own settings.
        from search import cluster
        from search import devices

        settings: dict[str, Any] = {
            "logging_level": logging.ERROR,
            "log_to_driver": True,
            "runtime_env": {
                "env_vars": {
                    **{k: os.environ[k] for k in QUIET_ENV if k in os.environ},
                    devices.WORKER_IMPORTS: ",".join(getattr(space.trainable, "worker_imports", ())),
                },
                "worker_process_setup_hook": "search.devices.quiet_worker",
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
    from search.cluster import check_resources

    note = check_resources(space)  # before any run or trial: a request no node holds is refused
    if note:
        print(note, flush=True)
    runs = opening.result()
    resumed = _find_interrupted_study(runs, space, results_dir) if resume else None
    study_name = resumed.study_name if resumed else f"{space.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    models_dir = results_dir / "models" / study_name
    checkpoints_dir = results_dir / "checkpoints" / study_name
    cache_dir = results_dir / "cache" / study_name

    scheduler = make_scheduler(
        space.scheduler,
        space.rung_objectives or space.objectives,
        max_t=space.max_epochs,
        grace_period=space.grace_period,
        reduction_factor=space.reduction_factor,
    )
    stopped_early = scheduler.stopped_early.__contains__
    param_space: dict[str, Any] = {}  # Optuna's searcher suggests the parameters themselves
    if space.searcher == "variant":
        searcher = None
        search_alg, param_space = variant_generator(space, first_configs)
    else:
        # Optuna keeps the searcher's state (every trial it suggested, and what it was told)
        # in its journal, so a resumed study continues it instead of starting over.
        searcher = make_searcher(
            space,
            stopped_early,
            storage=journal(results_dir / OPTUNA_JOURNAL),
            study_name=study_name,
            resume=resumed is not None,
            first_configs=first_configs,
        )
        search_alg = ConcurrencyLimiter(searcher, max_concurrent=space.max_concurrent)
    trial_runs = TrialRuns(runs, stopped_early=stopped_early, optuna_trial=searcher.optuna_trial if searcher else None)
    if resumed:
        assert searcher is not None  # run_study refuses to resume with "variant"
        parent_run_id = runs.reopen_parent(resumed.parent_run_id)
    else:
        parent_run_id = _start_study_run(runs, space, study_name, type(scheduler).__name__, space_file)
    # From here every way out (success, an exception in any phase, Ctrl-C, SIGTERM) ends the
    # study run and the runs of trials still training with a true status.
    with _StudyEnding(runs, parent_run_id, trial_runs, study_name) as ending:
        if resumed:
            resumed = _settle(runs, resumed, searcher, space, results_dir)
            _replay(scheduler, runs, resumed.ended, space.rung_objectives or space.objectives)
            trial_runs.carry_on(resumed.table, searcher.interrupted)
        remaining = space.num_samples - (len(resumed.ended) if resumed else 0)
        callbacks: list = [trial_runs, ending.callback()]
        if not verbose:
            callbacks.append(
                ProgressLines(
                    total=space.num_samples,
                    objectives=dict(space.objectives),
                    rung_objectives=dict(space.rung_objectives or {}),
                    cut_off=trial_runs.cut_off.__contains__,
                    name_of=trial_runs.trial_name,
                    stopped_early=stopped_early,
                    already_ended=dict(resumed.ended["status"].value_counts()) if resumed else None,
                    time_budget_s=space.time_budget_s,
                )
            )
        tuner = _tuner(space, study_name, results_dir, scheduler, search_alg, param_space, callbacks, verbose, remaining, resumed is not None)
        started_at = time.time()
        if space.time_budget_s is not None:
            trial_runs.budget_ends_at = started_at + space.time_budget_s
        if remaining > 0:
            tuner.fit()
        ending.check()  # a signal that came as Tune's loop ended
        if space.time_budget_s is not None:
            trial_runs.cut_off_running()
        wall_time_s = time.time() - started_at
        front = front_module.analyse(
            _study_table(runs, parent_run_id, space, models_dir),
            space.objectives,
            reference_point=space.reference_point,
            started_at=started_at,
        )
        remeasured = remeasure.measure_front(
            front, space, runs, cache_dir=cache_dir, again=remeasure_front, should_stop=ending.stop_requested
        )
        ending.check()
        model_uris = front_module.record(
            front,
            runs,
            parent_run_id=parent_run_id,
            objectives=space.objectives,
            model_registry_name=experiment,
            started_at=started_at,
            remeasured=remeasured,
        )
        front_module.discard_models(models_dir)
        shutil.rmtree(checkpoints_dir, ignore_errors=True)
        shutil.rmtree(cache_dir, ignore_errors=True)
        stopped_at_rung = dict(sorted(scheduler.stopped_at_rung.items()))
        _log_study_summary(runs, parent_run_id, front, space, wall_time_s, stopped_at_rung)
        ending.check()  # a signal during the front phase: it is recorded, but the study was cut
    return StudyResult(
        study_name,
        experiment,
        tracking_uri,
        parent_run_id,
        wall_time_s,
        front,
        model_uris,
        stopped_at_rung,
        started_at,
        optuna_journal=str(results_dir / OPTUNA_JOURNAL) if searcher is not None else None,
        remeasured=remeasured,
    )


def _open_study_runs(tracking_uri: str, experiment: str, artifact_root: Path) -> StudyRuns:
    import mlflow  # its import configures its loggers; quieten them afterwards

    from search.tracking import StudyRuns

    logging.getLogger(mlflow.__name__).setLevel(logging.WARNING)
    return StudyRuns(tracking_uri, experiment, artifact_root=artifact_root)


def _in_background(function: Callable[..., Any], *args: Any, **kwargs: Any) -> concurrent.futures.Future:
    """`function(*args, **kwargs)` started in a thread; `.result()` waits for it (or raises its error)."""
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    try:
        return pool.submit(function, *args, **kwargs)
    finally:
        pool.shutdown(wait=False)


def _tuner(
    space: SearchSpace,
    study_name: str,
    results_dir: Path,
    scheduler: Any,
    search_alg: Any,
    param_space: dict[str, Any],
    callbacks: list,
    verbose: bool,
    remaining: int,
    resumed: bool,
) -> Any:
    """Ray Tune's Tuner for the study's trials: `_run_trial` on the resources each trial asks."""
    from ray import tune

    from search import devices

    multi_worker = space.workers_per_trial > 1
    trainable = tune.with_resources(
        functools.partial(
            _run_trial,
            trainable=space.trainable,
            cpus=space.cpus_per_trial,
            gpus=space.gpus_per_trial,
            workers=space.workers_per_trial,
            gpu_memory_mb=space.gpu_memory_mb,
            models_dir=str(results_dir / "models" / study_name),
            checkpoints_dir=str(results_dir / "checkpoints" / study_name),
            cache_dir=str(results_dir / "cache" / study_name),
            train_runs_dir=str(results_dir / "ray" / "train" / study_name),
            session=uuid.uuid4().hex,
            needed=frozenset({*space.objectives, *(space.rung_objectives or {})}),
        ),
        # A multi-worker trial only drives its Train workers, which reserve the rest of its CPUs.
        {"cpu": devices.DRIVER_CPUS} if multi_worker else {"cpu": space.cpus_per_trial, "gpu": space.gpus_per_trial},
    )
    return tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(
            search_alg=search_alg,
            scheduler=scheduler,
            num_samples=max(remaining, 1),
            # A stopped multi-worker trial must end its process to end its Train run.
            reuse_actors=not multi_worker,
            time_budget_s=space.time_budget_s,
        ),
        run_config=tune.RunConfig(
            name=f"{study_name}-resumed-{time.strftime('%H%M%S')}" if resumed else study_name,
            storage_path=str(results_dir / "ray"),
            callbacks=callbacks,
            verbose=2 if verbose else 0,
            failure_config=tune.FailureConfig(max_failures=space.max_retries),
        ),
    )


class StudyInterrupted(Exception):
    """Ctrl-C or SIGTERM stopped the study. What ended is recorded; `--resume` carries on.

    `signal_number` is the signal that stopped it (the launcher exits with 128 + it)."""

    def __init__(self, study_name: str, signal_number: int = 2) -> None:
        super().__init__(study_name)
        self.signal_number = signal_number


class _StudyEnding:
    """Owns how a study ends: its run's status, the runs of trials still training, and the
    signals that stop it.

    Entered once the study run exists. On leaving, the study run ends FINISHED if the block
    completed, KILLED if Ctrl-C or SIGTERM stopped it (the trials still training end KILLED and
    tagged `interrupted`, so `--resume` runs them again), FAILED on any other exception (the
    trials still training end KILLED, tagged `interrupted` with the study's error). No run is
    left RUNNING.

    SIGINT and SIGTERM (what a cluster scheduler or `docker stop` sends) are only noted when
    they arrive: a KeyboardInterrupt raised wherever a signal lands can cut an MLflow write in
    half and leave the sqlite store locked. Tune's loop checks between its steps (`callback`),
    the study after the loop and after the front phase (`check`). A second signal interrupts at
    once.
    """

    SIGNALS = ("SIGINT", "SIGTERM")

    def __init__(self, runs: Any, parent_run_id: str, trial_runs: Any, study_name: str) -> None:
        self.runs = runs
        self.parent_run_id = parent_run_id
        self.trial_runs = trial_runs
        self.study_name = study_name
        self.requested: int | None = None
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> _StudyEnding:
        import signal

        for name in self.SIGNALS:
            number = getattr(signal, name)
            self.previous[number] = signal.signal(number, self._note)
        return self

    def _note(self, signum: int, frame: Any) -> None:
        if self.requested is not None:
            raise KeyboardInterrupt
        self.requested = signum

    def check(self) -> None:
        if self.requested is not None:
            raise KeyboardInterrupt

    def stop_requested(self) -> bool:
        return self.requested is not None

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, traceback: Any) -> bool:
        import signal

        for number, handler in self.previous.items():
            signal.signal(number, handler)
        if kind is None:
            self.runs.end(self.parent_run_id, "FINISHED")
            return False
        if issubclass(kind, KeyboardInterrupt):
            self.trial_runs.interrupt_running()
            self.runs.end(self.parent_run_id, "KILLED")
            raise StudyInterrupted(self.study_name, self.requested or signal.SIGINT) from None
        try:
            self.trial_runs.interrupt_running(f"the study failed: {type(error).__name__}: {error}"[:500])
            self.runs.client.set_tag(self.parent_run_id, "error", f"{type(error).__name__}: {error}"[-5000:])
        finally:
            self.runs.end(self.parent_run_id, "FAILED")
        return False

    def callback(self) -> Any:
        from ray import tune

        ending = self

        class RaiseWhenRequested(tune.Callback):
            def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
                ending.check()

            def __getstate__(self) -> dict:  # Ray pickles callbacks; the handler stays here
                return {}

        return RaiseWhenRequested()


def _start_study_run(
    runs: Any, space: SearchSpace, study_name: str, scheduler_name: str, space_file: Path | None
) -> str:
    search_space = space.describe()
    parent_run_id = runs.start_parent(
        study_name,
        params={
            "objectives": dict(space.objectives),
            "rung_objectives": dict(space.rung_objectives or space.objectives),
            "search_space": search_space,
            "constants": dict(space.constants),
            "searcher": space.searcher,
            "scheduler": scheduler_name,
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
        tags={"study": study_name, "space": space.name, "role": "study"},
    )
    runs.client.log_text(parent_run_id, search_space, "search_space.json")
    if space_file is not None:
        runs.client.log_artifact(parent_run_id, str(space_file))
    return parent_run_id


def _log_study_summary(
    runs: Any,
    parent_run_id: str,
    front: Front,
    space: SearchSpace,
    wall_time_s: float,
    stopped_at_rung: dict[int, int],
) -> None:
    table = front.table
    counts = table["status"].value_counts() if not table.empty else {}
    metrics: dict[str, float] = {
        "wall_time_s": wall_time_s,
        "trials_total": float(len(table)),
        "front_hypervolume": front.hypervolume,
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
    runs.log_metrics(parent_run_id, metrics)
    shown = table.drop(columns=[c for c in HIDDEN_COLUMNS if c in table and c != "pareto_rank"])
    runs.client.log_text(parent_run_id, shown.to_csv(index=False), "summary.csv")
    runs.client.log_text(parent_run_id, format_table(shown), "summary.txt")


def format_table(
    table: pd.DataFrame, rows: int | None = None, hide: tuple[str, ...] = HIDDEN_COLUMNS
) -> str:
    """A table as aligned text, numbers rounded for reading, bookkeeping columns left out."""
    import pandas as pd

    if table.empty:
        return "(no trials)"
    shown = table.drop(columns=[c for c in hide if c in table])
    # Columns with no value at all (metrics no trial reached) come as None: make them numeric
    # NaN, shown as "-"; mapping every cell instead would turn numeric columns into text.
    empty = [column for column in shown if shown[column].isna().all()]
    shown = shown.astype({column: float for column in empty})
    shown = shown.head(rows) if rows else shown
    with pd.option_context("display.width", 250, "display.max_columns", 40):
        return shown.to_string(index=False, float_format=_number, na_rep="-")


def _number(value: float) -> str:
    # Whole numbers (parameter counts, bytes) in full; others to 4 significant digits.
    return f"{value:.0f}" if value.is_integer() and abs(value) >= 1 else f"{value:.4g}"
