"""The trainable contract: what a study gives a trial, and what it reads back.

A trainable is any callable `train(config, context) -> metrics`:

- `config` holds the searched parameters, the space's constants and `epochs`, nothing else.
- `context` is a `TrialContext`: where to report, whether to stop, where to write. A study
  always passes one (single-process and multi-worker trials alike); called without one (in a
  notebook), a trainable should print one line per epoch and write nothing.
- It calls `context.report(metrics)` after each epoch; `metrics` has `EPOCH` and numbers
  (text values become tags of the trial's MLflow run). Its last report carries `COMPLETE: True`.
- It returns its last report. A trainable that reports nothing may return its metrics instead:
  the study then records them once, as the trial's only and last result.

Optional declarations, read by the launcher before any trial starts (`search.space`):
`train.metrics` (every name it may report, so a misspelt objective fails at once),
`train.check_config(config)` (raises `ValueError` on a config it would refuse) and
`train.shown_metrics` (columns of the study's summary table besides objectives and parameters),
`train.worker_imports` (modules a study's worker processes import as they start, before their
first trial, e.g. TensorFlow: the import then overlaps the study's own start).

Optional, for speed figures free of contention: `train.remeasure(config, context) -> metrics`
measures a configuration the study trained again (its speed, not its accuracy), and
`train.remeasured_metrics` names what it returns. Once the trials have ended the study calls it
for each front configuration, one at a time on an idle node, with `context.model_dir` (the
trial's saved model) and `context.cache_dir`; it reports nothing and writes nothing.

Optional, for final metrics a trial left out because the study did not need them
(`TrialContext.needed`): `train.finish(config, context) -> metrics`, with `train.finish_metrics`
naming what it returns. The study calls it for each front trial missing one of them, with the
trial's `model_dir` (where it may write, e.g. the deployed model) and the study's `cache_dir`.

This module imports neither TensorFlow, Ray nor MLflow: the search side reads it too.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from collections.abc import Mapping
from typing import Any
from typing import Protocol

# Result keys with a meaning to the study (everything else is a metric like any other).
EPOCH = "epoch"  # epochs done (1, 2, ...): the schedulers' time axis and MLflow's step
COMPLETE = "complete"  # True on the last report: the trial ended on its own (budget or own early stopping)
RESUMED_FROM_EPOCH = "resumed_from_epoch"  # on the first report after continuing from a checkpoint
TRAIN_TIME_S = "train_time_s"  # cumulative training seconds; a study sums it (`summed_train_time_s`)
# TensorFlow's C++ start-up and runtime chatter off: set before TensorFlow is imported, by the
# Keras kit in its own process (`trainables._keras`) and by a study for its driver and workers.
TENSORFLOW_QUIET = {"TF_CPP_MIN_LOG_LEVEL": "3"}

Report = Callable[[dict[str, Any]], None]


def print_report(metrics: Mapping[str, Any]) -> None:
    """One line per epoch: the numbers of the report."""
    shown = {key: value for key, value in metrics.items() if isinstance(value, (int, float)) and not isinstance(value, bool)}
    print("  ".join(f"{key}={value:.4g}" for key, value in shown.items()))


def never() -> bool:
    return False


@dataclasses.dataclass(frozen=True)
class TrialContext:
    """What a trial is given besides its config.

    Attributes:
        report: called once per epoch with that epoch's metrics (see the module docstring).
        should_stop: poll it often (after every batch); once it returns True the study has given
            up on the trial (stopped early): end at once, without reporting again.
        model_dir: if set, save the trained model there (the study keeps the Pareto front's
            models and registers them in MLflow).
        checkpoint_dir: if set, checkpoint there after every epoch with that epoch's report and,
            finding a checkpoint, continue from it: report the saved epoch again with
            `RESUMED_FROM_EPOCH`, then train the remaining epochs. The study keeps it across an
            interruption or a lost worker and removes it when the trial ends.
        cache_dir: a directory every trial of the study shares (e.g. for a distillation teacher
            trained once); removed when the study ends.
        epoch_models: with `model_dir`, also save the model as it is after every epoch `k` in
            `epoch_model_dir(model_dir, k)`, written before that epoch's report: a study whose
            front is over recipes (every epoch of every trial) registers the models of the
            recipes on its front, and `train.finish` measures them there (so an epoch's save
            may be cheap, weights only, with `finish` writing the servable model from them).
        needed: the metrics the study decides on (its objectives, and what its scheduler
            compares); None means everything. A trainable may leave out costly final metrics
            not in it; if it offers `train.finish`, the study has it measure them for the trials
            that reach the front.

    In a multi-worker trial every worker gets the same context and must report the same number
    of times (Ray Train's report is a barrier); rank 0's reports count, and only rank 0 should
    write into the directories (the others into scratch space: saving may be collective).
    """

    report: Report = print_report
    should_stop: Callable[[], bool] = never
    model_dir: str | None = None
    checkpoint_dir: str | None = None
    cache_dir: str | None = None
    needed: frozenset[str] | None = None
    epoch_models: bool = False


def epoch_model_dir(model_dir: str, epoch: int) -> str:
    """Where a trial asked for `epoch_models` saves its model after epoch `epoch`."""
    import os

    return os.path.join(model_dir, f"epoch-{int(epoch)}")


class Trainable(Protocol):
    """`train(config, context)`; see the module docstring for the contract."""

    def __call__(self, config: dict[str, Any], context: TrialContext | None = None) -> Mapping[str, Any] | None: ...
