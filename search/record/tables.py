"""The study's trials as a table: read back from MLflow, ordered, and printed."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any

from trainables.contract import EPOCH
from trainables.contract import TRAIN_TIME_S

if TYPE_CHECKING:
    import pandas as pd

    from search.space import SearchSpace

# Columns kept in the table for bookkeeping but not printed.
HIDDEN_COLUMNS = ("trial_id", "optuna_trial", "run_id", "ended_at", "model_dir", "pareto_rank", "on_front", "knee")


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


def study_table(runs: Any, parent_run_id: str, space: SearchSpace, models_dir: Path) -> pd.DataFrame:
    """Every trial of the study, read back from MLflow (the record that survives interruptions)."""
    import pandas as pd

    from search.record.results import trials_frame

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


def format_table(
    table: pd.DataFrame,
    rows: int | None = None,
    hide: tuple[str, ...] = HIDDEN_COLUMNS,
    width: int | None = None,
    more_in: str | None = None,
) -> str:
    """A table as aligned text, numbers rounded for reading, bookkeeping columns left out.

    With `width` (a terminal's columns, `search.record.terminal.width`), columns are kept from
    the first while the table fits, and the rest named on one line ("+ 3 more columns in
    summary.csv: ..." with `more_in`) rather than wrapped: order the columns by importance."""
    if table.empty:
        return "(no trials)"
    shown = table.drop(columns=[c for c in hide if c in table])
    # Columns with no value at all (metrics no trial reached) come as None: make them numeric
    # NaN, shown as "-"; mapping every cell instead would turn numeric columns into text.
    empty = [column for column in shown if shown[column].isna().all()]
    shown = shown.astype({column: float for column in empty})
    shown = shown.head(rows) if rows else shown
    text = _render(shown)
    if width is None:
        return text
    kept = list(shown.columns)
    while len(kept) > 1 and max(map(len, text.splitlines())) > width:
        kept.pop()
        text = _render(shown[kept])
    left = [column for column in shown.columns if column not in kept]
    if left:
        from search.record.terminal import wrap

        where = f" in {more_in}" if more_in else ""
        text += "\n" + wrap(f"+ {len(left)} more column{'s' if len(left) > 1 else ''}{where}: {', '.join(map(str, left))}", width)
    return text


def _render(shown: pd.DataFrame) -> str:
    import pandas as pd

    with pd.option_context("display.width", 10_000, "display.max_columns", 200):
        return shown.to_string(index=False, float_format=_number, na_rep="-")


def _number(value: float) -> str:
    # Whole numbers (parameter counts, bytes) in full; others to 4 significant digits.
    return f"{value:.0f}" if value.is_integer() and abs(value) >= 1 else f"{value:.4g}"
