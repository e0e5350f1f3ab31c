"""A compact progress view: one line per trial that ends (and a heartbeat every 30 s while
none does), with the study's running totals, best value so far and estimated time left."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING
from typing import Any
from typing import TextIO

from ray import tune

from search.errors import DiskFull
from search.record.terminal import wrap_parts

if TYPE_CHECKING:
    from ray.tune.experiment import Trial


def _clock(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    return f"{minutes:02d}:{seconds:02d}"


class ProgressLines(tune.Callback):
    """Print a line whenever a trial finishes, is stopped early or fails.

    Example line::

        [02:41] trial-007 stopped at epoch 2: val_accuracy=0.912 epoch_time_s=0.383 | 7/20 ended
        (4 finished, 2 stopped, 1 failed), 2 running, best val_accuracy=0.968 (trial-003)
    """

    def __init__(
        self,
        *,
        total: int,
        objectives: dict[str, str],
        name_of: Callable[[Trial], str],
        stopped_early: Callable[[str], bool],
        stream: TextIO | None = None,
        heartbeat_s: float = 30.0,
        already_ended: dict[str, int] | None = None,
        rung_objectives: dict[str, str] | None = None,
        cut_off: Callable[[str], bool] | None = None,
        time_budget_s: float | None = None,
        max_epochs: int | None = None,
        width: int | None = None,
    ) -> None:
        self.width = width  # columns to fold each line to; None: the terminal's
        self.max_epochs = max_epochs
        self.cut_off = cut_off or (lambda trial_id: False)
        self.time_budget_s = time_budget_s
        self.total = total
        self.objectives = objectives
        # Shown too, e.g. for trials stopped before the objectives were measured.
        self.shown = list(dict.fromkeys([*objectives, *(rung_objectives or {})]))
        self.primary, self.mode = next(iter(objectives.items()))
        self.name_of = name_of
        self.stopped_early = stopped_early
        self.stream = stream
        self.start = self.last_said = time.monotonic()
        self.heartbeat_s = heartbeat_s
        self.counts = {"finished": 0, "stopped": 0, "failed": 0, "cut off": 0, **(already_ended or {})}
        self.best: tuple[float, str] | None = None

    def _say(self, text: str, trials: list, ended_trial: Trial | None = None) -> None:
        ended = sum(self.counts.values())
        elapsed = time.monotonic() - self.start
        running = sum(1 for t in trials if t.status == "RUNNING" and t is not ended_trial)
        cut = f", {self.counts['cut off']} cut off" if self.counts["cut off"] else ""
        best = f", best {self.primary}={self.best[0]:.4g} ({self.best[1]})" if self.best else ""
        # Remaining time, assuming the remaining trials take as long on average as the ended ones;
        # once every trial has started, the longest of the running ones to its last epoch (a
        # large trial left alone at the end); never beyond the time budget.
        left = ""
        if 0 < ended < self.total:
            estimate = elapsed / ended * (self.total - ended)
            if ended + running >= self.total:
                still = [t for t in trials if t.status == "RUNNING" and t is not ended_trial]
                estimate = max((self._to_last_epoch(t) for t in still), default=0.0) or estimate
            if self.time_budget_s is not None:
                estimate = max(min(estimate, self.time_budget_s - elapsed), 0.0)
            left = f", ~{_clock(estimate)} left"
        counts = (
            f"{ended}/{self.total} ended ({self.counts['finished']} finished, {self.counts['stopped']} stopped, "
            f"{self.counts['failed']} failed{cut}), {running} running{best}{left}"
        )
        print(
            wrap_parts([f"[{_clock(elapsed)}] {text}", counts], self.width, indent="        "),
            file=self.stream or sys.stdout,  # looked up late: a notebook's stdout cannot be pickled
            flush=True,
        )
        self.last_said = time.monotonic()

    def _to_last_epoch(self, trial: Trial) -> float:
        """The time a running trial needs to reach `max_epochs` at its pace so far; 0 unknown."""
        result = trial.last_result or {}
        done, spent = result.get("training_iteration"), result.get("time_total_s")
        if not self.max_epochs or not done or not spent:
            return 0.0
        return max(self.max_epochs - done, 0) * spent / done

    def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
        # A heartbeat while long trials run and none ends.
        if time.monotonic() - self.last_said >= self.heartbeat_s:
            self._say("still running", trials)

    def on_trial_complete(self, iteration: int, trials: list, trial: Trial, **info: Any) -> None:
        result = trial.last_result or {}
        status = "stopped" if self.stopped_early(trial.trial_id) else "finished"
        if self.cut_off(trial.trial_id):  # the time budget ran out (decided by the recorder)
            status = "cut off"
        self.counts[status] += 1
        value = result.get(self.primary) if status == "finished" else None  # full budget only
        if isinstance(value, (int, float)) and (
            self.best is None or (value > self.best[0] if self.mode == "max" else value < self.best[0])
        ):
            self.best = (float(value), self.name_of(trial))
        shown = " ".join(
            f"{metric}={result[metric]:.4g}" for metric in self.shown if metric in result
        )
        self._say(f"{self.name_of(trial)} {status} at epoch {result.get('epoch', '?')}: {shown}", trials, trial)

    def on_trial_error(self, iteration: int, trials: list, trial: Trial, **info: Any) -> None:
        from search.record.tracking import error_message

        message = error_message(trial)
        full = DiskFull.from_message(message)
        if full is not None:  # not the trial's failure: it runs again on --resume
            self._say(f"{self.name_of(trial)} cut short: {full}; the study stops", trials, trial)
            return
        self.counts["failed"] += 1
        self._say(f"{self.name_of(trial)} FAILED: {message[:200]}", trials, trial)
