"""Distributed trials on a CPU machine: what replicas and workers cost and buy.

1. Replicas: the MNIST trainable (bundled digits, 3 epochs) in a fresh process per setting,
   under the default strategy (1 replica) and under `MirroredStrategy` over 2 logical CPU
   devices (`trainables.distribute.split_cpu(2)`), both at 64 examples per replica, and 1
   replica at 128 (the 2-replica run's global batch). Steady-state `epoch_time_s` is the median
   of epochs 2 and 3.
2. Workers: one trial of the same configuration through the launcher's pipeline
   (`search.study.run_study`, 2 CPUs per trial, 3 epochs, no early stopping) with 1 worker
   (trains in the Tune trial's process) and with 2 workers (a Ray Train `TensorflowTrainer`
   with `MultiWorkerMirroredStrategy`, 1 CPU each). Start-up is the time from the trial's
   MLflow run start to its first report, less the first epoch's training time.

    python -m benchmarks.distributed [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from benchmarks import save

ROOT = Path(__file__).parents[1]
EPOCHS = 3
MODELS = {
    "mlp": {"architecture": "mlp", "width": 128},
    "cnn": {"architecture": "cnn", "width": 32},
}
BASE = {"data_source": "bundled", "learning_rate": 2e-3, "augment": 0.0, "final_sparsity": 0.0, "seed": 0}

REPLICAS_CODE = """
import json
from trainables import distribute
if {replicas} > 1:
    distribute.split_cpu({replicas})
from trainables.contract import TrialContext
from trainables.mnist import train
reports = []
train({config}, TrialContext(report=reports.append))
print(json.dumps(reports))
"""

WORKERS_CODE = """
import json
from mlflow import MlflowClient
from search.space import load_space
from search.study import run_study
space = load_space({space!r}).replace(
    num_samples=1, max_epochs={epochs}, grace_period=1, scheduler="none", max_concurrent=1,
    cpus_per_trial=2, workers_per_trial={workers}, constants={constants!r},
)
result = run_study(space, results_dir={results!r}, experiment="bench-workers-{workers}", first_configs=[{params!r}])
client = MlflowClient(result.tracking_uri)
run = client.get_run(result.trials["run_id"].iloc[0])
history = {{m: client.get_metric_history(run.info.run_id, m) for m in ("val_accuracy", "train_time_s", "epoch_time_s")}}
print(json.dumps({{
    "start_ms": run.info.start_time, "end_ms": run.info.end_time,
    "first_report_ms": min(p.timestamp for p in history["val_accuracy"]),
    "train_time_s": [p.value for p in sorted(history["train_time_s"], key=lambda p: p.step)],
    "epoch_time_s": [p.value for p in sorted(history["epoch_time_s"], key=lambda p: p.step)],
    "strategy": run.data.tags.get("strategy"), "replicas": run.data.metrics.get("replicas"),
    "val_accuracy": run.data.metrics.get("val_accuracy"), "study_wall_s": result.wall_time_s,
}}))
"""


def _json_from(code: str) -> Any:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def replicas() -> list[dict[str, Any]]:
    rows = []
    for model, shape in MODELS.items():
        for count, batch in ((1, 64), (2, 64), (1, 128)):
            config = {**BASE, **shape, "batch_size": batch, "epochs": EPOCHS}
            reports = _json_from(REPLICAS_CODE.format(replicas=count, config=repr(config)))
            rows.append(
                {
                    "model": model,
                    "replicas": count,
                    "batch_per_replica": batch,
                    "global_batch": reports[0]["global_batch_size"],
                    "strategy": reports[0]["strategy"],
                    "epoch_time_s": statistics.median(r["epoch_time_s"] for r in reports[1:]),
                    "warmup_s": reports[0].get("warmup_s", 0.0),
                    "val_accuracy": reports[-1]["val_accuracy"],
                }
            )
    return rows


def workers(out: Path) -> list[dict[str, Any]]:
    rows = []
    params = {**{k: v for k, v in BASE.items() if k not in ("data_source", "seed")}, **MODELS["mlp"], "batch_size": 64}
    for count in (1, 2):
        found = _json_from(
            WORKERS_CODE.format(
                space=str(ROOT / "spaces/mnist.py"),
                epochs=EPOCHS,
                workers=count,
                constants={"data_source": "bundled", "seed": 0},
                results=str(out / "studies"),
                params=params,
            )
        )
        first_report_s = (found["first_report_ms"] - found["start_ms"]) / 1000
        rows.append(
            {
                "workers": count,
                "strategy": found["strategy"],
                "replicas": found["replicas"],
                "run_start_to_first_report_s": first_report_s,
                "first_epoch_train_s": found["train_time_s"][0],
                "startup_s": first_report_s - found["train_time_s"][0],
                "epoch_time_s": statistics.median(found["epoch_time_s"][1:]),
                "trial_wall_s": (found["end_ms"] - found["start_ms"]) / 1000,
                "study_wall_s": found["study_wall_s"],  # from Tune's start: worker processes included
                "val_accuracy": found["val_accuracy"],
            }
        )
    return rows


def table(report: dict[str, Any]) -> str:
    lines = [
        "Replicas (one process, 2 cores; steady-state epoch, median of epochs 2-3):",
        "",
        "| model | replicas | batch per replica | global batch | strategy | epoch_time_s | warm-up (s) | val_accuracy |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in report["replicas"]:
        lines.append(
            f"| {row['model']} | {row['replicas']} | {row['batch_per_replica']} | {row['global_batch']} | "
            f"{row['strategy']} | {row['epoch_time_s']:.3f} | {row['warmup_s']:.2f} | {row['val_accuracy']:.3f} |"
        )
    lines += [
        "",
        "Workers (one trial through the launcher, 2 CPUs, MLP width 128, 64 per replica):",
        "",
        "| workers | strategy | run start to first report (s) | first epoch training (s) | start-up (s) | epoch_time_s | trial run (s) | study, trials only (s) | val_accuracy |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in report["workers"]:
        lines.append(
            f"| {row['workers']} | {row['strategy']} | {row['run_start_to_first_report_s']:.1f} | "
            f"{row['first_epoch_train_s']:.1f} | {row['startup_s']:.1f} | {row['epoch_time_s']:.3f} | "
            f"{row['trial_wall_s']:.1f} | {row['study_wall_s']:.1f} | {row['val_accuracy']:.3f} |"
        )
    one, two = report["workers"]
    lines += [
        "",
        f"A 2-worker trial costs {two['startup_s'] - one['startup_s']:.1f} s more start-up than a 1-worker trial "
        f"(from its MLflow run's start; the 1-worker trial's process and TensorFlow import come before that), "
        f"and the study of one trial took {two['study_wall_s'] - one['study_wall_s']:.1f} s longer.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.distributed", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    options = parser.parse_args(argv)
    options.out.mkdir(parents=True, exist_ok=True)
    report = {"replicas": replicas(), "workers": workers(options.out)}
    save(options.out, "distributed", report, table(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
