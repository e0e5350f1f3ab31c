"""Pick a saved model: `python -m search.pick EXPERIMENT --min val_accuracy=0.97 --best inference_ms`.

Searches the Pareto-front models of every study in the experiment (only front models are kept
and registered), keeps those meeting every `--min`/`--max` bound, and prints the best one by
`--best`, with its registered model URI and how to load (`mlflow.pyfunc.load_model`) and serve
(`mlflow models serve`) it. `--download DIR` also fetches the MLflow model's files.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

from search.record.results import open_experiment


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
    clauses = ["tags.on_front = 'true'", "tags.registered_model != ''"]
    clauses += [f"metrics.{name} >= {value!r}" for name, value in options.lower]
    clauses += [f"metrics.{name} <= {value!r}" for name, value in options.upper]
    try:
        candidates = client.search_runs(
            [experiment_id], filter_string=" and ".join(clauses), max_results=5000
        )
    except MlflowException as error:
        print(f"error: {error.message}", file=sys.stderr)
        return 2
    ranked = sorted(
        (run for run in candidates if metric in run.data.metrics),
        key=lambda run: run.data.metrics[metric],
        reverse=direction == "max",
    )
    if not ranked:
        bounds = ", ".join(clauses[2:]) or "no bounds"
        print(f"No front model in {options.experiment!r} reports {metric} and meets {bounds}.", file=sys.stderr)
        return 1
    run = ranked[0]
    uri = run.data.tags["registered_model"]
    print(f"{run.info.run_name} ({uri}, run {run.info.run_id}): best {metric} ({direction}) among front models meeting the bounds")
    for name in sorted(run.data.metrics):
        print(f"  {name} = {run.data.metrics[name]:.6g}")
    print("  config: " + ", ".join(f"{k}={v}" for k, v in sorted(run.data.params.items())))
    print(f'  load:  mlflow.pyfunc.load_model("{uri}")  (tracking URI {tracking_uri})')
    print(f"  serve: MLFLOW_TRACKING_URI={tracking_uri} mlflow models serve -m {uri} --env-manager local")
    if options.download:
        mlflow.set_tracking_uri(tracking_uri)
        path = mlflow.artifacts.download_artifacts(uri, dst_path=str(options.download))
        print(f"Model files in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
