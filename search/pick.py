"""Pick a saved model: `python -m search.pick EXPERIMENT --min val_accuracy=0.97 --best inference_ms`.

Searches the Pareto-front models of every study in the experiment (only front models are kept
and registered): full-budget trials' models, and for studies whose front is over recipes each
front recipe's model (its configuration trained for that many epochs), with the recipe's
figures at its epoch. Keeps those meeting every `--min`/`--max` bound, and prints the best one by
`--best` (`--min val_accuracy=0.97 --best train_time_s`: the recipe that reaches 0.97 in the
least training time), with its registered model URI and how to load (`mlflow.pyfunc.load_model`) and serve
(`mlflow models serve`) it. `--download DIR` also fetches the MLflow model's files.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import sys
from pathlib import Path
from typing import Any

from search.record.results import histories
from search.record.results import open_experiment
from search.record.terminal import command
from search.record.terminal import wrap
from search.record.tracking import ui_command
from search.record.tracking import ui_links
from trainables.contract import EPOCH


def _bound(text: str) -> tuple[str, float]:
    metric, sep, value = text.partition("=")
    try:
        return metric.strip(), float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected METRIC=NUMBER, got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m search.pick",
        description="Pick the best Pareto-front model of an experiment under metric bounds.",
        epilog="Example: python -m search.pick my-study --min val_accuracy=0.97 --best inference_ms",
    )
    parser.add_argument("experiment", help="MLflow experiment (the space's name by default)")
    parser.add_argument("--min", dest="lower", type=_bound, action="append", default=[], metavar="METRIC=X", help="keep models with METRIC >= X (repeatable)")
    parser.add_argument("--max", dest="upper", type=_bound, action="append", default=[], metavar="METRIC=X", help="keep models with METRIC <= X (repeatable)")
    parser.add_argument("--best", required=True, metavar="METRIC[:min|max]", help="rank by this metric; direction defaults to the study's objective direction, else min")
    parser.add_argument("--tracking-uri", metavar="URI", help="MLflow tracking URI (default: the store in --results-dir)")
    parser.add_argument("--results-dir", type=Path, default=Path("results"), metavar="DIR", help="results directory of the study (default: ./results)")
    parser.add_argument("--download", type=Path, metavar="DIR", help="also download the MLflow model (MLmodel; artifacts/model.tflite, model.keras) into DIR")
    return parser


def _direction(client: object, experiment_id: str, metric: str, explicit: str | None) -> str:
    if explicit:
        return explicit
    studies = client.search_runs(  # type: ignore[attr-defined]
        [experiment_id], filter_string="tags.role = 'study'", max_results=1, order_by=["attributes.start_time DESC"]
    )
    if studies:
        objectives = ast.literal_eval(studies[0].data.params.get("objectives", "{}"))
        return objectives.get(metric.removesuffix("_alone"), "min")  # `<objective>_alone`: measured again
    return "min"


@dataclasses.dataclass(frozen=True)
class Candidate:
    """A front model: a full-budget trial's (`epoch` None) or a recipe's (the model after `epoch`)."""

    trial: str
    uri: str
    run_id: str
    metrics: dict[str, float]
    params: dict[str, str]
    epoch: int | None = None


def _meets(metrics: dict[str, float], options: argparse.Namespace) -> bool:
    return all(name in metrics and metrics[name] >= value for name, value in options.lower) and all(
        name in metrics and metrics[name] <= value for name, value in options.upper
    )


def _front_trials(client: Any, experiment_id: str, options: argparse.Namespace) -> list[Candidate]:
    """Front models of studies whose front is over full-budget trials, meeting the bounds."""
    clauses = ["tags.on_front = 'true'", "tags.registered_model != ''"]
    clauses += [f"metrics.{name} >= {value!r}" for name, value in options.lower]
    clauses += [f"metrics.{name} <= {value!r}" for name, value in options.upper]
    runs = client.search_runs([experiment_id], filter_string=" and ".join(clauses), max_results=5000)
    return [Candidate(run.info.run_name, run.data.tags["registered_model"], run.info.run_id, dict(run.data.metrics), dict(run.data.params)) for run in runs]


def _front_recipes(client: Any, experiment: str, options: argparse.Namespace) -> list[Candidate]:
    """Front recipes' models (registered with an `epoch` tag), with their run's metrics at
    that epoch (the recipe's figures), meeting the bounds."""
    from mlflow.exceptions import MlflowException

    try:
        versions = client.search_model_versions(f"name = '{experiment}'")
    except MlflowException:  # nothing registered under that name yet
        return []
    found = []
    runs: dict[str, Any] = {}
    courses: dict[str, Any] = {}  # run id -> its metrics by epoch, read once for all its recipes
    for version in versions:
        if "epoch" not in version.tags or not version.run_id:
            continue
        epoch = int(version.tags["epoch"])
        if version.run_id not in runs:
            run = runs[version.run_id] = client.get_run(version.run_id)
            names = [name for name in run.data.metrics if name != EPOCH]
            courses[version.run_id] = histories(client, {run.info.run_id: run.info.run_id}, names)[run.info.run_id].set_index(EPOCH)
        run, course = runs[version.run_id], courses[version.run_id]
        at_epoch = course.loc[epoch].drop("reported_at") if epoch in course.index else {}
        metrics = {name: float(value) for name, value in dict(at_epoch).items() if value == value}  # NaN: not logged then
        if EPOCH in run.data.metrics:
            metrics[EPOCH] = float(epoch)
        if _meets(metrics, options):
            found.append(Candidate(run.info.run_name, f"models:/{experiment}/{version.version}", run.info.run_id, metrics, dict(run.data.params), epoch))
    return found


def main(argv: list[str] | None = None) -> int:
    options = build_parser().parse_args(argv)
    import logging

    import mlflow
    from mlflow.exceptions import MlflowException

    logging.getLogger(mlflow.__name__).setLevel(logging.WARNING)
    metric, _, explicit = options.best.partition(":")
    if explicit not in ("", "min", "max"):
        print(f"error: --best direction must be 'min' or 'max', got {explicit!r}.", file=sys.stderr)
        return 2
    try:
        client, experiment_id, tracking_uri = open_experiment(
            options.experiment, options.tracking_uri, options.results_dir
        )
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    direction = _direction(client, experiment_id, metric, explicit or None)
    try:
        candidates = [*_front_trials(client, experiment_id, options), *_front_recipes(client, options.experiment, options)]
    except MlflowException as error:
        print(f"error: {error.message}", file=sys.stderr)
        return 2
    ranked = sorted(
        (candidate for candidate in candidates if metric in candidate.metrics),
        key=lambda candidate: candidate.metrics[metric],
        reverse=direction == "max",
    )
    if not ranked:
        bounds = ", ".join([*(f"{n} >= {v!r}" for n, v in options.lower), *(f"{n} <= {v!r}" for n, v in options.upper)]) or "no bounds"
        print(f"No front model in {options.experiment!r} reports {metric} and meets {bounds}.", file=sys.stderr)
        return 1
    picked = ranked[0]
    uri = picked.uri
    if picked.epoch is None:
        print(wrap(f"{picked.trial} ({uri}, run {picked.run_id}): best {metric} ({direction}) among front models meeting the bounds"))
    else:
        print(
            wrap(
                f"{picked.trial} after epoch {picked.epoch} ({uri}, run {picked.run_id}): best {metric} ({direction}) "
                "among front recipes meeting the bounds"
            )
        )
    for name in sorted(picked.metrics):
        print(f"  {name} = {picked.metrics[name]:.6g}")
    print(wrap("  config: " + ", ".join(f"{k}={v}" for k, v in sorted(picked.params.items()))))
    if picked.epoch is not None:
        print(
            wrap(
                f"  recipe: this config trained for {picked.epoch} epoch{'s' if picked.epoch != 1 else ''}, its schedules set for "
                f"epochs={picked.params.get('epochs', '?')} as the trial ran it (the model above is that epoch's)"
            )
        )
    print(f"  run (in the MLflow UI):\n    {ui_links(tracking_uri, experiment_id, picked.run_id)['run']}")
    print(command(f"    {ui_command(tracking_uri)}"))
    print(wrap(f'  load:  mlflow.pyfunc.load_model("{uri}")  (tracking URI {tracking_uri})'))
    print("  serve:")
    print(command(f"    MLFLOW_TRACKING_URI={tracking_uri} mlflow models serve -m {uri} --env-manager local"))
    if options.download:
        mlflow.set_tracking_uri(tracking_uri)
        path = mlflow.artifacts.download_artifacts(uri, dst_path=str(options.download))
        print(f"Model files in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
