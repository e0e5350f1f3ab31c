"""A hyperparameter and configuration search system for TensorFlow/Keras.

`python -m search.launch SPACE_FILE` runs a study; `search.study.run_study` is the Python API.
The packages, lowest layer first: `space` and `errors` (what a space file declares), `methods`
(how to search), `record` (MLflow), `compute` (Ray and the trial process), `study` (the
lifecycle); `launch` and `pick` are the command lines.
"""
