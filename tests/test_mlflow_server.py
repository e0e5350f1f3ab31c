"""A real MLflow server serves a study's runs over its REST API (what the MLflow UI reads)."""

import http.client
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric
from mlflow.exceptions import MlflowException


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


def _start_server(store: Path, port: int, artifacts: Path | None = None) -> subprocess.Popen:
    """An MLflow server on 127.0.0.1:`port` over the sqlite `store`, once it answers."""
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{store}",
               "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]  # fmt: skip
    if artifacts is not None:
        command += ["--default-artifact-root", artifacts.as_uri()]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 90
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
            return process
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                _stop_server(process)
                pytest.fail(f"mlflow server did not start: {process.stderr.read().decode()[-2000:]}")
            time.sleep(0.5)


def _stop_server(process: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    try:
        os.killpg(process.pid, sig)  # the server and its uvicorn/gunicorn workers
        process.wait(timeout=20)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@pytest.fixture
def server(tiny_study):
    tmp_path, done = tiny_study
    assert done.returncode == 0, done.stderr
    port = _free_port()
    process = _start_server(tmp_path / "results" / "mlflow.db", port)
    yield f"http://127.0.0.1:{port}"
    _stop_server(process)


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


# A quick pure-Python study: 8 trials of 4 epochs, 2 at a time, long enough to lose its server.
OUTAGE_SPACE = """
import time

from search.space import Float, SearchSpace


def train(config, context):
    for epoch in range(1, config["epochs"] + 1):
        time.sleep(0.5)
        context.report({"epoch": epoch, "score": config["x"] * epoch})


train.metrics = ("epoch", "score")

SPACE = SearchSpace(
    name="outage",
    trainable=train,
    params={"x": Float(0.0, 1.0)},
    objectives={"score": "max"},
    num_samples=8,
    max_epochs=4,
    scheduler="none",
    max_concurrent=2,
    seed=0,
)
"""


def _wait_for_two_ended_trials(reader: MlflowClient, launch: subprocess.Popen) -> None:
    """Until two trials of the "outage" study have finished, its launcher still running."""
    deadline, ended = time.monotonic() + 300, 0
    while ended < 2 and launch.poll() is None and time.monotonic() < deadline:
        time.sleep(0.3)
        experiment = reader.get_experiment_by_name("outage")
        runs = reader.search_runs([experiment.experiment_id]) if experiment else []
        ended = sum(r.info.status == "FINISHED" and "mlflow.parentRunId" in r.data.tags for r in runs)
    assert ended >= 2 and launch.poll() is None, "the study ended or stalled before its server could go away"


@pytest.mark.timeout(600)
def test_a_study_rides_out_its_tracking_server_going_away_for_a_few_seconds(tmp_path):
    (tmp_path / "outage.py").write_text(OUTAGE_SPACE)
    store, port = tmp_path / "server" / "mlflow.db", _free_port()
    store.parent.mkdir()
    server = _start_server(store, port, tmp_path / "server" / "artifacts")
    launch = subprocess.Popen(
        [sys.executable, "-m", "search.launch", str(tmp_path / "outage.py"), "--results-dir", str(tmp_path / "results"),
         "--tracking-uri", f"http://127.0.0.1:{port}"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    reader = MlflowClient(f"sqlite:///{store}")  # the server's own store, read directly
    try:
        # Once two trials have ended, the server goes away (killed, as a crash would) for a few
        # seconds, then comes back on the same address and store.
        _wait_for_two_ended_trials(reader, launch)
        _stop_server(server, signal.SIGKILL)
        time.sleep(5)
        server = _start_server(store, port, tmp_path / "server" / "artifacts")  # ~10 s to start
        output, _ = launch.communicate(timeout=300)
    finally:
        if launch.poll() is None:
            os.killpg(launch.pid, signal.SIGKILL)
        _stop_server(server)
    assert launch.returncode == 0, output[-3000:]
    experiment = reader.get_experiment_by_name("outage")
    runs = reader.search_runs([experiment.experiment_id])
    trials = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    (study,) = [r for r in runs if r.data.tags.get("role") == "study"]
    # Every trial is recorded once, whole: each epoch's metric, its configuration, its end.
    assert len(trials) == 8
    assert len({r.data.params["x"] for r in trials}) == 8
    assert all(r.info.status == "FINISHED" for r in [*trials, study])
    for run in trials:
        history = reader.get_metric_history(run.info.run_id, "score")
        assert sorted(m.step for m in history) == [1, 2, 3, 4]
    # The user was told the server stopped answering, and that it came back.
    assert "has not answered for 10 s" in output and "answered again after" in output
    assert "View run" not in output  # MLflow's own per-run links stay out of the terminal
    assert study.data.metrics["trials_finished"] == 8


class _CuttingProxy(ThreadingHTTPServer):
    """Passes requests to a real tracking server; the answer to the first request for each path in
    `cut` loses its body (the server did the work, then went away mid-answer, as a kill can land)."""

    daemon_threads = True

    def __init__(self, upstream: int, cut: set[str]) -> None:
        self.upstream, self.cut = upstream, set(cut)

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def _pass(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                connection = http.client.HTTPConnection("127.0.0.1", proxy.upstream, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                connection.request(self.command, self.path, body or None, headers)
                answer = connection.getresponse()
                data = answer.read()
                self.send_response(answer.status)
                self.send_header("Content-Type", answer.getheader("Content-Type", "application/json"))
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                path = self.path.split("?")[0]
                if path in proxy.cut:
                    proxy.cut.discard(path)
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.wfile.write(data)

            do_GET = do_POST = _pass

        proxy = self
        super().__init__(("127.0.0.1", 0), Handler)


@pytest.mark.timeout(300)
def test_a_write_whose_answer_the_server_lost_is_made_once(tmp_path):
    from search.record.tracking import WatchedClient

    port = _free_port()
    server = _start_server(tmp_path / "mlflow.db", port, tmp_path / "artifacts")
    create, log = "/api/2.0/mlflow/runs/create", "/api/2.0/mlflow/runs/log-batch"
    proxy = _CuttingProxy(port, {create, log})
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        client = WatchedClient(f"http://127.0.0.1:{proxy.server_address[1]}", stream=io.StringIO())
        experiment = client.create_experiment("cut")
        run = client.create_run(experiment, run_name="trial_0", tags={"optuna_trial": "0"})
        client.log_batch(run.info.run_id, metrics=[Metric("score", 0.5, 1000, 1)])
        assert not proxy.cut, "the proxy did not cut both answers"
        # Without the client's own retry, a lost answer is an error that ends the study.
        proxy.cut.add(log)
        plain = MlflowClient(f"http://127.0.0.1:{proxy.server_address[1]}")
        with pytest.raises(MlflowException, match="Connection broken"):
            plain.log_batch(run.info.run_id, metrics=[Metric("score", 0.7, 2000, 2)])
    finally:
        proxy.shutdown()
        _stop_server(server)
    reader = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (made,) = reader.search_runs([experiment])
    assert made.info.run_id == run.info.run_id and made.data.tags["optuna_trial"] == "0"
    history = reader.get_metric_history(run.info.run_id, "score")
    assert [(m.step, m.value) for m in history] == [(1, 0.5), (2, 0.7)]


@pytest.mark.timeout(600)
def test_a_tracking_server_gone_for_longer_than_its_retries_stops_the_study_and_resume_loses_nothing(tmp_path):
    (tmp_path / "outage.py").write_text(OUTAGE_SPACE)
    store, port = tmp_path / "server" / "mlflow.db", _free_port()
    store.parent.mkdir()
    server = _start_server(store, port, tmp_path / "server" / "artifacts")
    # MLflow's client gives up after one retry within seconds (by default about four minutes).
    patience = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}
    command = [sys.executable, "-m", "search.launch", str(tmp_path / "outage.py"), "--results-dir", str(tmp_path / "results"),
               "--tracking-uri", f"http://127.0.0.1:{port}"]  # fmt: skip
    launch = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True, env={**os.environ, **patience})
    reader = MlflowClient(f"sqlite:///{store}")
    try:
        # Once two trials have ended, the server goes away (killed) and stays away.
        _wait_for_two_ended_trials(reader, launch)
        _stop_server(server, signal.SIGKILL)
        output, errors = launch.communicate(timeout=300)
        # The study stops: one line names the server and says how to carry on; exit 1.
        assert launch.returncode == 1, output[-2000:] + errors[-3000:]
        assert errors.startswith(f"error: the MLflow tracking server http://127.0.0.1:{port} did not answer through MLflow's retries")
        assert len(errors.splitlines()) == 2 and "--resume" in errors.splitlines()[1], errors[-3000:]
        # The server back, --resume carries the study on to its end.
        server = _start_server(store, port, tmp_path / "server" / "artifacts")
        resumed = subprocess.run([*command, "--resume"], cwd=tmp_path, capture_output=True, text=True, timeout=300, env={**os.environ, **patience})
    finally:
        if launch.poll() is None:
            os.killpg(launch.pid, signal.SIGKILL)
        _stop_server(server)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-3000:]
    runs = reader.search_runs([reader.get_experiment_by_name("outage").experiment_id])
    trials = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    # Nothing lost, nothing twice: 8 trials, 8 configurations, every epoch recorded once, no run RUNNING.
    assert len(trials) == 8 and len({r.data.params["x"] for r in trials}) == 8
    assert all(r.info.status == "FINISHED" for r in runs)
    for run in trials:
        assert sorted(m.step for m in reader.get_metric_history(run.info.run_id, "score")) == [1, 2, 3, 4]
