"""A study on an existing Ray cluster (`--address`), and the check that every node sees its files."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from search.compute.cluster import _probe

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


def _nodes(*resources):
    return [{"Alive": True, "Resources": r} for r in resources] + [{"Alive": False, "Resources": {"CPU": 64.0, "GPU": 8.0}}]


@pytest.mark.parametrize(
    "nodes, asked, message",
    [
        # No GPU anywhere: a fraction of a GPU can never be granted.
        (({"CPU": 2.0},), {"gpus_per_trial": 0.25}, "gpus_per_trial=0.25 (--gpus-per-trial) asks for a GPU, but this Ray cluster has 1 node with 2 CPUs and 0 GPUs in all"),
        # 3 CPUs exist in all, but no single node has them: a one-worker trial must fit on one node.
        (({"CPU": 2.0}, {"CPU": 1.0}), {"cpus_per_trial": 3}, "A trial needs 3 CPUs and 0 GPUs on one node, but the largest node of this Ray cluster has 2 CPUs and 0 GPUs"),
        # Workers may spread over nodes, but the whole trial must exist at once.
        (({"CPU": 2.0}, {"CPU": 2.0}), {"cpus_per_trial": 6, "workers_per_trial": 2}, "A trial of 2 workers asks for 6 CPUs and 0 GPUs at once, but this Ray cluster has 2 nodes with 4 CPUs"),
        # Each worker's share (here 2 GPUs; the CPUs less what the trial's driver keeps) must fit
        # on some node, even where the cluster has enough in all.
        (({"CPU": 4.0, "GPU": 1.0}, {"CPU": 4.0, "GPU": 1.0}), {"cpus_per_trial": 4, "gpus_per_trial": 4, "workers_per_trial": 2}, "asks for 4 CPUs and 4 GPUs at once"),
        (({"CPU": 4.0, "GPU": 1.0}, {"CPU": 4.0, "GPU": 1.0}, {"CPU": 4.0, "GPU": 1.0}, {"CPU": 4.0, "GPU": 1.0}), {"cpus_per_trial": 4, "gpus_per_trial": 4, "workers_per_trial": 2}, "Each of its workers needs 1.995 CPUs and 2 GPUs on one node"),
    ],
)
def test_a_request_no_node_can_hold_is_refused_with_what_exists_and_the_fix(monkeypatch, nodes, asked, message):
    import ray

    from search.compute import cluster
    from search.errors import SpaceError
    from search.space import load_space

    monkeypatch.setattr(ray, "nodes", lambda: _nodes(*nodes))
    monkeypatch.setattr(cluster, "_autoscales", lambda: False)
    space = load_space(ROOT / "spaces/mnist.py").replace(**asked)
    with pytest.raises(SpaceError) as error:
        cluster.check_resources(space)
    # One sentence: what was asked, what the cluster has, what to do.
    assert message in str(error.value) and "; " in str(error.value)


def test_requests_that_fit_pass_and_a_short_cluster_or_an_autoscaler_gets_a_note(monkeypatch):
    import ray

    from search.compute import cluster
    from search.space import load_space

    space = load_space(ROOT / "spaces/mnist.py")  # 1 CPU per trial, 2 at a time
    monkeypatch.setattr(cluster, "_autoscales", lambda: False)
    monkeypatch.setattr(ray, "nodes", lambda: _nodes({"CPU": 2.0}))
    # Two 1-CPU trials fit on a 2-CPU node: nothing to say.
    assert cluster.check_resources(space) is None
    # Two 2-worker trials of 2 CPUs over two 1-CPU nodes: each worker fits somewhere.
    monkeypatch.setattr(ray, "nodes", lambda: _nodes({"CPU": 1.0}, {"CPU": 1.0}))
    assert cluster.check_resources(space.replace(cpus_per_trial=2, workers_per_trial=2)) is None
    # One 1-CPU node: the trials queue, and the user is told why only one runs.
    monkeypatch.setattr(ray, "nodes", lambda: _nodes({"CPU": 1.0}))
    assert "holds 1 trial of 1 CPUs and 0 GPUs at once, fewer than max_concurrent=2" in cluster.check_resources(space)
    # An autoscaling cluster may add a GPU node: not refused, but said.
    monkeypatch.setattr(cluster, "_autoscales", lambda: True)
    assert "autoscales" in cluster.check_resources(space.replace(gpus_per_trial=1))


@pytest.mark.parametrize(
    "args, message",
    [
        (["--gpus-per-trial", "0.25"], "gpus_per_trial=0.25 (--gpus-per-trial) asks for a GPU, but this Ray cluster has 1 node"),
        (["--cpus-per-trial", "64"], "A trial needs 64 CPUs and 0 GPUs on one node, but the largest node of this Ray cluster has"),
    ],
)
def test_the_launcher_refuses_an_impossible_request_instead_of_waiting_for_ever(tmp_path, args, message):
    command = [sys.executable, "-m", "search.launch", str(ROOT / "spaces/mnist.py"), "--trials", "2",
               "--results-dir", str(tmp_path / "results"), *args]  # fmt: skip
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=180)
    # Exit code 2 and one line naming the request, the cluster and the fix, within seconds ...
    assert done.returncode == 2, done.stderr[-2000:]
    assert message in done.stderr and done.stderr.strip().count("\n") == 0
    assert time.monotonic() - started < 120
    # ... and nothing was recorded: no study run, so no trial ever started.
    from mlflow import MlflowClient

    store = tmp_path / "results" / "mlflow.db"
    if store.exists():
        client = MlflowClient(f"sqlite:///{store}")
        assert not client.search_runs([e.experiment_id for e in client.search_experiments()])


@pytest.mark.timeout(600)
def test_a_study_carries_on_when_a_node_of_its_cluster_is_lost(tmp_path, monkeypatch):
    from mlflow import MlflowClient
    from ray.cluster_utils import Cluster

    from tests.test_resume import SPACE  # checkpoints each epoch on the shared results directory

    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    # Three raylets on this machine, Ray's defaults: a head that runs no trial, and two nodes of
    # 1 CPU each.
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=1)
        doomed = cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        (tmp_path / "nodes.py").write_text(SPACE.replace("num_samples=8", "num_samples=5").replace("0.7", "1.0"))
        launch = subprocess.Popen(
            [sys.executable, "-m", "search.launch", str(tmp_path / "nodes.py"), "--address", cluster.address,
             "--max-retries", "1", "--results-dir", str(tmp_path / "results")],
            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        client = MlflowClient(f"sqlite:///{tmp_path / 'results' / 'mlflow.db'}")
        # Once two trials have finished and two are mid-way (one on each node), a node is lost.
        deadline, ready = time.monotonic() + 300, False
        while not ready and launch.poll() is None and time.monotonic() < deadline:
            time.sleep(0.3)
            experiment = (tmp_path / "results" / "mlflow.db").exists() and client.get_experiment_by_name("resumable")
            runs = client.search_runs([experiment.experiment_id]) if experiment else []
            trials = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
            finished = sum(r.info.status == "FINISHED" for r in trials)
            midway = sum(r.info.status == "RUNNING" and r.data.metrics.get("epoch", 0) >= 1 for r in trials)
            ready = finished >= 2 and midway == 2
        assert ready, "the study ended or stalled before a node could be lost"
        cluster.remove_node(doomed, allow_graceful=False)  # its raylet and every worker on it, killed
        lost_at = time.time()
        output, _ = launch.communicate(timeout=400)
    finally:
        if launch.poll() is None:
            launch.kill()
        cluster.shutdown()
    assert launch.returncode == 0, output[-3000:]
    runs = client.search_runs([experiment.experiment_id])
    trials = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    (study,) = [r for r in runs if r.data.tags.get("role") == "study"]
    # Every trial once, none left RUNNING; the lost node's trial was retried on the other node, in
    # its own run, from its checkpoint: each epoch recorded once.
    assert len(trials) == 5 and len({r.data.params["x"] for r in trials}) == 5
    assert all(r.info.status == "FINISHED" for r in [*trials, study])
    (retried,) = [r for r in trials if r.data.tags.get("retries") == "1"]
    assert retried.data.tags["error_before_retry_1"].startswith("its process was lost (killed, out of memory, or its node went down")
    assert retried.data.tags["resumed"].startswith("continued from its checkpoint after epoch")
    for run in trials:
        assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "score")) == [1, 2, 3]
    assert study.data.metrics["trials_finished"] == 5
    after = min(m.timestamp / 1000 for m in client.get_metric_history(retried.info.run_id, "score") if m.timestamp / 1000 > lost_at)
    print(f"\n{retried.info.run_name}: {retried.data.tags['error_before_retry_1']}; {retried.data.tags['resumed']}; "
          f"its next epoch reported {after - lost_at:.1f} s after the node was lost")
