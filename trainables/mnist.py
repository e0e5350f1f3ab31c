"""MNIST digits: the task's data, models and defaults; the kit (`trainables.kit`) does the rest.

`train(config, context=None)` is the trainable: it needs neither Ray nor MLflow, so it runs the
same in a notebook as inside a study.

    >>> from trainables.mnist import train
    >>> final = train({"width": 64, "epochs": 2, "data_source": "bundled"})
    >>> final["val_accuracy"], final["epoch_time_s"], final["model_bytes_gzip"]
"""

from __future__ import annotations

from typing import Any

from trainables import data
from trainables import kit
from trainables.models import ARCHITECTURES
from trainables.models import build_model


class Mnist(kit.KerasTask):
    """Classify 28x28 handwritten digits with an MLP or a CNN."""

    defaults = {
        # model
        "architecture": "mlp",  # "mlp" or "cnn"
        "width": 128,  # hidden units (mlp) or filters of the last convolution (cnn)
        "depth": 2,  # hidden layers (mlp) or convolution blocks (cnn)
        "dropout": 0.0,  # rate before the output layer
        "kernel_size": 3,  # convolution kernel side (cnn only)
        "augment": 0.0,  # augmentation strength in [0, 1]: rotation, shift, zoom; 0 = off
        # data
        "data_source": "auto",  # "auto", "keras" (full MNIST) or "bundled" (5,000 digits)
        "validation_fraction": 0.2,  # held-out share of the examples
    }
    choices = {"architecture": ARCHITECTURES, "data_source": data.SOURCES}
    positive = ("width", "depth", "kernel_size")
    ranges = {"augment": (0.0, 1.0), "dropout": (0.0, 0.99)}
    conditional = {"kernel_size": ("architecture", ("cnn",))}
    teacher_recipe = {"architecture": "cnn", "width": 64, "depth": 2}

    def load_data(self, config: dict[str, Any]) -> data.Digits:
        return data.load_mnist(
            source=config["data_source"], seed=config["seed"], validation_fraction=config["validation_fraction"]
        )

    def build_model(self, config: dict[str, Any], input_shape: tuple[int, ...], num_classes: int) -> Any:
        return build_model(
            config["architecture"],
            width=int(config["width"]),
            depth=int(config["depth"]),
            dropout=float(config["dropout"]),
            kernel_size=int(config["kernel_size"]),
            input_shape=input_shape,
            num_classes=num_classes,
        )

    def augmentation(self, config: dict[str, Any]) -> Any:
        return data.augmentation(float(config["augment"]))

    def build_teacher(self, input_shape: tuple[int, ...], num_classes: int) -> Any:
        return build_model(**self.teacher_recipe, input_shape=input_shape, num_classes=num_classes)


train = kit.KerasTrainable(Mnist())
# Every key `train` accepts, with its default (the kit's and the task's). Others are an error.
DEFAULTS: dict[str, Any] = train.defaults
resolve_config = train.check_config
EPOCH_METRICS, FINAL_METRICS, METRICS = kit.EPOCH_METRICS, kit.FINAL_METRICS, kit.METRICS
