"""Record real learning curves of a space's trainable, for the simulated-time benchmarks.

Draws configurations at random from a space file (Optuna's RandomSampler over the space's own
`suggest`, seeded), trains each one for the space's `max_epochs` epochs without early stopping,
and stores every epoch's report (`val_accuracy`, `epoch_time_s`, ...) together with the wall
time between reports, so a simulated study can replay a trial epoch by epoch on a simulated
clock. Trials run the way a default study runs them: `--workers` processes side by side, one
TensorFlow thread each.

    python -m benchmarks.learning_curves spaces/mnist.py --configs 320 \
        --set data_source=bundled --out benchmarks/data/mnist_curves.json.gz

Progress goes to `<out>.partial.jsonl` as each configuration ends; the compressed table is
written when every configuration is in, or at once with `--write-only`. Run again with the same
arguments, the recorder skips what the table and the partial file hold, so an interrupted or
partial recording carries on where it stopped.
"""

from __future__ import annotations

import argparse
import gzip
import json
import multiprocessing
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).parents[1]
# Epoch metrics kept per epoch; final metrics kept from the last report.
EPOCH_KEYS = ("val_accuracy", "val_loss", "accuracy", "epoch_time_s", "train_time_s", "examples_per_s")
FINAL_KEYS = ("params", "nonzero_params", "model_bytes_gzip", "tflite_bytes", "inference_ms", "warmup_s")


def sample_configs(space_file: Path, count: int, seed: int) -> list[dict[str, Any]]:
    """`count` configurations drawn at random from the space (searched parameters only)."""
    import optuna

    from search.space import load_space

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = load_space(space_file)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    configs = []
    for _ in range(count):
        trial = study.ask()
        space.suggest(trial)
        configs.append(dict(trial.params))
        study.tell(trial, state=optuna.trial.TrialState.FAIL)  # nothing learned; just draws
    return configs


def _init_worker(threads: int) -> None:
    # Read when TensorFlow is imported: the same thread pools a trial with one CPU gets.
    for name in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS"):
        os.environ[name] = str(threads)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _record_one(job: tuple[str, dict[str, Any], int, dict[str, Any]]) -> dict[str, Any]:
    space_file, constants, index, params = job
    from search.space import load_space
    from trainables.contract import TrialContext

    space = load_space(space_file)
    config = {**space.trial_constants, **constants, **params}
    epochs: list[dict[str, Any]] = []
    started = time.perf_counter()
    last = [started]

    def report(metrics: dict[str, Any]) -> None:
        now = time.perf_counter()
        row = {key: metrics[key] for key in EPOCH_KEYS if key in metrics}
        row["wall_s"] = now - last[0]  # since the previous report (or the trial's start)
        epochs.append(row)
        last[0] = now
        final.update({key: metrics[key] for key in FINAL_KEYS if key in metrics})

    final: dict[str, Any] = {}
    error = None
    try:
        space.trainable(config, TrialContext(report=report))
    except Exception as exc:  # a diverged configuration is a row too: the searcher sees it fail
        error = f"{type(exc).__name__}: {exc}"
    return {
        "index": index,
        "params": params,
        "epochs": epochs,
        "final": final,
        "total_s": time.perf_counter() - started,
        "error": error,
    }


def record(
    space_file: Path, count: int, seed: int, workers: int, out: Path, constants: dict[str, Any], train: bool = True
) -> Path:
    """Record the configurations not yet in `out` (or its `.partial.jsonl`), then write `out`."""
    configs = sample_configs(space_file, count, seed)
    partial = out.with_name(out.name + ".partial.jsonl")
    done: dict[int, dict[str, Any]] = {}
    if out.exists():
        with gzip.open(out, "rt") as file:
            done.update({row["index"]: row for row in json.load(file)["rows"]})
    if partial.exists():
        for line in partial.read_text().splitlines():
            row = json.loads(line)
            done[row["index"]] = row
    todo = [(str(space_file), constants, i, c) for i, c in enumerate(configs) if i not in done]
    print(f"{len(done)} of {count} configurations recorded; {len(todo)} to go on {workers} workers", flush=True)
    if train and todo:
        _train_all(todo, workers, partial, done, count)
    return _write_table(space_file, seed, workers, constants, count, done, out, partial)


def _train_all(todo: list[Any], workers: int, partial: Path, done: dict[int, Any], count: int) -> None:
    started = time.time()
    context = multiprocessing.get_context("spawn")
    with context.Pool(workers, initializer=_init_worker, initargs=(1,)) as pool, partial.open("a") as sink:
        for row in pool.imap_unordered(_record_one, todo):
            sink.write(json.dumps(row) + "\n")
            sink.flush()
            done[row["index"]] = row
            last = row["epochs"][-1] if row["epochs"] else {}
            print(
                f"[{time.time() - started:6.0f} s] {len(done)}/{count} #{row['index']} "
                f"{row['params']} -> val_accuracy={last.get('val_accuracy')} "
                f"epoch_time_s={last.get('epoch_time_s')} ({row['total_s']:.1f} s)"
                f"{' ' + row['error'] if row['error'] else ''}",
                flush=True,
            )


def _write_table(
    space_file: Path,
    seed: int,
    workers: int,
    constants: dict[str, Any],
    count: int,
    done: dict[int, Any],
    out: Path,
    partial: Path,
) -> Path:
    from search.space import load_space

    space = load_space(space_file)
    table = {
        "space_file": str(space_file.relative_to(ROOT) if space_file.is_absolute() else space_file),
        "space": space.name,
        "objectives": dict(space.objectives),
        "params": json.loads(space.describe()),
        "constants": {**space.trial_constants, **constants},
        "max_epochs": space.max_epochs,
        "sampled_with": f"optuna RandomSampler(seed={seed})",
        "configs_planned": count,
        "workers": workers,
        "threads_per_worker": 1,
        "machine": f"{os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}",
        "recorded": time.strftime("%Y-%m-%d"),
        "rows": [done[i] for i in sorted(done)],
    }
    with gzip.open(out, "wt") as sink:
        json.dump(table, sink)
    partial.unlink(missing_ok=True)
    print(f"Wrote {out} ({out.stat().st_size / 1e6:.2f} MB, {len(table['rows'])} of {count} configurations)")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.learning_curves", description=__doc__.split("\n")[0])
    parser.add_argument("space_file", type=Path)
    parser.add_argument("--configs", type=int, default=320)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--write-only", action="store_true", help="write the table from what is recorded; train nothing")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a constant (JSON value)")
    options = parser.parse_args(argv)
    constants = {}
    for item in options.set:
        key, _, value = item.partition("=")
        try:
            constants[key] = json.loads(value)
        except json.JSONDecodeError:
            constants[key] = value
    options.out.parent.mkdir(parents=True, exist_ok=True)
    record(
        options.space_file.resolve(),
        options.configs,
        options.seed,
        options.workers,
        options.out,
        constants,
        train=not options.write_only,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
