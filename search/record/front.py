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
from search.methods.recipes import RECIPE
from search.record.tables import format_table
from trainables.contract import TRAIN_TIME_S

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
    eligible: pd.Series | None = None,
) -> Front:
    """Rank full-budget trials by non-dominated sorting; find the knee; compute hypervolume.

    Args:
        table: one row per trial with `status`, the objectives and `ended_at` (epoch seconds);
            or one row per recipe (`search.methods.recipes.table`) with `eligible` all true.
        objectives: metric -> "max"/"min".
        reference_point: fixed point for the hypervolume, in the objectives' units; when None,
            the nadir of the full-budget trials pushed out by 10% of each objective's range.
        started_at: the study's start (epoch seconds), the origin of the hypervolume curve.
        eligible: which rows may join the front (default: trials that finished, the full-budget ones).
    """
    table = table.copy()
    eligible = table["status"] == "finished" if eligible is None else eligible.reindex(table.index, fill_value=False)
    table["pareto_rank"] = np.nan
    table["on_front"] = False
    table["knee"] = False
    finished = table.index[eligible.astype(bool)]
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

    def describe(self, study: Front, width: int | None = None) -> str:
        """The comparison as aligned text (as wide as `width` allows), with one line saying how
        far contention moved it."""
        from search.record.terminal import wrap

        changes = self.changes(study)
        shown = changes[["trial", "on front alone", "knee alone", *[c for c in changes if c not in ("trial", "on front alone", "knee alone")]]].copy()
        for metric in self.metrics:
            shown[f"{metric} change"] = [f"{value:+.0%}" if np.isfinite(value) else "-" for value in changes[f"{metric} change"]]
        shown["on front alone"] = np.where(changes["on front alone"], "yes", "no")
        shown["knee alone"] = np.where(changes["knee alone"], "*", "")
        lines = [format_table(shown, hide=(), width=width, more_in="front_alone.csv")]
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
        return "\n".join(wrap(line, width) if i and width else line for i, line in enumerate(lines))


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

    _record_parent(front, runs, parent_run_id, started_at, lambda path: pareto_plot(table, objectives, path))
    if remeasured is not None:
        _record_remeasured(front, remeasured, runs, parent_run_id)
    return _register_front_models(front, runs, model_registry_name, parent_run_id, objectives, remeasured)


def _record_parent(front: Front, runs: StudyRuns, parent_run_id: str, started_at: float, plot: Any, extra: Mapping[str, str] | None = None) -> None:
    """The study run's share of the front: reference point and size, the hypervolume over the
    study's time, `pareto.csv`, the front's picture (`plot(path)`) and `hypervolume.png`, and
    `extra` text artifacts (name -> text)."""
    from mlflow.entities import Metric

    from search.record.plots import hypervolume_plot

    figures = {"reference_point": front.reference_point, "front_size": len(front.points)}
    logged = runs.client.get_run(parent_run_id).data.params
    runs.log_params(parent_run_id, {name: value for name, value in figures.items() if name not in logged})
    # A study carried on past its end: MLflow keeps a parameter's first value; the latest goes in a tag.
    for name, value in figures.items():
        if name in logged and logged[name] != str(value)[:6000]:
            runs.client.set_tag(parent_run_id, f"{name}_latest", str(value))
    if front.curve:
        runs.client.log_batch(
            parent_run_id,
            metrics=[
                Metric("hypervolume", value, int((started_at + elapsed) * 1000), step)
                for step, (elapsed, value) in enumerate(front.curve, start=1)
            ],
        )
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch)
        front.points.to_csv(directory / "pareto.csv", index=False)
        plot(directory / "pareto.png")
        if front.curve:
            elapsed, values = zip(*front.curve)
            hypervolume_plot(list(elapsed), list(values), directory / "hypervolume.png")
        for name, text in (extra or {}).items():
            (directory / name).write_text(text)
        for name in ("pareto.csv", "pareto.png", "hypervolume.png", *(extra or {})):
            if (directory / name).exists():
                runs.client.log_artifact(parent_run_id, str(directory / name))


