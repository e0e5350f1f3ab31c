"""What a trial measures: per-epoch timing, model size and batch-1 inference latency."""

from __future__ import annotations

import gzip
import json
import math
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from trainables._keras import keras
from trainables._keras import tf
from trainables.contract import COMPLETE
from trainables.contract import EPOCH
from trainables.contract import RESUMED_FROM_EPOCH
from trainables.contract import Report
from trainables.timing import median_ms

if TYPE_CHECKING:
    import tf_keras

# HDF5 is "legacy", but it is what `gzipped_model_bytes` measures best. A filter for the process,
# not `warnings.catch_warnings`, which is not thread-safe: Ray runs a trial in a thread of its
# worker, and Keras saves with threads of its own, so the warning reached the user's terminal.
warnings.filterwarnings("ignore", message="You are saving your model as an HDF5 file", category=UserWarning)

class StepTimer(keras.callbacks.Callback):
    """Wall and process CPU time of each training step of the current epoch (`walls`, `cpus`)."""

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch_start = time.perf_counter()
        self._marks = [(self._epoch_start, time.process_time())]  # (wall, CPU) at each step's end

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self._marks.append((time.perf_counter(), time.process_time()))

    @property
    def walls(self) -> np.ndarray:
        return np.diff([mark[0] for mark in self._marks])

    @property
    def cpus(self) -> np.ndarray:
        return np.diff([mark[1] for mark in self._marks])

    def speed(self, *, skip: int, steps: int, examples: int) -> dict[str, float]:
        """An epoch of `steps` steps and `examples` examples, timed by this epoch's steps after
        the first `skip` (`steady_state`): `epoch_time_s`, `epoch_time_cv`, `epoch_cpu_s` and
        `examples_per_s`."""
        seconds, spread = steady_state(self.walls, skip=skip, steps=steps)
        return {
            "epoch_time_s": seconds,
            "epoch_time_cv": spread,
            "epoch_cpu_s": steady_state(self.cpus, skip=skip, steps=steps)[0],
            "examples_per_s": examples / seconds if seconds > 0 else float("nan"),
        }


