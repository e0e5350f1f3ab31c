"""Read a study back from MLflow: its trials as a DataFrame, its front, its models.

Everything comes from the MLflow store, so it works in a notebook on any machine that can reach the
store, long after the study ran:

    >>> from search.record.results import load_study
    >>> study = load_study("mnist", results_dir="results")      # the latest study of the experiment
    >>> study.trials[["trial", "status", "val_accuracy", "epoch_time_s"]]
    >>> study.front                                               # the trials on the Pareto front
    >>> study.recipes()                                           # every epoch of every trial (front over recipes)
    >>> study.targets()                                           # the fastest recipe to each target
    >>> study.history("trial-003")                                # per-epoch metrics
    >>> study.download_model("trial-003", "chosen/")              # an MLflow model (pyfunc)
"""

from __future__ import annotations

import ast
import dataclasses
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any

from search.errors import SpaceError
from search.methods.warm_start import EarlierStudy
from search.methods.warm_start import EarlierTrial
from search.space import typed_params
from search.record.tracking import default_tracking_uri
from search.record.tracking import ui_links

if TYPE_CHECKING:
    import optuna
    import pandas as pd
    from mlflow import MlflowClient

# MLflow run status -> what happened to the trial.
STATUS = {"FINISHED": "finished", "FAILED": "failed", "RUNNING": "running", "SCHEDULED": "running"}


@dataclasses.dataclass
class Study:
    """One study as recorded in MLflow."""

    experiment: str
    name: str  # the study (parent) run's name
    run_id: str  # the study run's id
    tracking_uri: str
    objectives: dict[str, str]
    settings: dict[str, str]  # the study run's parameters
    metrics: dict[str, float]  # the study run's metrics (best values, counts, hypervolume)
    trials: pd.DataFrame  # one row per trial; see `load_study`
    client: MlflowClient = dataclasses.field(repr=False)

    @property
    def front(self) -> pd.DataFrame:
        """The trials on the Pareto front, knee first: full-budget trials, or for a front over
        recipes each trial with a recipe on it (`recipes()` has the recipes)."""
        front = self.trials[self.trials["on_front"]]
        return front.sort_values("knee", ascending=False, kind="stable").reset_index(drop=True)

    @property
    def params(self) -> list[str]:
        """Names of the searched parameters."""
        return list(self.search_space())

    def search_space(self) -> dict[str, optuna.distributions.BaseDistribution]:
        """The searched parameters as Optuna distributions (from the study's `search_space.json`)."""
        import optuna

        text = self.client.download_artifacts(self.run_id, "search_space.json")
        return {
            name: optuna.distributions.json_to_distribution(json.dumps(spec))
            for name, spec in json.loads(Path(text).read_text()).items()
        }

    def links(self) -> dict[str, str]:
        """Links into the MLflow UI: the study's runs table ("runs") and the study run ("run")
        (`search.record.tracking.ui_links`; for a local store, start the UI with `ui_command`)."""
        return ui_links(self.tracking_uri, self.client.get_run(self.run_id).info.experiment_id, self.run_id)

    @property
    def front_kind(self) -> str:
        """What the study's front is over: "trials" (full-budget trials) or "recipes" (every epoch)."""
        return self.settings.get("front", "trials")

    def recipes(self) -> pd.DataFrame:
        """Every epoch of every trial as a recipe, one row each (`recipe`, `trial`, `epoch`, the
        objectives there, training time so far, parameters, `pareto_rank`, `on_front`, `knee`),
        for a study whose front is over recipes (its `recipes.csv`)."""
        return self._table_artifact("recipes.csv")

    def targets(self) -> pd.DataFrame:
        """The fastest recipe to each of the space's targets (`metric`, `target`, `recipe`,
        `trial`, `epoch`, `train_time_s`, `value`), for a study whose front is over recipes."""
        return self._table_artifact("targets.csv")

    def _table_artifact(self, name: str) -> pd.DataFrame:
        import pandas as pd

        if self.front_kind != "recipes":
            raise ValueError(f"Study {self.name} has a front over full-budget trials; {name} exists for fronts over recipes (space front=\"recipes\").")
        return pd.read_csv(self.client.download_artifacts(self.run_id, name))

    def _run_id(self, trial: str) -> str:
        rows = self.trials[self.trials["trial"] == trial]
        if rows.empty:
            raise ValueError(f"No trial {trial!r} in study {self.name}; trials are {list(self.trials['trial'])}.")
        return rows.iloc[0]["run_id"]

    def history(self, trial: str) -> pd.DataFrame:
        """Per-epoch metrics of one trial: one row per epoch, one column per metric."""
        import pandas as pd

        run_id = self._run_id(trial)
        names = self.client.get_run(run_id).data.metrics
        frames = [
            pd.Series({m.step: m.value for m in self.client.get_metric_history(run_id, name)}, name=name)
            for name in names
        ]
        table = pd.concat(frames, axis=1).sort_index()
        table.index.name = "epoch"
        return table.drop(columns="epoch", errors="ignore").reset_index()

    def model_uri(self, trial: str) -> str | None:
        """The registered model URI (`models:/name/version`) of a front trial, else None."""
        value = self.trials.loc[self.trials["trial"] == trial, "model_uri"]
        return value.iloc[0] if len(value) and isinstance(value.iloc[0], str) else None

    def download_model(self, trial: str, directory: str | Path) -> Path:
        """Download a front trial's MLflow model into `directory` (its `MLmodel`, and the trained
        files under `artifacts/`: `model.tflite`, `model.keras`). `mlflow.pyfunc.load_model` loads
        it from there, or straight from `model_uri(trial)`."""
        import mlflow

        uri = self.model_uri(trial)
        if uri is None:
            raise ValueError(f"{trial} kept no model; only Pareto-front trials do: {list(self.front['trial'])}.")
        mlflow.set_tracking_uri(self.tracking_uri)
        return Path(mlflow.artifacts.download_artifacts(uri, dst_path=str(directory)))

    def optuna_study(self, objectives: list[str] | None = None) -> optuna.Study:
        """The full-budget trials as an in-memory Optuna study, e.g. for parameter importance:

        >>> optuna.importance.get_param_importances(study.optuna_study(), target=lambda t: t.values[0])
        """
        import optuna

        objectives = objectives or list(self.objectives)
        distributions = self.search_space()
        optuna_study = optuna.create_study(
            directions=["maximize" if self.objectives.get(m, "min") == "max" else "minimize" for m in objectives]
        )
        import warnings

        with warnings.catch_warnings():  # experimental since Optuna 3.2, still in 5.0
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna_study.set_metric_names(objectives)
        finished = self.trials[self.trials["status"] == "finished"]
        for _, row in finished.iterrows():
            params, present = typed_params(row, distributions)
            optuna_study.add_trial(
                optuna.trial.create_trial(
                    params=params, distributions=present, values=[row[m] for m in objectives]
                )
            )
        return optuna_study


