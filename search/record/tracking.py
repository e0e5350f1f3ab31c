"""MLflow: one parent run per study, one nested run per trial, logged from the Ray driver.

Trials are logged by a Tune callback on the driver rather than from inside the trial processes:
one writer keeps a sqlite store free of lock contention, a trial process that dies cannot leave its
run RUNNING, and the driver knows which trials the scheduler stopped early (status KILLED).
Ray's own `MLflowLoggerCallback` makes flat runs and cannot mark early-stopped trials, hence this.
"""

from __future__ import annotations

import functools
import math
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any

from ray import tune

from search.errors import DiskFull
from search.errors import causes
from trainables.contract import COMPLETE
from trainables.contract import EPOCH
from trainables.contract import RESUMED_FROM_EPOCH

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from ray.tune.experiment import Trial

# Entries Ray adds to every result; they describe the Ray run, not the trained model.
RAY_RESULT_KEYS = frozenset(
    {
        "done",
        "training_iteration",
        "time_this_iter_s",
        "time_total_s",
        "time_since_restore",
        "iterations_since_restore",
        "timestamp",
        "pid",
        "trial_id",
        "date",
        "hostname",
        "node_ip",
        "config",
        "experiment_tag",
        "checkpoint_dir_name",
        "should_checkpoint",
    }
)


# The Optuna trial's user attribute that holds its MLflow run id.
MLFLOW_RUN_ID = "mlflow_run_id"
# Trials that ran to an end (as `search.record.results` names run statuses) a resumed study
# keeps; the others (interrupted, cut off) run again.
ENDED = ("finished", "stopped", "failed")


def default_tracking_uri(results_dir: Path) -> str:
    """The sqlite store in the results directory, as an absolute URI usable from any process."""
    return f"sqlite:///{(results_dir / 'mlflow.db').resolve()}"


UI_PORT = 5000  # where `ui_command` serves the MLflow UI of a local store


def ui_command(tracking_uri: str) -> str:
    """The command that opens the MLflow UI on this store, bound to the loopback interface."""
    if tracking_uri.startswith(("http://", "https://")):
        return f"open {tracking_uri} in a browser"
    return f"mlflow ui --backend-store-uri {tracking_uri} --host 127.0.0.1 --port {UI_PORT}"


def ui_links(tracking_uri: str, experiment_id: str, run_id: str | None = None, port: int = UI_PORT) -> dict[str, str]:
    """Links into the MLflow UI (the server at `tracking_uri`, or the one `ui_command` starts for a
    local store, on `port`): the experiment's runs table ("runs") and, with `run_id`, that run
    ("run").

    MLflow 3.17's UI opens an experiment in its GenAI view (traces) unless the page's
    `workflowType` says otherwise; it reads that from the link before the browser's stored
    choice (`mlflow.workflowType`), and before the experiment's `mlflow.experimentKind` tag,
    which a fresh browser profile does not heed: the links say `machine_learning`.
    """
    base = tracking_uri.rstrip("/") if tracking_uri.startswith(("http://", "https://")) else f"http://127.0.0.1:{port}"
    links = {"runs": f"{base}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"}
    if run_id:
        links["run"] = f"{base}/#/experiments/{experiment_id}/runs/{run_id}?workflowType=machine_learning"
    return links


def trial_metrics(result: dict[str, Any]) -> dict[str, float]:
    """The finite numbers a trial reported, without Ray's bookkeeping."""
    return {
        key: float(value)
        for key, value in result.items()
        if key not in RAY_RESULT_KEYS
        and isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
    }


def trial_text(result: dict[str, Any]) -> dict[str, str]:
    """The text values a trial reported (e.g. the strategy it trained under), as run tags, and
    the node it ran on."""
    text = {key: value for key, value in result.items() if key not in RAY_RESULT_KEYS and isinstance(value, str)}
    if result.get("node_ip"):
        text["node_ip"] = str(result["node_ip"])
    return text


def broke_mid_answer(error: BaseException) -> bool:
    """Whether a call to a tracking server failed because the connection broke while the server
    answered (it died mid-response): MLflow's own retries cover a server that refuses or drops a
    connection before answering, not a body cut short, so such a call is tried again here."""
    import requests
    from urllib3.exceptions import MaxRetryError
    from urllib3.exceptions import ProtocolError

    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, (requests.exceptions.ChunkedEncodingError, ProtocolError)):
            return True
        if isinstance(seen, requests.exceptions.ConnectionError):
            # One MLflow's retries already gave up on (the server stayed away) is final.
            return not any(isinstance(arg, MaxRetryError) for arg in seen.args)
        seen = seen.__cause__ or seen.__context__
    return False


