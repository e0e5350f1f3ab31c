"""Trainables: plain functions that train one configuration and report what they measure.

Nothing here imports Ray, MLflow or `search`; a trainable runs the same in a notebook.
"""
