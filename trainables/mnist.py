"""Train one MNIST configuration and measure its accuracy, speed and size.

`train(config, report=...)` is the trainable: it needs neither Ray nor MLflow, so it runs the
same in a notebook as inside a study.

    >>> from trainables.mnist import train
    >>> final = train({"width": 64, "epochs": 2, "data_source": "bundled"})
    >>> final["val_accuracy"], final["epoch_time_s"], final["model_bytes_gzip"]
"""

from __future__ import annotations

import gc
import math
import os
import tempfile
from typing import TYPE_CHECKING
from typing import Any

from trainables.data import SOURCES
from trainables.models import ARCHITECTURES
from trainables.quantization import QUANTIZATIONS

if TYPE_CHECKING:
    from collections.abc import Callable

    from trainables.distribute import Placement
    from trainables.metrics import Report

# Every key `train` accepts, with its default. A config key that is not here is an error.
DEFAULTS: dict[str, Any] = {
    # model
    "architecture": "mlp",  # "mlp" or "cnn"
    "width": 128,  # hidden units (mlp) or filters of the last convolution (cnn)
    "depth": 2,  # hidden layers (mlp) or convolution blocks (cnn)
    "dropout": 0.0,  # rate before the output layer
    "kernel_size": 3,  # convolution kernel side (cnn only)
    # optimisation
    "optimizer": "adam",  # "sgd" (plain), "momentum" (SGD with momentum) or "adam"
    "learning_rate": 1e-3,  # initial step size
    "momentum": 0.9,  # ("momentum" only)
    "lr_schedule": "constant",  # "constant" or "cosine" (decays to 0 over `epochs`)
    "batch_size": 128,  # examples per step and replica; global batch = batch_size x replicas
    "lr_scaling": "none",  # "linear": learning_rate x replicas (the linear scaling rule); "none"
    "epochs": 5,  # full passes over the training set
    "early_stopping_patience": 0,  # stop after this many epochs without a lower val_loss; 0 = off
    # regularisation and compression
    "augment": 0.0,  # augmentation strength in [0, 1]; 0 = off
    "final_sparsity": 0.0,  # fraction of kernel weights pruned by the end of training; 0 = off
    "quantization": "none",  # deployed TFLite model: "none", "dynamic", "int8" or "qat"
    "distillation": False,  # learn from a cached, larger teacher as well as from the labels
    "temperature": 4.0,  # softening of teacher and student outputs (distillation only)
    "distillation_weight": 0.5,  # share of the teacher's term in the loss (distillation only)
    "teacher_epochs": 4,  # epochs the teacher trains, once (distillation only)
    # hardware (see trainables.distribute for how the strategy is chosen)
    "mixed_precision": False,  # compute in float16, keep variables float32 (GPU only; else noted and ignored)
    "jit_compile": False,  # compile the training step with XLA
    # data
    "data_source": "auto",  # "auto", "keras" (full MNIST) or "bundled" (5,000 digits)
    "validation_fraction": 0.2,  # held-out share of the examples
    "train_examples": None,  # use only the first N training examples (None = all)
    "seed": 0,  # seeds the data split, weight initialisation and shuffling
    # output
    "model_dir": None,  # if set, the trained model is saved there (model.keras, model.tflite)
    "checkpoint_dir": None,  # if set, saved there every epoch, and training continues from it
    "cache_dir": None,  # if set, the distillation teacher is cached there (shared by a study's trials)
}

# Keys that apply only under a condition; setting one elsewhere is an error, not a silent no-op.
CONDITIONAL = {
    "kernel_size": ("architecture", ("cnn",)),
    "momentum": ("optimizer", ("momentum",)),
    "temperature": ("distillation", (True,)),
    "distillation_weight": ("distillation", (True,)),
}
OPTIMIZERS = ("sgd", "momentum", "adam")
LR_SCHEDULES = ("constant", "cosine")
LR_SCALINGS = ("none", "linear")

