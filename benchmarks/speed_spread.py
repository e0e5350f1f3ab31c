"""Speed you can trust: how much a configuration's measured speed depends on what runs beside it.

One configuration (the MNIST trainable: CNN width 32, batch 64, 4 epochs, bundled digits) is
trained in a fresh process with one TensorFlow thread and pinned to a free core, as a 1-CPU
trial of a study is, under three conditions, `--repeats` times each:

- alone on the node;
- beside a second process training the same configuration (the same, pinned to the other core);
- beside a stream of MLP trainings (1 thread each, one after the other, as long as it runs).

Each run gives the median over epochs 2-4 of three figures the trainable reports: the epoch's
plain wall time (`epoch_wall_s`, what `epoch_time_s` used to be), the robust steady-state figure
(`epoch_time_s`, median step time x steps) and its CPU-time companion (`epoch_cpu_s`). After every
run the configuration is also measured again alone, in a fresh process, the way a study measures
its front once the trials end (`KerasTrainable.remeasure`, 30 steps of the last epoch). The host's
steal time (`/proc/stat`) is read around each run.

    python -m benchmarks.speed_spread [--repeats 5] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks import save

ROOT = Path(__file__).parents[1]
CONFIG = {"architecture": "cnn", "width": 32, "batch_size": 64, "epochs": 4, "data_source": "bundled"}
BESIDE_MLP = {"architecture": "mlp", "width": 32, "batch_size": 64, "epochs": 4, "data_source": "bundled"}
FIGURES = ("epoch_wall_s", "epoch_time_s", "epoch_cpu_s")
ONE_THREAD = {"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1", "OMP_NUM_THREADS": "1"}


def worker(kind: str) -> None:
    """In a child process: train (`train`), train the MLP (`mlp`) or measure again (`remeasure`);
    print the figures as JSON."""
    from search.compute import devices

    claim = devices.pin_to_free_cores(1)
    from trainables.contract import TrialContext
    from trainables.mnist import train

    result: dict[str, Any] = {"cores": claim.cores if claim else None}
    if kind == "remeasure":
        result["alone"] = train.remeasure(CONFIG, TrialContext())
    else:
        reports: list[dict[str, Any]] = []
        train(BESIDE_MLP if kind == "mlp" else CONFIG, TrialContext(report=reports.append))
        result["epochs"] = [{figure: report[figure] for figure in FIGURES} for report in reports[1:]]
    print(json.dumps(result))


def _child(kind: str) -> subprocess.Popen:
    env = {**os.environ, **ONE_THREAD, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONWARNINGS": "ignore"}
    return subprocess.Popen(
        [sys.executable, "-m", "benchmarks.speed_spread", "--worker", kind],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT, env=env,
    )  # fmt: skip


def _result(process: subprocess.Popen) -> dict[str, Any]:
    out, _ = process.communicate()
    if process.returncode:
        raise RuntimeError(f"a benchmark process failed with exit code {process.returncode}")
    return json.loads(out.strip().splitlines()[-1])


def _cpu_ticks() -> tuple[int, int]:
    """(steal, total) jiffies of the host's CPUs so far."""
    fields = [int(value) for value in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return fields[7], sum(fields)


def one_run(condition: str) -> dict[str, Any]:
    """Train the configuration once under `condition`, then measure it again alone."""
    steal_before, total_before = _cpu_ticks()
    target = _child("train")
    neighbours: list[subprocess.Popen] = []
    if condition == "beside a CNN":
        neighbours.append(_child("train"))
    while condition == "beside an MLP" and target.poll() is None:
        neighbour = _child("mlp")
        while neighbour.poll() is None and target.poll() is None:
            time.sleep(0.1)
        neighbour.kill() if neighbour.poll() is None else None
        neighbour.wait()
    trained = _result(target)
    for neighbour in neighbours:
        _result(neighbour)
    steal, total = _cpu_ticks()
    again = _result(_child("remeasure"))
    run = {
        "condition": condition,
        "cores": trained["cores"],
        **{figure: statistics.median(epoch[figure] for epoch in trained["epochs"]) for figure in FIGURES},
        "remeasured_epoch_time_s": again["alone"]["epoch_time_s"],
        "steal_share": (steal - steal_before) / max(1, total - total_before),
    }
    print(json.dumps(run), flush=True)
    return run


def table(runs: list[dict[str, Any]]) -> str:
    alone = [run for run in runs if run["condition"] == "alone"]
    conditions = list(dict.fromkeys(run["condition"] for run in runs))
    rows = [*FIGURES, "remeasured_epoch_time_s"]
    labels = {
        "epoch_wall_s": "wall time during the study (before)",
        "epoch_time_s": "robust `epoch_time_s` during the study",
        "epoch_cpu_s": "CPU time `epoch_cpu_s` during the study",
        "remeasured_epoch_time_s": "front measured again alone (after)",
    }
    lines = [
        f"CNN w32 b64, 4 epochs, bundled digits, 1 thread, pinned; {len(alone)} runs per condition; "
        "median of epochs 2-4 per run. Cells: the median run, and in brackets the range of runs, "
        "relative to the median run alone of the same figure.",
        "",
        "| figure | median alone (s) | " + " | ".join(conditions) + " | all runs |",
        "|---|---|" + "---|" * (len(conditions) + 1),
    ]
    for figure in rows:
        reference = statistics.median(run[figure] for run in alone)
        cells = []
        for condition in [*conditions, None]:
            values = [run[figure] / reference - 1 for run in runs if condition in (None, run["condition"])]
            cells.append(f"{statistics.median(values):+.0%} ({min(values):+.0%}..{max(values):+.0%})")
        lines.append(f"| {labels[figure]} | {reference:.3f} | " + " | ".join(cells) + " |")
    steal = max(run["steal_share"] for run in runs)
    lines += ["", f"Host steal time during the runs: at most {steal:.1%} of CPU time."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--worker", choices=("train", "mlp", "remeasure"), help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.worker:
        worker(options.worker)
        return 0
    runs = [one_run(condition) for _ in range(options.repeats) for condition in ("alone", "beside a CNN", "beside an MLP")]
    report = {
        "machine": f"{platform.node()} {os.cpu_count()} CPUs {platform.processor() or platform.machine()}",
        "date": time.strftime("%Y-%m-%d"),
        "config": CONFIG,
        "runs": runs,
    }
    save(options.out, "speed_spread", report, "## Speed spread (`python -m benchmarks.speed_spread`)\n\n" + table(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
