"""Search quality on simulated time: the product's methods against random search and Syne Tune.

Each arm searches each table (`benchmarks.problems`) for the same simulated budget on the same
simulated workers, over many seeds (`benchmarks.simulator`). Measured per run, on the
full-budget trials that ended in time: the anytime hypervolume (objectives scaled so the
table's true Pareto front spans [0, 1] in each; reference point 1.1, the product's own 10%
margin) and the hypervolume regret at the budget (the true front's hypervolume minus the
run's); on the tables over recipes, of every epoch every trial ran, and per target the answer's
training time over the table's best. With no arguments it runs the two headline experiments:
"arms" on the fronts over trials (`benchmarks/results/simulated.json`) and "recipes" on the
fronts over recipes (`simulated_recipes.json`), with one PNG of anytime curves per table.

    python -m benchmarks.simulate [--seeds 20]
    python -m benchmarks.simulate --experiment recipes --benchmarks mnist-recipes
    python -m benchmarks.simulate --experiment stopped-trials   # what Optuna is told (README)
    python -m benchmarks.simulate --experiment warm-start --benchmarks mnist-recipes ...   # --warm-start
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import multiprocessing
import os
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np


ROOT = Path(__file__).parents[1]
GRID = 200  # points of the anytime curves

# Arm -> how it changes the problem's space, or "peer". The first is the product's default.
ARMS: dict[str, dict[str, Any]] = {
    "default": {"searcher": "tpe", "scheduler": "mo-asha"},
    # Without early stopping means without capping too (over recipes it would be on by default).
    "random": {"searcher": "random", "scheduler": "none", "capping": False},
    "tpe": {"searcher": "tpe", "scheduler": "none", "capping": False},
    "tpe-asha-accuracy": {"searcher": "tpe", "scheduler": "asha", "primary_only": True},
    "nsga2-moasha": {"searcher": "nsga2", "scheduler": "mo-asha"},
    "syne-tune-moasha": {"peer": True},
}
DESCRIPTION = {
    "default": "TPE + MO-ASHA (the product's default)",
    "random": "random search, no early stopping",
    "tpe": "TPE, no early stopping",
    "tpe-asha-accuracy": "TPE + ASHA, on accuracy alone",
    "nsga2-moasha": "NSGA-II + MO-ASHA",
    "syne-tune-moasha": "Syne Tune 0.16 MOASHA (random + its MO-ASHA)",
}
# What Optuna is told about trials stopped early (search.methods.searchers.STOPPED_TRIALS), on the
# default method; the experiment that chose the shipped rule.
STOPPED_TRIALS_ARMS = {
    f"{searcher}-{told}": {"searcher": searcher, "scheduler": "mo-asha", "stopped_trials": told}
    for searcher in ("tpe", "nsga2")
    for told in ("infeasible", "pruned", "ignored")
}


def gamma_quarter(n: int) -> int:
    """TPE's "good" group: a quarter of the trials (Optuna's default is a tenth), at most 25."""
    return min(math.ceil(0.25 * n), 25)


# Settings of the TPE sampler (the default searcher), compared on held-out seeds (100-149). The
# product keeps Optuna's defaults ("tpe-startup-10").
_TPE = {"searcher": "tpe", "scheduler": "mo-asha"}
TPE_ARMS = {
    "tpe-startup-10": {**_TPE, "sampler_options": {"n_startup_trials": 10}},  # Optuna's default
    "tpe-startup-5": {**_TPE, "sampler_options": {"n_startup_trials": 5}},
    "tpe-startup-20": {**_TPE, "sampler_options": {"n_startup_trials": 20}},
    "tpe-multivariate": {**_TPE, "sampler_options": {"n_startup_trials": 10, "multivariate": True, "group": True}},
    "tpe-liar": {**_TPE, "sampler_options": {"n_startup_trials": 10, "constant_liar": True}},
    "tpe-gamma-quarter": {**_TPE, "sampler_options": {"n_startup_trials": 10, "gamma": gamma_quarter}},
    "nsga2-moasha": {"searcher": "nsga2", "scheduler": "mo-asha"},
}
# Rung spacing of MO-ASHA on the default method: grace period (epochs before the first rung) and
# reduction factor. The product ships grace 2, factor 2 (rungs at epochs 2 and 4 of 8).
RUNG_ARMS = {
    f"grace-{grace}-factor-{factor}": {**_TPE, "grace_period": grace, "reduction_factor": factor}
    for grace, factor in ((2, 2), (1, 2), (1, 3), (2, 3), (1, 4))
}
# On the front over recipes (`--benchmarks mnist-recipes`): the product's default, what Optuna is
# told of stopped trials, the searcher's and the scheduler's shares, and the per-epoch product
# (objectives val_accuracy and epoch_time_s, a front over full-budget trials; its answer for a
# target is the fastest full-budget trial per epoch that meets it, trained for all its epochs).
RECIPE_ARMS = {
    "default": {"searcher": "tpe", "scheduler": "mo-asha"},  # stopped trials told as complete; the space's rungs
    # Optuna told each trial's last recipe (Ray's way; the default before) instead of its best.
    "told-last": {"searcher": "tpe", "scheduler": "mo-asha", "told_recipe": "last"},
    "nsga2-moasha": {"searcher": "nsga2", "scheduler": "mo-asha"},
    "syne-tune-moasha": {"peer": True},
    "tpe-moasha-infeasible": {"searcher": "tpe", "scheduler": "mo-asha", "stopped_trials": "infeasible"},
    "random-moasha": {"searcher": "random", "scheduler": "mo-asha"},
    "tpe": {"searcher": "tpe", "scheduler": "none", "capping": False},
    # The per-epoch product as it shipped: its objectives, front and rungs (epochs 2 and 4).
    "per-epoch-default": {"searcher": "tpe", "scheduler": "mo-asha", "per_epoch": True, "grace_period": 2, "reduction_factor": 2},
    # Rungs: the space ships grace 1, factor 2 (rungs at epochs 1, 2 and 4 of 8), chosen on seeds 100-149.
    "grace-2-factor-2": {"searcher": "tpe", "scheduler": "mo-asha", "grace_period": 2, "reduction_factor": 2},
    "grace-1-factor-3": {"searcher": "tpe", "scheduler": "mo-asha", "grace_period": 1, "reduction_factor": 3},
}
DESCRIPTION.update(
    {
        "tpe-moasha-infeasible": "TPE + MO-ASHA, stopped trials told infeasible",
        "random-moasha": "random search + MO-ASHA",
        "told-last": "TPE + MO-ASHA, Optuna told each trial's last recipe",
        "per-epoch-default": "the per-epoch product (epoch_time_s, front over trials)",
    }
)
# Capping (`search.methods.capping`) on the fronts over recipes (`--benchmarks mnist-recipes
# breast-cancer-recipes`): alone and with MO-ASHA, under each searcher, against the method it
# joined (TPE + MO-ASHA), the samplers Optuna ships and the peer. Its settings (slack, curves
# needed) were chosen on seeds 100-119 (`SLACK`, `MIN_CURVES`; the default is slack 0.5, 5 curves).
_OFF = {"capping": False}
CAPPING_ARMS = {
    "default": {"searcher": "tpe", "scheduler": "mo-asha"},  # what the space resolves: capping on over recipes
    "tpe-moasha": {"searcher": "tpe", "scheduler": "mo-asha", **_OFF},
    "tpe-capping": {"searcher": "tpe", "scheduler": "none", "capping": True},
    "random-moasha": {"searcher": "random", "scheduler": "mo-asha", **_OFF},
    "random-moasha-capping": {"searcher": "random", "scheduler": "mo-asha", "capping": True},
    "random-capping": {"searcher": "random", "scheduler": "none", "capping": True},
    "tpe": {"searcher": "tpe", "scheduler": "none", **_OFF},
    "tpe-multivariate-moasha-capping": {"searcher": "tpe", "scheduler": "mo-asha", "capping": True, "sampler_options": {"multivariate": True}},
    "nsga2-moasha": {"searcher": "nsga2", "scheduler": "mo-asha", **_OFF},
    "nsga2-moasha-capping": {"searcher": "nsga2", "scheduler": "mo-asha", "capping": True},
    "gp-moasha": {"searcher": "gp", "scheduler": "mo-asha", **_OFF},
    "gp-moasha-capping": {"searcher": "gp", "scheduler": "mo-asha", "capping": True},
    "syne-tune-moasha": {"peer": True},
    **{
        f"capping-slack-{slack:g}-curves-{curves}": {
            "searcher": "tpe",
            "scheduler": "mo-asha",
            "capping": True,
            "capping_options": {"slack": slack, "min_curves": curves},
        }
        for slack, curves in ((0.0, 3), (0.0, 5), (0.0, 10), (1.0, 5))
    },
}
DESCRIPTION.update(
    {
        "tpe-moasha": "TPE + MO-ASHA, no capping",
        "tpe-capping": "TPE + capping, no rungs",
        "random-moasha-capping": "random search + MO-ASHA + capping",
        "random-capping": "random search + capping, no rungs",
        "tpe-multivariate-moasha-capping": "multivariate TPE + MO-ASHA + capping",
        "nsga2-moasha-capping": "NSGA-II + MO-ASHA + capping",
        "gp-moasha": "GP (logEHVI) + MO-ASHA",
        "gp-moasha-capping": "GP (logEHVI) + MO-ASHA + capping",
    }
)
# Warm start (`--warm-start`, `search.methods.warm_start`): a study whose first two ranges are
# shifted (the upper 70% of each, on its own scale: on MNIST the learning rate and the batch
# size) starts cold, or from an earlier study of the same table on the lower 70% of them (its own
# seed, the default method, the same budget), or from it with the earlier front's
# configurations run first, or with the told trials counted towards TPE's random start-up
# (Optuna's own rule; the product adds them to it). Scored against the cold start's final
# hypervolume.
TARGET_WINDOW, EARLIER_WINDOW, SHIFTED = (0.3, 1.0), (0.0, 0.7), 2
WARM_START_ARMS = {
    "cold": {"searcher": "tpe", "scheduler": "mo-asha", "window": TARGET_WINDOW},
    "warm": {"searcher": "tpe", "scheduler": "mo-asha", "window": TARGET_WINDOW, "warm_from": EARLIER_WINDOW},
    "warm-front": {"searcher": "tpe", "scheduler": "mo-asha", "window": TARGET_WINDOW, "warm_from": EARLIER_WINDOW, "front_first": True},
    # The told trials counted towards TPE's random start-up (Optuna's own rule) instead of added to it.
    "warm-shared-start-up": {"searcher": "tpe", "scheduler": "mo-asha", "window": TARGET_WINDOW, "warm_from": EARLIER_WINDOW, "shared_start_up": True},
    "random": {"searcher": "random", "scheduler": "none", "capping": False, "window": TARGET_WINDOW},
}
DESCRIPTION.update(
    {
        "cold": "TPE + MO-ASHA, cold start (the default)",
        "warm": "TPE + MO-ASHA, warm-started from a study on a shifted space (the product's warm start)",
        "warm-front": "the same, the earlier front's configurations run first",
        "warm-shared-start-up": "the same, told trials counted towards TPE's start-up",
    }
)
# Experiment -> (its arms, the stem of its result files). Each experiment also runs random search.
EXPERIMENTS = {
    "arms": (ARMS, "simulated"),
    "stopped-trials": (STOPPED_TRIALS_ARMS, "simulated_stopped_trials"),
    "tpe": (TPE_ARMS, "simulated_tpe"),
    "rungs": (RUNG_ARMS, "simulated_rungs"),
    "recipes": (RECIPE_ARMS, "simulated_recipes"),
    "capping": (CAPPING_ARMS, "simulated_capping"),
    "warm-start": (WARM_START_ARMS, "simulated_warm_start"),
}
BENCHMARKS = ("mnist-curves", "nasbench201-cifar10")  # fronts over trials (per epoch); experiment "arms"
RECIPE_BENCHMARKS = ("mnist-recipes", "breast-cancer-recipes")  # fronts over recipes; experiment "recipes"

_problems: dict[str, Any] = {}


def problem(name: str) -> Any:
    """The named table, loaded once per process."""
    from benchmarks import problems

    if name not in _problems:
        if name == "mnist-curves":
            _problems[name] = problems.MnistCurves()
        elif name == "mnist-recipes":
            _problems[name] = problems.MnistCurves(recipes=True, name=name)
        elif name == "breast-cancer-recipes":
            _problems[name] = problems.BreastCancerCurves(name=name)
        elif name.startswith("nasbench201-"):
            _problems[name] = problems.NasBench201(dataset=name.split("-", 1)[1])
        else:
            raise ValueError(f"Unknown benchmark {name!r}; choose from {BENCHMARKS}.")
    return _problems[name]


def policy_for(bench: Any, arm: dict[str, Any], seed: int) -> Any:
    from benchmarks.simulator import ProductPolicy
    from benchmarks.simulator import SyneTunePolicy

    space = bench.space.replace(seed=seed)
    if arm.get("window"):
        space = window(space, *arm["window"])
    if arm.get("peer"):
        return SyneTunePolicy(space, seed)
    changes = {k: v for k, v in arm.items() if k in ("searcher", "scheduler", "grace_period", "reduction_factor", "capping")}
    if arm.get("primary_only"):
        changes["objectives"] = dict([next(iter(space.objectives.items()))])
    if arm.get("per_epoch"):
        changes.update(objectives={"val_accuracy": "max", "epoch_time_s": "min"}, front="trials", targets=None)
    return ProductPolicy(
        space.replace(**changes),
        stopped_trials=arm.get("stopped_trials"),
        sampler_options=arm.get("sampler_options"),
        capping_options=arm.get("capping_options"),
        earlier=[earlier_study(bench, arm["warm_from"], seed)] if arm.get("warm_from") else None,
        front_first=bool(arm.get("front_first")),
        own_start_up=not arm.get("shared_start_up"),
        told_recipe=arm.get("told_recipe"),
    )


def earlier_study(bench: Any, shift: tuple[float, float], seed: int) -> Any:
    """An earlier study of the same table on the `shift` window of its space: the default
    method, its own seed, the table's budget (`benchmarks.simulator.earlier_study`)."""
    from benchmarks import simulator

    space = window(bench.space.replace(seed=seed + 10_000), *shift)
    table = _Windowed(bench, space)
    return simulator.earlier_study(table, simulator.simulate(table, simulator.ProductPolicy(space)))


