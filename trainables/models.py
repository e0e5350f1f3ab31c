"""Model builders: pure functions from a few size parameters to an uncompiled Keras 2 model."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import tf_keras

ARCHITECTURES = ("mlp", "cnn")


def build_model(
    architecture: str = "mlp",
    *,
    width: int = 128,
    depth: int = 2,
    dropout: float = 0.0,
    kernel_size: int = 3,
    input_shape: tuple[int, ...] = (28, 28, 1),
    num_classes: int = 10,
) -> tf_keras.Model:
    """Build a classifier that outputs logits.

    Args:
        architecture: "mlp" (dense layers) or "cnn" (convolutions with max pooling).
        width: for "mlp", units in each hidden dense layer; for "cnn", filters of the last
            convolution (earlier ones halve it, 4 at the least), so model size grows with width
            in both.
        depth: number of hidden dense layers ("mlp") or convolution blocks ("cnn"), at least 1.
        dropout: dropout rate before the output layer, in [0, 1).
        kernel_size: side of the square convolution kernels ("cnn" only).

    Example:
        >>> build_model("cnn", width=32).output_shape
        (None, 10)
    """
    from trainables._keras import keras

    if architecture not in ARCHITECTURES:
        raise ValueError(f"`architecture` must be one of {ARCHITECTURES}, but got {architecture=}.")
    if width < 1 or depth < 1:
        raise ValueError(f"`width` and `depth` must be >= 1, but got {width=}, {depth=}.")
    if kernel_size < 1:
        raise ValueError(f"`kernel_size` must be >= 1, but got {kernel_size=}.")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"`dropout` must be in [0, 1), but got {dropout=}.")

    layers: list = [keras.Input(shape=input_shape)]
    if architecture == "mlp":
        layers.append(keras.layers.Flatten())
        layers += [keras.layers.Dense(width, activation="relu") for _ in range(depth)]
    else:
        for block in range(depth):
            filters = max(4, width // 2 ** (depth - 1 - block))
            layers.append(keras.layers.Conv2D(filters, kernel_size, padding="same", activation="relu"))
            layers.append(keras.layers.MaxPooling2D())
        layers.append(keras.layers.Flatten())
    if dropout > 0.0:
        layers.append(keras.layers.Dropout(dropout))
    # Logits in float32 even under a mixed-precision policy, so the softmax and loss stay stable.
    layers.append(keras.layers.Dense(num_classes, dtype="float32"))
    return keras.Sequential(layers, name=f"{architecture}_w{width}_d{depth}")
