"""Several studies side by side: their fronts on one set of axes, and a row each of what they
found. A study logs it as `studies.csv` and `studies.png` when its experiment holds earlier
studies or it started from some; in a notebook:

    >>> from search.record.compare import compare_studies
    >>> comparison = compare_studies("mnist", results_dir="results")   # every study of the experiment
    >>> comparison.table          # per study: trials, front size, hypervolume, best of each objective
    >>> comparison.plot("studies.png")
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from search.methods import pareto
from search.record.results import Study
from search.record.results import store
from search.record.results import studies_of

if TYPE_CHECKING:
    import pandas as pd

# Studies drawn in one picture at most (the newest); the table has them all.
PLOTTED = 8


@dataclasses.dataclass
class Comparison:
    """Studies' fronts (`fronts`: one row per front point, `study` first) and one row per study
    (`table`: trials, front points, hypervolume against one shared reference point, the best of
    each objective on its front), newest study first, over the newest study's `objectives`."""

    objectives: dict[str, str]
    fronts: pd.DataFrame
    table: pd.DataFrame

    @classmethod
    def of(cls, studies: list[Study], before: Mapping[str, set[str]] | None = None) -> Comparison:
        """The comparison of `studies` (newest first). `before` adds, for a study carried on
        (by name), a row for it as it stood before: the front over the trials named (those that
        had ended). Studies that lack one of the newest one's objectives are left out of the
        hypervolume (NaN)."""
        import pandas as pd

        if not studies:
            raise ValueError("No study to compare.")
        objectives = dict(studies[0].objectives)
        parts: list[Study | _Before] = []
        frames = []
        for study in studies:
            points = _points(study)  # read once, also for the study as it stood before
            parts.append(study)
            frames.append(_named(points[points["on_front"].astype(bool)] if len(points) else points, study.name))
            if study.name in (before or {}):
                earlier = _Before(study, before[study.name])
                parts.append(earlier)
                frames.append(_named(_front_of(points[points["trial"].isin(earlier.trial_names)], objectives), earlier.name))
        studies = parts
        fronts = pd.concat(frames, ignore_index=True)
        comparable = fronts.dropna(subset=[m for m in objectives if m in fronts]) if set(objectives) <= set(fronts) else fronts.iloc[:0]
        loss = pareto.losses(comparable.to_dict("records"), objectives) if len(comparable) else np.zeros((0, len(objectives)))
        reference = pareto.reference_point(loss) if len(loss) else None
        rows = []
        for study in studies:
            mine = fronts[fronts["study"] == study.name]
            ended = study.trials[study.trials["status"].isin(["finished", "stopped"])] if not study.trials.empty else study.trials
            row = {
                "study": study.name,
                "experiment": study.experiment,
                "trials": len(study.trials),
                "ended": len(ended),
                "front_points": len(mine),
                "hypervolume": float("nan"),
            }
            if reference is not None and set(objectives) <= set(mine) and len(mine):
                row["hypervolume"] = pareto.hypervolume(pareto.losses(mine.to_dict("records"), objectives), reference)
            for metric, mode in objectives.items():
                values = mine[metric] if metric in mine else pd.Series(dtype=float)
                row[f"{'best' if mode == 'max' else 'least'} {metric}"] = float(values.max() if mode == "max" else values.min()) if len(values) else float("nan")
            rows.append(row)
        return cls(objectives, fronts, pd.DataFrame(rows))

    def plot(self, path: str | Path) -> Path:
        """The fronts on one set of axes (the primary objective against each other one), one
        colour a study, the newest drawn boldest."""
        from search.record.plots import fronts_plot

        return fronts_plot(self.fronts, self.objectives, list(self.table["study"])[:PLOTTED], Path(path))


class _Before:
    """A study carried on, as it stood before: only the trials in `trial_names`."""

    def __init__(self, study: Study, trial_names: set[str]) -> None:
        self.experiment, self.objectives, self.trial_names = study.experiment, study.objectives, trial_names
        self.name = f"{study.name} before ({len(trial_names)} trials)"
        self.trials = study.trials[study.trials["trial"].isin(trial_names)]


def _points(study: Study) -> pd.DataFrame:
    """Every point a study's front is over, with its `on_front` flag: its recipes, or its
    full-budget trials. None recorded (a study that never reached its end) gives none."""
    if study.front_kind == "recipes":
        try:
            return study.recipes()
        except Exception:  # no recipes.csv (MLflow raises errors of its own kinds)
            return study.trials.iloc[:0].assign(on_front=False)
    return study.trials[study.trials["status"] == "finished"] if not study.trials.empty else study.trials.assign(on_front=False)


def _front_of(points: pd.DataFrame, objectives: dict[str, str]) -> pd.DataFrame:
    """The non-dominated ones of `points` over `objectives` (none if an objective is missing)."""
    usable = points.dropna(subset=list(objectives)) if set(objectives) <= set(points) else points.iloc[:0]
    ranks = pareto.nondominated_ranks(pareto.losses(usable.to_dict("records"), objectives)) if len(usable) else np.zeros(0)
    return usable[ranks == 0]


def _named(points: pd.DataFrame, name: str) -> pd.DataFrame:
    """Front points with the study's name first, bookkeeping columns left out."""
    points = points.drop(columns=[c for c in ("run_id", "model_uri", "error", "trial_id", "config_file", "model_dir") if c in points])
    return points.assign(study=name)[["study", *(c for c in points.columns if c != "study")]]


def compare_studies(*sources: str, tracking_uri: str | None = None, results_dir: str | Path = "results") -> Comparison:
    """Several studies' fronts on one set of axes: what more trials or a warm start gained.

    Each source is an experiment (every study of it, newest first) or "EXPERIMENT/STUDY", as
    `--warm-start` takes them; a study named twice counts once. Hypervolumes share one
    reference point. The store is `tracking_uri`, else the sqlite store in `results_dir`.
    """
    if not sources:
        raise ValueError("Name the studies to compare: experiments, or EXPERIMENT/STUDY.")
    client, uri = store(tracking_uri, results_dir)
    return Comparison.of(studies_of(client, list(sources), uri))
