"""The simulated-time backend drives the product's own scheduler and searcher on a table."""

import dataclasses
import json
import math

import numpy as np
import pytest
from optuna.trial import TrialState

from benchmarks.simulator import Curve
from benchmarks.simulator import ProductPolicy
from benchmarks.simulator import SyneTunePolicy
from benchmarks.simulator import simulate
from benchmarks.problems import table_lookup
from search.space import Float
from search.space import SearchSpace


@dataclasses.dataclass
class Toy:
    """Accuracy rises with `quality` and epochs; an epoch takes `cost` seconds."""

    name: str = "toy"
    source: str = "made up in the test"
    third_party: bool = False
    workers: int = 2
    budget_s: float = 60.0

    def __post_init__(self):
        self.objectives = {"val_accuracy": "max", "epoch_time_s": "min"}
        self.space = SearchSpace(
            name="toy",
            trainable=table_lookup,
            params={"quality": Float(0.0, 1.0), "cost": Float(0.1, 1.0)},
            objectives=self.objectives,
            max_epochs=9,
            grace_period=1,
            reduction_factor=3,
            max_concurrent=self.workers,
        )

    def curve(self, config):
        accuracy = [0.5 + 0.4 * config["quality"] * config["cost"] * (1 - math.exp(-k)) for k in range(1, 10)]
        reports = tuple({"val_accuracy": a, "epoch_time_s": config["cost"]} for a in accuracy)
        return Curve(reports, (config["cost"],) * 9)

    def final_losses(self):
        return np.zeros((0, 2))


def _space(problem, **changes):
    return problem.space.replace(**changes)


def test_a_simulated_study_is_deterministic_per_seed_and_ends_at_its_budget():
    problem = Toy()
    first = simulate(problem, ProductPolicy(_space(problem, seed=1)))
    again = simulate(problem, ProductPolicy(_space(problem, seed=1)))
    other = simulate(problem, ProductPolicy(_space(problem, seed=2)))
    # The same seed gives the same study, trial for trial; another seed another study.
    assert [(t.config, t.ended_at, t.status) for t in first] == [(t.config, t.ended_at, t.status) for t in again]
    assert [t.config for t in first] != [t.config for t in other]
    # Nothing ends after the budget; trials running then are cut off, not counted.
    assert max(t.ended_at for t in first) <= problem.budget_s
    # MO-ASHA stopped trials early, at its rungs (epochs 1 and 3 of 9), and let others finish.
    stopped = [t for t in first if t.status == "stopped"]
    assert stopped and {t.epochs for t in stopped} <= {1, 3}
    assert any(t.status == "finished" and t.epochs == 9 for t in first)


def test_two_workers_run_trials_side_by_side_on_the_simulated_clock():
    problem = Toy(budget_s=1e9)
    space = _space(problem, scheduler="none", num_samples=4)
    ended = simulate(problem, ProductPolicy(space), budget_s=20.0)
    # Without early stopping every trial runs 9 epochs of `cost` seconds; two run at once, so
    # the summed trial time is close to twice the elapsed time.
    busy = sum(9 * t.config["cost"] for t in ended)
    assert all(t.status == "finished" for t in ended)
    assert busy > 1.5 * max(t.ended_at for t in ended)


@pytest.mark.parametrize(
    "told, state",
    [("infeasible", TrialState.COMPLETE), ("pruned", TrialState.PRUNED), ("ignored", TrialState.FAIL)],
)
def test_the_searcher_never_takes_a_stopped_trial_for_a_full_budget_result(told, state):
    problem = Toy()
    policy = ProductPolicy(_space(problem, seed=0), stopped_trials=told)
    ended = simulate(problem, policy)
    study = policy.searcher.searcher._ot_study
    by_number = {trial.number: trial for trial in study.trials}
    stopped = [t for t in ended if t.status == "stopped"]
    assert stopped
    # Trials are numbered in the order they were suggested, as the simulator numbers them.
    for trial in stopped:
        assert by_number[trial.trial_id].state == state
        if told == "infeasible":
            # Told with the values it reached, and a violated constraint: the epochs it missed.
            assert by_number[trial.trial_id].constraints["epochs_missing"] == pytest.approx(1 - trial.epochs / 9)
    # Optuna's own front holds full-budget trials only.
    finished = {t.trial_id for t in ended if t.status == "finished"}
    assert {trial.number for trial in study.best_trials} <= finished


def test_syne_tunes_moasha_runs_on_the_same_loop():
    problem = Toy()
    ended = simulate(problem, SyneTunePolicy(problem.space, seed=0))
    # The peer suggests, stops at the same rungs and finishes trials through the same clock.
    assert {t.status for t in ended} == {"finished", "stopped"}
    assert {t.epochs for t in ended if t.status == "stopped"} <= {1, 3}


def test_the_simulated_benchmark_writes_its_results_in_seconds(tmp_path):
    from benchmarks import simulate as benchmark

    benchmark.main(["--benchmarks", "mnist-curves", "--seeds", "2", "--arms", "default", "random",
                    "--processes", "1", "--out", str(tmp_path)])  # fmt: skip
    results = json.loads((tmp_path / "simulated.json").read_text())
    mnist = results["benchmarks"]["mnist-curves"]
    # The documented schema, with the default and random arms measured on 2 seeds.
    assert {"third_party", "source", "seeds", "budget_s", "default_arm", "random_arm", "peer_arm", "arms"} <= set(mnist)
    assert mnist["seeds"] == 2 and set(mnist["arms"]) == {"default", "random"}
    for arm in mnist["arms"].values():
        assert {"hv_regret_mean", "hv_regret_se", "hv_at_budget_mean", "time_to_random_final_hv_s"} <= set(arm)
        # Regret is what the true front has and the arm did not reach.
        assert 0 <= arm["hv_regret_mean"] <= mnist["true_front_hv"]
    assert (tmp_path / "simulated_mnist-curves.png").stat().st_size > 0