def histories(client: MlflowClient, run_ids: dict[str, str], metrics: list[str]) -> dict[str, pd.DataFrame]:
    """Per-epoch values of `metrics` of each trial run (by trial name), one row per epoch
    (`epoch`; a metric missing at an epoch is NaN), and `reported_at`, when the epoch's first
    value was logged (epoch seconds)."""
    import pandas as pd

    found: dict[str, pd.DataFrame] = {}
    for trial, run_id in run_ids.items():
        columns: dict[str, dict[int, float]] = {}
        logged: dict[int, float] = {}
        for metric in dict.fromkeys(metrics):
            points = client.get_metric_history(run_id, metric)
            columns[metric] = {point.step: point.value for point in sorted(points, key=lambda p: p.timestamp)}
            for point in points:
                logged[point.step] = min(logged.get(point.step, math.inf), point.timestamp / 1000)
        steps = sorted(step for step in logged if step >= 1)
        frame = pd.DataFrame({metric: [values.get(step, math.nan) for step in steps] for metric, values in columns.items()})
        frame.insert(0, "epoch", steps)
        frame["reported_at"] = [logged[step] for step in steps]
        found[trial] = frame
    return found


def _last_recipe_model(tags: dict[str, str]) -> str | None:
    """Of a trial whose recipes are on a front over recipes, its latest epoch's registered model."""
    epochs = {int(key.rsplit("_", 1)[1]): value for key, value in tags.items() if key.startswith("registered_model_epoch_")}
    return epochs[max(epochs)] if epochs else None


def _status(run: Any) -> str:
    status = run.info.status
    if status == "KILLED":  # stopped early by the scheduler, or cut off by an interruption
        if run.data.tags.get("stopped_early") == "true":
            return "stopped"
        return "cut off" if run.data.tags.get("cut_off") else "interrupted"
    return STATUS.get(status, status.lower())