class WatchedClient:
    """An `MlflowClient` that says so when its store stops answering, rather than the study
    falling silent, says so again when it answers, and tries a call again when the server went
    away in the middle of answering it.

    MLflow itself retries a request to a tracking server that is gone or busy, with backoff, for
    about four minutes (`MLFLOW_HTTP_REQUEST_MAX_RETRIES`); meanwhile the study waits, its
    trials' results held by Ray, and nothing is lost if the server comes back. A call that has not
    returned after `patience_s` prints one line; its return prints how long the store was away.

    A server killed while answering may or may not have done what it was asked. The study's
    writes are safe to repeat (the same parameters, tags, status, artifacts; a metric point with
    the same key, step, time and value is stored once); creations are not: a `create_run` whose
    answer was lost looks for the run it may have made before making another, and the other
    `create_*` calls (once per study) are not tried again.
    """

    def __init__(
        self, tracking_uri: str, patience_s: float = 10.0, stream: Any = None, attempts: int = 5
    ) -> None:
        from mlflow import MlflowClient

        self._client = MlflowClient(tracking_uri)
        self._uri = tracking_uri
        self._patience_s = patience_s
        self._stream = stream
        self._attempts = attempts
        self._silent_since: float | None = None

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if not callable(attribute):
            return attribute

        repeatable = not name.startswith("create_")

        @functools.wraps(attribute)
        def call(*args: Any, **kwargs: Any) -> Any:
            return self._watched(attribute, args, kwargs, repeatable=repeatable)

        return call

    def create_run(
        self,
        experiment_id: str,
        start_time: int | None = None,
        tags: dict[str, Any] | None = None,
        run_name: str | None = None,
    ) -> Any:
        start_time = start_time or int(time.time() * 1000)

        def made_before() -> Any:
            for run in self._client.search_runs([experiment_id], f"attributes.start_time = {start_time}"):
                if run.info.run_name == run_name and all(run.data.tags.get(k) == str(v) for k, v in (tags or {}).items()):
                    return run
            return None

        return self._watched(
            self._client.create_run, (experiment_id, start_time, tags, run_name), {}, made_before
        )

    def _watched(
        self,
        method: Callable[..., Any],
        args: tuple,
        kwargs: dict[str, Any],
        made_before: Callable[[], Any] | None = None,
        repeatable: bool = True,
    ) -> Any:
        started = time.monotonic()
        timer = threading.Timer(self._patience_s, self._say_silent, (started,))
        timer.daemon = True
        timer.start()
        try:
            for attempt in range(self._attempts):
                try:
                    if attempt and made_before is not None and (done := made_before()) is not None:
                        return done
                    return method(*args, **kwargs)
                except Exception as error:
                    if not repeatable or attempt == self._attempts - 1 or not broke_mid_answer(error):
                        raise
                    time.sleep(min(2**attempt, 10))
        finally:
            timer.cancel()
            if self._silent_since is not None:
                self._say(f"MLflow at {self._uri} answered again after {time.monotonic() - self._silent_since:.0f} s; the study goes on.")
                self._silent_since = None

    def _say_silent(self, started: float) -> None:
        self._silent_since = started
        self._say(
            f"MLflow at {self._uri} has not answered for {self._patience_s:.0f} s (server down or busy?). "
            "The study waits for it; MLflow retries for about 4 minutes, and nothing measured is lost if it comes back."
        )

    def _say(self, line: str) -> None:
        from search.record.terminal import wrap

        print(wrap(line), file=self._stream or sys.stderr, flush=True)


