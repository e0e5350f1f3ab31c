"""What runs inside a trial's process: its checkpoint directory claimed, the process sized and
pinned to its allocation, the trainable called with a context that reports to Tune and polls
for a stop, and the Keras-free bits Ray needs to ship a space file's own trainable."""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import shutil
import sys
from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any

from search.compute import devices
from search.compute import remeasure
from search.errors import DiskFull
from trainables.contract import COMPLETE
from trainables.contract import EPOCH
from trainables.contract import ReportCheck
from trainables.contract import TrialContext

if TYPE_CHECKING:
    from search.space import SearchSpace


def run_trial(
    config: dict[str, Any],
    *,
    trainable: Callable[..., Any],
    cpus: float,
    gpus: float,
    workers: int,
    gpu_memory_mb: int | None,
    models_dir: str,
    checkpoints_dir: str,
    cache_dir: str,
    train_runs_dir: str,
    session: str,
    needed: frozenset[str] | None = None,
    environment: Mapping[str, str] | None = None,
    epoch_models: bool = False,
) -> None:
    """The Tune function: train one configuration, forwarding each report to Tune.

    The trainable saves its final model under `models_dir/<trial id>` (the study keeps the
    Pareto front's models), checkpoints every epoch in a directory claimed for this
    configuration (a run of the same configuration after an interruption continues from it),
    may keep what the study's trials share in `cache_dir` (e.g. a distillation teacher, trained
    by the first trial that needs it), and polls `should_stop` between batches. The checkpoint
    goes once the trial ends; if it raises, the checkpoint stays for a retry.

    With `workers` > 1 the trial drives a Ray Train run of that many workers sharing its
    `cpus` and `gpus` (`devices.run_workers`), recorded by Ray Train under
    `train_runs_dir`; a trial stopped early ends with its process, which takes the Train run
    down with it.

    With `epoch_models` (a study whose front is over recipes) the trainable also saves its
    model after every epoch (`TrialContext.epoch_models`).

    `environment` holds the study's process settings (`search.environment`); a worker of a Ray
    that was started before the study set them (by its user) gets them here.
    """
    from ray import tune

    for name, value in (environment or {}).items():
        os.environ.setdefault(name, value)

    sys.unraisablehook = _unraisable_but_shutdown
    # A write that finds no room names the full disk: the study stops and can resume (`DiskFull`).
    with _full_disk_named(checkpoints_dir, models_dir, cache_dir):
        trial_id = tune.get_context().get_trial_id()
        check = ReportCheck(needed or (), on_numbering=_say_once)
        checkpoint_dir = claim_checkpoint_dir(Path(checkpoints_dir), config, session, trial_id)
        directories = {"model_dir": os.path.join(models_dir, trial_id), "checkpoint_dir": str(checkpoint_dir), "cache_dir": cache_dir}
        remeasure.save_config(directories["model_dir"], config)  # the front is measured again from it
        if workers > 1:
            devices.run_workers(
                trainable,
                config,
                {**directories, "needed": needed, "epoch_models": epoch_models},
                check=check,
                workers=workers,
                cpus=cpus,
                gpus=gpus,
                gpu_memory_mb=gpu_memory_mb,
                storage_path=train_runs_dir,
                name=trial_id,
            )
        else:
            devices.prepare_process(cpus, gpu_memory_mb)
            pinned = devices.pin_to_free_cores(cpus)
            reported = []

            def report(metrics: dict[str, Any]) -> None:
                metrics = check(metrics)  # a report that breaks the contract fails the trial, named
                if not reported and pinned is not None:  # a tag of the trial's run
                    metrics = {**metrics, "pinned_cores": ",".join(map(str, pinned.cores))}
                reported.append(True)
                tune.report(metrics)

            try:
                returned = trainable(config, TrialContext(report=report, should_stop=_stop_requested, needed=needed, epoch_models=epoch_models, **directories))
            finally:
                if pinned is not None:
                    pinned.release()
            if not reported and returned:  # the contract's "report nothing, return the metrics"
                tune.report(check({EPOCH: config.get("epochs", 1), **returned, COMPLETE: True}))
        shutil.rmtree(checkpoint_dir, ignore_errors=True)


@contextlib.contextmanager
def _full_disk_named(*places: str) -> Iterator[None]:
    """Turn an error that says the disk is full into `DiskFull`, naming the full path (the
    error's own, else the one of `places` with the least room)."""
    try:
        yield
    except Exception as error:
        full = DiskFull.find(error, places)
        if full is None or full is error:
            raise
        raise full from error


_said: set[str] = set()


def _say_once(note: str) -> None:
    """A note about the trainable, printed once by each trial process."""
    if note not in _said:
        _said.add(note)
        print(note, flush=True)


def _unraisable_but_shutdown(unraisable: Any) -> None:
    """Stay quiet about Ray ending a worker at the end of the study.

    Ray's SIGTERM handler raises SystemExit; when the signal lands inside a garbage-collection
    callback, Python prints "Exception ignored in ..." with a traceback to the user's terminal.
    """
    if not isinstance(unraisable.exc_value, SystemExit):
        sys.__unraisablehook__(unraisable)


def claim_checkpoint_dir(root: Path, config: dict[str, Any], session: str, trial_id: str) -> Path:
    """The checkpoint directory of this configuration: `<config hash>-<n>`, with an `owner` file.

    A directory owned by an earlier launch of the study holds what an interrupted run of this
    configuration saved: take it over and continue. One owned by another live trial of this
    launch (the same configuration suggested twice) is left alone for the next `n`. One owned by
    this very trial is its own, kept from before a retry. Each claim reads and writes the owner
    under an exclusive lock on the directory's `owner.lock`, so two trials never both own it.
    """
    import fcntl

    digest = hashlib.sha1(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]
    me = f"{session} {trial_id}"
    for n in itertools.count():
        path = root / f"{digest}-{n}"
        path.mkdir(parents=True, exist_ok=True)
        owner = path / "owner"
        with open(path / "owner.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            current = owner.read_text() if owner.exists() else ""
            if current == me or current.split(" ")[0] != session:  # its own, free or an earlier launch's
                owner.write_text(me)
                return path
    raise AssertionError("unreachable")


def ship_space_file_code(space: SearchSpace) -> None:
    """Let Ray workers run a trainable defined in the space file itself.

    Space files are imported under a private module name workers cannot import, so such a
    trainable travels by value; trainables from installed packages travel by reference.
    """
    import ray.cloudpickle

    from search.space import SPACE_MODULE_PREFIX

    module = sys.modules.get(getattr(space.trainable, "__module__", ""))
    if module is not None and module.__name__.startswith(SPACE_MODULE_PREFIX):
        ray.cloudpickle.register_pickle_by_value(module)


def _stop_requested() -> bool:
    """True once Tune has asked this trial to stop (the scheduler stopped it early).

    Without this the trial trains to the end of its epoch before it notices, wasting that time,
    and a reused worker cannot take the next trial until it does.
    """
    from ray.train._internal.session import get_session

    session = get_session()
    return bool(session is not None and session.stop_event.is_set())
