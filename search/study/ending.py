"""How a study ends: its run's status, the runs of trials still training, and the signals that
stop it, owned by one context (`StudyEnding`)."""

from __future__ import annotations

from typing import Any


class StudyInterrupted(Exception):
    """Ctrl-C or SIGTERM stopped the study. What ended is recorded; `--resume` carries on.

    `signal_number` is the signal that stopped it (the launcher exits with 128 + it)."""

    def __init__(self, study_name: str, signal_number: int = 2) -> None:
        super().__init__(study_name)
        self.signal_number = signal_number


class StudyEnding:
    """Owns how a study ends: its run's status, the runs of trials still training, and the
    signals that stop it.

    Entered once the study run exists. On leaving, the study run ends FINISHED if the block
    completed, KILLED if Ctrl-C or SIGTERM stopped it (the trials still training end KILLED and
    tagged `interrupted`, so `--resume` runs them again), FAILED on any other exception (the
    trials still training end KILLED, tagged `interrupted` with the study's error). No run is
    left RUNNING.

    SIGINT and SIGTERM (what a cluster scheduler or `docker stop` sends) are only noted when
    they arrive: a KeyboardInterrupt raised wherever a signal lands can cut an MLflow write in
    half and leave the sqlite store locked. Tune's loop checks between its steps (`callback`),
    the study after the loop and after the front phase (`check`). A second signal interrupts at
    once.
    """

    SIGNALS = ("SIGINT", "SIGTERM")

    def __init__(self, runs: Any, parent_run_id: str, trial_runs: Any, study_name: str) -> None:
        self.runs = runs
        self.parent_run_id = parent_run_id
        self.trial_runs = trial_runs
        self.study_name = study_name
        self.requested: int | None = None
        self.stopped_by: BaseException | None = None  # an error that stops the study (`stop`)
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> StudyEnding:
        import signal

        for name in self.SIGNALS:
            number = getattr(signal, name)
            self.previous[number] = signal.signal(number, self._note)
        return self

    def _note(self, signum: int, frame: Any) -> None:
        if self.requested is not None:
            raise KeyboardInterrupt
        self.requested = signum

    def check(self) -> None:
        if self.stopped_by is not None:
            raise self.stopped_by
        if self.requested is not None:
            raise KeyboardInterrupt

    def stop(self, error: BaseException) -> None:
        """Stop the study at Tune's next step, as if `error` had been raised there (a trial
        found the disk full): it then ends FAILED, and the trials still training KILLED."""
        self.stopped_by = self.stopped_by or error

    def stop_requested(self) -> bool:
        return self.requested is not None or self.stopped_by is not None

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, traceback: Any) -> bool:
        import signal

        for number, handler in self.previous.items():
            signal.signal(number, handler)
        if kind is None:
            self.runs.end(self.parent_run_id, "FINISHED")
            return False
        if issubclass(kind, KeyboardInterrupt):
            self.trial_runs.interrupt_running()
            self.runs.end(self.parent_run_id, "KILLED")
            raise StudyInterrupted(self.study_name, self.requested or signal.SIGINT) from None
        try:
            self.trial_runs.interrupt_running(f"the study failed: {type(error).__name__}: {error}"[:500])
            self.runs.client.set_tag(self.parent_run_id, "error", f"{type(error).__name__}: {error}"[-5000:])
        finally:
            self.runs.end(self.parent_run_id, "FAILED")
        return False

    def callback(self) -> Any:
        from ray import tune

        ending = self

        class RaiseWhenRequested(tune.Callback):
            def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
                ending.check()

            def __getstate__(self) -> dict:  # Ray pickles callbacks; the handler stays here
                return {}

        return RaiseWhenRequested()
