"""Framework overhead: how much of the machine a study spends training, against a plain loop.

A fixed list of configurations (the MNIST trainable, bundled digits, 4 epochs each, no early
stopping) is trained twice:

- through the launcher's pipeline (`search.study.run_study`: Ray Tune, Optuna, MLflow), 2 at a
  time on 1 CPU each; ratio = sum of the trials' training time / (wall time x 2);
- in a plain Python loop at the same concurrency: 2 processes of 1 thread each (TensorFlow
  imported as they start, as a study's workers do), each taking the next configuration when it
  finishes one; ratio = sum of training time / (wall time x 2).

Training time is the trainable's `train_time_s` (the training phases of every epoch, graph
tracing included). It then breaks down where the rest of the time goes.

    python -m benchmarks.overhead [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks import save

ROOT = Path(__file__).parents[1]
EPOCHS = 4
CONFIGS = [
    {"architecture": "mlp", "width": 64, "learning_rate": 3e-3, "batch_size": 64, "augment": 0.0, "final_sparsity": 0.0},
    {"architecture": "mlp", "width": 256, "learning_rate": 1e-3, "batch_size": 128, "augment": 0.2, "final_sparsity": 0.5},
    {"architecture": "cnn", "width": 32, "learning_rate": 2e-3, "batch_size": 64, "augment": 0.0, "final_sparsity": 0.0},
    {"architecture": "mlp", "width": 32, "learning_rate": 5e-3, "batch_size": 32, "augment": 0.1, "final_sparsity": 0.3},
    {"architecture": "cnn", "width": 16, "learning_rate": 5e-3, "batch_size": 128, "augment": 0.3, "final_sparsity": 0.6},
    {"architecture": "mlp", "width": 128, "learning_rate": 1e-3, "batch_size": 256, "augment": 0.0, "final_sparsity": 0.2},
]
CONSTANTS = {"data_source": "bundled", "depth": 2, "seed": 0}


def _seconds_in_fresh_process(code: str) -> float:
    """Wall time of `code` in a new Python process (printed by the code itself)."""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    return float(done.stdout.strip().splitlines()[-1])


def startup_costs() -> dict[str, float]:
    """TensorFlow's import and the data's first load, each in a fresh process."""
    tf_import = _seconds_in_fresh_process(
        "import time; t = time.perf_counter(); import trainables._keras; print(time.perf_counter() - t)"
    )
    data = _seconds_in_fresh_process(
        "import trainables._keras, time; from trainables.data import load_mnist; "
        "t = time.perf_counter(); load_mnist(source='bundled'); print(time.perf_counter() - t)"
    )
    return {"tensorflow_import_s": tf_import, "data_load_s": data}


def through_launcher(out: Path) -> dict[str, Any]:
    from mlflow import MlflowClient

    from search.space import load_space
    from search.study import run_study

    space = load_space(ROOT / "spaces/mnist.py").replace(
        num_samples=len(CONFIGS), max_epochs=EPOCHS, grace_period=1, scheduler="none", constants=CONSTANTS
    )
    called = time.time()
    result = run_study(space, results_dir=out / "studies", experiment="bench-overhead", first_configs=CONFIGS)
    returned = time.time()
    table = result.trials
    client = MlflowClient(result.tracking_uri)
    in_runs = 0.0
    warmup = 0.0
    for run_id in table["run_id"]:
        run = client.get_run(run_id)
        in_runs += (run.info.end_time - run.info.start_time) / 1000
        warmup += run.data.metrics.get("warmup_s", 0.0)
    train = float(table["train_time_s"].sum())
    slots = result.wall_time_s * space.max_concurrent
    return {
        "trials": len(table),
        "front_size": int(table["on_front"].sum()),
        "finished": int((table["status"] == "finished").sum()),
        "concurrency": space.max_concurrent,
        "sum_train_time_s": train,
        "wall_time_s": result.wall_time_s,
        "ratio": train / slots,
        "setup_before_trials_s": result.started_at - called,  # Ray start, MLflow study run
        "after_trials_s": returned - called - (result.started_at - called) - result.wall_time_s,  # front, models
        "sum_trial_run_s": in_runs,  # from a trial's first MLflow record to its last
        "sum_warmup_s": warmup,  # graph tracing, inside train_time_s
        "slot_time_outside_runs_s": slots - in_runs,  # worker start, TF import, scheduling, idle tail
        "inside_runs_not_training_s": in_runs - train,  # data, model build, validation, final metrics, logging
    }


def _train_one(config: dict[str, Any]) -> dict[str, float]:
    from trainables.contract import TrialContext
    from trainables.mnist import train

    final = train({**CONSTANTS, **config, "epochs": EPOCHS}, TrialContext(report=lambda m: None))
    return {"train_time_s": final["train_time_s"], "warmup_s": final.get("warmup_s", 0.0)}


def _one_thread_worker() -> None:
    os.environ.update(TF_NUM_INTRAOP_THREADS="1", TF_NUM_INTEROP_THREADS="1", OMP_NUM_THREADS="1")
    import trainables._keras  # noqa: F401 - as a study's workers do before their first trial


def plain_loop(concurrency: int = 2) -> dict[str, Any]:
    """The same configurations in a plain loop at the launcher's concurrency: `concurrency`
    processes with one thread each, taking the next configuration as they finish one."""
    import multiprocessing

    start = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(concurrency, initializer=_one_thread_worker) as pool:
        finals = list(pool.imap_unordered(_train_one, CONFIGS, chunksize=1))
    wall = time.perf_counter() - start
    train_s = sum(final["train_time_s"] for final in finals)
    return {
        "trials": len(finals),
        "concurrency": concurrency,
        "sum_train_time_s": train_s,
        "wall_time_s": wall,
        "ratio": train_s / (wall * concurrency),
        "sum_warmup_s": sum(final["warmup_s"] for final in finals),
        "not_training_s": wall * concurrency - train_s,  # process start, TF import, data, build, validation, final metrics
    }


def table(report: dict[str, Any]) -> str:
    launcher, loop, costs = report["launcher"], report["loop"], report["startup"]
    return "\n".join(
        [
            "| path | trials | concurrency | sum of train_time_s | wall time (s) | ratio |",
            "|---|---|---|---|---|---|",
            f"| launcher (Ray Tune + Optuna + MLflow) | {launcher['trials']} | {launcher['concurrency']} | "
            f"{launcher['sum_train_time_s']:.1f} | {launcher['wall_time_s']:.1f} | **{launcher['ratio']:.2f}** |",
            f"| plain Python loop, {loop['concurrency']} processes of 1 thread | {loop['trials']} | {loop['concurrency']} | {loop['sum_train_time_s']:.1f} | "
            f"{loop['wall_time_s']:.1f} | **{loop['ratio']:.2f}** |",
            "",
            f"Launcher / plain loop: **{launcher['ratio'] / loop['ratio']:.2f}** of the plain loop's share of slot time spent training.",
            "",
            "Where the launcher's slot time (wall time x concurrency) goes:",
            "",
            "| part | seconds |",
            "|---|---|",
            f"| training (`train_time_s`), of which graph tracing (`warmup_s`) | {launcher['sum_train_time_s']:.1f}, {launcher['sum_warmup_s']:.1f} |",
            f"| inside trial runs, not training: data, model build, validation, final model metrics (TFLite only where the space needs it), result logging | {launcher['inside_runs_not_training_s']:.1f} |",
            f"| slot time outside trial runs: worker start and its TensorFlow import (`worker_imports`), scheduling, idle slot at the end | {launcher['slot_time_outside_runs_s']:.1f} |",
            f"| before the trials (not in the ratio): Ray start, MLflow study run | {launcher['setup_before_trials_s']:.1f} |",
            f"| after the trials (not in the ratio): the front's deployed models measured and its speed measured again alone ({launcher['front_size']} trials), Pareto front, model registry | {launcher['after_trials_s']:.1f} |",
            "",
            f"For scale, in a fresh process: importing TensorFlow takes {costs['tensorflow_import_s']:.1f} s, "
            f"loading the bundled digits {costs['data_load_s']:.2f} s. In the plain loop, "
            f"{loop['not_training_s']:.1f} s of {loop['wall_time_s'] * loop['concurrency']:.1f} s of slot time are not training.",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.overhead", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    options = parser.parse_args(argv)
    options.out.mkdir(parents=True, exist_ok=True)
    report = {"startup": startup_costs(), "launcher": through_launcher(options.out), "loop": plain_loop()}
    save(options.out, "overhead", report, table(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