def trials_frame(client: MlflowClient, experiment_id: str, study_run_id: str) -> pd.DataFrame:
    """The trial runs nested under a study run, one row each (see `load_study`)."""
    import pandas as pd

    rows = []
    for run in _trial_runs(client, experiment_id, study_run_id):
        tags = run.data.tags
        rows.append(
            {
                "trial": run.info.run_name,
                "status": _status(run),
                "stopped_early": tags.get("stopped_early") == "true",
                **run.data.params,
                **run.data.metrics,
                "pareto_rank": float(tags["pareto_rank"]) if tags.get("pareto_rank") else float("nan"),
                "on_front": tags.get("on_front") == "true",
                "knee": tags.get("knee") == "true",
                # measured again alone at the study's end (`search.compute.remeasure`); None if it was not
                "on_front_alone": tags["on_front_alone"] == "true" if "on_front_alone" in tags else None,
                "model_uri": tags.get("registered_model") or _last_recipe_model(tags),
                "error": tags.get("error"),
                "run_id": run.info.run_id,
                "trial_id": tags.get("ray_trial_id"),
                "optuna_trial": int(tags["optuna_trial"]) if tags.get("optuna_trial") else None,
                "ended_at": run.info.end_time / 1000 if run.info.end_time else float("nan"),
            }
        )
    trials = pd.DataFrame(rows)
    for column in trials.columns:  # parameters come back as text; numbers become numbers
        if trials[column].dtype == object or pd.api.types.is_string_dtype(trials[column]):
            converted = pd.to_numeric(trials[column], errors="coerce")
            if converted.notna().sum() == trials[column].notna().sum() and trials[column].notna().any():
                trials[column] = converted
    return trials


def _trial_runs(client: MlflowClient, experiment_id: str, study_run_id: str) -> list[Any]:
    """The trial runs nested under a study run, by name."""
    runs = client.search_runs([experiment_id], filter_string=f"tags.mlflow.parentRunId = '{study_run_id}'", max_results=10000)
    return sorted(runs, key=lambda run: run.info.run_name or "")


def _study_runs_of(client: MlflowClient, experiment_id: str) -> list[Any]:
    """The study runs of an experiment, newest first."""
    return client.search_runs([experiment_id], filter_string="tags.role = 'study'", order_by=["attributes.start_time DESC"])


def list_studies(
    experiment: str, *, tracking_uri: str | None = None, results_dir: str | Path = "results"
) -> pd.DataFrame:
    """The studies of an experiment, newest first: name, run id, status, start time, key metrics."""
    import pandas as pd

    client, experiment_id, _ = open_experiment(experiment, tracking_uri, results_dir)
    runs = _study_runs_of(client, experiment_id)
    return pd.DataFrame(
        [
            {
                "study": run.info.run_name,
                "run_id": run.info.run_id,
                "status": run.info.status,
                "started": pd.Timestamp(run.info.start_time, unit="ms"),
                **run.data.metrics,
            }
            for run in runs
        ]
    )


def open_experiment(
    experiment: str, tracking_uri: str | None = None, results_dir: str | Path = "results"
) -> tuple[MlflowClient, str, str]:
    """`(client, experiment id, tracking URI)` of an existing experiment, else `ValueError`.

    Without `tracking_uri`, the sqlite store in `results_dir` must exist: opening a missing one
    would create an empty store in its place.
    """
    client, uri = store(tracking_uri, results_dir)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        names = [e.name for e in client.search_experiments()]
        raise ValueError(f"No experiment {experiment!r} in {uri}; found {names}.")
    return client, found.experiment_id, uri


def store(tracking_uri: str | None, results_dir: str | Path) -> tuple[MlflowClient, str]:
    """A client of the MLflow store and its URI; `ValueError` if the default store is missing
    (opening it would create an empty one in its place)."""
    from mlflow import MlflowClient

    if tracking_uri is None and not (Path(results_dir) / "mlflow.db").is_file():
        raise ValueError(
            f"No MLflow store at {Path(results_dir) / 'mlflow.db'}; pass the study's results "
            "directory or its tracking URI."
        )
    uri = tracking_uri or default_tracking_uri(Path(results_dir))
    return MlflowClient(uri), uri


