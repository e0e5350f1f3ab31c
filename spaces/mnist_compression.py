"""MNIST for deployment: which architecture, optimizer, pruning, quantization and distillation give
the most accurate deployed (TFLite) model for the fewest bytes and the lowest batch-1 latency.
About 6 minutes on 2 CPU cores with the bundled digits."""

from search.space import Choice
from search.space import Float
from search.space import Int
from search.space import SearchSpace
from trainables.mnist import train

SPACE = SearchSpace(
    name="mnist-compression",
    trainable=train,
    params={
        "architecture": Choice(["mlp", "cnn"]),
        "width": Int(8, 128, log=True),  # hidden units (mlp) / last conv filters (cnn)
        "depth": Int(1, 3),
        "kernel_size": Choice([3, 5], when={"architecture": "cnn"}),
        "optimizer": Choice(["sgd", "momentum", "adam"]),
        "momentum": Float(0.5, 0.95, when={"optimizer": "momentum"}),
        "learning_rate": Float(1e-3, 5e-2, log=True),
        "lr_schedule": Choice(["constant", "cosine"]),
        "batch_size": Choice([32, 64, 128]),
        "quantization": Choice(["none", "dynamic", "int8", "qat"]),
        # Pruning combines with post-training quantization (QAT wraps the layers pruning needs).
        "final_sparsity": Float(0.0, 0.9, step=0.1, when={"quantization": ["none", "dynamic", "int8"]}),
        "distillation": Choice([False, True]),
        "temperature": Float(1.0, 8.0, when={"distillation": True}),
        "distillation_weight": Float(0.1, 0.9, when={"distillation": True}),
    },
    # The deployed model: its accuracy, its gzipped size and its batch-1 latency in TFLite.
    objectives={"tflite_accuracy": "max", "tflite_bytes_gzip": "min", "tflite_ms": "min"},
    # Those exist only once a trial ends; early stopping compares validation accuracy.
    rung_objectives={"val_accuracy": "max"},
    constants={"data_source": "auto", "early_stopping_patience": 2, "teacher_epochs": 4},
    num_samples=24,
    max_epochs=6,
    grace_period=2,
    reduction_factor=2,
    max_concurrent=2,
    cpus_per_trial=1,
)
