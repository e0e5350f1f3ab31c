"""What a study leaves behind, in MLflow, and how it is read back.

- `tracking`: the one MLflow writer (on the Ray driver): the study run, a nested run per
  trial, run statuses.
- `front`: the Pareto front of full-budget trials, the front measured alone, the registry.
- `tables`, `plots`, `progress`: the study as a table, charts and one line per ended trial.
- `serving`: front models as MLflow models.
- `results`: studies read back (`load_study`, `list_studies`).
"""