def load_study(
    experiment: str,
    *,
    study: str | None = None,
    tracking_uri: str | None = None,
    results_dir: str | Path = "results",
) -> Study:
    """Load a study from MLflow.

    Args:
        experiment: the MLflow experiment (the space's name unless `--experiment` was given).
        study: the study run's name or id; default the latest study of the experiment.
        tracking_uri: the MLflow store; default the sqlite store in `results_dir`.
        results_dir: the study's results directory (used when `tracking_uri` is None).

    Returns:
        A `Study` whose `trials` table has one row per trial: `trial`, `status` (finished, stopped,
        failed, running, interrupted, cut off), `stopped_early`, the searched parameters, every final metric,
        `pareto_rank`, `on_front`, `knee`, `model_uri` (front trials) and `run_id`.
    """
    client, experiment_id, uri = open_experiment(experiment, tracking_uri, results_dir)
    studies = _study_runs_of(client, experiment_id)
    if not studies:
        raise ValueError(f"Experiment {experiment!r} holds no study yet.")
    if study is not None:
        studies = [run for run in studies if study in (run.info.run_name, run.info.run_id)]
        if not studies:
            raise ValueError(f"No study {study!r} in experiment {experiment!r}.")
    return _study(client, experiment, studies[0], uri)


def _study(client: MlflowClient, experiment: str, parent: Any, uri: str) -> Study:
    """The `Study` of a study run."""
    return Study(
        experiment=experiment,
        name=parent.info.run_name,
        run_id=parent.info.run_id,
        tracking_uri=uri,
        objectives=ast.literal_eval(parent.data.params.get("objectives", "{}")),
        settings=dict(parent.data.params),
        metrics=dict(parent.data.metrics),
        trials=trials_frame(client, parent.info.experiment_id, parent.info.run_id),
        client=client,
    )


def studies_of(client: MlflowClient, sources: list[str], uri: str, *, first: str | None = None, limit: int | None = None) -> list[Study]:
    """The studies `sources` name, each once, in the order named (an experiment's newest first):
    a source is an experiment or "EXPERIMENT/STUDY", as `--warm-start` takes them. The study
    run `first` (an id) comes first; with `limit`, only that many are read."""
    named = _named_study_runs(client, sources, lambda source, error: ValueError(f"Cannot compare {source!r}: {error}"))
    named.sort(key=lambda pair: pair[1].info.run_id != first)
    return [_study(client, experiment, run, uri) for experiment, run in named[:limit]]


def _named_study_runs(client: MlflowClient, sources: list[str], failure: Callable[[str, ValueError], Exception]) -> list[tuple[str, Any]]:
    """(experiment, study run) of each study `sources` name, each once, in the order named;
    `failure(source, error)` is raised for a source not found."""
    found: dict[str, tuple[str, Any]] = {}
    for source in sources:
        try:
            experiment, runs = _study_runs(client, source)
        except ValueError as error:
            raise failure(source, error) from None
        for run in runs:
            found.setdefault(run.info.run_id, (experiment, run))
    return list(found.values())


def earlier_studies(client: MlflowClient, sources: list[str]) -> list[EarlierStudy]:
    """The studies a warm start names, each once, with every trial: a source is an experiment
    (all its studies, newest first) or "EXPERIMENT/STUDY" (the study run's name or id).
    `SpaceError` naming what exists if a source is not found."""
    found = []
    for experiment, run in _named_study_runs(client, sources, lambda source, error: SpaceError(f"Cannot warm-start from {source!r}: {error}")):
        trials = tuple(
            EarlierTrial(
                trial=trial.info.run_name or trial.info.run_id,
                status=_status(trial),
                config=dict(trial.data.params),
                metrics=dict(trial.data.metrics),
                on_front=trial.data.tags.get("on_front") == "true",
                knee=trial.data.tags.get("knee") == "true",
            )
            for trial in _trial_runs(client, run.info.experiment_id, run.info.run_id)
        )
        found.append(EarlierStudy(f"{experiment}/{run.info.run_name}", run.data.tags.get("trainable"), trials))
    return found


def _study_runs(client: MlflowClient, source: str) -> tuple[str, list[Any]]:
    """The experiment a source names and its study runs (newest first); ValueError saying what
    exists if there is none."""
    experiment, study = source, None
    found = client.get_experiment_by_name(source)
    if found is None and "/" in source:
        experiment, study = source.rsplit("/", 1)
        found = client.get_experiment_by_name(experiment)
    if found is None:
        names = sorted(e.name for e in client.search_experiments())
        raise ValueError(f"no experiment {experiment!r} in the MLflow store; experiments are {names}.")
    runs = _study_runs_of(client, found.experiment_id)
    if study is not None:
        names = [run.info.run_name for run in runs]
        runs = [run for run in runs if study in (run.info.run_name, run.info.run_id)]
        if not runs:
            raise ValueError(f"no study {study!r} in experiment {experiment!r}; its studies are {names}.")
    if not runs:
        raise ValueError(f"experiment {experiment!r} holds no study yet.")
    return experiment, runs
