"""Magnitude pruning with tensorflow-model-optimization; the only module that imports tfmot."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import tf_keras


def pruning_schedule_steps(steps_per_epoch: int, epochs: int) -> tuple[int, int]:
    """Return `(end_step, frequency)` so the target sparsity is reached before the last epoch.

    Sparsity ramps up over the first `epochs - 1` epochs (the only epoch when `epochs == 1`), so
    the last epoch fine-tunes the pruned weights. `end_step` is a multiple of `frequency`, so the
    final pruning step lands exactly on the target.
    """
    ramp = steps_per_epoch * max(1, epochs - 1)
    frequency = max(1, ramp // 10)
    return frequency * (ramp // frequency), frequency


def apply_pruning(
    model: tf_keras.Model, *, final_sparsity: float, steps_per_epoch: int, epochs: int
) -> tf_keras.Model:
    """Wrap every prunable layer of `model` for low-magnitude pruning up to `final_sparsity`.

    The sparsity follows a polynomial ramp from 0 to `final_sparsity` (a fraction in [0, 1)).
    Layers tensorflow-model-optimization cannot prune (e.g. a `Normalization` layer) stay as
    they are. Train the result with the callbacks from `pruning_callbacks()`.
    """
    import tensorflow_model_optimization as tfmot

    from trainables._keras import keras

    if not 0.0 <= final_sparsity < 1.0:
        raise ValueError(f"`final_sparsity` must be in [0, 1), but got {final_sparsity=}.")
    end_step, frequency = pruning_schedule_steps(steps_per_epoch, epochs)
    schedule = tfmot.sparsity.keras.PolynomialDecay(
        initial_sparsity=0.0,
        final_sparsity=final_sparsity,
        begin_step=0,
        end_step=end_step,
        frequency=frequency,
    )

    def prune(layer: tf_keras.layers.Layer) -> tf_keras.layers.Layer:
        try:
            return tfmot.sparsity.keras.prune_low_magnitude(layer, pruning_schedule=schedule)
        except ValueError:  # "Please initialize `Prune` with a supported layer"
            return layer

    return keras.models.clone_model(model, clone_function=prune)


def pruning_callbacks() -> list:
    """The callback that advances the pruning step during `fit`."""
    import tensorflow_model_optimization as tfmot

    return [tfmot.sparsity.keras.UpdatePruningStep()]


def set_pruning_step(model: tf_keras.Model, step: int) -> None:
    """Put every pruning wrapper of `model` at training step `step` of its schedule (a no-op for
    a model that is not pruned): what a step does depends on it (masks are updated during the
    ramp, not after it)."""
    from tensorflow_model_optimization.python.core.sparsity.keras import pruning_wrapper

    for layer in pruning_wrapper.collect_prunable_layers(model):
        layer.pruning_step.assign(step)


def strip_pruning(model: tf_keras.Model) -> tf_keras.Model:
    """Remove pruning wrappers (a no-op for a model that was never pruned)."""
    import tensorflow_model_optimization as tfmot

    return tfmot.sparsity.keras.strip_pruning(model)


def kernel_sparsity(model: tf_keras.Model) -> float:
    """Fraction of exactly-zero entries among the kernels (weight matrices) of `model`.

    Biases are left out: pruning touches only kernels, so this is the quantity a target
    sparsity refers to.
    """
    kernels = [
        weight.numpy() for weight in model.weights if weight.name.split("/")[-1].startswith("kernel")
    ]
    total = sum(kernel.size for kernel in kernels)
    zeros = sum(int(np.sum(kernel == 0)) for kernel in kernels)
    return zeros / total if total else 0.0
