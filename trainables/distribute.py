"""Hardware choices in one place: which tf.distribute strategy a trial trains under.

`place()` looks at what this process was given and picks, in order:

- a TPU named by `TPU_NAME` → `TPUStrategy` (written to the TensorFlow guide; untested here);
- a `TF_CONFIG` naming several workers (as Ray Train sets it on each worker of a multi-worker
  trial) → `MultiWorkerMirroredStrategy`;
- several GPUs → `MirroredStrategy` over exactly those (under Ray, the GPUs it assigned the
  trial: Ray sets `CUDA_VISIBLE_DEVICES`); one GPU → `OneDeviceStrategy` on it;
- no GPU → one CPU replica (the default strategy), or `MirroredStrategy` over several logical
  CPU devices when `split_cpu(n)` made them (the cheap way to run the multi-replica path
  without GPUs).

Nothing here knows about Ray: the launcher's job is to make the right devices visible and set
`TF_CONFIG`; the trainable's is to train under whatever `place()` returns.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class Placement:
    """The strategy a trainable runs under, and what it means for the trainable."""

    strategy: tf.distribute.Strategy
    name: str  # the strategy's class name, e.g. "MirroredStrategy"
    workers: int = 1  # processes training together (multi-worker), 1 otherwise
    task_id: int = 0  # this worker's index; 0 is the chief, which writes the outputs
    devices: str = "CPU"  # "CPU", "GPU" or "TPU"

    @property
    def replicas(self) -> int:
        return int(self.strategy.num_replicas_in_sync)

    @property
    def is_chief(self) -> bool:
        return self.task_id == 0

    def describe(self) -> dict[str, object]:
        """What a trial reports about where it trained."""
        return {"strategy": self.name, "replicas": self.replicas, "workers": self.workers, "devices": self.devices}


def split_cpu(replicas: int) -> None:
    """Make the CPU look like `replicas` logical devices, so `place()` mirrors over them.

    Must run before TensorFlow initialises its devices (before any op in this process).
    Replicas on one CPU share its cores: this exercises the multi-replica code path (global
    batch, gradient all-reduce), it does not make training faster.
    """
    from trainables._keras import tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * replicas)


def _workers_in_tf_config() -> tuple[int, int]:
    """(number of workers, this task's index) from `TF_CONFIG`; (1, 0) without one."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return 1, 0
    spec = json.loads(raw)
    cluster = spec.get("cluster", {})
    workers = len(cluster.get("worker", [])) + len(cluster.get("chief", []))
    task = spec.get("task", {})
    index = int(task.get("index", 0))
    if task.get("type") == "worker" and cluster.get("chief"):
        index += 1  # the chief is task 0
    return workers, index


def place() -> Placement:
    """The strategy that fits the devices and cluster this process was given (see module doc).

    Call it before any other TensorFlow operation: multi-worker and TPU strategies must be
    created at program start-up.
    """
    from trainables._keras import tf

    tpu_name = os.environ.get("TPU_NAME")
    if tpu_name:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu_name)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return Placement(tf.distribute.TPUStrategy(resolver), "TPUStrategy", devices="TPU")

    # Physical devices can be listed without starting TensorFlow's runtime; a multi-worker
    # strategy must be created before it starts.
    devices = "GPU" if tf.config.list_physical_devices("GPU") else "CPU"
    workers, task_id = _workers_in_tf_config()
    logical = [] if workers > 1 else [device.name for device in tf.config.list_logical_devices(devices)]
    name, over = choose(devices, logical, workers)
    if name == "MultiWorkerMirroredStrategy":
        return Placement(tf.distribute.MultiWorkerMirroredStrategy(), name, workers, task_id, devices)
    if name == "OneDeviceStrategy":
        return Placement(tf.distribute.OneDeviceStrategy(over[0]), name, devices=devices)
    if name == "MirroredStrategy":
        return Placement(tf.distribute.MirroredStrategy(list(over)), name, devices=devices)
    return Placement(tf.distribute.get_strategy(), name, devices=devices)


def choose(devices: str, logical: list[str], workers: int) -> tuple[str, list[str]]:
    """Which strategy `place()` builds, and over which devices, for a process whose accelerator
    kind is `devices` ("GPU" or "CPU"), with those `logical` devices of that kind, in a trial of
    `workers` processes."""
    if workers > 1:
        return "MultiWorkerMirroredStrategy", []
    if len(logical) == 1 and devices == "GPU":
        return "OneDeviceStrategy", logical
    if len(logical) > 1:
        return "MirroredStrategy", logical
    return "default", []
