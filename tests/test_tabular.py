"""A second task on the kit (the breast-cancer table) runs through the launcher unchanged, and its
front models are MLflow models: loaded with pyfunc, and served over HTTP by `mlflow models serve`."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import pytest

from trainables.contract import TrialContext
from trainables.tabular import load_breast_cancer
from trainables.tabular import train

ROOT = Path(__file__).parents[1]


def test_the_tabular_task_trains_on_the_kit_with_compression():
    reports = []
    config = {"width": 16, "epochs": 4, "learning_rate": 1e-2, "quantization": "dynamic", "final_sparsity": 0.5}
    final = train(config, TrialContext(report=reports.append))
    # The kit's per-epoch reports and model metrics, for a model the MNIST code never saw.
    assert [r["epoch"] for r in reports] == [1, 2, 3, 4] and reports[-1]["complete"]
    assert reports[0]["warmup_s"] > 0 and final["epoch_time_s"] > 0
    assert final["sparsity"] == pytest.approx(0.5, abs=0.02)
    # The deployed model takes raw features (it standardises them itself) and classifies as
    # the Keras model does: the majority class alone is 63% of the rows.
    assert final["val_accuracy"] > 0.85 and final["tflite_bytes"] > 0
    assert final["tflite_accuracy"] == pytest.approx(final["val_accuracy"], abs=0.03)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.timeout(600)
def test_a_tabular_study_registers_front_models_that_load_and_serve(tmp_path):
    results = tmp_path / "results"
    command = [
        sys.executable, "-m", "search.launch", str(ROOT / "spaces/breast_cancer.py"),
        "--trials", "4", "--max-epochs", "4", "--grace-period", "2", "--seed", "0",
        "--results-dir", str(results), "--experiment", "tumours",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=400, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    tracking_uri = f"sqlite:///{results / 'mlflow.db'}"
    mlflow.set_tracking_uri(tracking_uri)
    rows = load_breast_cancer().x_val[:8]

    # pyfunc: the knee's deployed model, by alias, on raw rows of the table.
    model = mlflow.pyfunc.load_model("models:/tumours@knee")
    predicted = model.predict(rows)
    assert predicted.shape == (8, 2) and np.isfinite(predicted).all()
    assert model.metadata.get_input_schema().inputs[0].shape == (-1, 30)

    # HTTP: `mlflow models serve` in this environment, on 127.0.0.1, answering a JSON request.
    port = _free_port()
    server = subprocess.Popen(
        ["mlflow", "models", "serve", "-m", "models:/tumours@best-tflite_accuracy", "--env-manager", "local", "--host", "127.0.0.1", "--port", str(port)],
        env={**os.environ, "MLFLOW_TRACKING_URI": tracking_uri},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=tmp_path,
    )  # fmt: skip
    try:
        deadline = time.time() + 240
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2)
                break
            except OSError:
                assert server.poll() is None, server.stderr.read().decode()[-3000:]
                assert time.time() < deadline, "the model server did not answer /ping within 240 s"
                time.sleep(1)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations",
            data=json.dumps({"inputs": rows.tolist()}).encode(),
            headers={"Content-Type": "application/json"},
        )
        answer = json.loads(urllib.request.urlopen(request, timeout=60).read())
    finally:
        server.terminate()
        server.wait(timeout=30)
    served = np.asarray(answer["predictions"])
    expected = mlflow.pyfunc.load_model("models:/tumours@best-tflite_accuracy").predict(rows)
    assert served.shape == (8, 2)
    np.testing.assert_allclose(served, expected, rtol=1e-4, atol=1e-4)
