"""How the study's bookkeeping grows with its size: 100, 250 and 500 trials of a 0.2 s trainable.

The pure-Python trainable (`benchmarks.pure_python`, 4 epochs of 0.05 s), 2 at a time, TPE, no early
stopping, each size a whole `python -m search.launch` process with a fresh results directory.
Per size: whole-process and study wall time, the overhead per trial (slot time per trial beyond
its 0.2 s), the MLflow store's size, how long one metric write to it takes once it holds the
study, and how long reading every trial back takes (what the end of the study does).

    python -m benchmarks.scaling [--sizes 100 250 500] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import save
from benchmarks.pure_python import space_file

ROOT = Path(__file__).parents[1]
TRIAL_S = 0.2


def one_size(trials: int, scratch: Path) -> dict[str, Any]:
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    from search.record.results import trials_frame

    space = scratch / "space.py"
    space.write_text(space_file("scaling", trials=trials, epochs=4, epoch_s=TRIAL_S / 4))
    results = scratch / "results"
    started = time.time()
    done = subprocess.run(
        [sys.executable, "-m", "search.launch", str(space), "--results-dir", str(results)],
        capture_output=True, text=True, cwd=scratch, env={**__import__("os").environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    process_s = time.time() - started
    if done.returncode:
        raise RuntimeError(done.stderr[-3000:])
    store = results / "mlflow.db"
    client = MlflowClient(f"sqlite:///{store}")
    experiment = client.get_experiment_by_name("scaling")
    [study] = client.search_runs([experiment.experiment_id], "tags.role = 'study'")
    wall = study.data.metrics["wall_time_s"]
    started_read = time.perf_counter()
    table = trials_frame(client, experiment.experiment_id, study.info.run_id)
    read_s = time.perf_counter() - started_read
    run_id = table["run_id"].iloc[-1]
    writes = []
    for step in range(20):
        begin = time.perf_counter()
        client.log_batch(run_id, metrics=[Metric("probe", 1.0, int(time.time() * 1000), step)])
        writes.append(time.perf_counter() - begin)
    return {
        "trials": trials,
        "process_s": process_s,
        "study_wall_s": wall,
        "overhead_per_trial_s": wall * 2 / trials - TRIAL_S,
        "store_mb": store.stat().st_size / 1e6,
        "metric_write_ms": 1000 * statistics.median(writes),
        "read_all_trials_s": read_s,
    }


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        f"Pure-Python trainable, {TRIAL_S} s per trial (4 epochs), 2 at a time, TPE, no early stopping; one whole launcher process per size.",
        "",
        "| trials | whole process (s) | study (s) | overhead per trial (s) | MLflow store (MB) | one metric write (ms) | read all trials back (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['trials']} | {row['process_s']:.1f} | {row['study_wall_s']:.1f} | {row['overhead_per_trial_s']:.3f} | "
            f"{row['store_mb']:.1f} | {row['metric_write_ms']:.1f} | {row['read_all_trials_s']:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scaling", description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 250, 500])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    options = parser.parse_args(argv)
    options.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for trials in options.sizes:
        with tempfile.TemporaryDirectory() as scratch:
            rows.append(one_size(trials, Path(scratch)))
        print(rows[-1], flush=True)
    save(options.out, "scaling", {"date": time.strftime("%Y-%m-%d"), "rows": rows}, table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
