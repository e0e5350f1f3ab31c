"""Knowledge distillation: a larger teacher, trained once and cached, supervises a student.

The student's loss is `(1 - weight) * cross-entropy(labels) + weight * T**2 * KL(teacher_T ||
student_T)`, where `_T` are softmax outputs at temperature `T` (Hinton et al., 2015). The
teacher (the task's `build_teacher`) is trained on the same split, outside any strategy scope. With a `cache_dir` (a
study gives every trial the same one) it is trained by the first trial that needs it, under a
file lock, and loaded by all others; without one, once per process.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any

from trainables._keras import keras
from trainables._keras import tf

if TYPE_CHECKING:
    from collections.abc import Callable
    from collections.abc import Iterator

    import tf_keras

    from trainables.data import Split


def distillation_loss(
    labels: tf.Tensor,
    student_logits: tf.Tensor,
    teacher_logits: tf.Tensor,
    *,
    temperature: float,
    weight: float,
) -> tf.Tensor:
    """Per-example loss: hard-label cross-entropy blended with the softened teacher's KL term."""
    hard = keras.losses.sparse_categorical_crossentropy(labels, student_logits, from_logits=True)
    teacher = tf.nn.softmax(teacher_logits / temperature)
    student_log = tf.nn.log_softmax(student_logits / temperature)
    soft = tf.reduce_sum(teacher * (tf.math.log(teacher + 1e-12) - student_log), axis=-1)
    return (1.0 - weight) * hard + weight * temperature**2 * soft


class Distiller(keras.Model):
    """Trains `student` against labels and a frozen `teacher`; evaluates and predicts as the student.

    Compile it like the student (optimizer, hard-label loss, metrics): `loss` and `accuracy`
    in the logs are the student's own on the labels; the distillation term steers its gradients.
    """

    def __init__(
        self, student: tf_keras.Model, teacher: tf_keras.Model, *, temperature: float, weight: float
    ) -> None:
        super().__init__(name=f"distilled_{student.name}")
        self.student = student
        self.teacher = teacher
        self.teacher.trainable = False
        self.temperature = float(temperature)
        self.weight = float(weight)

    def call(self, inputs: tf.Tensor, training: bool = False) -> tf.Tensor:
        return self.student(inputs, training=training)

    def train_step(self, data: Any) -> dict[str, tf.Tensor]:
        images, labels = data
        teacher_logits = self.teacher(images, training=False)
        with tf.GradientTape() as tape:
            logits = self.student(images, training=True)
            self.compiled_loss(labels, logits)  # tracks the student's hard-label loss for the logs
            per_example = distillation_loss(
                labels, logits, teacher_logits, temperature=self.temperature, weight=self.weight
            )
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            loss = tf.reduce_mean(per_example) / replicas + sum(self.student.losses)
        variables = self.student.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        self.compiled_metrics.update_state(labels, logits)
        return {metric.name: metric.result() for metric in self.metrics}


def _teacher_key(split: Split, *, recipe: dict[str, Any], epochs: int, seed: int) -> str:
    """Identifies the teacher by what it learns from: the split's examples and labels, its recipe."""
    digest = hashlib.sha1()
    for array in (split.x_train, split.y_train, split.x_val, split.y_val):
        digest.update(array.tobytes())
    digest.update(json.dumps({**recipe, "epochs": epochs, "seed": seed}, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:16]


_trained: dict[str, tuple[list, dict[str, float]]] = {}  # per process: weights and info by key


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def teacher_weights(
    split: Split,
    build: Callable[[], tf_keras.Model],
    *,
    recipe: dict[str, Any],
    epochs: int,
    seed: int,
    cache_dir: str | None,
) -> tuple[list, dict[str, float]]:
    """The weights of the teacher `build()` makes, trained on `split`, and
    `teacher_val_accuracy` and `teacher_train_s` (0 when cached). `recipe` describes the
    teacher (it is part of the cache key).

    Call it outside any strategy scope: the teacher trains on this process alone, so the
    workers of a multi-worker trial wait on the cache's lock without holding a collective
    operation the others need; then each builds it again in its scope and sets these weights.
    """
    key = _teacher_key(split, recipe=recipe, epochs=epochs, seed=seed)
    if cache_dir is None:
        if key not in _trained:
            _trained[key] = _train(build(), split, epochs=epochs, seed=seed)
            return _trained[key]
        weights, info = _trained[key]
        return weights, {**info, "teacher_train_s": 0.0}

    weights_path = Path(cache_dir) / f"teacher-{key}.weights.h5"
    info_path = weights_path.with_suffix(".json")
    model = build()
    with _locked(Path(cache_dir) / f"teacher-{key}.lock"):
        if weights_path.exists() and info_path.exists():
            model.load_weights(str(weights_path))
            return model.get_weights(), {**json.loads(info_path.read_text()), "teacher_train_s": 0.0}
        weights, info = _train(model, split, epochs=epochs, seed=seed)
        partial = weights_path.with_name(f"partial-{os.getpid()}-{weights_path.name}")
        model.save_weights(str(partial))
        os.replace(partial, weights_path)
        info_path.write_text(json.dumps(info))
    return weights, info


def _train(
    model: tf_keras.Model, split: Split, *, epochs: int, seed: int
) -> tuple[list, dict[str, float]]:
    from trainables import data

    train_ds, val_ds = data.pipelines(split, batch_size=128, seed=seed)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    start = time.perf_counter()
    model.fit(train_ds, epochs=epochs, verbose=0)
    seconds = time.perf_counter() - start
    _, accuracy = model.evaluate(val_ds, verbose=0)
    return model.get_weights(), {"teacher_val_accuracy": float(accuracy), "teacher_train_s": seconds}
