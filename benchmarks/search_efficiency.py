"""Search efficiency in real studies: the reality check of the simulated benchmark.

Arms search `spaces/mnist.py` (bundled digits) for the same wall-clock budget, with several
seeds each, through the same launcher, so only the search method differs:

- default: Optuna TPE, multi-objective successive halving (MO-ASHA) over accuracy and epoch time;
- random: Optuna's random sampler, no early stopping (the simulated benchmark's random arm);
- tpe-asha: Optuna TPE and plain ASHA on validation accuracy only (single objective).

For each run it measures, from what MLflow recorded: the time until any trial first reported
the target validation accuracy; the best full-budget accuracy; the hypervolume of the full-budget
trials' (val_accuracy, epoch_time_s) against one fixed reference point, and scaled as
`benchmarks.simulate` scales the MNIST table (its true front spans [0, 1]), at 1/3 and all of
the budget; trials finished, stopped early and cut off by the budget.

It also replays each run on the simulated benchmark's table, to tell the search's decisions
apart from the machine's timing: the hypervolume of the same full-budget configurations with the
values the table holds for them (`table_replay_hv`, comparable with the simulated arm's
hypervolume at the budget), and how much slower the run's epochs were than the table's for the
same configurations (`epoch_time_vs_table`, median ratio over every trial).

    python -m benchmarks.search_efficiency [--budget 900] [--seeds 0 1 2] [--arms default random]
    python -m benchmarks.search_efficiency --replay   # re-measure the recorded studies only

With `--recipes` the arms search `spaces/mnist.py` as it ships (a front over recipes: every
epoch of every trial, accuracy against training time so far): the default against random search
without early stopping. Each study is scored as the simulated benchmark scores a study on the
table over recipes (`benchmarks.simulate --experiment recipes`): every recipe its trials ran,
with the table's values for the same configurations and epochs (hypervolume, regret against
the table's front of all recipes, and per target the answer's training time over the table's
fastest recipe), at 1/3 and all of the budget; and with the values the study measured
(hypervolume on the same scale, and per target the fastest recipe's seconds).

    python -m benchmarks.search_efficiency --recipes --budget 300   # search_efficiency_recipes.*
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

from benchmarks import save

ROOT = Path(__file__).parents[1]
ARMS: dict[str, dict[str, Any]] = {
    "default": {"searcher": "tpe", "scheduler": "mo-asha"},
    "random": {"searcher": "random", "scheduler": "none"},
    "tpe-asha": {"searcher": "tpe", "scheduler": "asha", "objectives": {"val_accuracy": "max"}},
}
DESCRIPTION = {
    "default": "TPE + MO-ASHA (this product's default)",
    "random": "random search, no early stopping",
    "tpe-asha": "TPE + ASHA on accuracy only",
}
# Shared by every arm: a point every useful configuration beats.
OBJECTIVES = {"val_accuracy": "max", "epoch_time_s": "min"}
REFERENCE_POINT = {"val_accuracy": 0.85, "epoch_time_s": 3.0}
TARGET_ACCURACY = 0.96
FRACTIONS = (1 / 3, 1.0)


def measure(result: Any, budget_s: float) -> dict[str, Any]:
    """What one study achieved, read back from MLflow."""
    from mlflow import MlflowClient

    from search.methods import pareto
    from search.record.results import trials_frame

    client = MlflowClient(result.tracking_uri)
    experiment = client.get_experiment_by_name(result.experiment)
    table = trials_frame(client, experiment.experiment_id, result.parent_run_id)  # every metric
    start = result.started_at
    reached = [
        point.timestamp / 1000 - start
        for run_id in table["run_id"].dropna()
        for point in client.get_metric_history(run_id, "val_accuracy")
        if point.value >= TARGET_ACCURACY
    ]
    finished = table[table["status"] == "finished"]
    reference = pareto.losses([REFERENCE_POINT], OBJECTIVES)[0]
    scale, scaled_reference = _table_scaling()
    hypervolume, scaled = {}, {}
    for fraction in FRACTIONS:
        done = finished[finished["ended_at"] - start <= fraction * budget_s]
        loss = pareto.losses(done.to_dict("records"), OBJECTIVES)
        hypervolume[f"{fraction:.0%}"] = float(pareto.hypervolume(loss, reference)) if len(loss) else 0.0
        scaled[f"{fraction:.0%}"] = float(pareto.hypervolume(scale(loss), scaled_reference)) if len(loss) else 0.0
    counts = table["status"].value_counts()
    return {
        **replay(table, finished),
        "time_to_target_s": min(reached) if reached else None,
        "best_val_accuracy": float(finished["val_accuracy"].max()) if len(finished) else None,
        "hypervolume": hypervolume,
        "hypervolume_scaled": scaled,
        "finished": int(counts.get("finished", 0)),
        "stopped": int(counts.get("stopped", 0)),
        "cut_off": int(counts.get("cut off", 0)),
        "failed": int(counts.get("failed", 0)),
        "wall_time_s": result.wall_time_s,
        "study": result.name,
    }


def replay(table: Any, finished: Any) -> dict[str, float | None]:
    """The run's configurations answered by the simulated benchmark's table (nearest recorded
    configuration, as the simulator answers): the hypervolume of the full-budget ones, scaled,
    and the median ratio of the run's epoch times to the table's, over every trial that reported."""
    from search.methods import pareto

    problem = _table()
    scale, reference = _table_scaling()

    def curve(trial: Any) -> Any:  # the table's answer, as the simulator gets it
        return problem.curve({name: trial[name] for name in problem.space.params if name in trial and trial[name] == trial[name]})

    loss = pareto.losses([curve(trial).reports[-1] for _, trial in finished.iterrows()], OBJECTIVES)
    ratios = [  # the trial's last epoch against the same epoch in the table
        trial["epoch_time_s"] / curve(trial).reports[int(trial["epoch"]) - 1]["epoch_time_s"]
        for _, trial in table.iterrows()
        if trial.get("epoch_time_s") == trial.get("epoch_time_s") and trial.get("epoch") == trial.get("epoch")
    ]
    return {
        "table_replay_hv": float(pareto.hypervolume(scale(loss), reference)) if len(loss) else 0.0,
        "epoch_time_vs_table": float(statistics.median(ratios)) if ratios else None,
    }


def _table() -> Any:
    from benchmarks.simulate import problem

    return problem("mnist-curves")


def _table_scaling() -> tuple[Any, Any]:
    """The simulated MNIST benchmark's scaling (its table's true front spans [0, 1])."""
    from benchmarks.simulate import normalisation

    scale, reference, _ = normalisation("mnist-curves")
    return scale, reference


def run(budget_s: float, seeds: list[int], out: Path, arms: list[str]) -> dict[str, Any]:
    from search.space import load_space
    from search.study import run_study

    base = load_space(ROOT / "spaces/mnist.py")
    base = base.replace(
        num_samples=1000,  # the budget ends the study, not the number of trials
        time_budget_s=budget_s,
        constants={**base.constants, "data_source": "bundled"},
        # The per-epoch study its recorded results measured (the default space is over recipes now).
        objectives=OBJECTIVES, front="trials", targets=None, grace_period=2, reduction_factor=2,
    )
    runs: dict[str, list[dict[str, Any]]] = {arm: [] for arm in arms}
    for seed in seeds:
        for arm in arms:
            space = base.replace(seed=seed, **ARMS[arm])
            print(f"[{time.strftime('%H:%M:%S')}] {arm}, seed {seed}: {budget_s:.0f} s", flush=True)
            result = run_study(space, results_dir=out / "studies", experiment=f"bench-{arm}")
            runs[arm].append({"seed": seed, **measure(result, budget_s)})
            print(f"    {json.dumps(runs[arm][-1])}", flush=True)
    return {
        "budget_s": budget_s,
        "seeds": seeds,
        "target_accuracy": TARGET_ACCURACY,
        "reference_point": REFERENCE_POINT,
        "runs": runs,
    }


def replay_recorded(out: Path) -> dict[str, Any]:
    """Add the table replay to every run of the saved report, from the studies MLflow holds."""
    from mlflow import MlflowClient

    from search.record.results import trials_frame
    from search.record.tracking import default_tracking_uri

    report = json.loads((out / "search_efficiency.json").read_text())
    client = MlflowClient(default_tracking_uri(out / "studies"))
    for arm, runs in report["runs"].items():
        experiment = client.get_experiment_by_name(f"bench-{arm}")
        for run in runs:
            (study,) = client.search_runs([experiment.experiment_id], filter_string=f"attributes.run_name = '{run['study']}'")
            table = trials_frame(client, experiment.experiment_id, study.info.run_id)
            run.update(replay(table, table[table["status"] == "finished"]))
    return report


# Over recipes: the space as it ships, against random search without early stopping (or capping).
RECIPE_ARMS: dict[str, dict[str, Any]] = {"default": {}, "random": {"searcher": "random", "scheduler": "none", "capping": False}}
RECIPE_TABLE = "mnist-recipes"


def run_recipes(budget_s: float, seeds: list[int], out: Path, arms: list[str]) -> dict[str, Any]:
    """Real studies of the shipped MNIST space over recipes, each scored on the table."""
    from search.space import load_space
    from search.study import run_study

    base = load_space(ROOT / "spaces/mnist.py")
    base = base.replace(num_samples=1000, time_budget_s=budget_s, constants={**base.constants, "data_source": "bundled"})
    runs: dict[str, list[dict[str, Any]]] = {arm: [] for arm in arms}
    for seed in seeds:
        for arm in arms:
            print(f"[{time.strftime('%H:%M:%S')}] over recipes, {arm}, seed {seed}: {budget_s:.0f} s", flush=True)
            space = base.replace(seed=seed, **RECIPE_ARMS[arm])  # the answers are not trained again alone: the table scores them
            result = run_study(space, results_dir=out / "studies", experiment=f"bench-recipes-{arm}", remeasure_front=False)
            runs[arm].append({"seed": seed, **measure_recipes(result, budget_s)})
            print(f"    {json.dumps(runs[arm][-1])}", flush=True)
    return {"budget_s": budget_s, "seeds": seeds, "table": RECIPE_TABLE, "runs": runs}


def measure_recipes(result: Any, budget_s: float) -> dict[str, Any]:
    """One study over recipes, read back from MLflow: its recipes replayed on the table (as
    `benchmarks.simulate` scores a simulated study) and as measured, at 1/3 and all of the budget."""
    from types import SimpleNamespace

    import numpy as np
    from mlflow import MlflowClient

    from benchmarks.simulate import normalisation
    from benchmarks.simulate import problem
    from benchmarks.simulate import score_recipes
    from search.methods import pareto
    from search.methods import recipes
    from search.record.results import histories
    from search.record.results import trials_frame

    client = MlflowClient(result.tracking_uri)
    experiment = client.get_experiment_by_name(result.experiment)
    trials = trials_frame(client, experiment.experiment_id, result.parent_run_id)
    trials = trials[trials["epoch"].notna()] if "epoch" in trials else trials.iloc[0:0]  # trials that reported
    bench = problem(RECIPE_TABLE)
    scale, reference, true_hv = normalisation(RECIPE_TABLE)
    times = np.array([budget_s * f for f in FRACTIONS])
    ended = [
        SimpleNamespace(
            trial_id=trial["trial"], ended_at=trial["ended_at"] - result.started_at, status=trial["status"], epochs=int(trial["epoch"]),
            config={name: trial[name] for name in bench.space.params if name in trial and trial[name] == trial[name]},
        )
        for _, trial in trials.iterrows()
    ]
    replayed, answers = score_recipes(bench, ended, {}, scale, reference, times)
    measured = recipes.table(trials, histories(client, dict(zip(trials["trial"], trials["run_id"])), list(bench.objectives)))
    hypervolume = {}
    for fraction in FRACTIONS:
        done = measured[measured["reported_at"] - result.started_at <= fraction * budget_s] if len(measured) else measured
        loss = pareto.losses(done.to_dict("records"), bench.objectives)
        hypervolume[f"{fraction:.0%}"] = float(pareto.hypervolume(scale(loss), reference)) if len(loss) else 0.0
    fastest = {f"{t:g}": recipes.fastest(measured, "val_accuracy", t) if len(measured) else None for t in bench.targets}
    counts = trials["status"].value_counts()
    return {
        "replay_hv": {f"{f:.0%}": float(v) for f, v in zip(FRACTIONS, replayed)},
        "replay_regret": float(true_hv - replayed[-1]),
        "replay_answer_vs_best": answers,
        "measured_hv": hypervolume,
        "measured_answer_s": {t: float(row["train_time_s"]) if row is not None else None for t, row in fastest.items()},
        "recipes": len(measured),
        "finished": int(counts.get("finished", 0)),
        "stopped": int(counts.get("stopped", 0)),
        "cut_off": int(counts.get("cut off", 0)),
        "wall_time_s": result.wall_time_s,
        "study": result.name,
    }


def recipes_table(report: dict[str, Any]) -> str:
    """The studies over recipes as a Markdown table (mean ± standard deviation over seeds)."""
    targets = list(next(iter(report["runs"].values()))[0]["replay_answer_vs_best"])
    lines = [
        "| arm | table-replay HV regret | table-replay HV at 33% | at 100% | measured HV at 33% | at 100% | "
        + " | ".join(f"replayed answer >= {t} (x table's best)" for t in targets)
        + " | recipes | finished / stopped / cut off (per run) |",
        "|---" * (8 + len(targets)) + "|",
    ]
    for arm, runs in report["runs"].items():
        cells = [
            DESCRIPTION[arm],
            _mean_sd([r["replay_regret"] for r in runs]),
            *[_mean_sd([r[key][f] for r in runs]) for key in ("replay_hv", "measured_hv") for f in ("33%", "100%")],
            *[_median([r["replay_answer_vs_best"][t] for r in runs]) for t in targets],
            _mean_sd([r["recipes"] for r in runs]),
            ", ".join(f"{r['finished']}/{r['stopped']}/{r['cut_off']}" for r in runs),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _median(values: list[float]) -> str:
    return f"{statistics.median(values):.2f}x" + (f" [{min(values):.2f}-{max(values):.2f}]" if len(values) > 1 else "")


def _mean_sd(values: list[float | None]) -> str:
    known = [v for v in values if v is not None]
    if not known:
        return "not reached"
    text = f"{statistics.mean(known):.3g}" + (f" ± {statistics.stdev(known):.2g}" if len(known) > 1 else "")
    missing = len(values) - len(known)
    return text + (f" ({missing} of {len(values)} never)" if missing else "")


def table(report: dict[str, Any]) -> str:
    """The results as a Markdown table (mean ± standard deviation over seeds)."""
    lines = [
        f"| arm | time to val_accuracy ≥ {report['target_accuracy']} (s) | best full-budget val_accuracy | "
        + " | ".join(f"hypervolume at {f:.0%}" for f in FRACTIONS)
        + " | "
        + " | ".join(f"scaled hypervolume at {f:.0%}" for f in FRACTIONS)
        + " | table-replay hypervolume | epoch time / table's |"
        + " finished / stopped / cut off (per run) |",
        "|---" * (6 + 2 * len(FRACTIONS)) + "|",
    ]
    for arm, runs in report["runs"].items():
        cells = [
            DESCRIPTION[arm],
            _mean_sd([r["time_to_target_s"] for r in runs]),
            _mean_sd([r["best_val_accuracy"] for r in runs]),
            *[_mean_sd([r["hypervolume"][f"{f:.0%}"] for r in runs]) for f in FRACTIONS],
            *[_mean_sd([r["hypervolume_scaled"][f"{f:.0%}"] for r in runs]) for f in FRACTIONS],
            _mean_sd([r.get("table_replay_hv") for r in runs]),
            _mean_sd([r.get("epoch_time_vs_table") for r in runs]),
            ", ".join(f"{r['finished']}/{r['stopped']}/{r['cut_off']}" for r in runs),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def targets(report: dict[str, Any]) -> str:
    """The issue's targets, against arm `random`."""
    def mean(arm: str, key: Any) -> float | None:
        values = [key(r) for r in report["runs"][arm]]
        known = [v for v in values if v is not None]
        return statistics.mean(known) if known and len(known) == len(values) else None

    default_t = mean("default", lambda r: r["time_to_target_s"])
    random_t = mean("random", lambda r: r["time_to_target_s"])
    default_hv = mean("default", lambda r: r["hypervolume_scaled"]["100%"])
    random_hv = mean("random", lambda r: r["hypervolume_scaled"]["100%"])
    default_third = mean("default", lambda r: r["hypervolume_scaled"]["33%"])
    time_ratio = f"{default_t / random_t:.2f}" if default_t and random_t else "n/a (a run never reached the target)"
    hv_ratio = f"{default_hv / random_hv:.2f}" if default_hv and random_hv else "n/a"
    third = f"{default_third:.3f} vs {random_hv:.3f}" if default_third is not None and random_hv is not None else "n/a"
    return (
        f"- Time to val_accuracy >= {report['target_accuracy']}, default / random: {time_ratio}\n"
        f"- Scaled hypervolume at the budget, default / random: {hv_ratio}\n"
        f"- Default's scaled hypervolume at 1/3 of the budget vs random's at the budget: {third}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.search_efficiency", description=__doc__.split("\n")[0])
    parser.add_argument("--budget", type=float, default=900.0, help="wall-clock seconds per study (default 900, the simulated MNIST budget)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--arms", nargs="+", default=["default", "random"], choices=list(ARMS))
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--replay", action="store_true", help="only add the table replay to the saved report's runs")
    parser.add_argument("--recipes", action="store_true", help="the shipped space over recipes, scored on the table over recipes")
    options = parser.parse_args(argv)
    options.out.mkdir(parents=True, exist_ok=True)
    if options.recipes:
        report = run_recipes(options.budget, options.seeds, options.out, options.arms)
        save(options.out, "search_efficiency_recipes", report, recipes_table(report))
        return 0
    if options.replay:
        report = replay_recorded(options.out)
    else:
        report = run(options.budget, options.seeds, options.out, options.arms)
    save(options.out, "search_efficiency", report, table(report) + "\n\n" + targets(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
