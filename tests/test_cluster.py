"""A study on an existing Ray cluster (`--address`), and the check that every node sees its files."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from search.cluster import _probe

ROOT = Path(__file__).parents[1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def ray_head(tmp_path):
    """A one-node Ray cluster started with `ray start --head`, as a user would; stopped after."""
    port = _free_port()
    ray = Path(sys.executable).parent / "ray"
    head = subprocess.Popen(
        [str(ray), "start", "--head", f"--port={port}", "--num-cpus=2", "--include-dashboard=false",
         "--disable-usage-stats", "--block"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path,
    )  # fmt: skip
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.5)
    yield f"127.0.0.1:{port}"
    head.terminate()
    head.wait(timeout=60)
    # `ray start` leaves the address of the cluster it started for later `ray.init()` calls.
    current = Path("/tmp/ray/ray_current_cluster")
    if current.is_file() and current.read_text().strip().endswith(f":{port}"):
        current.unlink()


@pytest.mark.timeout(300)
def test_a_study_runs_on_an_existing_cluster(tmp_path, ray_head):
    command = [
        sys.executable, "-m", "search.launch", str(ROOT / "spaces/mnist.py"), "--address", ray_head,
        "--trials", "2", "--max-epochs", "1", "--set", "data_source=bundled", "--set", "train_examples=256",
        "--results-dir", str(tmp_path / "results"),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=280)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "2 trials (2 finished" in done.stdout


def test_a_node_that_does_not_share_the_results_directory_is_named(tmp_path):
    marker = tmp_path / ".shared-check"
    # What a node with its own, different disk at the same path sees.
    marker.write_text("another study's token")
    problems = _probe(str(marker), "this study's token", str(tmp_path / "mlflow.db"), None)
    assert problems == [f"sees another {marker} (not the same filesystem)"]
    # And one without the path at all, nor the store's folder.
    problems = _probe(str(tmp_path / "absent" / ".shared-check"), "t", "/absent/mlflow.db", None)
    assert problems[0].startswith("cannot read and write the results directory")
    assert problems[1] == "does not see the folder of the MLflow store /absent/mlflow.db"


def test_a_node_that_cannot_reach_the_mlflow_server_is_named(tmp_path):
    marker = tmp_path / ".shared-check"
    marker.write_text("t")
    problems = _probe(str(marker), "t", None, "http://127.0.0.1:9")
    assert len(problems) == 1 and problems[0].startswith("cannot reach the MLflow server http://127.0.0.1:9")
    assert os.listdir(tmp_path) == [".shared-check"]  # the write probe cleaned up after itself