class EpochReporter(StepTimer):
    """Time each epoch's training phase and hand the epoch's metrics to `report`.

    `epoch_time_s` is steady-state training time, robust to pauses: the median of the epoch's
    step times, times its steps (`steady_state`). In the first epoch of a run, the first step
    (which traces and compiles the training graph) is left out, and its excess over the median
    is reported as `warmup_s`. With it: `epoch_time_cv`, the step times' coefficient of
    variation (their spread); `epoch_cpu_s`, the same statistic of the process's CPU time per
    step (what neighbours on a shared machine move least); `epoch_wall_s`, the plain wall time of
    the epoch's training phase. `train_time_s` is the cumulative wall time of all training
    phases, warm-up included. Validation is not counted.

    On the last epoch (the planned last one, or one after which another callback stopped
    training), `final_metrics(model)` is merged into the report, with `complete=True`, so the
    last report carries everything the trial measured and says it is the last. If
    `should_stop()` turns true, training ends after the current batch (or right after an
    epoch's report, if true by then) and nothing more is reported. `save_epoch(epoch)`, if
    given, saves the epoch's model before it is reported (its time is not training time). `known_metrics`, measured before training (e.g. of a distillation teacher), go
    into the first report.
    """

    def __init__(
        self,
        *,
        examples_per_epoch: int,
        report: Report,
        final_metrics: Callable[[], dict[str, float]],
        should_stop: Callable[[], bool] | None = None,
        checkpoint: EpochCheckpoint | None = None,
        resumed_from_epoch: int = 0,
        known_metrics: dict[str, float] | None = None,
        save_epoch: Callable[[int], None] | None = None,
    ) -> None:
        super().__init__()
        self.save_epoch = save_epoch
        self.known_metrics = known_metrics or {}
        self.examples_per_epoch = examples_per_epoch
        self.report = report
        self.final_metrics = final_metrics
        self.should_stop = should_stop
        self.checkpoint = checkpoint
        self.resumed_from_epoch = resumed_from_epoch
        self.abandoned = False
        self._resume_reported = False
        self.train_time_s = 0.0
        self.history: list[dict[str, Any]] = []

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        super().on_epoch_begin(epoch, logs)
        self._train_end: float | None = None

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        super().on_train_batch_end(batch, logs)
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            raise FloatingPointError(
                f"Training diverged: loss became {float(loss)} at epoch {len(self.history) + 1}, "
                f"batch {batch + 1}. A smaller learning rate usually helps."
            )
        if self.should_stop is not None and self.should_stop():
            # Whoever runs the trial no longer wants it: end now, mid-epoch, without reporting.
            self.abandoned = True
            self.model.stop_training = True

    def on_test_begin(self, logs: dict | None = None) -> None:
        self._train_end = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self.abandoned:
            return
        train_end = self._train_end or time.perf_counter()
        wall = train_end - self._epoch_start
        metrics: dict[str, Any] = {EPOCH: epoch + 1}
        first = not self.history  # the first epoch of this run traces the graph
        if first:
            metrics.update(self.known_metrics)
        if first and self.resumed_from_epoch and not self._resume_reported:
            metrics[RESUMED_FROM_EPOCH] = self.resumed_from_epoch
        walls = self.walls
        warm_up = first and len(walls) > 1
        speed = self.speed(skip=1 if warm_up else 0, steps=len(walls), examples=self.examples_per_epoch)
        if warm_up:
            metrics["warmup_s"] = max(0.0, float(walls[0]) - speed["epoch_time_s"] / len(walls))
        self.train_time_s += wall
        metrics.update(
            {name: float(value) for name, value in (logs or {}).items()},
            **speed,
            epoch_wall_s=wall,
            train_time_s=self.train_time_s,
        )
        if epoch + 1 >= self.params.get("epochs", epoch + 1) or self.model.stop_training:
            metrics.update(self.final_metrics(), **{COMPLETE: True})
        if self.checkpoint is not None:
            self.checkpoint.save(epochs_done=epoch + 1, report=metrics)
        if self.save_epoch is not None:  # before the report: a study may stop the trial on it
            self.save_epoch(epoch + 1)
        self.history.append(metrics)
        self.report(metrics)
        if self.should_stop is not None and self.should_stop():
            # Told to stop by the time this epoch was reported: end here, not one batch (and its
            # epoch's validation pass, which Keras runs even after a stop mid-epoch) later.
            self.abandoned = True
            self.model.stop_training = True

    def on_train_begin(self, logs: dict | None = None) -> None:
        # Reports travel asynchronously, so the last saved epoch may never have reached whoever
        # records them: report it again first (a recorder that has it already skips it).
        saved = self.checkpoint.last_report if self.checkpoint is not None else None
        if self.resumed_from_epoch and saved:
            self.report({**saved, RESUMED_FROM_EPOCH: self.resumed_from_epoch})
            self._resume_reported = True


def steady_state(step_seconds: Any, *, skip: int = 0, steps: int | None = None) -> tuple[float, float]:
    """`(epoch seconds, spread)` of an epoch whose steps took `step_seconds` (wall or CPU).

    The epoch's seconds are the median step time, over the steps after the first `skip` (the
    warm-up), times the epoch's `steps` (by default, every step timed): a pause in a few steps
    (a neighbour's burst, garbage collection) leaves it unmoved, where the epoch's wall time
    takes all of it. The spread is the
    coefficient of variation of those step times (0 with fewer than two). An epoch without steps
    is 0 seconds.
    """
    times = np.asarray(step_seconds, dtype=float)
    if times.size == 0:
        return 0.0, 0.0
    kept = times[skip:] if times.size > skip else times
    mean = float(kept.mean())
    spread = float(kept.std(ddof=1) / mean) if kept.size > 1 and mean > 0 else 0.0
    return float(np.median(kept)) * (times.size if steps is None else steps), spread