class _Windowed:
    """A table searched through another space (a window of its own)."""

    def __init__(self, bench: Any, space: Any) -> None:
        self._bench, self.space = bench, space

    def __getattr__(self, name: str) -> Any:
        return getattr(self._bench, name)


def window(space: Any, low: float, high: float, shifted: int = SHIFTED) -> Any:
    """`space` with its first `shifted` searched ranges cut to the share [low, high] of each, on
    its own scale (log ranges on the log scale; an `Int` or stepped `Float` on its grid; a
    `Choice` keeps the options in that share of its list, at least two)."""
    from search.space import Choice
    from search.space import Float

    params = dict(space.params)
    for name, domain in list(space.params.items())[:shifted]:
        if isinstance(domain, Choice):
            n = len(domain.options)
            kept = [o for k, o in enumerate(domain.options) if low - 1e-9 <= (k / (n - 1) if n > 1 else 0) <= high + 1e-9]
            params[name] = dataclasses.replace(domain, options=kept if len(kept) >= 2 else list(domain.options)[:2])
            continue
        to_unit = (lambda v: math.log(v)) if domain.log else (lambda v: float(v))
        from_unit = (lambda u: math.exp(u)) if domain.log else (lambda u: u)
        a, b = to_unit(domain.low), to_unit(domain.high)
        lo, hi = from_unit(a + low * (b - a)), from_unit(a + high * (b - a))
        step = domain.step if not isinstance(domain, Float) or domain.step is not None else None
        if step is not None:
            lo = domain.low + math.ceil((lo - domain.low) / step - 1e-9) * step
            hi = domain.low + math.floor((hi - domain.low) / step + 1e-9) * step
        if not isinstance(domain, Float):
            lo, hi = int(round(lo)), int(round(hi))
        else:
            lo, hi = float(f"{lo:.12g}"), float(f"{hi:.12g}")
        params[name] = dataclasses.replace(domain, low=lo, high=hi) if lo < hi else domain
    return space.replace(params=params)


