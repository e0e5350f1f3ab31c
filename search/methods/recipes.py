"""Recipes: every epoch of every trial, and the training time each takes to reach a target.

A trial that ran `k` epochs holds `k` recipes: its configuration, trained until the end of
epoch `j` (1 <= j <= k), with its schedules set for the trial's full epochs, as the trial ran
it. A recipe's figures are the trial's report after epoch `j`; its training time is the trial's
`train_time_s` there (cumulative, `trainables.contract.TRAIN_TIME_S`). A trial stopped early
contributes the recipes it ran: what it ran is real.

This is how the field measures training speed (DAWNBench: time to a target accuracy; MLPerf
Training: a run ends at its first evaluation that reaches the quality target, and a run that
never reaches it counts as not reaching it): `time_to_target` is the training time of a trial's
first recipe that meets a target, `fastest` the recipe of a study that meets it in the least
time. The front over recipes (`search.record.front.analyse` on `table`) weighs a faster epoch
against the epochs it needs, which a front over per-epoch speed cannot.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from collections.abc import Sequence
from typing import TYPE_CHECKING
from typing import Any

from trainables.contract import EPOCH
from trainables.contract import TRAIN_TIME_S

if TYPE_CHECKING:
    import pandas as pd

RECIPE = "recipe"  # the column naming a recipe: "<trial>@<epoch>"


def recipe_name(trial: str, epoch: int) -> str:
    return f"{trial}@{int(epoch)}"


def meets(value: Any, target: float, mode: str) -> bool:
    """Whether `value` reaches `target` in the direction `mode` ("max": at least, "min": at most)."""
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        return False
    return value >= target if mode == "max" else value <= target


def time_to_target(
    history: Sequence[Mapping[str, Any]], metric: str, target: float, mode: str = "max", *, time_metric: str = TRAIN_TIME_S
) -> tuple[int, float] | None:
    """`(epoch, training time)` of the first epoch whose `metric` reaches `target`, or None if
    no epoch of `history` (one report per epoch, in order) does: the trial did not reach it in
    the epochs it ran. An epoch without a finite training time cannot count."""
    for report in sorted(history, key=lambda r: r[EPOCH]):
        seconds = report.get(time_metric)
        if meets(report.get(metric), target, mode) and isinstance(seconds, (int, float)) and math.isfinite(seconds):
            return int(report[EPOCH]), float(seconds)
    return None


def target_name(metric: str, target: float) -> str:
    """The metric a study records a trial's time to a target under, e.g. `time_to_val_accuracy_0.97_s`."""
    return f"time_to_{metric}_{target:g}_s"


def table(trials: pd.DataFrame, histories: Mapping[str, pd.DataFrame], *, keep: Sequence[str] = ()) -> pd.DataFrame:
    """One row per recipe: each trial's columns `keep` (its name, status, parameters...), then
    its report after that epoch (`histories[trial]`: one row per epoch, an `epoch` column), and
    `recipe`. Trials without history contribute nothing."""
    import pandas as pd

    frames = []
    for _, trial in trials.iterrows():
        history = histories.get(trial["trial"])
        if history is None or history.empty:
            continue
        history = history.sort_values(EPOCH).reset_index(drop=True)
        fixed = {column: trial[column] for column in keep if column in trial and column not in history}
        frame = pd.DataFrame({column: [value] * len(history) for column, value in fixed.items()}, index=history.index)
        frame = pd.concat([frame, history], axis=1)
        frame.insert(0, RECIPE, [recipe_name(trial["trial"], epoch) for epoch in history[EPOCH]])
        frames.append(frame)
    if not frames:
        return pd.DataFrame(columns=[RECIPE, *keep, EPOCH])
    return pd.concat(frames, ignore_index=True)


def fastest(recipes: pd.DataFrame, metric: str, target: float, mode: str = "max", *, time_metric: str = TRAIN_TIME_S) -> pd.Series | None:
    """The recipe that reaches `target` in the least training time (ties: the most accurate,
    then the first), or None if none does."""
    if recipes.empty or metric not in recipes or time_metric not in recipes:
        return None
    reached = recipes[[meets(value, target, mode) for value in recipes[metric]]]
    reached = reached[reached[time_metric].apply(lambda s: isinstance(s, (int, float)) and math.isfinite(s))]
    if reached.empty:
        return None
    ordered = reached.sort_values([time_metric, metric], ascending=[True, mode == "min"], kind="stable")
    return ordered.iloc[0]


def per_trial(history: Sequence[Mapping[str, Any]], targets: Sequence[tuple[str, float]], objectives: Mapping[str, str]) -> tuple[dict[str, float], list[str]]:
    """What a study records of one trial for its targets: the training time to each target it
    reached (`target_name`), and the targets it did not reach in its epochs."""
    reached: dict[str, float] = {}
    missed: list[str] = []
    for metric, value in targets:
        mode = objectives.get(metric, "max")
        found = time_to_target(history, metric, value, mode)
        if found is None:
            missed.append(f"{metric}{'>=' if mode == 'max' else '<='}{value:g}")
        else:
            reached[target_name(metric, value)] = found[1]
    return reached, missed