class EpochCheckpoint:
    """Model weights (pruning state included), optimizer state and epochs done, in `directory`.

    Saved after every epoch (the latest only is kept), with that epoch's report; `restore()`
    loads the latest and returns how many epochs it had done (0 when there is none), for
    `fit(initial_epoch=...)`, and keeps the saved report in `last_report`. A non-chief worker
    of a multi-worker run restores from the chief's `directory` but saves into its own
    `write_directory` (every worker must save; only the chief's copy is kept).

    One NumPy archive (`CHECKPOINT`) holds it all, written whole and then renamed into place,
    so a crash mid-write leaves the previous epoch's. It costs a few milliseconds an epoch where
    `tf.train.CheckpointManager` took 20-35 (BENCHMARKS.md, "A trial's own cost"): the values
    are the model's `get_weights()` and the optimizer's `variables`, in their own order, which a
    model and optimizer built the same way share.
    """

    def __init__(self, model: tf_keras.Model, directory: str, write_directory: str | None = None) -> None:
        self.model = model
        self.directory = directory
        self.write_directory = write_directory or directory
        self.last_report: dict[str, Any] | None = None

    def restore(self) -> int:
        path = os.path.join(self.directory, CHECKPOINT)
        if not os.path.exists(path):
            return 0
        with np.load(path, allow_pickle=False) as saved:
            weights = [saved[f"weight_{i}"] for i in range(int(saved["weights"]))]
            slots = [saved[f"optimizer_{i}"] for i in range(int(saved["optimizer_variables"]))]
            epochs_done, report = int(saved["epochs_done"]), json.loads(str(saved["report"]))
        optimizer = self.model.optimizer
        optimizer.build(self.model.trainable_variables)  # its slots exist once built (a no-op if they do)
        variables = list(optimizer.variables)
        shapes = [tuple(w.shape) for w in self.model.get_weights()], [tuple(v.shape) for v in variables]
        if shapes != ([w.shape for w in weights], [s.shape for s in slots]):
            raise ValueError(
                f"The checkpoint {path} was saved by another model or optimizer than this config builds; "
                "remove it to train from the start."
            )
        self.model.set_weights(weights)
        for variable, value in zip(variables, slots):
            variable.assign(value)
        self.last_report = report
        return epochs_done

    def save(self, *, epochs_done: int, report: dict[str, Any]) -> None:
        weights = self.model.get_weights()
        slots = [variable.numpy() for variable in self.model.optimizer.variables]
        arrays = {f"weight_{i}": value for i, value in enumerate(weights)}
        arrays.update({f"optimizer_{i}": value for i, value in enumerate(slots)})
        os.makedirs(self.write_directory, exist_ok=True)
        path = os.path.join(self.write_directory, CHECKPOINT)
        with open(path + ".partial", "wb") as file:
            np.savez(
                file,
                weights=len(weights),
                optimizer_variables=len(slots),
                epochs_done=epochs_done,
                report=json.dumps(report),
                **arrays,
            )
        os.replace(path + ".partial", path)


CHECKPOINT = "checkpoint.npz"


def gzipped_model_bytes(model: tf_keras.Model) -> int:
    """Size in bytes of the model saved as HDF5 (no optimizer state), then gzipped.

    Gzip turns the zeros left by pruning into saved bytes, as a deployment would.
    """
    directory = tempfile.mkdtemp()
    try:
        path = os.path.join(directory, "model.h5")
        model.save(path, include_optimizer=False)
        with open(path, "rb") as raw, gzip.open(path + ".gz", "wb") as packed:
            shutil.copyfileobj(raw, packed)
        return os.path.getsize(path + ".gz")
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def inference_ms(model: tf_keras.Model, example: np.ndarray, *, repeats: int = 50) -> float:
    """Median wall time in milliseconds of one compiled forward pass on a batch of one."""
    forward = tf.function(lambda x: model(x, training=False))
    batch = tf.constant(example[np.newaxis])
    return median_ms(lambda: forward(batch).numpy(), repeats=repeats)  # warm-up traces it


