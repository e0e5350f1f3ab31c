"""The study's lifecycle: `run_study` runs one from start to end.

- `run`: `run_study` and `StudyResult`, the study as a short pipeline of phases.
- `phases`: each phase (start Ray, open the record, make the method, run the trials, finish).
- `ending`: `StudyEnding`, the one context that owns the study run's status, the signals that
  stop it and the runs of trials still training; `StudyInterrupted`.
- `resume`: carrying on an interrupted study (`--resume`).

Importing this package imports neither Ray, MLflow nor TensorFlow, and sets nothing in the
environment: `run_study` does, as an entry point.
"""

from search.study.ending import StudyInterrupted
from search.study.run import StudyResult
from search.study.run import run_study

__all__ = ["StudyInterrupted", "StudyResult", "run_study"]
