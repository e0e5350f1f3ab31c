"""Quantization: TensorFlow Lite conversion in four modes, and the deployed model measured.

- "none": a float32 TFLite model.
- "dynamic": post-training dynamic-range quantization (int8 weights, float activations).
- "int8": post-training full-integer quantization (int8 weights, activations, input and
  output), calibrated on a representative sample of training images.
- "qat": quantization-aware training (tensorflow-model-optimization inserts fake-quant ops
  before training, `quantize_for_training`), then conversion to an int8 model.

The deployed model is what gets measured: `evaluate` runs it in the TFLite interpreter over a
validation set and `latency_ms` times batch-1 inference there.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING
from typing import Any

import numpy as np

from trainables.timing import median_ms

if TYPE_CHECKING:
    import tf_keras

QUANTIZATIONS = ("none", "dynamic", "int8", "qat")
# What `trainables.metrics.deployed_metrics` measures of the deployed model: its size (raw, and
# gzipped, where pruning's zeros pay off), accuracy on the validation set and batch-1 latency.
DEPLOYED_METRICS = ("tflite_bytes", "tflite_bytes_gzip", "tflite_accuracy", "tflite_ms")


def quantize_for_training(model: tf_keras.Model) -> tf_keras.Model:
    """Wrap `model` for quantization-aware training (8-bit fake-quant of weights and activations).

    A model with layers tensorflow-model-optimization does not know (e.g. `Normalization`) gets
    fake-quant on its dense and convolution layers only; the others stay float until conversion.
    """
    import tensorflow_model_optimization as tfmot

    from trainables._keras import keras

    try:
        return tfmot.quantization.keras.quantize_model(model)
    except RuntimeError:  # "Layer ... is not supported. You can quantize this layer by passing ..."
        known = (keras.layers.Dense, keras.layers.Conv2D, keras.layers.DepthwiseConv2D)
        annotate = tfmot.quantization.keras.quantize_annotate_layer
        annotated = keras.models.clone_model(model, clone_function=lambda layer: annotate(layer) if isinstance(layer, known) else layer)
        return tfmot.quantization.keras.quantize_apply(annotated)


def load_scope(quantization: str) -> Any:
    """The scope a saved model of this `quantization` loads in: QAT models hold
    tensorflow-model-optimization's quantize wrappers, which Keras knows only inside it."""
    import contextlib

    if quantization != "qat":
        return contextlib.nullcontext()
    import tensorflow_model_optimization as tfmot

    return tfmot.quantization.keras.quantize_scope()


def to_tflite(
    model: tf_keras.Model, quantization: str = "none", representative: np.ndarray | None = None
) -> bytes:
    """Convert a trained (stripped) Keras model to a TFLite flatbuffer.

    Args:
        model: the trained model; for "qat", the model `quantize_for_training` returned.
        quantization: one of `QUANTIZATIONS`.
        representative: training images to calibrate activation ranges ("int8" only; about
            100 are enough).
    """
    from trainables._keras import tf
    from trainables.stderr import swallowed as stderr_swallowed

    if quantization not in QUANTIZATIONS:
        raise ValueError(f"`quantization` must be one of {QUANTIZATIONS}, but got {quantization=}.")
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if quantization != "none":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantization == "int8":
        if representative is None or len(representative) == 0:
            raise ValueError("int8 quantization needs representative images to calibrate on.")
        sample = representative.astype(np.float32)
        converter.representative_dataset = lambda: ([sample[i : i + 1]] for i in range(len(sample)))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    # The converter writes its settings to fd 2 and warns "Statistics for quantized inputs were
    # expected" for QAT models; neither is news to the user.
    with warnings.catch_warnings(), stderr_swallowed():
        warnings.simplefilter("ignore", UserWarning)
        return converter.convert()


def interpreter(flatbuffer: bytes, *, threads: int = 1):
    """A TFLite interpreter for `flatbuffer` (LiteRT's when installed, else TensorFlow's)."""
    from trainables.stderr import swallowed as stderr_swallowed

    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        from trainables._keras import tf

        Interpreter = tf.lite.Interpreter
    # TensorFlow's interpreter warns that LiteRT replaces it; both announce their CPU delegate.
    with warnings.catch_warnings(), stderr_swallowed():
        warnings.simplefilter("ignore", UserWarning)
        runner = Interpreter(model_content=flatbuffer, num_threads=threads)
        runner.allocate_tensors()
    return runner


def _quantize_input(images: np.ndarray, detail: dict) -> np.ndarray:
    """Images as the model's input tensor takes them (int8 models take quantized images)."""
    if detail["dtype"] == np.float32:
        return images.astype(np.float32)
    scale, zero_point = detail["quantization"]
    info = np.iinfo(detail["dtype"])
    return np.clip(np.round(images / scale + zero_point), info.min, info.max).astype(detail["dtype"])


def predict(flatbuffer: bytes, images: np.ndarray, *, batch_size: int = 250) -> np.ndarray:
    """The deployed model's outputs (logits, dequantized) for `images`."""
    runner = interpreter(flatbuffer)
    source, target = runner.get_input_details()[0], runner.get_output_details()[0]
    outputs = []
    shape = None
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size]
        if batch.shape != shape:
            runner.resize_tensor_input(source["index"], batch.shape)
            runner.allocate_tensors()
            source, target = runner.get_input_details()[0], runner.get_output_details()[0]
            shape = batch.shape
        runner.set_tensor(source["index"], _quantize_input(batch, source))
        runner.invoke()
        out = runner.get_tensor(target["index"]).astype(np.float32)
        if target["dtype"] != np.float32:
            scale, zero_point = target["quantization"]
            out = (out - zero_point) * scale
        outputs.append(out)
    return np.concatenate(outputs)


def evaluate(flatbuffer: bytes, images: np.ndarray, labels: np.ndarray) -> float:
    """Accuracy of the deployed model on `images`."""
    return float(np.mean(np.argmax(predict(flatbuffer, images), axis=-1) == labels))


def latency_ms(flatbuffer: bytes, example: np.ndarray, *, repeats: int = 100) -> float:
    """Median wall time in milliseconds of one batch-1 inference in the interpreter (1 thread)."""
    runner = interpreter(flatbuffer, threads=1)
    source = runner.get_input_details()[0]
    runner.set_tensor(source["index"], _quantize_input(example[np.newaxis], source))
    return median_ms(runner.invoke, repeats=repeats)
