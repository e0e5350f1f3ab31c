"""A trial's own cost: the kit's trial against plain `model.fit` of the same model, and where the rest goes.

For a few configurations of the default space (`spaces/mnist.py`, bundled digits, 8 epochs, one
process, 1 thread), alternated `--repeats` times:

- **kit**: `trainables.mnist.train` called as a study's worker calls it: with checkpoint and model
  directories, per-epoch models (a study over recipes asks for them) and the metrics the default
  study decides on (`needed`);
- **plain**: the task's `build_model`, `compile` and `fit(validation_data=...)` of the same model on
  the same `tf.data` pipelines (with pruning's wrappers and step callback where the config prunes),
  nothing else.

Reported per configuration: the medians and their ratio (kit / plain), and the kit trial's time split
into phases (exclusive times: a phase inside another counts once, in the inner one): set-up, data,
build and compile, training steps, validation, checkpoint, per-epoch model, final metrics, the rest.

    python -m benchmarks.trial_cost [--repeats 3] [--epochs 8] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import platform
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks import save

# Configurations of the default space: the fast end of its front (MLPs) and its accurate end (CNNs).
CONFIGS = {
    "mlp w160 b128": {"architecture": "mlp", "width": 160, "learning_rate": 4.8e-3, "batch_size": 128},
    "mlp w64 b32": {"architecture": "mlp", "width": 64, "learning_rate": 2e-3, "batch_size": 32},
    "mlp w133 b256 pruned": {"architecture": "mlp", "width": 133, "learning_rate": 2.7e-3, "batch_size": 256, "final_sparsity": 0.5},
    "cnn w32 b64": {"architecture": "cnn", "width": 32, "learning_rate": 2.2e-3, "batch_size": 64},
}
CONSTANTS = {"data_source": "bundled", "seed": 0}
# What the default study decides on: its objectives and its rungs' (see `spaces/mnist.py`).
NEEDED = frozenset({"val_accuracy", "train_time_s", "epoch"})


class PhaseClock:
    """Exclusive wall time per phase: functions wrapped with `phase(name)` charge their time to
    `name`, less the time of phases they call (which charge their own)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self._stack: list[list] = []  # [name, started, time of inner phases]

    def wrap(self, name: str, function: Callable) -> Callable:
        @functools.wraps(function)
        def timed(*args: Any, **kwargs: Any) -> Any:
            self._stack.append([name, time.perf_counter(), 0.0])
            try:
                return function(*args, **kwargs)
            finally:
                _, started, inner = self._stack.pop()
                spent = time.perf_counter() - started
                self.seconds[name] += spent - inner
                if self._stack:
                    self._stack[-1][2] += spent

        return timed


@contextlib.contextmanager
def phases(clock: PhaseClock):
    """Charge the kit's phases to `clock` while inside (the functions are put back after)."""
    from trainables import data
    from trainables import kit
    from trainables import metrics
    from trainables._keras import keras

    wrapped = [
        (kit.KerasTrainable, "_set_up", "set-up"),
        (kit, "_load_split", "data"),
        (data, "pipelines", "data"),
        (kit._Trial, "_build", "build and compile"),
        (metrics.EpochCheckpoint, "restore", "checkpoint"),
        (metrics.EpochCheckpoint, "save", "checkpoint"),
        (metrics, "save_model", "model saves"),
        (kit._Trial, "_measure", "final metrics"),
        (keras.Model, "evaluate", "validation"),
        (keras.Model, "fit", "fit (rest)"),
    ]
    originals = [(owner, attribute, getattr(owner, attribute)) for owner, attribute, _ in wrapped]
    for owner, attribute, name in wrapped:
        setattr(owner, attribute, clock.wrap(name, getattr(owner, attribute)))
    try:
        yield
    finally:
        for owner, attribute, original in originals:
            setattr(owner, attribute, original)


def kit_trial(config: dict[str, Any], epochs: int, clock: PhaseClock | None = None) -> tuple[float, float]:
    """(Wall seconds, the trial's own `train_time_s`) of one kit trial, as a study's worker runs it."""
    from trainables.contract import TrialContext
    from trainables.mnist import train

    with tempfile.TemporaryDirectory() as scratch:
        context = TrialContext(
            report=lambda metrics: None,
            model_dir=os.path.join(scratch, "model"),
            checkpoint_dir=os.path.join(scratch, "checkpoint"),
            cache_dir=os.path.join(scratch, "cache"),
            needed=NEEDED,
            epoch_models=True,
        )
        with phases(clock) if clock else contextlib.nullcontext():
            started = time.perf_counter()
            final = train({**CONSTANTS, **config, "epochs": epochs}, context)
            return time.perf_counter() - started, float(final["train_time_s"])


