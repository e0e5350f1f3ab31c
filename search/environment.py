"""The process settings a study runs with: decided here, set only by the entry points
(`search.launch.main` and `search.study.run_study`), never on import.

Ray reads several of them when it is first imported, so an entry point sets them before it
imports Ray. A user's own setting always wins. Which Keras `tf.keras` is stays the trainable's
choice: the Keras kit asks for Keras 2 itself (`trainables._keras`), a user's trainable gets
what the user's environment says.
"""

from __future__ import annotations

import os

from trainables.contract import TENSORFLOW_QUIET

# Quiet defaults for the driver and every Ray worker.
QUIET = {
    **TENSORFLOW_QUIET,
    "RAY_DEDUP_LOGS": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_AIR_NEW_OUTPUT": "0",
    "RAY_TRAIN_V2_ENABLED": "1",
    # A reused worker waits this long for a stopped trial's thread before taking the next trial
    # (Ray's default, 2 s, is shorter than one epoch of many models and then fails the trial).
    "TUNE_FUNCTION_THREAD_TIMEOUT_S": "600",
    # Ctrl-C is taken by the study's own handler (`search.study.ending`); Ray's would end the run
    # as if it had completed. The study then marks cut-off trials KILLED and says how to resume.
    "TUNE_DISABLE_SIGINT_HANDLER": "1",
    # Objectives measured only when a trial ends (deployed size, latency) are absent from the
    # per-epoch results; Tune would otherwise fail the study on the first such result.
    "TUNE_DISABLE_STRICT_METRIC_CHECKING": "1",
    # Ray Train's watcher for preempted (spot) nodes serves elastic Train runs; a trial's run
    # is not elastic (a study retries failed trials itself, `max_retries`).
    "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
    # The autoscaler's "No available node types can fulfill resource request" lines: a request
    # no node can hold is refused before the study starts (`cluster.check_resources`).
    "RAY_SCHEDULER_EVENTS": "0",
    # Tune's own per-trial loggers (result.json, progress.csv, TensorBoard events) write every
    # result a second time, beside MLflow's record, from the loop that hands trials their next
    # step; their TensorBoard writer alone takes 1.6 s to import at every launch.
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",
    # Ray prints the traceback of a trial's error it finds unread as the process ends (after a
    # study stopped mid-loop, by a full disk say); every trial's error is in its MLflow run.
    "RAY_IGNORE_UNHANDLED_ERRORS": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    # MLflow prints "View run ... at: URL" as each run ends on a tracking server; the study prints
    # the UI command once at its end.
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    "PYTHONWARNINGS": "ignore::DeprecationWarning,ignore::FutureWarning",
}
AUTH_MODE = "RAY_AUTH_MODE"  # read when Ray is first imported

_set_here: dict[str, str] = {}  # what this module set, which a later call may change


def prepare(address: str | None = None) -> None:
    """Set the study's settings in this process, for running on `address` (an existing Ray
    cluster, or None for a new local instance).

    Authentication: a local instance the study starts needs none; on a cluster, token
    authentication when this machine has a Ray token (`ray start` enables it by default; see
    `search.compute.cluster.auth_mode`).
    """
    from search.compute.cluster import auth_mode

    for name, value in QUIET.items():
        _default(name, value)
    _default(AUTH_MODE, auth_mode() if address else "disabled")


def for_workers() -> dict[str, str]:
    """The settings as this process has them, for the study's Ray workers and trial processes."""
    return {name: os.environ[name] for name in (*QUIET, AUTH_MODE) if name in os.environ}


def _default(name: str, value: str) -> None:
    if name in os.environ and os.environ[name] != _set_here.get(name):
        return  # the user's own
    os.environ[name] = value
    _set_here[name] = value
