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

What a study does with a report that breaks these rules (`ReportCheck`):

- `EPOCH` missing from every report: the intent is plain (one report per epoch), so the study
  numbers them 1, 2, ... itself and says so once (tag `epoch_numbering` of the trial's run).
  Missing from some reports only, or from one that carries `RESUMED_FROM_EPOCH`: the trial fails.
- `EPOCH` not a whole number >= 1, or not above the previous report's (going back or repeating)
  without `RESUMED_FROM_EPOCH` on that report: the trial fails.
- An objective that is not a number (text, a bool, None): the trial fails. NaN or infinity is a
  number: the trial fails as diverged (told FAIL to the searcher), as before.

A trial that fails so ends FAILED with one line naming the key, the value and the rule.

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
import numbers
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


class ContractError(ValueError):
    """A report breaks the trainable contract (see the module docstring): the trial fails."""


# The tag that says a trial's epochs were numbered by the study, its reports carrying none.
EPOCH_NUMBERING = "epoch_numbering"


class ReportCheck:
    """Holds one trial's reports to the contract, in order: `check(metrics)` returns the report
    to pass on (numbered by the study when no report carries `EPOCH`) or raises `ContractError`.

    Example:
        >>> check = ReportCheck(objectives=("val_accuracy",))
        >>> check({"epoch": 1, "val_accuracy": 0.9})["epoch"]
        1
        >>> check({"epoch": 1, "val_accuracy": 0.91})  # doctest: +IGNORE_EXCEPTION_DETAIL
        Traceback (most recent call last):
        ContractError: report 2 has epoch=1 after epoch=1: each report's 'epoch' must be above ...
    """

    def __init__(self, objectives: tuple[str, ...] | frozenset[str] = (), on_numbering: Callable[[str], None] | None = None) -> None:
        self.objectives = tuple(objectives)
        self.on_numbering = on_numbering  # told once, when the study starts numbering epochs
        self.reports = 0
        self.last_epoch: int | None = None
        self.numbering = False

    def __call__(self, metrics: Mapping[str, Any]) -> dict[str, Any]:
        self.reports += 1
        metrics = {**metrics, **self._epoch(metrics)}
        for name in self.objectives:
            value = metrics.get(name)
            if name in metrics and (isinstance(value, bool) or not isinstance(value, numbers.Real)):
                raise ContractError(f"report {self.reports} has {name}={value!r} ({type(value).__name__}): objective {name!r} must be a number")
        return metrics

    def _epoch(self, metrics: Mapping[str, Any]) -> dict[str, Any]:
        """What the report's `EPOCH` becomes (the study's number for it, when numbering)."""
        resumed = metrics.get(RESUMED_FROM_EPOCH)
        if EPOCH not in metrics:
            if resumed is not None or (self.reports > 1 and not self.numbering):
                why = "it continues from a checkpoint" if resumed is not None else "earlier reports had one"
                raise ContractError(f"report {self.reports} has no 'epoch' but {why}: every report must carry 'epoch' (epochs done: 1, 2, ...)")
            if not self.numbering and self.on_numbering is not None:
                self.on_numbering("the trainable's reports carry no 'epoch'; the study numbers them 1, 2, ... (one report per epoch)")
            self.numbering = True
            self.last_epoch = self.reports
            return {EPOCH: self.reports, EPOCH_NUMBERING: "by the study: the trainable's reports carry no 'epoch'"}
        epoch = metrics[EPOCH]
        if self.numbering:
            raise ContractError(f"report {self.reports} has epoch={epoch!r} but earlier reports had none: report 'epoch' always or never")
        if isinstance(epoch, bool) or not isinstance(epoch, numbers.Real) or epoch != int(epoch) or epoch < 1:
            raise ContractError(f"report {self.reports} has epoch={epoch!r}: 'epoch' must be a whole number >= 1 (epochs done)")
        if resumed is None and self.last_epoch is not None and epoch <= self.last_epoch:
            raise ContractError(
                f"report {self.reports} has epoch={epoch!r} after epoch={self.last_epoch}: each report's 'epoch' must be above the "
                f"previous one's (a report that continues from a checkpoint carries {RESUMED_FROM_EPOCH!r})"
            )
        self.last_epoch = int(epoch)
        return {EPOCH: int(epoch)}


def epoch_model_dir(model_dir: str, epoch: int) -> str:
    """Where a trial asked for `epoch_models` saves its model after epoch `epoch`."""
    import os

    return os.path.join(model_dir, f"epoch-{int(epoch)}")


class Trainable(Protocol):
    """`train(config, context)`; see the module docstring for the contract."""

    def __call__(self, config: dict[str, Any], context: TrialContext | None = None) -> Mapping[str, Any] | None: ...
