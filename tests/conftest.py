"""Shared fixtures: tiny, deterministic settings so the suite stays fast on 2 CPU cores."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

ROOT = Path(__file__).parents[1]

# A training configuration small enough to run in a couple of seconds.
TINY = {"data_source": "bundled", "train_examples": 512, "width": 16, "batch_size": 64, "epochs": 1}


@pytest.fixture
def tiny_config() -> dict:
    return dict(TINY)


@pytest.fixture(scope="session")
def tiny_study(tmp_path_factory):
    """One tiny real study (4 trials, 2 epochs, 1,000 digits), shared by the end-to-end tests."""
    tmp_path = tmp_path_factory.mktemp("study")
    command = [
        sys.executable, "-m", "search.launch", str(ROOT / "spaces/mnist.py"),
        "--trials", "4", "--max-epochs", "2", "--grace-period", "1", "--seed", "1",
        "--set", "data_source=bundled", "--set", "train_examples=1000",
        "--results-dir", str(tmp_path / "results"), "--experiment", "smoke",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=600)
    return tmp_path, done
