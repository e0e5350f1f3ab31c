"""Breast-cancer table (scikit-learn's, offline): which MLP, optimiser and quantization give the
most accurate deployed model for the fewest bytes. About a minute on 2 CPU cores."""

from search.space import Choice
from search.space import Float
from search.space import Int
from search.space import SearchSpace
from trainables.tabular import train

SPACE = SearchSpace(
    name="breast_cancer",
    trainable=train,
    params={
        "learning_rate": Float(1e-4, 3e-2, log=True),
        "batch_size": Choice([16, 32, 64]),
        "width": Int(4, 256, log=True),  # units of each hidden layer
        "depth": Int(1, 3),
        "dropout": Float(0.0, 0.5),
        "activation": Choice(["relu", "gelu", "tanh"]),
        "quantization": Choice(["none", "dynamic", "int8"]),  # how the deployed model is stored
    },
    # The deployed (TFLite, quantized) model's accuracy and size: they exist only once a trial
    # ends, so the rungs compare validation loss.
    objectives={"tflite_accuracy": "max", "tflite_bytes": "min"},
    rung_objectives={"val_loss": "min"},
    num_samples=20,
    max_epochs=16,
    grace_period=4,
    reduction_factor=2,
    max_concurrent=2,
    cpus_per_trial=1,
)
