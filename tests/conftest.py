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


def per_epoch_space_file(directory: Path) -> Path:
    """`spaces/mnist.py` as a study of per-epoch speed: objectives val_accuracy and
    epoch_time_s, a front over full-budget trials (what the default space was before its front
    went over recipes)."""
    text = (ROOT / "spaces/mnist.py").read_text()
    changes = {
        'objectives={"val_accuracy": "max", "train_time_s": "min"}': 'objectives={"val_accuracy": "max", "epoch_time_s": "min"}',
        'front="recipes",': 'front="trials",',
        'targets={"val_accuracy": [0.93, 0.95, 0.96, 0.97]},': "",
    }
    for old, new in changes.items():
        assert old in text, f"spaces/mnist.py no longer has {old!r}"
        text = text.replace(old, new)
    path = directory / "spaces" / "mnist.py"  # the name the study run logs it under
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    return path


def _tiny(tmp_path: Path, space_file: Path) -> tuple[Path, subprocess.CompletedProcess]:
    command = [
        sys.executable, "-m", "search.launch", str(space_file),
        "--trials", "4", "--max-epochs", "2", "--grace-period", "1", "--seed", "1",
        "--set", "data_source=bundled", "--set", "train_examples=1000",
        "--results-dir", str(tmp_path / "results"), "--experiment", "smoke",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=600)
    return tmp_path, done


@pytest.fixture(scope="session")
def tiny_study(tmp_path_factory):
    """One tiny real study of the default space, its front over recipes (4 trials, 2 epochs,
    1,000 digits), shared by the end-to-end tests."""
    return _tiny(tmp_path_factory.mktemp("study"), ROOT / "spaces/mnist.py")


@pytest.fixture(scope="session")
def tiny_per_epoch_study(tmp_path_factory):
    """The same tiny study with per-epoch speed as its objective and a front over full-budget trials."""
    tmp_path = tmp_path_factory.mktemp("per-epoch-study")
    return _tiny(tmp_path, per_epoch_space_file(tmp_path))
