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
    done = run_in_terminal(command, cwd=tmp_path, timeout=600)
    return tmp_path, done


TERMINAL_COLUMNS = 100  # the window the end-to-end studies print to


def run_in_terminal(command: list[str], *, cwd: Path, timeout: float, columns: int = TERMINAL_COLUMNS) -> subprocess.CompletedProcess:
    """Run `command` with its stdout in a pseudo-terminal `columns` wide (as a user's window),
    its stderr in a pipe; returns what each printed, stdout with the terminal's colours and
    carriage returns removed."""
    import fcntl
    import pty
    import re
    import struct
    import termios
    import threading

    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    environment = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    process = subprocess.Popen(command, cwd=cwd, stdin=subprocess.DEVNULL, stdout=follower, stderr=subprocess.PIPE, env=environment)
    os.close(follower)
    chunks: list[bytes] = []

    def read() -> None:
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the terminal closed: every writer is gone
                return
            if not chunk:
                return
            chunks.append(chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        _, stderr = process.communicate(timeout=timeout)
    finally:
        reader.join(timeout=30)
        os.close(leader)
    stdout = b"".join(chunks).decode(errors="replace").replace("\r\n", "\n").replace("\r", "")
    stdout = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", stdout)
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr.decode(errors="replace"))


def too_wide(text: str, columns: int = TERMINAL_COLUMNS) -> list[str]:
    """The lines of `text` longer than `columns`, but for a line that is one link (printed
    whole, on its own line, where a terminal keeps it clickable)."""
    return [line for line in text.splitlines() if len(line) > columns and not (line.strip().startswith("http") and " " not in line.strip())]


def unfolded(text: str) -> str:
    """`text` with shell commands folded by `search.record.terminal.command` joined again."""
    import re

    return re.sub(r" \\\n\s+", " ", text)


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
