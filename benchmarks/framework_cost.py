"""What the framework costs a whole study, against plain Ray Tune on the same function.

A pure-Python trainable (`benchmarks.pure_python`: 9 epochs of 0.05 s, no TensorFlow), 20 trials,
2 at a time, random search, no early stopping, run as whole processes side by side (interleaved,
`--repeats` times):

- the launcher: `python -m search.launch SPACE` (Ray Tune + Optuna + MLflow, the front at the end);
- plain Ray Tune: `tune.Tuner` on the same function, the same resources, random search.

Reported: each path's whole-process time (median), their ratio, and the time from launch to the
first trial result.

    python -m benchmarks.framework_cost [--repeats 3] [--trials 20] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import save
from benchmarks.pure_python import EPOCH_S
from benchmarks.pure_python import EPOCHS

ROOT = Path(__file__).parents[1]
SPACE = """\
from benchmarks.pure_python import train
from search.space import Float, SearchSpace

SPACE = SearchSpace(
    name="framework-cost",
    trainable=train,
    params={{"x": Float(0.0, 1.0)}},
    objectives={{"score": "max", "cost": "min"}},
    num_samples={trials},
    max_epochs={epochs},
    max_concurrent=2,
    cpus_per_trial=1,
    scheduler="none",
    searcher="random",
)
"""


def plain_tune(trials: int, storage: str) -> None:
    """In a child process: the same study in plain Ray Tune; prints seconds to the first result."""
    started = float(os.environ["BENCH_STARTED"])
    import ray
    from ray import tune

    from benchmarks.pure_python import train
    from trainables.contract import TrialContext

    def trainable(config: dict[str, Any]) -> None:
        train(config, TrialContext(report=tune.report))

    first: list[float] = []

    class FirstResult(tune.Callback):
        def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
            first.append(time.time())

    ray.init(logging_level="ERROR")
    tune.Tuner(
        tune.with_resources(trainable, {"cpu": 1}),
        param_space={"x": tune.uniform(0.0, 1.0), "epochs": EPOCHS, "epoch_s": EPOCH_S},
        tune_config=tune.TuneConfig(num_samples=trials, max_concurrent_trials=2, reuse_actors=True),
        run_config=tune.RunConfig(storage_path=storage, verbose=0, callbacks=[FirstResult()]),
    ).fit()
    print(json.dumps({"first_result_s": min(first) - started}))


def _run(command: list[str], cwd: Path) -> tuple[float, str]:
    started = time.time()
    env = {**os.environ, "BENCH_STARTED": str(started), "PYTHONPATH": str(ROOT)}
    done = subprocess.run(command, capture_output=True, text=True, cwd=cwd, env=env)
    if done.returncode:
        raise RuntimeError(f"{command} failed:\n{done.stderr[-3000:]}")
    return time.time() - started, done.stdout


def launcher_once(trials: int, scratch: Path) -> dict[str, float]:
    from mlflow import MlflowClient

    space = scratch / "space.py"
    space.write_text(SPACE.format(trials=trials, epochs=EPOCHS))
    results = scratch / "results"
    started = time.time()
    seconds, _ = _run([sys.executable, "-m", "search.launch", str(space), "--results-dir", str(results)], scratch)
    client = MlflowClient(f"sqlite:///{results / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("framework-cost")
    firsts = [
        min(m.timestamp for m in client.get_metric_history(run.info.run_id, "score"))
        for run in client.search_runs([experiment.experiment_id])
        if "mlflow.parentRunId" in run.data.tags
    ]
    return {"process_s": seconds, "first_result_s": min(firsts) / 1000 - started}


def tune_once(trials: int, scratch: Path) -> dict[str, float]:
    seconds, out = _run(
        [sys.executable, "-m", "benchmarks.framework_cost", "--plain-tune", "--trials", str(trials), "--storage", str(scratch / "ray")], scratch
    )
    return {"process_s": seconds, **json.loads(out.strip().splitlines()[-1])}


def table(report: dict[str, Any]) -> str:
    launcher, tune = report["launcher"], report["plain_tune"]

    def median(runs: list[dict[str, float]], key: str) -> float:
        return statistics.median(run[key] for run in runs)

    ratio = median(launcher, "process_s") / median(tune, "process_s")
    lines = [
        f"Pure-Python study: {report['trials']} trials x {EPOCHS} epochs x {EPOCH_S} s, 2 at a time, random search, "
        f"no early stopping; whole processes, median of {len(launcher)} interleaved runs.",
        "",
        "| path | whole process (s) | launch to first trial result (s) |",
        "|---|---|---|",
        f"| launcher (`python -m search.launch`) | {median(launcher, 'process_s'):.1f} | {median(launcher, 'first_result_s'):.1f} |",
        f"| plain Ray Tune (`tune.Tuner`) | {median(tune, 'process_s'):.1f} | {median(tune, 'first_result_s'):.1f} |",
        "",
        f"Launcher / plain Ray Tune: **{ratio:.2f}x**.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.framework_cost", description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--plain-tune", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--storage", help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.plain_tune:
        plain_tune(options.trials, options.storage)
        return 0
    options.out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"trials": options.trials, "date": time.strftime("%Y-%m-%d"), "launcher": [], "plain_tune": []}
    for _ in range(options.repeats):
        with tempfile.TemporaryDirectory() as scratch:
            report["launcher"].append(launcher_once(options.trials, Path(scratch)))
        with tempfile.TemporaryDirectory() as scratch:
            report["plain_tune"].append(tune_once(options.trials, Path(scratch)))
        print(json.dumps({key: report[key][-1] for key in ("launcher", "plain_tune")}), flush=True)
    save(options.out, "framework_cost", report, table(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