# What `train` reports: every epoch, then also at the last epoch.
EPOCH_METRICS = (
    "epoch",
    "loss",
    "accuracy",
    "val_loss",
    "val_accuracy",
    "epoch_time_s",
    "train_time_s",
    "examples_per_s",
)
# Where the trial trained, in its first report (see `trainables.distribute.Placement`), with
# `notes` saying which requested settings could not apply there.
PLACEMENT_METRICS = ("strategy", "replicas", "workers", "devices", "global_batch_size", "learning_rate_applied", "notes")
FINAL_METRICS = (
    "params",
    "nonzero_params",
    "sparsity",
    "model_bytes_gzip",
    "tflite_bytes",
    "inference_ms",
    "tflite_bytes_gzip",
    "tflite_accuracy",
    "tflite_ms",
)
METRICS = EPOCH_METRICS + FINAL_METRICS + PLACEMENT_METRICS + (
    "warmup_s",
    "resumed_from_epoch",
    "teacher_val_accuracy",
    "teacher_train_s",
)


def resolve_config(config: dict[str, Any]) -> dict[str, Any]:
    """Merge `config` over `DEFAULTS`, rejecting keys `train` does not know."""
    unknown = sorted(set(config) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"Unknown config keys {unknown}; `train` accepts {sorted(DEFAULTS)}.")
    merged = {**DEFAULTS, **config}
    for name, (parent, values) in CONDITIONAL.items():
        if name in config and merged[parent] not in values:
            raise ValueError(
                f"`{name}` applies only when {parent} is {' or '.join(map(repr, values))}, but "
                f"{parent}={merged[parent]!r}; make it conditional in the space: "
                f"when={{{parent!r}: {values[0]!r}}}."
            )
    if merged["quantization"] == "qat" and merged["final_sparsity"] > 0:
        raise ValueError(
            "`final_sparsity` > 0 cannot be combined with quantization='qat' (pruning wraps the "
            "layers QAT needs); prune with 'dynamic' or 'int8' quantization instead."
        )
    for name in ("learning_rate", "batch_size", "epochs", "width", "depth", "kernel_size", "teacher_epochs", "temperature"):
        if not merged[name] > 0:
            raise ValueError(f"`{name}` must be positive, but got {name}={merged[name]!r}.")
    if merged["early_stopping_patience"] < 0:
        raise ValueError(f"`early_stopping_patience` must be >= 0, but got {merged['early_stopping_patience']!r}.")
    for name, low, high in (
        ("augment", 0.0, 1.0),
        ("final_sparsity", 0.0, 0.99),
        ("dropout", 0.0, 0.99),
        ("momentum", 0.0, 0.999),
        ("distillation_weight", 0.0, 1.0),
    ):
        if not low <= merged[name] <= high:
            raise ValueError(f"`{name}` must be in [{low}, {high}], but got {name}={merged[name]!r}.")
    for name, options in (
        ("architecture", ARCHITECTURES),
        ("data_source", SOURCES),
        ("optimizer", OPTIMIZERS),
        ("lr_schedule", LR_SCHEDULES),
        ("quantization", QUANTIZATIONS),
        ("distillation", (False, True)),
        ("lr_scaling", LR_SCALINGS),
        ("mixed_precision", (False, True)),
        ("jit_compile", (False, True)),
    ):
        if merged[name] not in options:
            raise ValueError(f"`{name}` must be one of {options}, but got {name}={merged[name]!r}.")
    return merged


def _print_report(metrics: dict[str, Any]) -> None:
    shown = ("epoch", "val_accuracy", "val_loss", "epoch_time_s", "examples_per_s")
    print("  ".join(f"{key}={metrics[key]:.4g}" for key in shown if key in metrics))


def make_optimizer(config: dict[str, Any], *, learning_rate: float, decay_steps: int):
    """The configured optimizer, its step size `learning_rate` (the config's, after
    `lr_scaling`) constant or decaying to 0 along a cosine."""
    from trainables._keras import keras

    rate = float(learning_rate)
    if config["lr_schedule"] == "cosine":
        rate = keras.optimizers.schedules.CosineDecay(rate, decay_steps=decay_steps)
    if config["optimizer"] == "adam":
        return keras.optimizers.Adam(rate)
    momentum = float(config["momentum"]) if config["optimizer"] == "momentum" else 0.0
    return keras.optimizers.SGD(rate, momentum=momentum)


