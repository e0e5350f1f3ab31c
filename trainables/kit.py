"""The Keras trainable kit: a task brings data and a model; the kit trains it the study's way.

A task (`KerasTask`, after keras-tuner's `HyperModel`) says what is specific to it: its data
(`load_data`), its model (`build_model`), its own config keys (`defaults`, with their checks),
and optionally an augmentation layer and a distillation teacher. `KerasTrainable(task)` is then a
trainable (`trainables.contract`) that gives the task's model everything a study measures:

- per-epoch reports with steady-state timing, the first batch's warm-up apart (`EpochReporter`);
- `should_stop` polled after every batch; checkpoint and resume (`EpochCheckpoint`); early stopping;
- pruning, post-training quantization and QAT (`trainables.pruning`, `trainables.quantization`),
  distillation from a cached teacher (`trainables.distill`);
- the tf.distribute strategy that fits the process (`trainables.distribute`), with the global
  batch and optional linear learning-rate scaling;
- the trained model's size, Keras and TFLite latency and deployed accuracy, and the model saved
  for the study's front (`trainables.metrics.model_metrics`).

The kit trains classifiers whose model outputs logits, with integer labels. It builds models with
`tf_keras` (Keras 2), which tensorflow-model-optimization needs; importing it sets
`TF_USE_LEGACY_KERAS=1` in this process only (`trainables._keras`).

    >>> from trainables.mnist import train                    # a KerasTrainable
    >>> from trainables.contract import TrialContext
    >>> history = []
    >>> final = train({"width": 64, "epochs": 2}, TrialContext(report=history.append))
"""

from __future__ import annotations

import dataclasses
import gc
import math
import os
import tempfile
from collections.abc import Mapping
from typing import TYPE_CHECKING
from typing import Any

from trainables.contract import EPOCH
from trainables.contract import TrialContext
from trainables.data import Split
from trainables.quantization import DEPLOYED_METRICS
from trainables.quantization import QUANTIZATIONS

if TYPE_CHECKING:
    import tf_keras

    from trainables.distribute import Placement

# The kit's config keys, with defaults; a task adds its own (`KerasTask.defaults`).
DEFAULTS: dict[str, Any] = {
    # optimisation
    "optimizer": "adam",  # "sgd" (plain), "momentum" (SGD with momentum) or "adam"
    "learning_rate": 1e-3,  # initial step size
    "momentum": 0.9,  # ("momentum" only)
    "lr_schedule": "constant",  # "constant" or "cosine" (decays to 0 over `epochs`)
    "batch_size": 128,  # examples per step and replica; global batch = batch_size x replicas
    "lr_scaling": "none",  # "linear": learning_rate x replicas (the linear scaling rule); "none"
    "epochs": 5,  # full passes over the training set
    "early_stopping_patience": 0,  # stop after this many epochs without a lower val_loss; 0 = off
    "train_examples": None,  # use only the first N training examples (None = all)
    "seed": 0,  # seeds the data split, weight initialisation and shuffling
    # compression
    "final_sparsity": 0.0,  # fraction of kernel weights pruned by the end of training; 0 = off
    "quantization": "none",  # deployed TFLite model: "none", "dynamic", "int8" or "qat"
    "distillation": False,  # learn from a cached, larger teacher as well as from the labels
    "temperature": 4.0,  # softening of teacher and student outputs (distillation only)
    "distillation_weight": 0.5,  # share of the teacher's term in the loss (distillation only)
    "teacher_epochs": 4,  # epochs the teacher trains, once (distillation only)
    # hardware (see trainables.distribute for how the strategy is chosen)
    "mixed_precision": False,  # compute in float16, keep variables float32 (GPU only; else noted and ignored)
    "jit_compile": False,  # compile the training step with XLA
}
CHOICES: dict[str, tuple] = {
    "optimizer": ("sgd", "momentum", "adam"),
    "lr_schedule": ("constant", "cosine"),
    "lr_scaling": ("none", "linear"),
    "quantization": QUANTIZATIONS,
    "distillation": (False, True),
    "mixed_precision": (False, True),
    "jit_compile": (False, True),
}
POSITIVE = ("learning_rate", "batch_size", "epochs", "teacher_epochs", "temperature")
RANGES: dict[str, tuple[float, float]] = {
    "final_sparsity": (0.0, 0.99),
    "momentum": (0.0, 0.999),
    "distillation_weight": (0.0, 1.0),
    "early_stopping_patience": (0, math.inf),
}
# Keys that apply only under a condition; setting one elsewhere is an error, not a silent no-op.
CONDITIONAL: dict[str, tuple[str, tuple]] = {
    "momentum": ("optimizer", ("momentum",)),
    "temperature": ("distillation", (True,)),
    "distillation_weight": ("distillation", (True,)),
}

