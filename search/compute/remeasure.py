"""The front's own measurements, once the trials have ended: what its trials left out, and its
speed measured again alone, free of whatever ran beside each trial.

What a trial leaves out: the study tells each trial what it decides on (`TrialContext.needed`),
and a trainable may skip costly final metrics outside it (the Keras kit: the deployed TFLite
model's conversion and measurement). `measure_front` has the trainable measure them
(`train.finish`) for the front's trials only, before the front's models are registered.

During a study trials share the node, so a trial's speed depends on its neighbours and on the
machine's moment (BENCHMARKS.md, "Speed you can trust"). Once the trials have ended, each front
configuration is timed again, one at a time, on the now idle node, with the resources its trial
had (and pinned to free cores, like its trial). The front is then recomputed among them on those
figures; the study's own front (every full-budget trial, measured under one condition) stays as
it was, and both are recorded and shown. Both measurements of a front trial happen in one task:
one process start, one data load.

For a front over recipes, the recipes that answer the space's targets are trained again alone
(`retime_recipes`), each a few times, until the end of their epoch, and timed by the trainable's
own `train_time_s`: the figure a user would pick them by, with its range over the runs.

A trainable opts in by offering `train.remeasure(config, context) -> metrics` and naming what it
returns in `train.remeasured_metrics` (see `trainables.contract`); the phase runs when one of
those is an objective. `context.model_dir` is the trial's saved model, `context.cache_dir` the
study's cache (a distillation teacher). Multi-worker trials are not re-measured (a single process
would time a different thing).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any

from search.record.terminal import wrap
from trainables.contract import TrialContext
from trainables.contract import never

if TYPE_CHECKING:  # a trial process imports this module (`save_config`): it stays light
    from search.record.front import Front
    from search.record.front import Remeasured
    from search.space import SearchSpace

CONFIG_SUFFIX = ".config.json"  # beside each trial's model directory: the config it trained
TIMEOUT_S = 600.0  # per configuration


def save_config(model_dir: str | Path, config: Mapping[str, Any]) -> None:
    """Keep the config a trial trains beside its model directory, for `measure_front`; a config
    JSON cannot hold is not kept (its trial is then not re-measured)."""
    try:
        text = json.dumps(dict(config))
    except (TypeError, ValueError):
        return
    path = Path(str(model_dir) + CONFIG_SUFFIX)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def wanted(space: SearchSpace) -> list[str]:
    """The objectives the space's trainable can measure again (none: the phase does not run)."""
    offered = getattr(space.trainable, "remeasured_metrics", ())
    if not callable(getattr(space.trainable, "remeasure", None)) or space.workers_per_trial > 1:
        return []
    return [metric for metric in space.objectives if metric in offered]


def measure_front(
    front: Front,
    space: SearchSpace,
    runs: Any,
    *,
    cache_dir: Path,
    again: bool = True,
    progress: Callable[[str], None] = print,
    should_stop: Callable[[], bool] = never,
    key: str = "trial",
) -> Remeasured | None:
    """The front's own measurements: one Ray task per front trial, one at a time.

    Each task first has the trainable measure what its trial left out because the study did not
    decide on it (`train.finish`; the Keras kit's deployed TFLite model), then, when `again`,
    times the configuration again alone (`train.remeasure`). What `finish` measures is logged to
    the trial's run at its last epoch and written into `front.table` where it has the column.

    `key` names a front point: "trial", or "recipe" for a front over recipes, whose points are
    each measured on the model saved after its epoch (`finish` always runs for them: the
    trial's own final figures are its last epoch's).

    Returns the front ranked again on the figures measured alone, or None when nothing was
    measured again (no front, `again` false, or no objective the trainable measures again). A
    configuration whose measurement fails keeps its study figures and is named in the notes;
    once `should_stop()` is true (Ctrl-C), the rest are not measured.
    """
    points = front.points
    if points.empty:
        return None
    finishing = list(getattr(space.trainable, "finish_metrics", ())) if callable(getattr(space.trainable, "finish", None)) else []
    metrics = wanted(space) if again else []
    methods = {
        row[key]: [
            *(["finish"] if finishing and row["run_id"] and (key != "trial" or not set(finishing) <= set(runs.client.get_run(row["run_id"]).data.metrics)) else []),
            *(["remeasure"] if metrics else []),
        ]
        for _, row in points.iterrows()
    }
    if not any(methods.values()):
        return None
    started = time.time()
    if metrics:
        progress(wrap(f"Measuring the {len(points)} front configurations again, one at a time, alone on the node ({', '.join(metrics)})."))
    else:
        progress(wrap(f"Measuring what the front trials left out ({', '.join(finishing)})."))
    measured, notes = _measure(points, space, cache_dir, should_stop, methods, key)
    _record_finished(front, runs, {point: values["finish"] for point, values in measured.items() if "finish" in values}, key)
    if not metrics:
        for note in notes:
            progress(wrap(note))
        return None
    alone = {trial: values["remeasure"] for trial, values in measured.items() if "remeasure" in values}
    from search.record.front import rank_alone

    return rank_alone(front, space.objectives, metrics, alone, notes=notes, seconds=time.time() - started)


