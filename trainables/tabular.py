"""Tabular classification on the Wisconsin breast-cancer table that ships with scikit-learn.

569 tumours, 30 numeric features each, benign or malignant: a second task on the kit
(`trainables.kit`), of another kind than images, that runs offline. The model standardises its
inputs itself (a `Normalization` layer with the training split's statistics), so the deployed
and served model takes the raw features.

    >>> from trainables.tabular import train
    >>> final = train({"width": 32, "epochs": 20})
    >>> final["val_accuracy"], final["tflite_bytes"]
"""

from __future__ import annotations

from typing import Any

import numpy as np

from trainables import kit
from trainables.data import Split

_cache: dict[tuple[int, float], Split] = {}


def load_breast_cancer(*, seed: int = 0, validation_fraction: float = 0.2) -> Split:
    """The table as float32 features and 0/1 labels (1 = benign), shuffled by `seed` and split."""
    if not 0.0 < validation_fraction < 1.0:
        raise ValueError(f"`validation_fraction` must lie strictly between 0 and 1, but got {validation_fraction=}.")
    key = (seed, validation_fraction)
    if key not in _cache:
        from sklearn.datasets import load_breast_cancer as table

        features, labels = table(return_X_y=True)
        order = np.random.default_rng(seed).permutation(len(features))
        features, labels = features[order].astype("float32"), labels[order].astype("int64")
        n_val = int(round(len(features) * validation_fraction))
        _cache[key] = Split(features[n_val:], labels[n_val:], features[:n_val], labels[:n_val])
    return _cache[key]


class BreastCancer(kit.KerasTask):
    """Tell malignant from benign tumours with an MLP over standardised features."""

    defaults = {
        "width": 64,  # units of each hidden layer
        "depth": 2,  # hidden layers
        "dropout": 0.0,  # rate after each hidden layer
        "activation": "relu",  # "relu", "gelu" or "tanh"
        "validation_fraction": 0.2,  # held-out share of the 569 rows
        # the kit's defaults that suit 455 training rows
        "batch_size": 32,
        "epochs": 20,
    }
    choices = {"activation": ("relu", "gelu", "tanh")}
    positive = ("width", "depth")
    ranges = {"dropout": (0.0, 0.9)}
    teacher_recipe = {"width": 256, "depth": 3, "activation": "relu"}

    def load_data(self, config: dict[str, Any]) -> Split:
        return load_breast_cancer(seed=config["seed"], validation_fraction=config["validation_fraction"])

    def build_model(self, config: dict[str, Any], input_shape: tuple[int, ...], num_classes: int) -> Any:
        return self._mlp(
            config,
            input_shape,
            num_classes,
            width=int(config["width"]),
            depth=int(config["depth"]),
            dropout=float(config["dropout"]),
            activation=config["activation"],
        )

    def build_teacher(self, input_shape: tuple[int, ...], num_classes: int) -> Any:
        return self._mlp(None, input_shape, num_classes, dropout=0.0, **self.teacher_recipe)

    def _mlp(self, config: dict[str, Any] | None, input_shape: tuple[int, ...], num_classes: int, *, width: int, depth: int, dropout: float, activation: str) -> Any:
        from trainables._keras import keras

        train_x = self.load_data(config or {"seed": 0, "validation_fraction": 0.2}).x_train
        layers: list = [keras.Input(shape=input_shape), keras.layers.Normalization(mean=train_x.mean(axis=0), variance=train_x.var(axis=0))]
        for _ in range(depth):
            layers.append(keras.layers.Dense(width, activation=activation))
            if dropout > 0:
                layers.append(keras.layers.Dropout(dropout))
        layers.append(keras.layers.Dense(num_classes, dtype="float32"))  # logits, float32 under mixed precision
        return keras.Sequential(layers, name=f"mlp_w{width}_d{depth}")


train = kit.KerasTrainable(BreastCancer())