# What the kit reports: every epoch, then also at the last epoch.
EPOCH_METRICS = (
    EPOCH, "loss", "accuracy", "val_loss", "val_accuracy",
    "epoch_time_s", "epoch_time_cv", "epoch_cpu_s", "epoch_wall_s", "train_time_s", "examples_per_s",
)  # fmt: skip
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
METRICS = (*EPOCH_METRICS, *FINAL_METRICS, *PLACEMENT_METRICS, "warmup_s", "resumed_from_epoch", "teacher_val_accuracy", "teacher_train_s")
# What `KerasTrainable.remeasure` measures again, and how many training steps it times.
REMEASURED_METRICS = ("epoch_time_s", "epoch_cpu_s", "epoch_time_cv", "examples_per_s", "inference_ms", "tflite_ms")
REMEASURE_STEPS = 30
# The study's summary table shows these besides the objectives and parameters.
SHOWN_METRICS = ("train_time_s", "inference_ms", "model_bytes_gzip", "tflite_bytes", "params")


class KerasTask:
    """What a task brings to the kit. Subclass it and override what applies.

    Class attributes declare the task's own config keys: `defaults` (every key, with its
    default), `choices` (allowed values), `positive` (must be > 0), `ranges` (inclusive
    bounds), `conditional` (key -> (parent key, parent values under which it applies)).
    """

    defaults: dict[str, Any] = {}
    choices: dict[str, tuple] = {}
    positive: tuple[str, ...] = ()
    ranges: dict[str, tuple[float, float]] = {}
    conditional: dict[str, tuple[str, tuple]] = {}
    # The distillation teacher's recipe: part of its cache key (change it, and the teacher retrains).
    teacher_recipe: dict[str, Any] = {}

    def load_data(self, config: dict[str, Any]) -> Split:
        """The training and validation arrays (the same for every trial with the same data keys)."""
        raise NotImplementedError

    def build_model(self, config: dict[str, Any], input_shape: tuple[int, ...], num_classes: int) -> tf_keras.Model:
        """An uncompiled `tf_keras` model with `input_shape` inputs and `num_classes` logits."""
        raise NotImplementedError

    def augmentation(self, config: dict[str, Any]) -> Any:
        """A Keras layer applied to training batches in the input pipeline, or None."""
        return None

    def build_teacher(self, input_shape: tuple[int, ...], num_classes: int) -> tf_keras.Model | None:
        """The distillation teacher (uncompiled), or None if the task offers no distillation."""
        return None

    def check(self, config: dict[str, Any]) -> None:
        """Further checks of a merged config; raise `ValueError` with a message a user can act on."""


