"""A trial's own cost: the kit's trial against plain `model.fit` of the same model, and where the rest goes.

For a few configurations of the default space (`spaces/mnist.py`, bundled digits, 8 epochs, one
process, 1 thread), alternated `--repeats` times:

- **kit**: `trainables.mnist.train` called as a study's worker calls it: with checkpoint and model
  directories, per-epoch models (a study over recipes asks for them) and the metrics the default
  study decides on (`needed`);
- **plain**: the task's `build_model`, `compile` and `fit(validation_data=...)` of the same model on
  the same `tf.data` pipelines (with pruning's wrappers and step callback where the config prunes),
  nothing else, the way `fit` is usually called: the training dataset as is, so `fit` makes it a
  new iterator every epoch;
- **plain, one iterator**: the same, the training dataset as the kit fits it (`data.one_fit`:
  repeated, an epoch's steps given, autotuning off): what the kit's bookkeeping alone costs.

Reported per configuration: the medians and their ratios (kit / plain), and the kit trial's time split
into phases (exclusive times: a phase inside another counts once, in the inner one): set-up, data,
build and compile, training steps, validation, checkpoint, per-epoch model, final metrics, the rest.

With `--study`, through a study instead: the default study (`spaces/mnist.py`, bundled digits)
through the launcher, then each of its trials' configurations fitted plainly, in this process, for
the epochs its trial trained. Reported: the sum of the trials' slot times (their MLflow runs, from
start to end: what a trial holds its CPU for) over the sum of those plain fits, and over the sum of
the trials' own `train_time_s`. The trials ran two at a time; the plain fits run once alone (one
at a time, in this process) and two at a time (one pinned process each), as the trials ran, both
ways (as is, and one iterator).

    python -m benchmarks.trial_cost [--repeats 3] [--epochs 8] [--out benchmarks/results]
    python -m benchmarks.trial_cost --study [--out benchmarks/results]
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

ROOT = Path(__file__).parents[1]

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
        (metrics, "save_weights", "model saves"),
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


def plain_fit(config: dict[str, Any], epochs: int, one_iterator: bool = False) -> float:
    """Wall seconds of build, compile and `fit(validation_data=...)` of the same model on the same
    pipelines (the data loaded and the session reset beforehand, untimed); with `one_iterator`,
    the training dataset as the kit fits it (`data.one_fit`)."""
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
    steps = -(-len(split.x_train) // int(merged["batch_size"]))
    if merged["final_sparsity"] > 0:  # pruning is part of the model trained, not the kit's bookkeeping
        model = pruning.apply_pruning(model, final_sparsity=float(merged["final_sparsity"]), steps_per_epoch=steps, epochs=epochs)
        callbacks = pruning.pruning_callbacks()
    model.compile(
        optimizer=kit.make_optimizer(merged, learning_rate=float(merged["learning_rate"]), decay_steps=1),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    if one_iterator:
        train_ds = data.one_fit(train_ds, epochs)
    model.fit(
        train_ds, steps_per_epoch=steps if one_iterator else None, validation_data=val_ds, epochs=epochs, callbacks=callbacks, verbose=0
    )
    return time.perf_counter() - started


def measure(repeats: int, epochs: int) -> dict[str, Any]:
    from trainables.mnist import train

    train({**CONSTANTS, "epochs": 1, "train_examples": 256})  # warm the process: imports, data, first graphs
    results: dict[str, Any] = {}
    for name, config in CONFIGS.items():
        kit_s, plain_s, once_s, train_s = [], [], [], []
        for _ in range(repeats):  # alternated, so a slow spell of the machine hits both
            wall, own = kit_trial(config, epochs)
            kit_s.append(wall)
            train_s.append(own)
            plain_s.append(plain_fit(config, epochs))
            once_s.append(plain_fit(config, epochs, one_iterator=True))
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
            "plain_one_iterator_s": once_s,
            "train_time_s": train_s,
            "ratio": statistics.median(kit_s) / statistics.median(plain_s),
            "ratio_one_iterator": statistics.median(kit_s) / statistics.median(once_s),
            "phases_s": split,
            "profiled_wall_s": wall,
        }
        print(
            f"{name}: kit {statistics.median(kit_s):.2f} s, plain {statistics.median(plain_s):.2f} s ({results[name]['ratio']:.2f}x), "
            f"one iterator {statistics.median(once_s):.2f} s ({results[name]['ratio_one_iterator']:.2f}x)",
            flush=True,
        )
    return results


PHASE_ORDER = ("set-up", "data", "build and compile", "training steps", "fit (rest)", "validation", "checkpoint", "model saves", "final metrics", "other")


def table(results: dict[str, Any], *, repeats: int, epochs: int) -> str:
    lines = [
        f"# A trial's own cost: the kit against plain `model.fit` ({epochs} epochs, bundled digits, 1 thread, medians of {repeats})",
        "",
        f"{platform.node()}, {os.cpu_count()} cores, Python {sys.version.split()[0]}, {time.strftime('%Y-%m-%d')}",
        "",
        "| configuration | kit s | plain fit s | kit / plain | plain fit, one iterator s | kit / plain, one iterator |",
        "|---|---|---|---|---|---|",
    ]
    for name, result in results.items():
        lines.append(
            f"| {name} | {statistics.median(result['kit_s']):.2f} | {statistics.median(result['plain_s']):.2f} | {result['ratio']:.2f}x "
            f"| {statistics.median(result['plain_one_iterator_s']):.2f} | {result['ratio_one_iterator']:.2f}x |"
        )
    lines += ["", "Where a kit trial's time goes (one profiled run, seconds, exclusive):", ""]
    lines.append("| configuration | " + " | ".join(PHASE_ORDER) + " | total |")
    lines.append("|---|" + "---|" * (len(PHASE_ORDER) + 1))
    for name, result in results.items():
        split = result["phases_s"]
        lines.append(f"| {name} | " + " | ".join(f"{split.get(p, 0.0):.2f}" for p in PHASE_ORDER) + f" | {result['profiled_wall_s']:.2f} |")
    return "\n".join(lines)


def through_a_study(scratch: Path, space_file: Path) -> dict[str, Any]:
    """The study through the launcher, then its trials' configurations fitted plainly."""
    from mlflow import MlflowClient

    from benchmarks.framework_cost import parameter
    from benchmarks.framework_cost import run_command
    from search.space import load_space

    results = scratch / "results"
    launcher_s, _ = run_command([sys.executable, "-m", "search.launch", str(space_file), "--results-dir", str(results)], scratch)
    client = MlflowClient(f"sqlite:///{results / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(load_space(space_file).name)
    trials = []
    for run in client.search_runs([experiment.experiment_id]):
        metrics = run.data.metrics
        if "mlflow.parentRunId" not in run.data.tags or "epoch" not in metrics or run.info.end_time is None:
            continue
        reported = sorted(point.timestamp for point in client.get_metric_history(run.info.run_id, "epoch"))
        walls = [point.value for point in sorted(client.get_metric_history(run.info.run_id, "epoch_wall_s"), key=lambda point: point.step)]
        trials.append(
            {
                # The slot in four: to its first report (less that epoch's training), each later
                # epoch's time beyond its training (validation, saves, report), training, after its last.
                "start_s": (reported[0] - run.info.start_time) / 1000 - first_epoch_train_s(client, run.info.run_id),
                "between_s": sum((b - a) / 1000 - wall for a, b, wall in zip(reported, reported[1:], walls[1:])),
                "end_s": (run.info.end_time - reported[-1]) / 1000,
                "trial": run.info.run_name,
                "config": {key: parameter(value) for key, value in run.data.params.items()},
                "epochs": int(metrics["epoch"]),
                "slot_s": (run.info.end_time - run.info.start_time) / 1000,
                "train_time_s": metrics.get("train_time_s", float("nan")),
            }
        )
    trials.sort(key=lambda t: t["trial"])
    for trial in trials:
        trial["plain_s"] = plain_fit(trial["config"], trial["epochs"])
        print(f"{trial['trial']}: {trial['epochs']} epochs, slot {trial['slot_s']:.2f} s, plain fit {trial['plain_s']:.2f} s", flush=True)
    for key, once in (("plain_side_by_side_s", False), ("plain_one_iterator_side_by_side_s", True)):
        fits = [(t["config"], t["epochs"], once) for t in trials]
        for trial, seconds in zip(trials, plain_fits_side_by_side(fits, processes=STUDY_CONCURRENCY)):
            trial[key] = seconds
    return {"launcher_s": launcher_s, "trials": trials}


STUDY_CONCURRENCY = 2  # the default study's `max_concurrent`, one CPU each


def plain_fits_side_by_side(fits: list[tuple[dict[str, Any], int, bool]], *, processes: int) -> list[float]:
    """`plain_fit` of each (config, epochs, one_iterator), `processes` at a time as the study ran its trials: one
    process each, pinned to its own core, one TensorFlow thread, warmed first (untimed)."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    with context.Pool(processes, initializer=_plain_worker, initargs=(context.Value("i", 0),)) as pool:
        return pool.starmap(plain_fit, fits, chunksize=1)


def _plain_worker(started: Any) -> None:
    with started.get_lock():
        core, started.value = started.value, started.value + 1
    os.sched_setaffinity(0, {core % (os.cpu_count() or 1)})  # before TensorFlow starts its threads
    os.environ["OMP_NUM_THREADS"] = "1"
    from trainables._keras import tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    plain_fit({"architecture": "mlp", "width": 16}, 1)  # imports, data, first graphs


def starts_row(trials: list[dict[str, Any]]) -> str:
    ordered = sorted(trials, key=lambda t: t["trial"])
    start, end = sum(t["start_s"] for t in trials), sum(t["end_s"] for t in trials)
    between, training = sum(t["between_s"] for t in trials), sum(t["train_time_s"] for t in trials)
    firsts = ", ".join(f"{t['start_s']:.1f}" for t in ordered[:STUDY_CONCURRENCY])
    others = statistics.median(t["start_s"] for t in ordered[STUDY_CONCURRENCY:])
    epochs = sum(t["epochs"] - 1 for t in trials)
    return f"| {start:.1f} | {training:.1f} | {between:.1f} ({1000 * between / max(epochs, 1):.0f} ms x {epochs}) | {end:.1f} | {firsts} | {others:.2f} |"


def first_epoch_train_s(client: Any, run_id: str) -> float:
    history = sorted(client.get_metric_history(run_id, "train_time_s"), key=lambda point: point.step)
    return history[0].value if history else 0.0


def study_table(result: dict[str, Any]) -> str:
    trials = result["trials"]
    slot, plain = sum(t["slot_s"] for t in trials), sum(t["plain_s"] for t in trials)
    beside = sum(t["plain_side_by_side_s"] for t in trials)
    once = sum(t["plain_one_iterator_side_by_side_s"] for t in trials)
    own = sum(t["train_time_s"] for t in trials)
    return "\n".join(
        [
            "# A trial's own cost through a study: the default study's trial slots against plain `model.fit` of their configurations",
            "",
            f"{platform.node()}, {os.cpu_count()} cores, Python {sys.version.split()[0]}, {time.strftime('%Y-%m-%d')}",
            "",
            f"Plain fits alone (one process, one at a time) and {STUDY_CONCURRENCY} at a time as the study ran its trials "
            "(one pinned process each); as `fit` is usually called (a new iterator every epoch), and with one iterator "
            "for the whole fit, as the kit fits.",
            "",
            "| trials | epochs | launcher s | Σ slot s | Σ train_time_s | Σ plain fit alone s | Σ plain fit side by side s "
            "| Σ plain fit side by side, one iterator s | slot / plain alone | slot / plain side by side "
            "| slot / plain side by side, one iterator | slot / train_time_s |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
            f"| {len(trials)} | {sum(t['epochs'] for t in trials)} | {result['launcher_s']:.1f} | {slot:.1f} | {own:.1f} | {plain:.1f} "
            f"| {beside:.1f} | {once:.1f} | {slot / plain:.2f}x | {slot / beside:.2f}x | {slot / once:.2f}x | {slot / own:.2f}x |",
            "",
            "Of the slots (s): to the first report less the first epoch's training (worker start, imports, data, model, "
            "the first validation), the epochs' training, each later epoch's time beyond its training (validation, "
            "saves, report), after the last report:",
            "",
            "| Σ start | Σ training | Σ beyond training, later epochs | Σ end | first trials' start (worker start) | median start of the others |",
            "|---|---|---|---|---|---|",
            starts_row(trials),
        ]
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--name", default=None, help="of the result files (default: trial_cost, or trial_cost_study)")
    parser.add_argument("--study", action="store_true", help="through the default study instead (about 5 minutes)")
    parser.add_argument("--space", type=Path, default=ROOT / "spaces" / "mnist.py", help="the study's space file (--study)")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from trainables._keras import tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.study:
        with tempfile.TemporaryDirectory() as scratch:
            result = through_a_study(Path(scratch), args.space)
        report = {"machine": platform.node(), "cores": os.cpu_count(), "date": time.strftime("%Y-%m-%d"), "space": str(args.space), **result}
        save(args.out, args.name or "trial_cost_study", report, study_table(result))
        return
    results = measure(args.repeats, args.epochs)
    report = {"machine": platform.node(), "cores": os.cpu_count(), "date": time.strftime("%Y-%m-%d"), "epochs": args.epochs, "repeats": args.repeats, "configs": results}
    save(args.out, args.name or "trial_cost", report, table(results, repeats=args.repeats, epochs=args.epochs))


if __name__ == "__main__":
    main()