def model_metrics(
    model: tf_keras.Model,
    *,
    x_val: np.ndarray,
    y_val: np.ndarray,
    quantization: str = "none",
    representative: np.ndarray | None = None,
    model_dir: str | None = None,
    deployed: bool = True,
) -> dict[str, float]:
    """Size, speed and deployed accuracy of a trained (already stripped) model.

    The Keras model gives `params`, `nonzero_params`, `sparsity`, `model_bytes_gzip` and
    `inference_ms`; with `deployed`, the TFLite model it deploys as gives `DEPLOYED_METRICS`
    (`deployed_metrics`). If `model_dir` is given, the model is also written there as
    `model.keras`, with `input_example.npy` (five validation inputs) and `output_example.npy`
    (the model's outputs for them: the deployed model's, with `deployed`), from which the study
    gives the logged model its signature; with `deployed`, `model.tflite` too.
    """
    from trainables.pruning import kernel_sparsity

    weights = model.get_weights()
    measured = {
        "params": float(model.count_params()),
        "nonzero_params": float(sum(int(np.count_nonzero(w)) for w in weights)),
        "sparsity": kernel_sparsity(model),
        "model_bytes_gzip": float(gzipped_model_bytes(model)),
        "inference_ms": inference_ms(model, x_val[0]),
    }
    if model_dir:
        save_model(model, model_dir, x_val, outputs=not deployed)  # else `deployed_metrics` writes the deployed model's
    if deployed:
        measured.update(
            deployed_metrics(model, x_val=x_val, y_val=y_val, quantization=quantization, representative=representative, model_dir=model_dir)
        )
    return measured


def save_model(model: tf_keras.Model, model_dir: str, x_val: np.ndarray, *, outputs: bool = True) -> None:
    """Write a trained (already stripped) model to `model_dir` as `model.keras`, with
    `input_example.npy` (five validation inputs) and, with `outputs`, the model's outputs for
    them (`output_example.npy`)."""
    os.makedirs(model_dir, exist_ok=True)
    model.save(os.path.join(model_dir, "model.keras"))
    example = x_val[:5].astype(np.float32)
    np.save(os.path.join(model_dir, "input_example.npy"), example)
    if outputs:
        np.save(os.path.join(model_dir, "output_example.npy"), model(example, training=False).numpy())


WEIGHTS = "weights.npz"  # a model's weights, as `save_weights` writes them


def save_weights(model: tf_keras.Model, model_dir: str) -> None:
    """Write `model.get_weights()` to `model_dir` (`WEIGHTS`): a model built the same way takes
    them back (`load_weights`)."""
    os.makedirs(model_dir, exist_ok=True)
    np.savez(os.path.join(model_dir, WEIGHTS), *model.get_weights())


def load_weights(path: str) -> list[np.ndarray]:
    with np.load(path, allow_pickle=False) as saved:
        return [saved[f"arr_{i}"] for i in range(len(saved.files))]


def deployed_metrics(
    model: tf_keras.Model,
    *,
    x_val: np.ndarray,
    y_val: np.ndarray,
    quantization: str = "none",
    representative: np.ndarray | None = None,
    model_dir: str | None = None,
) -> dict[str, float]:
    """`DEPLOYED_METRICS` (`trainables.quantization`) of the TFLite model `model` deploys as (quantized as `quantization`
    says, see `trainables.quantization`); with `model_dir`, written there as `model.tflite`, with
    its outputs for `input_example.npy` as `output_example.npy`."""
    from trainables import quantization as quant

    flatbuffer = quant.to_tflite(model, quantization, representative)
    if model_dir:
        with open(os.path.join(model_dir, "model.tflite"), "wb") as file:
            file.write(flatbuffer)
        np.save(os.path.join(model_dir, "output_example.npy"), quant.predict(flatbuffer, x_val[:5].astype(np.float32)))
    return {
        "tflite_bytes": float(len(flatbuffer)),
        "tflite_bytes_gzip": float(len(gzip.compress(flatbuffer))),
        "tflite_accuracy": quant.evaluate(flatbuffer, x_val, y_val),
        "tflite_ms": quant.latency_ms(flatbuffer, x_val[0]),
    }