class KerasTrainable:
    """A trainable (`trainables.contract.Trainable`) made of a `KerasTask` and the kit."""

    def __init__(self, task: KerasTask) -> None:
        self.task = task
        self.defaults = {**DEFAULTS, **task.defaults}
        self.metrics = METRICS
        self.shown_metrics = SHOWN_METRICS
        self.remeasured_metrics = REMEASURED_METRICS
        self.finish_metrics = DEPLOYED_METRICS
        # A study's workers import TensorFlow, Keras and the task before their first trial.
        self.worker_imports = ("trainables._keras", "trainables.kit", type(task).__module__)
        self.__name__ = self.__qualname__ = f"{type(task).__name__}.train"
        self.__module__ = type(task).__module__

    def check_config(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """`config` merged over the defaults; `ValueError` naming the first key that is wrong."""
        return resolve_config(self.task, config)

    def __call__(self, config: Mapping[str, Any], context: TrialContext | None = None) -> dict[str, Any]:
        """Train `config` and return the last report (`{}` if stopped before an epoch ended).

        Without a context it prints one line per epoch and writes nothing.
        """
        context = context or TrialContext(report=_print_epoch)
        config, placement, notes = self._set_up(config)
        try:
            return _Trial(self.task, config, placement, notes, context).run()
        finally:
            _reset_policy()  # the process may train again

    def remeasure(self, config: Mapping[str, Any], context: TrialContext | None = None, *, steps: int = REMEASURE_STEPS) -> dict[str, float]:
        """The speed of a configuration a study trained, measured again (see the contract).

        Builds the configuration as its trial did (compression and teacher included) and times
        up to `steps` training steps after one warm-up step: `epoch_time_s`, `epoch_cpu_s`,
        `epoch_time_cv` and `examples_per_s`, as an epoch's report computes them (median step
        time times the epoch's steps). Batch-1 latency: `tflite_ms` of the deployed model the
        trial saved in `context.model_dir` (`model.tflite`), and `inference_ms` of the rebuilt
        Keras model with pruning stripped (dense kernels take the same time whatever their
        weights). Nothing is reported or written.
        """
        from trainables import metrics
        from trainables import pruning
        from trainables import quantization

        context = context or TrialContext()
        config, placement, notes = self._set_up(config)
        try:
            trial = _Trial(self.task, config, placement, notes, context)
            measured = trial.time_steps(steps)
            model = trial.model
            if config["quantization"] == "qat":  # its fake-quant wrappers are not what deploys
                model = trial.task.build_model(config, trial.split.x_train.shape[1:], trial.split.num_classes)
            measured["inference_ms"] = metrics.inference_ms(pruning.strip_pruning(model), trial.split.x_val[0])
            saved = os.path.join(context.model_dir, "model.tflite") if context.model_dir else None
            if saved and os.path.exists(saved):
                with open(saved, "rb") as file:
                    measured["tflite_ms"] = quantization.latency_ms(file.read(), trial.split.x_val[0])
            return measured
        finally:
            _reset_policy()

    def finish(self, config: Mapping[str, Any], context: TrialContext) -> dict[str, float]:
        """The deployed model's metrics (`DEPLOYED_METRICS`) of a configuration whose trial left
        them out (`context.needed`), for a trial that reached the front (see the contract).

        Converts the model its trial saved in `context.model_dir` (`model.keras`, or an epoch's
        weights, from which it first writes `model.keras` and `input_example.npy` there, in
        place of the weights) to TFLite as the config's `quantization` says, writes
        `model.tflite` and the deployed model's `output_example.npy` there, and measures it as a
        trial would have.
        """
        from trainables import metrics
        from trainables import quantization
        from trainables._keras import keras

        saved = os.path.join(context.model_dir or "", "model.keras")
        weights = os.path.join(context.model_dir or "", metrics.WEIGHTS)
        if not context.model_dir or not (os.path.exists(saved) or os.path.exists(weights)):
            raise FileNotFoundError(f"no saved model.keras or {metrics.WEIGHTS} in {context.model_dir!r} to deploy")
        config, placement, notes = self._set_up(config)
        try:
            if os.path.exists(saved):
                split = _load_split(self.task, config)
                with quantization.load_scope(config["quantization"]):
                    model = keras.models.load_model(saved, compile=False)
            else:  # an epoch's weights (`TrialContext.epoch_models`): its model is made servable here
                trial = _Trial(self.task, config, placement, notes, context, pipelines=False)
                split, model = trial.split, trial.saved_model(weights)
                metrics.save_model(model, context.model_dir, split.x_val, outputs=False)  # the deployed model's outputs follow
                os.remove(weights)  # `model.keras` holds them now; the directory becomes the front's MLflow model
            return metrics.deployed_metrics(
                model,
                x_val=split.x_val,
                y_val=split.y_val,
                quantization=config["quantization"],
                representative=split.x_train[:100],
                model_dir=context.model_dir,
            )
        finally:
            _reset_policy()

    def _set_up(self, config: Mapping[str, Any]) -> tuple[dict[str, Any], Placement, list[str]]:
        """The checked config, where it trains, and notes on settings that cannot apply there;
        a fresh Keras session seeded from the config, in the precision it asks for."""
        from trainables import distribute
        from trainables._keras import keras

        config = self.check_config(config)
        placement = distribute.place()  # first: multi-worker and TPU strategies need a fresh runtime
        notes: list[str] = []
        mixed = bool(config["mixed_precision"])
        if mixed and placement.devices == "CPU":
            mixed = False
            notes.append("mixed_precision ignored: no GPU or TPU (float16 is slower than float32 on CPUs)")
        if config["jit_compile"] and placement.devices == "TPU":
            notes.append("jit_compile has no effect: TPUs always compile with XLA")
        keras.backend.clear_session()
        _collect_garbage()
        keras.utils.set_random_seed(config["seed"])
        # TPUs compute in bfloat16, GPUs in float16; the output layer stays float32 (see models.py).
        policy = "mixed_bfloat16" if placement.devices == "TPU" else "mixed_float16"
        keras.mixed_precision.set_global_policy(policy if mixed else "float32")
        return config, placement, notes

    def __reduce__(self) -> tuple:  # pickled by its task (Ray ships trainables to workers)
        return (KerasTrainable, (self.task,))


def resolve_config(task: KerasTask, config: Mapping[str, Any]) -> dict[str, Any]:
    """Merge `config` over the kit's and the task's defaults, rejecting what training would."""
    defaults = {**DEFAULTS, **task.defaults}
    unknown = sorted(set(config) - set(defaults))
    if unknown:
        raise ValueError(f"Unknown config keys {unknown}; `train` accepts {sorted(defaults)}.")
    merged = {**defaults, **config}
    for name, (parent, values) in {**CONDITIONAL, **task.conditional}.items():
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
    if merged["distillation"] and not task.teacher_recipe:
        raise ValueError(f"distillation=True needs a teacher, and {type(task).__name__} defines none.")
    for name in (*POSITIVE, *task.positive):
        if not merged[name] > 0:
            raise ValueError(f"`{name}` must be positive, but got {name}={merged[name]!r}.")
    for name, (low, high) in {**RANGES, **task.ranges}.items():
        if not low <= merged[name] <= high:
            raise ValueError(f"`{name}` must be in [{low}, {high}], but got {name}={merged[name]!r}.")
    for name, options in {**CHOICES, **task.choices}.items():
        if merged[name] not in options:
            raise ValueError(f"`{name}` must be one of {options}, but got {name}={merged[name]!r}.")
    task.check(merged)
    return merged


def _collect_garbage() -> None:
    """Free what earlier trials of this process left (a reused worker trains many).

    A full collection walks every object Python tracks, and TensorFlow's modules alone are
    some 450,000 of them: 200 ms a trial on this project's machine. They live as long as the
    process, so the first collection moves what survives it to the permanent generation
    (`gc.freeze`), and later ones walk only what trials made since: about 1 ms.
    """
    if not gc.get_freeze_count():
        gc.collect()
        gc.freeze()
    gc.collect()


def _reset_policy() -> None:
    from trainables._keras import keras

    keras.mixed_precision.set_global_policy("float32")


def _print_epoch(metrics: Mapping[str, Any]) -> None:
    shown = (EPOCH, "val_accuracy", "val_loss", "epoch_time_s", "examples_per_s")
    print("  ".join(f"{key}={metrics[key]:.4g}" for key in shown if key in metrics))


def make_optimizer(config: Mapping[str, Any], *, learning_rate: float, decay_steps: int) -> Any:
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


def _load_split(task: KerasTask, config: Mapping[str, Any]) -> Split:
    """The task's data, its training set cut to `train_examples` if set."""
    split = task.load_data(dict(config))
    if config["train_examples"]:
        limit = int(config["train_examples"])
        split = dataclasses.replace(split, x_train=split.x_train[:limit], y_train=split.y_train[:limit])
    return split


class _Trial:
    """One training run of a configuration: data, model, compression, `fit`, measurement."""

    def __init__(
        self, task: KerasTask, config: dict[str, Any], placement: Placement, notes: list[str], context: TrialContext, *, pipelines: bool = True
    ) -> None:
        """With `pipelines` false, no input pipelines: enough to rebuild the model for weights
        saved earlier (`saved_model`), without tracing an augmentation map it will not use."""
        from trainables import data

        self.task, self.config, self.placement, self.context = task, config, placement, context
        self.split = split = _load_split(task, config)
        self.global_batch = int(config["batch_size"]) * placement.replicas
        self.learning_rate = float(config["learning_rate"])
        if config["lr_scaling"] == "linear":
            self.learning_rate *= placement.replicas
        if pipelines:
            self.train_ds, self.val_ds = data.pipelines(
                split, batch_size=self.global_batch, augmentation=task.augmentation(config), seed=config["seed"]
            )
        self.steps_per_epoch = math.ceil(len(split.x_train) / self.global_batch)
        self.epochs = int(config["epochs"])
        self.placement_info: dict[str, Any] = {
            **placement.describe(),
            "global_batch_size": self.global_batch,
            "learning_rate_applied": self.learning_rate,
        }
        if notes:
            self.placement_info["notes"] = "; ".join(notes)
        self.teacher_info: dict[str, Any] = {}

    def run(self) -> dict[str, Any]:
        from trainables import data
        from trainables import metrics

        # Every worker of a multi-worker trial runs all of this (saving can involve collective
        # operations); only the chief writes where the caller asked, the others into scratch space.
        model_dir, checkpoint_dir = self.context.model_dir, self.context.checkpoint_dir
        scratch = None if self.placement.is_chief else tempfile.TemporaryDirectory()
        if scratch is not None:
            model_dir = model_dir and os.path.join(scratch.name, "model")
            checkpoint_dir = checkpoint_dir and os.path.join(scratch.name, "checkpoint")
        try:
            teacher_weights = self._teacher()  # before the scope: see `distill.teacher_weights`
            with self.placement.strategy.scope():
                model, trained, callbacks = self._build(teacher_weights)
                checkpoint = (
                    metrics.EpochCheckpoint(trained, self.context.checkpoint_dir, write_directory=checkpoint_dir)
                    if checkpoint_dir
                    else None
                )
                # A checkpoint of a finished run redoes the last epoch, so the model metrics get reported.
                initial_epoch = min(checkpoint.restore(), self.epochs - 1) if checkpoint else 0
            reporter = metrics.EpochReporter(
                examples_per_epoch=len(self.split.x_train),
                report=self.context.report,
                final_metrics=lambda: {**self._measure(model, model_dir), **self.teacher_info},
                should_stop=self.context.should_stop,
                checkpoint=checkpoint,
                resumed_from_epoch=initial_epoch,
                known_metrics={**self.placement_info, **self.teacher_info},
                save_epoch=self._epoch_saver(model, model_dir),
            )
            # One input iterator for the whole fit (`data.one_fit`): an epoch is still every
            # training example once, in a new order.
            trained.fit(
                data.one_fit(self.train_ds, self.epochs - initial_epoch),
                steps_per_epoch=self.steps_per_epoch,
                validation_data=self.val_ds,
                epochs=self.epochs,
                initial_epoch=initial_epoch,
                callbacks=[*callbacks, reporter],
                verbose=0,
            )
        finally:
            if scratch is not None:
                scratch.cleanup()
        return reporter.history[-1] if reporter.history else {}

    def _epoch_saver(self, model: Any, model_dir: str | None) -> Any:
        """What saves the model after each epoch when the study asks for it (`TrialContext.epoch_models`):
        its weights only, a few milliseconds (a whole model took 40-80, pruning stripped and saved);
        `KerasTrainable.finish` makes the servable model of those on the front (`_Trial.saved_model`)."""
        from trainables import metrics
        from trainables.contract import epoch_model_dir

        if not (self.context.epoch_models and model_dir):
            return None
        return lambda epoch: metrics.save_weights(model, epoch_model_dir(model_dir, epoch))

    def saved_model(self, weights_file: str) -> Any:
        """The model as `run` built it, with the weights `metrics.save_weights` wrote to
        `weights_file`, pruning stripped (what a trial's `_measure` deploys)."""
        from trainables import metrics
        from trainables import pruning

        with self.placement.strategy.scope():
            model, _, _ = self._build(None)  # a distiller's student is the model (its teacher is not saved)
        model.set_weights(metrics.load_weights(weights_file))
        return pruning.strip_pruning(model)

    def time_steps(self, steps: int) -> dict[str, float]:
        """Build the model as `run` does (kept in `model`) and time `steps` training steps of its
        last epoch after one warm-up step; the speed of an epoch (`StepTimer.speed`)."""
        from trainables import data
        from trainables import metrics
        from trainables import pruning
        from trainables._keras import keras

        teacher_weights = self._teacher()
        with self.placement.strategy.scope():
            self.model, trained, callbacks = self._build(teacher_weights)
        # Time the trial's last epoch, the one its report's figures come from: step counters
        # (e.g. pruning's schedule, which changes what a step does) start where it started.
        last_epoch = (self.epochs - 1) * self.steps_per_epoch
        trained.optimizer.iterations.assign(last_epoch)
        pruning.set_pruning_step(self.model, last_epoch)
        timer = metrics.StepTimer()
        callbacks = [c for c in callbacks if not isinstance(c, keras.callbacks.EarlyStopping)]  # no validation here
        trained.fit(data.one_fit(self.train_ds), epochs=1, steps_per_epoch=steps + 1, callbacks=[*callbacks, timer], verbose=0)
        return timer.speed(skip=1, steps=self.steps_per_epoch, examples=len(self.split.x_train))

    def _teacher(self) -> list | None:
        from trainables import distill

        if not self.config["distillation"]:
            return None
        weights, self.teacher_info = distill.teacher_weights(
            self.split,
            lambda: self.task.build_teacher(self.split.x_train.shape[1:], self.split.num_classes),
            recipe=self.task.teacher_recipe,
            epochs=int(self.config["teacher_epochs"]),
            seed=self.config["seed"],
            cache_dir=self.context.cache_dir,
        )
        return weights

    def _build(self, teacher_weights: list | None) -> tuple[Any, Any, list]:
        """The model, what `fit` trains (the model, or a distiller around it), and callbacks."""
        from trainables import distill
        from trainables import pruning
        from trainables import quantization
        from trainables._keras import keras

        config, split = self.config, self.split
        model = self.task.build_model(config, split.x_train.shape[1:], split.num_classes)
        callbacks: list = []
        if config["final_sparsity"] > 0:
            model = pruning.apply_pruning(
                model, final_sparsity=float(config["final_sparsity"]), steps_per_epoch=self.steps_per_epoch, epochs=self.epochs
            )
            callbacks += pruning.pruning_callbacks()
        if config["quantization"] == "qat":
            model = quantization.quantize_for_training(model)
        trained = model
        if teacher_weights is not None:
            teacher = self.task.build_teacher(split.x_train.shape[1:], split.num_classes)
            teacher.set_weights(teacher_weights)
            trained = distill.Distiller(
                model, teacher, temperature=float(config["temperature"]), weight=float(config["distillation_weight"])
            )
        trained.compile(
            optimizer=make_optimizer(config, learning_rate=self.learning_rate, decay_steps=self.steps_per_epoch * self.epochs),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
            jit_compile=bool(config["jit_compile"]) and self.placement.devices != "TPU",
        )
        if config["early_stopping_patience"]:
            callbacks.append(keras.callbacks.EarlyStopping(monitor="val_loss", patience=int(config["early_stopping_patience"])))
        return model, trained, callbacks

    def _measure(self, model: Any, model_dir: str | None) -> dict[str, float]:
        """The final model metrics; the deployed model's only if the study needs one of them
        (`context.needed`) or the model is quantization-aware (its point is the deployed model),
        else `KerasTrainable.finish` measures them if the trial reaches the front."""
        from trainables import metrics
        from trainables import pruning

        needed = self.context.needed
        deployed = needed is None or self.config["quantization"] == "qat" or bool(set(needed) & set(DEPLOYED_METRICS))
        return metrics.model_metrics(
            pruning.strip_pruning(model),
            x_val=self.split.x_val,
            y_val=self.split.y_val,
            quantization=self.config["quantization"],
            representative=self.split.x_train[:100],
            model_dir=model_dir,
            deployed=deployed,
        )
