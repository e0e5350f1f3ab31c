"""The trainable contract (`trainables.contract`): what any trainable gets and what the study reads."""

import os
import subprocess
import sys

import pytest
from mlflow import MlflowClient

from search.errors import SpaceError
from search.space import Float
from search.space import SearchSpace

# A user's own trainable, in the space file: a Keras 3 model (`import keras`) and a `tf.keras`
# model, each trained a step on made-up data. It reports nothing and returns its metrics.
KERAS_SPACE = """
from search.space import Float, SearchSpace


def train(config, context):
    import numpy as np
    import keras
    import tensorflow as tf

    x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
    y = (x.sum(axis=1) > 0).astype("int64")
    versions = {}
    for name, module in (("keras", keras), ("tf_keras", tf.keras)):
        model = module.Sequential([module.Input(shape=(4,)), module.layers.Dense(2)])
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        model.fit(x, y, epochs=1, verbose=0)
        versions[name] = float(module.__version__.split(".")[0])
    return {"epoch": 1, "score": config["x"], "keras_major": versions["keras"], "tf_keras_major": versions["tf_keras"]}


SPACE = SearchSpace(
    name="keras3",
    trainable=train,
    params={"x": Float(0.0, 1.0)},
    objectives={"score": "max"},
    num_samples=1,
    max_epochs=1,
    scheduler="none",
)
"""


@pytest.mark.timeout(300)
def test_a_users_trainable_gets_the_keras_it_asks_for_and_may_just_return_its_metrics(tmp_path):
    space = tmp_path / "keras3.py"
    space.write_text(KERAS_SPACE)
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}  # a user's shell
    command = [sys.executable, "-m", "search.launch", str(space), "--results-dir", str(tmp_path / "results")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=280, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{tmp_path / 'results' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("keras3")
    [trial] = [r for r in client.search_runs([experiment.experiment_id]) if "mlflow.parentRunId" in r.data.tags]
    # Keras 3 both ways: the study did not turn `tf.keras` into Keras 2 behind the user's back
    # (the Keras kit asks for Keras 2 in its own trials only).
    assert trial.info.status == "FINISHED"
    assert trial.data.metrics["keras_major"] == 3 and trial.data.metrics["tf_keras_major"] == 3
    # The returned metrics were recorded as the trial's result.
    assert 0 <= trial.data.metrics["score"] <= 1
    # The summary shows what this study is about, with no column of another trainable's metrics.
    header = next(line for line in done.stdout.splitlines() if line.lstrip().startswith("trial "))
    assert header.split()[:4] == ["trial", "status", "score", "epoch"]
    assert not {"inference_ms", "tflite_bytes", "params", "train_time_s"} & set(header.split())


def test_a_trainable_of_the_old_form_is_refused_with_what_to_change():
    def train(config, report=None, should_stop=None):
        report({"epoch": 1, "score": 1.0})

    with pytest.raises(SpaceError, match=r"is now `train\(config, context\)` and calls `context.report"):
        SearchSpace(name="old", trainable=train, params={"x": Float(0.0, 1.0)}, objectives={"score": "max"})

    with pytest.raises(SpaceError, match=r"must accept `\(config, context\)`"):
        SearchSpace(name="one", trainable=lambda config: {}, params={"x": Float(0.0, 1.0)}, objectives={"score": "max"})
