"""Each acceleration and compression technique does what it says, on tiny data."""

import numpy as np
import pytest

from trainables import distill
from trainables import quantization
from trainables._keras import keras
from trainables._keras import tf
from trainables.contract import TrialContext
from trainables.data import load_mnist
from trainables.mnist import Mnist
from trainables.mnist import train
from trainables.models import build_model

SMALL = {"data_source": "bundled", "train_examples": 1000, "width": 32, "batch_size": 64, "epochs": 2}


@pytest.fixture(scope="module")
def trained_mlp():
    """An MLP trained for 2 epochs on 1,000 digits, and the validation split."""
    digits = load_mnist(source="bundled")
    model = build_model("mlp", width=32)
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), ["accuracy"])
    model.fit(digits.x_train[:1000], digits.y_train[:1000], epochs=2, batch_size=64, verbose=0)
    return model, digits


def test_quantized_tflite_models_are_smaller_and_run_in_the_interpreter(trained_mlp):
    model, digits = trained_mlp
    keras_accuracy = float(np.mean(np.argmax(model.predict(digits.x_val, verbose=0), -1) == digits.y_val))
    sizes = {}
    for mode in ("none", "dynamic", "int8"):
        flatbuffer = quantization.to_tflite(model, mode, representative=digits.x_train[:100])
        sizes[mode] = len(flatbuffer)
        # The deployed model runs, batched and at batch 1, and keeps the Keras model's accuracy.
        accuracy = quantization.evaluate(flatbuffer, digits.x_val, digits.y_val)
        assert accuracy == pytest.approx(keras_accuracy, abs=0.02)
        assert 0 < quantization.latency_ms(flatbuffer, digits.x_val[0]) < 100
    # 8-bit weights take about a quarter of the float32 bytes.
    assert sizes["dynamic"] < 0.4 * sizes["none"]
    assert sizes["int8"] < 0.4 * sizes["none"]
    # Full-integer quantization makes the input and output tensors int8 too.
    runner = quantization.interpreter(quantization.to_tflite(model, "int8", representative=digits.x_train[:100]))
    assert runner.get_input_details()[0]["dtype"] == np.int8
    assert runner.get_output_details()[0]["dtype"] == np.int8


def test_int8_needs_representative_data(trained_mlp):
    with pytest.raises(ValueError, match="representative"):
        quantization.to_tflite(trained_mlp[0], "int8")


def test_quantization_aware_training_trains_a_fake_quantized_model():
    reports = []
    final = train({**SMALL, "quantization": "qat", "epochs": 3}, TrialContext(report=reports.append))
    float_final = train({**SMALL, "epochs": 1}, TrialContext(report=lambda m: None))
    # It learns (loss falls, accuracy well above the 10% of guessing) ...
    assert reports[-1]["loss"] < reports[0]["loss"]
    assert final["val_accuracy"] > 0.5
    # ... and deploys as an 8-bit model, about a quarter of the float one, as accurate as in Keras.
    assert final["tflite_bytes"] < 0.4 * float_final["tflite_bytes"]
    assert final["tflite_accuracy"] == pytest.approx(final["val_accuracy"], abs=0.03)


def test_qat_refuses_pruning():
    with pytest.raises(ValueError, match="cannot be combined with quantization='qat'"):
        train({**SMALL, "quantization": "qat", "final_sparsity": 0.5})


def test_pruning_and_quantization_combine():
    dense = train({**SMALL, "quantization": "int8"}, TrialContext(report=lambda m: None))
    pruned = train({**SMALL, "quantization": "int8", "final_sparsity": 0.8}, TrialContext(report=lambda m: None))
    assert pruned["sparsity"] == pytest.approx(0.8, abs=0.01)
    # The flatbuffer keeps its shape, but the zeros compress: the gzipped model is much smaller.
    assert pruned["tflite_bytes_gzip"] < 0.6 * dense["tflite_bytes_gzip"]
    assert 0 < pruned["tflite_accuracy"] <= 1 and pruned["tflite_ms"] > 0


@pytest.mark.parametrize(
    "change",
    [
        {"optimizer": "sgd", "learning_rate": 0.05},
        {"optimizer": "momentum", "momentum": 0.9, "learning_rate": 0.02},
        {"optimizer": "adam", "lr_schedule": "cosine"},
    ],
    ids=["sgd", "momentum", "adam-cosine"],
)
def test_every_optimizer_and_schedule_trains(change):
    reports = []
    train({**SMALL, **change, "epochs": 3}, TrialContext(report=reports.append))
    assert reports[-1]["loss"] < reports[0]["loss"]
    assert reports[-1]["val_accuracy"] > 0.3