def run_one(job: tuple[str, str, dict[str, Any], int]) -> dict[str, Any]:
    """One arm, one seed, one table: the anytime hypervolume on the grid, and counts."""
    import optuna

    from benchmarks.simulator import anytime_hypervolume
    from benchmarks.simulator import simulate

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    name, arm_name, arm, seed = job
    bench = problem(name)
    np.random.seed(seed)
    started = time.perf_counter()
    policy = policy_for(bench, arm, seed)
    ended = simulate(bench, policy)
    scale, reference, _ = normalisation(name)
    times = np.linspace(0, bench.budget_s, GRID + 1)
    extra: dict[str, Any] = {}
    if getattr(bench, "recipes", False):
        curve, extra["targets"] = score_recipes(bench, ended, arm, scale, reference, times)
    else:
        curve = anytime_hypervolume(ended, bench.objectives, scale, reference, times)
    statuses = [trial.status for trial in ended]
    return {
        **extra,
        "benchmark": name,
        "arm": arm_name,
        "seed": seed,
        "curve": curve.tolist(),
        "trials": len(ended),
        "finished": statuses.count("finished"),
        "stopped": statuses.count("stopped"),
        "capped": int(sum(getattr(getattr(policy, "scheduler", None), "capped_at", {}).values())),
        "seconds": time.perf_counter() - started,
    }