def train(
    config: dict[str, Any],
    report: Report | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> dict[str, float]:
    """Train the configuration and return the metrics of the last epoch plus model metrics.

    Args:
        config: any subset of `DEFAULTS`; missing keys take the default.
        report: called once per epoch with that epoch's metrics (`EPOCH_METRICS`); the last call
            also carries `FINAL_METRICS`. Defaults to printing one line per epoch.
        should_stop: polled after every batch; when it returns True, training ends at once
            (an early-stopping scheduler has given up on the trial) and the last full epoch's
            report is returned.

    Returns:
        The last report: `val_accuracy`, `val_loss`, `epoch_time_s` (steady-state seconds of one
        training epoch), `train_time_s`, `examples_per_s`, `params`, `nonzero_params`,
        `sparsity` (measured), `model_bytes_gzip`, `inference_ms` (Keras, batch-1 median),
        and of the deployed TFLite model (quantized as `quantization` says) `tflite_bytes`,
        `tflite_bytes_gzip`, `tflite_accuracy` and `tflite_ms`; with distillation also
        `teacher_val_accuracy` and `teacher_train_s` (0 when the teacher came from the cache).
        With `model_dir` set, the model is saved there too. With early stopping, the last
        report's `epoch` says when training ended. The first report also says where the trial
        trained (`PLACEMENT_METRICS`: strategy, replicas, workers, devices, global batch size,
        the learning rate applied after `lr_scaling`, and `notes` on settings that could not
        apply there).

    Hardware: the strategy comes from `trainables.distribute.place()`; `batch_size` is per
    replica. Under a multi-worker strategy every worker runs `train` with the same config and
    reports the same epochs; only the chief (task 0) writes `model_dir` and `checkpoint_dir`.
    """
    from trainables import distribute
    from trainables._keras import keras

    config = resolve_config(config)
    placement = distribute.place()  # first: multi-worker and TPU strategies need a fresh runtime
    notes: list[str] = []
    mixed = bool(config["mixed_precision"])
    if mixed and placement.devices == "CPU":
        mixed = False
        notes.append("mixed_precision ignored: no GPU or TPU (float16 is slower than float32 on CPUs)")
    if config["jit_compile"] and placement.devices == "TPU":
        notes.append("jit_compile has no effect: TPUs always compile with XLA")

    keras.backend.clear_session()
    gc.collect()
    keras.utils.set_random_seed(config["seed"])
    # TPUs compute in bfloat16, GPUs in float16; the output layer stays float32 (see models.py).
    mixed_policy = "mixed_bfloat16" if placement.devices == "TPU" else "mixed_float16"
    keras.mixed_precision.set_global_policy(mixed_policy if mixed else "float32")
    try:
        return _train(config, placement, notes, report or _print_report, should_stop)
    finally:
        keras.mixed_precision.set_global_policy("float32")  # the process may train again


def _train(
    config: dict[str, Any],
    placement: Placement,
    notes: list[str],
    report: Report,
    should_stop: Callable[[], bool] | None,
) -> dict[str, float]:
    from trainables import data
    from trainables import distill
    from trainables import metrics
    from trainables import pruning
    from trainables import quantization
    from trainables._keras import keras
    from trainables.models import build_model

    digits = data.load_mnist(
        source=config["data_source"],
        seed=config["seed"],
        validation_fraction=config["validation_fraction"],
    )
    if config["train_examples"]:
        limit = int(config["train_examples"])
        digits = data.Digits(
            digits.x_train[:limit], digits.y_train[:limit], digits.x_val, digits.y_val, digits.source
        )

    strategy = placement.strategy
    global_batch = int(config["batch_size"]) * placement.replicas
    learning_rate = float(config["learning_rate"])
    if config["lr_scaling"] == "linear":
        learning_rate *= placement.replicas
    train_ds, val_ds = data.pipelines(
        digits, batch_size=global_batch, augment=float(config["augment"]), seed=config["seed"]
    )
    steps_per_epoch = math.ceil(len(digits.x_train) / global_batch)
    epochs = int(config["epochs"])
    # Every worker of a multi-worker trial runs all of this (saving can involve collective
    # operations); only the chief writes where the caller asked, the others into scratch space.
    model_dir, checkpoint_dir = config["model_dir"], config["checkpoint_dir"]
    scratch = None if placement.is_chief else tempfile.TemporaryDirectory()
    if scratch is not None:
        model_dir = model_dir and os.path.join(scratch.name, "model")
        checkpoint_dir = checkpoint_dir and os.path.join(scratch.name, "checkpoint")

    teacher_info: dict[str, Any] = {}
    if config["distillation"]:  # before the scope: see `distill.teacher_weights`
        teacher_weights, teacher_info = distill.teacher_weights(
            digits, epochs=int(config["teacher_epochs"]), seed=config["seed"], cache_dir=config["cache_dir"]
        )
    with strategy.scope():
        model = build_model(
            config["architecture"],
            width=int(config["width"]),
            depth=int(config["depth"]),
            dropout=float(config["dropout"]),
            kernel_size=int(config["kernel_size"]),
            input_shape=digits.x_train.shape[1:],
        )
        callbacks: list = []
        if config["final_sparsity"] > 0:
            model = pruning.apply_pruning(
                model,
                final_sparsity=float(config["final_sparsity"]),
                steps_per_epoch=steps_per_epoch,
                epochs=epochs,
            )
            callbacks += pruning.pruning_callbacks()
        if config["quantization"] == "qat":
            model = quantization.quantize_for_training(model)
        trained = model  # what `fit` trains: the model, or a distiller around it
        if config["distillation"]:
            trained = distill.Distiller(
                model,
                distill.teacher_model(teacher_weights, digits.x_train.shape[1:]),
                temperature=float(config["temperature"]),
                weight=float(config["distillation_weight"]),
            )
        trained.compile(
            optimizer=make_optimizer(config, learning_rate=learning_rate, decay_steps=steps_per_epoch * epochs),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
            jit_compile=bool(config["jit_compile"]) and placement.devices != "TPU",
        )
        if config["early_stopping_patience"]:
            callbacks.append(
                keras.callbacks.EarlyStopping(monitor="val_loss", patience=int(config["early_stopping_patience"]))
            )

        checkpoint = (
            metrics.EpochCheckpoint(trained, config["checkpoint_dir"], write_directory=checkpoint_dir)
            if checkpoint_dir
            else None
        )
        # A checkpoint of a finished run redoes the last epoch, so the model metrics get reported.
        initial_epoch = min(checkpoint.restore(), epochs - 1) if checkpoint else 0

    def final_metrics() -> dict[str, float]:
        measured = metrics.model_metrics(
            pruning.strip_pruning(model),
            x_val=digits.x_val,
            y_val=digits.y_val,
            quantization=config["quantization"],
            representative=digits.x_train[:100],
            model_dir=model_dir,
        )
        return {**measured, **teacher_info}

    placement_info: dict[str, Any] = {
        **placement.describe(),
        "global_batch_size": global_batch,
        "learning_rate_applied": learning_rate,
    }
    if notes:
        placement_info["notes"] = "; ".join(notes)
    reporter = metrics.EpochReporter(
        examples_per_epoch=len(digits.x_train),
        report=report,
        final_metrics=final_metrics,
        should_stop=should_stop,
        checkpoint=checkpoint,
        resumed_from_epoch=initial_epoch,
        known_metrics={**placement_info, **teacher_info},
    )
    try:
        trained.fit(
            train_ds,
            validation_data=val_ds,
            epochs=epochs,
            initial_epoch=initial_epoch,
            callbacks=[*callbacks, reporter],
            verbose=0,
        )
    finally:
        if scratch is not None:
            scratch.cleanup()
    return reporter.history[-1] if reporter.history else {}


# The trainable contract's optional declarations, read by `search` before a study starts.
train.metrics = METRICS
train.check_config = resolve_config
