"""What a trial process is given before its trainable starts: threads, GPU memory, workers.

A trial with one worker trains in the Tune trial's own process. A trial with several workers
runs a Ray Train `TensorflowTrainer` from inside the Tune trial (Ray Train V2): the Tune trial
is a light driver, the workers are separate processes, each with its share of the trial's
CPUs and GPUs and a `TF_CONFIG` from Ray Train, from which the trainable builds its
`MultiWorkerMirroredStrategy`. Rank 0's reports reach Tune through `TuneReportCallback`.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

# What the Tune trial of a multi-worker trial reserves to drive its workers (Ray refuses 0);
# its workers share the rest of the trial's CPUs.
DRIVER_CPUS = 0.01


CORE_LOCKS = Path(tempfile.gettempdir()) / "tf-config-search-cores"  # shared by every study on the node


@dataclasses.dataclass
class CoreClaim:
    """Cores this process has to itself: an exclusive lock on each (`CORE_LOCKS/core-N.lock`),
    held until `release()` or the process ends, and the process's threads pinned to them."""

    cores: list[int]
    locks: list[Any]
    previous: set[int] = dataclasses.field(default_factory=set)

    def release(self) -> None:
        if self.previous:
            _set_process_affinity(self.previous)  # a reused worker takes its next trial unpinned
        for lock in self.locks:
            lock.close()  # closing the file drops its lock
        self.locks = []


def claim_cores(count: int, *, directory: Path | None = None, available: list[int] | None = None) -> CoreClaim | None:
    """Lock `count` cores of `available` (default: those this process may run on) that no other
    trial on this node holds, or None if there are not that many free (nothing is held then).
    The locks live in `directory` (default `CORE_LOCKS`)."""
    import fcntl

    directory = directory or CORE_LOCKS
    directory.mkdir(parents=True, exist_ok=True)
    claim = CoreClaim([], [])
    for core in sorted(os.sched_getaffinity(0) if available is None else available):
        handle = open(directory / f"core-{core}.lock", "a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        claim.cores.append(core)
        claim.locks.append(handle)
        if len(claim.cores) == count:
            return claim
    claim.release()
    return None


def pin_to_free_cores(cpus: float) -> CoreClaim | None:
    """Pin this trial process to `cpus` cores no other trial on the node holds, when it reserves
    whole CPUs; its TensorFlow thread pools are sized to them (`prepare_process`).

    Two trials side by side then never share a core or migrate onto each other's, so the speed
    each measures depends less on its neighbour. A fractional CPU share, or a node whose free
    cores are fewer (oversubscribed, or other studies hold them), leaves the process unpinned.
    """
    if cpus < 1 or cpus != int(cpus):
        return None
    previous = os.sched_getaffinity(0)
    claim = claim_cores(int(cpus))
    if claim is not None:
        claim.previous = set(previous)
        _set_process_affinity(set(claim.cores))
    return claim


def _set_process_affinity(cores: set[int]) -> None:
    """`sched_setaffinity` on every thread of this process (on Linux it applies per thread)."""
    for tid in os.listdir("/proc/self/task"):
        try:
            os.sched_setaffinity(int(tid), cores)
        except (ProcessLookupError, PermissionError):
            pass  # a thread that just ended


def prepare_process(cpus: float, gpu_memory_mb: int | None) -> None:
    """Size this process's TensorFlow to its allocation, before TensorFlow initialises.

    Threads: TensorFlow's intra/inter-op pools and OpenMP get `cpus` threads (set through the
    environment, read when TensorFlow is first imported; a reused worker keeps the pools it
    has, which were sized the same way).

    GPUs (only when Ray assigned some): with `gpu_memory_mb`, each visible GPU is capped at
    that much memory; with a fraction of a GPU and no cap, the cap is that fraction of the
    GPU's memory (read from `nvidia-smi`), so trials packed on one GPU do not starve each
    other; otherwise memory grows as needed instead of TensorFlow taking it all up front.
    """
    threads = str(max(1, round(cpus)))
    for name in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS"):
        os.environ[name] = threads
    import ray

    gpu_ids = ray.get_gpu_ids()
    if not gpu_ids:
        return
    if gpu_memory_mb is None:
        gpu_memory_mb = _fraction_of_gpu_memory_mb(ray.get_runtime_context().get_assigned_resources().get("GPU", 0))
    if gpu_memory_mb is None:
        os.environ["TF_FORCE_GPU_ALLOW_GROWTH"] = "true"
        return
    import tensorflow as tf

    try:
        for gpu in tf.config.list_physical_devices("GPU"):
            tf.config.set_logical_device_configuration(
                gpu, [tf.config.LogicalDeviceConfiguration(memory_limit=int(gpu_memory_mb))]
            )
    except RuntimeError:
        pass  # a reused worker whose GPUs were configured (the same way) by an earlier trial


# Modules a study's workers import as they start, before their first trial (comma-separated;
# set by the study from `train.worker_imports`, see `trainables.contract`).
WORKER_IMPORTS = "TF_CONFIG_SEARCH_WORKER_IMPORTS"


def quiet_worker() -> None:
    """Ray worker set-up (every worker process of a study): no chatter on the study's terminal,
    and the trainable's heavy imports done before its first trial.

    TensorFlow's C++ code writes CUDA probing and absl pre-init warnings straight to file
    descriptor 2 on import, whatever `TF_CPP_MIN_LOG_LEVEL` says, and Ray forwards every
    worker's stderr to the terminal: whenever this process first imports TensorFlow, fd 2 is
    swallowed for the import (and shown if it fails). A trainable that declares
    `worker_imports` (the Keras kit: TensorFlow and Keras) has them imported here, while the
    driver is still starting the study; a pure-Python trainable never pays for TensorFlow.
    Ray Train's helper actors warn about their own bookkeeping (e.g. cleaning up after a trial
    stopped early): only its errors are shown.
    """
    import importlib
    import logging

    logging.getLogger("ray.train").setLevel(logging.ERROR)
    if "tensorflow" not in sys.modules and not any(isinstance(f, _QuietImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietImport("tensorflow"))
    for name in filter(None, os.environ.get(WORKER_IMPORTS, "").split(",")):
        try:
            importlib.import_module(name)
        except ImportError:
            pass  # e.g. a space file's own module: it arrives with the trial


class _QuietImport:
    """A `sys.meta_path` finder that runs the first import of one top-level package with file
    descriptor 2 swallowed (its output is shown if the import fails), then steps aside."""

    def __init__(self, package: str) -> None:
        self.package = package

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != self.package:  # first: every import in the process comes through here
            return None
        sys.meta_path.remove(self)
        import importlib.util

        from trainables.stderr import swallowed
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        execute = spec.loader.exec_module

        def exec_module(module: Any) -> None:
            with swallowed():
                execute(module)

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def _fraction_of_gpu_memory_mb(gpus: float) -> int | None:
    """`gpus` (< 1) of the first visible GPU's memory in MB; None for whole GPUs or no nvidia-smi."""
    if not 0 < gpus < 1 or shutil.which("nvidia-smi") is None:
        return None
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0]
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=memory.total", "--format=csv,noheader,nounits", "-i", visible],
            capture_output=True, text=True, check=True, timeout=10,
        ).stdout
        return int(float(out.split()[0]) * gpus)
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


