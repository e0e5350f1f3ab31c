"""A real MLflow server serves a study's runs over its REST API (what the MLflow UI reads)."""

import json
import socket
import subprocess
import sys
import time
import urllib.request

import pytest


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def _post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


@pytest.fixture
def server(tiny_study):
    tmp_path, done = tiny_study
    assert done.returncode == 0, done.stderr
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{tmp_path / 'results' / 'mlflow.db'}",
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            urllib.request.urlopen(f"{base}/health", timeout=2)
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"mlflow server did not start: {process.stderr.read().decode()[-2000:]}")
            time.sleep(0.5)
    yield base
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.mark.timeout(600)
def test_live_server_serves_the_study_parent_and_nested_runs(server):
    api = f"{server}/api/2.0/mlflow"
    experiment = _get(f"{api}/experiments/get-by-name?experiment_name=smoke")["experiment"]
    runs = _post(f"{api}/runs/search", {"experiment_ids": [experiment["experiment_id"]], "max_results": 100})["runs"]
    tags = [{t["key"]: t["value"] for t in run["data"].get("tags", [])} for run in runs]
    parents = [run for run, tag in zip(runs, tags) if tag.get("role") == "study"]
    children = [run for run, tag in zip(runs, tags) if "mlflow.parentRunId" in tag]
    # The experiment, its study run and one nested run per trial, all served.
    assert len(parents) == 1 and len(children) == 4
    parent_id = parents[0]["info"]["run_id"]
    assert all(tag.get("mlflow.parentRunId") in (None, parent_id) for tag in tags)
    # Trials' per-epoch metrics are served with their steps.
    child = children[0]
    history = _get(f"{api}/metrics/get-history?run_id={child['info']['run_id']}&metric_key=val_accuracy")["metrics"]
    assert [m["step"] for m in history] == list(range(1, len(history) + 1))
    # The study run's metrics are there too, and the UI itself is served.
    assert any(m["key"] == "best_val_accuracy" for m in parents[0]["data"]["metrics"])
    with urllib.request.urlopen(server, timeout=10) as page:
        assert page.status == 200 and b"<html" in page.read(2000).lower()
