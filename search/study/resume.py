"""Carrying on an interrupted study (`--resume`): what it had recorded, the trials that ended as
it was killed settled from the searcher's record, and the scheduler's rungs rebuilt.

The record that survives an interruption is MLflow's (one run per trial) and Optuna's journal
(every suggestion and what the searcher was told); Ray keeps no scheduler state, so the ended
trials' per-epoch results are replayed to a new scheduler.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pandas as pd
import optuna
from optuna.trial import TrialState

from search.errors import SpaceError
from search.methods.searchers import EPOCHS_MISSING
from search.record.tables import study_table
from search.record.tracking import ENDED
from search.record.tracking import MLFLOW_RUN_ID
from search.space import SearchSpace
from search.space import typed_params
from trainables.contract import EPOCH


@dataclasses.dataclass(frozen=True)
class Resumed:
    """What an interrupted study had recorded, to carry on from."""

    study_name: str
    parent_run_id: str
    table: pd.DataFrame  # its trials so far (see `search.record.tables.study_table`)

    @property
    def ended(self) -> pd.DataFrame:
        return self.table[self.table["status"].isin(ENDED)]

    @property
    def interrupted(self) -> pd.DataFrame:
        return self.table.drop(self.ended.index)


def find_interrupted_study(runs: Any, space: SearchSpace, results_dir: Path) -> Resumed:
    studies = runs.client.search_runs(
        [runs.experiment_id],
        filter_string=f"tags.role = 'study' and tags.space = '{space.name}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if not studies:
        raise SpaceError(f"Nothing to resume: space '{space.name}' has no study in {runs.tracking_uri}. Run it without --resume to start one.")
    parent = studies[0]
    study_name = parent.info.run_name
    table = study_table(runs, parent.info.run_id, space, results_dir / "models" / study_name)
    if parent.info.status == "FINISHED" and space.num_samples <= len(table):
        raise SpaceError(
            f"Nothing to resume: the latest study of space '{space.name}', {study_name}, finished with {len(table)} trials. "
            f"Ask for more (--resume --trials {len(table) + max(1, len(table) // 2)}) to carry it on, or run without --resume to start a new study."
        )
    return Resumed(study_name, parent.info.run_id, table)


def settle(runs: Any, resumed: Resumed, searcher: Any, space: SearchSpace, results_dir: Path) -> Resumed:
    """End the runs of trials that ended as the study was killed, after the searcher was told
    but before their run was (Tune tells the searcher first): Optuna's record says how they
    ended, so they are neither run again nor lost. Returns the study's trials as they now are."""
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
    return Resumed(resumed.study_name, resumed.parent_run_id, study_table(runs, resumed.parent_run_id, space, results_dir / "models" / resumed.study_name))


def settle_searcher(searcher: Any, runs: Any, resumed: Resumed, space: SearchSpace) -> Resumed:
    """Bring the searcher's record level with MLflow's where its last entries were lost (a torn
    journal cut back, a journal on a full disk). A trial the searcher has no record of gets an
    Optuna trial with its configuration (tag `optuna_trial` updated). Trials MLflow's record says
    ended are told as they would have been, so they do not run again; interrupted ones are
    suggested again first, like every interrupted trial (MLflow's record says which were stopped
    early). Returns the study's trials as they now are."""
    study = searcher.optuna_study
    known = {trial.number: trial for trial in study.get_trials(deepcopy=False)}
    table = resumed.table.copy()
    distributions = {name: domain.distribution() for name, domain in space.params.items()}
    for index, row in resumed.table.iterrows():
        trial = known.get(int(row["optuna_trial"])) if pd.notna(row["optuna_trial"]) else None
        if trial is None:  # lost from the searcher's record: recorded again from MLflow's
            params, present = typed_params(row, distributions)
            study.add_trial(optuna.trial.create_trial(state=TrialState.RUNNING, params=params, distributions=present))
            trial = study.get_trials(deepcopy=False)[-1]
            runs.client.set_tag(row["run_id"], "optuna_trial", str(trial.number))
            table.loc[index, "optuna_trial"] = trial.number
            if row["status"] not in ENDED:
                searcher.interrupted.append(trial)
        if row["status"] in ENDED and trial.state == TrialState.RUNNING:
            epoch = row.get(EPOCH)
            result = {EPOCH: float(epoch) if pd.notna(epoch) else 0.0, **{m: row.get(m) for m in space.objectives}}
            failed = row["status"] == "failed"
            trial_id = row["trial_id"] if isinstance(row["trial_id"], str) and row["trial_id"] else f"settled-{trial.number}"
            searcher.tell_ended(trial, trial_id, None if failed else result, error=failed, stopped=row["status"] == "stopped", user_attrs={MLFLOW_RUN_ID: row["run_id"]})
    return Resumed(resumed.study_name, resumed.parent_run_id, table)


def replay(scheduler: Any, runs: Any, ended: pd.DataFrame, objectives: Any) -> None:
    """Feed the per-epoch results of trials that ended before an interruption to a new scheduler,
    so its rungs hold what the interrupted study had seen (Ray does not save scheduler state)."""
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