def run_workers(
    trainable: Callable[..., Any],
    config: dict[str, Any],
    context: dict[str, Any],
    *,
    workers: int,
    cpus: float,
    gpus: float,
    gpu_memory_mb: int | None,
    storage_path: str,
    name: str,
    check: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> None:
    """Train `config` on `workers` Ray Train workers, from inside a Tune trial.

    The trial's `cpus` (less `DRIVER_CPUS`) and `gpus` are split evenly between the workers,
    so the trial reserves `cpus` in all. Every worker calls `trainable(config, context)` with the
    same `TrialContext` as a single-process trial (the fields in `context`, and a `report` that
    is Ray Train's); Ray Train passes rank 0's reports on to the Tune trial. `should_stop` stays false:
    a trial stopped early ends its process, which ends the Train run. A worker that raises fails
    the Train run, and so the trial, with its error; `check` holds each worker's reports to the
    contract (`trainables.contract.ReportCheck`).
    """
    from ray.train import RunConfig
    from ray.train import ScalingConfig
    from ray.train.v2.api.config import LoggingConfig
    from ray.train.tensorflow import TensorflowTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    per_worker = {"CPU": (cpus - DRIVER_CPUS) / workers, **({"GPU": gpus / workers} if gpus else {})}

    def train_loop_per_worker(worker_config: dict[str, Any]) -> None:
        import logging

        import ray.train

        # Ray Train configures its workers' logging to print every report (through a logger
        # named after its file, outside `ray.train`) and TensorFlow's INFO lines on the console;
        # the trial's own reports are what the study shows. Errors still show.
        for name in ("", "ray.train", "tensorflow"):
            logging.getLogger(name).setLevel(logging.ERROR)
        from trainables.contract import TrialContext

        prepare_process(per_worker["CPU"], gpu_memory_mb)
        if check is None:
            trainable(worker_config, TrialContext(report=ray.train.report, **context))
            return
        worker_check = copy.deepcopy(check)  # each worker holds its own reports to the contract
        trainable(worker_config, TrialContext(report=lambda metrics: ray.train.report(worker_check(metrics)), **context))

    trainer = TensorflowTrainer(
        train_loop_per_worker,
        train_loop_config=config,
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=bool(gpus), resources_per_worker=per_worker),
        run_config=RunConfig(
            name=name,
            storage_path=storage_path,
            callbacks=[TuneReportCallback()],
            # Only errors from the `ray.train` loggers of the Train controller and workers.
            logging_config=LoggingConfig(log_level="ERROR"),
        ),
    )
    trainer.fit()