def plain_fit(config: dict[str, Any], epochs: int) -> float:
    """Wall seconds of build, compile and `fit(validation_data=...)` of the same model on the same
    pipelines (the data loaded and the session reset beforehand, untimed)."""
    from trainables import data
    from trainables import kit
    from trainables import pruning
    from trainables._keras import keras
    from trainables.mnist import Mnist
    from trainables.mnist import train

    merged = train.check_config({**CONSTANTS, **config, "epochs": epochs})
    task = Mnist()
    split = kit._load_split(task, merged)
    keras.backend.clear_session()
    keras.utils.set_random_seed(merged["seed"])
    train_ds, val_ds = data.pipelines(split, batch_size=int(merged["batch_size"]), augmentation=task.augmentation(merged), seed=merged["seed"])
    started = time.perf_counter()
    model = task.build_model(merged, split.x_train.shape[1:], split.num_classes)
    callbacks = []
    if merged["final_sparsity"] > 0:  # pruning is part of the model trained, not the kit's bookkeeping
        steps = -(-len(split.x_train) // int(merged["batch_size"]))
        model = pruning.apply_pruning(model, final_sparsity=float(merged["final_sparsity"]), steps_per_epoch=steps, epochs=epochs)
        callbacks = pruning.pruning_callbacks()
    model.compile(
        optimizer=kit.make_optimizer(merged, learning_rate=float(merged["learning_rate"]), decay_steps=1),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(train_ds, validation_data=val_ds, epochs=epochs, callbacks=callbacks, verbose=0)
    return time.perf_counter() - started


def measure(repeats: int, epochs: int) -> dict[str, Any]:
    from trainables.mnist import train

    train({**CONSTANTS, "epochs": 1, "train_examples": 256})  # warm the process: imports, data, first graphs
    results: dict[str, Any] = {}
    for name, config in CONFIGS.items():
        kit_s, plain_s, train_s = [], [], []
        for _ in range(repeats):  # alternated, so a slow spell of the machine hits both
            wall, own = kit_trial(config, epochs)
            kit_s.append(wall)
            train_s.append(own)
            plain_s.append(plain_fit(config, epochs))
        clock = PhaseClock()
        wall, own = kit_trial(config, epochs, clock)
        split = {phase: round(seconds, 3) for phase, seconds in clock.seconds.items()}
        split["training steps"] = round(own, 3)
        split["fit (rest)"] = round(clock.seconds["fit (rest)"] - own, 3)  # fit's own time less its steps
        split["other"] = round(wall - sum(clock.seconds.values()), 3)
        results[name] = {
            "config": config,
            "kit_s": kit_s,
            "plain_s": plain_s,
            "train_time_s": train_s,
            "ratio": statistics.median(kit_s) / statistics.median(plain_s),
            "phases_s": split,
            "profiled_wall_s": wall,
        }
        print(f"{name}: kit {statistics.median(kit_s):.2f} s, plain {statistics.median(plain_s):.2f} s, {results[name]['ratio']:.2f}x", flush=True)
    return results


PHASE_ORDER = ("set-up", "data", "build and compile", "training steps", "fit (rest)", "validation", "checkpoint", "model saves", "final metrics", "other")


def table(results: dict[str, Any], *, repeats: int, epochs: int) -> str:
    lines = [
        f"# A trial's own cost: the kit against plain `model.fit` ({epochs} epochs, bundled digits, 1 thread, medians of {repeats})",
        "",
        f"{platform.node()}, {os.cpu_count()} cores, Python {sys.version.split()[0]}, {time.strftime('%Y-%m-%d')}",
        "",
        "| configuration | kit s | plain fit s | kit / plain |",
        "|---|---|---|---|",
    ]
    for name, result in results.items():
        lines.append(f"| {name} | {statistics.median(result['kit_s']):.2f} | {statistics.median(result['plain_s']):.2f} | {result['ratio']:.2f}x |")
    lines += ["", "Where a kit trial's time goes (one profiled run, seconds, exclusive):", ""]
    lines.append("| configuration | " + " | ".join(PHASE_ORDER) + " | total |")
    lines.append("|---|" + "---|" * (len(PHASE_ORDER) + 1))
    for name, result in results.items():
        split = result["phases_s"]
        lines.append(f"| {name} | " + " | ".join(f"{split.get(p, 0.0):.2f}" for p in PHASE_ORDER) + f" | {result['profiled_wall_s']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--name", default="trial_cost")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from trainables._keras import tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    results = measure(args.repeats, args.epochs)
    report = {"machine": platform.node(), "cores": os.cpu_count(), "date": time.strftime("%Y-%m-%d"), "epochs": args.epochs, "repeats": args.repeats, "configs": results}
    args.out.mkdir(parents=True, exist_ok=True)
    save(args.out, args.name, report, table(results, repeats=args.repeats, epochs=args.epochs))


if __name__ == "__main__":
    main()