def _record_finished(front: Front, runs: Any, measured: dict[str, dict[str, float]], key: str = "trial") -> None:
    """What `train.finish` measured, into each point's run (at its epoch) and the front's table."""
    import pandas as pd

    for trial, values in measured.items():
        [row] = front.points[front.points[key] == trial].to_dict("records")
        step = int(row["epoch"]) if pd.notna(row.get("epoch")) else 0
        runs.log_metrics(row["run_id"], values, step=step)
        for metric, value in values.items():
            if metric in front.table:
                column = pd.to_numeric(front.table[metric], errors="coerce")  # no value was an object column
                front.table[metric] = column.mask(front.table[key] == trial, value)


def _measure(
    points: Any, space: SearchSpace, cache_dir: Path, should_stop: Callable[[], bool], methods: Mapping[str, list[str]], key: str = "trial"
) -> tuple[dict[str, dict[str, dict[str, float]]], list[str]]:
    """`train.<method>` for each of the methods each point's trial is given, in one Ray task
    per point with its trial's resources, one point at a time. Returns, by trial, what each
    method measured, and a note for each that could not measure."""
    import ray

    task = ray.remote(_measure_alone).options(num_cpus=space.cpus_per_trial, num_gpus=space.gpus_per_trial, max_retries=0)
    measured: dict[str, dict[str, dict[str, float]]] = {}
    notes: list[str] = []
    for _, row in points.iterrows():
        wanted_methods = methods.get(row[key], [])
        if should_stop():
            break
        if not wanted_methods:
            continue
        config_file = Path(row.get("config_file") or str(row["model_dir"]) + CONFIG_SUFFIX)
        if not config_file.exists():
            notes.append(f"{row[key]}: not measured (its config was not kept).")
            continue
        config = json.loads(config_file.read_text())
        reference = task.remote(
            space.trainable, wanted_methods, config, space.cpus_per_trial, space.gpu_memory_mb, str(row["model_dir"]), str(cache_dir)
        )
        try:
            results = ray.get(reference, timeout=TIMEOUT_S)
        except Exception as error:  # noqa: BLE001 - any failure leaves the study's figures standing
            ray.cancel(reference, force=True)
            results = {method: _reason(error) for method in wanted_methods}
        measured[row[key]] = {method: values for method, values in results.items() if isinstance(values, dict)}
        notes.extend(f"{row[key]}: not measured by {method} ({reason})." for method, reason in results.items() if isinstance(reason, str))
    return measured, notes


def _reason(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[-1] if text else ''}"


def _measure_alone(
    trainable: Any, methods: list[str], config: dict[str, Any], cpus: float, gpu_memory_mb: int | None, model_dir: str, cache_dir: str
) -> dict[str, dict[str, float] | str]:
    """The Ray task: `trainable.<method>` of one configuration for each method in turn, in a
    process set up and pinned like a trial's; what each measured, or why it could not."""
    from search.compute import devices

    devices.prepare_process(cpus, gpu_memory_mb)
    pinned = devices.pin_to_free_cores(cpus)
    results: dict[str, dict[str, float] | str] = {}
    try:
        for method in methods:
            try:
                measured = getattr(trainable, method)(config, TrialContext(model_dir=model_dir, cache_dir=cache_dir))
            except Exception as error:  # noqa: BLE001 - reported as a note; the next method still runs
                results[method] = _reason(error)
                continue
            results[method] = {key: float(value) for key, value in measured.items() if isinstance(value, (int, float))}
    finally:
        if pinned is not None:
            pinned.release()
    return results


RETIME_REPEATS = 3  # runs of each recipe trained again alone; their spread is shown beside the figure