def test_the_recipe_benchmark_scores_the_front_over_recipes_and_the_answer_per_target(tmp_path):
    from benchmarks import simulate as benchmark

    benchmark.main(["--experiment", "recipes", "--benchmarks", "mnist-recipes", "--seeds", "2",
                    "--arms", "default", "per-epoch-default", "--processes", "1", "--out", str(tmp_path)])  # fmt: skip
    results = json.loads((tmp_path / "simulated_recipes.json").read_text())
    recipes = results["benchmarks"]["mnist-recipes"]
    # The shape of simulated.json, regret against the table's front of every recipe, and per
    # arm and target the answer's training time over the table's fastest recipe.
    assert recipes["objectives"] == {"val_accuracy": "max", "train_time_s": "min"}
    for arm in recipes["arms"].values():
        assert 0 <= arm["hv_regret_mean"] <= recipes["true_front_hv"]
        assert set(arm["targets"]) == {"0.93", "0.94", "0.95", "0.96", "0.97"}
        # Nothing is faster than the table's fastest recipe.
        assert all(target["answer_over_best_median"] >= 1.0 for target in arm["targets"].values())


def test_the_capping_benchmark_caps_only_where_the_arm_says_and_reports_the_oracle(tmp_path):
    from benchmarks import simulate as benchmark

    benchmark.main(["--experiment", "capping", "--benchmarks", "mnist-recipes", "--seeds", "1",
                    "--arms", "default", "tpe-moasha", "--processes", "1", "--out", str(tmp_path)])  # fmt: skip
    recipes = json.loads((tmp_path / "simulated_capping.json").read_text())["benchmarks"]["mnist-recipes"]
    # The default over recipes caps trials; the arm with capping off never does.
    assert recipes["arms"]["default"]["capped_mean"] > 0
    assert recipes["arms"]["tpe-moasha"]["capped_mean"] == 0
    # The oracle trains only the true front's recipes: some of the budget, never more than all of it.
    assert 0 < recipes["oracle_s"] < recipes["budget_s"]


def test_a_real_run_is_replayed_on_the_table_it_is_compared_with():
    import pandas as pd

    from benchmarks.search_efficiency import replay
    from benchmarks.simulate import normalisation
    from benchmarks.simulate import problem
    from search.methods import pareto

    table = problem("mnist-curves")
    rows = [row for row in table.rows[:12] if len(row["epochs"]) == table.space.max_epochs]
    # A "run" whose trials took exactly the table's values, but ran 1.5x slower.
    run = pd.DataFrame(
        [{**row["params"], **row["epochs"][-1], "epoch": len(row["epochs"]), "status": "finished"} for row in rows]
    )
    run["epoch_time_s"] *= 1.5
    replayed = replay(run, run[run["status"] == "finished"])
    scale, reference, _ = normalisation("mnist-curves")
    own = pareto.hypervolume(scale(pareto.losses([row["epochs"][-1] for row in rows], table.objectives)), reference)
    # The replay scores the configurations with the table's values, not the run's slower times.
    assert replayed["table_replay_hv"] == pytest.approx(own)
    assert replayed["epoch_time_vs_table"] == pytest.approx(1.5)


def test_the_warm_start_benchmark_starts_a_shifted_study_from_an_earlier_one(tmp_path):
    from benchmarks import simulate as benchmark

    table = benchmark.problem("mnist-recipes")
    new, earlier = benchmark.window(table.space, *benchmark.TARGET_WINDOW), benchmark.window(table.space, *benchmark.EARLIER_WINDOW)
    # The first two ranges are shifted (the log-scale learning rate, the batch size's options);
    # the windows overlap, and the rest of the space is the table's.
    rate = table.space.params["learning_rate"]
    assert rate.low == earlier.params["learning_rate"].low < new.params["learning_rate"].low < earlier.params["learning_rate"].high < new.params["learning_rate"].high == pytest.approx(rate.high)
    assert new.params["batch_size"].options == [64, 128, 256] and earlier.params["batch_size"].options == [32, 64, 128]
    assert {k: v for k, v in new.params.items() if k not in ("learning_rate", "batch_size")} == {k: v for k, v in table.space.params.items() if k not in ("learning_rate", "batch_size")}
    # A warm-started policy was told the earlier study's trials that fit, and skipped the others.
    policy = benchmark.policy_for(table, benchmark.WARM_START_ARMS["warm"], seed=0)
    assert policy.warm.told > 0 and policy.warm.skipped > 0
    assert {row["skipped"] for row in policy.warm.rows} <= {"", "outside the space"}
    benchmark.main(["--experiment", "warm-start", "--benchmarks", "mnist-recipes", "--seeds", "1",
                    "--arms", "cold", "warm", "--processes", "1", "--out", str(tmp_path)])  # fmt: skip
    # Each arm is timed against the cold start's final hypervolume, and the table says so.
    arms = json.loads((tmp_path / "simulated_warm_start.json").read_text())["benchmarks"]["mnist-recipes"]["arms"]
    assert set(arms) == {"cold", "warm"} and arms["cold"]["time_to_default_final_hv_s"] is not None
    assert "cold start (the default)'s final HV" in (tmp_path / "simulated_warm_start.md").read_text()
