"""The study's outcome: Pareto front of full-budget trials, hypervolume, kept models.

Only trials that ran every epoch count: a trial stopped early has partial objectives (fewer
epochs of accuracy), so it can neither join the front nor move the hypervolume.

`Remeasured` is the front ranked again on its speed measured alone, once the trials have ended
(measured by `search.compute.remeasure`).
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any

import numpy as np
import pandas as pd

from search.methods import pareto
from search.record.tables import format_table

if TYPE_CHECKING:
    from search.record.tracking import StudyRuns


@dataclasses.dataclass(frozen=True)
class Front:
    """The table with `pareto_rank`, `on_front` and `knee` columns, and the hypervolume."""

    table: pd.DataFrame  # every trial; pareto_rank is NaN for trials that did not finish
    reference_point: dict[str, float]  # in the objectives' own units and directions
    hypervolume: float
    curve: list[tuple[float, float]]  # (seconds since the study started, hypervolume)

    @property
    def points(self) -> pd.DataFrame:
        """The front, knee first, then by the primary objective."""
        front = self.table[self.table["on_front"]]
        return front.sort_values("knee", ascending=False, kind="stable")


def analyse(
    table: pd.DataFrame,
    objectives: Mapping[str, str],
    *,
    reference_point: Mapping[str, float] | None = None,
    started_at: float = 0.0,
) -> Front:
    """Rank full-budget trials by non-dominated sorting; find the knee; compute hypervolume.

    Args:
        table: one row per trial with `status`, the objectives and `ended_at` (epoch seconds).
        objectives: metric -> "max"/"min".
        reference_point: fixed point for the hypervolume, in the objectives' units; when None,
            the nadir of the full-budget trials pushed out by 10% of each objective's range.
        started_at: the study's start (epoch seconds), the origin of the hypervolume curve.
    """
    table = table.copy()
    table["pareto_rank"] = np.nan
    table["on_front"] = False
    table["knee"] = False
    finished = table.index[table["status"] == "finished"]
    loss = pareto.losses(table.loc[finished].to_dict("records"), objectives)
    signs = np.array([-1.0 if mode == "max" else 1.0 for mode in objectives.values()])
    if reference_point is not None:
        reference = np.array([reference_point[m] for m in objectives], dtype=float) * signs
    elif len(finished):
        reference = pareto.reference_point(loss)
    else:
        reference = np.full(len(objectives), np.nan)

    curve: list[tuple[float, float]] = []
    hypervolume = 0.0
    if len(finished):
        ranks = pareto.nondominated_ranks(loss)
        table.loc[finished, "pareto_rank"] = ranks
        table.loc[finished, "on_front"] = ranks == 0
        on_front = finished[ranks == 0]
        table.loc[on_front[pareto.knee_index(loss[ranks == 0])], "knee"] = True
        hypervolume = pareto.hypervolume(loss, reference)
        ended = table.loc[finished, "ended_at"].to_numpy(dtype=float)
        order = np.argsort(ended, kind="stable")
        values = pareto.hypervolume_curve(loss[order], reference)
        curve = [(float(ended[i] - started_at), value) for i, value in zip(order, values)]
    return Front(
        table=table,
        reference_point={m: float(v) for m, v in zip(objectives, reference * signs)},
        hypervolume=hypervolume,
        curve=curve,
    )


@dataclasses.dataclass(frozen=True)
class Remeasured:
    """The front measured alone."""

    front: Front  # the study's front points, re-measured objectives replaced, ranked again
    metrics: list[str]  # the objectives measured again
    measured: dict[str, dict[str, float]]  # everything measured alone, by trial name
    notes: list[str]  # trials that could not be measured again, and why
    seconds: float

    def changes(self, study: Front) -> pd.DataFrame:
        """One row per front trial: each re-measured objective in the study and alone, the
        relative change, and whether the trial stays on the front and is its knee."""
        rows = []
        alone = self.front.table.set_index("trial")
        for _, point in study.points.iterrows():
            trial = point["trial"]
            row: dict[str, Any] = {"trial": trial}
            for metric in self.metrics:
                before = float(point[metric])
                after = self.measured.get(trial, {}).get(metric, np.nan)
                row[f"{metric} (study)"] = before
                row[f"{metric} (alone)"] = after
                row[f"{metric} change"] = after / before - 1 if before else np.nan
            row["on front alone"] = bool(alone.loc[trial, "on_front"])
            row["knee alone"] = bool(alone.loc[trial, "knee"])
            rows.append(row)
        return pd.DataFrame(rows)

    def describe(self, study: Front) -> str:
        """The comparison as aligned text, with one line saying how far contention moved it."""
        changes = self.changes(study)
        shown = changes.copy()
        for metric in self.metrics:
            shown[f"{metric} change"] = [f"{value:+.0%}" if np.isfinite(value) else "-" for value in changes[f"{metric} change"]]
        shown["on front alone"] = np.where(changes["on front alone"], "yes", "no")
        shown["knee alone"] = np.where(changes["knee alone"], "*", "")
        lines = [format_table(shown, hide=())]
        for metric in self.metrics:
            moved = changes[f"{metric} change"].dropna()
            if not moved.empty:
                lines.append(f"{metric} alone differs from the study's figure by {moved.min():+.0%} to {moved.max():+.0%}.")
        dropped = int((~changes["on front alone"]).sum())
        lines.append(
            f"{len(changes) - dropped} of {len(changes)} front trials stay non-dominated on the figures measured alone"
            f" ({self.seconds:.0f} s to measure)."
        )
        lines.extend(self.notes)
        return "\n".join(lines)


def rank_alone(
    front: Front,
    objectives: Mapping[str, str],
    metrics: list[str],
    measured: dict[str, dict[str, float]],
    *,
    notes: list[str] | None = None,
    seconds: float = 0.0,
) -> Remeasured:
    """The front's points with `metrics` replaced by what was `measured` alone (by trial; a
    trial missing there keeps its study figures), ranked again against the study's reference
    point."""
    table = front.points.copy()
    for trial, values in measured.items():
        for metric in metrics:
            if metric in values:
                table.loc[table["trial"] == trial, metric] = float(values[metric])
    again = analyse(table, objectives, reference_point=front.reference_point)
    return Remeasured(again, list(metrics), measured, list(notes or []), seconds)


def record(
    front: Front,
    runs: StudyRuns,
    *,
    parent_run_id: str,
    objectives: Mapping[str, str],
    model_registry_name: str,
    started_at: float,
    remeasured: Remeasured | None = None,
) -> dict[str, str]:
    """Write the front to MLflow: trial tags, parent artifacts and metrics, front models.

    With `remeasured` (the front measured again alone, `search.compute.remeasure`), each front trial
    also gets its figures measured alone (`<metric>_alone`) and the tags `on_front_alone` and
    `knee_alone`; the study run gets `front_alone.csv` and `front_alone_hypervolume`; and the
    registry aliases follow the figures measured alone.

    Returns the registered model URI (`models:/name/version`) of each front trial, by trial name.
    """
    from mlflow.entities import Metric

    from search.record.plots import hypervolume_plot
    from search.record.plots import pareto_plot

    table = front.table
    for _, row in table.iterrows():
        if not row.get("run_id"):
            continue
        rank = row["pareto_rank"]
        tags = {"pareto_rank": "" if np.isnan(rank) else str(int(rank)), "on_front": str(bool(row["on_front"])).lower()}
        if row["knee"]:
            tags["knee"] = "true"
        # One write per trial: at hundreds of trials these writes were most of the study's end.
        runs.log_metrics(row["run_id"], {}, tags=tags)

    runs.log_params(
        parent_run_id, {"reference_point": front.reference_point, "front_size": len(front.points)}
    )
    if front.curve:
        runs.client.log_batch(
            parent_run_id,
            metrics=[
                Metric("hypervolume", value, int((started_at + elapsed) * 1000), step)
                for step, (elapsed, value) in enumerate(front.curve, start=1)
            ],
        )
    if remeasured is not None:
        _record_remeasured(front, remeasured, runs, parent_run_id)
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch)
        front.points.to_csv(directory / "pareto.csv", index=False)
        pareto_plot(table, objectives, directory / "pareto.png")
        if front.curve:
            elapsed, values = zip(*front.curve)
            hypervolume_plot(list(elapsed), list(values), directory / "hypervolume.png")
        for name in ("pareto.csv", "pareto.png", "hypervolume.png"):
            if (directory / name).exists():
                runs.client.log_artifact(parent_run_id, str(directory / name))
    return _register_front_models(front, runs, model_registry_name, parent_run_id, objectives, remeasured)


def _record_remeasured(front: Front, remeasured: Remeasured, runs: StudyRuns, parent_run_id: str) -> None:
    alone = remeasured.front.table.set_index("trial")
    for _, row in front.points.iterrows():
        if not row.get("run_id"):
            continue
        values = remeasured.measured.get(row["trial"], {})
        tags = {
            "on_front_alone": str(bool(alone.loc[row["trial"], "on_front"])).lower(),
            "knee_alone": str(bool(alone.loc[row["trial"], "knee"])).lower(),
        }
        # One write per trial; the metrics at its last epoch, beside the figures they stand for.
        step = int(row["epoch"]) if pd.notna(row.get("epoch")) else 0
        runs.log_metrics(row["run_id"], {f"{metric}_alone": value for metric, value in values.items()}, step=step, tags=tags)
    runs.log_metrics(
        parent_run_id,
        {
            "front_alone_hypervolume": remeasured.front.hypervolume,
            "front_alone_size": float(len(remeasured.front.points)),
            "remeasure_s": remeasured.seconds,
        },
    )
    runs.client.log_text(parent_run_id, remeasured.changes(front).to_csv(index=False), "front_alone.csv")


def _register_front_models(
    front: Front,
    runs: StudyRuns,
    name: str,
    parent_run_id: str,
    objectives: Mapping[str, str],
    remeasured: Remeasured | None = None,
) -> dict[str, str]:
    from mlflow.exceptions import MlflowException

    from search.record import serving

    uris: dict[str, str] = {}
    points = front.points
    saved = [
        row
        for _, row in points.iterrows()
        if row.get("model_dir") and Path(row["model_dir"]).is_dir() and row.get("run_id")
    ]
    if not saved:
        return uris
    try:
        runs.client.create_registered_model(
            name, description="Pareto-front models of the studies in this experiment."
        )
    except MlflowException:
        pass  # registered by an earlier study of the same experiment
    for row in saved:
        with tempfile.TemporaryDirectory() as scratch:
            model = Path(row["model_dir"])
            if serving.servable(model):  # else its files as they are
                model = Path(scratch) / "model"
                serving.save(Path(row["model_dir"]), model)
            runs.client.log_artifacts(row["run_id"], str(model), artifact_path="model")
        version = runs.client.create_model_version(
            name,
            source=f"runs:/{row['run_id']}/model",
            run_id=row["run_id"],
            tags={
                "study_run_id": parent_run_id,
                "trial": row["trial"],
                "knee": str(bool(row["knee"])).lower(),
                **{metric: f"{row[metric]:.6g}" for metric in objectives},
                **{
                    f"{metric}_alone": f"{value:.6g}"
                    for metric, value in (remeasured.measured.get(row["trial"], {}) if remeasured else {}).items()
                    if metric in objectives
                },
            },
        )
        runs.client.set_tag(row["run_id"], "registered_model", f"models:/{name}/{version.version}")
        uris[row["trial"]] = f"models:/{name}/{version.version}"
    ranked = pd.DataFrame(saved)
    if remeasured is not None:  # the aliases follow the figures measured alone
        trials = set(ranked["trial"])
        ranked = remeasured.front.table[remeasured.front.table["trial"].isin(trials)]
    for alias, trial in aliases(ranked, objectives).items():
        runs.client.set_registered_model_alias(name, alias, uris[trial].rsplit("/", 1)[1])
    return uris


def aliases(points: pd.DataFrame, objectives: Mapping[str, str]) -> dict[str, str]:
    """Registry aliases of a study's front models: `knee`, and `best-<objective>` (the front's
    best by each objective, e.g. `best-val_accuracy`), each to a trial name."""
    named: dict[str, str] = {}
    knee = points[points["knee"].astype(bool)]
    if not knee.empty:
        named["knee"] = knee.iloc[0]["trial"]
    for metric, mode in objectives.items():
        values = pd.to_numeric(points[metric], errors="coerce")
        if values.notna().any():
            best = values.idxmax() if mode == "max" else values.idxmin()
            named["best-" + re.sub(r"[^\w-]", "-", metric)] = points.loc[best, "trial"]
    return named


def discard_models(models_dir: Path) -> None:
    """Remove the study's saved models; the front ones now live in MLflow."""
    shutil.rmtree(models_dir, ignore_errors=True)


def describe(front: Front, objectives: Mapping[str, str], params: list[str], uris: Mapping[str, str]) -> str:
    """The front as aligned text for the terminal: knee first, objectives then parameters."""
    points = front.points
    if points.empty:
        return "No trial ran its full budget, so there is no Pareto front."
    shown = points[["trial", *objectives, *[p for p in params if p in points]]].copy()
    shown.insert(1, "knee", np.where(points["knee"], "*", ""))
    if uris:
        shown["model"] = [uris.get(trial, "-") for trial in points["trial"]]
    reference = ", ".join(f"{m}={v:.4g}" for m, v in front.reference_point.items())
    return (
        format_table(shown, hide=())
        + f"\nHypervolume {front.hypervolume:.4g} against the reference point ({reference})."
    )


