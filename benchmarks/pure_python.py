"""A pure-Python trainable and space for measuring what the framework itself costs.

Each epoch sleeps `epoch_s` seconds and reports a made-up score, so everything else a study spends
is the framework's: imports, Ray, MLflow, scheduling, the end of the study. `benchmarks.overhead`
runs it through the launcher and through plain Ray Tune, side by side.
"""

from __future__ import annotations

import math
import time
from typing import Any

from trainables.contract import EPOCH
from trainables.contract import TrialContext

EPOCHS = 9
EPOCH_S = 0.05


def train(config: dict[str, Any], context: TrialContext) -> dict[str, Any]:
    """`epochs` epochs of `epoch_s` seconds each; the score grows with x and the epochs."""
    report: dict[str, Any] = {}
    for epoch in range(1, int(config["epochs"]) + 1):
        time.sleep(float(config.get("epoch_s", EPOCH_S)))
        report = {EPOCH: epoch, "score": (1 - math.exp(-epoch / 3)) * (1 - (config["x"] - 0.3) ** 2), "cost": config["x"] * epoch}
        context.report(report)
    return report


train.metrics = ("score", "cost")


def space_file(name: str, *, trials: int, epochs: int, epoch_s: float = EPOCH_S, searcher: str = "tpe") -> str:
    """A space file for `train`: `trials` trials of `epochs` epochs of `epoch_s` seconds, 2 at a
    time on 1 CPU each, no early stopping."""
    return f"""\
from benchmarks.pure_python import train
from search.space import Float, SearchSpace

SPACE = SearchSpace(
    name={name!r},
    trainable=train,
    params={{"x": Float(0.0, 1.0)}},
    objectives={{"score": "max", "cost": "min"}},
    constants={{"epoch_s": {epoch_s!r}}},
    num_samples={trials},
    max_epochs={epochs},
    max_concurrent=2,
    cpus_per_trial=1,
    scheduler="none",
    searcher={searcher!r},
)
"""