def score_recipes(bench: Any, ended: list[Any], arm: dict[str, Any], scale: Any, reference: np.ndarray, times: np.ndarray) -> tuple[np.ndarray, dict[str, float]]:
    """A study on the front over recipes: the anytime hypervolume of every recipe its trials ran
    (each trial's epochs, stopped and failed trials included, counted from when it ended), and
    per target its answer's training time over the table's fastest recipe (inf: no answer).

    The product's answer is the fastest recipe the study ran that reaches the target; the
    per-epoch product's (`per_epoch` arms) is the full-budget trial with the least epoch time
    that reaches it at its last epoch, trained for all its epochs."""
    import pandas as pd

    from benchmarks.simulator import anytime_hypervolume
    from search.methods import recipes

    rows = []
    for trial in ended:
        for k, report in enumerate(bench.curve(trial.config).reports[: trial.epochs], start=1):
            rows.append({**report, "epoch": k, "trial": trial.trial_id, "ended_at": trial.ended_at, "status": trial.status})
    table = pd.DataFrame(rows)
    curve = anytime_hypervolume(
        [SimpleNamespace(status="finished", result=row, ended_at=row["ended_at"]) for row in rows], bench.objectives, scale, reference, times
    )
    truth = pd.DataFrame(bench.recipes_table())
    ratios: dict[str, float] = {}
    for target in bench.targets:
        best = recipes.fastest(truth, "val_accuracy", target)
        if arm.get("per_epoch"):
            finished = table[(table["status"] == "finished") & (table["epoch"] == table.groupby("trial")["epoch"].transform("max"))]
            reached = finished[finished["val_accuracy"] >= target].sort_values("epoch_time_s")
            answer = float(reached.iloc[0]["train_time_s"]) if not reached.empty else math.inf
        else:
            found = recipes.fastest(table, "val_accuracy", target) if not table.empty else None
            answer = float(found["train_time_s"]) if found is not None else math.inf
        ratios[f"{target:g}"] = answer / float(best["train_time_s"]) if best is not None else math.nan
    return curve, ratios


