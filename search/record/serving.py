"""Front models as MLflow models: a pyfunc any MLflow tool can load, serve and compare.

A front trial's model directory (written by its trainable, see `trainables.contract`) becomes an
MLflow model whose `predict` runs the deployed model: the TFLite file when there is one (the
model whose size, latency and accuracy the study measured), else `model.keras` (Keras 3). Its
signature and input example come from `input_example.npy` / `output_example.npy` when the
trainable wrote them. The code it needs (`search`, `trainables`) travels inside the model, so

    mlflow.pyfunc.load_model("models:/mnist@knee").predict(images)
    mlflow models serve -m models:/mnist@knee --env-manager local

work without this project on the path. Saving imports neither TensorFlow nor the model.
"""

from __future__ import annotations

import importlib.metadata
import logging
import warnings
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np

ROOT = Path(__file__).parents[2]  # the project: `search` and `trainables` travel with the model
TFLITE, KERAS = "model.tflite", "model.keras"


class DeployedModel(mlflow.pyfunc.PythonModel):
    """`predict(inputs)`: the model's outputs (logits, dequantized for integer models) for a
    batch of inputs (an array, or a table with one flattened input per row)."""

    def load_context(self, context):
        artifacts = context.artifacts
        if "tflite" in artifacts:
            from trainables import quantization

            self.flatbuffer = Path(artifacts["tflite"]).read_bytes()
            self.keras_model = None
            self.input_shape = tuple(quantization.interpreter(self.flatbuffer).get_input_details()[0]["shape"][1:])
        else:
            import keras

            self.flatbuffer = None
            self.keras_model = keras.saving.load_model(artifacts["keras"])
            self.input_shape = tuple(self.keras_model.inputs[0].shape[1:])

    def predict(self, context, model_input: np.ndarray, params=None) -> np.ndarray:  # ndarray: no schema from hints
        inputs = np.asarray(model_input.to_numpy() if hasattr(model_input, "to_numpy") else model_input, dtype=np.float32)
        inputs = inputs.reshape(-1, *self.input_shape)
        if self.flatbuffer is not None:
            from trainables import quantization

            return quantization.predict(self.flatbuffer, inputs)
        return np.asarray(self.keras_model.predict(inputs, verbose=0))


def servable(model_dir: Path) -> bool:
    """Whether `model_dir` holds a model `save` can make an MLflow model of."""
    return (model_dir / TFLITE).is_file() or (model_dir / KERAS).is_file()


def save(model_dir: Path, path: Path) -> None:
    """Write the MLflow model of the trained model in `model_dir` to `path` (a new directory);
    every file of `model_dir` goes along as an artifact."""
    from mlflow.models import infer_signature

    # Every file goes along; `DeployedModel` serves the TFLite file when there is one.
    keys = {TFLITE: "tflite", KERAS: "keras"}
    artifacts = {keys.get(f.name, f.name): str(f) for f in sorted(model_dir.iterdir()) if f.is_file()}
    example = model_dir / "input_example.npy"
    outputs = model_dir / "output_example.npy"
    input_example = np.load(example) if example.is_file() else None
    signature = infer_signature(input_example, np.load(outputs)) if input_example is not None and outputs.is_file() else None
    quiet = logging.getLogger("mlflow.pyfunc")  # "a Python object as `python_model`": it is ours
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():  # "Add type hints to `predict`": its signature is given
            warnings.simplefilter("ignore", UserWarning)
            _save(path, artifacts, signature, input_example)
    finally:
        quiet.setLevel(level)


def _save(path: Path, artifacts: dict[str, str], signature: Any, input_example: Any) -> None:
    mlflow.pyfunc.save_model(
        str(path),
        python_model=DeployedModel(),
        artifacts=artifacts,
        signature=signature,
        input_example=input_example,
        code_paths=[str(ROOT / "search"), str(ROOT / "trainables")],
        pip_requirements=_requirements(),
    )


def _requirements() -> list[str]:
    """What serving the model needs, pinned to what trained it (no inference: it would load it)."""
    wanted = ["mlflow", "numpy", "pandas", "tensorflow", "ai-edge-litert", "keras", "tf-keras"]
    pinned = []
    for name in wanted:
        try:
            pinned.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return pinned