def record_recipes(
    front: Front,
    runs: StudyRuns,
    *,
    parent_run_id: str,
    objectives: Mapping[str, str],
    model_registry_name: str,
    started_at: float,
    targets: list[tuple[str, float]],
    fastest: pd.DataFrame,
) -> dict[str, str]:
    """Write a front over recipes (`front.table`: one row per recipe) to MLflow.

    Each trial run gets `on_front` (one of its recipes is on the front), `front_epochs` (which),
    `pareto_rank` (its best recipe's), and for each target the training time its first recipe
    reaching it took (`time_to_<metric>_<target>_s`) or the tag `targets_missed`. The study run
    gets what a front over trials gets (`pareto.csv` with each point's `epoch`, a picture of
    every trial's curve with the front as a staircase and the targets marked, the hypervolume),
    `recipes.csv` (every recipe) and `targets.csv` (`fastest`, the fastest recipe per target:
    `fastest_per_target`); each front recipe's model (the model after its epoch) is registered.
    Returns the URIs by recipe.
    """
    from search.methods import recipes as recipe_module
    from search.record.plots import recipes_plot

    table = front.table
    for (trial, run_id), rows in table.groupby(["trial", "run_id"], sort=False):
        ranks = rows["pareto_rank"].dropna()
        on_front = rows[rows["on_front"].astype(bool)]
        tags = {
            "pareto_rank": str(int(ranks.min())) if len(ranks) else "",
            "on_front": str(not on_front.empty).lower(),
            "front_epochs": ",".join(str(int(epoch)) for epoch in on_front["epoch"]),
        }
        if rows["knee"].astype(bool).any():
            tags["knee"] = "true"
        reached, missed = recipe_module.per_trial(rows.to_dict("records"), targets, objectives)
        if missed:
            tags["targets_missed"] = ", ".join(missed)
        runs.log_metrics(run_id, reached, step=int(rows["epoch"].max()), tags=tags)
    uris = _register_front_models(front, runs, model_registry_name, parent_run_id, objectives, key=RECIPE)
    table = table.assign(model_uri=table[RECIPE].map(uris))
    fastest = fastest.assign(model_uri=fastest[RECIPE].map(uris))
    runs.log_params(parent_run_id, {"front": "recipes", "targets": [f"{m}={v:g}" for m, v in targets]})
    runs.log_metrics(
        parent_run_id,
        {f"fastest_{recipe_module.target_name(row['metric'], row['target'])}": row["train_time_s"] for _, row in fastest.iterrows() if pd.notna(row["train_time_s"])},
    )
    _record_parent(
        front,
        runs,
        parent_run_id,
        started_at,
        lambda path: recipes_plot(table, objectives, targets, path),
        extra={"recipes.csv": table.drop(columns=["model_dir", "config_file"], errors="ignore").to_csv(index=False), "targets.csv": fastest.to_csv(index=False)},
    )
    return uris


def fastest_per_target(recipes: pd.DataFrame, targets: list[tuple[str, float]], objectives: Mapping[str, str]) -> pd.DataFrame:
    """One row per target: the recipe that reaches it in the least training time (`recipe`,
    `trial`, `epoch`, `train_time_s`, the metric's value), or NaNs where no recipe does."""
    from search.methods import recipes as recipe_module

    rows = []
    for metric, value in targets:
        mode = objectives.get(metric, "max")
        best = recipe_module.fastest(recipes, metric, value, mode)
        rows.append(
            {
                "metric": metric,
                "target": value,
                "mode": mode,
                RECIPE: best[RECIPE] if best is not None else None,
                "trial": best["trial"] if best is not None else None,
                "epoch": int(best["epoch"]) if best is not None else np.nan,
                "train_time_s": float(best["train_time_s"]) if best is not None else np.nan,
                "value": float(best[metric]) if best is not None else np.nan,
            }
        )
    return pd.DataFrame(rows, columns=["metric", "target", "mode", RECIPE, "trial", "epoch", "train_time_s", "value"])