@functools.cache
def normalisation(name: str) -> tuple[Any, np.ndarray, float]:
    """For the named table: scaling of losses so its true front spans [0, 1]; the reference
    point; the true front's hypervolume. Computed once per process (and before forking)."""
    from search.methods import pareto

    losses = problem(name).final_losses()
    front = losses[pareto.nondominated_ranks(losses) == 0]
    ideal, nadir = front.min(axis=0), front.max(axis=0)
    span = np.where(nadir > ideal, nadir - ideal, 1.0)

    def scale(loss: np.ndarray) -> np.ndarray:
        return (loss - ideal) / span

    reference = np.full(losses.shape[1], 1.1)
    return scale, reference, pareto.hypervolume(scale(front), reference)


def summarise(name: str, runs: list[dict[str, Any]], arms: list[str], seeds: list[int]) -> dict[str, Any]:
    bench = problem(name)
    _, _, true_hv = normalisation(name)
    times = np.linspace(0, bench.budget_s, GRID + 1)
    curves = {arm: np.array([r["curve"] for r in runs if r["arm"] == arm]) for arm in arms}
    random_arm = "random" if "random" in arms else arms[0]
    random_final = curves[random_arm][:, -1].mean()
    default_final = curves[arms[0]][:, -1].mean()
    summary: dict[str, Any] = {
        "third_party": bench.third_party,
        "source": bench.source,
        "seeds": len(seeds),
        "first_seed": seeds[0],
        "budget_s": float(bench.budget_s),
        "workers": bench.workers,
        "objectives": dict(bench.objectives),
        "true_front_hv": float(true_hv),
        **({"oracle_s": bench.oracle_s()} if getattr(bench, "recipes", False) else {}),
        "default_arm": arms[0],
        "random_arm": random_arm,
        "peer_arm": "syne-tune-moasha" if "syne-tune-moasha" in arms else None,
        "arms": {},
    }
    for arm in arms:
        curve = curves[arm]
        regret = true_hv - curve[:, -1]
        mean = curve.mean(axis=0)
        reached = np.flatnonzero(mean >= random_final - 1e-12)
        reached_default = np.flatnonzero(mean >= default_final - 1e-12)
        mine = [r for r in runs if r["arm"] == arm]
        summary["arms"][arm] = {
            "description": DESCRIPTION.get(arm, arm),
            "hv_regret_mean": float(regret.mean()),
            "hv_regret_se": float(regret.std(ddof=1) / np.sqrt(len(regret))) if len(regret) > 1 else 0.0,
            "hv_at_budget_mean": float(curve[:, -1].mean()),
            "hv_at_third_mean": float(curve[:, GRID // 3].mean()),
            "time_to_random_final_hv_s": float(times[reached[0]]) if len(reached) else None,
            "time_to_default_final_hv_s": float(times[reached_default[0]]) if len(reached_default) else None,
            "trials_mean": float(np.mean([r["trials"] for r in mine])),
            "finished_mean": float(np.mean([r["finished"] for r in mine])),
            "stopped_mean": float(np.mean([r["stopped"] for r in mine])),
            "capped_mean": float(np.mean([r.get("capped", 0) for r in mine])),
        }
        if mine and "targets" in mine[0]:
            summary["arms"][arm]["targets"] = {
                target: {
                    "answer_over_best_median": float(np.median([r["targets"][target] for r in mine])),
                    "answer_over_best_quartiles": [float(q) for q in np.percentile([r["targets"][target] for r in mine], [25, 75])],
                    "no_answer": int(sum(not np.isfinite(r["targets"][target]) for r in mine)),
                }
                for target in mine[0]["targets"]
            }
    return summary


def plot(name: str, runs: list[dict[str, Any]], summary: dict[str, Any], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    times = np.linspace(0, summary["budget_s"], GRID + 1) / 3600
    figure, axis = plt.subplots(figsize=(8, 5))
    for arm in summary["arms"]:
        curve = np.array([r["curve"] for r in runs if r["arm"] == arm])
        mean, se = curve.mean(axis=0), curve.std(axis=0, ddof=1) / np.sqrt(len(curve))
        axis.plot(times, mean, label=DESCRIPTION.get(arm, arm), linewidth=2.5 if arm == summary["default_arm"] else 1.2)
        axis.fill_between(times, mean - se, mean + se, alpha=0.2)
    axis.axhline(summary["true_front_hv"], color="black", linestyle=":", label="the table's true front")
    axis.set_xlabel("simulated wall-clock time (hours)")
    over_recipes = getattr(problem(name), "recipes", False)
    axis.set_ylabel("hypervolume of every recipe run (scaled)" if over_recipes else "hypervolume of full-budget trials (scaled)")
    axis.set_title(f"{name}: {summary['workers']} workers, {summary['seeds']} seeds, mean ± standard error")
    axis.legend(loc="lower right", fontsize=8)
    axis.grid(alpha=0.3)
    path = out / f"simulated_{name}.png"
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def table(results: dict[str, Any]) -> str:
    lines = []
    for name, summary in results["benchmarks"].items():
        first = summary["arms"][summary["default_arm"]]["description"]
        lines += [
            f"### {name} ({summary['seeds']} seeds, budget {summary['budget_s'] / 3600:.2f} h simulated, {summary['workers']} workers)",
            "",
            f"Source: {summary['source']}. True front hypervolume {summary['true_front_hv']:.4f}."
            + (f" The oracle (only the true front's recipes, trained once) takes {summary['oracle_s'] / summary['budget_s']:.0%} of the budget." if "oracle_s" in summary else ""),
            "",
            "| arm | HV regret at budget (mean ± SE) | HV at 1/3 budget | HV at budget | time to random's final HV |"
            + (f" time to {first}'s final HV |" if results.get("reach_default") else "")
            + " trials (finished / stopped, capped) |",
            "|---|---|---|---|---|---|" + ("---|" if results.get("reach_default") else ""),
        ]
        for arm, row in summary["arms"].items():
            reach_text = " | ".join(
                f"{row[key] / summary['budget_s']:.0%} of budget" if row[key] is not None else "never"
                for key in ("time_to_random_final_hv_s", *(("time_to_default_final_hv_s",) if results.get("reach_default") else ()))
            )
            lines.append(
                f"| {row['description']} | {row['hv_regret_mean']:.4f} ± {row['hv_regret_se']:.4f} | "
                f"{row['hv_at_third_mean']:.4f} | {row['hv_at_budget_mean']:.4f} | {reach_text} | "
                f"{row['trials_mean']:.0f} ({row['finished_mean']:.0f} / {row['stopped_mean']:.0f}"
                + (f", {row['capped_mean']:.0f} capped" if row.get("capped_mean") else "")
                + ") |"
            )
        lines.append("")
        with_targets = {arm: row["targets"] for arm, row in summary["arms"].items() if "targets" in row}
        if with_targets:
            names = list(next(iter(with_targets.values())))
            lines += [
                "Training time of the answer for each target over the table's fastest recipe for it (median over seeds "
                "[quartiles]; studies with no answer count as infinite):",
                "",
                "| arm | " + " | ".join(f"val_accuracy >= {name}" for name in names) + " |",
                "|---|" + "---|" * len(names),
            ]
            for arm, targets in with_targets.items():
                cells = [
                    f"{t['answer_over_best_median']:.2f}x [{t['answer_over_best_quartiles'][0]:.2f}-{t['answer_over_best_quartiles'][1]:.2f}]"
                    + (f", {t['no_answer']} none" if t["no_answer"] else "")
                    for t in targets.values()
                ]
                lines.append(f"| {DESCRIPTION.get(arm, arm)} | " + " | ".join(cells) + " |")
            lines.append("")
    return "\n".join(lines)


def run(benchmarks: list[str], arms: dict[str, dict[str, Any]], seeds: list[int], processes: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    jobs = [(name, arm_name, arm, seed) for name in benchmarks for seed in seeds for arm_name, arm in arms.items()]
    started = time.perf_counter()
    if processes > 1:
        with multiprocessing.get_context("fork").Pool(processes) as pool:
            runs = pool.map(run_one, jobs, chunksize=1)
    else:
        runs = [run_one(job) for job in jobs]
    print(f"{len(jobs)} simulated studies in {time.perf_counter() - started:.0f} s on {processes} processes", flush=True)
    results: dict[str, Any] = {"benchmarks": {}}
    for name in benchmarks:
        mine = [r for r in runs if r["benchmark"] == name]
        results["benchmarks"][name] = summarise(name, mine, list(arms), seeds)
    return results, runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.simulate", description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=50)
    parser.add_argument("--first-seed", type=int, default=0, help="seeds are first-seed, first-seed + 1, ...")
    parser.add_argument("--benchmarks", nargs="+", default=None, help="default: the experiment's tables")
    parser.add_argument("--experiment", choices=list(EXPERIMENTS), default=None, help='default: "arms" and "recipes"')
    parser.add_argument("--arms", nargs="+", default=None, help="default: all of the experiment's arms")
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    options = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if options.experiment is None and options.benchmarks is None:  # the headline: both kinds of front
        runs = [("arms", list(BENCHMARKS)), ("recipes", list(RECIPE_BENCHMARKS))]
    else:
        runs = [(options.experiment or "arms", options.benchmarks or list(RECIPE_BENCHMARKS if options.experiment in ("recipes", "capping") else BENCHMARKS))]
    for experiment, benchmarks in runs:
        arms = experiment_arms(parser, experiment, options.arms if len(runs) == 1 else None)
        print(run_experiment(experiment, benchmarks, arms, options))
    return 0


def experiment_arms(parser: argparse.ArgumentParser, experiment: str, chosen: list[str] | None) -> dict[str, dict[str, Any]]:
    """The experiment's arms (those `chosen`, if any), random search always among them."""
    arms = EXPERIMENTS[experiment][0]
    arms = arms if "random" in arms else arms | {"random": ARMS["random"]}
    unknown = set(chosen or ()) - set(arms)
    if unknown:
        parser.error(f"unknown arms {sorted(unknown)} for --experiment {experiment}; choose from {list(arms)}")
    return {name: arms[name] for name in (chosen or arms)}


def run_experiment(experiment: str, benchmarks: list[str], arms: dict[str, dict[str, Any]], options: argparse.Namespace) -> str:
    """Run the arms on the tables over the seeds; write the results, their table and (arms,
    recipes) one plot per table; return the table."""
    for name in benchmarks:
        normalisation(name)  # load the table and its true front before forking
    seeds = list(range(options.first_seed, options.first_seed + options.seeds))
    results, runs = run(benchmarks, arms, seeds, options.processes)
    results["reach_default"] = experiment == "warm-start"  # the gain over a cold start
    results["machine"] = f"{os.cpu_count()} CPUs; simulated clock, so the numbers do not depend on the machine"
    results["date"] = time.strftime("%Y-%m-%d")
    stem = EXPERIMENTS[experiment][1]
    options.out.mkdir(parents=True, exist_ok=True)
    (options.out / f"{stem}.json").write_text(json.dumps(results, indent=2))
    text = table(results)
    (options.out / f"{stem}.md").write_text(text + "\n")
    if experiment in ("arms", "recipes"):
        for name in benchmarks:
            plot(name, [r for r in runs if r["benchmark"] == name], results["benchmarks"][name], options.out)
    return text


if __name__ == "__main__":
    raise SystemExit(main())
