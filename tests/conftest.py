"""Shared fixtures: tiny, deterministic settings so the suite stays fast on 2 CPU cores."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

# A training configuration small enough to run in a couple of seconds.
TINY = {"data_source": "bundled", "train_examples": 512, "width": 16, "batch_size": 64, "epochs": 1}


@pytest.fixture
def tiny_config() -> dict:
    return dict(TINY)