def retime_recipes(
    points: Any,
    space: SearchSpace,
    runs: Any,
    *,
    cache_dir: Path,
    repeats: int = RETIME_REPEATS,
    progress: Callable[[str], None] = print,
    should_stop: Callable[[], bool] = never,
) -> dict[str, dict[str, float]]:
    """Train each recipe of `points` (rows with `recipe`, `epoch`, `run_id`, `config_file`)
    again, alone on the node, `repeats` times, and time it as its trial did: the trainable's
    `train_time_s` after the recipe's epoch (the trainable is told to stop once it has
    reported the last epoch wanted). Recipes of one trial (its configuration trained to
    different epochs) share their runs: each run trains to the latest of them and is read at
    each. Any trainable under the contract can be re-timed this way.

    Returns, by recipe, `train_time_s_alone` (the median of the runs) and its range over the
    runs (`train_time_s_alone_min`, `train_time_s_alone_max`, `retime_runs`), each logged to the
    trial's run at the recipe's epoch. A recipe whose runs fail keeps its study figure; once
    `should_stop()` is true (Ctrl-C) the rest are not re-timed.
    """
    import ray

    from trainables.contract import TRAIN_TIME_S

    unique = points.drop_duplicates("recipe")
    if unique.empty or space.workers_per_trial > 1:  # a single process would time something else
        return {}
    progress(wrap(f"Training the {len(unique)} recipes that answer the targets again, alone, {repeats} times each ({TRAIN_TIME_S})."))
    task = ray.remote(_retime_alone).options(num_cpus=space.cpus_per_trial, num_gpus=space.gpus_per_trial, max_retries=0)
    retimed: dict[str, dict[str, float]] = {}
    needed = space.needed_metrics
    for config_file, recipes in unique.groupby("config_file", sort=False):
        if should_stop() or not Path(config_file).exists():
            continue
        config = json.loads(Path(config_file).read_text())
        epochs = sorted({int(epoch) for epoch in recipes["epoch"]})
        reference = task.remote(space.trainable, config, epochs, repeats, needed, space.cpus_per_trial, space.gpu_memory_mb, str(cache_dir))
        try:
            seconds = ray.get(reference, timeout=TIMEOUT_S * repeats)
        except Exception as error:  # noqa: BLE001 - the study's figures stand
            ray.cancel(reference, force=True)
            progress(wrap(f"{', '.join(recipes['recipe'])}: not trained again ({_reason(error)})."))
            continue
        for _, row in recipes.iterrows():
            at = seconds.get(int(row["epoch"]))
            if not at:
                continue
            values = {
                f"{TRAIN_TIME_S}_alone": float(sorted(at)[len(at) // 2]),
                f"{TRAIN_TIME_S}_alone_min": float(min(at)),
                f"{TRAIN_TIME_S}_alone_max": float(max(at)),
                "retime_runs": float(len(at)),
            }
            runs.log_metrics(row["run_id"], values, step=int(row["epoch"]))
            retimed[row["recipe"]] = values
    return retimed


def _retime_alone(
    trainable: Any, config: dict[str, Any], epochs: list[int], repeats: int, needed: frozenset[str], cpus: float, gpu_memory_mb: int | None, cache_dir: str
) -> dict[int, list[float]]:
    """The Ray task: `repeats` runs of `config` until it has reported the last of `epochs`, in
    a process set up and pinned like a trial's; by epoch, the training time each run reported
    there."""
    from search.compute import devices
    from trainables.contract import EPOCH
    from trainables.contract import TRAIN_TIME_S

    devices.prepare_process(cpus, gpu_memory_mb)
    pinned = devices.pin_to_free_cores(cpus)
    last = max(epochs)
    seconds: dict[int, list[float]] = {epoch: [] for epoch in epochs}
    try:
        for _ in range(repeats):
            reports: list[dict[str, Any]] = []
            context = TrialContext(report=reports.append, should_stop=lambda: len(reports) >= last, cache_dir=cache_dir, needed=needed)
            trainable(config, context)
            for epoch in epochs:
                at = [r for r in reports if r.get(EPOCH) == epoch and isinstance(r.get(TRAIN_TIME_S), (int, float))]
                if at:
                    seconds[epoch].append(float(at[0][TRAIN_TIME_S]))
    finally:
        if pinned is not None:
            pinned.release()
    return seconds
