"""Run a study: Optuna suggests, (MO-)ASHA stops weak trials early, Ray runs trials, MLflow records.

`run_study(space, ...)` is the whole pipeline; `search.launch` is its command line.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any

from search.space import SearchSpace

if TYPE_CHECKING:
    import pandas as pd

    from search.front import Front

# Quiet defaults for the driver and every Ray worker (a user's own setting wins).
QUIET_ENV = {
    "TF_USE_LEGACY_KERAS": "1",  # tensorflow-model-optimization needs Keras 2 (tf_keras)
    "TF_CPP_MIN_LOG_LEVEL": "3",
    "RAY_AUTH_MODE": "disabled",
    "RAY_DEDUP_LOGS": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_AIR_NEW_OUTPUT": "0",
    "RAY_TRAIN_V2_ENABLED": "1",
    # A reused worker waits this long for a stopped trial's thread before taking the next trial
    # (Ray's default, 2 s, is shorter than one epoch of many models and then fails the trial).
    "TUNE_FUNCTION_THREAD_TIMEOUT_S": "600",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "PYTHONWARNINGS": "ignore::DeprecationWarning,ignore::FutureWarning",
}
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
    trials: pd.DataFrame  # one row per trial, best first by the primary objective
    front: Front
    model_uris: dict[str, str]  # registered model URI of each front trial, by trial name
    stopped_at_rung: dict[int, int]  # trials stopped early, by the epoch of the rung


def _limit_threads(cpus: float) -> None:
    """Size TensorFlow's and OpenMP's thread pools to the trial's CPU allocation.

    Set through the environment so it takes effect when TensorFlow is first imported in this
    worker process; a reused worker keeps the pools it has, which were sized the same way.
    """
    threads = str(max(1, int(cpus)))
    for name in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS"):
        os.environ[name] = threads


def _run_trial(
    config: dict[str, Any], *, trainable: Callable[..., Any], cpus: float, models_dir: str
) -> None:
    """The Tune function: train one configuration, forwarding each report to Tune.

    The trainable saves its final model under `models_dir/<trial id>`; the study keeps the
    models of the Pareto front and discards the rest. It polls `should_stop` between batches.
    """
    from ray import tune

    _limit_threads(cpus)
    model_dir = os.path.join(models_dir, tune.get_context().get_trial_id())
    trainable({**config, "model_dir": model_dir}, report=tune.report, should_stop=_stop_requested)


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


def summary_table(rows: list[dict[str, Any]], space: SearchSpace) -> pd.DataFrame:
    """Trials as a table: full-budget trials first, then those stopped early (their metrics are
    partial), then failed ones; within each, best first by the primary objective."""
    import pandas as pd

    table = pd.DataFrame(rows)
    if table.empty:
        return table
    ascending = space.primary_mode == "min"
    table["_order"] = table["status"].map({"finished": 0, "stopped": 1}).fillna(2)
    table = table.sort_values(
        ["_order", space.primary_metric], ascending=[True, ascending], na_position="last"
    )
    return table.drop(columns="_order").reset_index(drop=True)


# Columns of the summary table after the objectives, when the trainable reports them.
SHOWN_METRICS = ("epoch", "train_time_s", "inference_ms", "model_bytes_gzip", "tflite_bytes", "params")
# Columns kept in the table for bookkeeping but not printed.
HIDDEN_COLUMNS = ("trial_id", "run_id", "ended_at", "model_dir", "pareto_rank", "on_front", "knee")


def _row(result: Any, trial_runs: Any, scheduler: Any, space: SearchSpace, models_dir: Path) -> dict[str, Any]:
    from search.tracking import trial_metrics

    metrics = trial_metrics(result.metrics or {})
    trial_id = (result.metrics or {}).get("trial_id") or Path(result.path).name
    number = trial_runs.numbers.get(trial_id)
    status = (
        "failed"
        if result.error is not None
        else "stopped"
        if trial_id in scheduler.stopped_early
        else "finished"
    )
    row: dict[str, Any] = {"trial": f"trial-{number:03d}" if number else trial_id, "status": status}
    row.update({key: metrics.get(key) for key in dict.fromkeys([*space.objectives, *SHOWN_METRICS])})
    row.update({key: (result.config or {}).get(key) for key in space.params})
    row.update(
        trial_id=trial_id,
        run_id=trial_runs.run_ids.get(trial_id),
        ended_at=trial_runs.ended_at.get(trial_id, time.time()),
        model_dir=str(models_dir / trial_id),
    )
    return row


def run_study(
    space: SearchSpace,
    *,
    results_dir: Path,
    experiment: str | None = None,
    tracking_uri: str | None = None,
    space_file: Path | None = None,
    verbose: bool = False,
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
    """
    import mlflow  # its import configures its loggers; quieten them afterwards
    import optuna
    import ray
    from ray import tune
    from ray.tune.search import ConcurrencyLimiter

    from search import front as front_module
    from search.progress import ProgressLines
    from search.schedulers import make_scheduler
    from search.searchers import TruthfulOptunaSearch
    from search.searchers import make_sampler
    from search.tracking import StudyRuns
    from search.tracking import TrialRuns
    from search.tracking import default_tracking_uri

    logging.getLogger(mlflow.__name__).setLevel(logging.WARNING)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if not verbose:
        # Ray Tune logs each failed trial's traceback; the progress line names the error and
        # the trial's MLflow run keeps the traceback (error tag, error.txt).
        logging.getLogger("ray.tune").setLevel(logging.CRITICAL)
    results_dir = Path(results_dir).resolve()
    results_dir.mkdir(parents=True, exist_ok=True)
    tracking_uri = tracking_uri or default_tracking_uri(results_dir)
    experiment = experiment or space.name
    study_name = f"{space.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    models_dir = results_dir / "models" / study_name

    scheduler = make_scheduler(
        space.scheduler,
        space.objectives,
        max_t=space.max_epochs,
        grace_period=space.grace_period,
        reduction_factor=space.reduction_factor,
    )
    stopped_early = scheduler.stopped_early.__contains__
    searcher = TruthfulOptunaSearch(
        space=space.suggest,
        metric=list(space.objectives),
        mode=list(space.objectives.values()),
        sampler=make_sampler(space.searcher, space.seed),
        stopped_early=stopped_early,
    )

    runs = StudyRuns(tracking_uri, experiment, artifact_root=results_dir / "artifacts")
    parent_run_id = runs.start_parent(
        study_name,
        params={
            "objectives": dict(space.objectives),
            "search_space": space.describe(),
            "constants": dict(space.constants),
            "searcher": space.searcher,
            "scheduler": type(scheduler).__name__,
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
                    "seed",
                )
            },
        },
        tags={"study": study_name, "space": space.name, "role": "study"},
    )
    runs.client.log_text(parent_run_id, space.describe(), "search_space.json")
    if space_file is not None:
        runs.client.log_artifact(parent_run_id, str(space_file))

    trial_runs = TrialRuns(runs, stopped_early=stopped_early)
    callbacks: list = [trial_runs]
    if not verbose:
        callbacks.append(
            ProgressLines(
                total=space.num_samples,
                objectives=dict(space.objectives),
                name_of=trial_runs.trial_name,
                stopped_early=stopped_early,
            )
        )

    _ship_space_file_code(space)
    if not ray.is_initialized():
        ray.init(
            include_dashboard=False,
            logging_level=logging.ERROR,
            log_to_driver=True,
            runtime_env={"env_vars": {k: os.environ[k] for k in QUIET_ENV}},
        )
    trainable = tune.with_resources(
        functools.partial(
            _run_trial,
            trainable=space.trainable,
            cpus=space.cpus_per_trial,
            models_dir=str(models_dir),
        ),
        {"cpu": space.cpus_per_trial, "gpu": space.gpus_per_trial},
    )
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=ConcurrencyLimiter(searcher, max_concurrent=space.max_concurrent),
            scheduler=scheduler,
            num_samples=space.num_samples,
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=study_name,
            storage_path=str(results_dir / "ray"),
            callbacks=callbacks,
            verbose=2 if verbose else 0,
            failure_config=tune.FailureConfig(max_failures=space.max_retries),
        ),
    )

    started_at = time.time()
    status = "FAILED"
    try:
        grid = tuner.fit()
        wall_time_s = time.time() - started_at
        rows = [_row(result, trial_runs, scheduler, space, models_dir) for result in grid]
        front = front_module.analyse(
            summary_table(rows, space),
            space.objectives,
            reference_point=space.reference_point,
            started_at=started_at,
        )
        model_uris = front_module.record(
            front,
            runs,
            parent_run_id=parent_run_id,
            objectives=space.objectives,
            model_registry_name=experiment,
            started_at=started_at,
        )
        stopped_at_rung = dict(sorted(scheduler.stopped_at_rung.items()))
        _log_study_summary(runs, parent_run_id, front, space, wall_time_s, stopped_at_rung)
        status = "FINISHED"
        return StudyResult(
            study_name,
            experiment,
            tracking_uri,
            parent_run_id,
            wall_time_s,
            front.table,
            front,
            model_uris,
            stopped_at_rung,
        )
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        front_module.discard_models(models_dir)
        runs.end(parent_run_id, status)


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
        metrics["summed_train_time_s"] = float(ran["train_time_s"].fillna(0).sum())
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
    shown = shown.map(lambda value: "-" if value is None else value)  # e.g. metrics of failed trials
    shown = shown.head(rows) if rows else shown
    with pd.option_context("display.width", 250, "display.max_columns", 40):
        return shown.to_string(index=False, float_format=_number, na_rep="-")


def _number(value: float) -> str:
    # Whole numbers (parameter counts, bytes) in full; others to 4 significant digits.
    return f"{value:.0f}" if value.is_integer() and abs(value) >= 1 else f"{value:.4g}"