class StudyRuns:
    """The study's parent run and the client that writes to it."""

    def __init__(self, tracking_uri: str, experiment: str, artifact_root: Path | None) -> None:
        self.tracking_uri = tracking_uri
        self.client: MlflowClient = WatchedClient(tracking_uri)
        found = self.client.get_experiment_by_name(experiment)
        if found is not None:
            self.experiment_id = found.experiment_id
        else:
            location = artifact_root.resolve().as_uri() if artifact_root is not None else None
            self.experiment_id = self.client.create_experiment(experiment, artifact_location=location)
        # Tells the MLflow 3 UI to open this experiment in its model-training view (runs, charts)
        # rather than the GenAI one (traces).
        self.client.set_experiment_tag(self.experiment_id, "mlflow.experimentKind", "custom_model_development")
        self.parent_run_id: str | None = None

    def __getstate__(self) -> dict[str, Any]:
        # Ray pickles the Tuner's callbacks (for restoring an experiment); a live client holds
        # connections and locks that cannot be pickled, so only its address travels.
        return {key: value for key, value in vars(self).items() if key != "client"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        vars(self).update(state)
        self.client = WatchedClient(self.tracking_uri)

    def reopen_parent(self, run_id: str) -> str:
        """Carry on with an interrupted study's run."""
        self.client.update_run(run_id, status="RUNNING")
        self.client.set_tag(run_id, "resumed", "true")
        self.parent_run_id = run_id
        return run_id

    def start_parent(self, run_name: str, params: dict[str, Any], tags: dict[str, str]) -> str:
        run = self.client.create_run(self.experiment_id, run_name=run_name, tags=tags)
        self.parent_run_id = run.info.run_id
        self.log_params(self.parent_run_id, params)
        return self.parent_run_id

    def log_params(self, run_id: str, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        self.client.log_batch(run_id, params=[Param(k, str(v)[:6000]) for k, v in params.items()])

    def log_metrics(self, run_id: str, metrics: dict[str, float], step: int = 0, tags: dict[str, str] | None = None) -> None:
        """One write (one store transaction) for a step's metrics and any tags that go with it."""
        from mlflow.entities import Metric
        from mlflow.entities import RunTag

        now = int(time.time() * 1000)
        self.client.log_batch(
            run_id,
            metrics=[Metric(k, v, now, step) for k, v in metrics.items()],
            tags=[RunTag(k, v) for k, v in (tags or {}).items()],
        )

    def end(self, run_id: str, status: str) -> None:
        self.client.set_terminated(run_id, status=status)


class TrialRuns(tune.Callback):
    """A Tune callback that mirrors every trial into a nested MLflow run.

    Args:
        runs: the study's runs (parent already started).
        stopped_early: tells whether the scheduler stopped a trial (by trial id) before its
            last epoch; such trials end as KILLED, trials that raised as FAILED, others FINISHED.
        step_key: the result entry used as the metric step (the epoch).
        optuna_trial: the Optuna trial behind a Ray trial id, when an Optuna searcher suggests:
            each run is tagged `optuna_trial` with its number when it is created, which is how a
            resumed study gives an interrupted trial its run back; the Optuna trial keeps the
            run's id (user attribute `mlflow_run_id`) for whoever reads Optuna's record.

    `budget_ends_at` is when the study's time budget runs out (epoch seconds), set once the
    trials start, if it has one: trials Tune ends after that without their last (`complete`)
    report were cut off by the budget and end as KILLED with a `cut_off` tag.
    """

    def __init__(
        self,
        runs: StudyRuns,
        stopped_early: Callable[[str], bool],
        step_key: str = EPOCH,
        optuna_trial: Callable[[str], Any] | None = None,
    ) -> None:
        self.runs = runs
        self.stopped_early = stopped_early
        self.optuna_trial = optuna_trial
        self.step_key = step_key
        self.budget_ends_at: float | None = None
        self.cut_off: set[str] = set()  # trial ids the time budget ended
        self.run_ids: dict[str, str] = {}
        self.numbers: dict[str, int] = {}
        self.ended_at: dict[str, float] = {}  # epoch seconds, by trial id
        self.retries: dict[str, int] = {}
        self.next_number = 1
        self.rerun: dict[int, tuple[str, int]] = {}  # Optuna trial number -> (run id, number) to run again
        self.logged_steps: dict[str, set[int]] = {}  # steps earlier attempts recorded, by run id
        self.attempt_steps: dict[str, set[int]] = {}  # steps this attempt recorded, by run id
        self.tagged: dict[str, dict[str, str]] = {}  # text tags set on each run, by run id
        self.trials: dict[str, Trial] = {}  # Tune's trials, by id (what ended them)
        # Called with the `DiskFull` of a trial a full disk cut short (the study stops).
        self.on_disk_full: Callable[[DiskFull], None] = lambda full: None

    def carry_on(self, table: Any, interrupted: list[Any]) -> None:
        """Continue an interrupted study: number new trials after its trials, and give each
        trial it had running when it was cut off (`interrupted`: their Optuna trials, which the
        searcher suggests again) its own run back when it runs again. A run is matched to its
        Optuna trial by its `optuna_trial` tag, set when the run was created."""
        import pandas as pd

        numbers = {row["run_id"]: int(str(row["trial"]).rsplit("-", 1)[-1]) for _, row in table.iterrows()}
        self.next_number = max([self.next_number, *(n + 1 for n in numbers.values())])
        for _, row in table[table["status"].isin(ENDED)].iterrows():
            self.numbers[str(row["trial_id"])] = numbers[row["run_id"]]
        waiting = {trial.number for trial in interrupted}
        for _, row in table[~table["status"].isin(ENDED)].iterrows():
            if pd.notna(row["optuna_trial"]) and int(row["optuna_trial"]) in waiting:
                self.rerun[int(row["optuna_trial"])] = (row["run_id"], numbers[row["run_id"]])
                history = self.runs.client.get_metric_history(row["run_id"], self.step_key)
                self.logged_steps[row["run_id"]] = {point.step for point in history}

    def trial_name(self, trial: Trial) -> str:
        if trial.trial_id not in self.numbers:
            self.numbers[trial.trial_id] = self.next_number
            self.next_number += 1
        return f"trial-{self.numbers[trial.trial_id]:03d}"

    def on_trial_start(self, iteration: int, trials: list, trial: Trial, **info: Any) -> None:
        self.trials[trial.trial_id] = trial
        if trial.trial_id in self.run_ids:
            return
        optuna_trial = self.optuna_trial(trial.trial_id) if self.optuna_trial else None
        if optuna_trial is not None and optuna_trial.number in self.rerun:
            run_id, number = self.rerun.pop(optuna_trial.number)
            self.numbers[trial.trial_id] = number
            self.run_ids[trial.trial_id] = run_id
            self.runs.client.update_run(run_id, status="RUNNING")
            self.runs.client.set_tag(run_id, "ray_trial_id", trial.trial_id)
            self.runs.client.set_tag(
                run_id, "resumed", "rerun from scratch: it was running when the study was interrupted"
            )
            # A kill can land between creating the run and writing its configuration: write
            # what the run lacks (the configuration suggested again is the same one).
            logged = self.runs.client.get_run(run_id).data.params
            self.runs.log_params(run_id, {k: v for k, v in trial.config.items() if k not in logged})
            optuna_trial.set_user_attr(MLFLOW_RUN_ID, run_id)
            return
        tags = {"mlflow.parentRunId": self.runs.parent_run_id, "ray_trial_id": trial.trial_id}
        if optuna_trial is not None:
            tags["optuna_trial"] = str(optuna_trial.number)
        run = self.runs.client.create_run(self.runs.experiment_id, run_name=self.trial_name(trial), tags=tags)
        self.run_ids[trial.trial_id] = run.info.run_id
        self.runs.log_params(run.info.run_id, trial.config)
        if optuna_trial is not None:  # a pointer for readers of Optuna's record (e.g. the dashboard)
            optuna_trial.set_user_attr(MLFLOW_RUN_ID, run.info.run_id)

    def on_trial_result(
        self, iteration: int, trials: list, trial: Trial, result: dict, **info: Any
    ) -> None:
        run_id = self.run_ids.get(trial.trial_id)
        if run_id is None:
            return
        tags = {}
        if result.get(RESUMED_FROM_EPOCH):
            tags["resumed"] = f"continued from its checkpoint after epoch {int(result[RESUMED_FROM_EPOCH])}"
        step = int(result.get(self.step_key, result.get("training_iteration", 0)))
        # A trial continuing from its checkpoint (after an interruption or a retry) reports its
        # last saved epoch again first: steps an earlier attempt recorded are skipped.
        if step in self.logged_steps.get(run_id, ()):
            if tags:
                self.runs.log_metrics(run_id, {}, tags=tags)
            return
        self.attempt_steps.setdefault(run_id, set()).add(step)
        tagged = self.tagged.setdefault(run_id, {})
        tags.update({key: value for key, value in trial_text(result).items() if tagged.get(key) != value})
        self.runs.log_metrics(run_id, trial_metrics(result), step=step, tags=tags)  # one write per result
        tagged.update(tags)

    def on_trial_complete(self, iteration: int, trials: list, trial: Trial, **info: Any) -> None:
        run_id = self.run_ids.get(trial.trial_id)
        if run_id is None:
            return
        self.ended_at[trial.trial_id] = time.time()
        stopped = self.stopped_early(trial.trial_id)
        self.runs.client.set_tag(run_id, "stopped_early", str(stopped).lower())
        if not stopped and self._budget_spent() and not (trial.last_result or {}).get(COMPLETE):
            self.cut_off.add(trial.trial_id)
            self._kill(run_id, "cut_off", "time budget")
            return
        self.runs.end(run_id, "KILLED" if stopped else "FINISHED")

    def _budget_spent(self) -> bool:
        return self.budget_ends_at is not None and time.time() >= self.budget_ends_at

    def _kill(self, run_id: str, tag: str, reason: str) -> None:
        self.runs.client.set_tag(run_id, tag, reason)
        self.runs.end(run_id, "KILLED")

    def _kill_running(self, tag: str, reason: str) -> list[str]:
        """End the runs of trials that never ended as KILLED, tagged; return their trial ids."""
        running = [trial_id for trial_id in self.run_ids if trial_id not in self.ended_at]
        for trial_id in running:
            self.ended_at[trial_id] = time.time()
            self._kill(self.run_ids[trial_id], tag, reason)
        return running

    def cut_off_running(self) -> None:
        """The time budget ran out: end the runs of trials Tune left without an ending."""
        self.cut_off.update(self._kill_running("cut_off", "time budget"))

    def interrupt_running(self, reason: str = "true") -> None:
        """The study was interrupted (or failed, `reason`): end the runs of trials still training
        as KILLED, tagged `interrupted`, which `--resume` runs again."""
        self._kill_running("interrupted", reason)

    def on_trial_recover(self, iteration: int, trials: list, trial: Trial, **info: Any) -> None:
        # The trial raised and will be started again (`max_retries`); keep one run, say so.
        run_id = self.run_ids.get(trial.trial_id)
        if run_id is not None:
            self.logged_steps.setdefault(run_id, set()).update(self.attempt_steps.pop(run_id, set()))
            self.retries[trial.trial_id] = self.retries.get(trial.trial_id, 0) + 1
            self.runs.client.set_tag(run_id, "retries", str(self.retries[trial.trial_id]))
            self.runs.client.set_tag(run_id, f"error_before_retry_{self.retries[trial.trial_id]}", error_message(trial)[-5000:])

    def disk_full(self, trial_id: str) -> DiskFull | None:
        """What a trial that raised said, if it found the disk full (it is then no failure of
        its configuration: it runs again on `--resume`)."""
        trial = self.trials.get(trial_id)
        return DiskFull.from_message(error_message(trial)) if trial is not None and getattr(trial, "error_file", None) else None

    def on_trial_error(self, iteration: int, trials: list, trial: Trial, **info: Any) -> None:
        run_id = self.run_ids.get(trial.trial_id)
        if run_id is None:
            return
        self.ended_at[trial.trial_id] = time.time()
        message = error_message(trial)
        full = DiskFull.from_message(message)
        if full is not None:  # cut short, like a trial still training when a study is interrupted
            self._kill(run_id, "interrupted", f"{full}; --resume runs it again"[:500])
            self.on_disk_full(full)
            return
        self.runs.client.set_tag(run_id, "error", message[-5000:])
        path = getattr(trial, "error_file", None)
        if path and os.path.exists(path):
            self.runs.client.log_artifact(run_id, path, artifact_path="error")
        self.runs.end(run_id, "FAILED")


def server_gone(error: BaseException | None) -> str | None:
    """The tracking server's address, if `error` (or what caused it) is MLflow's client giving
    up on a server that did not answer through its retries (`MLFLOW_HTTP_REQUEST_MAX_RETRIES`):
    the study stopped, and `--resume` carries it on once the server is back."""
    import re

    for cause in causes(error):
        gone = re.search(r"API request to (https?://[^/\s]+)\S* failed with (?:timeout exception|exception|error code 50[234])", str(cause))
        if gone:
            return gone.group(1)
    return None


# What Ray says when the process that ran a trial is gone (killed, out of memory, or on a node
# that went down), rather than the trial raising.
LOST_PROCESS = ("ActorDiedError", "ActorUnavailableError", "RayActorError", "NodeDiedError", "WorkerCrashedError",
                "The actor died", "The actor is dead", "is unavailable")  # fmt: skip


def error_message(trial: Trial) -> str:
    """The last line of the trial's traceback (its exception), or a placeholder; for a trial
    whose process was lost, that said first, with the nodes Ray has lost at the trial's address."""
    path = getattr(trial, "error_file", None)
    line = "the trial raised an exception (no traceback was saved)"
    if path and os.path.exists(path):
        lines = [line for line in Path(path).read_text(errors="replace").splitlines() if line.strip()]
        if lines:
            line = lines[-1].strip()
    if not any(marker in line for marker in LOST_PROCESS):
        return line
    address = (getattr(trial, "last_result", None) or {}).get("node_ip")
    return f"its process was lost (killed, out of memory, or its node went down{_lost_nodes(address)}): {line}"


def _lost_nodes(address: str | None) -> str:
    """"; Ray lost node ID at ADDRESS" for dead nodes at the trial's address, if Ray knows yet."""
    import ray

    try:
        dead = [n for n in ray.nodes() if not n["Alive"] and n.get("NodeManagerAddress") == address]
    except Exception:  # noqa: BLE001 - the message is only made more precise when Ray can tell
        return ""
    return "".join(f"; Ray lost node {node['NodeID'][:12]} at {address}" for node in dead)