ALONE_COLUMNS = ("train_time_s_alone", "train_time_s_alone_min", "train_time_s_alone_max")


def with_retimed(fastest: pd.DataFrame, retimed: Mapping[str, Mapping[str, float]]) -> pd.DataFrame:
    """`fastest` (`fastest_per_target`) with each answer's training time measured again alone
    and its range over the runs (`retimed`, by recipe: `search.compute.remeasure.retime_recipes`;
    NaN where it was not)."""
    return fastest.assign(**{column: [retimed.get(recipe, {}).get(column, np.nan) for recipe in fastest[RECIPE]] for column in ALONE_COLUMNS})


def describe_targets(fastest: pd.DataFrame, uris: Mapping[str, str], on_front: set[str], width: int | None = None) -> str:
    """One line per target (folded to `width`): the fastest recipe that reaches it, and its model."""
    lines = []
    for _, row in fastest.iterrows():
        sign = ">=" if row["mode"] == "max" else "<="
        if pd.isna(row[RECIPE]):
            lines.append(f"{row['metric']} {sign} {row['target']:g}: no recipe reached it.")
            continue
        model = uris.get(row[RECIPE]) or ("(on the front, model not kept)" if row[RECIPE] in on_front else "-")
        epochs = int(row["epoch"])
        alone = ""
        if pd.notna(row.get("train_time_s_alone")):
            alone = f"; alone {row['train_time_s_alone']:.3g} s ({row['train_time_s_alone_min']:.3g}-{row['train_time_s_alone_max']:.3g} s over its runs)"
        lines.append(
            f"{row['metric']} {sign} {row['target']:g}: {row['trial']} trained {epochs} epoch{'s' if epochs != 1 else ''}, "
            f"{row['train_time_s']:.3g} s of training{alone} ({row['metric']}={row['value']:.4g}), {model}"
        )
    from search.record.terminal import wrap

    return "\n".join(wrap(line, width) if width else line for line in lines)


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
    key: str = "trial",
) -> dict[str, str]:
    """Log each front point's model under its run and register it; returns its URI by `key`
    ("trial", or "recipe" for a front over recipes: the model after that epoch, logged as
    `model-epoch-<k>`, its version tagged with the epoch)."""
    from mlflow.exceptions import MlflowException

    from search.record import serving

    uris: dict[str, str] = {}
    points = front.points
    # A study carried on past its end registered its earlier front's models then, and removed
    # their files: those keep the versions they have.
    earlier = {row[key]: _registered_before(row, runs, key) for _, row in points.iterrows() if row.get("run_id") and not _saved(row)}
    uris.update({point: uri for point, uri in earlier.items() if uri})
    saved = [row for _, row in points.iterrows() if (_saved(row) and row.get("run_id")) or row[key] in uris]
    if not saved:
        return uris
    try:
        runs.client.create_registered_model(
            name, description="Pareto-front models of the studies in this experiment."
        )
    except MlflowException:
        pass  # registered by an earlier study of the same experiment
    for row in saved:
        if row[key] in uris:
            continue
        recipe = {"epoch": str(int(row["epoch"])), "recipe": row[key]} if key == RECIPE else {}
        artifact_path = f"model-epoch-{recipe['epoch']}" if recipe else "model"
        with tempfile.TemporaryDirectory() as scratch:
            model = Path(row["model_dir"])
            if serving.servable(model):  # else its files as they are
                model = Path(scratch) / "model"
                serving.save(Path(row["model_dir"]), model)
            runs.client.log_artifacts(row["run_id"], str(model), artifact_path=artifact_path)
        version = runs.client.create_model_version(
            name,
            source=f"runs:/{row['run_id']}/{artifact_path}",
            run_id=row["run_id"],
            tags={
                "study_run_id": parent_run_id,
                "trial": row["trial"],
                **recipe,
                "knee": str(bool(row["knee"])).lower(),
                **{metric: f"{row[metric]:.6g}" for metric in objectives},
                **{
                    f"{metric}_alone": f"{value:.6g}"
                    for metric, value in (remeasured.measured.get(row[key], {}) if remeasured else {}).items()
                    if metric in objectives
                },
            },
        )
        uri = f"models:/{name}/{version.version}"
        runs.client.set_tag(row["run_id"], f"registered_model_epoch_{recipe['epoch']}" if recipe else "registered_model", uri)
        uris[row[key]] = uri
    ranked = pd.DataFrame(saved)
    if remeasured is not None:  # the aliases follow the figures measured alone
        kept = set(ranked[key])
        ranked = remeasured.front.table[remeasured.front.table[key].isin(kept)]
    for alias, point in aliases(ranked, objectives, key=key).items():
        runs.client.set_registered_model_alias(name, alias, uris[point].rsplit("/", 1)[1])
    return uris


