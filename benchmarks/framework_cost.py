"""What the framework costs a whole study, against plain Ray Tune on the same function.

A pure-Python trainable (`benchmarks.pure_python`: 9 epochs of 0.05 s, no TensorFlow), 20 trials,
2 at a time, random search, no early stopping, run as whole processes side by side (interleaved,
`--repeats` times):

- the launcher: `python -m search.launch SPACE` (Ray Tune + Optuna + MLflow, the front at the end);
- plain Ray Tune: `tune.Tuner` on the same function, the same resources, random search.

Reported: each path's whole-process time (median), their ratio, and the time from launch to the
first trial result.

With `--study mnist`, the MNIST default study (`spaces/mnist.py`: 24 trials, up to 8 epochs,
MO-ASHA, 2 at a time) through the launcher, then plain Ray Tune replaying what that study trained:
the same configurations in the same order, 2 at a time, each stopped after the epoch its trial
reached (what MO-ASHA decided), through the same trainable with the same directories. What the
launcher adds is then its own cost: Optuna, the scheduler's bookkeeping, MLflow, the front's
models, their speed measured again alone, the registry.

    python -m benchmarks.framework_cost [--repeats 3] [--trials 20] [--out benchmarks/results]
    python -m benchmarks.framework_cost --study mnist [--repeats 1]
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
from benchmarks.pure_python import space_file

ROOT = Path(__file__).parents[1]


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


def plain_tune_replay(replay: Path, storage: str) -> None:
    """In a child process: the configurations a launcher study trained (`replay`: configs, the
    epoch each reached, what the study decided on), in plain Ray Tune, in order, 2 at a time, each
    stopped after that epoch; prints seconds to the first result."""
    started = float(os.environ["BENCH_STARTED"])
    import ray
    from ray import tune

    from search.compute import devices
    from search.space import load_space
    from trainables.contract import TrialContext

    plan = json.loads(replay.read_text())
    train = load_space(ROOT / "spaces" / "mnist.py").trainable
    scratch = Path(storage)
    first: list[float] = []

    def trainable(config: dict[str, Any]) -> None:
        index = config["index"]
        devices.prepare_process(1, None)  # TensorFlow's threads matched to the 1 CPU Ray gave it
        context = TrialContext(
            report=lambda metrics: tune.report({**metrics, "index": index}),
            model_dir=str(scratch / "models" / str(index)),
            checkpoint_dir=str(scratch / "checkpoints" / str(index)),
            cache_dir=str(scratch / "cache"),
            needed=frozenset(plan["needed"]),
        )
        train(plan["configs"][index], context)

    def stop(trial_id: str, result: dict[str, Any]) -> bool:  # where the launcher's scheduler stopped it
        return int(result.get("epoch", 0)) >= plan["epochs"][int(result["index"])]

    trained: dict[int, float] = {}  # the last train_time_s (cumulative) of each configuration

    class FirstResult(tune.Callback):
        def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
            first.append(time.time())
            trained[int(result["index"])] = float(result.get("train_time_s", 0.0))

    ray.init(logging_level="ERROR")
    fit_started = time.time()
    tune.Tuner(
        tune.with_resources(trainable, {"cpu": 1}),
        param_space={"index": tune.grid_search(list(range(len(plan["configs"]))))},
        tune_config=tune.TuneConfig(max_concurrent_trials=2, reuse_actors=True),
        run_config=tune.RunConfig(storage_path=str(scratch / "ray"), verbose=0, stop=stop, callbacks=[FirstResult()]),
    ).fit()
    fit_s = time.time() - fit_started
    print(json.dumps({"first_result_s": min(first) - started, "study_s": fit_s, "summed_train_time_s": sum(trained.values())}))


def parameter(text: str) -> Any:
    """A config value back from its MLflow parameter (`str(value)`)."""
    import ast

    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def mnist_once(scratch: Path) -> dict[str, Any]:
    """The MNIST default study through the launcher, then replayed in plain Ray Tune."""
    from mlflow import MlflowClient

    from search.space import load_space

    space = load_space(ROOT / "spaces" / "mnist.py")
    results = scratch / "results"
    started = time.time()
    launcher_s, _ = run_command([sys.executable, "-m", "search.launch", str(ROOT / "spaces" / "mnist.py"), "--results-dir", str(results)], scratch)
    client = MlflowClient(f"sqlite:///{results / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(space.name)
    runs = client.search_runs([experiment.experiment_id])
    parent = next(run for run in runs if "mlflow.parentRunId" not in run.data.tags)
    trials = sorted((run for run in runs if "mlflow.parentRunId" in run.data.tags), key=lambda run: run.info.run_name)
    metric = next(iter(space.objectives))
    configs, epochs, firsts = [], [], []
    for run in trials:
        history = client.get_metric_history(run.info.run_id, metric)
        if not history:
            continue
        configs.append({key: parameter(value) for key, value in run.data.params.items()})
        epochs.append(max(point.step for point in history))
        firsts.append(min(point.timestamp for point in history))
    needed = sorted(space.needed_metrics)
    replay = scratch / "replay.json"
    replay.write_text(json.dumps({"configs": configs, "epochs": epochs, "needed": needed}))
    tune_s, out = run_command(
        [sys.executable, "-m", "benchmarks.framework_cost", "--plain-tune", "--replay", str(replay), "--storage", str(scratch / "tune")], scratch
    )
    return {
        "launcher": {
            "process_s": launcher_s,
            "first_result_s": min(firsts) / 1000 - started,
            "remeasure_s": parent.data.metrics.get("remeasure_s"),
            "study_s": parent.data.metrics.get("wall_time_s"),  # Tune's loop: first trial to last
            "summed_train_time_s": parent.data.metrics.get("summed_train_time_s"),
            "trials": len(configs),
            "epochs": sum(epochs),
        },
        "plain_tune": {"process_s": tune_s, **json.loads(out.strip().splitlines()[-1])},
    }


def mnist_table(report: dict[str, Any]) -> str:
    runs = report["runs"]
    lines = [
        "MNIST default study (`spaces/mnist.py`) through the launcher, then replayed in plain Ray Tune: the same "
        "configurations, in order, 2 at a time, each stopped at the epoch its trial reached; whole processes.",
        "",
        "| run | trials | epochs trained | launcher (s) | of which the front measured again (s) | plain Ray Tune (s) | ratio |"
        " first result, launcher / Tune (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for number, run in enumerate(runs, 1):
        launcher, tune = run["launcher"], run["plain_tune"]
        lines.append(
            f"| {number} | {launcher['trials']} | {launcher['epochs']} | {launcher['process_s']:.1f} | {launcher['remeasure_s'] or 0:.1f} "
            f"| {tune['process_s']:.1f} | {launcher['process_s'] / tune['process_s']:.2f}x "
            f"| {launcher['first_result_s']:.1f} / {tune['first_result_s']:.1f} |"
        )
    lines.append("")
    lines.append("| run | Tune's loop, launcher / Tune (s) | summed train_time_s, launcher / Tune (s) |")
    lines.append("|---|---|---|")
    for number, run in enumerate(runs, 1):
        launcher, tune = run["launcher"], run["plain_tune"]
        if launcher.get("study_s") and tune.get("study_s"):
            lines.append(
                f"| {number} | {launcher['study_s']:.1f} / {tune['study_s']:.1f} "
                f"| {launcher['summed_train_time_s'] or 0:.1f} / {tune['summed_train_time_s']:.1f} |"
            )
    return "\n".join(lines)


def run_command(command: list[str], cwd: Path) -> tuple[float, str]:
    started = time.time()
    env = {**os.environ, "BENCH_STARTED": str(started), "PYTHONPATH": str(ROOT)}
    done = subprocess.run(command, capture_output=True, text=True, cwd=cwd, env=env)
    if done.returncode:
        raise RuntimeError(f"{command} failed:\n{done.stderr[-3000:]}")
    return time.time() - started, done.stdout


def launcher_once(trials: int, scratch: Path) -> dict[str, float]:
    from mlflow import MlflowClient

    space = scratch / "space.py"
    space.write_text(space_file("framework-cost", trials=trials, epochs=EPOCHS, searcher="random"))
    results = scratch / "results"
    started = time.time()
    seconds, _ = run_command([sys.executable, "-m", "search.launch", str(space), "--results-dir", str(results)], scratch)
    client = MlflowClient(f"sqlite:///{results / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("framework-cost")
    firsts = [
        min(m.timestamp for m in client.get_metric_history(run.info.run_id, "score"))
        for run in client.search_runs([experiment.experiment_id])
        if "mlflow.parentRunId" in run.data.tags
    ]
    return {"process_s": seconds, "first_result_s": min(firsts) / 1000 - started}


def tune_once(trials: int, scratch: Path) -> dict[str, float]:
    seconds, out = run_command(
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
    parser.add_argument("--study", choices=["pure-python", "mnist"], default="pure-python")
    parser.add_argument("--storage", help=argparse.SUPPRESS)
    parser.add_argument("--replay", type=Path, help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.plain_tune and options.replay:
        plain_tune_replay(options.replay, options.storage)
        return 0
    if options.plain_tune:
        plain_tune(options.trials, options.storage)
        return 0
    options.out.mkdir(parents=True, exist_ok=True)
    if options.study == "mnist":
        mnist: dict[str, Any] = {"date": time.strftime("%Y-%m-%d"), "runs": []}
        for _ in range(options.repeats):
            with tempfile.TemporaryDirectory() as scratch:
                mnist["runs"].append(mnist_once(Path(scratch)))
            print(json.dumps(mnist["runs"][-1]), flush=True)
        save(options.out, "framework_cost_mnist", mnist, mnist_table(mnist))
        return 0
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
