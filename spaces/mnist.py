"""MNIST: which learning rate, batch size, model, augmentation and pruning reach the accuracy you
need in the least training time. Every epoch of every trial is a recipe (the configuration
trained that long); the front is over recipes. 3-5 minutes on 2 CPU cores with the bundled
digits."""

from search.space import Choice
from search.space import Float
from search.space import Int
from search.space import SearchSpace
from trainables.mnist import train

SPACE = SearchSpace(
    name="mnist",
    trainable=train,
    params={
        "learning_rate": Float(3e-4, 1e-2, log=True),  # Adam step size
        "batch_size": Choice([32, 64, 128, 256]),  # examples per step
        "architecture": Choice(["mlp", "cnn"]),
        "width": Int(16, 256, log=True),  # hidden units (mlp) / last conv filters (cnn)
        "augment": Float(0.0, 0.5),  # augmentation strength; 0 = off
        "final_sparsity": Float(0.0, 0.8, step=0.1),  # share of weights pruned; 0 = off
    },
    # Accuracy against training time so far (s, warm-up included, validation not); the first drives early stopping.
    objectives={"val_accuracy": "max", "train_time_s": "min"},
    front="recipes",  # the front is over every epoch of every trial: time to an accuracy
    targets={"val_accuracy": [0.93, 0.95, 0.96, 0.97]},  # the terminal names the fastest recipe to each
    constants={"data_source": "auto", "depth": 2},
    num_samples=24,
    max_epochs=8,
    grace_period=1,  # epochs before a trial may be stopped early
    reduction_factor=2,  # keep the better half at epochs 1, 2 and 4 (chosen on the simulated table)
    max_concurrent=2,
    cpus_per_trial=1,
)
