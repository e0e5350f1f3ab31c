"""Trials train under the tf.distribute strategy that fits what they were given."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

ROOT = Path(__file__).parents[1]

# Run in a fresh process: the CPU must be split into logical devices before TensorFlow starts.
TWO_REPLICAS = """
import json
from trainables import distribute
distribute.split_cpu(2)
from trainables.contract import TrialContext
from trainables.mnist import train
reports = []
final = train({config}, TrialContext(report=reports.append))
print(json.dumps({{"first": reports[0], "final": final}}))
"""


@pytest.mark.timeout(300)
def test_two_logical_cpus_train_as_two_mirrored_replicas_with_twice_the_global_batch(tiny_config):
    config = {**tiny_config, "epochs": 2, "lr_scaling": "linear", "learning_rate": 0.002}
    done = subprocess.run(
        [sys.executable, "-c", TWO_REPLICAS.format(config=repr(config))],
        capture_output=True, text=True, cwd=ROOT, timeout=280,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    first, final = result["first"], result["final"]
    # The batch size is per replica: two replicas step through twice as many examples at once,
    # and the linear scaling rule doubles the learning rate with them.
    assert first["strategy"] == "MirroredStrategy" and first["replicas"] == 2
    assert first["global_batch_size"] == 2 * tiny_config["batch_size"]
    assert first["learning_rate_applied"] == pytest.approx(2 * 0.002)
    # The model trains and reports like any other trial.
    assert final["epoch"] == 2 and final["complete"] is True
    assert final["val_accuracy"] > 0.3  # chance is 0.1
    assert final["epoch_time_s"] > 0 and final["tflite_bytes"] > 0


def test_one_cpu_trains_one_replica_and_says_mixed_precision_did_not_apply(tiny_config):
    from trainables._keras import keras
    from trainables.contract import TrialContext
    from trainables.mnist import train

    reports: list[dict] = []
    final = train({**tiny_config, "mixed_precision": True, "jit_compile": True}, TrialContext(report=reports.append))
    first = reports[0]
    assert first["strategy"] == "default" and first["replicas"] == 1 and first["workers"] == 1
    assert first["global_batch_size"] == tiny_config["batch_size"]
    assert first["learning_rate_applied"] == pytest.approx(1e-3)  # no scaling unless asked
    # float16 on a CPU would only be slower: the trial says so and trains in float32 (with XLA).
    assert "mixed_precision ignored" in first["notes"]
    assert keras.mixed_precision.global_policy().name == "float32"
    assert 0.0 <= final["val_accuracy"] <= 1.0


def test_a_mixed_precision_model_keeps_float32_logits():
    from trainables._keras import keras
    from trainables.models import build_model

    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = build_model("cnn", width=8, input_shape=(8, 8, 1))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    # Computation in float16, but the logits the loss sees are float32 (stable softmax).
    assert model.layers[0].compute_dtype == "float16"
    assert model.output.dtype == "float32"


@pytest.mark.parametrize(
    "tf_config, expected",
    [
        (None, (1, 0)),
        ({"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}}, (2, 1)),
        ({"cluster": {"chief": ["c:0"], "worker": ["a:1"]}, "task": {"type": "chief", "index": 0}}, (2, 0)),
        ({"cluster": {"chief": ["c:0"], "worker": ["a:1"]}, "task": {"type": "worker", "index": 0}}, (2, 1)),
    ],
)
def test_tf_config_says_how_many_workers_and_which_one_is_the_chief(monkeypatch, tf_config, expected):
    from trainables.distribute import _workers_in_tf_config

    if tf_config is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", json.dumps(tf_config))
    assert _workers_in_tf_config() == expected


@pytest.mark.timeout(600)
def test_a_two_worker_trial_trains_through_ray_train_and_reports_to_tune_and_mlflow(tmp_path):
    # With distillation on a cold cache: both workers need the teacher, one trains it under the
    # cache's lock while the other waits. Trained inside the strategy scope, the waiting worker
    # would hold up the collective operations of the one training, and the trial never ends.
    command = [
        sys.executable, "-m", "search.launch", str(ROOT / "spaces/mnist.py"),
        "--trials", "1", "--max-epochs", "2", "--grace-period", "1",
        "--workers-per-trial", "2", "--cpus-per-trial", "2", "--max-concurrent", "1",
        "--set", "data_source=bundled", "--set", "train_examples=512",
        "--set", "distillation=True", "--set", "teacher_epochs=1",
        "--results-dir", str(tmp_path / "results"), "--experiment", "workers",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=580)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "1 finished" in done.stdout
    # Ray Train's own chatter (every report, helper actors) stays off the terminal.
    assert "Reporting training result" not in done.stdout + done.stderr
    assert "cuda" not in (done.stdout + done.stderr).lower()

    client = MlflowClient(f"sqlite:///{tmp_path / 'results' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("workers")
    (trial,) = [r for r in client.search_runs([experiment.experiment_id]) if "mlflow.parentRunId" in r.data.tags]
    assert trial.info.status == "FINISHED"
    # The trial's run says where it trained: 2 workers, one replica each, in step.
    assert trial.data.tags["strategy"] == "MultiWorkerMirroredStrategy"
    assert trial.data.metrics["workers"] == 2 and trial.data.metrics["replicas"] == 2
    assert trial.data.metrics["global_batch_size"] == 2 * int(trial.data.params["batch_size"])
    assert [m.step for m in client.get_metric_history(trial.info.run_id, "val_accuracy")] == [1, 2]
    # One of the workers trained the teacher (the cache was empty), and it learned something;
    # the chief reports it (its `teacher_train_s` is 0 when the other worker trained it).
    assert trial.data.metrics["teacher_val_accuracy"] > 0.1 and "teacher_train_s" in trial.data.metrics
    # The chief saved the model, which the study registered as a front model.
    assert client.search_model_versions("name='workers'")