def test_in_trial_early_stopping_ends_training_when_validation_loss_stops_falling():
    # 64 examples and a large step overfit within a few epochs: validation loss then rises.
    config = {**SMALL, "train_examples": 64, "learning_rate": 0.02, "epochs": 40}
    reports = []
    final = train({**config, "early_stopping_patience": 2}, TrialContext(report=reports.append))
    assert len(reports) < 40
    # The last report still carries the model metrics, so the trial counts as complete.
    assert final["epoch"] == len(reports) and "tflite_accuracy" in final
    losses = [r["val_loss"] for r in reports]
    best = int(np.argmin(losses))
    assert len(reports) == best + 1 + 2  # patience 2 after the best epoch


def test_distillation_loss_follows_the_teacher():
    student = build_model("mlp", width=8, input_shape=(4, 4, 1))
    images = tf.random.stateless_uniform((16, 4, 4, 1), seed=(1, 2))
    labels = tf.constant(np.arange(16) % 10)

    def gradients(teacher_logits, weight=0.5):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(
                distill.distillation_loss(labels, student(images), teacher_logits, temperature=4.0, weight=weight)
            )
        return tape.gradient(loss, student.trainable_variables)

    one = tf.random.stateless_normal((16, 10), seed=(3, 4))
    other = tf.random.stateless_normal((16, 10), seed=(5, 6))
    # Different teachers pull the student differently ...
    assert not np.allclose(gradients(one)[0], gradients(other)[0])
    # ... and with weight 0 the teacher has no say.
    assert np.allclose(gradients(one, weight=0.0)[0], gradients(other, weight=0.0)[0])


def test_the_teacher_is_trained_once_and_then_loaded_from_the_cache(tmp_path):
    config = {**SMALL, "distillation": True, "teacher_epochs": 1, "epochs": 1}
    shared = TrialContext(report=lambda m: None, cache_dir=str(tmp_path))
    first = train(config, shared)
    second = train({**config, "temperature": 2.0, "width": 16}, shared)
    assert first["teacher_train_s"] > 0
    assert second["teacher_train_s"] == 0
    assert second["teacher_val_accuracy"] == first["teacher_val_accuracy"]
    assert len(list(tmp_path.glob("teacher-*.weights.h5"))) == 1
    # The student reports its own metrics: it is smaller than the teacher.
    assert second["params"] < build_model(**Mnist.teacher_recipe).count_params()


def test_conditional_keys_are_refused_where_they_do_not_apply():
    with pytest.raises(ValueError, match="`momentum` applies only when optimizer is 'momentum'"):
        train({**SMALL, "optimizer": "adam", "momentum": 0.9})
    with pytest.raises(ValueError, match="`temperature` applies only when distillation is True"):
        train({**SMALL, "temperature": 2.0})


def test_compression_study_trains_one_teacher_and_records_deployed_metrics(tmp_path):
    """The compression space end to end: 3 distilled trials, 2 at a time, share one teacher."""
    import subprocess
    import sys
    from pathlib import Path

    from mlflow import MlflowClient

    root = Path(__file__).parents[1]
    command = [
        sys.executable, "-m", "search.launch", str(root / "spaces/mnist_compression.py"),
        "--trials", "3", "--max-epochs", "2", "--scheduler", "none", "--max-concurrent", "2", "--seed", "2",
        "--set", "data_source=bundled", "--set", "train_examples=600",
        "--set", "distillation=True", "--set", "teacher_epochs=1",
        "--results-dir", str(tmp_path / "results"), "--experiment", "compression",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    client = MlflowClient(f"sqlite:///{tmp_path / 'results' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("compression")
    study = client.search_runs([experiment.experiment_id], "tags.role = 'study'")[0]
    assert study.data.params["rung_objectives"] == "{'val_accuracy': 'max'}"
    runs = client.search_runs([experiment.experiment_id], f"tags.mlflow.parentRunId = '{study.info.run_id}'")
    assert len(runs) == 3
    # The teacher was trained by exactly one trial; the others loaded it.
    trained = [r.data.metrics["teacher_train_s"] for r in runs]
    assert sum(seconds > 0 for seconds in trained) == 1
    assert len({r.data.metrics["teacher_val_accuracy"] for r in runs}) == 1
    for run in runs:
        params, metrics = run.data.params, run.data.metrics
        # The deployed model's accuracy, gzipped size and latency are the objectives.
        assert {"tflite_accuracy", "tflite_bytes_gzip", "tflite_ms"} <= set(metrics)
        # Conditional parameters are recorded only where they apply.
        assert ("kernel_size" in params) == (params["architecture"] == "cnn")
        assert ("momentum" in params) == (params["optimizer"] == "momentum")
        assert ("final_sparsity" in params) == (params["quantization"] != "qat")
        assert "temperature" in params  # distillation was fixed on, so it always applies