def _saved(row: pd.Series) -> bool:
    return bool(row.get("model_dir")) and Path(row["model_dir"]).is_dir()


def _registered_before(row: pd.Series, runs: StudyRuns, key: str) -> str | None:
    """The registered model of a front point an earlier end of its study registered."""
    tag = f"registered_model_epoch_{int(row['epoch'])}" if key == RECIPE else "registered_model"
    return runs.client.get_run(row["run_id"]).data.tags.get(tag)


def aliases(points: pd.DataFrame, objectives: Mapping[str, str], key: str = "trial") -> dict[str, str]:
    """Registry aliases of a study's front models: `knee`, and `best-<objective>` (the front's
    best by each objective, e.g. `best-val_accuracy`), each to a point's `key` (its trial name,
    or its recipe)."""
    named: dict[str, str] = {}
    knee = points[points["knee"].astype(bool)]
    if not knee.empty:
        named["knee"] = knee.iloc[0][key]
    for metric, mode in objectives.items():
        values = pd.to_numeric(points[metric], errors="coerce")
        if values.notna().any():
            best = values.idxmax() if mode == "max" else values.idxmin()
            named["best-" + re.sub(r"[^\w-]", "-", metric)] = points.loc[best, key]
    return named


def discard_models(models_dir: Path, keep: tuple[str, ...] = ()) -> None:
    """Remove the study's saved models (the front ones now live in MLflow), but for files
    whose names end in `keep`."""
    if not models_dir.is_dir():
        return
    for path in models_dir.iterdir():
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        elif not path.name.endswith(keep):
            path.unlink(missing_ok=True)


def describe(
    front: Front, objectives: Mapping[str, str], params: list[str], uris: Mapping[str, str], key: str = "trial", width: int | None = None
) -> str:
    """The front as aligned text for the terminal: knee first; the trial (and for a front over
    recipes, `key` "recipe", its epoch), the objectives, the model, then the parameters as far
    as `width` allows (the rest are named; `pareto.csv` has them)."""
    from search.record.terminal import wrap

    points = front.points
    if points.empty:
        return "No trial ran its full budget, so there is no Pareto front." if key == "trial" else "No trial reported an epoch."
    epoch = ["epoch"] if key == RECIPE else []
    shown = points[["trial", *epoch, *dict.fromkeys([*objectives, *([TRAIN_TIME_S] if epoch and TRAIN_TIME_S in points else [])])]].copy()
    shown.insert(1, "knee", np.where(points["knee"].astype(bool), "*", ""))
    if uris:
        shown["model"] = [uris.get(point, "-") for point in points[key]]
    shown = pd.concat([shown, points[[p for p in params if p in points]]], axis=1)
    reference = ", ".join(f"{m}={v:.4g}" for m, v in front.reference_point.items())
    hypervolume = f"Hypervolume {front.hypervolume:.4g} against the reference point ({reference})."
    return (
        format_table(shown, hide=(), width=width, more_in="pareto.csv")
        + "\n"
        + (wrap(hypervolume, width) if width else hypervolume)
    )
