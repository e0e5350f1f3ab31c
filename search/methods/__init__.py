"""How a study searches: who suggests configurations, who stops trials early.

- `schedulers`: MO-ASHA (Pareto-dominance promotion), ASHA and no early stopping, each keeping
  the record of whom it stopped; `recording` gives any Ray Tune scheduler that record.
- `searchers`: Optuna's samplers behind Ray Tune, told only what is true of each trial.
- `pareto`: the Pareto arithmetic both use (losses, non-dominated ranks, promotion order).

Nothing here writes to MLflow or starts Ray.
"""
